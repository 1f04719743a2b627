"""llvm kernels give numpy's IEEE results: NaN, inf, -0.0 and denormals survive TVM's rewrites
(`gradkiln/lowering/tvm_ieee.py`), at every optimization level, scheduled or not."""

import numpy as np
import pytest

import gradkiln as gk

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 1e-40, -1e-45, 3e38, -3e38, 7.0], "float32")
LEVELS = ["O0", "O1", "O2", "O3"]


def specials(dtype: str = "float32", n: int = 96) -> np.ndarray:
    """Every special value, repeated past a few vector widths so that vectorized loops see them."""
    with np.errstate(over="ignore"):  # 3e38 is inf in float16
        return np.resize(SPECIAL, n).astype(dtype)


def assert_ieee_equal(got: np.ndarray, want: np.ndarray, rtol: float = 0.0) -> None:
    """Equal values, NaN where numpy has NaN, and the same sign on every zero."""
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)
    zeros = want == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]), err_msg="sign of zero")


def run_both(build, feeds: dict[str, np.ndarray], optimize: str = "O2", schedule: bool = True):
    """The graph `build(*inputs)` on llvm and on the numpy executor, fed `feeds`."""
    with gk.Graph() as g:
        inputs = [gk.input(name, a.shape, str(a.dtype)) for name, a in feeds.items()]
        out = build(*inputs)
    with np.errstate(all="ignore"):
        want = gk.compile(g, out, target="numpy")(**feeds)
    got = gk.compile(g, out, target="llvm", optimize=optimize, schedule=schedule)(**feeds)
    return got, want


def x_and_y(dtype: str = "float32") -> dict[str, np.ndarray]:
    x = specials(dtype)
    return {"x": x, "y": np.roll(x, 5)}


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_not_equal_is_true_for_nan_as_numpy_isnan(dtype):
    """`x != x` is the user's NaN test (and ONNX IsNaN); LLVM's ordered compare gave False."""
    got, want = run_both(lambda x: gk.not_equal(x, x), {"x": specials(dtype)})
    np.testing.assert_array_equal(got, np.isnan(specials(dtype)))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("optimize", LEVELS)
def test_comparisons_with_nan(optimize):
    got, want = run_both(
        lambda x, y: [gk.not_equal(x, y), gk.equal(x, x), gk.less(x, y), gk.greater_equal(x, y)], x_and_y(), optimize
    )
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_negated_comparison_is_true_for_nan():
    """not(x < y) is true where either is NaN; TVM's simplifier rewrote it to y <= x, which is not."""
    got, want = run_both(lambda x, y: gk.bitwise_not(gk.less(x, y)), x_and_y())
    np.testing.assert_array_equal(got, want)
    assert got[0]  # x[0] is NaN


@pytest.mark.parametrize("schedule", [True, False])
@pytest.mark.parametrize("optimize", LEVELS)
def test_difference_of_a_value_with_itself(optimize, schedule):
    """sum(p - p) of p = exp(inf) is NaN (inf - inf), not 0 (TVM rewrote x - x to 0 in kernels)."""
    feeds = {"a": specials()}
    got, want = run_both(lambda a: (lambda p: [p - p, gk.sum(p - p, 0)])(gk.exp(a)), feeds, optimize, schedule)
    assert np.isnan(want[1])
    for g, w in zip(got, want):
        assert_ieee_equal(g, w)


@pytest.mark.parametrize("optimize", LEVELS)
def test_products_and_sums_with_zero_constants(optimize):
    """x * 0.0, 0.0 * x, 0.0 / x are NaN for NaN and inf x; -0.0 + 0.0 is +0.0 (TVM folded all of
    them while building the kernel)."""
    got, want = run_both(
        lambda x: [x * 0.0, 0.0 * x, gk.sum(gk.exp(x) * 0.0, 0), 0.0 / x, x + 0.0, x * -0.0],
        {"x": specials()},
        optimize,
    )
    assert np.isnan(want[2])
    for g, w in zip(got, want):
        assert_ieee_equal(g, w)


