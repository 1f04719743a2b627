"""float32 exp, log, tanh, sigmoid, sin, cos and erf on llvm (lowering/tvm_vector_math.py): within a
stated ulp bound of the correctly rounded result over dense sweeps of float32 (oracle: numpy in
float64), numpy's NaN/Inf/denormal/overflow behaviour, vectorized (no libm call left in the LLVM
IR), float64 still on libm, and chains of them compiling in linear time."""

import math
import re
import time

import numpy as np
import pytest
import tvm
from tvm import s_tir, te, tirx

import gradkiln as gk
from gradkiln.lowering.tvm_targets import resolve_target
from gradkiln.lowering.tvm_vector_math import SIN_EXACT_LIMIT, vector_math

MAX_ULP = 3.0
TARGET = resolve_target("llvm").target
LANES = 16 if tvm.target.codegen.llvm_cpu_has_features("avx512f", TARGET) else 8
SPECIALS = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, 3.4e38, -3.4e38]
RNG = np.random.default_rng(7)


def sweep(lo: float, hi: float, log_scale: bool = False) -> np.ndarray:
    """2**18 evenly spread points (in value or in magnitude), random points, and the special values."""
    if log_scale:
        dense = np.exp(np.linspace(np.log(lo), np.log(hi), 2**18))
        dense = np.concatenate([dense, -dense[::4096]])
    else:
        dense = np.linspace(lo, hi, 2**18)
    return np.concatenate([dense, RNG.uniform(lo, hi, 2**12), SPECIALS]).astype(np.float32)


