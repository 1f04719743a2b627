"""The builder API: operators, promotion, indexing, composite ops, and the errors users see."""

import numpy as np
import pytest

import gradkiln as gk


def run(graph, outputs, **feeds):
    return gk.compile(graph, outputs, target="numpy")(**feeds)


def test_operators_match_numpy():
    a = np.array([[1.5, -2.0, 3.0], [0.5, 4.0, -1.0]], np.float32)
    b = np.array([2.0, 0.5, -3.0], np.float32)
    with gk.Graph("ops") as g:
        x, y = gk.input("x", (2, 3)), gk.input("y", (3,))
        outs = [x + y, x - y, x * y, x / y, abs(x) ** y, -x, x @ y, 2.0 - x, 1.0 / y, x > y, x <= y, x == y, x != y]
    got = run(g, outs, x=a, y=b)
    want = [a + b, a - b, a * b, a / b, np.abs(a) ** b, -a, a @ b, 2 - a, 1 / b, a > b, a <= b, a == b, a != b]
    for w, r in zip(want, got):
        np.testing.assert_allclose(r, w, rtol=1e-6)
        assert r.dtype == w.dtype


def test_scalars_are_weakly_typed_and_tensors_promote():
    with gk.Graph() as g:
        h = gk.input("h", (2,), "float16")
        i = gk.input("i", (2,), "int32")
        d = gk.input("d", (2,), "float64")
        assert (h * 2.0).dtype == "float16"
        assert (i + 1).dtype == "int32"
        assert (i * 0.5).dtype == "float32"
        assert (h + d).dtype == "float64"
        assert (i / i).dtype == "float32"
        assert gk.exp(i).dtype == "float32"
    assert "cast" in {n.op for n in g.nodes()}


@pytest.mark.parametrize(
    "index",
    [0, -1, (slice(None), 1), (slice(1, None), slice(None, None, 2)), (Ellipsis, 0), (None, 1), (1, slice(0, 2), None)],
)
def test_indexing_matches_numpy(index):
    data = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    with gk.Graph() as g:
        out = gk.input("x", (3, 4, 2))[index]
    np.testing.assert_array_equal(run(g, out, x=data), data[index])


def test_symbolic_batch_shapes_and_reshape_minus_one():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 4, 2))
        flat = gk.reshape(x, (-1, 8))
        tail = x[:, 1:]
    assert str(flat.type) == "f32[N,8]"
    assert str(tail.type) == "f32[N,3,2]"
    for n in (1, 5):
        data = np.random.default_rng(n).normal(size=(n, 4, 2)).astype(np.float32)
        got_flat, got_tail = run(g, [flat, tail], x=data)
        np.testing.assert_array_equal(got_flat, data.reshape(-1, 8))
        np.testing.assert_array_equal(got_tail, data[:, 1:])


def test_reductions_softmax_and_shape_ops():
    data = np.random.default_rng(0).normal(size=(2, 3, 4))
    with gk.Graph() as g:
        x = gk.input("x", (2, 3, 4), "float64")
        outs = {
            "sum": gk.sum(x, axis=(0, 2), keepdims=True),
            "mean": x.mean(1),
            "max": x.max(),
            "softmax": gk.softmax(x, axis=1),
            "log_softmax": gk.log_softmax(x),
            "transpose": gk.transpose(x, (2, 0, 1)),
            "concat": gk.concat([x, x * 2.0], axis=1),
            "broadcast": gk.broadcast_to(gk.expand_dims(x.sum(0), 0), (5, 3, 4)),
            "where": gk.where(x > 0, x, 0.0),
            "pad": gk.pad(x, (0, 1, 0), (1, 0, 2), (0, 1, 0)),
        }
    got = run(g, outs, x=data)
    e = np.exp(data - data.max(1, keepdims=True))
    np.testing.assert_allclose(got["sum"], data.sum((0, 2), keepdims=True))
    np.testing.assert_allclose(got["mean"], data.mean(1))
    np.testing.assert_allclose(got["max"], data.max())
    np.testing.assert_allclose(got["softmax"], e / e.sum(1, keepdims=True))
    np.testing.assert_allclose(np.exp(got["log_softmax"]).sum(-1), 1.0)
    np.testing.assert_array_equal(got["transpose"], data.transpose(2, 0, 1))
    np.testing.assert_array_equal(got["concat"], np.concatenate([data, data * 2], 1))
    np.testing.assert_allclose(got["broadcast"], np.broadcast_to(data.sum(0), (5, 3, 4)))
    np.testing.assert_array_equal(got["where"], np.where(data > 0, data, 0))
    assert got["pad"].shape == (3, 6, 6)
    np.testing.assert_array_equal(got["pad"][0:2, 1:6:2, 0:4], data)
    assert got["pad"].sum() == pytest.approx(data.sum())


def test_batched_matmul_and_vectors():
    rng = np.random.default_rng(1)
    a, b, v = rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(5, 4, 2)), rng.normal(size=4)
    with gk.Graph() as g:
        ta, tb, tv = gk.input("a", a.shape, "f64"), gk.input("b", b.shape, "f64"), gk.input("v", (4,), "f64")
        outs = [ta @ tb, ta @ tv, tv @ tb, tv @ tv]
    for got, want in zip(run(g, outs, a=a, b=b, v=v), [a @ b, a @ v, v @ b, v @ v]):
        np.testing.assert_allclose(got, want)


def test_cross_entropy_with_labels_and_probabilities():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    probs = np.eye(4)[labels]
    with gk.Graph() as g:
        z = gk.input("z", (6, 4), "float64")
        by_index = gk.cross_entropy(z, gk.input("labels", (6,), "int64"))
        by_prob = gk.cross_entropy(z, gk.input("probs", (6, 4), "float64"))
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -log_p[np.arange(6), labels].mean()
    got = run(g, [by_index, by_prob], z=logits, labels=labels, probs=probs)
    np.testing.assert_allclose(got, [want, want])


