"""Shape arithmetic over symbolic dims at import (onnx_io/shape_rules.py): the patterns torch's
exporters write for `expand(batch, -1, -1)`, `arange(seq)` and causal masks import with the dims
as sympy expressions in the graph's types, and compute what onnxruntime computes at every size."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from onnx import helper as oh

import gradkiln as gk
from gradkiln.graph import ONNXError, ShapeError, symbol

N, S = symbol("N"), symbol("S")


def _model(nodes, inputs, outputs, inits=()):
    graph = oh.make_graph(nodes, "g", inputs, outputs, list(inits))
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _ints(name, values):
    return oh.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _scalar(name, value, dtype=TensorProto.INT64):
    return oh.make_tensor(name, dtype, [], [value])


def _expand_like_torch():
    """`cls.expand(x.shape[0], -1, -1)` as the TorchScript exporter writes it: the -1s resolved by
    Where(Equal(shape, -1), ones, shape), so the shape goes through a comparison with symbolic dims."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        oh.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        oh.make_node("Concat", ["batch1", "minus1", "minus1"], ["wanted"], axis=0),
        oh.make_node("Equal", ["wanted", "minus1"], ["unknown"]),
        oh.make_node("ConstantOfShape", ["three"], ["ones"], value=_ints("one", [1])),
        oh.make_node("Where", ["unknown", "ones", "wanted"], ["target"]),
        oh.make_node("Expand", ["cls", "target"], ["y"]),
    ]
    cls = oh.make_tensor("cls", TensorProto.FLOAT, [1, 1, 4], [0.5, -1.0, 2.0, 3.0])
    inits = [_scalar("zero", 0), _ints("axes0", [0]), _ints("minus1", [-1]), _ints("three", [3]), cls]
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    return _model(nodes, [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 4])], inits)


