"""`.profile()` on every backend: time per kernel (TVM) or per node (numpy), the hottest first, each
row mapped back to the gradkiln nodes it computes, with shares and call counts that add up; the
times checked against a stopwatch and against numpy's own matmul."""

import time

import numpy as np
import pytest
import tvm

import gradkiln as gk
from gradkiln.lowering.profile import KernelTime, Profile
from gradkiln.testing import mlp_feeds, mlp_training_step


def matmul_then_cheap_ops():
    """A 256x256x256 matmul (~33 MFLOP) followed by two elementwise ops on its result."""
    rng = np.random.default_rng(0)
    with gk.Graph("hot") as g:
        a = gk.input("a", (256, 256))
        b = gk.param("b", rng.normal(size=(256, 256)).astype("float32"))
        h = a @ b
        y = gk.relu(gk.tanh(h) + 1.0)
    return g, y


@pytest.fixture(scope="module")
def mlp_profile():
    graph, outputs = mlp_training_step()
    compiled = gk.compile(graph, outputs, target="llvm")
    compiled.reference = gk.compile(graph, outputs, target="numpy")
    return graph, compiled, compiled.profile(mlp_feeds(32), repeat=3)


def test_the_hottest_kernel_comes_first_and_is_the_matmul():
    graph, y = matmul_then_cheap_ops()
    compiled = gk.compile(graph, y, target="llvm")
    profile = compiled.profile(a=np.ones((256, 256), "float32"), repeat=5)
    seconds = [row.seconds for row in profile.rows]
    assert seconds == sorted(seconds, reverse=True)
    (matmul,) = graph.nodes_of("matmul")
    assert matmul.label in profile.rows[0].nodes, str(profile)
    assert profile.rows[0].share > 0.5, str(profile)


