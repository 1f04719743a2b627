"""vjp, jvp and batching rules of the linear algebra ops, written with the builder API and the
linear algebra ops themselves, so gradients of any order stay within these rules.

Conventions (as PyTorch and JAX):
- einsum is multilinear: operand k's cotangent is an einsum of the cotangent with the other
  operands; a letter repeated within an operand (a diagonal) is spread back with an identity.
- inverse: -A^-T G A^-T. det: G det(A) A^-T, and slogdet: G_logabs A^-T (the sign gets none):
  both are inf/nan at a singular A.
- solve: B's cotangent solves with A^T, A's is its negated outer product with X.
- triangular_solve likewise, masked to the triangle that is read.
- cholesky: Murray (2016), symmetrized like PyTorch: A's cotangent is the symmetric
  L^-T Phi(L^T G) L^-1 (Phi: lower triangle, diagonal halved, mirrored), and the jvp reads the
  tangent's symmetric part, so that <J v, u> == <v, J^T u>.
- Batching passes the batch axis as a leading batch dim; einsum gives it a fresh letter.
"""

from __future__ import annotations

import functools
import string
from typing import Sequence

import numpy as np

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.builder.linalg import matrix_transpose as mT  # noqa: N812 (numpy's name)
from ..graph.ops.linalg import letter_dims, parse_subscripts
from ..graph.types import Dim
from .batching import broadcasting_rule, register_batch
from .jvp_rules import Tangents, register_jvp
from .vjp_rules import holomorphic, register_vjp, unbroadcast


def _static(n: Dim, op: str) -> int:
    if not isinstance(n, int):
        raise GradientError(f"{op}: the derivative needs an identity of static size, got the dim {n}")
    return n


def _eye(n: int, m: int, like: Tensor) -> Tensor:
    return gb.constant(np.eye(n, m, dtype=like.dtype), graph=like.graph)


def _triangle(x: Tensor, lower: bool, diagonal: float = 1.0) -> Tensor:
    """x with the other triangle zeroed (and the diagonal scaled by `diagonal`)."""
    n = x.shape[-1]
    mask = np.tril(np.ones((n, n))) if lower else np.triu(np.ones((n, n)))
    mask[np.diag_indices(n)] = diagonal
    return x * gb.constant(mask.astype(x.dtype), graph=x.graph)


for _op in ("inverse", "det", "solve", "cholesky", "triangular_solve", "trace"):
    register_batch(_op)(broadcasting_rule(_op))


# -- einsum -------------------------------------------------------------------------------------
def einsum_operand_grad(subscripts: str, operands: Sequence[Tensor], g: Tensor, k: int) -> Tensor:
    """d <g, einsum(operands)> / d operands[k]: an einsum of g with the other operands; letters
    repeated in operand k get identities, letters only operand k has are broadcast back."""
    terms, out = parse_subscripts(subscripts)
    dims = letter_dims(subscripts, [x.shape for x in operands])
    spare = iter(c for c in string.ascii_letters if c not in subscripts)
    target, parts = "", [(out, g)]
    for c in terms[k]:
        fresh = next(spare) if c in target else c
        if fresh != c:
            parts.append((c + fresh, _eye(_static(dims[c], "einsum"), dims[c], g)))
        target += fresh
    parts += [(t, x) for i, (t, x) in enumerate(zip(terms, operands)) if i != k]
    present = set("".join(t for t, _ in parts))
    kept = "".join(c for c in target if c in present)
    r = gb.emit("einsum", *(x for _, x in parts), subscripts=f"{','.join(t for t, _ in parts)}->{kept}")
    missing = tuple(i for i, c in enumerate(target) if c not in present)
    return gb.broadcast_to(gb.expand_dims(r, missing), operands[k].shape) if missing else r


@register_vjp("einsum")
@holomorphic  # complex operands: conjugated as matmul's
def _einsum(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, subscripts: str) -> list[Tensor]:
    return [einsum_operand_grad(subscripts, inputs, g, k) for k in range(len(inputs))]


@register_jvp("einsum")
def _einsum_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, subscripts: str) -> Tensor:
    parts = [
        gb.emit("einsum", *inputs[:k], t, *inputs[k + 1 :], subscripts=subscripts)
        for k, t in enumerate(tangents)
        if t is not None
    ]
    return functools.reduce(gb.add, parts)


@register_batch("einsum")
def _einsum_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, subscripts: str
) -> Tensor:
    letter = next(c for c in string.ascii_letters if c not in subscripts)
    terms, result = parse_subscripts(subscripts)
    terms = [letter + t if flag else t for t, flag in zip(terms, batched)]
    return gb.emit("einsum", *inputs, subscripts=f"{','.join(terms)}->{letter}{result}")


# -- inverse, det, slogdet ------------------------------------------------------------------------
@register_vjp("inverse")
def _inverse(inputs: tuple[Tensor, ...], y: Tensor, g: Tensor) -> tuple[Tensor]:
    return (-(mT(y) @ g @ mT(y)),)


