"""The define-and-run builder API: sources, op functions, promotion, indexing, composite ops.

Every function adds nodes to the graph of its tensor operands (or the open graph) and returns
`Tensor` handles. Python scalars are weakly typed: they take the dtype of the tensor they meet.
The functions live in `core` (sources, emitting, elementwise ops, reductions), `unary` (one per
row of `graph/ops/elementwise_table.py`), `shapes` (shape
ops and indexing) and `composite` (matmul, argmax/argmin, one_hot, cross entropy), `nn` (convolution, pooling,
indexing) and `layers` (normalisations, losses, attention), `select` (sort, topk, gather, flip, dropout, stack, split,
tile, repeat), `complex` (real, imag, conj, angle, complex); this package is their one namespace.
"""

from . import operators
from .bitwise import bitwise_and, bitwise_not, bitwise_or, bitwise_xor, left_shift, right_shift
from .complex import angle, complex, conj, imag, real
from .composite import (
    argmax,
    argmin,
    cross_entropy,
    matmul,
    one_hot,
)
from .control import cond, scan, while_loop
from .core import (
    TensorLike,
    cast,
    clip,
    constant,
    cumprod,
    cumsum,
    elu,
    emit,
    equal,
    fused,
    fused_matmul,
    fused_reduce,
    gelu,
    greater,
    greater_equal,
    input,
    leaky_relu,
    less,
    less_equal,
    log_softmax,
    logsumexp,
    max,
    mean,
    min,
    not_equal,
    param,
    prod,
    size,
    softmax,
    std,
    stop_gradient,
    sum,
    var,
    where,
)
from .elementwise import *  # noqa: F403  (one builder function per row of the elementwise table)
from .layers import (
    batch_norm,
    bce_with_logits,
    group_norm,
    huber_loss,
    layer_norm,
    mse_loss,
    nll_loss,
    rms_norm,
    scaled_dot_product_attention,
)
from .linalg import (
    cholesky,
    det,
    einsum,
    inv,
    norm,
    slogdet,
    solve,
    triangular_solve,
)
from .nn import (
    avg_pool2d,
    conv1d,
    conv2d,
    conv_transpose2d,
    embedding,
    global_avg_pool2d,
    max_pool2d,
    scatter_add,
    take,
)
from .resize import resize
from .select import (
    argsort,
    dropout,
    flip,
    gather_elements,
    repeat,
    scatter_elements_add,
    sort,
    split,
    stack,
    tile,
    topk,
)
from .shapes import (
    broadcast_to,
    concat,
    expand_dims,
    full,
    full_like,
    getitem,
    ones,
    ones_like,
    pad,
    reshape,
    slice,
    squeeze,
    transpose,
    zeros,
    zeros_like,
)

operators.install()  # Tensor's `+`, `[]`, `.sum()`, ... are the functions above