def test_every_kernel_call_of_a_run_is_counted_once(mlp_profile):
    _, compiled, profile = mlp_profile
    calls = {}
    for block in compiled.kernels["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if isinstance(call, tvm.relax.Call) and call.op.name == "relax.call_tir":
                calls[call.args[0].name_hint] = calls.get(call.args[0].name_hint, 0) + 1
    assert {row.kernel: row.calls for row in profile.rows} == calls


def test_shares_add_up_and_kernels_take_part_of_the_run(mlp_profile):
    _, _, profile = mlp_profile
    assert sum(row.share for row in profile.rows) == pytest.approx(1.0)
    assert 0 < profile.kernel_seconds <= profile.run_seconds
    assert profile.repeat == 3


def test_kernels_name_the_nodes_they_compute(mlp_profile):
    graph, compiled, profile = mlp_profile
    computed = [label for row in profile.rows for label in row.nodes]
    assert len(computed) == len(set(computed))  # no node claimed by two kernels
    matmuls = {n.label for n in graph.nodes_of("matmul") if n.id in compiled.node_ids}
    assert matmuls <= set(computed)
    transposes = {n.label for n in graph.nodes_of("transpose") if n.id in compiled.node_ids}
    assert transposes and transposes <= set(computed)  # those matmuls read in place too
    fused = [row for row in profile.rows if row.kernel.startswith("fused_matmul")]
    assert fused and all(len(row.nodes) >= 2 for row in fused)  # the matmul and what was fused into it


def test_the_report_prints_one_line_per_kernel_hottest_first(mlp_profile):
    _, _, profile = mlp_profile
    text = str(profile).splitlines()
    assert text[0].startswith("profile of 'mlp' on llvm") and "3 runs" in text[0]
    assert [line.split()[0] for line in text[2:]] == [row.kernel for row in profile.rows]
    assert profile[profile.rows[-1].kernel] == profile.rows[-1]
    with pytest.raises(KeyError, match="no kernel 'nope'"):
        profile["nope"]


def test_the_profiled_results_do_not_disturb_normal_calls(mlp_profile):
    _, compiled, _ = mlp_profile
    feeds = mlp_feeds(4)
    for got, expected in zip(compiled(**feeds), compiled.reference(**feeds)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_bad_repeat_and_missing_device_are_clear_errors():
    graph, y = matmul_then_cheap_ops()
    with pytest.raises(gk.LoweringError, match="repeat must be at least 1"):
        gk.compile(graph, y, target="llvm").profile(a=np.ones((256, 256), "float32"), repeat=0)
    cuda = gk.compile(graph, y, target="cuda")
    if cuda.spec.device().exist:
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(gk.LoweringError, match="no CUDA device on this machine"):
        cuda.profile(a=np.ones((256, 256), "float32"))


def test_the_report_type_is_plain_data():
    row = KernelTime("k", 2, 0.001, 1.0, ("%3",))
    profile = Profile("'g' on llvm", (row,), 0.002, 1)
    assert str(profile).splitlines()[-1].split() == ["k", "2", "1.000", "ms", "100.0%", "%3"]
    assert "2.000 ms per run, 1.000 ms in 1 kernels" in str(profile)


def slow_matmul_among_tiny_ops():
    """A 384x384x384 matmul (~113 MFLOP) among elementwise ops and sums on 8 numbers."""
    with gk.Graph("hot_numpy") as g:
        a = gk.input("a", (384, 384))
        v = gk.input("v", (8,))
        tiny = gk.sum(gk.exp(gk.tanh(v) * 2.0 + 1.0))
        y = gk.sum(a @ a) + tiny
    feeds = {"a": np.ones((384, 384), "float32"), "v": np.linspace(-1, 1, 8, dtype="float32")}
    return g, y, feeds


@pytest.fixture(scope="module")
def numpy_profile():
    graph, y, feeds = slow_matmul_among_tiny_ops()
    compiled = gk.compile(graph, y, target="numpy")
    started = time.perf_counter()
    profile = compiled.profile(feeds, repeat=3)
    return graph, compiled, profile, time.perf_counter() - started


def test_numpy_profile_puts_the_slow_matmul_first(numpy_profile):
    graph, _, profile, _ = numpy_profile
    seconds = [row.seconds for row in profile.rows]
    assert seconds == sorted(seconds, reverse=True)
    (matmul,) = graph.nodes_of("matmul")
    hottest = profile.rows[0]
    assert (hottest.kernel, hottest.op, hottest.nodes) == (matmul.label, "matmul", (matmul.label,)), str(profile)
    assert hottest.share > 0.5, str(profile)


def test_numpy_profile_has_every_computed_node_once(numpy_profile):
    graph, compiled, profile, _ = numpy_profile
    computed = [graph.node(i) for i in compiled.node_ids if graph.node(i).op not in ("input", "param")]
    assert sorted(row.kernel for row in profile.rows) == sorted(node.label for node in computed)
    assert {row.kernel: row.op for row in profile.rows} == {node.label: node.op for node in computed}
    assert all(row.calls == 1 and row.seconds > 0 for row in profile.rows)
    assert sum(row.share for row in profile.rows) == pytest.approx(1.0)


def test_numpy_profile_times_agree_with_a_stopwatch_and_with_numpy(numpy_profile):
    graph, _, profile, wall = numpy_profile
    assert 0 < profile.kernel_seconds <= profile.run_seconds and profile.repeat == 3
    assert profile.repeat * profile.run_seconds <= wall  # the timed runs lie inside the stopwatch's
    a = np.ones((384, 384), "float32")
    direct = []
    for _ in range(3):
        started = time.perf_counter()
        np.matmul(a, a)
        direct.append(time.perf_counter() - started)
    (matmul,) = graph.nodes_of("matmul")
    assert profile[matmul.label].seconds >= 0.5 * min(direct), (profile[matmul.label], direct)


def test_numpy_and_tvm_profiles_are_one_type():
    graph, y = matmul_then_cheap_ops()
    feeds = {"a": np.ones((256, 256), "float32")}
    numpy_profile = gk.compile(graph, y, target="numpy").profile(feeds, repeat=1)
    tvm_profile = gk.compile(graph, y, target="llvm").profile(feeds, repeat=1)
    assert type(numpy_profile) is type(tvm_profile) is Profile is gk.Profile
    assert {type(row) for row in numpy_profile.rows + tvm_profile.rows} == {KernelTime}
    (matmul,) = graph.nodes_of("matmul")
    assert numpy_profile.rows[0].nodes == (matmul.label,) and matmul.label in tvm_profile.rows[0].nodes
    assert (numpy_profile.unit, tvm_profile.unit) == ("node", "kernel")


def test_the_numpy_report_prints_one_line_per_node_with_its_op(numpy_profile):
    _, _, profile, _ = numpy_profile
    text = str(profile).splitlines()
    assert text[0].startswith("profile of 'hot_numpy' on numpy: 3 runs") and f"in {len(profile.rows)} nodes" in text[0]
    assert text[1].split() == ["node", "calls", "time", "share", "op"]
    assert [(line.split()[0], line.split()[-1]) for line in text[2:]] == [(r.kernel, r.op) for r in profile.rows]
    with pytest.raises(KeyError, match="no node 'nope'"):
        profile["nope"]


def test_numpy_profile_rejects_a_bad_repeat_and_bad_feeds():
    graph, y, feeds = slow_matmul_among_tiny_ops()
    compiled = gk.compile(graph, y, target="numpy", memory_plan=True)
    for repeat in (0, 1.5):
        with pytest.raises(gk.LoweringError, match="repeat must be at least 1"):
            compiled.profile(feeds, repeat=repeat)
    with pytest.raises(gk.GradkilnError, match="'a'"):
        compiled.profile(feeds | {"a": np.ones((3, 3), "float32")}, repeat=1)
    assert len(compiled.profile(feeds, repeat=1).rows) == len(compiled.node_ids) - 2  # memory_plan: still per node
