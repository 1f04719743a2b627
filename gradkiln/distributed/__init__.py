"""Data-parallel training on torch.distributed, with the collectives as graph ops.

`init_process_group()` joins a torch.distributed group (gloo on CPUs; torchrun's environment) and
registers it for the collective ops (`all_reduce`, `all_gather`, `reduce_scatter`, `broadcast`,
`reduce`: ordinary graph ops with gradients, costs and llvm lowering). `data_parallel(step)` makes
a training step data-parallel (bucketed all_reduce of its gradients); `shard` gives a worker its
share of a batch; `spawn` runs a function in local gloo workers (tests, examples).
Guide: docs/distributed.md.
"""

from ..graph.builder.collective import all_gather, all_reduce, broadcast, reduce, reduce_scatter
from ..graph.errors import DistributedError
from ..passes.communication import CommunicationReport, communication
from .communicator import (
    TorchCommunicator,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    shard,
)
from .data_parallel import DataParallelStep, data_parallel
from .launch import spawn

__all__ = [
    "CommunicationReport",
    "DataParallelStep",
    "DistributedError",
    "TorchCommunicator",
    "all_gather",
    "all_reduce",
    "broadcast",
    "communication",
    "data_parallel",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "reduce",
    "reduce_scatter",
    "shard",
    "spawn",
]
