"""Property tests: every op family's derivatives against central finite differences in float64.

Hypothesis draws shapes (ranks 0-3, dims 1-4, broadcasting pairs, size-1 axes) and values away
from each op's kinks and domain edges. For each draw, `check_derivatives` compares
- the vjp (`gk.grad` seeded with a random cotangent u) with `numeric_grads`,
- the jvp along random tangents v with a central difference along v,
- the two modes with each other: <J v, u> == sum_i <v_i, (J^T u)_i>,
- and H v of <u, f(x)> computed twice (forward over reverse with `gk.hessian_vector_product`,
  reverse over reverse with `gk.grad` of <grad, v>) with a central difference of the compiled
  gradient along v.
(Piecewise) linear ops are composed with sin, so that their second derivative is not trivially
zero and the rules of their rules (the vjp of `pad` is a `slice`, ...) are differentiated too.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Callable

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradkiln as gk
from gradkiln.graph.ops.fused import FUNCTIONS
from gradkiln.testing import numeric_grads

STEP = 1e-6  # central-difference step for first derivatives
HESSIAN_STEP = 1e-5  # central-difference step of the gradient, for second derivatives
RTOL, ATOL = 1e-5, 1e-6
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Build = Callable[..., gk.Tensor]
Points = dict[str, np.ndarray]


# -- the check ---------------------------------------------------------------------------------
def check_derivatives(build: Build, feeds: Points) -> None:
    """vjp, jvp, their consistency and Hessian-vector products of `build` at `feeds`."""
    rng = np.random.default_rng(0)
    names = list(feeds)
    with gk.Graph("property") as g:
        xs = [gk.input(name, np.shape(x), "float64") for name, x in feeds.items()]
        out = build(*xs)
        u = gk.input("u", out.shape, "float64")
        vs = [gk.input(f"v_{name}", np.shape(x), "float64") for name, x in feeds.items()]
        pullback = gk.grad(out, xs, seed=u)
        (pushforward,) = gk.jvp(out, xs, vs)
        curvature = _hessian_vector_products(out, xs, u, vs, pullback)
    cotangent = np.asarray(rng.normal(size=out.shape))
    tangents = {name: np.asarray(rng.normal(size=np.shape(x))) for name, x in feeds.items()}
    seeds = {"u": cotangent} | {f"v_{name}": t for name, t in tangents.items()}
    got = gk.compile(g, [*pullback, pushforward, *curvature])(**feeds, **seeds)
    got_vjp, got_jvp, got_hvp = got[: len(names)], got[len(names)], got[len(names) + 1 :]

    forward = gk.compile(g, [out])
    numeric = numeric_grads(lambda point: forward(**point)[0], feeds, names, cotangent, eps=STEP)
    for name, dx in zip(names, got_vjp):
        _assert_close(dx, numeric[name], f"vjp d/d{name}")
    (directional,) = _along(lambda point: forward(**point), feeds, tangents, STEP)
    _assert_close(got_jvp, directional, "jvp")
    _assert_transposed(got_jvp, cotangent, got_vjp, [tangents[n] for n in names])
    gradient = gk.compile(g, pullback)
    want = _along(lambda point: gradient(**point, u=cotangent), feeds, tangents, HESSIAN_STEP)
    for k, (name, hv) in enumerate(zip(names * 2, got_hvp)):
        mode = "forward over reverse" if k < len(names) else "reverse over reverse"
        _assert_close(hv, want[k % len(names)], f"H v ({mode}) d/d{name}", rtol=1e-4)


def _hessian_vector_products(out, xs, u, vs, pullback) -> list[gk.Tensor]:
    """H v of <u, out>, forward over reverse and then reverse over reverse (H is symmetric)."""
    forward_over_reverse = gk.hessian_vector_product(gk.sum(out * u), xs, vs)
    along_v = sum((gk.sum(g * v) for g, v in zip(pullback, vs)), start=gk.constant(0.0, "float64"))
    reverse_over_reverse = gk.grad(along_v, xs, allow_unused=True)
    return [*forward_over_reverse, *reverse_over_reverse]


def _along(fn: Callable[[Points], list], feeds: Points, tangents: Points, eps: float) -> list[np.ndarray]:
    """Central differences of each of fn's outputs along the direction `tangents`."""
    ahead = fn({k: x + eps * tangents[k] for k, x in feeds.items()})
    behind = fn({k: x - eps * tangents[k] for k, x in feeds.items()})
    return [(a - b) / (2 * eps) for a, b in zip(ahead, behind)]


