"""ONNX's quantization ops and inverse hyperbolic functions import as compositions of gradkiln ops.
Oracles: onnx's reference evaluator (quantization) on random data beyond the backend suite's
cases (per-axis and blocked scales, per-row zero points, bias), and numpy (asinh, acosh, atanh)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, reference

import gradkiln as gk

RNG = np.random.default_rng(0)


def _model(node, infos, out_types: list[int], opset: int, shapes=None):
    """A one-node model; without `shapes` its outputs have no shape (enough for the reference)."""
    shapes = shapes or [None] * len(out_types)
    outs = [helper.make_tensor_value_info(name, t, s) for name, t, s in zip(node.output, out_types, shapes)]
    return helper.make_model(
        helper.make_graph([node], "q", infos, outs), opset_imports=[helper.make_opsetid("", opset)]
    )


def _check(node, inputs: dict[str, np.ndarray], out_types: list[int], opset: int = 21) -> None:
    """Import a one-node model and compare every output with onnx's reference evaluator."""
    infos = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()
    ]
    expected = reference.ReferenceEvaluator(_model(node, infos, out_types, opset)).run(None, inputs)
    model = _model(node, infos, out_types, opset, [e.shape for e in expected])
    got = gk.compile(*gk.onnx_io.import_model(model))(**inputs)
    for name, want in zip(node.output, expected):
        assert got[name].dtype == want.dtype, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)


@pytest.mark.parametrize("zero_type", [np.uint8, np.int8, np.int16])
def test_quantize_per_axis_rounds_half_to_even_and_saturates(zero_type):
    x = (RNG.standard_normal((2, 3, 4)) * 200).astype(np.float32)
    x[0, 0, :2] = [0.5, 2.5]  # ties
    scale = np.float32([0.5, 1.0, 2.0])
    zero = np.array([0, 3, -2 if zero_type != np.uint8 else 7], zero_type)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    _check(node, {"x": x, "s": scale, "z": zero}, [helper.np_dtype_to_tensor_dtype(np.dtype(zero_type))])


def test_blocked_quantize_and_dequantize_cut_the_last_block():
    x = (RNG.standard_normal((3, 5)) * 50).astype(np.float32)
    scale = RNG.uniform(0.5, 2, (3, 3)).astype(np.float32)
    zero = RNG.integers(-5, 5, (3, 3)).astype(np.int8)
    quant = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1, block_size=2)
    _check(quant, {"x": x, "s": scale, "z": zero}, [TensorProto.INT8])
    q = RNG.integers(-128, 127, (3, 5)).astype(np.int8)
    dequant = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, block_size=2)
    _check(dequant, {"q": q, "s": scale, "z": zero}, [TensorProto.FLOAT])


def test_dynamic_quantize_gives_the_scale_and_zero_point():
    x = RNG.uniform(-3, 7, (4, 5)).astype(np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zero"])
    _check(node, {"x": x}, [TensorProto.UINT8, TensorProto.FLOAT, TensorProto.UINT8], opset=11)


def test_matmul_integer_with_per_row_and_per_column_zero_points():
    """numpy as the oracle: onnx's reference subtracts a per-row zero point along the wrong axis."""
    a = RNG.integers(0, 255, (2, 3, 4)).astype(np.uint8)
    b = RNG.integers(0, 255, (4, 5)).astype(np.uint8)
    a_zero, b_zero = RNG.integers(0, 255, 3).astype(np.uint8), RNG.integers(0, 255, 5).astype(np.uint8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    inputs = {"a": a, "b": b, "az": a_zero, "bz": b_zero}
    infos = [helper.make_tensor_value_info(k, TensorProto.UINT8, v.shape) for k, v in inputs.items()]
    model = _model(node, infos, [TensorProto.INT32], 10, [(2, 3, 5)])
    got = gk.compile(*gk.onnx_io.import_model(model))(**inputs)["y"]
    expected = (a.astype(np.int32) - a_zero[:, None]) @ (b.astype(np.int32) - b_zero)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_qlinear_matmul_requantizes():
    a = RNG.integers(-128, 127, (3, 4)).astype(np.int8)
    b = RNG.integers(-128, 127, (4, 2)).astype(np.int8)
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    values = [a, np.float32(0.05), np.int8(3), b, np.float32(0.02), np.int8(-4), np.float32(0.1), np.int8(5)]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    _check(node, dict(zip(names, values)), [TensorProto.INT8])


def test_qlinear_conv_with_per_channel_weight_scales_and_bias():
    x = RNG.integers(0, 255, (1, 2, 5, 5)).astype(np.uint8)
    w = RNG.integers(-100, 100, (3, 2, 3, 3)).astype(np.int8)
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "bias"]
    values = [x, np.float32(0.02), np.uint8(120), w, np.float32([0.01, 0.02, 0.03]), np.int8(0), np.float32(0.5)]
    values += [np.uint8(100), RNG.integers(-500, 500, 3).astype(np.int32)]
    node = helper.make_node("QLinearConv", names, ["y"], pads=[1, 1, 1, 1])
    _check(node, dict(zip(names, values)), [TensorProto.UINT8], opset=10)


def test_conv_integer_subtracts_the_zero_points():
    x = RNG.integers(0, 255, (1, 1, 4, 4)).astype(np.uint8)
    w = RNG.integers(0, 255, (2, 1, 2, 2)).astype(np.uint8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"])
    inputs = {"x": x, "w": w, "xz": np.uint8(7), "wz": np.uint8([3, 9])}
    _check(node, inputs, [TensorProto.INT32], opset=10)


@pytest.mark.parametrize(
    "op, fn, values",
    [
        ("Asinh", np.arcsinh, [0, -0.0, 1e-30, -1e-4, 0.5, -3, 1e5, -1e18, 3e37, np.inf]),
        ("Acosh", np.arccosh, [1, 1 + 1e-6, 1.5, 10, 1e18, 3e37, 0.5]),
        ("Atanh", np.arctanh, [0, 1e-30, -1e-4, 0.5, -0.999, 1, 2]),
    ],
)
def test_inverse_hyperbolic_functions_match_numpy(op, fn, values):
    x = np.float32(values)
    node = helper.make_node(op, ["x"], ["y"])
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [x.size]) for n in "xy"]
    model = helper.make_model(
        helper.make_graph([node], "h", io[:1], io[1:]), opset_imports=[helper.make_opsetid("", 22)]
    )
    with np.errstate(all="ignore"):
        got = gk.compile(*gk.onnx_io.import_model(model))(x=x)["y"]
        np.testing.assert_allclose(got, fn(x), rtol=2e-7, atol=0)