@register_jvp("inverse")
def _inverse_jvp(inputs: tuple[Tensor, ...], y: Tensor, tangents: Tangents) -> Tensor:
    return -(y @ tangents[0] @ y)


def _matrix_scale(s: Tensor) -> Tensor:
    """A batch of scalars (...) as (..., 1, 1), to scale matrices."""
    return gb.expand_dims(s, (-2, -1)) if s.ndim else gb.reshape(s, (1, 1))


def _log_det_tangent(a: Tensor, t: Tensor) -> Tensor:
    """d log|det A| along t: trace(A^-1 t), as the sum of A^-T * t."""
    return gb.sum(mT(gb.inv(a)) * t, (-2, -1))


@register_vjp("det")
def _det(inputs: tuple[Tensor, ...], d: Tensor, g: Tensor) -> tuple[Tensor]:
    return (_matrix_scale(g * d) * mT(gb.inv(inputs[0])),)


@register_jvp("det")
def _det_jvp(inputs: tuple[Tensor, ...], d: Tensor, tangents: Tangents) -> Tensor:
    return d * _log_det_tangent(inputs[0], tangents[0])


@register_vjp("slogdet")
def _slogdet(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    return (_matrix_scale(g[1]) * mT(gb.inv(inputs[0])),)


@register_jvp("slogdet")
def _slogdet_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    logabs = gb.expand_dims(_log_det_tangent(inputs[0], tangents[0]), 0)
    return gb.concat([zeros_like(logabs), logabs], 0)


@register_batch("slogdet")
def _slogdet_batch(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim) -> Tensor:
    """The op's (2, B, ...) output with the vmap axis moved first."""
    both = gb.emit("slogdet", inputs[0])
    return gb.transpose(both, (1, 0, *range(2, both.ndim)))


# -- solve, triangular_solve ----------------------------------------------------------------------
@register_vjp("solve")
def _solve(inputs: tuple[Tensor, ...], x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    a, b = inputs
    gb_ = gb.emit("solve", mT(a), g)
    return unbroadcast(-(gb_ @ mT(x)), a), unbroadcast(gb_, b)


@register_jvp("solve")
def _solve_jvp(inputs: tuple[Tensor, ...], x: Tensor, tangents: Tangents) -> Tensor:
    (a, _), (ta, tb) = inputs, tangents
    rhs = tb if ta is None else (-(ta @ x) if tb is None else tb - ta @ x)
    return gb.emit("solve", a, gb.broadcast_to(rhs, x.shape))


@register_vjp("triangular_solve")
def _triangular_solve(
    inputs: tuple[Tensor, ...], x: Tensor, g: Tensor, lower: bool, transpose: bool
) -> tuple[Tensor, Tensor]:
    a, b = inputs
    gb_ = gb.triangular_solve(a, g, lower, not transpose)
    ga = -(x @ mT(gb_)) if transpose else -(gb_ @ mT(x))
    return unbroadcast(_triangle(ga, lower), a), unbroadcast(gb_, b)


@register_jvp("triangular_solve")
def _triangular_solve_jvp(
    inputs: tuple[Tensor, ...], x: Tensor, tangents: Tangents, lower: bool, transpose: bool
) -> Tensor:
    (a, _), (ta, tb) = inputs, tangents
    rhs = tb
    if ta is not None:
        tri = _triangle(ta, lower)
        moved = (mT(tri) if transpose else tri) @ x
        rhs = -moved if tb is None else tb - moved
    return gb.triangular_solve(a, gb.broadcast_to(rhs, x.shape), lower, transpose)


# -- cholesky -------------------------------------------------------------------------------------
def _right_solve_lower_transposed(l_: Tensor, y: Tensor) -> Tensor:
    """Y L^-1, as (L^-T Y^T)^T."""
    return mT(gb.triangular_solve(l_, mT(y), True, True))


@register_vjp("cholesky")
def _cholesky(inputs: tuple[Tensor, ...], l_: Tensor, g: Tensor) -> tuple[Tensor]:
    """L^-T S L^-1 with S the symmetric matrix whose lower triangle is tril(L^T G), halved."""
    t = _triangle(mT(l_) @ g, True)
    s = (t + mT(_triangle(t, True, 0.0))) * 0.5
    return (_right_solve_lower_transposed(l_, gb.triangular_solve(l_, s, True, True)),)


@register_jvp("cholesky")
def _cholesky_jvp(inputs: tuple[Tensor, ...], l_: Tensor, tangents: Tangents) -> Tensor:
    """L Phi(L^-1 sym(t) L^-T), Phi: the lower triangle with the diagonal halved."""
    t = tangents[0]
    sym = (t + mT(t)) * 0.5
    inner = mT(gb.triangular_solve(l_, mT(gb.triangular_solve(l_, sym, True, False)), True, False))
    return l_ @ _triangle(inner, True, 0.5)


# -- trace ----------------------------------------------------------------------------------------
@register_vjp("trace")
def _trace(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    n, m = (_static(d, "trace") for d in inputs[0].shape[-2:])
    return (_matrix_scale(g) * _eye(n, m, g),)


@register_jvp("trace")
def _trace_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    return gb.emit("trace", tangents[0])
