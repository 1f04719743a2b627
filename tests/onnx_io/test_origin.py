"""Names back to the model: each node an import makes remembers the ONNX node it was made for
(`Node.origin`; torch's exporter names ONNX nodes by module path), so anomaly reports say which
model node produced a NaN and drawings cluster nodes by module."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from onnx import helper as oh

import gradkiln as gk
from gradkiln.viz.scopes import assign_scopes


def _model():
    """/encoder/layer.0/Log(x) scaled by /encoder/layer.0/scale/Mul, then summed by the unnamed ReduceSum."""
    nodes = [
        oh.make_node("Log", ["x"], ["logged"], name="/encoder/layer.0/Log"),
        oh.make_node("Mul", ["logged", "w"], ["scaled"], name="/encoder/layer.0/scale/Mul"),
        oh.make_node("ReduceSum", ["scaled"], ["y"], keepdims=0),
    ]
    w = oh.make_tensor("encoder.layer.0.scale.weight", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    nodes[1].input[1] = w.name
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    graph = oh.make_graph(nodes, "g", [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, [])], [w])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_imported_nodes_carry_the_onnx_node_they_came_from():
    graph, _ = gk.onnx_io.import_model(_model())
    (log,) = graph.nodes_of("log")
    (mul,) = graph.nodes_of("mul")
    assert log.origin == "/encoder/layer.0/Log" and mul.origin == "/encoder/layer.0/scale/Mul"
    assert log.built_at == "ONNX node '/encoder/layer.0/Log'"
    assert graph.nodes_of("sum")[0].origin is None  # the ONNX node has no name
    assert graph.copy().node(log.id).origin == log.origin


def test_drawings_cluster_imported_nodes_by_module_path():
    graph, _ = gk.onnx_io.import_model(_model())
    scopes = assign_scopes(graph, graph.topological_order())
    (log,) = graph.nodes_of("log")
    (mul,) = graph.nodes_of("mul")
    assert scopes[log.id] == ("encoder", "layer", "0")
    assert scopes[mul.id] == ("encoder", "layer", "0", "scale")


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_an_anomaly_names_the_onnx_node_that_produced_it(target):
    graph, outputs = gk.onnx_io.import_model(_model())
    run = gk.compile(graph, outputs, target, detect_anomaly=True)
    with pytest.raises(gk.AnomalyError, match=r"log\(\.\.\.\) \(forward\) produced 1 NaN.*\n  built at ONNX node "
                       r"'/encoder/layer.0/Log'"):  # fmt: skip
        run(x=np.array([[1.0, -1.0, 2.0]], np.float32))
