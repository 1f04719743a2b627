"""The numpy executor, plain and running from a memory plan: same results, and the memory a
planned run allocates is the planned peak."""

import numpy as np
import pytest
from hypothesis import given, settings

import gradkiln as gk
from gradkiln.testing import elementwise_chain, measured_peak_bytes, op_samples, random_graph_feeds, random_graphs


def assert_same(got, want):
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=80, deadline=None)
@given(random_graphs())
def test_planned_runs_give_identical_results_on_random_graphs(case):
    graph, outputs = case
    feeds = random_graph_feeds()
    assert_same(gk.compile(graph, outputs, memory_plan=True)(**feeds), gk.compile(graph, outputs)(**feeds))


@pytest.mark.parametrize("sample", op_samples("float32"), ids=lambda s: s.name)
def test_planned_runs_agree_op_by_op_with_their_gradients(sample):
    graph, inputs, out = sample.graph()
    with graph:
        grads = gk.grad(gk.sum(out * out), [inputs[k] for k in sample.wrt])
    outputs = [out, *grads]
    got = gk.compile(graph, outputs, memory_plan=True)(**sample.feeds)
    assert_same(got, gk.compile(graph, outputs)(**sample.feeds))


def test_a_planned_executable_plans_once_per_batch_size_and_returns_fresh_outputs():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 8))
        out = gk.tanh(gk.exp(x) * 0.5) + x
    fn = gk.compile(g, out, memory_plan=True, optimize="O2")
    first = fn(x=np.ones((3, 8), np.float32))
    kept = first.copy()
    second = fn(x=np.zeros((5, 8), np.float32))
    np.testing.assert_array_equal(first, kept)  # a later call does not overwrite earlier results
    assert second.shape == (5, 8) and len(fn._plans) == 2


def test_the_measured_peak_of_a_planned_run_is_the_planned_peak():
    g, outputs = elementwise_chain(shape=(512, 512))
    fn = gk.compile(g, outputs, memory_plan=True)
    feeds = {"x": np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32)}
    measured = measured_peak_bytes(fn, feeds)
    plan = fn.plan()
    planned = plan.peak_bytes
    assert planned <= 1.1 * plan.lower_bound_bytes and planned < plan.baseline_bytes / 5
    assert planned <= measured <= 1.1 * planned, (measured, planned)


def test_an_option_the_target_does_not_take_is_a_clear_error():
    with gk.Graph() as g:
        out = gk.input("x", (2,)) + 1.0
    with pytest.raises(
        gk.LoweringError, match=r"'llvm' takes no option memory_plan; its options: cache, detect_anomaly, schedule"
    ):
        gk.compile(g, out, target="llvm", memory_plan=True)


def aliasing_outputs():
    """A graph whose outputs are a param, an input, a constant, a view of the param, and `w * 1.0`
    (the param itself after O2), beside one freshly computed result."""
    with gk.Graph() as g:
        x = gk.input("x", (2, 3))
        w = gk.param("w", np.arange(6, dtype=np.float32).reshape(2, 3))
        c = gk.constant(np.full((2, 3), 7.0, np.float32))
        outputs = [w, x, c, gk.transpose(w, (1, 0)), w * 1.0, x + w]
    return g, outputs


@pytest.mark.parametrize("memory_plan", [False, True])
@pytest.mark.parametrize("level", ["O0", "O2"])
def test_outputs_that_alias_stored_arrays_or_feeds_are_copies(memory_plan, level):
    g, outputs = aliasing_outputs()
    fn = gk.compile(g, outputs, memory_plan=memory_plan, optimize=level)
    x = np.ones((2, 3), np.float32)
    first = fn(x=x)
    want = [a.copy() for a in first]
    for result in first:
        result[...] = -1.0  # a caller reusing its results as scratch space
    np.testing.assert_array_equal(x, np.ones((2, 3), np.float32))  # the feed is untouched
    for got, expected in zip(fn(x=x), want):
        np.testing.assert_array_equal(got, expected)  # and so is every later call


def test_freshly_computed_outputs_are_not_copied_again(monkeypatch):
    g, outputs = aliasing_outputs()
    fn = gk.compile(g, [outputs[0], outputs[-1]])
    computed = []
    run = fn._run_unplanned
    monkeypatch.setattr(fn, "_run_unplanned", lambda *args: computed.extend(run(*args)) or computed)
    param, fresh = fn.run(*fn.check_feeds({"x": np.ones((2, 3), np.float32)}))
    assert fresh is computed[1] and param is not computed[0]
