"""Relax emitters of the linear algebra ops.

einsum is Relax's `R.einsum`; trace a TE reduction over the diagonal. Relax has no
factorizations, so inverse, solve, det, slogdet, cholesky and triangular_solve call small-matrix
kernels: TIR functions over a (batch, n, n) array, built once per matrix size n and dtype (the
batch and the right-hand side's column count stay symbolic), with one block per matrix whose body
is serial loops over local buffers. On GPU targets dlight binds the batch loop to threads, so
each thread factors one matrix. They suit the small matrices of models (n up to a few dozen),
not large dense algebra: each matrix takes O(n^3) scalar steps on one thread.

- solve: Gauss-Jordan elimination with partial pivoting on [A | B]; inverse solves with I.
- slogdet: LU with partial pivoting, accumulating sign and log|pivot|; det is sign * exp(log|det|).
  A zero pivot gives sign 0 and log|det| = -inf (det 0), as numpy.
- cholesky: Cholesky-Banachiewicz, reading the lower triangle only (NaN where A is not positive
  definite; numpy raises there).
- triangular_solve: forward or back substitution over op(triangle of A).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
from tvm import relax, te
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)
from tvm.script import tirx as T  # noqa: N812 (the spelling TVM uses)

from ....graph import Node
from ....graph.types import Dim, shape_size
from .context import EmitContext, register_emitter


@register_emitter("einsum")
def _einsum(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    return R.einsum(args, node.attrs["subscripts"])


@register_emitter("trace")
def _trace(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    def compute(x: te.Tensor) -> te.Tensor:
        k = te.reduce_axis((0, te.min(x.shape[-2], x.shape[-1])), name="k")
        return te.compute(x.shape[:-2], lambda *b: te.sum(x[(*b, k, k)], axis=k), name="trace")

    return ctx.bb.emit_te(compute, args[0], primfunc_name_hint="trace")


# -- kernels --------------------------------------------------------------------------------------
def _right_hand_side_kernel(n: int, dtype: str, body: Callable) -> T.PrimFunc:
    """A kernel of A (batch, n, n) and B (batch, n, k) giving X (batch, n, k): one block per
    matrix, whose body is the macro `body(a, b, x, s, k)` for the matrix s."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(a_handle: T.handle, b_handle: T.handle, x_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch, k = T.int64(), T.int64()
        a = T.match_buffer(a_handle, (batch, n, n), dtype)
        b = T.match_buffer(b_handle, (batch, n, k), dtype)
        x = T.match_buffer(x_handle, (batch, n, k), dtype)
        for t in T.serial(batch):
            with T.sblock("matrix"):
                s = T.axis.spatial(batch, t)
                T.reads(a[s, 0:n, 0:n], b[s, 0:n, 0:k])
                T.writes(x[s, 0:n, 0:k])
                body(a, b, x, s, k)

    return kernel


@functools.cache
def solve_kernel(n: int, dtype: str) -> T.PrimFunc:
    """X (batch, n, k) with A X = B: Gauss-Jordan with partial pivoting, B copied into X first."""

    @T.macro
    def solve(a, b, x, s, k):
        m = T.sblock_alloc_buffer((n, n), dtype, scope="local")
        pivot = T.sblock_alloc_buffer((1,), "int32", scope="local")
        for i, j in T.grid(n, n):
            m[i, j] = a[s, i, j]
        for i, j in T.grid(n, k):
            x[s, i, j] = b[s, i, j]
        for c in T.serial(n):
            pivot[0] = c
            for r in T.serial(c + 1, n):
                if T.abs(m[r, c]) > T.abs(m[pivot[0], c]):
                    pivot[0] = r
            p = pivot[0]
            for j in T.serial(n):
                held = m[c, j]
                m[c, j] = m[p, j]
                m[p, j] = held
            for j in T.serial(k):
                held = x[s, c, j]
                x[s, c, j] = x[s, p, j]
                x[s, p, j] = held
            d = m[c, c]
            for j in T.serial(n):
                m[c, j] = m[c, j] / d
            for j in T.serial(k):
                x[s, c, j] = x[s, c, j] / d
            for r in T.serial(n):
                if r != c:
                    f = m[r, c]
                    for j in T.serial(n):
                        m[r, j] = m[r, j] - f * m[c, j]
                    for j in T.serial(k):
                        x[s, r, j] = x[s, r, j] - f * x[s, c, j]

    return _right_hand_side_kernel(n, dtype, solve)


