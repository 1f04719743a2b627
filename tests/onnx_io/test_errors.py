"""ONNX errors: gradkiln errors with clear messages, never raw protobuf tracebacks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import gradkiln as gk
from gradkiln.onnx_io import export, import_model
from gradkiln.onnx_io.export_rules import EXPORTERS


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(nodes, opset=18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [_float("X", [2, 2])], [_float("Y", [2, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_every_unsupported_op_is_listed_at_once():
    nodes = [
        helper.make_node("Unique", ["X"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("GlobalLpPool", ["b"], ["c"]),
        helper.make_node("Unique", ["c"], ["Y"]),
    ]
    graph = helper.make_graph(nodes, "m", [_float("X", [1, 2, 2, 2])], [_float("Y", [1, 2, 1, 1])])
    with pytest.raises(gk.UnsupportedOpError) as info:
        import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    message = str(info.value)
    assert "Unique (opset 18)" in message and "GlobalLpPool (opset 18)" in message and "Relu" not in message


def test_garbage_bytes_are_an_onnx_error(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\xffnot a model at all" * 10)
    with pytest.raises(gk.ONNXError, match=r"garbage\.onnx"):
        import_model(path)


def test_a_truncated_file_is_an_onnx_error(tmp_path):
    with gk.Graph() as g:
        out = gk.relu(gk.input("x", (4,)) * gk.param("w", np.ones(4, "float32")))
    data = export(g, out).SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(gk.ONNXError, match=r"truncated\.onnx"):
        import_model(path)


def test_a_missing_file_is_an_onnx_error(tmp_path):
    with pytest.raises(gk.ONNXError, match="cannot read"):
        import_model(tmp_path / "nope.onnx")


def test_a_dangling_input_name_is_an_onnx_error():
    model = _model([helper.make_node("Relu", ["nowhere"], ["Y"])])
    with pytest.raises(gk.ONNXError, match="nowhere"):
        import_model(model)


def test_an_op_without_an_exporter_names_the_node(monkeypatch):
    with gk.Graph() as g:
        out = gk.emit("tanh", gk.input("x", (3,)), name="activation")
    monkeypatch.delitem(EXPORTERS, "tanh")
    with pytest.raises(gk.UnsupportedOpError, match=r"%activation.*f32\[3\]"):
        export(g, out)


def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    with gk.Graph() as g:
        out = gk.tanh(gk.input("x", (3,)))
    path = tmp_path / "model.onnx"
    export(g, out, path=path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("gradkiln.atomic.os.replace", broken)
    with pytest.raises(OSError, match="disk full"):
        export(g, gk.exp(out), path=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_an_export_that_fails_writes_nothing(tmp_path, monkeypatch):
    with gk.Graph() as g:
        out = gk.tanh(gk.input("x", (3,)))
    monkeypatch.delitem(EXPORTERS, "tanh")
    with pytest.raises(gk.UnsupportedOpError):
        export(g, out, path=tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_an_opset_older_than_the_exporter_writes_is_refused():
    with gk.Graph() as g:
        out = gk.tanh(gk.input("x", (3,)))
    with pytest.raises(gk.ONNXError, match="opset 13"):
        export(g, out, opset=13)


def test_ops_of_other_domains_are_listed_with_their_domain():
    node = helper.make_node("Fancy", ["X"], ["Y"], domain="com.example")
    graph = helper.make_graph([node], "m", [_float("X", [2, 2])], [_float("Y", [2, 2])])
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.example", 3)]
    model = helper.make_model(graph, opset_imports=opsets)
    with pytest.raises(gk.UnsupportedOpError, match=r"com\.example\.Fancy \(opset 3\)"):
        import_model(model)
