"""Autocast: matmuls and convolutions run in float16, everything else keeps float32, casts are
minimal, and training gradients stay close to the float32 ones."""

import numpy as np
import pytest
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.graph import DTypeError, verify
from gradkiln.passes import autocast, optimize
from gradkiln.passes.autocast import LOW_PRECISION_OPS
from gradkiln.testing import mlp_feeds, mlp_training_step, random_graph_feeds, random_graphs

REDUCTIONS = {"sum", "mean", "max", "min", "prod", "var", "std", "logsumexp", "softmax", "log_softmax", "cumsum"}


def mlp():
    graph, outputs = mlp_training_step()
    return graph, [t.value for t in outputs]


def assert_close_to(got, want, rtol=1e-2):
    """Close relative to each array's scale: float16 keeps about 3 significant digits."""
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.max(np.abs(w))))


def test_mlp_gradients_under_autocast_are_close_to_float32_and_stay_float32():
    graph, outputs = mlp()
    cast, cast_outputs = autocast(graph, outputs)
    verify(cast)
    # a small batch: a pre-activation within float16 rounding of 0 flips its relu mask, which
    # changes that sample's gradient by O(1) (larger batches have some; see the gelu test)
    feeds = mlp_feeds(16)
    assert_close_to(gk.compile(cast, cast_outputs)(**feeds), gk.compile(graph, outputs)(**feeds))
    assert all(cast.type_of(v).dtype == "float32" for v in cast_outputs)  # the loss and master gradients


def test_gelu_mlp_gradients_on_a_large_batch_are_within_a_float16_rounding():
    rng = np.random.default_rng(1)
    with gk.Graph() as g:
        h, target = gk.input("x", (256, 32)), gk.input("target", (256, 8))
        params = [
            gk.param(f"w{i}", rng.normal(0, 0.2, shape).astype(np.float32))
            for i, shape in enumerate([(32, 64), (64, 8)])
        ]
        loss = gk.mse_loss(gk.gelu(h @ params[0]) @ params[1], target)
        outputs = [loss.value, *(t.value for t in gk.grad(loss, params))]
    cast, cast_outputs = autocast(g, outputs)
    feeds = {"x": rng.normal(size=(256, 32)).astype(np.float32), "target": rng.normal(size=(256, 8)).astype(np.float32)}
    for got, want in zip(gk.compile(cast, cast_outputs)(**feeds), gk.compile(g, outputs)(**feeds), strict=True):
        assert np.linalg.norm(got - want) <= 2e-3 * np.linalg.norm(want)


@pytest.mark.parametrize("scale", [1.0, 2.0**16])
def test_loss_scaling_keeps_tiny_gradients_from_flushing_to_zero_in_float16(scale):
    rng = np.random.default_rng(2)
    with gk.Graph() as g:
        x = gk.input("x", (64, 16))
        w = gk.param("w", rng.normal(0, 0.25, (16, 16)).astype(np.float32))
        v = gk.param("v", rng.normal(0, 0.25, (16, 4)).astype(np.float32))
        loss = gk.mean(gk.tanh(x @ w) @ v) * 1e-5  # cotangents ~4e-8: float16 subnormals
        grads = gk.grad(loss, [w, v], seed=gk.constant(np.float32(scale)))
        outputs = [(t * (1 / scale)).value for t in grads]
    cast, cast_outputs = autocast(g, outputs)
    feeds = {"x": rng.normal(size=(64, 16)).astype(np.float32)}
    got, want = gk.compile(cast, cast_outputs)(**feeds)[0], gk.compile(g, outputs)(**feeds)[0]
    error = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert error < 1e-2 if scale > 1 else error > 0.5, error


def test_every_matmul_runs_in_float16_and_no_reduction_does():
    graph, outputs = mlp()
    cast, _ = autocast(graph, outputs)
    matmuls = cast.nodes_of("matmul")
    assert len(matmuls) == len(graph.nodes_of("matmul")) == 8  # 3 forward, 5 backward
    for node in matmuls:
        assert [cast.type_of(v).dtype for v in node.inputs] == ["float16", "float16"]
        assert node.types[0].dtype == "float16"
        assert {cast.node(u).op for u, _ in cast.users_of(node.outputs[0])} <= {"cast", "transpose"}
    for node in cast.nodes():
        if node.op in REDUCTIONS:
            assert [t.dtype for t in node.types] == ["float32"], node.label
    assert all(p.types[0].dtype == "float32" for p in cast.params())  # master weights


