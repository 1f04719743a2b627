"""Import rules for ONNX control flow, onto gradkiln's `cond` and `scan`.

- If: a condition known at import time imports the branch taken; one known only at run time
  becomes a `cond` whose branches are the imported sub-graphs.
- Scan (opset 9+): a `scan` over the states and scan inputs; scan axes other than 0 are moved
  to the front and reversed directions flipped, around one forward scan.
- Loop with a trip count known at import time: a `scan` of that many steps carrying the
  iteration number, the condition and the states. Where the condition may turn false, each
  step keeps the states once it has (`where(going, new, old)`, the bounded while form); a Loop
  with scan outputs needs a condition that stays true (their length would depend on it).
  Other Loops (a trip count or, with scan outputs, a condition that only the run decides; a
  body that needs the iteration number at import time, as a Slice bound) are unrolled while
  the trip count and conditions are known at import time, up to the import's
  `max_unrolled_steps` and `max_unrolled_nodes` (`import_limits.py`).
A body is imported into the sub-graph being traced; outer values it reads are captured.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ..graph import ONNXError, ShapeError, Tensor, current_graph
from ..graph import builder as gb
from ..graph.types import normalize_axis
from .importer import ImportContext, Known, OnnxNode, Operand, RunTimeValueError, register_importer


def _flag(ctx: ImportContext, operand: Operand, what: str) -> bool:
    return bool(np.asarray(ctx.known(operand, what)).reshape(()))


def _is_true(operand: Operand) -> bool:
    """Whether `operand` is known at import time to be true."""
    return isinstance(operand, Known) and bool(np.asarray(operand.array).reshape(()))


def _scalar(ctx: ImportContext, operand: Operand) -> Tensor:
    return gb.reshape(ctx.tensor(operand), ())


@contextmanager
def _importing_into_body(ctx: ImportContext) -> Iterator[None]:
    """Import into the body being traced (the open graph); known values it materializes stay there."""
    saved = ctx.graph, dict(ctx._constants)
    ctx.graph = current_graph()
    try:
        yield
    finally:
        ctx.graph, ctx._constants = saved


def _body(ctx: ImportContext, proto: object, inputs: list[Operand]) -> list[Operand]:
    with _importing_into_body(ctx):
        return ctx.subgraph(proto, inputs)


def _tensors(ctx: ImportContext, operands: list[Operand]) -> list[Tensor]:
    with _importing_into_body(ctx):
        return [ctx.tensor(o) for o in operands]


@register_importer("If")
def _if(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    try:
        taken = _flag(ctx, args[0], "condition")
    except RunTimeValueError:
        return _runtime_if(ctx, n, args)
    return ctx.subgraph(n.attrs["then_branch" if taken else "else_branch"], [])


def _runtime_if(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    def branch(key: str) -> object:
        return lambda: _tensors(ctx, _body(ctx, n.attrs[key], []))

    results = gb.cond(_scalar(ctx, args[0]), branch("then_branch"), branch("else_branch"))
    return list(results)


@register_importer("Scan")
def _scan(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    """States carried through the body; scan inputs sliced along their axes in their directions,
    scan outputs stacked likewise (opset 9 and later)."""
    if n.opset < 9:
        raise ONNXError("Scan before opset 9 (with a batch axis and sequence_lens) is not supported")
    count = n.attrs["num_scan_inputs"]
    states = [ctx.tensor(s) for s in args[: len(args) - count]]
    xs = [ctx.tensor(x) for x in args[len(args) - count :]]
    in_axes = n.attrs.get("scan_input_axes", [0] * count)
    in_dirs = n.attrs.get("scan_input_directions", [0] * count)
    xs = [_oriented(_to_front(x, normalize_axis(a, x.ndim)), d) for x, a, d in zip(xs, in_axes, in_dirs)]

    def step(carry: list[Tensor], x_t: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        results = _tensors(ctx, _body(ctx, n.attrs["body"], [*carry, *x_t]))
        return results[: len(carry)], results[len(carry) :]

    final, ys = gb.scan(step, states, xs)
    out_axes = n.attrs.get("scan_output_axes", [0] * len(ys))
    out_dirs = n.attrs.get("scan_output_directions", [0] * len(ys))
    placed = [_from_front(_oriented(y, d), normalize_axis(a, y.ndim)) for y, a, d in zip(ys, out_axes, out_dirs)]
    return [*final, *placed]


def _oriented(x: Tensor, direction: int) -> Tensor:
    return gb.flip(x, 0) if direction else x


def _to_front(x: Tensor, axis: int) -> Tensor:
    return x if axis == 0 else gb.transpose(x, (axis, *(a for a in range(x.ndim) if a != axis)))


def _from_front(x: Tensor, axis: int) -> Tensor:
    order = [*range(1, axis + 1), 0, *range(axis + 1, x.ndim)]
    return x if axis == 0 else gb.transpose(x, tuple(order))


class _NeedsUnrollingError(Exception):
    """A Loop the scan form cannot express (scan outputs under a run-time condition)."""


@register_importer("Loop")
def _loop(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    args = args + [None] * (2 - len(args))
    _check_loop_body(n, len(args) - 2)
    trips = None if args[0] is None else _known_trips(ctx, args[0])
    if trips is not None and trips >= 1:
        try:
            return _loop_as_scan(ctx, n, args, trips)
        except (_NeedsUnrollingError, ShapeError, RunTimeValueError):  # e.g. slicing at the iteration number
            pass
    return _unrolled_loop(ctx, n, args)


def _check_loop_body(n: OnnxNode, states: int) -> None:
    """The body takes (iteration, condition, states) and gives (condition, states, scan outputs)."""
    body = n.attrs["body"]
    if len(body.input) != 2 + states or len(body.output) != 1 + n.num_outputs or n.num_outputs < states:
        raise ONNXError(
            f"the Loop carries {states} state(s) into {n.num_outputs} output(s), so its body needs "
            f"{2 + states} inputs (iteration, condition, states) and {1 + n.num_outputs} outputs (condition, "
            f"states, scan outputs), but the body has {len(body.input)} input(s) and {len(body.output)} output(s)"
        )


def _known_trips(ctx: ImportContext, operand: Operand) -> int | None:
    try:
        return int(np.asarray(ctx.known(operand, "trip count")).reshape(()))
    except RunTimeValueError:
        return None


def _loop_as_scan(ctx: ImportContext, n: OnnxNode, args: list[Operand], trips: int) -> list[Operand]:
    """A scan carrying (iteration number, condition, states); see the module docstring."""
    always = args[1] is None or _is_true(args[1])
    going = gb.constant(True, graph=ctx.graph) if args[1] is None else _scalar(ctx, args[1])
    states = [ctx.tensor(s) for s in args[2:]]
    counter = gb.constant(np.asarray(0, np.int64), graph=ctx.graph)

    def step(carry: list[Tensor], _: None) -> tuple[list[Tensor], list[Tensor] | None]:
        i, active, *old = carry
        # a step's results count only where it runs, and then its condition input is true
        results = _body(ctx, n.attrs["body"], [i, Known(np.asarray(True), "bool"), *old])
        new, ys = _tensors(ctx, results[1 : 1 + len(old)]), results[1 + len(old) :]
        if always and _is_true(results[0]):
            return [i + 1, active, *new], _tensors(ctx, ys) or None
        if ys:
            raise _NeedsUnrollingError
        still = gb.where(active, gb.reshape(_tensors(ctx, [results[0]])[0], ()), active)
        return [i + 1, still, *(gb.where(active, a, b) for a, b in zip(new, old))], None

    final, ys = gb.scan(step, [counter, going, *states], length=trips)
    return [*final[2:], *(ys or [])]


def _unrolled_loop(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Operand]:
    """Unrolled while the trip count and the condition are known: each iteration's condition
    must be known at import time too."""
    trips = None if args[0] is None else int(np.asarray(ctx.known(args[0], "trip count")).reshape(()))
    going = True if args[1] is None else _flag(ctx, args[1], "condition")
    if trips is None and args[1] is None:
        raise ONNXError("a Loop without a trip count or condition never ends")
    state, outputs, i = list(args[2:]), [], 0
    while going and (trips is None or i < trips):
        counter = Known(np.asarray(i, np.int64), "int64")
        with ctx.budget.iteration():
            results = ctx.subgraph(n.attrs["body"], [counter, Known(np.asarray(True), "bool"), *state])
            going = _flag(ctx, results[0], "loop condition computed by the body")
        state, produced = results[1 : 1 + len(state)], results[1 + len(state) :]
        outputs.append(produced)
        i += 1
    count = n.num_outputs - len(state)
    if count and not outputs:
        raise ONNXError("a Loop that runs no iteration has empty scan outputs of unknown shape")
    return state + [gb.stack([ctx.tensor(step[k]) for step in outputs]) for k in range(count)]
