"""data_parallel over 2 and 4 gloo workers: after 5 steps, each worker's parameters equal those of
one process training on the whole batch (the oracle: the original step, without collectives), for
an MLP, a transformer block and an ONNX model exported from torch, with and without bucketing,
gradient accumulation, loss scaling and clipping."""

import io
import itertools

import numpy as np
import pytest

import gradkiln as gk
from gradkiln import distributed as dist
from gradkiln.onnx_io import training_graph

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
STEPS, BATCH = 5, 8


class Step:
    """A training step: `outputs` maps each state input's name to its next value (plus "loss"),
    `gradients` are what data_parallel reduces, `data` the batch inputs to shard."""

    def __init__(self, graph, outputs, gradients, state, data):
        self.graph, self.outputs, self.gradients, self.state, self.data = graph, outputs, gradients, state, data


def train(step: Step, feeds: dict, run) -> dict:
    """STEPS steps of `run` (a compiled step), feeding each step's state outputs back: the final
    state and, under "last_loss", the last step's loss."""
    state = dict(step.state)
    for _ in range(STEPS):
        out = run(**feeds, **state)
        state = {k: out[k] for k in state}
    return state | {"last_loss": out["loss"]}


def sgd(graph, loss, params, extra_state=None, grads=None, lr=0.1):
    grads = gk.grad(loss, params) if grads is None else grads
    with graph:
        new = {p.name: p - lr * g for p, g in zip(params, grads)}
    state = {p.name: graph.by_name(p.name).attrs["value"] for p in params} | (extra_state or {})
    return new, grads, state


def mlp(rows="N", widths=(6, 16, 4)) -> tuple:
    """(graph, the data inputs x and labels, params, forward: params and x -> logits)."""
    rng = np.random.default_rng(0)

    def forward(params, h):
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            h = gk.tanh(h) if i < len(params) - 2 else h
        return h

    with gk.Graph("mlp") as g:
        x, labels = gk.input("x", (rows, widths[0])), gk.input("labels", (rows,), "int64")
        params = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            params += [gk.param(f"w{i}", rng.normal(0, a**-0.5, (a, b)).astype("float32"))]
            params += [gk.param(f"b{i}", rng.normal(0, 0.1, b).astype("float32"))]
    return g, x, labels, params, forward


def mlp_step() -> Step:
    g, x, labels, params, forward = mlp()
    with g:
        loss = gk.cross_entropy(forward(params, x), labels)
    new, grads, state = sgd(g, loss, params)
    return Step(g, {"loss": loss, **new}, grads, state, ["x", "labels"])


def mlp_feeds(seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(BATCH, 6)).astype("float32"), "labels": rng.integers(0, 4, BATCH)}


