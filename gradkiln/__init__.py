"""gradkiln: a symbolic graph compiler for automatic differentiation.

Build a static graph with the define-and-run API, derive gradient graphs symbolically,
optimize, and compile with numpy or TVM; import and export ONNX; render with Graphviz.
"""

from . import onnx_io, passes, symbolic, viz
from .graph import (
    DTypeError,
    GradientError,
    GradkilnError,
    Graph,
    GraphError,
    LoweringError,
    ONNXError,
    ShapeError,
    Tensor,
    TensorType,
    UnsupportedOpError,
    VizError,
    spec,
    trace,
)
from .graph.builder import (
    abs,
    add,
    broadcast_to,
    cast,
    concat,
    constant,
    cross_entropy,
    div,
    emit,
    equal,
    exp,
    expand_dims,
    greater,
    greater_equal,
    input,
    less,
    less_equal,
    log,
    log_softmax,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    mul,
    neg,
    not_equal,
    one_hot,
    pad,
    param,
    pow,
    relu,
    reshape,
    sigmoid,
    sign,
    size,
    slice,
    softmax,
    sqrt,
    squeeze,
    sub,
    sum,
    tanh,
    transpose,
    where,
)
from .lowering import compile
from .passes import optimize
from .symbolic import grad, vjp

__version__ = "0.1.0"
