"""Anomaly detection: the first NaN/Inf is reported with its node, role, source line and inputs,
in plain and memory-planned numpy runs and in TVM's instrumented build; runs without it are unchanged.
Out-of-range indices of index ops in mode "raise" are reported the same way on every target."""

import re
from pathlib import Path

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph.errors import IndexOutOfRangeError

HERE = Path(__file__).resolve()
DOC = HERE.parents[2] / "docs" / "troubleshooting.md"
RUNS = pytest.mark.parametrize(
    "options", [{}, {"memory_plan": True}, {"target": "llvm"}], ids=["numpy", "numpy-planned", "tvm-llvm"]
)


def line_of(marker):
    """The line number in this file of the line that holds `marker`."""
    return next(i for i, text in enumerate(HERE.read_text().splitlines(), 1) if marker in text)


def log_graph():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        y = gk.log(x) * 2.0  # forward-log
        loss = gk.sum(y)
    return g, loss


def sqrt_graph():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        loss = gk.sum(gk.sqrt(x))
        (dx,) = gk.grad(loss, [x])  # grad-sqrt
    return g, [loss, dx]


def test_nodes_record_the_user_source_line_that_built_them_and_copies_keep_it():
    g, _ = log_graph()
    log = g.nodes_of("log")[0]
    assert log.source.file == str(HERE) and log.source.line == line_of("# forward-log")
    assert log.source.function == "log_graph"
    assert str(log.source) == f"{HERE}:{log.source.line} in log_graph"
    assert g.copy().node(log.id).source == log.source


@RUNS
def test_a_nan_in_a_forward_node_names_the_node_its_source_and_its_inputs(options):
    g, loss = log_graph()
    fn = gk.compile(g, loss, detect_anomaly=True, **options)
    with pytest.raises(gk.AnomalyError) as info:
        fn(x=np.array([1.0, -1.0, 2.0], np.float32))
    message = str(info.value)
    assert message.startswith("%1 = log(...) (forward) produced 1 NaN and 0 Inf in its output float32[3]")
    assert f"{HERE}:{line_of('# forward-log')} in log_graph" in message
    if not options.get("memory_plan"):  # a planned run may reuse the input's buffer in place for the output
        assert "input 0 %x: float32[3], min -1, max 2, mean 0.666667, 0 NaN and 0 Inf" in message


@RUNS
def test_an_inf_in_a_gradient_node_is_reported_with_the_grad_role(options):
    g, outputs = sqrt_graph()
    with gk.detect_anomaly(), pytest.raises(gk.AnomalyError) as info:
        gk.compile(g, outputs, **options)(x=np.array([0.0, 1.0, 4.0], np.float32))
    message = str(info.value)
    assert re.match(r"%\d+ = \w+\(\.\.\.\) \(grad\) produced 0 NaN and 1 Inf", message), message
    assert f"{HERE}:{line_of('# grad-sqrt')} in sqrt_graph" in message


@RUNS
def test_clean_graphs_raise_nothing_and_give_the_same_results_as_unchecked_runs(options):
    g, outputs = sqrt_graph()
    feeds = {"x": np.array([0.5, 1.0, 4.0], np.float32)}
    plain = gk.compile(g, outputs, **options)(**feeds)
    checked = gk.compile(g, outputs, detect_anomaly=True, **options)(**feeds)
    with gk.detect_anomaly():
        in_mode = gk.compile(g, outputs, **options)(**feeds)
    for a, b, c in zip(plain, checked, in_mode):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def take_graph(mode="raise"):
    with gk.Graph() as g:
        x = gk.input("x", (4, 2))
        out = gk.take(x, gk.input("i", (3,), "int64"), 0, mode) * 2.0  # take-line
    return g, out


TAKE_FEEDS = {"x": np.arange(8, dtype=np.float32).reshape(4, 2), "i": np.array([0, 4, -1])}


@RUNS
def test_an_out_of_range_index_in_the_default_mode_raises_on_every_target_under_detection(options):
    g, out = take_graph()
    with pytest.raises(IndexOutOfRangeError) as info:
        gk.compile(g, out, detect_anomaly=True, **options)(**TAKE_FEEDS)
    message = str(info.value)
    assert message.startswith("%2 = take: index 4 at position (1,) of the indices is out of range [-4, 3]"), message
    assert f"{HERE}:{line_of('# take-line')} in take_graph" in message


def test_without_detection_llvm_reads_the_fill_value_where_numpy_raises():
    g, out = take_graph()
    np.testing.assert_array_equal(gk.compile(g, out, target="llvm")(**TAKE_FEEDS), [[0, 2], [np.nan] * 2, [12, 14]])
    with pytest.raises(IndexOutOfRangeError):
        gk.compile(g, out)(**TAKE_FEEDS)


@RUNS
def test_clip_passes_the_index_check_and_a_fill_read_is_reported_as_the_nan_it_is(options):
    g, out = take_graph("clip")
    np.testing.assert_array_equal(
        gk.compile(g, out, detect_anomaly=True, **options)(**TAKE_FEEDS), [[0, 2], [12, 14], [0, 2]]
    )
    g, out = take_graph("fill")
    with pytest.raises(gk.AnomalyError, match=r"^%2 = take\(\.\.\.\) \(forward\) produced 2 NaN"):
        gk.compile(g, out, detect_anomaly=True, **options)(**TAKE_FEEDS)


def test_without_detection_nans_flow_through_and_the_mode_ends_with_its_block():
    g, loss = log_graph()
    fn = gk.compile(g, loss)
    with gk.detect_anomaly():
        with pytest.raises(gk.AnomalyError):
            fn(x=np.array([-1.0, 1.0, 1.0], np.float32))
    assert np.isnan(fn(x=np.array([-1.0, 1.0, 1.0], np.float32)))


def test_an_option_only_the_numpy_executor_takes_is_a_clear_error_on_tvm():
    g, loss = log_graph()
    with pytest.raises(gk.LoweringError, match="the memory plan drives the numpy executor; TVM plans its own"):
        gk.compile(g, loss, target="llvm", memory_plan=True)


def test_the_debugging_example_in_troubleshooting_runs():
    code = re.search(r"## Debugging.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    exec(compile(code, str(DOC), "exec"), {})
