"""Sample graphs of the op families: math, nn, custom_jvp, linear algebra, selection, fused."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import graph as _graph
from ..graph import builder as gb
from ..graph.ops.elementwise_table import UNARY_ROWS, Unary
from .sample import OpSample, away_from_zero, off_grid, rand


def math_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the math family: the elementwise table's ops with a `domain`, the unary ops with
    attributes, binary mod/floordiv/atan2, reductions."""

    def r(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
        return rand(rng, shape, dtype, low, high)

    def nz(*shape: int) -> np.ndarray:
        return away_from_zero(rng, shape, dtype)

    distinct = (rng.permutation(12).reshape(3, 4) * 0.37 - 2).astype(dtype)
    ints = {"i": np.array([7, -7, 6, -5]), "j": np.array([3, 3, -4, -2])}
    samples = [
        OpSample(row.name, {"x": _draw(row.domain, r, nz)}, getattr(gb, row.name)) for row in _ranged(UNARY_ROWS)
    ]
    samples += [
        OpSample(row.name, {"x": off_grid(rng, (3, 4), dtype)}, lambda x, op=row.name: getattr(gb, op)(x) * x)
        for row in UNARY_ROWS
        if row.domain == "off_grid"
    ]
    return samples + [
        OpSample("gelu", {"x": r(3, 4)}, gb.gelu),
        OpSample("gelu", {"x": r(3, 4)}, lambda x: gb.gelu(x, "tanh"), name="gelu_tanh"),
        OpSample("leaky_relu", {"x": nz(3, 4)}, lambda x: gb.leaky_relu(x, 0.1)),
        OpSample("elu", {"x": nz(3, 4)}, lambda x: gb.elu(x, 1.5)),
        OpSample("clip", {"x": np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)}, lambda x: gb.clip(x, -1.0, 1.0)),
        OpSample("clip", {"x": np.linspace(-2, 2, 12, dtype=dtype)}, lambda x: gb.clip(x, hi=0.5), name="clip_hi"),
        OpSample("atan2", {"a": r(3, 4), "b": nz(4)}, gb.atan2),
        OpSample("mod", {"a": r(3, 4, low=-3, high=3), "b": nz(4)}, gb.mod),
        OpSample("mod", {"x": r(4), **ints}, lambda x, i, j: x * gb.cast(gb.mod(i, j), dtype), name="mod_int"),
        OpSample("floordiv", {"a": r(3, 4, low=-3, high=3), "b": nz(4)}, lambda a, b: gb.floordiv(a, b) * a),
        OpSample(
            "floordiv", {"x": r(4), **ints}, lambda x, i, j: x * gb.cast(gb.floordiv(i, j), dtype), name="floordiv_int"
        ),
        OpSample("min", {"x": distinct}, lambda x: gb.min(x, 1)),
        OpSample("prod", {"x": nz(3, 4)}, lambda x: gb.prod(x, 1)),
        OpSample("prod", {"x": nz(3, 4)}, lambda x: gb.prod(x, 0, keepdims=True), name="prod_keepdims"),
        OpSample("logsumexp", {"x": r(3, 4)}, lambda x: gb.logsumexp(x, 1)),
        OpSample("var", {"x": r(3, 4)}, lambda x: gb.var(x, 1, correction=1)),
        OpSample("var", {"x": r(3, 4)}, lambda x: gb.var(x, 0), shapes={"x": ("N", 4)}, name="var_symbolic"),
        OpSample("std", {"x": r(3, 4)}, lambda x: gb.std(x, 0, keepdims=True)),
        OpSample("argmax", {"x": distinct}, lambda x: x * gb.cast(gb.argmax(x, 1, keepdims=True), dtype)),
        OpSample("argmin", {"x": distinct}, lambda x: gb.sum(x, 0) * gb.cast(gb.argmin(x, 0), dtype)),
        OpSample("cumsum", {"x": r(3, 4)}, lambda x: gb.cumsum(x, 1)),
        OpSample("cumsum", {"x": r(3, 4)}, lambda x: gb.cumsum(x, 0, True, True), name="cumsum_exclusive_reverse"),
        OpSample("cumprod", {"x": nz(3, 4)}, lambda x: gb.cumprod(x, 1)),
    ]