def sigmoid64(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


CASES = {
    # name: (float64 oracle, float32 inputs)
    "exp": (np.exp, np.concatenate([sweep(-110, 95), sweep(1e-12, 1.0, log_scale=True)])),
    "log": (np.log, np.concatenate([sweep(1e-45, 3.4e38, log_scale=True), sweep(0.5, 2.0)])),
    "tanh": (np.tanh, np.concatenate([sweep(-12, 12), sweep(1e-30, 1.0, log_scale=True)])),
    "sigmoid": (sigmoid64, sweep(-110, 110)),
    "sin": (np.sin, np.concatenate([sweep(-100, 100), sweep(1e-30, 3.4e38, log_scale=True)])),
    "cos": (np.cos, np.concatenate([sweep(-100, 100), sweep(1e-30, 3.4e38, log_scale=True)])),
    "erf": (
        np.vectorize(math.erf, otypes=[np.float64]),
        np.concatenate([sweep(-6, 6), sweep(1e-40, 1.0, log_scale=True)]),
    ),
}


def elementwise_kernel(name: str, n: int, dtype: str = "float32"):
    """tirx.<name> over n elements, vectorized by hand, built inside vector_math()."""
    a = te.placeholder((n,), dtype, name="a")
    out = te.compute((n,), lambda i: getattr(tirx, name)(a[i]), name="out")
    sch = s_tir.Schedule(te.create_prim_func([a, out]))
    (loop,) = sch.get_loops(sch.get_sblock("out"))
    sch.vectorize(sch.split(loop, [None, LANES])[1])
    with vector_math():
        return tvm.compile(sch.mod, target=TARGET)


def run_kernel(name: str, x: np.ndarray) -> np.ndarray:
    n = len(x) - len(x) % LANES
    kernel, out = elementwise_kernel(name, n, str(x.dtype)), tvm.runtime.tensor(np.zeros(n, x.dtype))
    kernel(tvm.runtime.tensor(x[:n]), out)
    return out.numpy()


def ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float32 spacing at the exact value (the smallest denormal at least)."""
    spacing = np.maximum(np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64), 2.0**-149)
    return np.abs(got.astype(np.float64) - exact) / spacing


@pytest.mark.parametrize("name", CASES)
def test_within_three_ulp_of_the_correctly_rounded_result(name):
    oracle, x = CASES[name]
    x = x[: len(x) - len(x) % LANES]
    got = run_kernel(name, x)
    with np.errstate(all="ignore"):
        exact = oracle(x.astype(np.float64))
    finite = np.isfinite(exact) & (np.abs(exact) <= np.finfo(np.float32).max)
    errors = ulp_error(got[finite], exact[finite])
    worst = int(np.argmax(errors))
    assert errors[worst] <= MAX_ULP, (
        f"{name}({x[finite][worst]!r}) = {got[finite][worst]!r}, exact {exact[finite][worst]!r}"
    )


@pytest.mark.parametrize("name", CASES)
def test_nan_inf_and_overflow_as_numpy(name):
    oracle, x = CASES[name]
    x = x[: len(x) - len(x) % LANES]
    got = run_kernel(name, x)
    with np.errstate(all="ignore"):
        want = oracle(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])
    assert not np.isinf(got[~np.isinf(want)]).any()


def test_exp_reaches_the_denormals_and_log_reads_them():
    x = np.float32([-87.5, -100.0, -103.2, -103.9, -104.5])
    np.testing.assert_array_equal(run_kernel("exp", np.tile(x, LANES)[: LANES * 5])[:5], np.exp(x))
    tiny = np.float32([1e-45, 3e-42, 1e-39, 1.1e-38] * LANES)
    np.testing.assert_allclose(run_kernel("log", tiny), np.log(tiny.astype(np.float64)), rtol=3e-7)


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sin_cos_agree_when_lanes_of_one_vector_take_both_reductions(name):
    """Below 125 a vector is reduced in float32, with any lane above in float64: both give the
    same sines, wherever a value's neighbours in the vector send it."""
    small = RNG.uniform(-120, 120, LANES * 64).astype(np.float32)
    mixed = small.copy()
    mixed[::LANES] = 1e4  # one large lane per vector
    alone, together = run_kernel(name, small), run_kernel(name, mixed)
    keep = np.arange(len(small)) % LANES != 0
    exact = getattr(np, name)(small.astype(np.float64))
    assert ulp_error(alone, exact).max() <= MAX_ULP
    assert ulp_error(together[keep], exact[keep]).max() <= MAX_ULP


def test_sin_and_tan_of_negative_zero_are_negative_zero():
    """The reduction's -0 - n * part (n = -0) gave +0: sin(-0.0) and tan(-0.0) (= sin / cos) were +0.0 on llvm."""
    x = np.resize(np.float32([-0.0, 0.0, -1e-45, 1.0]), LANES * 4)
    np.testing.assert_array_equal(np.signbit(run_kernel("sin", x)), np.signbit(x))
    with gk.Graph() as g:
        out = gk.tan(gk.input("x", x.shape))
    got = gk.compile(g, out, target="llvm")(x=x)
    np.testing.assert_array_equal(got[x == 0], x[x == 0])
    np.testing.assert_array_equal(np.signbit(got), np.signbit(np.tan(x)))


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sin_cos_of_huge_arguments_are_reduced_exactly(name):
    """From SIN_EXACT_LIMIT on, a vector goes to libm, which reduces exactly, as numpy does (the float64
    reduction was off by |x| * 2**-52: sin(1e20) was off by 1.5); its other lanes stay right."""
    huge = np.float32(10.0 ** RNG.uniform(np.log10(SIN_EXACT_LIMIT), 38.5, LANES * 64))
    huge = np.where(np.isfinite(huge), huge, np.float32(3.4e38))
    small = RNG.uniform(-120, 120, LANES * 64).astype(np.float32)
    mixed = small.copy()
    mixed[::LANES] = huge[::LANES]  # one huge lane per vector
    for x in (huge, mixed):
        exact = getattr(np, name)(x.astype(np.float64))
        assert ulp_error(run_kernel(name, x), exact).max() <= MAX_ULP


def llvm_ir(executable) -> str:
    modules, pending = [], [executable.compiled.mod]
    while pending:
        module = pending.pop()
        modules.append(module)
        pending.extend(module.imports)
    return "".join(m.inspect_source("ll") for m in modules if m.kind == "llvm")


def transcendental_graph(dtype: str):
    with gk.Graph("transcendentals") as g:
        x = gk.input("x", (64, 256), dtype=dtype)
        out = gk.exp(gk.sin(x)) + gk.log(gk.sigmoid(x)) * gk.tanh(gk.cos(x)) + gk.erf(x)
    return g, out


# Scalar libm calls; sin and cos keep a vector call to LLVM's intrinsic, the branch for vectors with a
# huge argument, inf or NaN.
LIBM = re.compile(r"call [^@\n]*@(llvm\.(exp|log)\.|llvm\.(sin|cos)\.f|expf|logf|sinf|cosf|tanhf|erff)")


def test_compiled_graph_is_vectorized_without_libm_calls_and_matches_numpy():
    g, out = transcendental_graph("float32")
    exe = gk.compile(g, out, target="llvm")
    x = RNG.normal(size=(64, 256)).astype(np.float32) * 3
    np.testing.assert_allclose(exe(x=x), gk.compile(g, out, target="numpy")(x=x), rtol=1e-5, atol=1e-6)
    ir = llvm_ir(exe)
    assert f"<{LANES} x float>" in ir
    assert not LIBM.search(ir), LIBM.search(ir).group(0)


def test_float64_and_unscheduled_builds_keep_libm():
    """The negative control: outside our scheduled float32 builds the intrinsics stay libm calls."""
    for dtype, schedule in [("float64", True), ("float32", False)]:
        g, out = transcendental_graph(dtype)
        assert LIBM.search(llvm_ir(gk.compile(g, out, target="llvm", schedule=schedule))), (dtype, schedule)


def test_a_long_chain_of_transcendentals_compiles_quickly_and_right():
    """Inlined into each other, the polynomials would compile in exponential time (minutes at depth 3)."""
    with gk.Graph("chain") as g:
        v = x = gk.input("x", (32, 512))
        for i in range(12):
            v = [gk.tanh, gk.sin, gk.exp, gk.cos][i % 4](v) * 0.5
        dx = gk.grad(gk.sum(v), [x])[0]
    start = time.perf_counter()
    exe = gk.compile(g, [v, dx], target="llvm")
    assert time.perf_counter() - start < 20
    feeds = {"x": RNG.normal(size=(32, 512)).astype(np.float32)}
    for got, want in zip(exe(**feeds), gk.compile(g, [v, dx], target="numpy")(**feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
