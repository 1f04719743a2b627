"""Builder functions of the collective ops (`graph/ops/collective.py`), also `gk.distributed.*`.

`world_size` defaults to the size of the process group registered under `group` in this process
(`gk.distributed.init_process_group`); pass it to build a graph for a group elsewhere (or of one
worker, which needs no group: every collective is then the identity).
"""

from __future__ import annotations

from ..errors import DistributedError
from ..ops.collective import group_size
from ..tensor import Tensor
from .core import emit


def resolve_world_size(op: str, group: str, world_size: int | None) -> int:
    """`world_size`, or the size of the group registered under `group` in this process."""
    if world_size is not None:
        return world_size
    size = group_size(group)
    if size is None:
        raise DistributedError(
            f"{op}: no process group {group!r} in this process; call gk.distributed.init_process_group() "
            f"first or pass world_size="
        )
    return size


def all_reduce(x: Tensor, reduction: str = "sum", group: str = "world", world_size: int | None = None) -> Tensor:
    """The sum (reduction="sum") or mean (reduction="mean") of `x` over the workers of `group`, on every worker."""
    size = resolve_world_size("all_reduce", group, world_size)
    return emit("all_reduce", x, reduction=reduction, group=group, world_size=size)


def all_gather(x: Tensor, axis: int = 0, group: str = "world", world_size: int | None = None) -> Tensor:
    """Every worker's `x` concatenated along `axis` in rank order, on every worker."""
    return emit("all_gather", x, axis=axis, group=group, world_size=resolve_world_size("all_gather", group, world_size))


def reduce_scatter(
    x: Tensor, reduction: str = "sum", axis: int = 0, group: str = "world", world_size: int | None = None
) -> Tensor:
    """Block `rank` (along `axis`, split in world_size equal blocks) of `all_reduce(x, reduction)`."""
    size = resolve_world_size("reduce_scatter", group, world_size)
    return emit("reduce_scatter", x, reduction=reduction, axis=axis, group=group, world_size=size)


def broadcast(x: Tensor, root: int = 0, group: str = "world", world_size: int | None = None) -> Tensor:
    """Worker `root`'s `x`, on every worker."""
    return emit("broadcast", x, root=root, group=group, world_size=resolve_world_size("broadcast", group, world_size))


def reduce(x: Tensor, root: int = 0, group: str = "world", world_size: int | None = None) -> Tensor:
    """The sum of `x` over the workers on worker `root`, zeros on the others."""
    return emit("reduce", x, root=root, group=group, world_size=resolve_world_size("reduce", group, world_size))