def test_casts_are_minimal_one_per_value_and_no_round_trips():
    graph, outputs = mlp()
    cast, _ = autocast(graph, outputs)
    casts = cast.nodes_of("cast")
    sources = [c.inputs[0] for c in casts]
    assert len(sources) == len(set(sources)), "each value is cast once, whatever reads it"
    for c in casts:
        producer = cast.node(c.inputs[0].node)
        assert producer.op != "cast", f"{c.label} casts a cast"
    params = [c for c in casts if cast.node(c.inputs[0].node).op == "param"]
    assert len(params) == 3  # w0, w1, w2: forward and backward share the cast (through transposes)
    # 3 params + the input + 2 hidden activations + 3 cotangents into float16; 8 matmul results back
    assert len(casts) == 3 + 1 + 2 + 3 + 8


def test_a_float16_result_feeds_the_next_matmul_without_a_round_trip():
    with gk.Graph() as g:
        x = gk.input("x", (4, 8))
        w = gk.param("w", np.eye(8, dtype=np.float32))
        y = gk.reshape(x @ w, (8, 4)) @ x
    cast, (out,) = autocast(g, [y])
    second = cast.node(out.node)
    assert second.op == "cast"
    matmul = cast.node(second.inputs[0].node)
    reshape = cast.node(matmul.inputs[0].node)
    assert reshape.op == "reshape" and cast.node(reshape.inputs[0].node).op == "matmul"  # f16 throughout
    data = np.arange(32, dtype=np.float32).reshape(4, 8) / 8
    want = (data @ np.eye(8, dtype=np.float32)).reshape(8, 4) @ data
    np.testing.assert_allclose(gk.compile(cast, [out])(x=data)[0], want, rtol=2e-3)


def test_numpy_float16_matmul_accumulates_in_float32():
    with gk.Graph() as g:
        x = gk.input("x", (1, 4096))
        y = x @ gk.param("w", np.ones((4096, 1), np.float32))
    cast, outputs = autocast(g, [y])
    # 4096 ones summed: a float16 accumulator stops at 2048 (2048 + 1 rounds back to 2048)
    assert gk.compile(cast, outputs)(x=np.ones((1, 4096), np.float32))[0][0, 0] == 4096


def test_convolutions_run_in_float16_with_close_gradients():
    rng = np.random.default_rng(0)
    with gk.Graph() as g:
        x = gk.input("x", (2, 3, 8, 8))
        w = gk.param("w", rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32))
        loss = gk.mean(gk.relu(gk.conv2d(x, w, padding=1)) ** 2)
        outputs = [loss.value, *(t.value for t in gk.grad(loss, [x, w]))]
    cast, cast_outputs = autocast(g, outputs)
    lowered = [n for n in cast.nodes() if n.op in LOW_PRECISION_OPS]
    assert lowered and all(n.types[0].dtype == "float16" for n in lowered)
    feeds = {"x": rng.normal(size=(2, 3, 8, 8)).astype(np.float32)}
    assert_close_to(gk.compile(cast, cast_outputs)(**feeds), gk.compile(g, outputs)(**feeds))


def test_autocast_is_a_pipeline_pass_and_runs_once():
    graph, outputs = mlp()
    optimized, outs, manager = optimize(graph, outputs, ["autocast", "dce"], verify=True)
    assert {n.types[0].dtype for n in optimized.nodes_of("matmul")} == {"float16"}
    assert [r.changed for r in manager.records] == [True, True, False, False]
    feeds = mlp_feeds(16)
    assert_close_to(gk.compile(optimized, outs)(**feeds), gk.compile(graph, outputs)(**feeds))


def test_unsupported_low_precision_dtypes_are_refused():
    graph, outputs = mlp()
    with pytest.raises(DTypeError, match="numpy has no bfloat16"):
        autocast(graph, outputs, dtype="bfloat16")
    with pytest.raises(DTypeError, match=r"'float32'.*use one of float16"):
        optimize(graph, outputs, ["autocast"], autocast_dtype="float32")


@settings(max_examples=40, deadline=None)
@given(case=random_graphs())
def test_autocast_changes_only_matmul_precision_on_random_graphs(case):
    graph, outputs = case
    cast, cast_outputs = autocast(graph, outputs)
    verify(cast)
    float16 = {n.op for n in cast.nodes() if n.types[0].dtype == "float16"}
    assert float16 <= {"matmul", "cast", "transpose", "reshape", "broadcast_to", "expand_dims", "squeeze"}
    feeds = random_graph_feeds()
    got, want = gk.compile(cast, cast_outputs)(**feeds), gk.compile(graph, outputs)(**feeds)
    if "matmul" not in {n.op for n in graph.nodes()}:
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    else:
        assert_close_to(got, want, rtol=2e-2)