@functools.cache
def slogdet_kernel(n: int, dtype: str) -> T.PrimFunc:
    """(2, batch): sign and log|det| by LU with partial pivoting."""

    @T.prim_func(private=True, s_tir=True)
    def slogdet(a_handle: T.handle, out_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        a = T.match_buffer(a_handle, (batch, n, n), dtype)
        out = T.match_buffer(out_handle, (2, batch), dtype)
        for t in T.serial(batch):
            with T.sblock("matrix"):
                s = T.axis.spatial(batch, t)
                T.reads(a[s, 0:n, 0:n])
                T.writes(out[0:2, s])
                m = T.sblock_alloc_buffer((n, n), dtype, scope="local")
                pivot = T.sblock_alloc_buffer((1,), "int32", scope="local")
                for i, j in T.grid(n, n):
                    m[i, j] = a[s, i, j]
                out[0, s] = T.Cast(dtype, 1)
                out[1, s] = T.Cast(dtype, 0)
                for c in T.serial(n):
                    pivot[0] = c
                    for r in T.serial(c + 1, n):
                        if T.abs(m[r, c]) > T.abs(m[pivot[0], c]):
                            pivot[0] = r
                    p = pivot[0]
                    if p != c:
                        out[0, s] = -out[0, s]
                        for j in T.serial(n):
                            held = m[c, j]
                            m[c, j] = m[p, j]
                            m[p, j] = held
                    d = m[c, c]
                    out[0, s] = out[0, s] * (T.Cast(dtype, d > T.Cast(dtype, 0)) - T.Cast(dtype, d < T.Cast(dtype, 0)))
                    out[1, s] = out[1, s] + T.log(T.abs(d))
                    if d != T.Cast(dtype, 0):
                        for r in T.serial(c + 1, n):
                            f = m[r, c] / d
                            for j in T.serial(c, n):
                                m[r, j] = m[r, j] - f * m[c, j]

    return slogdet


@functools.cache
def cholesky_kernel(n: int, dtype: str) -> T.PrimFunc:
    """L (batch, n, n) with A = L L^T, from the lower triangle of A."""

    @T.prim_func(private=True, s_tir=True)
    def cholesky(a_handle: T.handle, l_handle: T.handle):
        T.func_attr({"tir.noalias": True})
        batch = T.int64()
        a = T.match_buffer(a_handle, (batch, n, n), dtype)
        lower_factor = T.match_buffer(l_handle, (batch, n, n), dtype)
        for t in T.serial(batch):
            with T.sblock("matrix"):
                s = T.axis.spatial(batch, t)
                T.reads(a[s, 0:n, 0:n])
                T.writes(lower_factor[s, 0:n, 0:n])
                acc = T.sblock_alloc_buffer((1,), dtype, scope="local")
                for i, j in T.grid(n, n):
                    lower_factor[s, i, j] = T.Cast(dtype, 0)
                for j in T.serial(n):
                    for i in T.serial(j, n):
                        acc[0] = a[s, i, j]
                        for q in T.serial(j):
                            acc[0] = acc[0] - lower_factor[s, i, q] * lower_factor[s, j, q]
                        if i == j:
                            lower_factor[s, j, j] = T.sqrt(acc[0])
                        else:
                            lower_factor[s, i, j] = acc[0] / lower_factor[s, j, j]

    return cholesky


@functools.cache
def triangular_solve_kernel(n: int, dtype: str, lower: bool, transpose: bool) -> T.PrimFunc:
    """X (batch, n, k) with op(T) X = B: substitution in the order the triangle allows. Element
    (i, j) of op(T) is a[i, j], or a[j, i] when transposed; forward substitution runs i upwards
    over the solved j < i, back substitution downwards over j > i."""
    t = int(transpose)
    f = int(lower != transpose)

    @T.macro
    def triangular_solve(a, b, x, s, k):
        acc = T.sblock_alloc_buffer((1,), dtype, scope="local")
        for step, col in T.grid(n, k):
            i = f * step + (1 - f) * (n - 1 - step)
            acc[0] = b[s, i, col]
            for j in T.serial(n):
                if f * (i - j) + (1 - f) * (j - i) > 0:
                    acc[0] = acc[0] - a[s, (1 - t) * i + t * j, (1 - t) * j + t * i] * x[s, j, col]
            x[s, i, col] = acc[0] / a[s, i, i]

    return _right_hand_side_kernel(n, dtype, triangular_solve)


# -- emitters -------------------------------------------------------------------------------------
def _batch(node: Node) -> tuple[Dim, ...]:
    """The (broadcast) batch dims of the node's output."""
    shape = node.types[0].shape
    return shape[1:] if node.op == "slogdet" else shape if node.op == "det" else shape[:-2]


def _flat(ctx: EmitContext, x: relax.Expr, batch: tuple[Dim, ...], tail: tuple[Dim, ...]) -> relax.Expr:
    """x broadcast to (*batch, *tail) and reshaped to (prod(batch), *tail)."""
    full = relax.ShapeExpr(ctx.dim.shape((*batch, *tail)))
    return R.reshape(R.broadcast_to(x, full), ctx.dim.shape((shape_size(batch), *tail)))


def _call_kernel(
    ctx: EmitContext, node: Node, name: str, kernel: T.PrimFunc, args: list[relax.Expr], out: tuple
) -> relax.Expr:
    """call_tir of `kernel` (added to the module once, as `name`_dtype) giving `out`-shaped values."""
    gv = ctx.bb.add_func(kernel, f"{name}_{node.types[0].dtype}")
    sinfo = relax.TensorType(ctx.dim.shape(out), node.types[0].dtype)
    return ctx.bb.emit(relax.call_tir(gv, args, sinfo))


def _matrix_args(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> tuple[list[relax.Expr], int, tuple]:
    """The operands flattened to one batch axis, the matrix size n, and the output's batch dims."""
    batch = _batch(node)
    shapes = [node.graph.type_of(v).shape for v in node.inputs]
    n = shapes[0][-1]
    return [_flat(ctx, a, batch, tuple(s[-2:])) for a, s in zip(args, shapes)], n, batch


def _solve_like(ctx: EmitContext, node: Node, flat: list[relax.Expr], name: str, kernel: T.PrimFunc) -> relax.Expr:
    """Call a (batch, n, n), (batch, n, k) -> (batch, n, k) kernel and restore the batch dims."""
    batch, (n, columns) = _batch(node), node.types[0].shape[-2:]
    x = _call_kernel(ctx, node, name, kernel, flat, (shape_size(batch), n, columns))
    return R.reshape(x, ctx.dim.shape(node.types[0].shape))


@register_emitter("solve")
def _solve(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    flat, n, _ = _matrix_args(ctx, node, args)
    return _solve_like(ctx, node, flat, "solve", solve_kernel(n, node.types[0].dtype))


@register_emitter("inverse")
def _inverse(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    (a,), n, batch = _matrix_args(ctx, node, args)
    dtype = node.types[0].dtype
    eye = _flat(ctx, relax.const(np.eye(n, dtype=dtype), dtype), batch, (n, n))
    return _solve_like(ctx, node, [a, eye], "solve", solve_kernel(n, dtype))


@register_emitter("triangular_solve")
def _triangular_solve(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    flat, n, _ = _matrix_args(ctx, node, args)
    kernel = triangular_solve_kernel(n, node.types[0].dtype, node.attrs["lower"], node.attrs["transpose"])
    return _solve_like(ctx, node, flat, "triangular_solve", kernel)


@register_emitter("cholesky")
def _cholesky(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    flat, n, batch = _matrix_args(ctx, node, args)
    kernel = cholesky_kernel(n, node.types[0].dtype)
    out = _call_kernel(ctx, node, "cholesky", kernel, flat, (shape_size(batch), n, n))
    return R.reshape(out, ctx.dim.shape(node.types[0].shape))


def _slogdet_flat(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> tuple[relax.Expr, tuple]:
    flat, n, batch = _matrix_args(ctx, node, args)
    kernel = slogdet_kernel(n, node.types[0].dtype)
    return _call_kernel(ctx, node, "slogdet", kernel, flat, (2, shape_size(batch))), batch


@register_emitter("slogdet")
def _slogdet(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    both, _ = _slogdet_flat(ctx, node, args)
    return R.reshape(both, ctx.dim.shape(node.types[0].shape))


@register_emitter("det")
def _det(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    both, batch = _slogdet_flat(ctx, node, args)
    sign, logabs = (R.squeeze(R.strided_slice(both, [0], [i], [i + 1]), [0]) for i in (0, 1))
    return R.reshape(R.multiply(sign, R.exp(logabs)), ctx.dim.shape(batch))
