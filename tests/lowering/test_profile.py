"""`.profile()` on TVM executables: time per kernel, the hottest first, each kernel mapped back to
the gradkiln nodes it computes, with shares and call counts that add up."""

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
