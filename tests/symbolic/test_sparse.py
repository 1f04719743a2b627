"""gk.sparse: IndexedSlices gradients of embedding tables against torch.autograd's dense gradients
(float64), with duplicate ids, several lookups of one table, each index mode, dense fallbacks, and
global-norm clipping against torch.nn.utils.clip_grad_norm_."""

import numpy as np
import pytest
import torch

import gradkiln as gk
from gradkiln.symbolic.sparse import IndexedSlices

rng = np.random.default_rng(0)
VOCAB, DIM = 13, 4
IDS = np.array([[3, 1, 3, 7], [0, 3, 10, 1]])  # 3 and 1 repeat
IDS2 = np.array([7, 7, 2])
TABLE, W = rng.normal(size=(VOCAB, DIM)), rng.normal(size=(DIM, 2))


def _loss(table, w, ids, ids2):
    """Two lookups of one table and a dense weight; works on gradkiln and torch tensors alike."""
    h = gk.embedding(table, ids) if isinstance(table, gk.Tensor) else torch.nn.functional.embedding(ids, table)
    h2 = gk.embedding(table, ids2) if isinstance(table, gk.Tensor) else torch.nn.functional.embedding(ids2, table)
    tanh = gk.tanh if isinstance(table, gk.Tensor) else torch.tanh
    return (tanh(h @ w) ** 2).sum() + 0.5 * (h2 * h2 * h2).sum()


def _torch_grads():
    table, w = (torch.tensor(v, requires_grad=True) for v in (TABLE, W))
    _loss(table, w, torch.tensor(IDS), torch.tensor(IDS2)).backward()
    return table.grad.numpy(), w.grad.numpy()


def _graph():
    g = gk.Graph()
    with g:
        table, w = gk.param("table", TABLE), gk.param("w", W)
        ids, ids2 = gk.input("ids", IDS.shape, "int64"), gk.input("ids2", IDS2.shape, "int32")
        loss = _loss(table, w, ids, ids2)
    return g, table, w, loss


FEEDS = {"ids": IDS, "ids2": IDS2.astype(np.int32)}


def test_sparse_gradient_is_rows_and_values_whose_dense_form_is_torchs_gradient():
    g, table, w, loss = _graph()
    with g:
        d_table, d_w = gk.sparse.grad(loss, [table, w])
        assert isinstance(d_table, IndexedSlices) and isinstance(d_w, gk.Tensor)
        assert tuple(d_table.values.shape) == (IDS.size + IDS2.size, DIM) and d_table.dense_shape == (VOCAB, DIM)
        outputs = gk.sparse.flatten({"table": d_table, "w": d_w}) | {"dense": gk.to_dense(d_table)}
        (plain,) = gk.grad(loss, [table])
    got = gk.compile(g, outputs | {"plain": plain})(**FEEDS)
    want_table, want_w = _torch_grads()
    np.testing.assert_array_equal(got["table.indices"], np.concatenate([IDS.ravel(), IDS2]))
    dense = gk.sparse.host_dense(got["table.indices"], got["table.values"], (VOCAB, DIM))
    for ours in (dense, got["dense"], got["plain"]):
        np.testing.assert_allclose(ours, want_table, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["w"], want_w, rtol=1e-12)


def test_the_sparse_graph_builds_no_array_of_the_tables_shape():
    g, table, w, loss = _graph()
    with g:
        d_table, _ = gk.sparse.grad(loss, [table, w])
    needed = g.needed_nodes([d_table.indices.value, d_table.values.value])
    shapes = {tuple(t.shape) for n in needed for t in g.node(n).types if g.node(n).op != "param"}
    assert (VOCAB, DIM) not in shapes


@pytest.mark.parametrize(
    "mode, ids",
    [("raise", [[-1, 2, -13, 2]]), ("clip", [[-4, 20, 3, 3]]), ("fill", [[-2, 13, 40, 5]])],
)
def test_each_index_mode_gives_the_dense_gradient_of_gk_grad(mode, ids):
    ids = np.array(ids)
    with gk.Graph() as g:
        table = gk.param("table", TABLE)
        x = gk.input("ids", ids.shape, "int64")
        rows = gk.embedding(table, x, mode=mode)
        loss = gk.sum(gk.where(gk.equal(rows, rows), rows, 0.0) ** 2) if mode == "fill" else gk.sum(rows**2)
        (sparse,) = gk.sparse.grad(loss, [table])
        (dense,) = gk.grad(loss, [table])
    got = gk.compile(g, [gk.to_dense(sparse), dense, sparse.indices])(ids=ids)
    np.testing.assert_allclose(got[0], got[1], rtol=1e-14)
    assert got[2].min() >= 0 and got[2].max() < VOCAB


