"""Derivative and batching rules of the collective ops (`graph/ops/collective.py`).

Every collective is linear in the workers' operands, so its jvp applies it to the tangents, and its
vjp is its transpose over the whole group (worker r's cotangent is d(sum over workers q of
<g_q, y_q>) / d x_r): all_reduce's is all_reduce of the cotangents, all_gather's is
reduce_scatter, reduce_scatter's is all_gather, broadcast's is reduce to the root and reduce's is
broadcast from it; a mean divides by world_size on the way back too. The gradient of a loss
summed over the workers is thus each worker's own cotangent, which is what data parallelism needs.
They batch with the batch axis in front, which moves a non-negative gather or scatter axis.
"""

from __future__ import annotations

from typing import Any

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.types import Dim
from .batching import register_batch
from .jvp_rules import Tangents, register_jvp
from .vjp_rules import register_vjp

# the transpose of each collective (the op its vjp emits)
_TRANSPOSES = {
    "all_reduce": "all_reduce",
    "all_gather": "reduce_scatter",
    "reduce_scatter": "all_gather",
    "broadcast": "reduce",
    "reduce": "broadcast",
}


def transpose(op: str, g: Tensor, **attrs: Any) -> Tensor:
    """The transpose of collective `op` (with `attrs`) applied to the cotangent `g`."""
    reduction = attrs.pop("reduction", "sum")
    if op == "all_gather":
        return gb.emit("reduce_scatter", g, reduction="sum", **attrs)
    if op == "all_reduce":
        return gb.emit("all_reduce", g, reduction=reduction, **attrs)
    out = gb.emit(_TRANSPOSES[op], g, **attrs)
    return out * (1.0 / attrs["world_size"]) if reduction == "mean" else out


def _vjp(op: str):
    def rule(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, **attrs: Any) -> tuple[Tensor]:
        return (transpose(op, g, **attrs),)

    return rule


def _jvp(op: str):
    def rule(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, **attrs: Any) -> Tensor:
        return gb.emit(op, tangents[0], **attrs)

    return rule


def _batch(op: str):
    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: Any) -> Tensor:
        if attrs.get("axis", -1) >= 0:
            attrs = {**attrs, "axis": attrs["axis"] + 1}
        return gb.emit(op, inputs[0], **attrs)

    return rule


for _op in _TRANSPOSES:
    register_vjp(_op)(_vjp(_op))
    register_jvp(_op)(_jvp(_op))
    register_batch(_op)(_batch(_op))