def test_a_product_of_two_scalar_constants_one_a_zero_compiles():
    """Both operands become immediates (TVM 0.27 counts a PrimExpr as a relax.Expr): legalizing
    must keep one a tensor, or TVM makes no kernel (an AssertionError the degenerate-graph fuzz met)."""
    from tvm import relax
    from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

    from gradkiln.lowering.tvm_ieee import LEGALIZE_MAP

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([], "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            zero = bb.emit(R.multiply(relax.const(np.float32(2.0)), relax.const(np.float32(0.0))))
            result = bb.emit_output(R.add(x, zero))
        bb.emit_func_output(result)
    legalized = relax.transform.LegalizeOps(LEGALIZE_MAP)(bb.get())
    assert len(legalized.functions) == 3  # main and a kernel each for the product and the sum


@pytest.mark.parametrize("optimize", LEVELS)
def test_cancellations_keep_nan_and_inf(optimize):
    got, want = run_both(lambda x, y: [(x + y) - y, x - (x + y), (x * y) - (x * y)], x_and_y(), optimize)
    for g, w in zip(got, want):
        assert_ieee_equal(g, w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extremes_propagate_nan_and_order_signed_zeros(dtype):
    got, want = run_both(
        lambda x, y: [gk.maximum(x, y), gk.minimum(x, y), gk.max(x, 0), gk.min(y, 0), gk.relu(x)], x_and_y(dtype)
    )
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_denormals_are_not_flushed():
    """No flush-to-zero: products and quotients that land in the denormals keep them."""
    x = np.array([1e-38, 3e-39, -1e-40, 3e-45, 2.0**-126] * 16, "float32")
    got, want = run_both(lambda x: [x * 0.5, x / 3.0, x - x * 0.25, gk.sum(x * 1e-3, 0)], {"x": x})
    assert np.count_nonzero(want[0]) == want[0].size
    for g, w in zip(got, want):
        assert_ieee_equal(g, w, rtol=1e-6)


EMPTY_REDUCTIONS = {
    "sum": lambda a: gk.sum(a, 0),
    "prod": lambda a: gk.prod(a, 0),
    "mean": lambda a: gk.mean(a, 0),
    "mean_all": lambda a: gk.mean(a),
    "var": lambda a: gk.var(a, 0),
    "sum_of_exp": lambda a: gk.sum(gk.exp(a) * 2.0, 0),
    "matmul": lambda a: gk.transpose(a, (1, 0)) @ a,
}


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:Degrees of freedom")
@pytest.mark.parametrize("schedule", [True, False])
@pytest.mark.parametrize("name", EMPTY_REDUCTIONS)
def test_reductions_over_an_empty_symbolic_axis_give_the_identity(name, schedule):
    """sum 0, prod 1, mean NaN, as numpy; the module compiled for N still serves N = 4 afterwards."""
    with gk.Graph() as g:
        out = EMPTY_REDUCTIONS[name](gk.input("a", ("N", 3)))
    compiled = gk.compile(g, out, target="llvm", schedule=schedule)
    reference = gk.compile(g, out, target="numpy")
    rng = np.random.default_rng(0)
    for a in (np.full((0, 3), 7.0, "float32"), rng.normal(size=(4, 3)).astype("float32")):
        with np.errstate(all="ignore"):
            want = reference(a=a)
        assert_ieee_equal(compiled(a=a), want, rtol=1e-5)


@pytest.mark.parametrize("op", ["max", "min", "argmax", "argmin", "logsumexp"])
def test_reductions_without_identity_refuse_an_empty_axis_at_run_time(op):
    """numpy raises for these; llvm used to return garbage (argmax: a pointer-sized index)."""
    with gk.Graph() as g:
        a = gk.input("a", ("N", 3))
        out = getattr(gk, op)(a, 0)
    compiled = gk.compile(g, out, target="llvm")
    with pytest.raises(gk.GradkilnError):
        gk.compile(g, out, target="numpy")(a=np.zeros((0, 3), "float32"))
    with pytest.raises(gk.ShapeError, match=rf"{op}\(f32\[N,3\]\) reduces axes of sizes \[0\] at N=0"):
        compiled(a=np.zeros((0, 3), "float32"))
    a = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(compiled(a=a), gk.compile(g, out, target="numpy")(a=a))


def test_fused_max_reduction_refuses_an_empty_axis():
    with gk.Graph() as g:
        a = gk.input("a", ("N", 3))
        out = gk.max(gk.exp(a) * 2.0, 0)
    compiled = gk.compile(g, out, target="llvm", optimize="O3")
    assert any(n.op == "fused_reduce" for n in compiled.nodes)
    with pytest.raises(gk.ShapeError, match="max of zero elements"):
        compiled(a=np.zeros((0, 3), "float32"))


def special_pairs(dtype: str) -> dict[str, np.ndarray]:
    """Every pair of special and ordinary values, with huge and mixed-sign operands."""
    values = np.concatenate([SPECIAL, [5.5, -5.5, 2.0, -3.0, 0.5, 1e30, -7e-39]]).astype("float64")
    a, b = np.meshgrid(values, values)
    with np.errstate(over="ignore"):
        return {"a": a.ravel().astype(dtype), "b": b.ravel().astype(dtype)}


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_mod_and_floordiv_follow_numpy(dtype):
    """mod(3e38, -3) is -1 (not 1e31), mod(x, -inf) is -inf for x > 0, floordiv(1, -inf) is -1,
    zeros carry numpy's signs; float16 rounds once from float32, as numpy's half loops do."""
    got, want = run_both(lambda a, b: [gk.mod(a, b), gk.floordiv(a, b)], special_pairs(dtype))
    for g, w in zip(got, want):
        assert_ieee_equal(g, w)
    one = run_both(
        lambda a, b: [gk.mod(a, b), gk.floordiv(a, b)], {"a": np.float32([3e38, 1]), "b": np.float32([-3, -np.inf])}
    )
    np.testing.assert_array_equal(one[0][0], [-1, -np.inf])
    np.testing.assert_array_equal(one[0][1], np.float32([-1e38, -1]))


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint32"])
def test_integer_division_by_zero_and_minus_one_does_not_trap(dtype):
    """x // 0 and x % 0 are 0 as in numpy, INT_MIN // -1 wraps; x86 traps on both (the process died)."""
    info = np.iinfo(dtype)
    values = np.array(sorted({info.min, info.min + 1, -7, -1, 0, 1, 2, 7, info.max}), "int64")
    values = values[(values >= info.min) & (values <= info.max)]
    a, b = (v.ravel().astype(dtype) for v in np.meshgrid(values, values))
    got, want = run_both(lambda a, b: [gk.mod(a, b), gk.floordiv(a, b)], {"a": a, "b": b})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trigonometry_of_huge_arguments(dtype):
    """sin, cos and tan of |x| >= 1e20 as numpy (the float32 vector reduction lost every digit there)."""
    x = np.resize(np.array([1e20, -1e20, 1e30, 3e38, 2e8, 3e8, 1e10, 0.5, np.inf, np.nan], dtype), 64)
    got, want = run_both(lambda x: [gk.sin(x), gk.cos(x), gk.tan(x)], {"x": x})
    for g, w in zip(got, want):
        assert_ieee_equal(g, w, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log1p_and_expm1_keep_small_arguments(dtype):
    """log(1 + x) and exp(x) - 1 gave 0 for x = 1e-40 and lost digits below 1e-4."""
    tiny = np.geomspace(1e-38, 1.0, 200) * np.resize([1.0, -1.0], 200)
    x = np.concatenate([tiny, specials("float64"), [-1.0, -1.5, 80.0, 1e3]]).astype(dtype)
    got, want = run_both(lambda x: [gk.log1p(x), gk.expm1(x)], {"x": x})
    for g, w in zip(got, want):
        assert_ieee_equal(g, w, rtol=5 * np.finfo(dtype).eps)


def test_max_and_min_of_infinities_are_infinite():
    """TVM starts max from the lowest finite float: the max of -infs was -3.4e38; the max of a row
    holding -3.4e38 itself stays that."""
    lowest = np.finfo("float32").min
    x = np.array([[-np.inf, -np.inf], [lowest, -np.inf], [np.nan, -np.inf], [1.0, -np.inf]], "float32")
    got, want = run_both(lambda x: [gk.max(x, 1), gk.min(-x, 1), gk.max(x, 0)], {"x": x})
    for g, w in zip(got, want):
        assert_ieee_equal(g, w)
    np.testing.assert_array_equal(got[0], np.float32([-np.inf, lowest, np.nan, 1.0]))


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_arg_extremes_pick_the_first_nan(op):
    """numpy's first NaN; also rows where TVM's start (index -1 at the largest finite value) stayed."""
    big = np.finfo("float32").max
    rows = [[1.0, np.nan, 3.0, np.nan], [-np.inf] * 4, [np.inf] * 4, [-np.inf, -big, -np.inf, -big], [2, 5, -1, 5]]
    x = np.array(rows, "float32")
    got, want = run_both(lambda x: [getattr(gk, op)(x, 1), getattr(gk, op)(-x, 0, keepdims=True)], {"x": x})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    got, want = run_both(lambda x: getattr(gk, op)(x, 1), {"x": x})
    np.testing.assert_array_equal(got, want)
    assert got[0] == 1


def test_concat_of_many_inputs_is_a_tree():
    """A concat of more than CONCAT_FAN_IN inputs is split (a 4800-way one, ONNX's dilated MaxPool,
    overflowed TVM's stack and killed the process); the result is the same."""
    with gk.Graph() as g:
        x = gk.input("x", (130, 3))
        out = gk.concat([x[i : i + 1] * float(i) for i in range(130)], 0)
    x = np.random.default_rng(0).normal(size=(130, 3)).astype("float32")
    np.testing.assert_array_equal(gk.compile(g, out, target="llvm")(x=x), gk.compile(g, out, target="numpy")(x=x))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sorting_orders_nan_last_and_keeps_zero_ties_stable_as_numpy(dtype):
    """TVM's float sort compared with `<`, no order with NaN: [3, nan, 1, -inf, nan, 2] sorted to
    [-inf, 1, 3, nan, nan, 2]; -0.0 and 0.0 are ties kept in index order."""
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([3, np.nan, 1, -np.inf, -np.nan, 2, -0.0, 0.0, np.inf, -tiny, tiny, 1], dtype)
    with gk.Graph() as g:
        t = gk.input("x", (x.size,), dtype)
        outs = [gk.sort(t, 0, False), gk.sort(t, 0, True), gk.argsort(t, 0, False), gk.argsort(t, 0, True)]
        outs += [*gk.topk(t, 3, 0, True), *gk.topk(t, 5, 0, False)]
    want = gk.compile(g, outs, target="numpy")(x=x)
    got = gk.compile(g, outs, target="llvm")(x=x)
    np.testing.assert_array_equal(want[2], np.argsort(x, kind="stable"))
    for w, o in zip(want, got):
        assert_ieee_equal(o, w)


@pytest.mark.parametrize("optimize", LEVELS)
def test_leaky_relu_and_elu_keep_nan_and_inf_as_numpy(optimize):
    """Relax's leakyrelu folded x * 0.0 to 0 (leaky_relu(-inf, 0.0) gave 0, numpy NaN); elu's
    minimum(x, 0) before exp dropped NaN (elu(NaN) gave 0); both found by the target fuzzer."""
    got, want = run_both(
        lambda x: [gk.leaky_relu(x, 0.0), gk.leaky_relu(x, 0.1), gk.elu(x, 1.0), gk.elu(x, 0.0)],
        {"x": specials()},
        optimize,
    )
    assert np.isnan(want[0]).sum() > np.isnan(specials()).sum()  # -inf * 0.0 is NaN
    for g, w, rtol in zip(got, want, [0.0, 0.0, 3e-7, 0.0]):  # elu: expm1 through the vector exp (1 ulp)
        assert_ieee_equal(g, w, rtol)


def test_sorting_a_fused_floordiv_compiles():
    """The sort key inlines its producer; floordiv's kernel binds a Let, which read at several places
    of the key was defined twice (ill-formed TIR). Found by the target fuzzer."""
    x = np.array([1.9087, -0.4801], "float32").reshape((1, 1, 1, 2))
    got, want = run_both(
        lambda t: [gk.argsort(gk.floordiv(t, gk.constant(np.float32(-1.0))), 1, False)], {"x": x}, "O0"
    )
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int8", "int64"])
def test_neg_and_sign_of_integers_follow_numpy(dtype):
    """Unsigned neg wraps around and sign is 0 or 1, as numpy (TVM's negative and sign made a -1 no
    unsigned type holds and failed to compile; its 0 - x of uint32 gave 0). Found by the target fuzzer."""
    x = np.array([0, 1, 2, np.iinfo(dtype).max, np.iinfo(dtype).min], dtype)
    for optimize in ("O0", "O3"):
        got, want = run_both(lambda t: [gk.neg(t), gk.sign(t)], {"x": x}, optimize)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("optimize", ["O0", "O3"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "build",
    [lambda x, y, z: x * y + z, lambda x, y, z: z - x * y, lambda x, y, z: (x * y + z) * x - y * z],
    ids=["x*y+z", "z-x*y", "chain"],
)
def test_a_product_feeding_a_sum_is_rounded_on_its_own_as_numpy_does(build, dtype, optimize):
    """TVM's LLVM target allows fusing a multiply into the add that reads it (one rounding where numpy
    rounds twice: about a quarter of float32 results 1 ulp off); the fence keeps them apart, bit for bit."""
    rng = np.random.default_rng(0)
    feeds = {name: rng.normal(size=4096).astype(dtype) for name in "xyz"}
    got, want = run_both(build, feeds, optimize=optimize)
    assert np.array_equal(got, want), f"{int(np.sum(got != want))} of {got.size} elements differ"


@pytest.mark.parametrize("optimize", ["O0", "O3"])
def test_logsumexp_of_infinities_and_nan_as_numpy(optimize):
    """max + log(sum(exp(x - max))) made inf - inf = NaN where a row holds +inf; numpy's reference gives inf."""
    x = np.float32([[1.85, np.inf, -0.3], [-np.inf, -np.inf, -np.inf], [np.nan, 1, 2], [1, 2, 3], [-np.inf, 1, np.inf]])
    got, want = run_both(lambda x: gk.logsumexp(x, (1,)), {"x": x}, optimize)
    assert_ieee_equal(got, want, rtol=1e-6)
    np.testing.assert_array_equal(want[[0, 1, 4]], [np.inf, -np.inf, np.inf])


@pytest.mark.parametrize("optimize", ["O0", "O3"])
def test_mod_and_floordiv_of_each_other_compile_and_follow_numpy(optimize):
    """floordiv(mod(x, x), y): the inlined mod's Let, read twice by floordiv, was defined twice (ill-formed TIR)."""
    x = np.float32([[-1e-45], [3.0], [-7.5]])
    y = np.float32([[0.17, 1.2], [-2.0, 0.0], [np.inf, -0.0]])
    got, want = run_both(
        lambda x, y: [gk.floordiv(gk.mod(x, x), y), gk.mod(gk.floordiv(y, x), x)], {"x": x, "y": y}, optimize
    )
    for g, w in zip(got, want):
        assert_ieee_equal(g, w)


def test_mean_var_and_std_over_a_static_empty_axis_are_nan():
    """Relax folded the division by a zero count and failed to compile var and std of a (0, 1) array."""
    x = np.zeros((0, 1))
    got, want = run_both(
        lambda x: [gk.var(x, (0,), keepdims=True), gk.std(x, (0,)), gk.mean(x, (0,)), gk.std(x, (0,), correction=1)],
        {"x": x},
    )
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.isnan(w).all() and np.isnan(g).all()