def _ranged(rows: tuple[Unary, ...]) -> list[Unary]:
    """The rows sampled on a range or away from zero (their inputs drawn in table order)."""
    return [row for row in rows if isinstance(row.domain, tuple) or row.domain == "nonzero"]


def _draw(domain: tuple[float, float] | str, r: Callable[..., np.ndarray], nz: Callable[..., np.ndarray]) -> np.ndarray:
    """A 3x4 sample input over a row's domain: uniform in (low, high), or away from zero."""
    return nz(3, 4) if domain == "nonzero" else r(3, 4, low=domain[0], high=domain[1])


def nn_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the nn family: convolutions and pools with stride, padding, dilation and
    groups, and take/scatter_add with repeated and negative indices."""

    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype)

    distinct = (rng.permutation(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) * 0.05 - 3).astype(dtype)  # no ties
    ids = {"i": np.array([[0, 4], [2, -1]]), "j": np.array([2, 0, 2], "int32")}
    conv = {"stride": (2, 1), "padding": ((1, 0), (1, 2)), "dilation": (1, 2), "groups": 2}
    return [
        OpSample("conv2d", {"x": r(2, 4, 5, 5), "w": r(6, 2, 3, 3)}, lambda x, w: gb.conv2d(x, w, **conv)),
        OpSample(
            "conv2d", {"x": r(2, 3, 4, 4), "w": r(2, 3, 2, 2)}, gb.conv2d, shapes={"x": ("N", 3, 4, 4)}, name="conv2d_n"
        ),
        OpSample(
            "conv_transpose2d",
            {"x": r(2, 4, 3, 3), "w": r(4, 3, 2, 2)},
            lambda x, w: gb.conv_transpose2d(x, w, 2, 1, 1, groups=2),
        ),
        OpSample("max_pool2d", {"x": distinct}, lambda x: gb.max_pool2d(x, 3, 2, 1)),
        OpSample("avg_pool2d", {"x": r(2, 3, 5, 5)}, lambda x: gb.avg_pool2d(x, (2, 3), (1, 2), ((1, 1), (1, 0)))),
        OpSample(
            "avg_pool2d",
            {"x": r(2, 3, 5, 4)},
            lambda x: gb.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            name="avg_pool2d_exclude_pad",
        ),
        OpSample("take", {"x": r(5, 3), "i": ids["i"]}, lambda x, i: gb.embedding(x, i)),
        OpSample("take", {"x": r(3, 4), "j": ids["j"]}, lambda x, j: gb.take(x, j, 1), name="take_axis1"),
        OpSample(
            "scatter_add", {"x": r(4, 3), "upd": r(3, 3), "j": ids["j"]}, lambda x, upd, j: gb.scatter_add(x, j, upd)
        ),
    ]


def custom_jvp_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """custom_jvp: a * tanh(b) (b broadcast) whose derivatives, in both modes, come from its jvp rule."""
    from ..symbolic import custom_jvp

    def scaled_tanh(a: _graph.Tensor, b: _graph.Tensor) -> _graph.Tensor:
        return a * gb.tanh(b)

    def scaled_tanh_jvp(primals: tuple, tangents: tuple) -> tuple:
        (a, b), (ta, tb) = primals, tangents
        return scaled_tanh(a, b), ta * gb.tanh(b) + a * (1.0 - gb.tanh(b) ** 2) * tb

    rule = custom_jvp(scaled_tanh).defjvp(scaled_tanh_jvp)
    feeds = {"a": rand(rng, (3, 4), dtype), "b": rand(rng, (4,), dtype)}
    return [OpSample("custom_jvp", feeds, lambda a, b: rule(a, b) * a)]


def linalg_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the linear algebra ops: well-conditioned matrices (the identity times 2 or 3 plus
    small noise), symmetric positive definite ones for cholesky (x x^T + 3 I, so that finite
    differences through x see the symmetric gradient), batches, broadcasting and symbolic batch dims."""

    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype, -0.5, 0.5)

    def conditioned(*shape: int, scale: float = 2.0) -> np.ndarray:
        return (scale * np.eye(shape[-1]) + r(*shape)).astype(dtype)

    def spd(x: _graph.Tensor) -> _graph.Tensor:
        return x @ gb.linalg.matrix_transpose(x) + gb.constant(3 * np.eye(x.shape[-1], dtype=dtype))

    flipped = conditioned(3, 3, 3) * np.array([1.0, -1.0, 1.0], dtype)[:, None, None]  # one negative det
    return [
        OpSample("einsum", {"a": r(2, 3), "b": r(3, 4), "c": r(4)}, lambda a, b, c: gb.einsum("ij,jk,k->ik", a, b, c)),
        OpSample("einsum", {"x": r(2, 3, 3)}, lambda x: gb.einsum("bii->bi", x), name="einsum_diagonal"),
        OpSample(
            "einsum",
            {"x": r(3, 2, 3), "w": r(3, 4)},
            lambda x, w: gb.einsum("...ij,jk", x, w),
            shapes={"x": ("N", 2, 3)},
            name="einsum_ellipsis",
        ),
        OpSample("inverse", {"a": conditioned(2, 3, 3)}, gb.inv),
        OpSample("det", {"a": conditioned(2, 3, 3)}, gb.det, shapes={"a": ("N", 3, 3)}),
        OpSample("slogdet", {"a": flipped}, lambda a: (lambda s, logabs: s * logabs + logabs)(*gb.slogdet(a))),
        OpSample("solve", {"a": conditioned(2, 3, 3), "b": r(3, 2)}, gb.solve),
        OpSample("solve", {"a": conditioned(4, 4), "b": r(4)}, gb.solve, name="solve_vector"),
        OpSample("cholesky", {"x": r(2, 3, 3)}, lambda x: gb.cholesky(spd(x))),
        OpSample("triangular_solve", {"a": conditioned(3, 3), "b": r(3, 2)}, gb.triangular_solve),
        OpSample(
            "triangular_solve",
            {"a": conditioned(3, 3, scale=3.0), "b": r(2, 3, 2)},
            lambda a, b: gb.triangular_solve(a, b, lower=False, transpose=True),
            name="triangular_solve_upper_transposed",
        ),
        OpSample("trace", {"x": r(2, 3, 4)}, gb.linalg.trace),
    ]


