"""Models whose tensors live in external data files (`onnx.save(..., save_as_external_data=True)`)
import from a path; onnxruntime, loading the same files, is the oracle."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import gradkiln as gk
from gradkiln.graph import ONNXError

RNG = np.random.default_rng(0)
W = RNG.standard_normal((16, 8)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)


def _model() -> onnx.ModelProto:
    """y = x @ w + b with w a constant initializer and b a param (an input with an initializer)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]), helper.make_tensor_value_info("b", 1, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _save_external(tmp_path, location: str = "weights.bin") -> str:
    path = os.fspath(tmp_path / "model.onnx")
    onnx.save(_model(), path, save_as_external_data=True, location=location, size_threshold=0)
    assert os.path.getsize(tmp_path / location) >= W.nbytes + B.nbytes  # the weights left the model file
    return path


def test_external_data_loads_from_the_models_folder(tmp_path, monkeypatch):
    path = _save_external(tmp_path)
    monkeypatch.chdir(os.path.dirname(os.__file__))  # not the model's folder
    graph, outputs = gk.onnx_io.import_model(path)
    assert graph.by_name("b").attrs["value"] == pytest.approx(B)
    x = RNG.standard_normal((3, 16)).astype(np.float32)
    got = gk.compile(graph, outputs)(x=x)["y"]
    (expected,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, x @ W + B, rtol=1e-5, atol=1e-5)


def test_external_data_in_a_subfolder(tmp_path):
    (tmp_path / "data").mkdir()
    graph, outputs = gk.onnx_io.import_model(_save_external(tmp_path, "data/weights.bin"))
    x = np.ones((2, 16), np.float32)
    np.testing.assert_allclose(gk.compile(graph, outputs)(x=x)["y"], x @ W + B, rtol=1e-5)


def test_a_missing_external_file_names_the_tensor_and_the_file(tmp_path):
    path = _save_external(tmp_path)
    os.remove(tmp_path / "weights.bin")
    with pytest.raises(
        ONNXError, match=r"tensor 'w' keeps its data in the external file 'weights.bin'.*does not exist"
    ):
        gk.onnx_io.import_model(path)


def test_a_modelproto_without_its_external_data_says_to_pass_the_path(tmp_path):
    path = _save_external(tmp_path)
    unloaded = onnx.load(path, load_external_data=False)
    with pytest.raises(ONNXError, match=r"tensor 'w' .*external file 'weights.bin'.*pass the model's path"):
        gk.onnx_io.import_model(unloaded)
    graph, outputs = gk.onnx_io.import_model(onnx.load(path))  # onnx.load reads the data itself
    np.testing.assert_allclose(gk.compile(graph, outputs)(x=np.ones((1, 16), np.float32))["y"][0], W.sum(0) + B)


def test_training_graph_reads_external_data(tmp_path):
    step = gk.onnx_io.training_graph(_save_external(tmp_path), loss="mse")
    assert step.params == ["b"]
    x, labels = np.ones((2, 16), np.float32), np.zeros((2, 8), np.float32)
    out = step.compile()(x=x, labels=labels)
    np.testing.assert_allclose(out["grad.b"], 2 * (x @ W + B).sum(0) / 16, rtol=1e-5)  # d mean((y - 0)^2) / db


@pytest.mark.slow
def test_a_model_over_2_gib_loads_from_its_path(tmp_path):
    """A 2 GiB + 1 MiB float32 initializer in a sparse external file (protobuf caps a serialized
    model at 2 GiB, so only external data gets there); about 20 s and 4.5 GB of memory."""
    n = (2**31 + 2**20) // 4
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[n], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": "w.bin", "offset": "0", "length": str(4 * n)}.items():
        w.external_data.add(key=key, value=value)
    with open(tmp_path / "w.bin", "wb") as f:
        f.truncate(4 * n)  # zeros, without writing them
        f.seek(4 * (n - 1))
        f.write(np.float32(7).tobytes())
    ends = helper.make_tensor("ends", TensorProto.INT64, [2], [0, n - 1])
    graph = helper.make_graph(
        [helper.make_node("Gather", ["w", "ends"], ["y"])],
        "big",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [w, ends],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "big.onnx")
    graph, outputs = gk.onnx_io.import_model(tmp_path / "big.onnx")
    np.testing.assert_array_equal(gk.compile(graph, outputs)()["y"], [0, 7])
