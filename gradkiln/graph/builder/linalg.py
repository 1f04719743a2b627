"""Builder functions of the linear algebra ops, and norms composed from existing ops.

Exposed as `gk.linalg` (like `torch.linalg`) and, except `trace` (`gk.trace` traces
functions), at the top level: `gk.einsum`, `gk.inv`, `gk.det`, `gk.slogdet`, `gk.solve`,
`gk.cholesky`, `gk.triangular_solve`, `gk.norm`. Matrices are the last two axes.
"""

from __future__ import annotations

import builtins
import math
import string
from typing import Sequence

from ..errors import ShapeError, UnsupportedOpError
from ..ops.linalg import parse_subscripts
from ..tensor import Tensor
from ..types import normalize_axes, normalize_axis
from .core import TensorLike, _promoted, _unary_operand, cast, emit, not_equal, where
from .elementwise import abs, pow, sqrt
from .reduce import max, min, sum
from .shape import expand_dims, squeeze, transpose

__all__ = [
    "cholesky",
    "det",
    "einsum",
    "inv",
    "matrix_transpose",
    "norm",
    "slogdet",
    "solve",
    "trace",
    "triangular_solve",
]


def einsum(subscripts: str, *operands: TensorLike) -> Tensor:
    """numpy.einsum: "ij,jk->ik", the implicit form "ij,jk" (output: the letters seen once, in
    order) and "..." for leading axes ("...ij,...jk->...ik"). Dims must agree per letter."""
    _, tensors = _promoted(*operands)
    return emit("einsum", *tensors, subscripts=explicit_subscripts(subscripts, [t.ndim for t in tensors]))


def explicit_subscripts(subscripts: str, ranks: Sequence[int]) -> str:
    """`subscripts` with "..." replaced by fresh letters (right-aligned) and the output spelled out."""
    lhs, arrow, out = subscripts.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ShapeError(f"einsum: {subscripts!r} names {len(terms)} operands, got {len(ranks)}")
    spare = [c for c in string.ascii_letters if c not in subscripts]
    spans = [rank - len(term.replace("...", "")) if "..." in term else 0 for term, rank in zip(terms, ranks)]
    width = builtins.max(spans, default=0)
    if builtins.min(spans, default=0) < 0:
        raise ShapeError(f"einsum: {subscripts!r} names more axes than operands of ranks {list(ranks)} have")
    fresh = "".join(spare[:width])
    terms = [t.replace("...", fresh[width - s :]) for t, s in zip(terms, spans)]
    if not arrow:
        seen = "".join(terms)
        out = fresh + "".join(sorted(c for c in set(seen) if seen.count(c) == 1 and c not in fresh))
    explicit = f"{','.join(terms)}->{out.replace('...', fresh)}"
    parse_subscripts(explicit)
    return explicit


def matrix_transpose(x: Tensor) -> Tensor:
    """x with its last two axes swapped."""
    return transpose(x, (*range(x.ndim - 2), x.ndim - 1, x.ndim - 2))


def inv(a: TensorLike) -> Tensor:
    """The inverse of each (..., n, n) matrix (n static); gradient -A^-T G A^-T."""
    return emit("inverse", _unary_operand(a))


def det(a: TensorLike) -> Tensor:
    """The determinant of each (..., n, n) matrix; gradient G det(A) A^-T (singular A: inf/nan)."""
    return emit("det", _unary_operand(a))


def slogdet(a: TensorLike) -> tuple[Tensor, Tensor]:
    """(sign, log|det|) of each (..., n, n) matrix, PyTorch's and JAX's pair: det = sign * exp(logabsdet).
    The sign has no gradient; log|det|'s is G A^-T."""
    both = emit("slogdet", _unary_operand(a))
    return both[0], both[1]


def solve(a: TensorLike, b: TensorLike) -> Tensor:
    """X with A X = B: A (..., n, n), B (..., n, k) or a vector (n,); batch dims broadcast."""
    _, (a, b) = _promoted(a, b)
    if b.ndim == 1:
        return squeeze(emit("solve", a, expand_dims(b, 1)), -1)
    return emit("solve", a, b)


def cholesky(a: TensorLike) -> Tensor:
    """The lower factor L of A = L L^T (A symmetric positive definite; only its lower triangle is
    read). The gradient is Murray's (2016), symmetric as PyTorch's."""
    return emit("cholesky", _unary_operand(a))