def select_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Samples of the selection ops and dropout: distinct values for sort and topk (finite
    differences need no ties), repeated and negative indices for gather/scatter, symbolic batch
    dims, and the shape composites stack, split, tile and repeat together."""

    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype)

    def distinct(*shape: int) -> np.ndarray:
        return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 2).astype(dtype)

    index = {"i": np.array([[0, -1], [2, 2], [1, 0], [-3, 1]]), "j": np.array([[3, 0], [0, 0], [1, -1]], "int32")}

    def top(x: _graph.Tensor, **kw: object) -> _graph.Tensor:
        values, indices = gb.topk(x, 3, **kw)
        return values * gb.cast(indices + 1, dtype)

    def composites(x: _graph.Tensor) -> _graph.Tensor:
        first, second = gb.split(x, [1, 2], 1)
        return gb.stack([gb.tile(first, (1, 2)), gb.repeat(second[:, 1:], 2, 1)], 0) * gb.repeat(x[:, :2], 2, 0)[1:4]

    return [
        OpSample("sort", {"x": distinct(3, 5)}, lambda x: gb.sort(x, 1)),
        OpSample("sort", {"x": distinct(4, 3)}, lambda x: gb.sort(x, 0, True), name="sort_descending"),
        OpSample("argsort", {"x": distinct(3, 5)}, lambda x: x * gb.cast(gb.argsort(x, 1, True), dtype)),
        OpSample("topk", {"x": distinct(3, 5)}, top),
        OpSample(
            "topk", {"x": distinct(4, 3)}, lambda x: top(x, largest=False), shapes={"x": ("N", 3)}, name="topk_min"
        ),
        OpSample("gather_elements", {"x": r(4, 3), "i": index["i"]}, lambda x, i: gb.gather_elements(x, i, 1)),
        OpSample(
            "scatter_elements_add",
            {"x": r(4, 3), "upd": r(3, 2), "j": index["j"]},
            lambda x, upd, j: gb.scatter_elements_add(x, gb.transpose(j), gb.transpose(upd), 0),
        ),
        OpSample("flip", {"x": r(2, 3, 4)}, lambda x: gb.flip(x, (0, 2)) * x),
        OpSample("dropout", {"x": r(4, 6)}, lambda x: gb.dropout(x, 0.3, 11) * x),
        OpSample("dropout", {"x": r(3, 5)}, lambda x: gb.dropout(x, 0.5, 2), shapes={"x": ("N", 5)}, name="dropout_n"),
        OpSample("concat", {"x": r(3, 3)}, composites, name="stack_split_tile_repeat"),
    ]


def fused_samples(dtype: str, rng: np.random.Generator) -> list[OpSample]:
    """Fused nodes: one output with broadcasting, and two outputs sharing a subexpression, over
    most heads of the expression language (away from the kinks of relu, abs and sign)."""
    import sympy

    from ..graph.ops.fused import FUNCTIONS

    x0, x1, x2 = sympy.symbols("x0 x1 x2")
    shared = sympy.tanh(x0 * x1 + 0.5)
    two = [
        shared * sympy.sin(x2) + sympy.exp(x1) / (1 + x2**2),
        shared**2 - sympy.sqrt(x2**2 + 1) * sympy.erf(x0) + 2**x1,
    ]
    one = sympy.log(1 + sympy.cosh(x0)) * sympy.atan(x1) - x0 / sympy.sqrt(x1 + 3)
    heads = [
        fn(x0) for fn in (sympy.cos, sympy.tan, sympy.asin, sympy.acos, sympy.sinh, sympy.exp, sympy.sin, sympy.cosh)
    ]
    custom = [FUNCTIONS[op](x0 * 0.5) for op in ("sigmoid", "relu", "abs", "log1p", "expm1", "softplus")]
    every_head = sum(heads + custom) + FUNCTIONS["sign"](x0) * x0

    def r(*shape: int) -> np.ndarray:
        return rand(rng, shape, dtype, -0.9, 0.9)

    return [
        OpSample("fused", {"a": r(3, 4), "b": r(4)}, lambda a, b: gb.fused(one, a, b), name="fused_broadcast"),
        OpSample(
            "fused",
            {"a": r(3, 4), "b": r(3, 1), "c": r(4)},
            lambda a, b, c: gb.mul(*gb.fused(two, a, b, c)),
            shapes={"a": ("N", 4), "b": ("N", 1)},
            name="fused_two_outputs",
        ),
        OpSample("fused", {"a": away_from_zero(rng, (2, 3), dtype) * 0.4}, lambda a: gb.fused(every_head, a)),
        *(
            OpSample(
                "fused_reduce",
                {"a": r(3, 4), "b": r(4)},
                lambda a, b, reduce=reduce, axis=axis, keep=keep: gb.fused_reduce(
                    one, a, b, reduce=reduce, axis=axis, keepdims=keep
                ),
                shapes={"a": ("N", 4)},
                name=f"fused_reduce_{reduce}",
            )
            for reduce, axis, keep in (("sum", None, False), ("mean", 0, False), ("max", 1, True))
        ),
        OpSample(
            "fused_matmul",
            {"a": r(3, 4), "w": r(4, 5), "bias": r(5), "res": r(3, 5)},
            lambda a, w, bias, res: gb.fused_matmul(sympy.tanh(x0 + x1) * x2 + x0 * x0, a, w, bias, res),
            shapes={"a": ("N", 4), "res": ("N", 5)},
        ),
        OpSample(
            "fused_matmul",
            {"a": r(2, 4, 3), "w": r(5, 4), "bias": r(5)},
            lambda a, w, bias: gb.mul(
                *gb.fused_matmul(
                    [FUNCTIONS["softplus"](x0 + x1), x0 * x1], a, w, bias, transpose_a=True, transpose_b=True
                )
            ),
            name="fused_matmul_transposed_two_outputs",
        ),
    ]
