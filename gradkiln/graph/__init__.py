"""The graph IR: types, the op table, the graph, tensors, the builder and tracing.

Depends on nothing else in gradkiln; every other layer depends on it.
"""

from . import builder, ops  # builder: Tensor's operators are set when it loads
from .errors import (
    AnomalyError,
    DistributedError,
    DTypeError,
    GradientError,
    GradkilnError,
    GraphError,
    IndexOutOfRangeError,
    LoweringError,
    ONNXError,
    ShapeError,
    UnsupportedOpError,
    VizError,
)
from .ir import Graph, Node, SourceLocation, Value, current_graph
from .opdef import OPS, OpDef, attrs_key, get_op, register_op
from .tensor import Tensor
from .types import Dim, TensorType, symbol
from .verify import verify

__all__ = [
    "OPS",
    "AnomalyError",
    "DTypeError",
    "Dim",
    "DistributedError",
    "GradientError",
    "GradkilnError",
    "Graph",
    "GraphError",
    "IndexOutOfRangeError",
    "LoweringError",
    "Node",
    "ONNXError",
    "OpDef",
    "ShapeError",
    "SourceLocation",
    "Tensor",
    "TensorType",
    "UnsupportedOpError",
    "Value",
    "VizError",
    "attrs_key",
    "current_graph",
    "get_op",
    "register_op",
    "symbol",
    "verify",
]
