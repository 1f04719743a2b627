"""Random graphs over degenerate shapes (zero-size dims, rank-0 scalars, size-1 broadcasts) and
extreme values (0, -0, +-1e30, +-inf, nan, subnormals) agree with numpy evaluated op by op, keep
their NaN/Inf positions through every pipeline and on TVM, and ops numpy rejects fail clearly."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradkiln as gk
from gradkiln.graph.errors import GradkilnError, ShapeError

EXTREMES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 1e-45, -1e-40]

CONSTANTS = [0.0, 1.0, 2.0, -1.0, 0.5, np.inf, np.nan]

UNARY: dict[str, tuple[Callable, Callable, bool]] = {  # name: (builder, numpy oracle, exact)
    "exp": (gk.exp, np.exp, False),
    "log": (gk.log, np.log, False),
    "sqrt": (gk.sqrt, np.sqrt, False),
    "tanh": (gk.tanh, np.tanh, False),
    "sigmoid": (gk.sigmoid, lambda x: 1 / (1 + np.exp(-x)), False),
    "relu": (gk.relu, lambda x: np.maximum(x, np.float32(0)), True),
    "abs": (gk.abs, np.abs, True),
    "neg": (gk.neg, np.negative, True),
}
BINARY: dict[str, tuple[Callable, Callable, bool]] = {
    "add": (gk.add, np.add, True),
    "sub": (gk.sub, np.subtract, True),
    "mul": (gk.mul, np.multiply, True),
    "div": (gk.div, np.divide, True),
    "pow": (gk.pow, np.power, False),
    "maximum": (gk.maximum, np.maximum, True),
    "minimum": (gk.minimum, np.minimum, True),
}
REDUCE: dict[str, tuple[Callable, Callable, bool]] = {
    "sum": (gk.sum, np.sum, False),
    "mean": (gk.mean, np.mean, False),
    "max": (gk.max, np.max, True),
    "min": (gk.min, np.min, True),
}


@dataclass
class Term:
    """A graph tensor beside its numpy oracle value; `exact` when every op on its path rounds once."""

    tensor: gk.Tensor
    value: np.ndarray
    exact: bool
    ops: frozenset[str] = frozenset()

    def then(self, op: str, tensor: gk.Tensor, value: np.ndarray, exact: bool, *more: Term) -> Term:
        """The term of `op` applied to this term (and `more`)."""
        ops = self.ops.union({op}, *(m.ops for m in more))
        return Term(tensor, value, self.exact and exact and all(m.exact for m in more), ops)

    @property
    def exempt(self) -> bool:
        """Whether a documented simplify deviation may turn an Inf finite: log(exp x) -> x where exp
        overflows, or x + 0 -> x keeping a -0.0 that a later division or pow turns into -Inf."""
        return {"exp", "log"} <= self.ops or ("add_zero" in self.ops and bool({"div", "pow"} & self.ops))


@dataclass
class Case:
    graph: gk.Graph
    feeds: dict[str, np.ndarray]
    outputs: list[Term]
    rejected: list[str] = field(default_factory=list)


def shapes() -> st.SearchStrategy[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(x shape, y shape): x has rank 0..3 and dims 0..3; y is a suffix of x with some dims set to 1."""

    @st.composite
    def pair(draw: Callable) -> tuple[tuple[int, ...], tuple[int, ...]]:
        x = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3]), max_size=3)))
        suffix = x[len(x) - draw(st.integers(0, len(x))) :]
        return x, tuple(1 if draw(st.booleans()) else d for d in suffix)

    return pair()


def arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    elements = st.one_of(st.sampled_from(EXTREMES), st.sampled_from(EXTREMES), st.floats(-4, 4, width=32))
    return hnp.arrays(np.float32, shape, elements=elements)


