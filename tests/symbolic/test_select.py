"""Selection ops, the shape composites and seeded dropout: values and gradients against torch
(sort, topk, gather, scatter, ties included), numpy (stack, split, tile, repeat, flip), finite
differences (every composite), and dropout's mask on numpy, TVM and onnxruntime."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import gradkiln as gk
from gradkiln.graph.ops.dropout import keep_mask
from gradkiln.onnx_io import import_model
from gradkiln.symbolic import grad, vmap

TIES = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, 0.5, -1.0, 0.5], [4.0, -2.0, 0.0, 7.0, 1.0, -3.0]])


def _run(outputs, target="numpy", **feeds):
    graph = outputs[0].graph
    return [np.asarray(v) for v in gk.compile(graph, list(outputs), target=target)(**feeds)]


def _torch_grads(fn, x, seed):
    """d sum(seed * fn(x)) / dx by torch autograd."""
    t = torch.tensor(x, requires_grad=True)
    (fn(t) * torch.tensor(seed)).sum().backward()
    return t.grad.numpy()


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
def test_sort_and_argsort_match_torch_stable_sort_with_ties(axis, descending):
    seed = np.random.default_rng(0).normal(size=TIES.shape)
    with gk.Graph():
        x = gk.input("x", TIES.shape, "float64")
        values, order = gk.sort(x, axis, descending), gk.argsort(x, axis, descending)
        (dx,) = grad(values, [x], seed=seed)
    got_values, got_order, got_dx = _run([values, order, dx], x=TIES)
    want = torch.sort(torch.tensor(TIES), dim=axis, descending=descending, stable=True)
    np.testing.assert_array_equal(got_values, want.values.numpy())
    np.testing.assert_array_equal(got_order, want.indices.numpy())
    sort_values = lambda t: torch.sort(t, dim=axis, descending=descending, stable=True).values  # noqa: E731
    np.testing.assert_allclose(got_dx, _torch_grads(sort_values, TIES, seed))


@pytest.mark.parametrize("largest", [True, False])
def test_topk_values_indices_and_gradient_match_torch_with_ties(largest):
    """Ties: the lower index first, as torch's stable sort (torch.topk leaves tie order open)."""
    seed = np.random.default_rng(1).normal(size=(3, 4))
    with gk.Graph():
        x = gk.input("x", (3, 6), "float64")
        values, indices = gk.topk(x, 4, axis=1, largest=largest)
        (dx,) = grad(values, [x], seed=seed)
    got_values, got_indices, got_dx = _run([values, indices, dx], x=TIES)
    want = torch.sort(torch.tensor(TIES), dim=1, descending=largest, stable=True)
    np.testing.assert_array_equal(got_indices, want.indices[:, :4].numpy())
    np.testing.assert_array_equal(got_values, want.values[:, :4].numpy())
    top = lambda t: torch.sort(t, dim=1, descending=largest, stable=True).values[:, :4]  # noqa: E731
    np.testing.assert_allclose(got_dx, _torch_grads(top, TIES, seed))


def test_topk_without_ties_matches_torch_topk():
    x = np.random.default_rng(2).permutation(20).reshape(4, 5).astype(np.float64)
    with gk.Graph():
        values, indices = gk.topk(gk.input("x", (4, 5), "float64"), 2, axis=0)
    got_values, got_indices = _run([values, indices], x=x)
    want = torch.topk(torch.tensor(x), 2, dim=0)
    np.testing.assert_array_equal(got_values, want.values.numpy())
    np.testing.assert_array_equal(got_indices, want.indices.numpy())


def test_gather_and_scatter_elements_match_torch_values_and_gradients():
    rng = np.random.default_rng(3)
    x, updates = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    index = np.array([[0, 3, 3, 1, 0], [2, 2, 2, 2, 2], [1, 0, 3, 0, 1]])
    seed_gather, seed_scatter = rng.normal(size=(3, 5)), rng.normal(size=(3, 4))
    with gk.Graph():
        gx, gu = gk.input("x", (3, 4), "float64"), gk.input("u", (3, 5), "float64")
        gathered = gk.gather_elements(gx, index - 4 * (index == 3), axis=1)  # -1 stands for 3
        scattered = gk.scatter_elements_add(gx, index, gu, axis=1)
        d_gather = grad(gathered, [gx], seed=seed_gather)
        d_scatter = grad(scattered, [gx, gu], seed=seed_scatter)
    got = _run([gathered, scattered, *d_gather, *d_scatter], x=x, u=updates)
    tx, tu, ti = torch.tensor(x, requires_grad=True), torch.tensor(updates, requires_grad=True), torch.tensor(index)
    want_gather, want_scatter = torch.gather(tx, 1, ti), torch.scatter_add(tx, 1, ti, tu)
    np.testing.assert_allclose(got[0], want_gather.detach().numpy())
    np.testing.assert_allclose(got[1], want_scatter.detach().numpy())
    (want_gather * torch.tensor(seed_gather)).sum().backward()
    np.testing.assert_allclose(got[2], tx.grad.numpy())
    tx.grad = None
    (want_scatter * torch.tensor(seed_scatter)).sum().backward()
    np.testing.assert_allclose(got[3], tx.grad.numpy())
    np.testing.assert_allclose(got[4], tu.grad.numpy())