def _assert_close(got: np.ndarray, want: np.ndarray, what: str, rtol: float = RTOL) -> None:
    assert np.shape(got) == np.shape(want), f"{what}: shape {np.shape(got)}, expected {np.shape(want)}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=ATOL, err_msg=what)


def _assert_transposed(jv: np.ndarray, u: np.ndarray, vjps: list, vs: list) -> None:
    """<J v, u> == sum_i <v_i, (J^T u)_i>, up to rounding of the terms summed."""
    left, right = np.sum(jv * u), sum(np.sum(v * g) for v, g in zip(vs, vjps))
    scale = np.sum(np.abs(jv * u)) + sum(np.sum(np.abs(v * g)) for v, g in zip(vs, vjps))
    assert abs(left - right) <= 1e-10 * (1 + scale), f"<J v, u> = {left!r} but <v, J^T u> = {right!r}"


def _curved(op: Build) -> Build:
    """sin of a (piecewise) linear op, so its second derivative is not trivially zero (sin, unlike
    tanh, does not flatten out and hide errors for large values)."""
    return lambda *xs: gk.sin(op(*xs))


# -- values away from kinks and domain edges ---------------------------------------------------
def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


REAL = _floats(-2, 2)
NONZERO = st.one_of(_floats(-2, -0.1), _floats(0.1, 2))
POSITIVE = _floats(0.1, 2)
OFF_GRID = st.builds(lambda k, s, f: k + s * f, st.integers(-3, 3), st.sampled_from([-1, 1]), _floats(0.1, 0.4))
# maximum / minimum: a on the half-integers, b a quarter off them, so |a - b| >= 0.15 however they broadcast
GRID_A = st.builds(lambda k, e: k / 2 + e, st.integers(-4, 4), _floats(-0.05, 0.05))
GRID_B = st.builds(lambda k, e: k / 2 + 0.25 + e, st.integers(-4, 4), _floats(-0.05, 0.05))
# mod / floordiv: a / b stays >= 0.05 away from integers for a = k/4 + [0.05, 0.2] and b in +-{1/4, 1/2, 1}
DIVIDEND = st.builds(lambda k, f: k / 4 + f, st.integers(-12, 12), _floats(0.05, 0.2))
DIVISOR = st.sampled_from([-1.0, -0.5, -0.25, 0.25, 0.5, 1.0])

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
NONSCALAR = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def _array(draw: st.DrawFn, shape: tuple[int, ...], elements: st.SearchStrategy[float] = REAL) -> np.ndarray:
    return draw(hnp.arrays(np.float64, shape, elements=elements))