def _unary(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    name = draw(st.sampled_from(list(UNARY)))
    build, oracle, exact = UNARY[name]
    return a.then(name, build(a.tensor), oracle(a.value), exact)


def _binary(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    fits = [p for p in pool if _broadcasts(a.value.shape, p.value.shape)]
    b = draw(st.sampled_from([a, *fits]) | st.sampled_from(CONSTANTS).map(_constant))  # a again: x - x, x / x
    name = draw(st.sampled_from(list(BINARY)))
    build, oracle, exact = BINARY[name]
    a, b = (b, a) if draw(st.booleans()) else (a, b)
    term = a.then(name, build(a.tensor, b.tensor), oracle(a.value, b.value), exact, b)
    adds_zero = name in ("add", "sub") and not (np.all(a.value) and np.all(b.value))
    return term.then("add_zero", term.tensor, term.value, True) if adds_zero else term


def _constant(value: float) -> Term:
    """A scalar constant: the operand that simplification rules (x*1, x-x, x*0, x**2) look for."""
    return Term(gk.constant(np.float32(value)), np.float32(value), True)


def _broadcasts(s: tuple[int, ...], t: tuple[int, ...]) -> bool:
    return all(p == q or 1 in (p, q) for p, q in zip(reversed(s), reversed(t)))


def _reduce(draw: Callable, a: Term, pool: list[Term], rejected: list[str]) -> Term | None:
    name = draw(st.sampled_from(list(REDUCE)))
    build, oracle, exact = REDUCE[name]
    axes = tuple(sorted(draw(st.sets(st.integers(0, max(a.value.ndim - 1, 0)), max_size=a.value.ndim)))) or None
    keepdims = draw(st.booleans())
    reduced = tuple(range(a.value.ndim)) if axes is None else axes
    if name in ("max", "min") and any(a.value.shape[i] == 0 for i in reduced):
        with pytest.raises(ShapeError, match=rf"^{name}\(.*size 0") as info:
            build(a.tensor, axes, keepdims)
        with pytest.raises(ValueError):
            oracle(a.value, axis=axes, keepdims=keepdims)
        rejected.append(str(info.value))
        return None
    # over every axis (not axis=None): a scalar's sum is itself, -0.0 included, as gradkiln's sum over ()
    value = np.asarray(oracle(a.value, axis=reduced, keepdims=keepdims), np.float32)
    return a.then(name, build(a.tensor, axes, keepdims), value, exact)


def _reshape(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    shape = a.value.shape
    choices = [(-1,), (1, *shape), shape + (1,)]
    if len(shape) >= 2:
        choices.append((shape[0] * shape[1], *shape[2:]))
    target = draw(st.sampled_from(choices))
    return a.then("reshape", gk.reshape(a.tensor, target), a.value.reshape(target), True)


def _transpose(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    perm = tuple(draw(st.permutations(range(a.value.ndim))))
    return a.then("transpose", gk.transpose(a.tensor, perm), np.transpose(a.value, perm), True)


def _broadcast(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    grown = tuple(draw(st.sampled_from([d, 2])) if d == 1 else d for d in a.value.shape)
    target = (draw(st.sampled_from([0, 1, 2])), *grown) if draw(st.booleans()) else grown
    return a.then("broadcast_to", gk.broadcast_to(a.tensor, target), np.broadcast_to(a.value, target), True)


def _concat(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    if a.value.ndim == 0:
        return None
    axis = draw(st.integers(0, a.value.ndim - 1))
    rest = a.value.shape[:axis] + a.value.shape[axis + 1 :]
    same = [
        p for p in pool if p.value.ndim == a.value.ndim and p.value.shape[:axis] + p.value.shape[axis + 1 :] == rest
    ]
    b = draw(st.sampled_from(same))
    value = np.concatenate([a.value, b.value], axis)
    return a.then("concat", gk.concat([a.tensor, b.tensor], axis), value, True, b)


def _slice(draw: Callable, a: Term, pool: list[Term]) -> Term | None:
    bounds = [sorted((draw(st.integers(0, d)), draw(st.integers(0, d)))) for d in a.value.shape]
    steps = [draw(st.sampled_from([1, 2])) for _ in a.value.shape]
    starts, stops = [lo for lo, _ in bounds], [hi for _, hi in bounds]
    value = a.value[tuple(slice(lo, hi, s) for lo, hi, s in zip(starts, stops, steps))]
    return a.then("slice", gk.slice(a.tensor, starts, stops, steps), value, True)


STEPS = {"unary": _unary, "binary": _binary, "reshape": _reshape, "transpose": _transpose}
STEPS |= {"broadcast": _broadcast, "concat": _concat, "slice": _slice}
KINDS = ["binary", "unary", "reduce", "binary", "unary", "reduce", *STEPS]  # elementwise ops twice as often


def cases(max_ops: int = 8) -> st.SearchStrategy[Case]:
    """A random graph over x and y of `shapes()`, its feeds, and oracle values of its outputs."""

    @st.composite
    def case(draw: Callable) -> Case:
        x_shape, y_shape = draw(shapes())
        feeds = {"x": draw(arrays(x_shape)), "y": draw(arrays(y_shape))}
        rejected: list[str] = []
        with gk.Graph("fuzz") as g, quiet():
            pool = [Term(gk.input(n, v.shape), v, True) for n, v in feeds.items()]
            for _ in range(draw(st.integers(1, max_ops))):
                kind = draw(st.sampled_from(KINDS))
                a = draw(st.sampled_from(pool))
                step = _reduce(draw, a, pool, rejected) if kind == "reduce" else STEPS[kind](draw, a, pool)
                pool += [step] if step is not None else []
            outputs = draw(st.lists(st.sampled_from(pool[2:] or pool), min_size=1, max_size=3))
        return Case(g, feeds, outputs, rejected)

    return case()


def assert_same(
    got: np.ndarray, want: np.ndarray, exact: bool, what: str, finite_only: bool = False, atol: float = 1e-30
) -> None:
    """Equal shapes and dtypes, NaN and +-Inf at the same places, finite values equal or close;
    `finite_only` compares only where both are finite."""
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}"
    if finite_only:
        both = np.isfinite(want) & np.isfinite(got)
        got, want = got[both], want[both]
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=what, strict=False)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +Inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -Inf positions")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=atol, err_msg=what)


@contextmanager
def quiet():
    """numpy's overflow, invalid-value and empty-mean warnings are the expected outcome here."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def run(case: Case, graph: gk.Graph, outputs: list, target: str = "numpy") -> list[np.ndarray]:
    with quiet():
        return gk.compile(graph, outputs, target=target)(**case.feeds)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(case=cases())
def test_executor_matches_numpy_op_by_op(case):
    got = run(case, case.graph, [t.tensor for t in case.outputs])
    for i, (g, term) in enumerate(zip(got, case.outputs)):
        assert_same(g, term.value, term.exact, f"output {i} of\n{case.graph}")


@FUZZ
@given(case=cases())
def test_pipelines_keep_nan_inf_positions_and_values(case):
    for pipeline in ("O1", "O2", "O3"):
        optimized, outs, _ = gk.optimize(case.graph, [t.tensor.value for t in case.outputs], pipeline)
        for i, (got, term) in enumerate(zip(run(case, optimized, outs), case.outputs)):
            what = f"{pipeline} output {i} of\n{case.graph}"
            assert_same(got, term.value, False, what, finite_only=term.exempt)


@pytest.mark.parametrize(
    "op, build",
    [
        ("max", lambda x: gk.max(x, 0)),
        ("min", lambda x: gk.min(x, keepdims=True)),
        ("reshape", lambda x: gk.reshape(x, (4,))),
        ("broadcast_to", lambda x: gk.broadcast_to(x, (2, 3))),
        ("concat", lambda x: gk.concat([x, gk.input("w", (2, 2))], 0)),
        ("add", lambda x: x + gk.input("v", (2,))),
    ],
)
def test_shapes_numpy_rejects_fail_at_build_time_naming_the_op(op, build):
    with gk.Graph():
        with pytest.raises(GradkilnError, match=op) as info:
            build(gk.input("x", (0, 3)))
    assert "(0, 3)" in str(info.value) or "[0,3]" in str(info.value)


def test_max_over_a_size_one_or_nonempty_axis_of_an_empty_tensor_is_numpy_like():
    x0 = np.zeros((0, 3), np.float32)
    with gk.Graph() as g:
        out = gk.max(gk.input("x", (0, 3)), 1)
    got = gk.compile(g, [out], target="numpy")(x=x0)[0]
    np.testing.assert_array_equal(got, np.max(x0, 1))


NAN_DROPPING = {"relu", "maximum", "minimum", "max", "min"}  # known llvm bug: a NaN first operand is lost (below)


def _divides_by_constant_zero(graph: gk.Graph) -> bool:
    """Whether a div has a constant divisor with a zero: fused for llvm, TVM's constant folder
    fails on it ("Divide by zero"), a known bug; unfused the division gives +-Inf or NaN."""
    divisors = [graph.node(n.inputs[1].node) for n in graph.nodes() if n.op == "div"]
    return any(d.op == "constant" and not np.all(d.attrs["value"]) for d in divisors)


def _has_empty_tensors(graph: gk.Graph) -> bool:
    """Whether any value has a zero-size dim: views and slices of those fail to build for llvm
    (a known bug, below), so the llvm fuzz leaves them to the numpy tests."""
    return any(0 in t.shape for n in graph.nodes() for t in n.types)


@pytest.mark.slow
# the assumes below reject about half of the generated graphs (empty tensors, NaN-dropping ops,
# tiny feeds): Hypothesis's filter health check then failed some CI runs at random
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=cases(max_ops=5))
def test_tvm_llvm_matches_numpy_on_degenerate_graphs(case):
    optimized, outs, _ = gk.optimize(case.graph, [t.tensor.value for t in case.outputs], "O3")
    assume(not _has_empty_tensors(optimized) and not _divides_by_constant_zero(case.graph))
    assume(not any(NAN_DROPPING & t.ops for t in case.outputs))
    # llvm's tanh, 1 - 2/(e**2x + 1), is 0 for |x| below ~1e-8 (documented), which x / tanh(x) makes Inf
    assume(not any(((v != 0) & (np.abs(v) < 1e-4)).any() for v in case.feeds.values()))
    for i, (got, term) in enumerate(zip(run(case, optimized, outs, target="llvm"), case.outputs)):
        what = f"llvm output {i} of\n{case.graph}"
        # atol: the llvm tanh, 1 - 2/(e**2x + 1), loses relative precision below |x| ~ 1e-4 (documented)
        assert_same(got, term.value, False, what, finite_only=term.exempt, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape, view",
    [
        ((0, 1), lambda x: gk.reshape(x, (1, 0, 1))),
        ((0, 1), gk.transpose),
        ((0,), lambda x: gk.broadcast_to(x, (0, 0))),
        ((1, 0), lambda x: gk.slice(x, (1, 0), (1, 0))),
    ],
)
def test_tvm_views_of_zero_size_tensors(shape, view):
    with gk.Graph() as g:
        out = view(gk.input("x", shape))
    got = gk.compile(g, [out], target="llvm")(x=np.zeros(shape, np.float32))[0]
    assert got.shape == out.shape


@pytest.mark.slow
@pytest.mark.parametrize(
    "op",
    [
        gk.relu,
        gk.sign,
        lambda x: gk.maximum(x, 0.0),
        lambda x: gk.minimum(0.0, x),
        lambda x: gk.clip(x, 0, 1),
        lambda x: gk.max(x, 0, True),
        lambda x: gk.min(x, 0, True),
    ],
)
def test_tvm_keeps_nan_through_relu_maximum_sign_clip_max(op):
    with gk.Graph() as g:
        out = op(gk.input("x", (2,)))
    got = gk.compile(g, [out], target="llvm")(x=np.float32([np.nan, 1]))[0]
    assert np.isnan(got[0])


@pytest.mark.slow
def test_tvm_fused_division_by_constant_zero():
    """Fusion keeps a zero constant an operand of the fused node (TVM's simplifier failed on x / 0)."""
    with gk.Graph() as g:
        x = gk.input("x", ())
        out = gk.exp(x) / gk.constant(np.float32(0))
    optimized, outs, _ = gk.optimize(g, [out.value], "O3")
    assert gk.compile(optimized, outs, target="llvm")(x=np.float32(0))[0] == np.inf


def test_tvm_mean_over_zero_elements_is_nan_as_in_numpy():
    x0 = np.zeros((2, 0, 3), np.float32)
    with gk.Graph() as g:
        x = gk.input("x", x0.shape)
        outs = [gk.mean(x, 1), gk.mean(x, (0, 1), keepdims=True), gk.mean(x, 0), gk.mean(x)]
    with quiet():
        wants = [np.mean(x0, 1), np.mean(x0, (0, 1), keepdims=True), np.mean(x0, 0), np.mean(x0)]
    for got, want in zip(gk.compile(g, outs, target="llvm")(x=x0), wants):
        np.testing.assert_array_equal(got, want.astype(np.float32), strict=True)
