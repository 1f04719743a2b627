"""Control-flow ops, each holding its sub-graphs as `Body` attributes.

- `scan(*init, *xs, *consts; body, num_carry, num_xs, length, reverse)`: `length` steps of
  body(carry, x_t, consts) -> (carry, y_t); outputs the final carries, then the ys stacked along
  a new leading axis (ys[t] is step t's, also when `reverse` runs t from length-1 down to 0).
- `cond(pred, *operands; true_body, false_body)`: one body's outputs, chosen by a bool scalar
  computed at run time. Both bodies take the operands and give outputs of the same types.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..body import Body, run_body
from ..errors import DTypeError, ShapeError
from ..opdef import OpDef, register_op
from ..types import TensorType, dims_equal, same_type


def _check_inputs(op: str, body: Body, types: Sequence[TensorType], what: Sequence[str]) -> None:
    if len(types) != len(body.inputs):
        raise ShapeError(f"{op}: the body takes {len(body.inputs)} inputs but the node has {len(types)} operands")
    for i, (want, got) in enumerate(zip(body.input_types, types)):
        if not same_type(want, got):
            raise ShapeError(f"{op}: {what[i]} has type {got}, but the body expects {want}")


def _scan_slots(num_carry: int, num_xs: int, count: int) -> list[str]:
    return [f"carry {i}" for i in range(num_carry)] + [
        f"xs {i - num_carry} (one step)" if i < num_carry + num_xs else f"const {i - num_carry - num_xs}"
        for i in range(num_carry, count)
    ]


def _scan_infer(
    *types: TensorType, body: Body, num_carry: int, num_xs: int, length: int, reverse: bool
) -> list[TensorType]:
    if not isinstance(length, int) or length < 1:
        raise ShapeError(f"scan: length must be a static int >= 1, got {length!r}")
    xs = types[num_carry : num_carry + num_xs]
    for i, x in enumerate(xs):
        if x.rank == 0 or not dims_equal(x.shape[0], length):
            raise ShapeError(f"scan: xs {i} has type {x}, but its leading dim must be the length {length}")
    steps = [*types[:num_carry], *(x.with_shape(x.shape[1:]) for x in xs), *types[num_carry + num_xs :]]
    _check_inputs("scan", body, steps, _scan_slots(num_carry, num_xs, len(types)))
    outs = body.output_types
    for i, (init, out) in enumerate(zip(types[:num_carry], outs[:num_carry])):
        if not same_type(init, out):
            raise ShapeError(f"scan: the body returns carry {i} as {out}, but it enters as {init}")
    return [*outs[:num_carry], *(y.with_shape((length, *y.shape)) for y in outs[num_carry:])]


def _scan_compute(
    *arrays: np.ndarray, body: Body, num_carry: int, num_xs: int, length: int, reverse: bool
) -> tuple[np.ndarray, ...]:
    carry = list(arrays[:num_carry])
    xs, consts = arrays[num_carry : num_carry + num_xs], list(arrays[num_carry + num_xs :])
    ys: list[list[np.ndarray]] = [[] for _ in body.outputs[num_carry:]]
    for t in reversed(range(length)) if reverse else range(length):
        results = run_body(body, [*carry, *(x[t] for x in xs), *consts])
        carry = results[:num_carry]
        for stack, y in zip(ys, results[num_carry:]):
            stack.append(y)
    stacked = [np.stack(s[::-1] if reverse else s) for s in ys]
    return tuple(np.asarray(c) for c in carry) + tuple(stacked)


def _cond_infer(pred: TensorType, *types: TensorType, true_body: Body, false_body: Body) -> list[TensorType]:
    if pred.dtype != "bool" or pred.rank != 0:
        raise DTypeError(f"cond: the predicate must be a bool scalar, got {pred}; compare, e.g. gk.sum(x) > 0")
    slots = [f"operand {i}" for i in range(len(types))]
    for body in (true_body, false_body):
        _check_inputs("cond", body, types, slots)
    check_same_outputs(true_body.output_types, false_body.output_types)
    return list(true_body.output_types)


def check_same_outputs(true_types: Sequence[TensorType], false_types: Sequence[TensorType]) -> None:
    """Both branches of a cond must give outputs of the same types, output by output."""
    if len(true_types) != len(false_types):
        raise ShapeError(f"cond: the true branch gives {len(true_types)} outputs, the false branch {len(false_types)}")
    for i, (a, b) in enumerate(zip(true_types, false_types)):
        if not same_type(a, b):
            raise ShapeError(
                f"cond: output {i} is {a} in the true branch but {b} in the false branch; "
                "make both branches return the same types (cast or broadcast one)"
            )


def _cond_compute(pred: np.ndarray, *arrays: np.ndarray, true_body: Body, false_body: Body) -> Any:
    results = run_body(true_body if bool(pred) else false_body, list(arrays))
    return tuple(results) if len(results) > 1 else results[0]


register_op(
    OpDef(
        "scan",
        _scan_infer,
        _scan_compute,
        None,
        doc="Fixed-trip-count loop: attrs body (Body), num_carry, num_xs, length, reverse.",
    )
)
register_op(
    OpDef(
        "cond",
        _cond_infer,
        _cond_compute,
        None,
        doc="Run-time branch: attrs true_body, false_body (Bodies over the operands).",
    )
)
