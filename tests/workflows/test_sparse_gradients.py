"""The sparse-gradient workflow against torch: training steps of an embedding table with
`gk.sparse.sgd` and `gk.sparse.adam` equal torch.optim.SGD and torch.optim.SparseAdam on
`nn.Embedding(sparse=True)` over several steps (float64, duplicate ids), on the numpy executor, on
llvm, and as an exported ONNX model (ScatterND updates) run by onnxruntime."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import gradkiln as gk

rng = np.random.default_rng(1)
VOCAB, DIM, STEPS, LR = 50, 6, 4, 0.1
TABLE, W = rng.normal(size=(VOCAB, DIM)), rng.normal(size=(DIM, 3))
BATCHES = [rng.integers(0, VOCAB, size=(2, 5)) for _ in range(STEPS)]
BATCHES[0][1, :3] = BATCHES[0][0, 0]  # one id four times in a batch
TARGETS = [rng.normal(size=(2, 5, 3)) for _ in range(STEPS)]


def _loss(rows, w, target):
    return (
        ((rows @ w).tanh() - target).pow(2).mean()
        if isinstance(rows, torch.Tensor)
        else gk.mean((gk.tanh(rows @ w) - target) ** 2)
    )


def _step(optimizer):
    """A training step graph: loss, the table's sparse update and SGD on the dense weight."""
    with gk.Graph() as g:
        table, w = gk.param("table", TABLE), gk.param("w", W)
        ids, target = gk.input("ids", (2, 5), "int64"), gk.input("target", (2, 5, 3), "float64")
        loss = _loss(gk.embedding(table, ids), w, target)
        d_table, d_w = gk.sparse.grad(loss, [table, w])
        outputs = {"loss": loss, "w.new": w - LR * d_w}
        if optimizer == "sgd":
            outputs["table.new"] = gk.sparse.sgd(table, d_table, LR)
        else:
            state = gk.sparse.adam_state(table, "adam")
            outputs["table.new"], new = gk.sparse.adam(table, d_table, state, lr=LR)
            outputs |= {"adam.m.new": new.m, "adam.v.new": new.v, "adam.step.new": new.step}
    return g, outputs


def _torch_run(optimizer):
    emb = torch.nn.Embedding(VOCAB, DIM, sparse=True, _weight=torch.tensor(TABLE))
    w = torch.nn.Parameter(torch.tensor(W))
    table_opt = (
        torch.optim.SGD(emb.parameters(), lr=LR)
        if optimizer == "sgd"
        else torch.optim.SparseAdam(emb.parameters(), lr=LR)
    )
    w_opt = torch.optim.SGD([w], lr=LR)
    losses = []
    for ids, target in zip(BATCHES, TARGETS):
        table_opt.zero_grad(), w_opt.zero_grad()
        loss = _loss(emb(torch.tensor(ids)), w, torch.tensor(target))
        loss.backward()
        assert emb.weight.grad.is_sparse
        table_opt.step(), w_opt.step()
        losses.append(loss.item())
    return losses, emb.weight.detach().numpy(), w.detach().numpy()


def _train(run, optimizer):
    """STEPS steps through `run(feeds) -> outputs`, each step's `<name>.new` fed back as `<name>`."""
    state = {"table": TABLE, "w": W}
    if optimizer == "adam":
        state |= {"adam.m": np.zeros_like(TABLE), "adam.v": np.zeros_like(TABLE), "adam.step": np.float64(0)}
    losses = []
    for ids, target in zip(BATCHES, TARGETS):
        out = run({"ids": ids, "target": target, **state})
        losses.append(float(out["loss"]))
        state = {name: out[f"{name}.new"] for name in state}
    return losses, state["table"], state["w"]


def _check(got, want):
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_sparse_steps_equal_torch_optimizers_on_a_sparse_embedding(optimizer, target):
    g, outputs = _step(optimizer)
    exe = gk.compile(g, outputs, target=target)
    got = _train(lambda feeds: exe(**feeds), optimizer)
    want = _torch_run(optimizer)
    assert not np.array_equal(want[1], TABLE)  # the steps moved the table
    _check(got, want)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_exported_step_scatters_with_scatternd_and_onnxruntime_equals_gradkiln_and_torch(optimizer):
    g, outputs = _step(optimizer)
    model = gk.onnx_io.export(g, outputs)
    assert "ScatterND" in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    got = _train(
        lambda feeds: dict(zip(names, session.run(None, {k: np.asarray(v) for k, v in feeds.items()}))), optimizer
    )
    exe = gk.compile(g, outputs)
    ours = _train(lambda feeds: exe(**feeds), optimizer)
    for theirs, mine in zip(got, ours):
        np.testing.assert_allclose(theirs, mine, rtol=1e-12, atol=1e-14)
    _check(got, _torch_run(optimizer))


def test_updates_refuse_a_dense_gradient_or_another_table():
    with gk.Graph():
        table, other = gk.param("table", TABLE), gk.param("other", np.zeros((3, DIM)))
        loss = gk.sum(gk.embedding(table, gk.input("ids", (4,), "int64")))
        (d_table,) = gk.sparse.grad(loss, [table])
        with pytest.raises(gk.GradientError, match="sgd: the gradient is Tensor; pass the IndexedSlices"):
            gk.sparse.sgd(table, gk.to_dense(d_table), LR)
        with pytest.raises(gk.GradientError, match=r"adam: table other \(f64\[3,6\]\) does not match"):
            gk.sparse.adam(other, d_table, gk.sparse.adam_state(other, "adam"))
    with pytest.raises(gk.GradientError, match="apply_sgd: table float64"):
        gk.sparse.apply_sgd(np.zeros((5, 2)), np.array([1]), np.ones((1, 3)), LR)


def test_apply_sgd_updates_the_rows_in_place():
    table = TABLE.copy()
    indices, values = np.array([3, 0, 3]), rng.normal(size=(3, DIM))
    gk.sparse.apply_sgd(table, indices, values, LR)
    want = TABLE - LR * gk.sparse.host_dense(indices, values, TABLE.shape)
    np.testing.assert_allclose(table, want, rtol=1e-15)