def _range(start: int, delta: int):
    """Range(start, S, delta) over the second dim of x, added to a slice of x to use it."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "one"], ["seq"], axis=0),
        oh.make_node("Range", ["start", "seq", "delta"], ["y"]),
    ]
    inits = [_scalar("one", 1), _scalar("start", start), _scalar("delta", delta)]
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])
    return _model(nodes, [x], [oh.make_tensor_value_info("y", TensorProto.INT64, ["L"])], inits)


def _trilu(upper: int, k: int):
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", "S"])
    node = oh.make_node("Trilu", ["x", "k"], ["y"], upper=upper)
    return _model([node], [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", "S"])], [_scalar("k", k)])


def test_expand_to_a_shape_computed_from_the_batch_keeps_the_batch_symbolic(run_onnx):
    model = _expand_like_torch()
    graph, outputs = gk.onnx_io.import_model(model)
    assert outputs["y"].shape == (N, 1, 4)
    run = gk.compile(graph, outputs)
    for batch in (1, 5):
        x = np.zeros((batch, 3), np.float32)
        np.testing.assert_array_equal(run(x=x)["y"], run_onnx(model, {"x": x})["y"])


@pytest.mark.parametrize(("start", "delta"), [(0, 1), (1, 2), (3, 1)])
def test_range_over_the_sequence_length_is_a_ramp_of_symbolic_length(run_onnx, start, delta):
    model = _range(start, delta)
    graph, outputs = gk.onnx_io.import_model(model)
    length = outputs["y"].shape[0]
    assert length.free_symbols == {S}
    run = gk.compile(graph, outputs)
    for seq in (0, 1, 6, 7):
        x = np.zeros((2, seq), np.float32)
        np.testing.assert_array_equal(run(x=x)["y"], run_onnx(model, {"x": x})["y"])


@pytest.mark.parametrize(("upper", "k"), [(1, 0), (0, 0), (1, 1), (0, -2)])
def test_trilu_over_symbolic_dims_masks_at_run_time(run_onnx, upper, k):
    model = _trilu(upper, k)
    graph, outputs = gk.onnx_io.import_model(model)
    assert outputs["y"].shape == (N, S, S)
    run = gk.compile(graph, outputs)
    for seq in (1, 4):
        x = np.random.default_rng(seq).standard_normal((2, seq, seq)).astype(np.float32)
        np.testing.assert_array_equal(run(x=x)["y"], run_onnx(model, {"x": x})["y"])


@pytest.mark.slow
def test_one_llvm_compile_runs_the_shape_arithmetic_at_every_size(run_onnx):
    """The ramp (an exclusive running sum of ones) and the mask lower to TVM with the sizes as
    variables: one compile, two sequence lengths."""
    ramp, mask = _range(1, 2), _trilu(0, 0)
    for model in (ramp, mask):
        graph, outputs = gk.onnx_io.import_model(model)
        run = gk.compile(graph, outputs, "llvm")
        for seq in (3, 8):
            x = np.random.default_rng(seq).standard_normal((2, seq, seq)[: len(graph.inputs()[0].types[0].shape)])
            x = x.astype(np.float32)
            np.testing.assert_array_equal(run(x=x)["y"], run_onnx(model, {"x": x})["y"])


def test_a_comparison_sympy_cannot_decide_stays_a_run_time_value_and_a_shape_from_it_is_refused():
    """Equal(N, 1) depends on the batch: it is computed at run time, and an Expand to a shape chosen
    by it cannot have a type at import; the refusal names the graph input it depends on."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Equal", ["shape", "ones"], ["single"]),
        oh.make_node("Where", ["single", "twos", "shape"], ["target"]),
        oh.make_node("Expand", ["x", "target"], ["y"]),
    ]
    inits = [_ints("ones", [1, 1]), _ints("twos", [2, 2])]
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    model = _model(nodes, [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B"])], inits)
    with pytest.raises(ONNXError, match=r"Expand node.*must be known at import time.*graph inputs \['x'\]"):
        gk.onnx_io.import_model(model)


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_a_known_table_cut_to_a_symbolic_length_is_checked_at_each_call(target):
    """Slice(table, 0, S) of a 4-row table types as S rows (the export's promise that S <= 4), and
    every backend refuses a call whose S breaks it, naming the slice."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Slice", ["shape", "one", "two"], ["seq"]),
        oh.make_node("Slice", ["table", "zero", "seq", "zero"], ["rows"]),
        oh.make_node("Add", ["x", "rows"], ["y"]),
    ]
    table = oh.make_tensor("table", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    inits = [_ints("zero", [0]), _ints("one", [1]), _ints("two", [2]), table]
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])
    model = _model(nodes, [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S"])], inits)
    graph, outputs = gk.onnx_io.import_model(model)
    assert outputs["y"].shape == (N, S)
    run = gk.compile(graph, outputs, target)
    np.testing.assert_array_equal(run(x=np.zeros((2, 3), np.float32))["y"], [[1.0, 2.0, 3.0]] * 2)
    with pytest.raises(ShapeError, match=r"slice node .* up to S = 5 at N=2, S=5, past its 4 elements"):
        run(x=np.zeros((2, 5), np.float32))


def test_float_arithmetic_on_static_dims_cast_to_int_is_shape_data(run_onnx):
    """MobileViT's `int(math.ceil(w / p))` traces as Cast, Div, Ceil, Cast over a static dim: the
    integer is evaluated at import, so the Reshape it feeds keeps the batch symbolic."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        oh.make_node("Gather", ["shape", "one"], ["width"], axis=0),
        oh.make_node("Cast", ["width"], ["wide"], to=TensorProto.FLOAT),
        oh.make_node("Constant", [], ["four"], value_float=4.0),  # an initializer would be a param
        oh.make_node("Div", ["wide", "four"], ["ratio"]),
        oh.make_node("Ceil", ["ratio"], ["up"]),
        oh.make_node("Cast", ["up"], ["rows"], to=TensorProto.INT64),
        oh.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        oh.make_node("Unsqueeze", ["rows", "axes0"], ["rows1"]),
        oh.make_node("Concat", ["batch1", "rows1", "minus1"], ["target"], axis=0),
        oh.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [_scalar("zero", 0), _scalar("one", 1), _ints("axes0", [0]), _ints("minus1", [-1])]
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    model = _model(nodes, [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])], inits)
    graph, outputs = gk.onnx_io.import_model(model)
    assert outputs["y"].shape == (N, 2, 3)
    run = gk.compile(graph, outputs)
    for batch in (1, 4):
        x = np.arange(batch * 6, dtype=np.float32).reshape(batch, 6)
        np.testing.assert_array_equal(run(x=x)["y"], run_onnx(model, {"x": x})["y"])
