"""Autocast (mixed precision): matmuls and convolutions in float16, everything else as it was.

Like `torch.autocast`, by an allow list (`LOW_PRECISION_OPS`): each float32 (or float64) matmul,
conv2d and conv_transpose2d reads float16 copies of its inputs and its result is cast back, so
the values around it keep their dtype. Softmax, log_softmax, reductions, losses and every other
op read those cast-back values and stay float32; params stay float32 (master weights), and so do
the gradients a gradient graph returns. On a gradient graph the backward matmuls are cast too.

Casts are inserted once per value and kept minimal: a value is cast at its root through views
(reshape, transpose, ...), so `w` and `transpose(w)` share one cast, and the float16 result of a
low-precision op feeds the next one directly (cast(cast(y16, f32), f16) is y16, which is exact;
cast(cast(x32, f16), f32) is not, and is never removed).

Accumulation: numpy's float16 matmul accumulates in float32 and rounds the sum once (so the
numpy executor computes what "float16 inputs, float32 accumulation" means; a test checks it);
conv2d contracts im2col windows with one einsum, the same; conv_transpose2d adds its kh*kw
per-offset products into a float16 output, so those few sums round in float16. The TVM emitter
gives float16 matmuls a float32 accumulator too (Relax's `out_dtype`); TVM's float16
convolutions accumulate in float16.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..graph import DTypeError, Graph, Value
from ..graph.dtypes import is_float
from ..graph.outputs import normalize_outputs
from .dce import dce
from .manager import PassContext, register_pass

LOW_PRECISION_OPS = frozenset({"matmul", "conv2d", "conv_transpose2d"})
LOW_DTYPES = ("float16",)
# views a cast moves above: the cast of their input serves every view of it (memory.VIEWS minus
# the ones that select part of the input, which are cheaper to cast after)
CAST_THROUGH = frozenset({"reshape", "transpose", "expand_dims", "squeeze", "broadcast_to"})


def autocast(graph: Graph, outputs: Any, dtype: str = "float16") -> tuple[Graph, list[Value]]:
    """A copy of `graph` whose matmuls and convolutions run in `dtype` (see the module doc), with
    the outputs in it; `outputs` takes what `gk.compile` takes."""
    values, _ = normalize_outputs(graph, outputs)
    ctx = PassContext(values, autocast_dtype=dtype)
    cast = graph.copy()
    if autocast_pass(cast, ctx):
        dce(cast, ctx)
    return cast, ctx.outputs


@register_pass("autocast")
def autocast_pass(graph: Graph, ctx: PassContext) -> bool:
    """Run each float matmul/conv2d/conv_transpose2d wider than `ctx.autocast_dtype` in it."""
    low = _check_dtype(ctx.autocast_dtype)
    caster = _Caster(graph, low)
    changed = False
    for node_id in graph.needed_nodes(ctx.outputs):
        node = graph.node(node_id)
        if node.op in LOW_PRECISION_OPS and _wider(node.types[0].dtype, low):
            with graph.building_as(node.role):
                lowered = graph.add_node(node.op, [caster.low(v) for v in node.inputs], node.attrs)
                back = graph.add_node("cast", [lowered.outputs[0]], {"dtype": node.types[0].dtype})
            ctx.replace(graph, node.outputs[0], back.outputs[0])
            graph.remove_node(node_id)
            changed = True
    return changed


def _check_dtype(dtype: str) -> str:
    if dtype not in LOW_DTYPES:
        hint = " (numpy has no bfloat16, so neither does gradkiln)" if dtype == "bfloat16" else ""
        raise DTypeError(f"autocast: cannot run matmuls in {dtype!r}{hint}; use one of {', '.join(LOW_DTYPES)}")
    return dtype


def _wider(dtype: str, low: str) -> bool:
    return is_float(dtype) and np.dtype(dtype).itemsize > np.dtype(low).itemsize


class _Caster:
    """Low-precision versions of values, made once each: the value itself when it is a cast of a
    low-precision value, a view of the low version of a view's input, or a new cast."""

    def __init__(self, graph: Graph, low: str) -> None:
        self.graph = graph
        self.dtype = low
        self.made: dict[Value, Value] = {}

    def low(self, value: Value) -> Value:
        if self.graph.type_of(value).dtype == self.dtype or not is_float(self.graph.type_of(value).dtype):
            return value
        if value not in self.made:
            self.made[value] = self._make(value)
        return self.made[value]

    def _make(self, value: Value) -> Value:
        node = self.graph.node(value.node)
        if node.op == "cast" and self.graph.type_of(node.inputs[0]).dtype == self.dtype:
            return node.inputs[0]
        if node.op in CAST_THROUGH:
            view = self.graph.add_node(node.op, [self.low(node.inputs[0])], node.attrs)
            return view.outputs[value.index]
        return self.graph.add_node("cast", [value], {"dtype": self.dtype}).outputs[0]
