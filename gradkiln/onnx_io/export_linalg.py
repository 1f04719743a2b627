"""ONNX export rules of the linear algebra ops.

einsum is ONNX's Einsum and trace a Mul by the identity and a ReduceSum. ONNX has no inverse,
solve, Cholesky or triangular solve (and onnxruntime's Det takes float32 only), so those ops are
unrolled into standard ONNX ops, one step per row or column, for static matrices of size
n <= MAX_UNROLLED; larger ones raise an ONNXError. Leading batch dims (symbolic too) broadcast
through MatMul and Mul.

- solve, inverse, det, slogdet: Gauss-Jordan elimination with partial pivoting. Step c picks
  the largest |M[r, c]| with r >= c (ArgMax), swaps it into row c by a permutation matrix and
  eliminates column c with the matrix I + (e_c - m_c) e_c^T / m_cc; both act on M and on the
  right-hand side by MatMul (a zero pivot, in a column that is zero from row c down, eliminates
  nothing, as in LU). The pivots give det (their product, negated per swap) and slogdet, so a
  singular A gives det 0 and log|det| -inf, as numpy.
- cholesky: Cholesky-Banachiewicz, one column per step, reading A's lower triangle.
- triangular_solve: forward or back substitution, one row per step.
"""

from __future__ import annotations

import numpy as np

from ..graph import Node, ONNXError
from .dtypes import TO_ONNX
from .export_rules import register_exporter
from .exporter import ExportContext

MAX_UNROLLED = 16


def _size(node: Node) -> int:
    """The static matrix size n of the node's first operand, within the unrolling limit."""
    a = node.graph.type_of(node.inputs[0])
    n = a.shape[-1]
    if not isinstance(n, int) or n > MAX_UNROLLED:
        raise ONNXError(
            f"{node.op} (node {node.label}) of a {a.shape} matrix: ONNX has no {node.op} op, and gradkiln unrolls "
            f"it only for static n <= {MAX_UNROLLED}; compute it outside the model and feed the result as an input"
        )
    return n


class _Builder:
    """Small helpers over ExportContext for one node over (..., n, n) matrices: constants in its
    dtype, rows and columns, transposes."""

    def __init__(self, ctx: ExportContext, node: Node) -> None:
        self.ctx, self.node, self.n = ctx, node, _size(node)
        self.dtype = node.graph.type_of(node.inputs[0]).dtype

    def const(self, value: object) -> str:
        return self.ctx.const(np.asarray(value, dtype=self.dtype), f"{self.node.op}_const")

    def op(self, op_type: str, *inputs: str, **attrs: object) -> str:
        return self.ctx.emit(op_type, list(inputs), None, **attrs)

    def row(self, x: str, i: int) -> str:
        """Row i of x (..., n, m) as (..., 1, m): e_i^T x, a MatMul that broadcasts over any batch
        dims and imports back as one matmul (a Slice would need the symbolic batch dims)."""
        return self.op("MatMul", self.const(np.eye(self.n)[i : i + 1]), x)

    def col(self, x: str, j: int) -> str:
        """Column j of x (..., m, n) as (..., m, 1): x e_j."""
        return self.op("MatMul", x, self.const(np.eye(self.n)[:, j : j + 1]))

    def mT(self, x: str) -> str:  # noqa: N802 (numpy's name)
        rank = len(self.node.graph.type_of(self.node.inputs[0]).shape)
        return self.op("Transpose", x, perm=[*range(rank - 2), rank - 1, rank - 2])


def _gauss_jordan(b: _Builder, m: str, rhs: str | None) -> tuple[str | None, list[str], list[str]]:
    """Eliminate M (..., n, n) to I, applying the same row operations to `rhs`; returns the
    transformed rhs, the pivots (..., 1, 1) and the pivot rows (..., 1, 1) int64 picked per step."""
    n = b.n
    eye, index = np.eye(n), np.arange(n).reshape(1, n)
    pivots, rows = [], []
    for c in range(n):
        column = b.op("Abs", b.col(m, c))
        above = (np.arange(n) < c).reshape(n, 1)
        below = b.op("Sub", b.op("Mul", column, b.const(~above)), b.const(above))  # rows < c: -1, never win
        p = b.op("ArgMax", below, axis=-2, keepdims=1)
        picked = b.op("Cast", b.op("Equal", p, b.ctx.ints(index.reshape(-1), "rows")), to=TO_ONNX[b.dtype])
        e_c = eye[c].reshape(1, n)
        p_col, e_row, e_col = b.mT(picked), b.const(e_c), b.const(e_c.T)
        swap = b.op("Sub", b.const(eye - e_c.T @ e_c), b.op("MatMul", p_col, picked))
        swap = b.op("Add", swap, b.op("Add", b.op("MatMul", e_col, picked), b.op("MatMul", p_col, e_row)))
        m = b.op("MatMul", swap, m)
        rhs = rhs if rhs is None else b.op("MatMul", swap, rhs)
        pivot = b.row(b.col(m, c), c)
        pivots.append(pivot)
        rows.append(p)
        if c == n - 1 and rhs is None:
            break
        usable = b.op("Where", b.op("Equal", pivot, b.const(0.0)), b.const(1.0), pivot)  # a zero column stays
        shift = b.op("Div", b.op("Sub", e_col, b.col(m, c)), usable)
        step = b.op("Add", b.const(eye), b.op("Mul", shift, e_row))
        m = b.op("MatMul", step, m) if c < n - 1 else m
        rhs = rhs if rhs is None else b.op("MatMul", step, rhs)
    return rhs, pivots, rows