def test_shape_composites_match_numpy_also_over_a_symbolic_batch():
    x = np.arange(24, dtype=np.float64).reshape(4, 6)
    with gk.Graph():
        t = gk.input("x", ("N", 6), "float64")
        outs = [
            gk.stack([t, t * 2], axis=1),
            *gk.split(t, [1, 2, 3], axis=1),
            *gk.split(t, 3, axis=-1),
            gk.tile(t, (2, 1, 3)),
            gk.tile(t, 2),
            gk.repeat(t, 3, axis=0),
            gk.repeat(t, 2, axis=1),
            gk.flip(t, 0),
            gk.flip(t),
        ]
    want = [
        np.stack([x, x * 2], axis=1),
        *np.split(x, [1, 3], axis=1),
        *np.split(x, 3, axis=-1),
        np.tile(x, (2, 1, 3)),
        np.tile(x, 2),
        np.repeat(x, 3, axis=0),
        np.repeat(x, 2, axis=1),
        np.flip(x, 0),
        np.flip(x),
    ]
    for got, expected in zip(_run(outs, x=x), want):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: gk.stack([x, gk.sin(x)], axis=2),
        lambda x: gk.split(x, [2, 1], axis=0)[1] * gk.split(x, [2, 1], axis=0)[0][:1],
        lambda x: gk.tile(x, (2, 1, 2)) ** 2,
        lambda x: gk.repeat(x, 3, axis=1) ** 2,
        lambda x: gk.flip(x, (0, 1)) * x,
        lambda x: gk.sort(x, 0, descending=True) ** 2,
        lambda x: gk.topk(x, 2, axis=1, largest=False)[0] ** 2,
        lambda x: gk.dropout(x, 0.5, 9) ** 2,
    ],
    ids=["stack", "split", "tile", "repeat", "flip", "sort", "topk", "dropout"],
)
def test_gradients_match_finite_differences(fn):
    x = np.random.default_rng(4).permutation(12).reshape(3, 4) * 0.3 - 1.0
    assert gk.check_grad(fn, {"x": x}).ok


def _dropout_model_and_mask(shape, rate, seed):
    with gk.Graph() as g:
        x = gk.input("x", shape, "float32")
        out = gk.dropout(x, rate, seed)
        (dx,) = grad(out, [x], seed=gk.input("g", shape, "float32"))
    return g, out, dx


@pytest.mark.parametrize("shape", [(6, 50), ("N", 50)], ids=["static", "symbolic"])
def test_dropout_draws_the_same_mask_on_numpy_tvm_and_onnxruntime(shape):
    rate, seed = 0.3, 1234
    x = np.random.default_rng(5).uniform(0.5, 1.5, (6, 50)).astype(np.float32)
    g, out, dx = _dropout_model_and_mask(shape, rate, seed)
    ones = np.ones_like(x)
    reference = _run([out, dx], x=x, g=ones)
    mask = keep_mask(x.shape, seed, rate)
    np.testing.assert_array_equal(reference[0], np.where(mask, x * np.float32(1 / (1 - rate)), 0))
    np.testing.assert_array_equal(reference[1] != 0, mask)  # the gradient reuses the mask
    np.testing.assert_allclose(reference[1][mask], 1 / (1 - rate), rtol=1e-6)
    session = ort.InferenceSession(gk.onnx_io.export(g, [out, dx]).SerializeToString())
    for got in (_run([out, dx], "llvm", x=x, g=ones), session.run(None, {"x": x, "g": ones})):
        np.testing.assert_array_equal(got[0], reference[0])
        np.testing.assert_array_equal(got[1], reference[1])


def test_dropout_of_a_scalar_draws_the_same_mask_on_numpy_and_tvm():
    """The flat index of a 0-d tensor was a Python 0 in the TVM kernel, which made an int32 hash
    that overflowed: llvm dropped scalars numpy keeps."""
    with gk.Graph():
        x = gk.input("x", (), "float32")
        outs = [gk.dropout(x, 0.5, seed) for seed in range(16)]
    want = [np.where(keep_mask((), seed, 0.5), np.float32(4.0), np.float32(0.0)) for seed in range(16)]
    assert 0 < sum(w != 0 for w in want) < 16  # both outcomes are drawn
    for got in (_run(outs, x=np.float32(2.0)), _run(outs, "llvm", x=np.float32(2.0))):
        np.testing.assert_array_equal(got, want)


