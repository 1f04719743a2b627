"""Builder functions for complex numbers: real, imag, conj, angle and complex (abs, the arithmetic
and the reductions that accept complex tensors are the core ones).

As in numpy and JAX, the part functions also take real tensors, without a node of their own: a
real tensor is its own real part and conjugate, its imaginary part is 0 and its angle 0 or pi.
Gradients follow PyTorch's convention (docs/autodiff.md, "Complex numbers").
"""

from __future__ import annotations

import math

from ..dtypes import DEFAULT_FLOAT, is_complex, is_float
from ..tensor import Tensor
from .core import TensorLike, _graph_of, _lift, _promoted, cast, emit, where
from .shape import broadcast_to


def _tensor(x: TensorLike) -> Tensor:
    return _lift(_graph_of([x]), x, None)


def real(x: TensorLike) -> Tensor:
    """The real part (float32 for complex64, float64 for complex128); a real x itself."""
    x = _tensor(x)
    return emit("real", x) if is_complex(x.dtype) else x


def imag(x: TensorLike) -> Tensor:
    """The imaginary part; zeros of x's type for a real x."""
    x = _tensor(x)
    if is_complex(x.dtype):
        return emit("imag", x)
    return broadcast_to(_lift(x.graph, 0, x.dtype), x.shape)


def conj(x: TensorLike) -> Tensor:
    """The complex conjugate re - i im; a real x itself."""
    x = _tensor(x)
    return emit("conj", x) if is_complex(x.dtype) else x


def angle(x: TensorLike) -> Tensor:
    """The argument atan2(imag, real) in (-pi, pi]; for a real x, pi where x < 0 and 0 elsewhere
    (as numpy.angle), in x's float dtype (ints give float32)."""
    x = _tensor(x)
    if is_complex(x.dtype):
        return emit("angle", x)
    x = x if is_float(x.dtype) else cast(x, DEFAULT_FLOAT)
    return where(x < 0, _lift(x.graph, math.pi, x.dtype), 0.0)


def complex(re: TensorLike, im: TensorLike) -> Tensor:
    """re + i im from real parts, broadcast together: complex64 from float32 parts (ints and
    float16 are widened to float32 first), complex128 from float64 ones."""
    _, (re, im) = _promoted(re, im)
    if re.dtype != "float64":
        re, im = cast(re, "float32"), cast(im, "float32")
    return emit("complex", re, im)
