"""Complex dtypes: the complex ops and complex arithmetic against numpy, promotion, the ops that
refuse complex operands, and the backends (TVM, ONNX) that refuse complex values clearly."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.passes.cost import TRANSCENDENTAL
from gradkiln.testing import complex_samples

RNG = np.random.default_rng(0)


def crand(*shape, dtype="complex128"):
    return (RNG.normal(size=shape) + 1j * RNG.normal(size=shape)).astype(dtype)


Z, W, M = crand(3, 4), crand(4), crand(4, 2)
# name: (gradkiln function of z (3, 4), w (4,), m (4, 2); numpy function of the same)
CASES = {
    "real": (lambda z, w, m: gk.real(z), lambda z, w, m: z.real),
    "tensor_methods": (lambda z, w, m: z.real + z.imag * w.conj().real, lambda z, w, m: z.real + z.imag * w.real),
    "imag": (lambda z, w, m: gk.imag(z), lambda z, w, m: z.imag),
    "conj": (lambda z, w, m: gk.conj(z), lambda z, w, m: np.conj(z)),
    "angle": (lambda z, w, m: gk.angle(z), lambda z, w, m: np.angle(z)),
    "abs": (lambda z, w, m: gk.abs(z), lambda z, w, m: np.abs(z)),
    "complex": (lambda z, w, m: gk.complex(gk.real(z), gk.imag(w)), lambda z, w, m: z.real + 1j * w.imag),
    "add_sub": (lambda z, w, m: z + w - 2.0, lambda z, w, m: z + w - 2.0),
    "mul_div": (lambda z, w, m: z * w / (w + 3.0), lambda z, w, m: z * w / (w + 3.0)),
    "neg_square": (lambda z, w, m: -gk.square(z), lambda z, w, m: -np.square(z)),
    "exp_log": (lambda z, w, m: gk.exp(z) + gk.log(w), lambda z, w, m: np.exp(z) + np.log(w)),
    "reciprocal": (lambda z, w, m: gk.reciprocal(z), lambda z, w, m: 1 / z),
    "sum_mean": (lambda z, w, m: gk.sum(z, 0) + gk.mean(z), lambda z, w, m: z.sum(0) + z.mean()),
    "matmul": (lambda z, w, m: z @ m, lambda z, w, m: z @ m),
    "einsum": (lambda z, w, m: gk.einsum("ij,jk->ik", z, m), lambda z, w, m: z @ m),
    "imaginary_scalar": (lambda z, w, m: z * 2j, lambda z, w, m: z * 2j),
    "shapes": (
        lambda z, w, m: gk.transpose(gk.concat([z, z], 0), (1, 0))[1:],
        lambda z, w, m: np.concatenate([z, z]).T[1:],
    ),
    "where": (lambda z, w, m: gk.where(gk.real(z) > 0, z, w), lambda z, w, m: np.where(z.real > 0, z, w)),
}


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("memory_plan", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_complex_values_match_numpy(case, dtype, memory_plan):
    ours, oracle = CASES[case]
    feeds = {"z": Z.astype(dtype), "w": W.astype(dtype), "m": M.astype(dtype)}
    with gk.Graph() as g:
        out = ours(*(gk.input(k, v.shape, dtype) for k, v in feeds.items()))
    got = gk.compile(g, out, memory_plan=memory_plan)(**feeds)
    want = oracle(*feeds.values())
    assert got.dtype == np.asarray(want).astype(out.dtype).dtype == out.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "complex64" else 1e-12, atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ("float32", "complex64", "complex64"),
        ("float64", "complex64", "complex128"),
        ("int64", "complex64", "complex64"),
        ("complex64", "complex128", "complex128"),
    ],
)
def test_promotion_follows_torch(a, b, want):
    import torch

    with gk.Graph():
        x, y = gk.input("x", (2,), a), gk.input("y", (2,), b)
        assert (x + y).dtype == want
    assert str(torch.result_type(torch.ones(2, dtype=getattr(torch, a)), torch.ones(2, dtype=getattr(torch, b)))) == (
        f"torch.{want}"
    )


def test_part_functions_of_a_real_tensor_follow_numpy():
    x = np.array([-2.0, 0.0, 3.0], np.float32)
    with gk.Graph() as g:
        t = gk.input("x", (3,), "float32")
        assert gk.real(t) is t and gk.conj(t) is t
        outs = [gk.imag(t), gk.angle(t), t * 1j]
    imag, angle, times_i = gk.compile(g, outs)(x=x)
    np.testing.assert_array_equal(imag, np.imag(x))
    np.testing.assert_allclose(angle, np.angle(x))
    assert times_i.dtype == np.complex64 and np.array_equal(times_i, x * 1j)


def test_complex_of_infinite_parts_keeps_them_apart():
    with gk.Graph() as g:
        z = gk.complex(gk.input("a", (1,), "float64"), gk.input("b", (1,), "float64"))
    got = gk.compile(g, z)(a=np.array([1.0]), b=np.array([np.inf]))
    assert got[0].real == 1.0 and got[0].imag == np.inf


@pytest.mark.parametrize(
    ("build", "op"),
    [
        (gk.sqrt, "sqrt"),
        (gk.tanh, "tanh"),
        (gk.relu, "relu"),
        (gk.sign, "sign"),
        (gk.softmax, "softmax"),
        (lambda z: gk.max(z), "max"),
        (lambda z: gk.prod(z), "prod"),
        (lambda z: gk.maximum(z, z), "maximum"),
        (lambda z: z < z, "less"),
        (lambda z: gk.cast(z, "float32"), "cast"),
        (lambda z: gk.sort(z), "sort"),
        (lambda z: gk.cumsum(z, 0), "cumsum"),
        (lambda z: z**2.0, "pow"),
    ],
)
def test_other_ops_refuse_complex_naming_the_op(build, op):
    with gk.Graph():
        z = gk.input("z", (3,), "complex64")
        with pytest.raises(gk.DTypeError, match=rf"^{op}\(%z: c64\[3\].*\): .*complex"):
            build(z)


def test_part_ops_refuse_real_operands_and_complex_refuses_int_parts():
    with gk.Graph():
        x, i = gk.input("x", (3,), "float32"), gk.input("i", (3,), "int64")
        with pytest.raises(gk.DTypeError, match=r"^imag\(%x: f32\[3\]\): takes a complex tensor"):
            gk.emit("imag", x)
        with pytest.raises(gk.DTypeError, match=r"^complex\(%i: i64\[3\], %i: i64\[3\]\).*float32 or float64"):
            gk.emit("complex", i, i)
        assert gk.complex(i, 0).dtype == "complex64"


def test_a_complex_output_needs_a_seed_to_differentiate():
    with gk.Graph():
        z = gk.input("z", (), "complex64")
        with pytest.raises(gk.GradientError, match="is complex"):
            gk.grad(z * z, z)


def test_tvm_refuses_complex_values_naming_the_node():
    with gk.Graph() as g:
        z = gk.input("z", (3,), "complex64")
        loss = gk.sum(gk.abs(gk.exp(z)))
    with pytest.raises(
        gk.LoweringError, match=r"'llvm': %z = input\(\.\.\.\) -> c64\[3\] is complex; .*compile\(target='numpy'\)"
    ):
        gk.compile(g, loss, target="llvm")


def test_onnx_export_refuses_complex_values_naming_the_node():
    with gk.Graph() as g:
        z = gk.complex(gk.input("a", (3,), "float32"), gk.input("b", (3,), "float32"))
        out = gk.abs(z)
    with pytest.raises(gk.ONNXError, match=r"complex\(\.\.\.\) -> c64\[3\]: ONNX operators do not accept complex"):
        gk.onnx_io.export(g, out)


def test_cost_rules_cover_the_complex_ops():
    sample = next(s for s in complex_samples() if s.op == "angle")
    graph, _, out = sample.graph()
    flops = {n.op: n.flops for n in gk.cost(graph, out).nodes}
    assert flops["angle"] == TRANSCENDENTAL * 12 and flops["div"] == 12


def test_o2_keeps_log_of_exp_of_a_complex_value():
    z = np.array([1 + 4j, -2 - 7j], "complex128")
    with gk.Graph() as g:
        out = gk.log(gk.exp(gk.input("z", (2,), "complex128")))
    optimized, (value,), _ = gk.optimize(g, [out.value], "O2")
    assert "log" in {node.op for node in optimized.nodes()}
    np.testing.assert_allclose(gk.compile(optimized, value)(z=z), np.log(np.exp(z)))
