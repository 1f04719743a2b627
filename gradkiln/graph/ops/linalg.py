"""Linear algebra ops: batched matmul, einsum, inverse, det, slogdet, solve, cholesky, triangular_solve, trace.

Matrices are the last two axes; leading axes are a batch (symbolic dims allowed) and broadcast
between the operands of solve and triangular_solve as in numpy. The matrix dims of the
factorizing ops (inverse, det, slogdet, solve, cholesky, triangular_solve) must be static ints:
their kernels (TVM) and unrolled ONNX exports are built for one matrix size.

`einsum` takes explicit subscripts without an ellipsis ("ij,jk->ik"); the builder
(`gk.einsum`) expands "..." and the implicit form into that. `slogdet` has one output of shape
(2, *batch): row 0 holds the signs, row 1 log|det| (the builder returns the two as a pair).
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..opdef import OpDef, register_op
from ..types import Dim, TensorType, broadcast_shapes, dims_equal
from .common import require_float, require_numeric, require_same_dtype


def parse_subscripts(subscripts: str) -> tuple[list[str], str]:
    """Explicit einsum subscripts "ab,bc->ac" as (["ab", "bc"], "ac")."""
    if "->" not in subscripts or "." in subscripts:
        raise ShapeError(f"einsum: the op takes explicit subscripts without '...', got {subscripts!r}; use gk.einsum")
    lhs, out = subscripts.replace(" ", "").split("->")
    terms = lhs.split(",")
    if not all(s.isalpha() for s in (*terms, out) if s):
        raise ShapeError(f"einsum: subscripts {subscripts!r} must be letters")
    if len(set(out)) != len(out) or not set(out) <= set("".join(terms)):
        raise ShapeError(f"einsum: the output {out!r} of {subscripts!r} repeats a letter or has one no operand has")
    return terms, out


def letter_dims(subscripts: str, shapes: list[tuple[Dim, ...]]) -> dict[str, Dim]:
    """The dim of each letter, checked to agree across operands (no size-1 broadcasting)."""
    terms, _ = parse_subscripts(subscripts)
    if len(terms) != len(shapes):
        raise ShapeError(f"einsum: {subscripts!r} names {len(terms)} operands, got {len(shapes)}")
    dims: dict[str, Dim] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        if len(term) != len(shape):
            raise ShapeError(f"einsum: operand {k} has shape {shape} but its subscripts {term!r} name {len(term)} axes")
        for letter, d in zip(term, shape):
            if letter in dims and not dims_equal(dims[letter], d):
                raise ShapeError(
                    f"einsum {subscripts!r}: '{letter}' is {dims[letter]} in one operand and {d} in operand {k} "
                    f"(shapes {', '.join(map(str, shapes))}); broadcast_to the operands first"
                )
            dims.setdefault(letter, d)
    return dims


def _einsum_infer(*types: TensorType, subscripts: str) -> tuple[TensorType]:
    dtype = require_same_dtype(*types)
    dims = letter_dims(subscripts, [t.shape for t in types])
    return (TensorType(dtype, tuple(dims[c] for c in parse_subscripts(subscripts)[1])),)


def square_matrix(t: TensorType, op: str) -> int:
    """The static n of a (..., n, n) float32/float64 operand; a ShapeError naming the op otherwise."""
    require_float(t)
    if t.dtype == "float16":
        raise DTypeError(f"{op}: float16 matrices are not supported (as in numpy.linalg); cast to float32 first")
    if t.rank < 2 or not dims_equal(t.shape[-1], t.shape[-2]):
        raise ShapeError(f"{op}: needs square matrices in the last two axes, got shape {t.shape}")
    if not isinstance(t.shape[-1], int):
        raise ShapeError(
            f"{op}: the matrix size {t.shape[-1]} of {t.shape} must be a static int (batch dims may be symbolic)"
        )
    return t.shape[-1]


def _solve_infer(a: TensorType, b: TensorType, op: str) -> tuple[TensorType]:
    require_same_dtype(a, b)
    n = square_matrix(a, op)
    if b.rank < 2 or not dims_equal(b.shape[-2], n):
        raise ShapeError(f"{op}: the right-hand side {b.shape} must be (..., {n}, k) for the matrix {a.shape}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (b.with_shape((*batch, n, b.shape[-1])),)


def _trace_infer(x: TensorType) -> tuple[TensorType]:
    require_float(x)
    if x.rank < 2:
        raise ShapeError(f"trace: needs a matrix (rank >= 2), got shape {x.shape}")
    return (x.with_shape(x.shape[:-2]),)


def _einsum(*xs: np.ndarray, subscripts: str) -> np.ndarray:
    """Operands contracted pairwise from the left, each step keeping the letters still needed.
    numpy's C loops (optimize=False) give the same bits for any memory layout of the operands,
    which the planned executor relies on; BLAS paths (optimize=True) do not."""
    terms, out = parse_subscripts(subscripts)
    acc, have = xs[0], terms[0]
    for k in range(1, len(xs)):
        later = out + "".join(terms[k + 1 :])
        keep = "".join(dict.fromkeys(c for c in have + terms[k] if c in later))
        acc, have = np.einsum(f"{have},{terms[k]}->{keep}", acc, xs[k]), keep
    return np.asarray(np.einsum(f"{have}->{out}", acc), dtype=xs[0].dtype)


def _slogdet(a: np.ndarray) -> np.ndarray:
    sign, logabs = np.linalg.slogdet(a)
    return np.stack([sign, logabs]).astype(a.dtype)


def _triangular_solve(a: np.ndarray, b: np.ndarray, lower: bool, transpose: bool) -> np.ndarray:
    """Back/forward substitution over op(triangle of a), row by row (batched, broadcast)."""
    tri = np.tril(a) if lower else np.triu(a)
    m = np.swapaxes(tri, -1, -2) if transpose else tri
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    m, x = np.broadcast_to(m, (*batch, *m.shape[-2:])), np.array(np.broadcast_to(b, (*batch, *b.shape[-2:])))
    n = m.shape[-1]
    rows = range(n) if lower != transpose else range(n - 1, -1, -1)
    done: list[int] = []
    for i in rows:
        known = np.einsum("...j,...jk->...k", m[..., i, done], x[..., done, :]) if done else 0.0
        x[..., i, :] = (x[..., i, :] - known) / m[..., i, i : i + 1]
        done.append(i)
    return x


def _square(op: str):
    def infer(a: TensorType) -> tuple[TensorType]:
        square_matrix(a, op)
        return (a,)

    return infer


def _determinant(op: str):
    def infer(a: TensorType) -> tuple[TensorType]:
        square_matrix(a, op)
        return (a.with_shape(((2,) if op == "slogdet" else ()) + a.shape[:-2]),)

    return infer


register_op(
    OpDef(
        "einsum",
        _einsum_infer,
        _einsum,
        None,
        doc="Einstein summation; attr `subscripts` explicit ('ij,jk->ik', repeated letters take diagonals).",
    )
)
register_op(OpDef("inverse", _square("inverse"), lambda a: np.linalg.inv(a).astype(a.dtype), 1, doc="Matrix inverse."))
register_op(OpDef("det", _determinant("det"), lambda a: np.asarray(np.linalg.det(a), a.dtype), 1, doc="Determinant."))
register_op(
    OpDef(
        "slogdet", _determinant("slogdet"), _slogdet, 1, doc="(2, *batch): sign of det, then log|det| (PyTorch's pair)."
    )
)
register_op(
    OpDef(
        "solve",
        lambda a, b: _solve_infer(a, b, "solve"),
        lambda a, b: np.linalg.solve(a, b).astype(b.dtype),
        2,
        doc="X with A X = B; A (..., n, n), B (..., n, k), batch dims broadcast.",
    )
)
register_op(
    OpDef(
        "cholesky",
        _square("cholesky"),
        lambda a: np.linalg.cholesky(a).astype(a.dtype),
        1,
        doc="The lower Cholesky factor L of a symmetric positive definite A = L L^T (reads the lower triangle).",
    )
)
register_op(
    OpDef(
        "triangular_solve",
        lambda a, b, lower, transpose: _solve_infer(a, b, "triangular_solve"),
        _triangular_solve,
        2,
        doc="X with op(T) X = B, T the lower (attr lower) or upper triangle of A, op transposes when "
        "attr transpose; the other triangle of A is not read.",
    )
)
register_op(
    OpDef(
        "trace",
        _trace_infer,
        lambda x: np.trace(x, axis1=-2, axis2=-1).astype(x.dtype),
        1,
        doc="The sum of the main diagonal of the last two axes (rectangular allowed).",
    )
)


def _matmul_infer(a: TensorType, b: TensorType) -> tuple[TensorType]:
    dtype = require_same_dtype(a, b)
    require_numeric(a, complex_ok=True)
    if a.rank < 2 or b.rank < 2:
        raise ShapeError("operands must have rank >= 2 (gk.matmul handles vectors)")
    if not dims_equal(a.shape[-1], b.shape[-2]):
        raise ShapeError(
            f"inner dims differ: {a.shape[-1]} (last of the first operand) vs "
            f"{b.shape[-2]} (second-to-last of the second)"
        )
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (TensorType(dtype, batch + (a.shape[-2], b.shape[-1])),)


register_op(OpDef("matmul", _matmul_infer, np.matmul, 2, doc="Batched matmul of rank >= 2 operands."))
