"""The define-and-run builder API: one namespace for the functions that add nodes.

Every function adds nodes to the graph of its tensor operands (or the open graph) and returns
`Tensor` handles. Python scalars are weakly typed: they take the dtype of the tensor they meet.
The modules follow the op families: `core` (sources, emitting, promotion, where/cast/clip, the
reductions and softmax), `elementwise` (one function per row of `graph/ops/elementwise_table.py`),
`reduce` (argmax/argmin), `shape` (shape ops and indexing), `select` (sort, topk, gather, flip,
dropout, stack, split, tile, repeat, one_hot), `linalg` (matmul, einsum, solve, ...), `nn`
(convolution, pooling, take, embedding), `layers` (normalisations, losses, attention),
`control`, `complex`, `bitwise`, `random`, `resize`; `operators` installs them as `Tensor`'s
Python operators and methods.
"""

from . import operators
from .bitwise import bitwise_and, bitwise_not, bitwise_or, bitwise_xor, left_shift, right_shift
from .complex import angle, complex, conj, imag, real
from .control import cond, scan, while_loop
from .core import (
    TensorLike,
    cast,
    clip,
    constant,
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
    not_equal,
    param,
    stop_gradient,
    where,
)
from .elementwise import *  # noqa: F403  (one builder function per row of the elementwise table)
from .layers import (
    batch_norm,
    bce_with_logits,
    cross_entropy,
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
    matmul,
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
from .reduce import (
    argmax,
    argmin,
    cumprod,
    cumsum,
    log_softmax,
    logsumexp,
    max,
    mean,
    min,
    prod,
    size,
    softmax,
    std,
    sum,
    var,
)
from .resize import resize
from .select import (
    argsort,
    dropout,
    flip,
    gather_elements,
    one_hot,
    repeat,
    scatter_elements_add,
    sort,
    split,
    stack,
    tile,
    topk,
)
from .shape import (
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