def _distinct(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.05 apart (no ties for max, min and std)."""
    order = draw(st.permutations(range(int(np.prod(shape)))))
    return np.reshape(np.array(order, np.float64) * 0.05 - 1.0, shape)


# -- elementwise ops ---------------------------------------------------------------------------
# ops whose second derivative is zero where it exists: checked as sin(op(...)), see _curved
LINEAR = {"neg", "abs", "sign", "relu", "floor", "ceil", "round", "leaky_relu", "clip", "clip_hi"}
LINEAR |= {"add", "sub", "maximum", "minimum", "mod", "sum", "mean", "max", "min"}
UNARY: dict[str, tuple[Build, st.SearchStrategy[float]]] = {
    "neg": (gk.neg, REAL),
    "abs": (gk.abs, NONZERO),
    "sign": (lambda x: gk.sign(x) * x, NONZERO),
    "relu": (gk.relu, NONZERO),
    "exp": (gk.exp, REAL),
    "log": (gk.log, POSITIVE),
    "sqrt": (gk.sqrt, POSITIVE),
    "tanh": (gk.tanh, REAL),
    "sigmoid": (gk.sigmoid, REAL),
    "exp2": (gk.exp2, REAL),
    "log1p": (gk.log1p, _floats(-0.5, 2)),
    "expm1": (gk.expm1, REAL),
    "sin": (gk.sin, REAL),
    "cos": (gk.cos, REAL),
    "tan": (gk.tan, _floats(-1.2, 1.2)),
    "asin": (gk.asin, _floats(-0.9, 0.9)),
    "acos": (gk.acos, _floats(-0.9, 0.9)),
    "atan": (gk.atan, REAL),
    "sinh": (gk.sinh, REAL),
    "cosh": (gk.cosh, REAL),
    "erf": (gk.erf, REAL),
    "softplus": (gk.softplus, REAL),
    "silu": (gk.silu, REAL),
    "floor": (lambda x: gk.floor(x) * x, OFF_GRID),
    "ceil": (lambda x: gk.ceil(x) * x, OFF_GRID),
    "round": (lambda x: gk.round(x) * x, OFF_GRID),
    "reciprocal": (gk.reciprocal, NONZERO),
    "rsqrt": (gk.rsqrt, POSITIVE),
    "square": (gk.square, REAL),
    "gelu": (gk.gelu, REAL),
    "gelu_tanh": (lambda x: gk.gelu(x, "tanh"), REAL),
    "leaky_relu": (lambda x: gk.leaky_relu(x, 0.1), NONZERO),
    "elu": (lambda x: gk.elu(x, 1.5), NONZERO),
    "clip": (lambda x: gk.clip(x, -1.0, 1.0), OFF_GRID),
    "clip_hi": (lambda x: gk.clip(x, hi=0.5) * x, OFF_GRID),
}


@pytest.mark.parametrize("op", ["erf", "gelu"])
def test_erf_and_gelu_of_a_scalar(op):
    """np.frompyfunc gives a Python float for a 0-d input: erf's reference must still return an array."""
    check_derivatives(UNARY[op][0], {"x": np.array(0.5)})


@pytest.mark.parametrize("op", UNARY)
@FEW
@given(data=st.data())
def test_unary_derivatives_match_finite_differences(op, data):
    build, elements = UNARY[op]
    build = _curved(build) if op in LINEAR else build
    x = _array(data.draw, data.draw(SHAPES), elements)
    check_derivatives(build, {"x": x})


BINARY: dict[str, tuple[Build, st.SearchStrategy[float], st.SearchStrategy[float]]] = {
    "add": (gk.add, REAL, REAL),
    "sub": (gk.sub, REAL, REAL),
    "mul": (gk.mul, REAL, REAL),
    "div": (gk.div, REAL, NONZERO),
    "pow": (gk.pow, POSITIVE, _floats(-1.5, 1.5)),
    "maximum": (gk.maximum, GRID_A, GRID_B),
    "minimum": (gk.minimum, GRID_B, GRID_A),
    "atan2": (gk.atan2, NONZERO, REAL),
    "mod": (gk.mod, DIVIDEND, DIVISOR),
    "floordiv": (lambda a, b: gk.floordiv(a, b) * a * b, DIVIDEND, DIVISOR),
}
BROADCASTING = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4)


@pytest.mark.parametrize("op", BINARY)
@FEW
@given(data=st.data())
def test_binary_derivatives_with_broadcasting_match_finite_differences(op, data):
    build, left, right = BINARY[op]
    build = _curved(build) if op in LINEAR else build
    a_shape, b_shape = data.draw(BROADCASTING).input_shapes
    feeds = {"a": _array(data.draw, a_shape, left), "b": _array(data.draw, b_shape, right)}
    check_derivatives(build, feeds)


@FEW
@given(data=st.data())
def test_where_derivatives_with_broadcasting_match_finite_differences(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)).input_shapes
    feeds = {name: _array(data.draw, shape, NONZERO) for name, shape in zip("cab", shapes)}
    check_derivatives(lambda c, a, b: gk.where(c > 0, a, b) * c, feeds)


# -- reductions, cumulative ops, softmax -------------------------------------------------------
def _axes(draw: st.DrawFn, rank: int) -> tuple[int, ...] | None:
    """None (every axis) or a non-empty set of axes, some given as negative numbers."""
    if rank == 0 or draw(st.booleans()):
        return None
    chosen = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    return tuple(a - rank if draw(st.booleans()) else a for a in chosen)


