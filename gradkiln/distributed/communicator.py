"""torch.distributed as the communicator of gradkiln's collective ops.

`init_process_group` joins (or reuses) a torch.distributed process group and registers it for the
collective ops under a group name ("world"); each collective then calls torch's on a torch view of
the op's output buffer (`torch.from_numpy`, no copy). gloo runs on CPUs (tested here, over
loopback); NCCL would need GPU buffers, which the collective ops do not produce yet.

A collective that does not complete within the group's `timeout` (a worker died or hung) raises
`DistributedError` naming the group, the op, this worker's rank and the lost ranks (`liveness`:
heartbeats in the rendezvous store), instead of waiting forever.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any, Callable

import numpy as np

from ..graph.errors import DistributedError
from ..graph.ops.collective import as_numpy, register_communicator
from .liveness import Heartbeat

DEFAULT_TIMEOUT = 60.0  # seconds a collective may wait for the other workers
_heartbeat: Heartbeat | None = None  # this process's, while it is in the default group


def _torch():
    try:
        import torch
        import torch.distributed as dist
    except ImportError as error:  # pragma: no cover - torch is the `distributed` extra
        raise DistributedError("gradkiln.distributed needs torch: pip install 'gradkiln[distributed]'") from error
    return torch, dist


def _view(buffer: object) -> Any:
    """A torch tensor sharing `buffer`'s memory (numpy, or a DLPack tensor through numpy)."""
    torch, _ = _torch()
    return torch.from_numpy(as_numpy(buffer))


class TorchCommunicator:
    """The collectives of one torch.distributed process group, in place on numpy buffers;
    `heartbeat` (of the default group) names the lost ranks when a collective fails. `calls` and
    `seconds` count the collectives run and the time spent in them (waiting included)."""

    def __init__(self, name: str = "world", group: Any = None, heartbeat: Heartbeat | None = None) -> None:
        _, dist = _torch()
        self.name, self.group, self.heartbeat = name, group, heartbeat
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.calls, self.seconds = 0, 0.0

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        try:
            fn(*args, group=self.group, **kwargs)
            self.calls += 1
            self.seconds += time.perf_counter() - start
        except RuntimeError as error:  # gloo reports a lost peer or a timeout as a RuntimeError
            raise DistributedError(
                f"{what} in process group {self.name!r} failed on rank {self.rank} of {self.world_size}: "
                f"{self._diagnosis()} ({str(error).splitlines()[0]})"
            ) from error

    def _diagnosis(self) -> str:
        lost = self.heartbeat.lost_ranks() if self.heartbeat is not None else None
        if lost is None:
            return "another worker died or timed out"
        if lost:
            return f"lost rank {', '.join(map(str, lost))} (it stopped without finishing)"
        return "every worker is alive: one did not reach this collective within the timeout"

    def _global(self, root: int) -> int:
        _, dist = _torch()
        return root if self.group is None else dist.get_global_rank(self.group, root)

    def all_reduce(self, buffer: object) -> None:
        _, dist = _torch()
        self._call("all_reduce", dist.all_reduce, _view(buffer))

    def all_gather(self, out: object, x: object) -> None:
        _, dist = _torch()
        self._call("all_gather", dist.all_gather_single, _view(out), _view(x))

    def reduce_scatter(self, out: object, x: object) -> None:
        _, dist = _torch()
        self._call("reduce_scatter", dist.reduce_scatter_single, _view(out), _view(x))

    def broadcast(self, buffer: object, root: int) -> None:
        _, dist = _torch()
        self._call("broadcast", dist.broadcast, _view(buffer), src=self._global(root))

    def reduce(self, buffer: object, root: int) -> None:
        _, dist = _torch()
        self._call("reduce", dist.reduce, _view(buffer), dst=self._global(root))


def init_process_group(
    backend: str = "gloo",
    rank: int | None = None,
    world_size: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    name: str = "world",
    store: Any = None,
) -> TorchCommunicator:
    """Join torch.distributed's default process group (unless this process already has one) and
    register it for the collective ops under `name`. Without `rank`/`world_size` torch reads
    RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment, as torchrun sets them;
    `store` is a torch.distributed Store to rendezvous in instead (`spawn` passes its own)."""
    _, dist = _torch()
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            rank=rank if rank is not None else int(os.environ.get("RANK", 0)),
            world_size=world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", 1)),
            timeout=datetime.timedelta(seconds=timeout),
            store=store,
        )
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = Heartbeat(dist.get_rank(), dist.get_world_size())
        _heartbeat = _heartbeat if _heartbeat.start() else None
    communicator = TorchCommunicator(name, heartbeat=_heartbeat)
    register_communicator(name, communicator)
    return communicator


def destroy_process_group(name: str = "world") -> None:
    """Unregister `name` and leave torch.distributed's default group."""
    global _heartbeat
    _, dist = _torch()
    register_communicator(name, None)
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
    if dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    """This worker's rank in the default group (0 without one)."""
    _, dist = _torch()
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of workers in the default group (1 without one)."""
    _, dist = _torch()
    return dist.get_world_size() if dist.is_initialized() else 1


def shard(batch: np.ndarray, rank: int | None = None, world_size: int | None = None) -> np.ndarray:
    """This worker's equal share of `batch` along axis 0 (rows rank * n / W up to (rank + 1) * n / W);
    the batch size must divide by the world size, so every worker runs the same shapes."""
    r = get_rank() if rank is None else rank
    w = get_world_size() if world_size is None else world_size
    rows = batch.shape[0]
    if rows % w:
        raise DistributedError(
            f"shard: a batch of {rows} rows does not split into {w} equal shares; use a batch size divisible by {w}"
        )
    step = rows // w
    return batch[r * step : (r + 1) * step]
