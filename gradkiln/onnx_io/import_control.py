"""Import rules for ONNX control flow, resolved at import time: If with a known condition
imports the branch taken; Scan and Loop with a known number of iterations are unrolled, each
iteration importing the body once. Conditions computed at run time are refused."""

from __future__ import annotations

import numpy as np

from ..graph import ONNXError
from ..graph import builder as gb
from ..graph.types import normalize_axis
from .import_select import take_range
from .importer import ImportContext, Known, OnnxNode, Operand, register_importer


def _flag(ctx: ImportContext, operand: Operand, what: str) -> bool:
    return bool(np.asarray(ctx.known(operand, what)).reshape(()))


def _stacked(parts: list[Operand], ctx: ImportContext, axis: int = 0) -> Operand:
    tensors = [ctx.tensor(p) for p in parts]
    return gb.concat([gb.expand_dims(t, normalize_axis(axis, t.ndim + 1)) for t in tensors], axis)


@register_importer("If")
def _if(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    branch = n.attrs["then_branch"] if _flag(ctx, args[0], "condition") else n.attrs["else_branch"]
    return ctx.subgraph(branch, [])


@register_importer("Scan")
def _scan(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    """States carried through the body; scan inputs sliced and scan outputs stacked along their
    axes, in their directions (opset 9 and later)."""
    if n.opset < 9:
        raise ONNXError("Scan before opset 9 (with a batch axis and sequence_lens) is not supported")
    scans = n.attrs["num_scan_inputs"]
    states, xs = list(args[: len(args) - scans]), [ctx.tensor(x) for x in args[len(args) - scans :]]
    in_axes = [normalize_axis(a, x.ndim) for a, x in zip(n.attrs.get("scan_input_axes", [0] * scans), xs)]
    in_dirs = n.attrs.get("scan_input_directions", [0] * scans)
    steps = int(xs[0].shape[in_axes[0]]) if xs else 0
    outputs: list[list[Operand]] = []
    for t in range(steps):
        slices = [
            gb.squeeze(take_range(x, a, i, i + 1), a)
            for x, a, d in zip(xs, in_axes, in_dirs)
            for i in [steps - 1 - t if d else t]
        ]
        results = ctx.subgraph(n.attrs["body"], states + slices)
        states, produced = results[: len(states)], results[len(states) :]
        outputs.append(produced)
    count = n.num_outputs - len(states)
    out_axes = n.attrs.get("scan_output_axes", [0] * count)
    out_dirs = n.attrs.get("scan_output_directions", [0] * count)
    stacked = []
    for k in range(count):
        parts = [step[k] for step in outputs]
        stacked.append(_stacked(parts[::-1] if out_dirs[k] else parts, ctx, out_axes[k]))
    return states + stacked


@register_importer("Loop")
def _loop(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    """Unrolled while the trip count and the condition are known: each iteration's condition
    must be known at import time too."""
    args = args + [None] * (2 - len(args))
    trips = None if args[0] is None else int(np.asarray(ctx.known(args[0], "trip count")).reshape(()))
    going = True if args[1] is None else _flag(ctx, args[1], "condition")
    if trips is None and args[1] is None:
        raise ONNXError("a Loop without a trip count or condition never ends")
    state, outputs, i = list(args[2:]), [], 0
    while going and (trips is None or i < trips):
        counter = Known(np.asarray(i, np.int64), "int64")
        results = ctx.subgraph(n.attrs["body"], [counter, Known(np.asarray(True), "bool"), *state])
        going = _flag(ctx, results[0], "loop condition computed by the body")
        state, produced = results[1 : 1 + len(state)], results[1 + len(state) :]
        outputs.append(produced)
        i += 1
    count = n.num_outputs - len(state)
    if count and not outputs:
        raise ONNXError("a Loop that runs no iteration has empty scan outputs of unknown shape")
    return state + [_stacked([step[k] for step in outputs], ctx) for k in range(count)]
