"""The optimizer: a pass manager and passes over the graph (constant folding, CSE, DCE)."""

from . import constant_fold, cse, dce
from .manager import PASSES, PIPELINES, PassContext, PassManager, PassRecord, optimize, register_pass

__all__ = ["PASSES", "PIPELINES", "PassContext", "PassManager", "PassRecord", "optimize", "register_pass"]
