"""Index modes (graph/ops/index_mode.py): what take, embedding, gather_elements, the scatters, one_hot
and cross_entropy do with out-of-range indices. Oracles: numpy.take's "raise" and "clip", PyTorch's
embedding, one_hot and cross_entropy (which raise), explicit numpy formulas for "fill"; llvm must give
the numpy executor's values; gradients route to the clamped index ("clip") or nowhere ("fill")."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual spelling)
from hypothesis import given, settings
from hypothesis import strategies as st

import gradkiln as gk
from gradkiln.graph import builder as gb
from gradkiln.graph.errors import GraphError, IndexOutOfRangeError
from gradkiln.symbolic import grad, jvp, vmap

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 3))
IDX = np.array([[0, 5, -1], [-7, 2, 3]])  # axis 0 of X has size 4: in range, above, from the end, below
VALID = (IDX >= -4) & (IDX < 4)


def compiled(build, target="numpy", **feeds):
    with gk.Graph() as g:
        inputs = {k: gk.input(k, v.shape, v.dtype.name) for k, v in feeds.items()}
        out = build(**inputs)
    return gk.compile(g, out, target=target)


def run(build, target="numpy", **feeds):
    return compiled(build, target, **feeds)(**feeds)


def test_clip_and_in_range_raise_follow_numpy_take():
    np.testing.assert_array_equal(
        run(lambda x, i: gb.take(x, i, 0, "clip"), x=X, i=IDX), np.take(X, IDX, 0, mode="clip")
    )
    np.testing.assert_array_equal(
        run(lambda x, i: gb.take(x, i, 1, "clip"), x=X, i=IDX), np.take(X, IDX, 1, mode="clip")
    )
    inside = np.array([[0, 3, -1], [-4, 2, 1]])
    np.testing.assert_array_equal(
        run(lambda x, i: gb.take(x, i, 0), x=X, i=inside), np.take(X, inside, 0, mode="raise")
    )


def test_raise_names_the_op_node_index_range_line_and_fix():
    with pytest.raises(IndexOutOfRangeError) as info:
        run(lambda x, i: gb.take(x, i, 0), x=X, i=IDX)
    message = str(info.value)
    assert message.startswith("%2 = take: index 5 at position (0, 1) of the indices is out of range [-4, 3]")
    assert "(2 of 6 indices out of range)" in message and "mode='clip'" in message
    assert f"built at {__file__}" in message
    assert isinstance(info.value, IndexError) and isinstance(info.value, gk.GradkilnError)
    with pytest.raises(IndexError):  # numpy's own reading of the same indices
        np.take(X, IDX, 0, mode="raise")


def test_fill_reads_nan_for_floats_and_the_lowest_int_for_signed_ints():
    want = np.where(VALID[..., None], X[np.where(VALID, IDX, 0)], np.nan)
    np.testing.assert_array_equal(run(lambda x, i: gb.take(x, i, 0, "fill"), x=X, i=IDX), want)
    ints = np.arange(12, dtype=np.int32).reshape(4, 3)
    got = run(lambda x, i: gb.take(x, i, 0, "fill"), x=ints, i=IDX)
    assert got.dtype == np.int32 and (got[~VALID] == np.iinfo(np.int32).min).all()
    np.testing.assert_array_equal(got[VALID], ints[IDX[VALID]])


@pytest.mark.parametrize("mode", ["clip", "fill"])
def test_every_index_op_gives_the_same_values_on_llvm_as_on_numpy(mode):
    j = np.array([[0, 5, -1], [-4, 1, 2], [3, 3, -9], [1, 1, 1]])  # gather along axis 0 (size 4)

    def build(x, i, j, u, v):
        return [
            gb.take(x, i, 0, mode),
            gb.take(x, gb.transpose(i), 1, mode),
            gb.embedding(x, i, mode),
            gb.scatter_add(x, i, u, 0, mode),
            gb.gather_elements(x, j, 0, mode),
            gb.scatter_elements_add(x, j, v, 0, mode),
            gb.one_hot(i, 4, "float32", mode),
        ]

    feeds = {
        "x": X.astype(np.float32),
        "i": IDX,
        "j": j,
        "u": RNG.normal(size=(2, 3, 3)).astype(np.float32),
        "v": RNG.normal(size=(4, 3)).astype(np.float32),
    }
    want = run(build, **feeds)
    got = run(build, "llvm", **feeds)
    for name, w, g in zip(
        ["take", "take_axis1", "embedding", "scatter_add", "gather", "scatter", "one_hot"], want, got
    ):
        np.testing.assert_allclose(g, w, rtol=1e-6, err_msg=name)  # NaN where NaN
    if mode == "fill":
        assert np.isnan(want[0][~VALID]).all() and np.isnan(want[4][(j < -4) | (j >= 4)]).all()


def test_fill_scatters_drop_the_updates_at_out_of_range_indices_and_clip_adds_them_at_the_ends():
    u = RNG.normal(size=(2, 3, 3))
    dropped = X.copy()
    np.add.at(dropped, np.where(VALID, IDX, 0)[VALID], u[VALID])
    np.testing.assert_allclose(run(lambda x, i, u: gb.scatter_add(x, i, u, 0, "fill"), x=X, i=IDX, u=u), dropped)
    clamped = X.copy()
    np.add.at(clamped, np.clip(IDX, 0, 3), u)
    np.testing.assert_allclose(run(lambda x, i, u: gb.scatter_add(x, i, u, 0, "clip"), x=X, i=IDX, u=u), clamped)


def test_gradients_go_to_the_clamped_index_with_clip_and_nowhere_out_of_range_with_fill():
    w = RNG.normal(size=(2, 3, 3))
    for mode, rows, weights in [
        ("clip", np.clip(IDX, 0, 3), w),
        ("fill", np.where(VALID, IDX % 4, 0), w * VALID[..., None]),
    ]:
        with gk.Graph() as g:
            x = gk.input("x", (4, 3), "float64")
            i = gk.input("i", (2, 3), "int64")
            (dx,) = grad(gb.sum(gb.take(x, i, 0, mode) * gb.constant(w)), [x])
        want = np.zeros_like(X)
        np.add.at(want, rows, weights)
        np.testing.assert_allclose(gk.compile(g, dx)(x=X, i=IDX), want, err_msg=mode)


def test_forward_mode_fill_gives_zero_tangents_out_of_range_without_making_a_nan():
    with gk.Graph() as g:
        x = gk.input("x", (4, 3), "float64")
        i = gk.input("i", (2, 3), "int64")
        (tangent,) = jvp(gb.take(x, i, 0, "fill"), [x], [np.ones((4, 3))])
    with gk.detect_anomaly():
        got = gk.compile(g, tangent)(x=X, i=IDX)
    np.testing.assert_array_equal(got, np.broadcast_to(VALID[..., None], (2, 3, 3)).astype(float))


@pytest.mark.parametrize("mode", ["clip", "fill"])
def test_vmap_over_indices_keeps_each_example_in_its_own_rows(mode):
    xs, ids, us = RNG.normal(size=(3, 4, 2)), np.array([[0, 4], [-1, 9], [-5, 3]]), RNG.normal(size=(3, 2, 2))

    def ops(x, i, u):
        return [gb.take(x, i, 0, mode), gb.scatter_add(x, i, u, 0, mode)]

    with gk.Graph() as g:
        x, i, u = gk.input("x", (4, 2), "float64"), gk.input("i", (2,), "int64"), gk.input("u", (2, 2), "float64")
        batch = [
            gk.input("xs", (3, 4, 2), "float64"),
            gk.input("is", (3, 2), "int64"),
            gk.input("us", (3, 2, 2), "float64"),
        ]
        batched = vmap(ops(x, i, u), [x, i, u], batch)
    got = gk.compile(g, batched)(xs=xs, us=us, **{"is": ids})
    for b in range(3):
        for name, all_got, want in zip(["take", "scatter_add"], got, run(ops, x=xs[b], i=ids[b], u=us[b])):
            np.testing.assert_array_equal(all_got[b], want, err_msg=f"{name}, example {b}")


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    data=st.data(),
)
def test_take_modes_match_numpy_on_random_shapes_axes_and_indices(shape, data):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    axis = data.draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    i = np.array(data.draw(st.lists(st.integers(-2 * n - 1, 2 * n), min_size=1, max_size=5)))
    np.testing.assert_array_equal(
        run(lambda x, i: gb.take(x, i, axis, "clip"), x=x, i=i), np.take(x, i, axis, mode="clip")
    )
    valid = (i >= -n) & (i < n)
    fill = np.moveaxis(np.take(x, np.where(valid, i, 0), axis), axis, 0)
    fill[~valid] = np.nan
    got = run(lambda x, i: gb.take(x, i, axis, "fill"), x=x, i=i)
    np.testing.assert_array_equal(got, np.moveaxis(fill, 0, axis))
    if valid.all():
        np.testing.assert_array_equal(
            run(lambda x, i: gb.take(x, i, axis), x=x, i=i), np.take(x, i, axis, mode="raise")
        )
    else:
        with pytest.raises(IndexOutOfRangeError, match=f"index {i[~valid][0]} at position"):
            run(lambda x, i: gb.take(x, i, axis), x=x, i=i)


def test_embedding_matches_torch_and_both_raise_past_the_vocabulary():
    weights, ids = RNG.normal(size=(5, 3)), np.array([[4, 0], [2, 2]])
    want = F.embedding(torch.tensor(ids), torch.tensor(weights)).numpy()
    np.testing.assert_array_equal(run(gb.embedding, weights=weights, ids=ids), want)
    with pytest.raises(IndexError):
        F.embedding(torch.tensor([5]), torch.tensor(weights))
    with pytest.raises(IndexOutOfRangeError, match=r"index 5 .* range \[-5, 4\]"):
        run(gb.embedding, weights=weights, ids=np.array([5]))


def test_one_hot_raises_like_torch_and_clips_or_gives_zero_rows_on_request():
    labels = np.array([0, 3, 4, -1])
    for bad, torch_says in [(4, "smaller than num_classes"), (-1, "non-negative")]:
        with pytest.raises(RuntimeError, match=torch_says):
            F.one_hot(torch.tensor([0, bad]), 4)
        with pytest.raises(IndexOutOfRangeError, match=rf"one_hot: index {bad} .* range \[0, 3\]"):
            run(lambda i: gb.one_hot(i, 4), i=np.array([0, bad]))
    eye = np.eye(4)
    np.testing.assert_array_equal(run(lambda i: gb.one_hot(i, 4, mode="clip"), i=labels), eye[[0, 3, 3, 0]])
    np.testing.assert_array_equal(
        run(lambda i: gb.one_hot(i, 4, mode="fill"), i=labels), [eye[0], eye[3], 0 * eye[0], 0 * eye[0]]
    )


def test_cross_entropy_raises_on_a_label_out_of_range_as_torch_does():
    logits = RNG.normal(size=(3, 4)).astype(np.float32)
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(torch.tensor(logits), torch.tensor([0, 4, 1]))
    with pytest.raises(IndexOutOfRangeError, match=r"one_hot: index 4 at position \(1,\)"):
        run(gb.cross_entropy, logits=logits, labels=np.array([0, 4, 1]))


def test_cross_entropy_ignore_index_matches_torch_value_and_gradient():
    logits, labels = RNG.normal(size=(5, 4)), np.array([0, -100, 3, -100, 1])
    z = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, torch.tensor(labels), ignore_index=-100)
    loss.backward()
    with gk.Graph() as g:
        zs, ys = gk.input("z", (5, 4), "float64"), gk.input("y", (5,), "int64")
        out = gb.cross_entropy(zs, ys, ignore_index=-100)
        (dz,) = grad(out, [zs])
    got, got_dz = gk.compile(g, [out, dz])(z=logits, y=labels)
    np.testing.assert_allclose(got, loss.item(), rtol=1e-12)
    np.testing.assert_allclose(got_dz, z.grad.numpy(), rtol=1e-12)
    with pytest.raises(IndexOutOfRangeError):  # a label neither in range nor ignored still raises
        gk.compile(g, out)(z=logits, y=np.array([0, -100, 7, 1, 1]))


def test_a_mode_outside_raise_clip_fill_is_refused_at_build_time():
    with gk.Graph(), pytest.raises(GraphError, match=r"take: mode='wrap' is not one of \('raise', 'clip', 'fill'\)"):
        gb.take(gk.input("x", (3, 2)), gk.input("i", (2,), "int64"), mode="wrap")
    with gk.Graph(), pytest.raises(GraphError, match="ignore_index needs class-index"):
        gb.cross_entropy(gk.input("z", (3, 2)), gk.input("p", (3, 2)), ignore_index=0)


def test_constant_folding_leaves_an_out_of_range_take_to_the_run():
    with gk.Graph() as g:
        x = gk.input("x", (2,), "float32")
        out = x * gb.take(gb.constant(np.arange(4.0, dtype=np.float32)), gb.constant(np.array([1, 7])), 0)
    with pytest.raises(IndexOutOfRangeError, match=r"^%\d+ = take: index 7"):
        gk.compile(g, out, optimize="O2")(x=np.ones(2, np.float32))
    np.testing.assert_array_equal(
        gk.compile(g, out, optimize="O2", target="llvm")(x=np.ones(2, np.float32)), [1, np.nan]
    )
