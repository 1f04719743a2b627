"""The optimizer: a pass manager and passes over the graph (constant folding, simplification, CSE,
DCE, fusion, autocast, rematerialization) and memory planning."""

from . import constant_fold, cse, dce, fusion, simplify
from .autocast import autocast
from .manager import PASSES, PIPELINES, PassContext, PassManager, PassRecord, optimize, register_pass
from .memory import MemoryPlan, greedy_schedule, plan_memory
from .remat import RematReport, rematerialize

__all__ = [
    "PASSES",
    "PIPELINES",
    "MemoryPlan",
    "PassContext",
    "PassManager",
    "PassRecord",
    "RematReport",
    "autocast",
    "greedy_schedule",
    "optimize",
    "plan_memory",
    "register_pass",
    "rematerialize",
]
