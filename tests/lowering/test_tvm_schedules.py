"""Our CPU schedules (lowering/tvm_schedules.py) change how kernels run, never what they compute:
scheduled and unscheduled builds agree with the numpy executor on matmul shapes, epilogues,
symbolic batches and an MLP training step, and the step's matmul kernels really get scheduled."""

import numpy as np
import pytest
from tvm import s_tir, tirx

import gradkiln as gk
from gradkiln.lowering import tvm_schedules
from gradkiln.lowering.tvm_schedules import is_matmul, root_blocks
from gradkiln.testing import mlp_feeds, mlp_training_step


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def assert_builds_agree(graph, outputs, feed_sets, rtol=1e-4, atol=1e-5):
    """Scheduled and unscheduled TVM builds both match numpy on every feed set; returns the scheduled one."""
    reference = gk.compile(graph, outputs, target="numpy")
    builds = [gk.compile(graph, outputs, target="llvm", schedule=flag) for flag in (True, False)]
    for feeds in feed_sets:
        want = reference(**feeds)
        for build in builds:
            got = build(**feeds)
            for g, w in zip(*(x if isinstance(x, list) else [x] for x in (got, want))):
                assert g.shape == w.shape
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return builds[0]


MATMULS = {
    "plain, no dim a multiple of a tile": (lambda a, b: a @ b, (37, 19), (19, 53)),
    "a wide and a 10-column output": (lambda a, b: a @ b, (16, 64), (64, 10)),
    "batched": (lambda a, b: a @ b, (3, 9, 20), (3, 20, 40)),
    "transposed lhs": (lambda a, b: gk.transpose(a, (1, 0)) @ b, (20, 33), (20, 48)),
    "transposed rhs": (lambda a, b: a @ gk.transpose(b, (1, 0)), (33, 20), (48, 20)),
    "bias and relu epilogue": (lambda a, b: gk.relu(a @ b + 0.5), (24, 30), (30, 64)),
}


@pytest.mark.parametrize("case", MATMULS, ids=list(MATMULS))
def test_matmul_forms_agree_with_numpy(case):
    build, a_shape, b_shape = MATMULS[case]
    with gk.Graph() as g:
        out = build(gk.input("a", a_shape), gk.input("b", b_shape))
    compiled = assert_builds_agree(g, out, [{"a": rand(*a_shape), "b": rand(*b_shape, seed=1)}])
    assert "schedule_matmul" in compiled.scheduled.values()


@pytest.mark.parametrize("rhs_first", [False, True], ids=["batch-rows", "batch-reduced"])
def test_symbolic_batch_runs_at_several_sizes(rhs_first):
    """N is padded to whole tiles when it is a spatial dim and loops as is when it is reduced."""
    with gk.Graph() as g:
        x, w = gk.input("x", ("N", 20)), gk.input("w", (20, 48))
        out = gk.transpose(x, (1, 0)) @ (x @ w) if rhs_first else gk.relu(x @ w)
    feeds = [{"x": rand(n, 20, seed=n), "w": rand(20, 48)} for n in (1, 7, 8, 64)]
    compiled = assert_builds_agree(g, out, feeds)
    assert list(compiled.scheduled.values()).count("schedule_matmul") >= 1


def test_mlp_training_step_gradients_agree_with_numpy():
    g, outputs = mlp_training_step()
    assert_builds_agree(g, outputs, [mlp_feeds(n) for n in (3, 64)])


def matmul_kernels(module) -> dict[str, str]:
    """Name -> TVMScript of every kernel of `module` holding a matmul block."""
    kernels = {}
    for gvar, func in module.functions_items():
        if isinstance(func, tirx.PrimFunc):
            sch = s_tir.Schedule(func)
            if any(is_matmul(sch, block) for block in root_blocks(sch)):
                kernels[gvar.name_hint] = func.script()
    return kernels


def test_every_matmul_of_the_mlp_training_step_is_tiled_vectorized_and_parallel():
    g, outputs = mlp_training_step()
    compiled = gk.compile(g, outputs, target="llvm")
    unscheduled = matmul_kernels(gk.compile(g, outputs, target="llvm", schedule=False).kernels)
    assert len(unscheduled) >= 7  # 3 forward, 2 input and 3 weight gradients (some may share a kernel)
    for name in unscheduled:
        assert compiled.scheduled.get(name) == "schedule_matmul", name
        text = compiled.kernels[name].script()
        assert "T.parallel" in text and "T.vectorized" in text and 'scope="local"' in text, name


def test_schedule_false_keeps_tvm_default_loop_nests():
    g, outputs = mlp_training_step()
    compiled = gk.compile(g, outputs, target="llvm", schedule=False)
    assert compiled.scheduled == {}
    assert not any("T.parallel" in text for text in matmul_kernels(compiled.kernels).values())


def test_a_failing_rule_leaves_the_kernel_unscheduled(monkeypatch):
    def broken(func, vector):
        raise RuntimeError("precondition of a primitive does not hold")

    monkeypatch.setattr(tvm_schedules, "RULES", [broken])
    with gk.Graph() as g:
        out = gk.relu(gk.input("a", (8, 16)) @ gk.input("b", (16, 32)))
    compiled = assert_builds_agree(g, out, [{"a": rand(8, 16), "b": rand(16, 32)}])
    assert compiled.scheduled == {}
