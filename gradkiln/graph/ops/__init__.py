"""Op definitions; importing this package fills the op table."""

from . import (
    autodiff,
    bitwise,
    collective,
    complex,
    control,
    dropout,
    elementwise,
    fused,
    fused_matmul,
    fused_reduce,
    linalg,
    nn,
    random,
    reduce,
    resize,
    select,
    shape,
    sources,
)
