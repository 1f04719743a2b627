"""Import: exported models round-trip; hand-built and older-opset models import and match onnxruntime."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import gradkiln as gk
from gradkiln.onnx_io import export, import_model
from gradkiln.testing import op_samples

SAMPLES = op_samples("float32")


def _op_counts(model: onnx.ModelProto) -> Counter:
    """Op types and counts, less Identity: no-op nodes (a sum over no axes) do not come back."""
    return Counter(n.op_type for n in model.graph.node if n.op_type != "Identity")


def _round_trip(graph, outputs, feeds):
    model = export(graph, outputs)
    imported, imported_outputs = import_model(model)
    want = gk.compile(graph, outputs, target="numpy")(**feeds)
    got = gk.compile(imported, imported_outputs, target="numpy")(**feeds)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert _op_counts(export(imported, imported_outputs)) == _op_counts(model)
    return imported


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_op_sample_round_trips_with_the_same_values_and_structure(sample):
    graph, _, out = sample.graph()
    _round_trip(graph, {"out": out}, sample.feeds)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.wrt], ids=lambda s: s.name)
def test_gradient_graph_round_trips(sample):
    graph, outputs, feeds = sample.with_gradients()
    _round_trip(graph, outputs, feeds)


def test_symbolic_shape_arithmetic_is_evaluated_at_import_time():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 3))
        out = gk.reshape(x, (-1,)) / gk.size(x, 0)
    imported, outputs = import_model(export(g, {"out": out}))
    ops = Counter(n.op for n in imported.nodes())
    assert ops == Counter({"input": 1, "reshape": 1, "size": 1, "div": 1})
    assert str(outputs["out"].shape[0]) == "3*N"


def test_params_and_constants_come_back_as_params_and_constants():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        out = x * gk.param("w", np.arange(3, dtype="float32")) + gk.constant(np.ones(3, "float32"))
    imported, _ = import_model(export(g, out))
    assert [n.name for n in imported.params()] == ["w"]
    assert len(imported.nodes_of("constant")) == 1


def _gemm_relu_softmax() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(5, 4)).astype("float32"), "W")
    bias = numpy_helper.from_array(rng.normal(size=(5,)).astype("float32"), "B")
    nodes = [
        helper.make_node("Gemm", ["X", "W", "B"], ["h"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Softmax", ["r"], ["Y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "gemm_relu_softmax",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 5])],
        [weights, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_hand_built_gemm_relu_softmax_matches_onnxruntime(run_onnx):
    model = _gemm_relu_softmax()
    graph, outputs = import_model(model)
    assert {n.name for n in graph.inputs()} == {"X"}
    assert graph.by_name("X").types[0].shape[0] == gk.graph.symbol("batch")
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    got = gk.compile(graph, outputs)(X=x)["Y"]
    np.testing.assert_allclose(got, run_onnx(model, {"X": x})["Y"], rtol=1e-5, atol=1e-6)


def _model(nodes, inputs, outputs, opset, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


OLDER_OPSETS = {
    "reduce_sum_axes_attribute_opset_11": (
        [helper.make_node("ReduceSum", ["X"], ["Y"], axes=[1], keepdims=0)],
        11,
        [2, 4],
    ),
    "reduce_mean_axes_attribute_opset_13": ([helper.make_node("ReduceMean", ["X"], ["Y"], axes=[0, 2])], 13, [1, 3, 1]),
    "flatten_then_log_softmax_opset_11": (
        [helper.make_node("Flatten", ["X"], ["f"], axis=1), helper.make_node("LogSoftmax", ["f"], ["Y"])],
        11,
        [2, 12],
    ),
    "softmax_coerced_to_2d_opset_11": ([helper.make_node("Softmax", ["X"], ["Y"], axis=1)], 11, [2, 3, 4]),
    "identity_and_constant": (
        [
            helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32(2.0), "c")),
            helper.make_node("Identity", ["X"], ["i"]),
            helper.make_node("Mul", ["i", "c"], ["Y"]),
        ],
        18,
        [2, 3, 4],
    ),
    "reduce_max_with_axes_input_opset_18": (
        [
            helper.make_node("Constant", [], ["axes"], value_ints=[-1]),
            helper.make_node("ReduceMax", ["X", "axes"], ["Y"], keepdims=1),
        ],
        18,
        [2, 3, 1],
    ),
}


@pytest.mark.parametrize("name", OLDER_OPSETS)
def test_common_onnx_forms_import_and_match_onnxruntime(name, run_onnx):
    nodes, opset, out_shape = OLDER_OPSETS[name]
    model = _model(nodes, [_float("X", [2, 3, 4])], [_float("Y", out_shape)], opset)
    graph, outputs = import_model(model)
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_allclose(gk.compile(graph, outputs)(X=x)["Y"], run_onnx(model, {"X": x})["Y"], rtol=1e-5)


def test_import_reads_a_file_path(tmp_path):
    with gk.Graph() as g:
        out = gk.tanh(gk.input("x", (2,)))
    export(g, {"y": out}, path=tmp_path / "m.onnx")
    graph, outputs = import_model(tmp_path / "m.onnx")
    assert list(outputs) == ["y"] and graph.by_name("x").op == "input"
