"""Rematerialization: the backward reads recomputed copies, the scheduler runs them late, the
planned (and measured) peak drops under the budget, and results stay bit-identical."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.graph import GraphError, verify
from gradkiln.passes import PASSES, greedy_schedule, optimize, plan_memory, rematerialize
from gradkiln.passes.remat import drop_activations
from gradkiln.testing import (
    elementwise_chain,
    measured_peak_bytes,
    mlp_feeds,
    mlp_training_step,
    random_graph_feeds,
    random_graphs,
)

DEEP = (16, 64, 64, 64, 64, 64, 64, 10)
BATCH = {"N": 128}


def deep_mlp():
    graph, outputs = mlp_training_step(DEEP)
    return graph, [t.value for t in outputs]


def results(graph, outputs, feeds, **options):
    return gk.compile(graph, list(outputs), **options)(**feeds)


def assert_identical(before, after):
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def small_transformer_block():
    """A pre-layer-norm block (attention, GELU MLP, residuals) with an MSE loss: (graph, [loss,
    gradients of every parameter]), feeds."""
    batch, seq, d, heads, ffn = 2, 16, 32, 2, 64
    rng = np.random.default_rng(0)
    dense = {
        n: rng.normal(0, d**-0.5, s).astype(np.float32) for n, s in {"wq": (d, d), "wk": (d, d), "wv": (d, d)}.items()
    }
    dense |= {"wo": rng.normal(0, d**-0.5, (d, d)).astype(np.float32)}
    dense |= {"w1": rng.normal(0, d**-0.5, (d, ffn)).astype(np.float32)}
    dense |= {"w2": rng.normal(0, ffn**-0.5, (ffn, d)).astype(np.float32)}

    def split(t):
        return gk.transpose(gk.reshape(t, (batch, seq, heads, d // heads)), (0, 2, 1, 3))

    with gk.Graph("block") as g:
        x, target = gk.input("x", (batch, seq, d)), gk.input("target", (batch, seq, d))
        p = {name: gk.param(name, value) for name, value in dense.items()}
        h = gk.layer_norm(x, d)
        attention = gk.scaled_dot_product_attention(split(h @ p["wq"]), split(h @ p["wk"]), split(h @ p["wv"]))
        x = x + gk.reshape(gk.transpose(attention, (0, 2, 1, 3)), (batch, seq, d)) @ p["wo"]
        x = x + gk.gelu(gk.layer_norm(x, d) @ p["w1"]) @ p["w2"]
        loss = gk.mse_loss(x, target)
    feeds = {"x": rng.normal(size=(batch, seq, d)).astype(np.float32)}
    feeds["target"] = rng.normal(size=(batch, seq, d)).astype(np.float32)
    return g, [loss.value, *(v.value for v in gk.grad(loss, list(p.values())))], feeds


def test_the_backward_reads_a_recomputed_copy_and_the_original_dies_with_the_forward():
    with gk.Graph() as g:
        x = gk.input("x", (4, 4))
        y = gk.tanh(x)
        loss = gk.sum(y * 0.5)
        (dx,) = gk.grad(loss, [x])
    tanh = g.nodes_of("tanh")[0]
    remat = g.copy()
    assert drop_activations(remat, [tanh.id]) == [tanh.id]
    original = remat.node(tanh.id)
    assert {remat.node(u).role for u, _ in remat.users_of(original.outputs[0])} == {"forward"}
    (copy,) = [n for n in remat.nodes() if n.role == "recompute"]
    assert copy.op == "tanh" and copy.inputs == original.inputs  # recomputed from x
    assert {remat.node(u).role for u, _ in remat.users_of(copy.outputs[0])} == {"grad"}
    feeds = {"x": np.linspace(-2, 2, 16, dtype=np.float32).reshape(4, 4)}
    assert_identical(results(g, [loss, dx], feeds), results(remat, [loss.value, dx.value], feeds))
    verify(remat)
    assert "recompute" not in {n.role for n in g.nodes()}, "the input graph is left alone"


def test_a_dropped_chain_is_recomputed_from_the_nearest_kept_value_through_views():
    with gk.Graph() as g:
        x = gk.input("x", (4, 6))
        a = gk.exp(x)
        b = gk.transpose(gk.sin(a), (1, 0))  # the backward of the matmul reads the view b
        loss = gk.sum(b @ a)
        (dx,) = gk.grad(loss, [x])
    sin, exp = g.nodes_of("sin")[0], g.nodes_of("exp")[0]
    remat = g.copy()
    drop_activations(remat, [sin.id])
    copies = {n.op: n for n in remat.nodes() if n.role == "recompute"}
    assert set(copies) == {"sin", "transpose"}  # the view comes along: a kept view keeps its base
    assert copies["sin"].inputs == [exp.outputs[0]]  # exp is kept (the backward reads it): not copied
    assert copies["transpose"].inputs == copies["sin"].outputs
    feeds = {"x": np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)}
    assert_identical(results(g, [loss, dx], feeds), results(remat, [loss.value, dx.value], feeds))


def test_the_scheduler_runs_recomputed_copies_after_the_forward_pass():
    for graph, outputs, bindings in [(*deep_mlp(), BATCH), (*elementwise_chain(48, (16, 16)), {})]:
        remat, outs, _ = rematerialize(graph, outputs, strategy="sqrt", bindings=bindings)
        schedule = greedy_schedule(remat, outs, bindings)
        roles = [remat.node(n).role for n in schedule]
        last_forward = max(i for i, role in enumerate(roles) if role == "forward")
        copies = [i for i, role in enumerate(roles) if role == "recompute"]
        assert copies and min(copies) > last_forward

    # the backward starts at the end of the chain, so the last segment is recomputed first
    def checkpoint_read(copy):
        computed = [remat.node(v.node) for v in remat.inputs_of(copy)]
        return max((n.id for n in computed if n.role == "forward" and not n.opdef.source), default=-1)

    segment_starts = [checkpoint_read(schedule[i]) for i in copies if checkpoint_read(schedule[i]) >= 0]
    assert len(set(segment_starts)) > 2 and segment_starts == sorted(segment_starts, reverse=True)


def test_sqrt_segments_cut_a_deep_chain_peak_and_keep_results():
    graph, outputs = elementwise_chain(90, (32, 32))
    feeds = {"x": np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)}
    remat, outs, report = rematerialize(graph, outputs, strategy="sqrt")
    assert report.peak_after < 0.5 * report.peak_before  # 30 activations -> about 2*sqrt(30) live
    assert report.peak_after == plan_memory(remat, outs).peak_bytes
    assert 0.5 < report.recompute_ratio <= 1.0  # about one extra forward pass
    recomputed = [n.flops for n in gk.cost(remat, outs).nodes if n.role == "recompute"]
    assert report.recomputed_flops == sum(recomputed) > 0
    assert_identical(results(graph, outputs, feeds), results(remat, outs, feeds, memory_plan=True))


def test_greedy_fits_the_budget_on_a_deep_mlp_and_the_measured_peak_drops():
    graph, outputs = deep_mlp()
    peak = plan_memory(graph, outputs, bindings=BATCH).peak_bytes
    budget = int(0.8 * peak)
    remat, outs, report = rematerialize(graph, outputs, budget, bindings=BATCH)
    assert report.peak_before == peak and report.peak_after <= budget
    assert report.recompute_ratio < 0.6  # cheap activations (relu outputs) first, not matmuls
    feeds = mlp_feeds(BATCH["N"], DEEP)
    before, after = gk.compile(graph, outputs, memory_plan=True), gk.compile(remat, outs, memory_plan=True)
    assert_identical(before(**feeds), after(**feeds))
    assert measured_peak_bytes(after, feeds) < measured_peak_bytes(before, feeds) - (peak - budget) // 2


def test_a_third_of_the_activation_memory_of_a_transformer_block_costs_less_than_a_forward_pass():
    """(Half until the weight gradients of linear layers became one matmul over all rows: that
    lowered the peak without remat by 8 KiB, while the lowest peak remat reaches, 82,240 bytes, is set
    by the arena placement beside the gradient outputs and stayed as it was.)"""
    graph, outputs, feeds = small_transformer_block()
    _, _, probe = rematerialize(graph, outputs, strategy="sqrt")
    budget = probe.peak_before - probe.activation_bytes // 3
    remat, outs, report = rematerialize(graph, outputs, budget)
    assert report.peak_after <= budget
    assert report.recompute_ratio <= 1.0  # the target: at most 1.35x
    assert_identical(results(graph, outputs, feeds), results(remat, outs, feeds, memory_plan=True))


def test_remat_is_a_pipeline_pass_with_a_memory_budget():
    graph, outputs = deep_mlp()
    budget = int(0.8 * plan_memory(graph, outputs, bindings=BATCH).peak_bytes)
    optimized, outs, manager = optimize(graph, outputs, ["remat"], memory_budget=budget, bindings=BATCH, verify=True)
    assert plan_memory(optimized, outs, bindings=BATCH).peak_bytes <= budget
    assert [r.changed for r in manager.records] == [True, False]  # the second round finds it fits
    untouched, _, manager = optimize(graph, outputs, ["remat"])
    assert len(untouched) == len(graph) and not manager.records[0].changed  # no budget, no remat


def test_bad_requests_name_the_problem():
    graph, outputs = elementwise_chain(6, (8, 8))
    with pytest.raises(GraphError, match="unknown strategy 'fast'"):
        rematerialize(graph, outputs, 1 << 20, strategy="fast")
    with pytest.raises(GraphError, match="greedy strategy needs a memory budget"):
        rematerialize(graph, outputs)
    with pytest.raises(GraphError, match=r"over the budget of 64 bytes .* raise the budget"):
        rematerialize(graph, outputs, 64)
    mlp, mlp_outputs = mlp_training_step()
    with pytest.raises(GraphError, match="bindings"):
        rematerialize(mlp, mlp_outputs, strategy="sqrt")


@settings(max_examples=40, deadline=None)
@given(case=random_graphs())
def test_remat_keeps_gradients_of_random_graphs_bit_identical(case):
    graph, outputs = case
    with graph:
        loss = sum(gk.sum(gk.Tensor(graph, v)) for v in outputs)
        inputs = [gk.Tensor(graph, graph.by_name(name).outputs[0]) for name in ("x", "y")]
        grads = gk.grad(loss, inputs, allow_unused=True)
    wanted = [loss.value, *(g.value for g in grads if g is not None)]
    remat, outs, _ = rematerialize(graph, wanted, strategy="sqrt")
    verify(remat)
    feeds = random_graph_feeds()
    assert_identical(results(graph, wanted, feeds), results(remat, outs, feeds))


def test_docs_passes_md_covers_every_pass_and_its_examples_run():
    text = (Path(__file__).resolve().parents[2] / "docs" / "passes.md").read_text()
    assert set(PASSES) <= set(re.findall(r"^## (\w+)$", text, re.M))
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 7
    for block in blocks:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, "docs/passes.md", "exec"), {})