def test_dropout_keeps_about_one_minus_rate_and_masks_differ_by_seed():
    first, second = keep_mask((200, 500), 0, 0.25), keep_mask((200, 500), 1, 0.25)
    assert abs(first.mean() - 0.75) < 0.005
    assert abs((first & second).mean() - 0.75**2) < 0.005  # independent-looking seeds
    flat = first.ravel().astype(float)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01  # neighbours uncorrelated


def test_dropout_is_the_identity_at_inference_and_rejects_bad_arguments():
    with gk.Graph():
        x = gk.input("x", (3,))
        assert gk.dropout(x, 0.5, 0, training=False) is x
        with pytest.raises(gk.GraphError, match=r"rate 1\.0 must be in"):
            gk.dropout(x, 1.0, 0)
        with pytest.raises(gk.GraphError, match="seed must be an int"):
            gk.dropout(x, 0.5, 1.5)


def test_vmap_batches_topk_and_dropout_as_separate_calls_would():
    xs = np.random.default_rng(6).normal(size=(3, 2, 5))
    with gk.Graph():
        x, batch = gk.input("x", (2, 5), "float64"), gk.input("xs", (3, 2, 5), "float64")
        values, indices = gk.topk(x, 2, axis=1)
        dropped = gk.dropout(x, 0.4, 3)
        batched = vmap([values, indices, dropped], [x], [batch])
    got = _run(batched, x=xs[0], xs=xs)
    per_example = [_run([values, indices, dropped], x=row, xs=xs) for row in xs]
    for k in range(3):
        np.testing.assert_array_equal(got[k], np.stack([p[k] for p in per_example]))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda x: gk.topk(x, 7, axis=1), r"topk.*k=7 must be an int in \[1, 6\]"),
        (lambda x: gk.gather_elements(x, np.zeros((2, 2), np.int64), 1), r"gather_elements.*indices \(2, 2\)"),
        (lambda x: gk.split(x, [2, 3], axis=1), "add up to 5, not to axis 1"),
        (lambda x: gk.split(x, 4, axis=1), "cannot be cut into 4 equal pieces"),
        (lambda x: gk.repeat(x, 0), "repeats must be an int >= 1"),
    ],
    ids=["topk_k", "gather_shape", "split_sizes", "split_count", "repeat_count"],
)
def test_bad_arguments_raise_shape_errors_naming_the_op(build, message):
    with gk.Graph():
        x = gk.input("x", (3, 6))
        with pytest.raises(gk.ShapeError, match=message):
            build(x)


def _model(node, inputs, outputs, initializers=()):
    graph = helper.make_graph([node], "m", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("reduction", ["none", "add"])
def test_onnx_scatter_elements_and_topk_import_as_the_native_ops_and_match_onnxruntime(reduction):
    rng = np.random.default_rng(7)
    data, updates = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    index = np.array([[1, -1], [0, 2], [3, 1]], np.int64)
    float_in = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("d", [3, 4]), ("u", [3, 2]))]
    scatter = _model(
        helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=1, reduction=reduction),
        float_in,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(index, "i")],
    )
    topk = _model(
        helper.make_node("TopK", ["d", "k"], ["v", "j"], axis=1, largest=0),
        float_in[:1],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [3, 2]),
            helper.make_tensor_value_info("j", TensorProto.INT64, [3, 2]),
        ],
        [numpy_helper.from_array(np.array([2], np.int64), "k")],
    )
    for model, op in ((scatter, "scatter_elements_add"), (topk, "topk")):
        graph, outputs = import_model(model)
        assert op in {node.op for node in graph.nodes()}
        feeds = {i.name: {"d": data, "u": updates}[i.name] for i in model.graph.input if i.name in "du"}
        got = gk.compile(graph, outputs)(**feeds)
        want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
        for g, w in zip(got.values() if isinstance(got, dict) else got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6)


def test_tvm_and_onnxruntime_break_ties_as_the_numpy_reference():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 6), "float32")
        outs = [gk.sort(x, 1, True), gk.argsort(x, 1), gk.argsort(x, 1, True), *gk.topk(x, 3, 1, largest=False)]
    feeds = {"x": TIES.astype(np.float32)}
    want = _run(outs, **feeds)
    session = ort.InferenceSession(gk.onnx_io.export(g, outs).SerializeToString())
    for got in (_run(outs, "llvm", **feeds), session.run(None, feeds)):
        for g_value, w_value in zip(got, want):
            np.testing.assert_array_equal(g_value, w_value)