def _reduced_count(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> int:
    return int(np.prod([shape[a] for a in (range(len(shape)) if axes is None else axes)]))


ELEMENTS = {"real": REAL, "nonzero": NONZERO}
REDUCTIONS: dict[str, tuple[Callable, str]] = {
    # name: (builder, values: "real", "nonzero" or "distinct")
    "sum": (gk.sum, "real"),
    "mean": (gk.mean, "real"),
    "max": (gk.max, "distinct"),
    "min": (gk.min, "distinct"),
    "prod": (gk.prod, "nonzero"),
    "logsumexp": (gk.logsumexp, "real"),
    "var": (gk.var, "real"),
    "std": (gk.std, "distinct"),
}


@pytest.mark.parametrize("op", REDUCTIONS)
@FEW
@given(data=st.data())
def test_reduction_derivatives_match_finite_differences(op, data):
    reduce, values = REDUCTIONS[op]
    shape = data.draw(SHAPES)
    axes, keepdims = _axes(data.draw, len(shape)), data.draw(st.booleans())
    x = _distinct(data.draw, shape) if values == "distinct" else _array(data.draw, shape, ELEMENTS[values])
    extra = {}
    if op in ("var", "std"):
        extra["correction"] = data.draw(st.integers(0, 1))
        assume(_reduced_count(shape, axes) > max(extra["correction"], 1 if op == "std" else 0))
    build = lambda x: reduce(x, axes, keepdims, **extra)  # noqa: E731
    check_derivatives(_curved(build) if op in LINEAR else build, {"x": x})


@FEW
@given(data=st.data())
def test_cumsum_derivatives_match_finite_differences(data):
    x = _array(data.draw, data.draw(NONSCALAR))
    axis, exclusive, reverse = (
        data.draw(st.integers(-x.ndim, x.ndim - 1)),
        data.draw(st.booleans()),
        data.draw(st.booleans()),
    )
    check_derivatives(_curved(lambda x: gk.cumsum(x, axis, exclusive, reverse)), {"x": x})


@pytest.mark.parametrize("op", ["cumprod", "softmax", "log_softmax"])
@FEW
@given(data=st.data())
def test_along_an_axis_derivatives_match_finite_differences(op, data):
    x = _array(data.draw, data.draw(NONSCALAR), NONZERO if op == "cumprod" else REAL)
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    check_derivatives(lambda x: getattr(gk, op)(x, axis), {"x": x})


# -- shape ops ---------------------------------------------------------------------------------
def _ones_sprinkled(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` with some dims set to 1."""
    return tuple(1 if draw(st.booleans()) else d for d in shape)


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors, n = [*factors, p], n // p
        p += 1
    return factors


def _reshape(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    """A reshape to another factorization of the size, with size-1 axes and maybe one -1."""
    factors = draw(st.permutations(_prime_factors(int(np.prod(shape)))))
    rank = draw(st.integers(0 if not factors else 1, 4))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), min_size=rank - 1, max_size=rank - 1))) if rank else []
    target = [int(np.prod(factors[a:b])) for a, b in pairwise([0, *cuts, len(factors)])] if rank else []
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return lambda x: gk.reshape(x, target)


def _transpose(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    perm = draw(st.permutations(range(len(shape))))
    return lambda x: gk.transpose(x, perm)


def _broadcast_to(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    leading = draw(hnp.array_shapes(min_dims=0, max_dims=3 - len(shape), min_side=1, max_side=4))
    target = (*leading, *(draw(st.integers(1, 4)) if d == 1 else d for d in shape))
    return lambda x: gk.broadcast_to(x, target)


def _expand_dims(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    count = draw(st.integers(1, 2))
    axes = draw(st.lists(st.integers(0, len(shape) + count - 1), min_size=count, max_size=count, unique=True))
    return lambda x: gk.expand_dims(x, axes)


def _squeeze(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    ones = [i for i, d in enumerate(shape) if d == 1]
    axes = None if draw(st.booleans()) else draw(st.lists(st.sampled_from(ones), unique=True)) if ones else None
    return lambda x: gk.squeeze(x, axes)


def _slice(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    starts = [draw(st.integers(0, d - 1)) for d in shape]
    stops = [draw(st.integers(a + 1, d)) for a, d in zip(starts, shape)]
    steps = [draw(st.integers(1, 3)) for _ in shape]
    return lambda x: gk.slice(x, starts, stops, steps)


def _pad(draw: st.DrawFn, shape: tuple[int, ...]) -> Build:
    low, high, interior = ([draw(st.integers(0, 2)) for _ in shape] for _ in range(3))
    return lambda x: gk.pad(x, low, high, interior)


SHAPE_OPS: dict[str, Callable[[st.DrawFn, tuple[int, ...]], Build]] = {
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast_to,
    "expand_dims": _expand_dims,
    "squeeze": _squeeze,
    "slice": _slice,
    "pad": _pad,
}


@pytest.mark.parametrize("op", SHAPE_OPS)
@FEW
@given(data=st.data())
def test_shape_op_derivatives_match_finite_differences(op, data):
    shape = _ones_sprinkled(data.draw, data.draw(SHAPES)) if op in ("broadcast_to", "squeeze") else data.draw(SHAPES)
    build = SHAPE_OPS[op](data.draw, shape)
    check_derivatives(_curved(build), {"x": _array(data.draw, shape)})


@FEW
@given(data=st.data())
def test_concat_derivatives_match_finite_differences(data):
    shape = data.draw(NONSCALAR)
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    feeds = {f"x{i}": _array(data.draw, (*shape[:axis], n, *shape[axis + 1 :])) for i, n in enumerate(sizes)}
    check_derivatives(_curved(lambda *xs: gk.concat([*xs, xs[0]], axis - len(shape))), feeds)


# -- matmul ------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_matmul_derivatives_with_batch_broadcasting_match_finite_differences(data):
    a_batch, b_batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    a_shape = (k,) if data.draw(st.booleans()) else (*a_batch, m, k)
    b_shape = (k,) if data.draw(st.booleans()) else (*b_batch, k, n)
    feeds = {"a": _array(data.draw, a_shape), "b": _array(data.draw, b_shape)}
    check_derivatives(gk.matmul, feeds)


# -- convolutions, pools, selections ----------------------------------------------------------
def _geometry(draw: st.DrawFn, kernel: tuple[int, int]) -> dict:
    """Random stride and asymmetric padding (at most half the kernel, as pools require) of a window op."""
    padding = tuple((draw(st.integers(0, k // 2)), draw(st.integers(0, k // 2))) for k in kernel)
    return {"stride": (draw(st.integers(1, 2)), draw(st.integers(1, 2))), "padding": padding}


def _builds(build: Build, feeds: Points) -> bool:
    """Whether `build` accepts inputs of these shapes (a window larger than the padded image does not)."""
    with gk.Graph():
        try:
            build(*(gk.input(name, x.shape, "float64") for name, x in feeds.items()))
        except gk.ShapeError:
            return False
    return True


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_convolution_derivatives_with_random_geometry_match_finite_differences(op, data):
    draw = data.draw
    kernel, groups = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), draw(st.integers(1, 2))
    geometry = _geometry(draw, kernel) | {"dilation": (draw(st.integers(1, 2)), draw(st.integers(1, 2)))}
    group_in, group_out = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    image = (draw(st.integers(1, 2)), groups * group_in, draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    if op == "conv2d":  # w: (out channels, in channels / groups, kh, kw)
        w_shape = (groups * group_out, group_in, *kernel)
        build = lambda x, w: gk.conv2d(x, w, groups=groups, **geometry)  # noqa: E731
    else:  # w: (in channels, out channels / groups, kh, kw), output padding below the stride
        w_shape = (groups * group_in, group_out, *kernel)
        extra = tuple(draw(st.integers(0, s - 1)) for s in geometry["stride"])
        build = lambda x, w: gk.conv_transpose2d(x, w, output_padding=extra, groups=groups, **geometry)  # noqa: E731
    feeds = {"x": _array(draw, image), "w": _array(draw, w_shape)}
    assume(_builds(build, feeds))
    check_derivatives(build, feeds)


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_pool_derivatives_with_random_geometry_match_finite_differences(op, data):
    draw = data.draw
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    geometry = _geometry(draw, kernel)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), *(draw(st.integers(k, 5)) for k in kernel))
    x = _distinct(draw, shape) if op == "max_pool2d" else _array(draw, shape)
    check_derivatives(_curved(lambda x: getattr(gk, op)(x, kernel, **geometry)), {"x": x})


@pytest.mark.parametrize("op", ["sort", "flip"])
@FEW
@given(data=st.data())
def test_selection_derivatives_match_finite_differences(op, data):
    shape = data.draw(NONSCALAR)
    axis, flag = data.draw(st.integers(-len(shape), len(shape) - 1)), data.draw(st.booleans())
    build = (lambda x: gk.sort(x, axis, flag)) if op == "sort" else (lambda x: gk.flip(x, None if flag else axis))
    check_derivatives(_curved(build), {"x": _distinct(data.draw, shape)})


# -- the fused op ------------------------------------------------------------------------------
X = sympy.symbols("x0 x1 x2")
KINKED = ("relu", "abs", "sign")  # applied to inputs only; the inputs are >= 0.1 away from 0
GUARDS: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    # what keeps a head's argument inside its domain and its value small: |tanh| < 1, 1 + e**2 > 0
    "exp": sympy.tanh,
    "sinh": sympy.tanh,
    "cosh": sympy.tanh,
    "expm1": sympy.tanh,
    "tan": sympy.tanh,
    "log": lambda e: 1 + e**2,
    "log1p": lambda e: e**2,
    "asin": lambda e: sympy.Rational(4, 5) * sympy.tanh(e),
    "acos": lambda e: sympy.Rational(4, 5) * sympy.tanh(e),
}


def _head(name: str, e: sympy.Expr) -> sympy.Expr:
    """`name` applied to (guarded) e; a constant e is left as it is (see test_fused_head_of_a_constant)."""
    return FUNCTIONS[name](GUARDS.get(name, lambda e: e)(e)) if e.free_symbols else e


def _expressions(count: int) -> st.SearchStrategy[sympy.Expr]:
    """Random expressions over x0 .. x{count-1} using every head of FUNCTIONS, +, *, / and powers."""
    leaves = st.sampled_from(X[:count]) | st.sampled_from([sympy.Rational(1, 2), sympy.Integer(-2), sympy.Float(1.5)])
    leaves |= st.builds(lambda head, x: FUNCTIONS[head](x), st.sampled_from(KINKED), st.sampled_from(X[:count]))
    smooth = sorted(set(FUNCTIONS) - set(KINKED))

    def extend(children: st.SearchStrategy[sympy.Expr]) -> st.SearchStrategy[sympy.Expr]:
        pairs = st.tuples(children, children)
        return st.one_of(
            pairs.map(lambda ab: ab[0] + ab[1]),
            pairs.map(lambda ab: ab[0] * ab[1]),
            pairs.map(lambda ab: ab[0] / (1 + ab[1] ** 2)),
            children.map(lambda e: (1 + e**2) ** sympy.Rational(-1, 2)),
            st.builds(_head, st.sampled_from(smooth), children),
        )

    return st.recursive(leaves, extend, max_leaves=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fused_derivatives_of_random_expressions_match_finite_differences(data):
    count = data.draw(st.integers(1, 3))
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=count, min_dims=0, max_dims=2, max_side=3))
    shapes = shapes.input_shapes
    expr = data.draw(_expressions(count))
    expr += sum(sympy.Rational(1, 4) * x for x in X[:count] if x not in expr.free_symbols)  # every input read
    feeds = {f"a{i}": _array(data.draw, shape, NONZERO) for i, shape in enumerate(shapes)}
    check_derivatives(lambda *xs: gk.fused(expr, *xs), feeds)


@pytest.mark.parametrize("head", ["softplus", "sigmoid", "relu", "erf"])
def test_fused_head_of_a_constant(head):
    """Numbers in a fused expression are 0-d arrays of the node's dtype, so a head applies to them."""
    x0 = sympy.Symbol("x0")
    check_derivatives(lambda x: gk.fused(FUNCTIONS[head](sympy.Rational(1, 2)) * x0, x), {"x": np.ones(3)})


def test_fused_second_derivative_through_sign_is_zero_not_an_empty_fused_node():
    """The jvp of relu(x)*sign(x)'s gradient is an unevaluated `0 + 0`: no node, not a fused one
    without inputs (found by the random expressions above)."""
    x0 = sympy.Symbol("x0")
    expr = FUNCTIONS["relu"](x0) * FUNCTIONS["sign"](x0)
    check_derivatives(lambda x: gk.fused(expr, x), {"x": np.array([-1.0, 0.5, 2.0])})
