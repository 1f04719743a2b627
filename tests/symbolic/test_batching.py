"""vmap against a loop for every op sample; jacobian, hessian and Hessian-vector products
against finite differences; and the batched graphs do not grow with the number of rows."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import gradkiln as gk
from gradkiln.symbolic import grad, hessian, hessian_vector_product, jacobian, register_batch, vmap
from gradkiln.testing import op_samples

SAMPLES = op_samples("float64")
DIFFERENTIABLE = [s for s in SAMPLES if s.wrt]
STATIC = [s for s in DIFFERENTIABLE if not s.shapes]
BATCH = 3


@pytest.mark.parametrize("which", ["all", "first"])
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_vmap_equals_a_loop_over_the_batch(sample, which):
    graph, inputs, out = sample.graph()
    names = list(sample.feeds) if which == "all" else list(sample.feeds)[:1]
    with graph:
        batches = [gk.input(f"batch_{k}", (BATCH, *inputs[k].shape), inputs[k].dtype) for k in names]
    (batched,) = vmap(out, [inputs[k] for k in names], batches)
    rng = np.random.default_rng(4)
    feeds = {f"batch_{k}": _perturbed(sample.feeds[k], rng) for k in names}
    got = gk.compile(graph, batched)(**sample.feeds, **feeds)
    f = gk.compile(graph, out)
    want = np.stack([f(**(sample.feeds | {k: feeds[f"batch_{k}"][i] for k in names})) for i in range(BATCH)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=sample.name)


def _perturbed(value, rng):
    """BATCH variations of a feed that keep it in its sample's domain (signs, ties, labels)."""
    if value.dtype.kind in "iu":
        return np.stack([np.roll(value, i) for i in range(BATCH)])
    return np.stack([value * (1.0 + 0.1 * i) for i in range(BATCH)])


def numeric_jacobian(f, feeds, name, eps=1e-6):
    """d f / d feeds[name] by central differences, shaped (*f.shape, *feeds[name].shape)."""
    x = feeds[name]
    columns = []
    for i in np.ndindex(x.shape):
        values = []
        for delta in (eps, -eps):
            shifted = x.copy()
            shifted[i] += delta
            values.append(np.asarray(f(**(feeds | {name: shifted}))))
        columns.append((values[0] - values[1]) / (2 * eps))
    return np.moveaxis(np.array(columns), 0, -1).reshape(columns[0].shape + x.shape)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("sample", STATIC, ids=[s.name for s in STATIC])
def test_jacobian_matches_finite_differences(sample, mode):
    graph, inputs, out = sample.graph()
    name = sample.wrt[0]
    jac = jacobian(out, inputs[name], mode)
    assert jac.shape == (*out.shape, *inputs[name].shape)
    eps, rtol = (1e-2, 1e-4) if sample.name == "cast" else (1e-6, 1e-6)
    want = numeric_jacobian(gk.compile(graph, out), sample.feeds, name, eps)
    np.testing.assert_allclose(gk.compile(graph, jac)(**sample.feeds), want, rtol=rtol, atol=rtol / 10)


@pytest.mark.parametrize("sample", STATIC, ids=[s.name for s in STATIC])
def test_hessian_matches_finite_differences_of_the_gradient(sample):
    graph, inputs, out = sample.graph()
    name = sample.wrt[0]
    with graph:
        weights = gk.constant(np.random.default_rng(5).normal(size=out.shape), "float64")
        loss = gk.sum(out * weights)
    (g,) = grad(loss, [inputs[name]])
    hess = hessian(loss, inputs[name])
    eps, rtol = (1e-2, 1e-4) if sample.name == "cast" else (1e-6, 1e-5)
    want = numeric_jacobian(gk.compile(graph, g), sample.feeds, name, eps)
    np.testing.assert_allclose(gk.compile(graph, hess)(**sample.feeds), want, rtol=rtol, atol=1e-6)


