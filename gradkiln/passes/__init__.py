"""The optimizer: a pass manager and passes over the graph (constant folding, simplification, CSE,
DCE) and memory planning."""

from . import constant_fold, cse, dce, simplify
from .manager import PASSES, PIPELINES, PassContext, PassManager, PassRecord, optimize, register_pass
from .memory import MemoryPlan, greedy_schedule, plan_memory

__all__ = [
    "PASSES",
    "PIPELINES",
    "MemoryPlan",
    "PassContext",
    "PassManager",
    "PassRecord",
    "greedy_schedule",
    "optimize",
    "plan_memory",
    "register_pass",
]