def triangular_solve(a: TensorLike, b: TensorLike, lower: bool = True, transpose: bool = False) -> Tensor:
    """X with op(T) X = B, T the lower (or upper) triangle of A, op(T) = T^T when `transpose`
    (B is (..., n, k)); the other triangle of A is ignored and gets no gradient."""
    _, (a, b) = _promoted(a, b)
    return emit("triangular_solve", a, b, lower=bool(lower), transpose=bool(transpose))


def trace(x: TensorLike) -> Tensor:
    """The sum of the main diagonal of the last two axes (`gk.linalg.trace`)."""
    return emit("trace", _unary_operand(x))


def norm(
    x: TensorLike, ord: float | str | None = None, axis: int | Sequence[int] | None = None, keepdims: bool = False
) -> Tensor:
    """torch.linalg.norm: a vector norm over one axis (ord 2 by default, any p, inf, -inf, 0) or a
    matrix norm over two ('fro' by default, 1, -1, inf, -inf). With axis None, x must be 1-D or
    2-D unless ord is None (then the 2-norm of all elements). At x = 0 the gradient of the
    2-norm and p-norms is 0 (PyTorch's subgradient), not NaN."""
    x = _unary_operand(x)
    if axis is None and ord is not None and x.ndim not in (1, 2):
        raise ShapeError(f"norm: ord={ord!r} needs axis for a tensor of rank {x.ndim} (or a 1-D / 2-D tensor)")
    axes = normalize_axes(axis, x.ndim)
    if ord is None or (len(axes) > 2 and ord in (2, "fro")):
        out = _power_norm(x, axes, 2.0)
    elif len(axes) == 1:
        out = _vector_norm(x, axes, ord)
    elif len(axes) == 2:
        out = _matrix_norm(x, _ordered(axis, x.ndim) if axis is not None else axes, ord)
    else:
        raise ShapeError(f"norm: ord={ord!r} takes one axis (vector) or two (matrix), got axes {axes}")
    return out if keepdims else squeeze(out, axes)


def _vector_norm(x: Tensor, axes: tuple[int, ...], ord: float | str) -> Tensor:
    if ord == math.inf:
        return max(abs(x), axes, keepdims=True)
    if ord == -math.inf:
        return min(abs(x), axes, keepdims=True)
    if ord == 0:
        return sum(cast(not_equal(x, 0.0), x.dtype), axes, keepdims=True)
    if ord == 1:
        return sum(abs(x), axes, keepdims=True)
    if isinstance(ord, str):
        raise ShapeError(f"norm: ord={ord!r} is a matrix norm; give two axes")
    return _power_norm(x, axes, float(ord))


def _power_norm(x: Tensor, axes: tuple[int, ...], p: float) -> Tensor:
    """sum(|x|**p) ** (1/p) whose gradient is 0, not NaN, where every element is 0."""
    total = sum(x * x if p == 2 else pow(abs(x), p), axes, keepdims=True)
    positive = total > 0.0
    safe = where(positive, total, 1.0)
    return where(positive, sqrt(safe) if p == 2 else pow(safe, 1.0 / p), 0.0)


def _ordered(axis: Sequence[int], rank: int) -> tuple[int, ...]:
    """The (row, column) axes as given: (1, 0) takes the norm of the transpose, as torch does."""
    return tuple(normalize_axis(a, rank) for a in axis)


def _matrix_norm(x: Tensor, axes: tuple[int, ...], ord: float | str) -> Tensor:
    rows, cols = axes
    if ord == "fro":
        return _power_norm(x, axes, 2.0)
    if ord in (1, -1, math.inf, -math.inf):
        summed, over = (rows, cols) if ord in (1, -1) else (cols, rows)
        extreme = max if ord > 0 else min
        return extreme(sum(abs(x), summed, keepdims=True), over, keepdims=True)
    raise UnsupportedOpError(
        f"norm: matrix ord={ord!r} needs singular values (no SVD op yet); use 'fro', 1, -1, inf or -inf"
    )


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """numpy matmul: batched over leading axes; 1-D operands are treated as vectors."""
    _, (a, b) = _promoted(a, b)
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, 1) if b.ndim == 1 else b
    out = emit("matmul", a2, b2)
    drop = ([out.ndim - 2] if a.ndim == 1 else []) + ([out.ndim - 1] if b.ndim == 1 else [])
    return squeeze(out, drop) if drop else out
