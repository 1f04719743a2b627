"""Export: every op sample and gradient graph checks with full_check and matches onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import gradkiln as gk
from gradkiln.graph import symbol
from gradkiln.onnx_io import OPSET, export
from gradkiln.testing import op_samples

SAMPLES = op_samples("float32")


def _close(got: dict, want: dict) -> None:
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def _batches(sample) -> list[int | None]:
    return [3, 7] if sample.shapes else [None]


def _check(graph, outputs, feeds_list, run_onnx) -> onnx.ModelProto:
    model = export(graph, outputs)
    onnx.checker.check_model(model, full_check=True)
    for feeds in feeds_list:
        _close(run_onnx(model, feeds), gk.compile(graph, outputs, target="numpy")(**feeds))
    return model


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_op_sample_matches_onnxruntime(sample, run_onnx):
    graph, _, out = sample.graph()
    feeds = [sample.feeds_at(b) if b else sample.feeds for b in _batches(sample)]
    model = _check(graph, {"out": out}, feeds, run_onnx)
    assert model.opset_import[0].version == OPSET
    if sample.shapes:
        params = {d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim}
        assert "N" in params


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.wrt], ids=lambda s: s.name)
def test_gradient_of_op_sample_matches_onnxruntime(sample, run_onnx):
    graph, outputs, _ = sample.with_gradients()
    _check(graph, outputs, [sample.with_gradients(b)[2] for b in _batches(sample)], run_onnx)


def _mlp_with_gradients():
    rng = np.random.default_rng(0)
    with gk.Graph("mlp") as g:
        x, y = gk.input("x", ("N", 6)), gk.input("y", ("N",), "int64")
        w1, b1 = gk.param("w1", rng.normal(size=(6, 8)).astype("float32")), gk.param("b1", np.zeros(8, "float32"))
        w2, b2 = gk.param("w2", rng.normal(size=(8, 3)).astype("float32")), gk.param("b2", np.zeros(3, "float32"))
        loss = gk.cross_entropy(gk.relu(x @ w1 + b1) @ w2 + b2, y)
        grads = pytest.importorskip("gradkiln.symbolic").grad(loss, [w1, b1, w2, b2])
    outputs = {"loss": loss} | {f"d_{p}": t for p, t in zip(("w1", "b1", "w2", "b2"), grads)}
    return g, outputs


@pytest.mark.parametrize("batch", [5, 9])
def test_mlp_cross_entropy_gradients_match_onnxruntime(batch, run_onnx):
    graph, outputs = _mlp_with_gradients()
    rng = np.random.default_rng(batch)
    feeds = {"x": rng.normal(size=(batch, 6)).astype("float32"), "y": rng.integers(0, 3, batch)}
    _check(graph, outputs, [feeds], run_onnx)


def _symbolic(build):
    with gk.Graph("symbolic") as g:
        x = gk.input("x", ("N", 3))
        out = build(x)
    return g, out


SYMBOLIC_ATTRIBUTES = {
    "reshape_to_N_times_3": lambda x: gk.reshape(x, (-1,)) * 2.0,
    "broadcast_to_N_2_3": lambda x: gk.broadcast_to(gk.expand_dims(x, 1), ("N", 2, 3)),
    "slice_stop_N_minus_1": lambda x: x[1:],
    "pad_high_depends_on_N": lambda x: gk.pad(x, (0, 1), (symbol("N") - 1, 0)),
    "pad_after_slice_over_N": lambda x: gk.pad(x[1:], (0, 0), (1, 0)),
    "interior_pad_over_N": lambda x: gk.pad(x, (1, 0), (0, 2), (2, 1)),
    "size_over_N": lambda x: gk.sum(x) / gk.size(x, 0),
    "mean_over_N": lambda x: gk.mean(x, 0),
}


@pytest.mark.parametrize("name", SYMBOLIC_ATTRIBUTES)
@pytest.mark.parametrize("batch", [2, 5])
def test_symbolic_dims_in_attributes_are_computed_at_run_time(name, batch, run_onnx):
    graph, out = _symbolic(SYMBOLIC_ATTRIBUTES[name])
    x = np.random.default_rng(batch).normal(size=(batch, 3)).astype("float32")
    model = _check(graph, {"out": out}, [{"x": x}], run_onnx)
    assert "Shape" in {n.op_type for n in model.graph.node} or name == "mean_over_N"


def test_each_symbol_is_read_from_the_inputs_once():
    graph, out = _symbolic(lambda x: gk.reshape(x, (-1,)) + gk.reshape(x * 2.0, (-1,)))
    model = export(graph, out)
    assert [n.op_type for n in model.graph.node].count("Shape") == 1


def test_params_are_inputs_with_initializers_and_can_be_fed(run_onnx):
    with gk.Graph() as g:
        x, w = gk.input("x", (2,)), gk.param("w", np.array([1.0, 2.0], "float32"))
        out = x * w
    model = export(g, out)
    assert {i.name for i in model.graph.input} == {"x", "w"}
    assert [t.name for t in model.graph.initializer] == ["w"]
    x = np.ones(2, "float32")
    assert run_onnx(model, {"x": x})[model.graph.output[0].name].tolist() == [1.0, 2.0]
    assert run_onnx(model, {"x": x, "w": 3 * x})[model.graph.output[0].name].tolist() == [3.0, 3.0]


def test_inputs_keep_their_names_when_a_helper_value_wanted_the_same(run_onnx):
    # dropout's export makes a mask value hinted "kept" before the input "kept" is reached
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        out = gk.dropout(x, 0.5, seed=1) + gk.input("kept", (3,))
    model = export(g, out)
    assert [i.name for i in model.graph.input] == ["x", "kept"]
    ones = np.ones(3, "float32")
    expected = gk.compile(g, out, target="numpy")(x=ones, kept=ones)
    np.testing.assert_array_equal(run_onnx(model, {"x": ones, "kept": ones})[model.graph.output[0].name], expected)


def test_values_are_named_after_nodes_and_dict_keys():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 2))
        h = gk.emit("relu", x, name="hidden")
    model = export(g, {"activation": h, "again": h})
    assert [o.name for o in model.graph.output] == ["activation", "again"]
    assert "hidden" in {v for n in model.graph.node for v in n.output}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 2)


def test_exported_model_is_written_atomically(tmp_path):
    graph, out = _symbolic(gk.relu)
    path = tmp_path / "model.onnx"
    model = export(graph, out, path=path, name="relu_model")
    assert onnx.load(path) == model
    assert model.graph.name == "relu_model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