def test_hessian_vector_product_is_the_hessian_times_the_vector_for_several_inputs():
    rng = np.random.default_rng(6)
    feeds = {"x": rng.normal(size=(3,)), "w": rng.normal(size=(3, 2))}
    vectors = [rng.normal(size=(3,)), rng.normal(size=(3, 2))]
    with gk.Graph() as g:
        x, w = gk.input("x", (3,), "float64"), gk.input("w", (3, 2), "float64")
        loss = gk.sum(gk.tanh(x @ w) ** 2)
        hx, hw = hessian_vector_product(loss, [x, w], vectors)
        # the full Hessian over (x, w) flattened into one vector, to check both products at once
        flat = gk.input("flat", (9,), "float64")
        loss_flat = gk.sum(gk.tanh(flat[:3] @ gk.reshape(flat[3:], (3, 2))) ** 2)
        full = hessian(loss_flat, flat)
    got_x, got_w = gk.compile(g, [hx, hw])(**feeds)
    h = gk.compile(g, full)(flat=np.concatenate([feeds["x"], feeds["w"].ravel()]))
    want = h @ np.concatenate([vectors[0], vectors[1].ravel()])
    np.testing.assert_allclose(np.concatenate([got_x, got_w.ravel()]), want, rtol=1e-10)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_jacobian_graph_does_not_grow_with_its_size(mode):
    def added_nodes(n):
        with gk.Graph() as g:
            x = gk.input("x", (n,), "float64")
            w = gk.constant(np.ones((n, n)), "float64")
            y = gk.tanh(w @ x) * x
            before = len(g)
            jacobian(y, x, mode)
        return len(g) - before

    assert added_nodes(4) == added_nodes(40)


def test_auto_mode_picks_forward_for_tall_and_reverse_for_wide_jacobians():
    with gk.Graph():
        x = gk.input("x", (2,), "float64")
        tall = jacobian(gk.concat([x, x, x]), x)
        wide = jacobian(gk.sum(x), x)
    assert tall.shape == (6, 2) and wide.shape == (2,)


def test_a_missing_batching_rule_is_an_unsupported_op_error():
    gk.graph.register_op(gk.graph.OpDef("test_twice", lambda x: (x,), lambda x: 2 * x, 1))
    with gk.Graph():
        x = gk.input("x", (3,), "float64")
        y = gk.emit("test_twice", x, name="twice")
        with pytest.raises(gk.UnsupportedOpError, match=r"no batching rule for op 'test_twice' \(node %twice\)"):
            vmap(y, x, gk.input("xs", (2, 3), "float64"))
        register_batch("test_twice")(lambda inputs, batched, out, size: inputs[0] * 2.0)
        (ys,) = vmap(y, x, gk.input("xs2", (2, 3), "float64"))
    assert ys.shape == (2, 3)


def test_vmap_over_a_symbolic_batch_size_serves_every_size():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        y = gk.softmax(x) @ gk.constant(np.arange(6.0).reshape(3, 2), "float64")
        (ys,) = vmap(y, x, gk.input("xs", ("B", 3), "float64"))
    assert str(ys.shape[0]) == "B"
    f, batched = gk.compile(g, y), gk.compile(g, ys)
    for size in (1, 4):
        xs = np.random.default_rng(size).normal(size=(size, 3))
        np.testing.assert_allclose(batched(xs=xs), np.stack([f(x=row) for row in xs]), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=3),
    which=st.sampled_from(["a", "b", "both"]),
)
def test_vmap_of_a_broadcasting_op_equals_a_loop(shapes, which):
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(size=shapes.input_shapes[0]), "b": rng.normal(size=shapes.input_shapes[1])}
    names = ["a", "b"] if which == "both" else [which]
    with gk.Graph() as g:
        inputs = {k: gk.input(k, v.shape, "float64") for k, v in feeds.items()}
        out = gk.maximum(inputs["a"], inputs["b"]) * inputs["a"]
        batches = [gk.input(f"batch_{k}", (BATCH, *feeds[k].shape), "float64") for k in names]
        (batched,) = vmap(out, [inputs[k] for k in names], batches)
    stacks = {f"batch_{k}": rng.normal(size=(BATCH, *feeds[k].shape)) for k in names}
    f = gk.compile(g, out)
    want = np.stack([f(**(feeds | {k: stacks[f"batch_{k}"][i] for k in names})) for i in range(BATCH)])
    np.testing.assert_allclose(gk.compile(g, batched)(**feeds, **stacks), want, rtol=1e-12)