def test_trace_decorator_builds_and_runs():
    @gk.trace(gk.spec(("N", 3)), gk.spec((3,)))
    def affine(x, b):
        return gk.tanh(x * 2.0 + b)

    assert [n.name for n in affine.graph.inputs()] == ["x", "b"]
    x, b = np.ones((4, 3), np.float32), np.arange(3, dtype=np.float32)
    np.testing.assert_allclose(affine(x, b), np.tanh(x * 2 + b), rtol=1e-6)


def test_printing_reads_like_code():
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 784))
        w1 = gk.param("w1", np.zeros((784, 512), np.float32))
        gk.matmul(x, w1)
    text = str(g)
    assert "%x = input() : f32[N,784]" in text
    assert "%2 = matmul(%x, %w1) : f32[N,512]" in text


def test_params_default_to_their_value_and_can_be_overridden():
    with gk.Graph() as g:
        w = gk.param("w", np.array([1.0, 2.0], np.float32))
        y = gk.sum(w * 3.0)
    fn = gk.compile(g, y)
    assert fn() == pytest.approx(9.0)
    assert fn(w=np.array([0.0, 1.0])) == pytest.approx(3.0)


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_filled_tensors_match_numpy_and_bind_symbolic_dims_from_an_unused_input(target):
    with gk.Graph() as g:
        x = gk.input("x", ("n", 3), "float64")
        out = gk.zeros(x.shape) + gk.ones((3,), "float64") * gk.full((1, 3), 2.5, "float64")
        like = gk.zeros_like(x) + gk.ones_like(x) + gk.full_like(x, -1.0)
        dtypes = gk.zeros((2,)).dtype, gk.ones((2,), "int32").dtype, gk.full((2,), 1.5).dtype
    assert dtypes == ("float32", "int32", "float32")
    got, got_like = gk.compile(g, [out, like], target=target)(x=np.zeros((4, 3)))
    np.testing.assert_array_equal(got, np.full((4, 3), 2.5))
    np.testing.assert_array_equal(got_like, np.zeros((4, 3)))


def test_a_symbolic_dim_no_input_has_is_a_clear_error_at_compile_time():
    with gk.Graph() as g:
        out = gk.zeros(("m", 2))
    with pytest.raises(gk.ShapeError, match=r"broadcast_to node .* no input of graph .* has the dim.*m"):
        gk.compile(g, out)


def test_integer_and_bitwise_operators_match_numpy():
    a, x = np.array([1, 2, -3], np.int32), np.array([0.3, -1.2, 2.5], np.float32)
    with gk.Graph() as g:
        ta, tx = gk.input("a", (3,), "int32"), gk.input("x", (3,))
        outs = [(ta << 2) ^ (ta & 1), ta | 4, ~ta, 7 // ta, ta % 2, 5 % ta, tx // 0.5, tx % 0.7, 7 >> (ta & 3), 1 & ta]
    want = [(a << 2) ^ (a & 1), a | 4, ~a, 7 // a, a % 2, 5 % a, x // 0.5, x % 0.7, 7 >> (a & 3), 1 & a]
    for got, expected in zip(run(g, outs, a=a, x=x), want):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6)


NUMPY_SCALARS = [
    np.uint8(1),
    np.int8(-3),
    np.uint16(7),
    np.int32(5),
    np.uint64(9),
    np.float16(0.5),
    np.float32(0.25),
    np.float64(0.1),
    np.bool_(True),
    np.complex64(1 + 2j),
    np.array(3, np.uint8),
    np.array([1.5, 2.5], np.float64),
]


@pytest.mark.parametrize("value", NUMPY_SCALARS, ids=lambda v: f"{type(v).__name__}-{v.dtype}")
def test_numpy_scalars_and_arrays_keep_their_dtype_as_constants(value):
    with gk.Graph() as g:
        c = gk.constant(value)
    assert c.dtype == np.result_type(value).name
    np.testing.assert_array_equal(run(g, c), value)


def test_python_numbers_take_the_default_dtypes():
    with gk.Graph():
        assert gk.constant(0.1).dtype == "float32"
        assert gk.constant(3).dtype == "int64"
        assert gk.constant([1, 2]).dtype == "int64"
        assert gk.constant(True).dtype == "bool"


# (tensor dtype, scalar): numpy scalars are strongly typed, Python numbers weakly (NEP 50), within a kind
PROMOTION_CASES = [
    ("uint8", np.uint8(200)),
    ("int8", np.uint8(200)),
    ("uint8", np.int8(-100)),
    ("int16", np.int64(70000)),
    ("uint32", np.uint64(2**40)),
    ("float32", np.float64(0.1)),
    ("float16", np.float32(0.1)),
    ("float64", np.float16(0.5)),
    ("uint8", 3),
    ("int8", -3),
    ("float16", 0.1),
    ("float32", 0.1),
]


@pytest.mark.parametrize(("dtype", "scalar"), PROMOTION_CASES, ids=lambda c: repr(c))
def test_tensor_and_scalar_promote_as_numpy_does(dtype, scalar):
    data = np.array([1, 2, 100], dtype)
    want = data + scalar
    assert want.dtype == np.result_type(data, scalar)
    with gk.Graph() as g:
        x = gk.input("x", (3,), dtype)
        out = x + scalar
    assert out.dtype == want.dtype.name
    np.testing.assert_array_equal(run(g, out, x=data), want)


def test_a_uint8_constant_keeps_a_uint8_tensor_uint8():
    with gk.Graph():
        x = gk.input("x", (4,), "uint8")
        assert (x * gk.constant(np.uint8(2))).dtype == "uint8"