def accumulated_scaled_clipped_step() -> Step:
    """Two micro-batches accumulated, dynamic loss scaling and clipping by global norm, in the step
    (static batch sizes: the worker's share, from the group's size)."""
    g, x, labels, params, forward = mlp(BATCH // dist.get_world_size())
    scaler = gk.LossScaler(init_scale=2.0**10, growth_interval=2)
    with g:
        scale_state = scaler.inputs()

        def loss_fn(xb, lb):
            return scaler.scale(gk.cross_entropy(forward(params, xb), lb), scale_state)

        loss, scaled = gk.accumulate_gradients(loss_fn, params, gk.split_micro_batches([x, labels], 2))
    return _scaled_update(g, scaler, scale_state, loss, scaled, params)


def _scaled_update(g, scaler, scale_state, loss, scaled, params) -> Step:
    with g:
        grads, found_inf = scaler.unscale(scaled, scale_state)
        clipped, _ = gk.clip_by_global_norm(grads, 1.0)  # the full batch gradient norm starts near 1.09
        new, _, state = sgd(g, loss, params, scaler.initial_state(), grads=clipped)
        new = dict(zip(new, scaler.skip_if_overflow(list(new.values()), params, found_inf)))
        next_scale, next_good = scaler.update(scale_state, found_inf)
    outputs = {"loss": loss, **new, "loss_scale": next_scale, "good_steps": next_good}
    return Step(g, outputs, scaled, state, ["x", "labels"])


def transformer_step() -> Step:
    """A pre-norm transformer block (2 heads), mean-squared error to a target."""
    rng = np.random.default_rng(0)
    d, heads, seq = 8, 2, 6

    def w(name, *shape):
        return gk.param(name, rng.normal(0, shape[0] ** -0.5, shape).astype("float32"))

    with gk.Graph("block") as g:
        x, target = gk.input("x", ("N", seq, d)), gk.input("target", ("N", seq, d))
        params = [w("wq", d, d), w("wk", d, d), w("wv", d, d), w("wo", d, d), w("w1", d, 16), w("w2", 16, d)]
        params += [gk.param("ln1", np.ones(d, "float32")), gk.param("ln2", np.ones(d, "float32"))]
        wq, wk, wv, wo, w1, w2, ln1, ln2 = params
        h = gk.layer_norm(x, (d,), weight=ln1)

        def split(t):
            return gk.transpose(gk.reshape(t, (-1, seq, heads, d // heads)), (0, 2, 1, 3))

        a = gk.scaled_dot_product_attention(split(h @ wq), split(h @ wk), split(h @ wv), causal=True)
        x = x + gk.reshape(gk.transpose(a, (0, 2, 1, 3)), (-1, seq, d)) @ wo
        x = x + gk.gelu(gk.layer_norm(x, (d,), weight=ln2) @ w1) @ w2
        loss = gk.mse_loss(x, target)
    new, grads, state = sgd(g, loss, params)
    return Step(g, {"loss": loss, **new}, grads, state, ["x", "target"])


def transformer_feeds() -> dict:
    rng = np.random.default_rng(2)
    return {k: rng.normal(size=(BATCH, 6, 8)).astype("float32") for k in ("x", "target")}


def _worker(build, feeds: dict, target: str, options: dict) -> dict:
    step = build()
    parallel = dist.data_parallel(step.graph, step.outputs, step.gradients, **options)
    shards = {k: dist.shard(v) for k, v in feeds.items()}
    return train(step, shards, parallel.compile(target))


def single_process(build, feeds: dict) -> dict:
    step = build()
    return train(step, feeds, gk.compile(step.graph, step.outputs))


def assert_same_parameters(results: list, expected: dict, loss: bool = False) -> None:
    for result in results:
        for name, want in expected.items():
            if name == "last_loss" and not loss:  # a worker's own loss is of its shard
                continue
            np.testing.assert_allclose(result[name], want, rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("nprocs", [2, 4])
@pytest.mark.parametrize("bucket_bytes", [0, 300, dist.data_parallel.__kwdefaults__["bucket_bytes"]])
def test_mlp_trains_as_one_process_on_the_whole_batch(nprocs, bucket_bytes):
    feeds = mlp_feeds()
    results = dist.spawn(_worker, nprocs, mlp_step, feeds, "numpy", {"bucket_bytes": bucket_bytes})
    assert_same_parameters(results, single_process(mlp_step, feeds))


def test_buckets_follow_the_backward_and_the_size_bound():
    step = mlp_step()
    parallel = dist.data_parallel(step.graph, step.outputs, step.gradients, world_size=2, bucket_bytes=300)
    transfers = parallel.communication({"N": 4}).transfers
    # the backward produces the last layer's gradients first: b1 (16 B) and w1 (256 B) fit in 300 B, b0 (64 B)
    # would not, w0 (384 B) is over the bound alone
    assert [t.operand_bytes for t in transfers] == [16 + 256, 64, 384]
    assert [t.op for t in transfers] == ["all_reduce"] * 3 and [len(b) for b in parallel.buckets] == [2, 1, 1]


@pytest.mark.parametrize("nprocs", [2, 4])
def test_accumulation_loss_scaling_and_clipping_compose(nprocs):
    feeds = mlp_feeds()
    results = dist.spawn(_worker, nprocs, accumulated_scaled_clipped_step, feeds, "numpy", {"bucket_bytes": 300})
    expected = single_process(accumulated_scaled_clipped_step, feeds)
    assert expected["loss_scale"] == 2.0**12  # two growths: the scaler's state ran as well
    assert_same_parameters(results, expected)


def _clipped_single_step() -> Step:
    g, x, labels, params, forward = mlp()
    with g:
        loss = gk.cross_entropy(forward(params, x), labels)
        clipped, _ = gk.clip_by_global_norm(gk.grad(loss, params), 1.0)
    new, grads, state = sgd(g, loss, params, grads=clipped)
    return Step(g, {"loss": loss, **new}, grads, state, ["x", "labels"])


def test_clip_norm_option_clips_by_the_norm_of_the_reduced_gradient():
    feeds = mlp_feeds()
    results = dist.spawn(_worker, 2, mlp_step, feeds, "numpy", {"clip_norm": 1.0, "average_outputs": ["loss"]})
    assert_same_parameters(results, single_process(_clipped_single_step, feeds), loss=True)


@pytest.mark.slow
def test_transformer_block_trains_as_one_process():
    feeds = transformer_feeds()
    results = dist.spawn(_worker, 2, transformer_step, feeds, "numpy", {"bucket_bytes": 1024})
    assert_same_parameters(results, single_process(transformer_step, feeds))


@pytest.mark.slow
def test_mlp_on_llvm_trains_as_one_process():
    feeds = mlp_feeds()
    results = dist.spawn(_worker, 2, mlp_step, feeds, "llvm", {"bucket_bytes": 300}, timeout=300)
    assert_same_parameters(results, single_process(mlp_step, feeds))


def onnx_model() -> bytes:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3)
    )
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (torch.zeros(BATCH, 2, 5, 5),), buffer, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}}
    )
    return buffer.getvalue()


def _onnx_worker(model: bytes, feeds: dict) -> dict:
    tg = dist.data_parallel(training_graph(model, optimizer="sgd", hyperparameters={"lr": 0.1}), bucket_bytes=400)
    run, state = tg.compile(), tg.initial_state()
    shards = {k: dist.shard(v) for k, v in feeds.items()}
    for _ in range(STEPS):
        state = tg.next_state(run(**shards, **state))
    return state


@pytest.mark.slow
def test_an_imported_onnx_model_trains_as_one_process():
    model = onnx_model()
    rng = np.random.default_rng(3)
    feeds = {"x": rng.normal(size=(BATCH, 2, 5, 5)).astype("float32"), "labels": rng.integers(0, 3, BATCH)}
    results = dist.spawn(_onnx_worker, 2, model, feeds)
    tg = training_graph(model, optimizer="sgd", hyperparameters={"lr": 0.1})
    run, state = tg.compile(), tg.initial_state()
    for _ in range(STEPS):
        state = tg.next_state(run(**feeds, **state))
    assert_same_parameters(results, state)