def test_a_table_also_read_densely_gets_a_dense_gradient_or_a_clear_refusal():
    with gk.Graph() as g:
        table = gk.param("table", TABLE)
        ids = gk.input("ids", IDS.shape, "int64")
        logits = gk.embedding(table, ids) @ gk.transpose(table)  # tied input and output embedding
        loss = gk.sum(logits**2)
        (auto,) = gk.sparse.grad(loss, [table])
        assert isinstance(auto, gk.Tensor)
        with pytest.raises(gk.GradientError, match=r"table .* is read by .*transpose.*drop it from sparse="):
            gk.sparse.grad(loss, [table], sparse=[table])
        other = gk.param("other", TABLE)
        with pytest.raises(gk.GradientError, match=r"sparse= names \['other'\], which are not among the inputs"):
            gk.sparse.grad(loss, [table], sparse=[other])
    ttable = torch.tensor(TABLE, requires_grad=True)
    (torch.nn.functional.embedding(torch.tensor(IDS), ttable) @ ttable.T).pow(2).sum().backward()
    np.testing.assert_allclose(gk.compile(g, auto)(ids=IDS), ttable.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clipped", "unchanged"])
def test_clipping_sparse_and_dense_together_equals_clip_grad_norm_on_the_dense_gradients(max_norm):
    g, table, w, loss = _graph()
    with g:
        grads = gk.sparse.grad(loss, [table, w])
        (clipped_table, clipped_w), norm = gk.sparse.clip_by_global_norm(grads, max_norm)
        assert isinstance(clipped_table, IndexedSlices)
    got = gk.compile(g, [gk.to_dense(clipped_table), clipped_w, norm])(**FEEDS)
    params = [torch.zeros(v.shape, dtype=torch.float64) for v in (TABLE, W)]
    for p, v in zip(params, _torch_grads()):
        p.grad = torch.tensor(v)
    want_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    np.testing.assert_allclose(got[2], want_norm.numpy(), rtol=1e-13)
    for ours, p in zip(got[:2], params):
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_coalesce_sums_duplicates_into_their_first_slot():
    with gk.Graph() as g:
        idx = gk.input("idx", (5,), "int64")
        values = gk.input("values", (5, 2), "float64")
        c = gk.sparse.coalesce(IndexedSlices(idx, values, (4, 2)))
    idx0, values0 = np.array([2, 0, 2, 3, 2]), rng.normal(size=(5, 2))
    summed, first = gk.compile(g, [c.slices.values, c.first])(idx=idx0, values=values0)
    np.testing.assert_array_equal(first, [True, True, False, True, False])
    np.testing.assert_allclose(summed[0], values0[[0, 2, 4]].sum(0), rtol=1e-15)
    np.testing.assert_array_equal(summed[[2, 4]], 0.0)
    np.testing.assert_array_equal(summed[[1, 3]], values0[[1, 3]])


def test_bad_slices_and_gradients_are_refused_with_what_to_pass():
    with gk.Graph():
        idx, values = gk.input("idx", (3,), "int64"), gk.input("values", (3, 2), "float64")
        with pytest.raises(gk.GradientError, match=r"indices must be int64 of shape \(n,\)"):
            IndexedSlices(gk.cast(idx, "int32"), values, (4, 2))
        with pytest.raises(gk.GradientError, match=r"must have shape \(3, 5\)"):
            IndexedSlices(idx, values, (4, 5))
        with pytest.raises(gk.GradientError, match=r"sparse.global_norm: gradient 0 is i64\[3\]"):
            gk.sparse.global_norm([idx])
        with pytest.raises(gk.GradientError, match="max_norm must be positive"):
            gk.sparse.clip_by_global_norm([values], 0.0)
        with pytest.raises(gk.GradientError, match="dense shapes differ"):
            gk.sparse.add(IndexedSlices(idx, values, (4, 2)), IndexedSlices(idx, values, (5, 2)))


def test_a_table_the_loss_does_not_read_is_an_error_or_dense_zeros_as_in_gk_grad():
    with gk.Graph() as g:
        table, w = gk.param("table", TABLE), gk.param("w", W)
        loss = gk.sum(w**2)
        with pytest.raises(gk.GradientError, match="the outputs do not depend on input table"):
            gk.sparse.grad(loss, [table, w], sparse=[table])
        d_table, _ = gk.sparse.grad(loss, [table, w], sparse=[table], allow_unused=True)
    np.testing.assert_array_equal(gk.compile(g, d_table)(), np.zeros_like(TABLE))


def test_a_symbolic_batch_of_ids_gives_symbolic_slices_and_the_dense_gradient():
    with gk.Graph() as g:
        table = gk.param("table", TABLE)
        ids = gk.input("ids", ("N", 4), "int64")
        loss = gk.sum(gk.embedding(table, ids) ** 3)
        (sparse,) = gk.sparse.grad(loss, [table])
        (dense,) = gk.grad(loss, [table])
        norm = gk.sparse.global_norm([sparse])
    assert str(sparse.values.shape[0]) == "4*N"
    got = gk.compile(g, [gk.to_dense(sparse), dense, norm])(ids=np.array([[1, 2, 1, 3], [12, 0, 1, 2], [5, 5, 5, 5]]))
    np.testing.assert_allclose(got[0], got[1], rtol=1e-14)
    np.testing.assert_allclose(got[2], np.linalg.norm(got[1]), rtol=1e-14)
