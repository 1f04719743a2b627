"""Passes rewrite graphs without changing what the requested outputs compute."""

import numpy as np
import pytest
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.graph import GraphError, verify
from gradkiln.passes import PassContext, PassManager, optimize, register_pass
from gradkiln.testing import random_graph_feeds, random_graphs


def run(graph, outputs, **feeds):
    return gk.compile(graph, list(outputs), target="numpy")(**feeds)


def ops_of(graph):
    return sorted(n.op for n in graph.nodes())


def test_dce_drops_what_outputs_do_not_need_but_keeps_inputs():
    with gk.Graph() as g:
        x, _unused = gk.input("x", (3,)), gk.input("unused", (3,))
        gk.exp(x) * 2.0
        out = gk.tanh(x)
    optimized, outs, _ = optimize(g, [out.value], ["dce"])
    assert ops_of(optimized) == ["input", "input", "tanh"]
    assert optimized.by_name("unused").op == "input"
    assert len(g) == 6  # the original graph is untouched
    data = np.linspace(-1, 1, 3, dtype=np.float32)
    np.testing.assert_allclose(run(optimized, outs, x=data)[0], np.tanh(data))


def test_cse_merges_repeated_expressions_and_equal_constants():
    with gk.Graph() as g:
        x, y = gk.input("x", (2, 2)), gk.input("y", (2, 2))
        a = gk.exp(x * y) + gk.constant(np.ones((2, 2), np.float32))
        b = gk.exp(x * y) + gk.constant(np.ones((2, 2), np.float32))
        out = a * b
    optimized, outs, _ = optimize(g, [out.value], ["cse", "dce"])
    assert ops_of(optimized).count("exp") == 1
    assert ops_of(optimized).count("constant") == 1
    assert ops_of(optimized).count("add") == 1
    feeds = {"x": np.eye(2, dtype=np.float32), "y": np.full((2, 2), 0.5, np.float32)}
    np.testing.assert_allclose(run(optimized, outs, **feeds)[0], run(g, [out], **feeds)[0])


def test_cse_never_merges_inputs_or_params_with_equal_values():
    with gk.Graph() as g:
        p, q = gk.param("p", np.ones(2, np.float32)), gk.param("q", np.ones(2, np.float32))
        out = p + q
    optimized, _, _ = optimize(g, [out.value], ["cse"])
    assert ops_of(optimized).count("param") == 2


def test_constant_folding_folds_constant_subgraphs_within_the_size_limit():
    with gk.Graph() as g:
        x = gk.input("x", (4,))
        small = gk.exp(gk.constant(np.arange(4, dtype=np.float32))) * 2.0
        big = gk.broadcast_to(gk.constant(np.float32(1.0)), (300, 300))
        out_small, out_big = x + small, gk.sum(big, 0)[:4] + x
    optimized, outs, _ = optimize(g, [out_small.value, out_big.value], ["constant_fold", "dce"])
    assert "exp" not in ops_of(optimized)
    assert "broadcast_to" in ops_of(optimized)  # 90000 elements exceed the default fold limit
    data = np.ones(4, np.float32)
    for got, want in zip(run(optimized, outs, x=data), run(g, [out_small, out_big], x=data)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_folding_an_output_redirects_it_to_the_new_constant():
    with gk.Graph() as g:
        out = gk.constant(np.float32(2.0)) * 3.0
    optimized, outs, _ = optimize(g, [out.value])
    assert ops_of(optimized) == ["constant"]
    assert run(optimized, outs)[0] == 6.0


def test_manager_records_time_and_sizes_and_dumps_dot(tmp_path):
    with gk.Graph() as g:
        x = gk.input("x", (2,))
        out = gk.exp(x) + gk.exp(x)
    _, _, manager = optimize(g, [out.value], "O1", verify=True, dump_dir=tmp_path)
    cse_record = next(r for r in manager.records if r.name == "cse")
    assert cse_record.changed and cse_record.nodes_after < cse_record.nodes_before
    assert all(r.seconds >= 0 for r in manager.records)
    assert "cse" in manager.table()
    dumps = sorted(p.name for p in tmp_path.iterdir())
    assert len(dumps) == len(manager.records) and dumps[0].endswith(".dot")
    assert "digraph" in (tmp_path / dumps[0]).read_text()


def test_verification_names_the_pass_that_broke_the_graph():
    @register_pass("test_break_an_edge")
    def break_an_edge(graph, ctx):
        src, dst, key = next(iter(graph.nx.in_edges(ctx.outputs[0].node, keys=True)))
        graph.nx.remove_edge(src, dst, key)
        return True

    with gk.Graph() as g:
        out = gk.input("x", (2,)) + 1.0
    manager = PassManager(["test_break_an_edge"], verify=True, max_rounds=1)
    with pytest.raises(GraphError, match="test_break_an_edge"):
        manager.run(g, PassContext([out.value]))


def test_unknown_pass_and_pipeline_are_clear_errors():
    with pytest.raises(GraphError, match=r"unknown passes.*nope"):
        PassManager(["nope"])
    with gk.Graph() as g:
        out = gk.input("x", (2,)) + 1.0
    with pytest.raises(GraphError, match="unknown pipeline"):
        optimize(g, [out.value], "O9")


# -- property: the pipelines preserve semantics, bit for bit, on random graphs ---------------------
@pytest.mark.parametrize("pipeline", ["O1", "O2", ["simplify"]], ids=["O1", "O2", "simplify"])
@settings(max_examples=60, deadline=None)
@given(case=random_graphs())
def test_pipelines_preserve_semantics_on_random_graphs(pipeline, case, identical, special):
    """Bit for bit, on benign feeds and on NaN, Inf, -0.0 and overflowing ones: the pipelines are exact."""
    graph, outputs = case
    optimized, new_outputs, _manager = optimize(graph, outputs, pipeline, verify=True)
    verify(optimized)
    for feeds in (random_graph_feeds(), {"x": special((3, 4)), "y": special((4,), shift=5)}):
        before = gk.compile(graph, outputs)(**feeds)
        for b, a in zip(before, gk.compile(optimized, new_outputs)(**feeds)):
            identical(a, b)
    if pipeline != ["simplify"]:  # simplify alone may add nodes (a broadcast) that DCE would drop
        assert len(optimized) <= len(graph)


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_compile_can_optimize_first_and_keeps_the_output_structure(target):
    with gk.Graph() as g:
        x = gk.input("x", ("N", 3))
        a = gk.exp(x) * gk.constant(np.float32(2.0)) * 3.0
        b = gk.exp(x) * 6.0
    plain = gk.compile(g, {"a": a, "b": b}, target=target)
    optimized = gk.compile(g, {"a": a, "b": b}, target=target, optimize="O1")
    data = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    got, want = optimized(x=data), plain(x=data)
    assert set(got) == {"a", "b"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
    assert len(optimized.node_ids) < len(plain.node_ids)
