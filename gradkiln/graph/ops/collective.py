"""Collective ops: all_reduce, all_gather, reduce_scatter, broadcast and reduce over a process group.

Each op is a value of one worker (rank) of a group of `world_size` workers that all run the same
graph; the result depends on every worker's operand. Attributes: `group` (the name a communicator
is registered under, "world" by default) and `world_size` (shapes depend on it, so it is fixed at
build time and checked against the group at run time). Semantics, worker r holding x_r:

- `all_reduce(x; reduction)`: sum_r x_r ("sum") or that over world_size ("mean"), on every worker;
- `all_gather(x; axis)`: concat(x_0, ..., x_{W-1}) along `axis`, on every worker;
- `reduce_scatter(x; reduction, axis)`: worker r's block r (along `axis`) of all_reduce(x);
- `broadcast(x; root)`: x_root on every worker;
- `reduce(x; root)`: sum_r x_r on worker `root`, zeros elsewhere (the transpose of broadcast).

The references (`INTO`: the numpy executor's and the llvm target's) communicate through the
`Communicator` registered for the group (`register_communicator`; gradkiln.distributed registers
torch.distributed's), in place on the output buffer. A group of one worker needs none: every
collective is then the identity.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..dtypes import is_float
from ..errors import DistributedError, ShapeError
from ..opdef import OpDef, register_op
from ..types import TensorType, normalize_axis

REDUCTIONS = ("sum", "mean")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce")


class Communicator(Protocol):
    """What a process group does for the collective ops: each call works in place on buffers
    (numpy arrays, or any object with `__dlpack__`: the llvm target hands its own tensors) and
    returns when every worker of the group has made the same call."""

    rank: int
    world_size: int

    def all_reduce(self, buffer: object) -> None: ...  # sum over the workers, into `buffer`

    def all_gather(self, out: object, x: object) -> None: ...  # out = concat along axis 0

    def reduce_scatter(self, out: object, x: object) -> None: ...  # out = this worker's block of the sum

    def broadcast(self, buffer: object, root: int) -> None: ...

    def reduce(self, buffer: object, root: int) -> None: ...  # the sum lands in root's buffer


def as_numpy(buffer: object) -> np.ndarray:
    """A numpy view of a buffer a communicator is handed (no copy)."""
    return buffer if isinstance(buffer, np.ndarray) else np.from_dlpack(buffer)


class _Alone:
    """The group of one worker: every collective is the identity."""

    rank, world_size = 0, 1

    def all_reduce(self, buffer: object) -> None:
        pass

    def all_gather(self, out: object, x: object) -> None:
        as_numpy(out)[...] = as_numpy(x)

    reduce_scatter = all_gather

    def broadcast(self, buffer: object, root: int) -> None:
        pass

    reduce = broadcast


_COMMUNICATORS: dict[str, Communicator] = {}


def register_communicator(group: str, communicator: Communicator | None) -> None:
    """Make `communicator` run the collectives of `group` in this process (None removes it)."""
    if communicator is None:
        _COMMUNICATORS.pop(group, None)
    else:
        _COMMUNICATORS[group] = communicator


def communicator(group: str, world_size: int, op: str = "collective") -> Communicator:
    """The communicator of `group`, checked to have `world_size` workers."""
    found = _COMMUNICATORS.get(group)
    if found is None and world_size == 1:
        return _Alone()
    if found is None:
        raise DistributedError(
            f"{op}: no process group {group!r} in this process (the graph was built for {world_size} workers); "
            f"call gk.distributed.init_process_group() in every worker before running it"
        )
    if found.world_size != world_size:
        raise DistributedError(
            f"{op}: the graph was built for {world_size} workers but process group {group!r} has "
            f"{found.world_size}; rebuild it (or data_parallel it again) for this group"
        )
    return found


def group_size(group: str) -> int | None:
    """The number of workers of a registered group, None when it is not registered here."""
    found = _COMMUNICATORS.get(group)
    return None if found is None else found.world_size


# -- type inference -----------------------------------------------------------------------------


def _check_group(op: str, group: str, world_size: int) -> None:
    if not isinstance(group, str) or not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise DistributedError(
            f"{op}: group must be a name and world_size a positive int, got {group!r}, {world_size!r}"
        )


def _check_reduction(op: str, x: TensorType, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise DistributedError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if x.dtype == "bool" or (reduction == "mean" and not is_float(x.dtype)):
        raise DistributedError(
            f"{op}: reduction={reduction!r} needs a float (or, for 'sum', integer) operand, got {x.dtype}"
        )


def _check_root(op: str, root: int, world_size: int) -> None:
    if not isinstance(root, int) or not 0 <= root < world_size:
        raise DistributedError(f"{op}: root must be a rank in [0, {world_size}), got {root!r}")


def _all_reduce_infer(x: TensorType, reduction: str, group: str, world_size: int) -> tuple[TensorType]:
    _check_group("all_reduce", group, world_size)
    _check_reduction("all_reduce", x, reduction)
    return (x,)


def _axis(op: str, x: TensorType, axis: int) -> int:
    if not x.shape:
        raise ShapeError(f"{op}: the operand must have at least one axis, got {x}")
    return normalize_axis(axis, len(x.shape))


def _all_gather_infer(x: TensorType, axis: int, group: str, world_size: int) -> tuple[TensorType]:
    _check_group("all_gather", group, world_size)
    a = _axis("all_gather", x, axis)
    return (TensorType(x.dtype, (*x.shape[:a], x.shape[a] * world_size, *x.shape[a + 1 :])),)


def _reduce_scatter_infer(x: TensorType, reduction: str, axis: int, group: str, world_size: int) -> tuple[TensorType]:
    _check_group("reduce_scatter", group, world_size)
    _check_reduction("reduce_scatter", x, reduction)
    a = _axis("reduce_scatter", x, axis)
    if not isinstance(x.shape[a], int) or x.shape[a] % world_size:
        raise ShapeError(
            f"reduce_scatter: axis {a} of {x} must be a static size divisible by world_size={world_size}; "
            f"pad the operand (data_parallel pads its buckets)"
        )
    return (TensorType(x.dtype, (*x.shape[:a], x.shape[a] // world_size, *x.shape[a + 1 :])),)


def _rooted_infer(op: str):
    def infer(x: TensorType, root: int, group: str, world_size: int) -> tuple[TensorType]:
        _check_group(op, group, world_size)
        _check_root(op, root, world_size)
        if x.dtype == "bool":
            raise DistributedError(f"{op}: bool operands are not supported; cast to an integer dtype")
        return (x,)

    return infer


# -- references: each collective writes into an output buffer ----------------------------------
# `into(x, out, **attrs)` is shared by the numpy executor (a fresh numpy `out`) and the llvm
# target (the VM's own output tensor, through DLPack), so both run one code path.


def _on_axis0(out: np.ndarray, x: np.ndarray, axis: int, run) -> None:
    """Run `run(out0, x0)`, a collective along axis 0, for one along `axis`: views when the
    moved buffers are contiguous (axis 0, or only size-1 axes in front), else through copies."""
    a = normalize_axis(axis, x.ndim)
    x0, out0 = np.ascontiguousarray(np.moveaxis(x, a, 0)), np.moveaxis(out, a, 0)
    if out0.flags.c_contiguous:
        run(out0, x0)
    else:
        staged = np.empty(out0.shape, out.dtype)
        run(staged, x0)
        out0[...] = staged


def _mean(out: np.ndarray, reduction: str, world_size: int) -> None:
    if reduction == "mean":
        np.divide(out, out.dtype.type(world_size), out=out)


def _all_reduce_into(x: np.ndarray, out: np.ndarray, reduction: str, group: str, world_size: int) -> None:
    out[...] = x
    if out.size:
        communicator(group, world_size, "all_reduce").all_reduce(out)
    _mean(out, reduction, world_size)


def _all_gather_into(x: np.ndarray, out: np.ndarray, axis: int, group: str, world_size: int) -> None:
    if out.size:
        _on_axis0(out, x, axis, communicator(group, world_size, "all_gather").all_gather)


def _reduce_scatter_into(
    x: np.ndarray, out: np.ndarray, reduction: str, axis: int, group: str, world_size: int
) -> None:
    if out.size:
        _on_axis0(out, x, axis, communicator(group, world_size, "reduce_scatter").reduce_scatter)
    _mean(out, reduction, world_size)


def _broadcast_into(x: np.ndarray, out: np.ndarray, root: int, group: str, world_size: int) -> None:
    out[...] = x
    if out.size:
        communicator(group, world_size, "broadcast").broadcast(out, root)


def _reduce_into(x: np.ndarray, out: np.ndarray, root: int, group: str, world_size: int) -> None:
    out[...] = x
    comm = communicator(group, world_size, "reduce")
    if out.size:
        comm.reduce(out, root)
    if comm.rank != root:
        out[...] = 0


INTO = {
    "all_reduce": _all_reduce_into,
    "all_gather": _all_gather_into,
    "reduce_scatter": _reduce_scatter_into,
    "broadcast": _broadcast_into,
    "reduce": _reduce_into,
}


def _reference(op: str, infer):
    """The numpy reference of `op`: its `into` on a fresh C-contiguous output."""

    def compute(x: np.ndarray, **attrs) -> np.ndarray:
        (t,) = infer(TensorType(x.dtype.name, x.shape), **attrs)
        out = np.empty(t.shape, x.dtype)
        INTO[op](np.asarray(x), out, **attrs)
        return out

    return compute


_GROUP = "group (a registered process group's name), world_size"
_DEFINITIONS = {  # op: (type inference, doc)
    "all_reduce": (_all_reduce_infer, f"sum or mean over the workers; attrs: reduction, {_GROUP}"),
    "all_gather": (_all_gather_infer, f"the workers' operands concatenated along axis; attrs: axis, {_GROUP}"),
    "reduce_scatter": (
        _reduce_scatter_infer,
        f"this worker's block (along axis) of the sum or mean over the workers; attrs: reduction, axis, {_GROUP}",
    ),
    "broadcast": (_rooted_infer("broadcast"), f"root's operand on every worker; attrs: root, {_GROUP}"),
    "reduce": (_rooted_infer("reduce"), f"the sum over the workers at root, zeros elsewhere; attrs: root, {_GROUP}"),
}
for _op, (_infer, _doc) in _DEFINITIONS.items():
    register_op(OpDef(_op, _infer, _reference(_op, _infer), 1, foldable=False, doc=_doc))


# -- the ring model of what a collective costs --------------------------------------------------


def ring_traffic(op: str, elements: int, world_size: int) -> tuple[float, float]:
    """(elements each worker sends, additions each worker does) of `op` on an operand of
    `elements` elements over a ring of `world_size` workers (the bandwidth-optimal algorithms:
    reduce-scatter then all-gather for all_reduce, a pipelined chain for broadcast and reduce)."""
    w = world_size
    share = (w - 1) / w
    return {
        "all_reduce": (2 * share * elements, share * elements),
        "all_gather": ((w - 1) * elements, 0.0),
        "reduce_scatter": (share * elements, share * elements),
        "broadcast": (elements if w > 1 else 0.0, 0.0),
        "reduce": (elements if w > 1 else 0.0, elements if w > 1 else 0.0),
    }[op]