def _swap_signs(b: _Builder, rows: list[str]) -> list[str]:
    """Per step, 1 where the pivot stayed in its row, -1 where rows were swapped."""
    stayed = [b.op("Cast", b.op("Equal", p, b.ctx.ints([c], "row")), to=TO_ONNX[b.dtype]) for c, p in enumerate(rows)]
    return [b.op("Sub", b.op("Mul", s, b.const(2.0)), b.const(1.0)) for s in stayed]


def _fold(b: _Builder, op_type: str, parts: list[str]) -> str:
    out = parts[0]
    for part in parts[1:]:
        out = b.op(op_type, out, part)
    return out


def _squeezed(b: _Builder, x: str, outs: list[str]) -> str:
    """(..., 1, 1) as (...)."""
    return b.ctx.emit("Squeeze", [x, b.ctx.ints([-2, -1], "axes")], outs)


@register_exporter("solve")
def _solve(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    b = _Builder(ctx, node)
    x, _, _ = _gauss_jordan(b, ins[0], ins[1])
    ctx.emit("Identity", [x], outs)


@register_exporter("inverse")
def _inverse(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    b = _Builder(ctx, node)
    n = b.n
    x, _, _ = _gauss_jordan(b, ins[0], b.const(np.eye(n)))
    ctx.emit("Identity", [x], outs)


@register_exporter("det")
def _det(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    b = _Builder(ctx, node)
    _, pivots, rows = _gauss_jordan(b, ins[0], None)
    _squeezed(b, _fold(b, "Mul", pivots + _swap_signs(b, rows)), outs)


@register_exporter("slogdet")
def _slogdet(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    b = _Builder(ctx, node)
    _, pivots, rows = _gauss_jordan(b, ins[0], None)
    sign = _fold(b, "Mul", [b.op("Sign", p) for p in pivots] + _swap_signs(b, rows))
    logabs = _fold(b, "Add", [b.op("Log", b.op("Abs", p)) for p in pivots])
    first = ctx.ints([0], "axes")
    parts = [b.op("Unsqueeze", _squeezed(b, x, [ctx.fresh("slogdet_part")]), first) for x in (sign, logabs)]
    ctx.emit("Concat", parts, outs, axis=0)


@register_exporter("cholesky")
def _cholesky(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Column j: v = A[:, j] - L[:, :j] L[j, :j]^T, then v / sqrt(v[j]) on rows >= j."""
    b = _Builder(ctx, node)
    n = b.n
    columns: list[str] = []
    for j in range(n):
        v = b.col(ins[0], j)
        if columns:
            done = columns[0] if len(columns) == 1 else b.op("Concat", *columns, axis=-1)
            v = b.op("Sub", v, b.op("MatMul", done, b.mT(b.row(done, j))))
        scaled = b.op("Div", v, b.op("Sqrt", b.row(v, j)))
        columns.append(b.op("Mul", scaled, b.const((np.arange(n) >= j).reshape(n, 1))))
    ctx.emit("Concat", columns, outs, axis=-1)


@register_exporter("triangular_solve")
def _triangular_solve(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    """Row i of X: (B[i] - op(T)[i] X) / op(T)[i, i], X holding zeros in the rows not solved yet."""
    b = _Builder(ctx, node)
    n = b.n
    lower, transpose = node.attrs["lower"], node.attrs["transpose"]
    m = b.mT(ins[0]) if transpose else ins[0]
    x = b.op("Mul", ins[1], b.const(0.0))
    order = range(n) if lower != transpose else range(n - 1, -1, -1)
    for i in order:
        row = b.row(m, i)
        solved = b.op("Div", b.op("Sub", b.row(ins[1], i), b.op("MatMul", row, x)), b.col(row, i))
        x = b.op("Add", x, b.op("Mul", b.const(np.eye(n)[:, i : i + 1]), solved))
    ctx.emit("Identity", [x], outs)


@register_exporter("einsum")
def _einsum(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    ctx.emit("Einsum", ins, outs, equation=node.attrs["subscripts"])


@register_exporter("trace")
def _trace(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    shape = node.graph.type_of(node.inputs[0]).shape
    if not all(isinstance(d, int) for d in shape[-2:]):
        raise ONNXError(f"trace (node {node.label}): the matrix dims of {shape} must be static to export")
    eye = ctx.const(np.eye(*shape[-2:], dtype=node.types[0].dtype), "trace_eye")
    diagonal = ctx.emit("Mul", [ins[0], eye])
    ctx.emit("ReduceSum", [diagonal, ctx.ints([-2, -1], "axes")], outs, keepdims=0)
