"""The bitwise ops (and, or, xor, not, left and right shifts) on every integer dtype, on the numpy
executor and TVM, exported and imported. Oracles: numpy's bitwise functions and onnx's reference
evaluator of BitShift (opset 28, which defines shifts by negative amounts or the bit width)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, reference

import gradkiln as gk
from gradkiln.graph import DTypeError, UnsupportedOpError
from gradkiln.graph.dtypes import INT_DTYPES

RNG = np.random.default_rng(0)


def _operands(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max, (4, 5), dtype=dtype, endpoint=True)
    bits = info.bits
    amount = np.array([0, 1, bits - 1, bits, bits + 3], dtype)  # past the width too
    if info.min < 0:
        amount[1] = -2
    return x, amount


def _shift_reference(x: np.ndarray, amount: np.ndarray, direction: str) -> np.ndarray:
    node = helper.make_node("BitShift", ["x", "s"], ["y"], direction=direction)
    code = helper.np_dtype_to_tensor_dtype(x.dtype)
    io = [helper.make_tensor_value_info(n, code, None) for n in "xsy"]
    model = helper.make_model(
        helper.make_graph([node], "s", io[:2], io[2:]), opset_imports=[helper.make_opsetid("", 28)]
    )
    return reference.ReferenceEvaluator(model).run(None, {"x": x, "s": amount})[0]


def _graph(dtype: str) -> tuple[gk.Graph, dict]:
    with gk.Graph() as g:
        x, s = gk.input("x", (4, 5), dtype), gk.input("s", (5,), dtype)
        outputs = {
            "and": gk.bitwise_and(x, s),
            "or": gk.bitwise_or(x, s),
            "xor": gk.bitwise_xor(x, s),
            "not": gk.bitwise_not(x),
            "left": gk.left_shift(x, s),
            "right": gk.right_shift(x, s),
        }
    return g, outputs


def _expected(x: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "and": x & s,
        "or": x | s,
        "xor": x ^ s,
        "not": ~x,
        "left": _shift_reference(x, s, "LEFT"),
        "right": _shift_reference(x, s, "RIGHT"),
    }


def _assert_same(got: dict, expected: dict) -> None:
    for key, want in expected.items():
        assert got[key].dtype == want.dtype, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_bitwise_ops_match_numpy_and_onnx_bitshift(dtype):
    graph, outputs = _graph(dtype)
    x, s = _operands(dtype)
    _assert_same(gk.compile(graph, outputs)(x=x, s=s), _expected(x, s))


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64"])
def test_tvm_guards_shifts_past_the_bit_width(dtype):
    graph, outputs = _graph(dtype)
    x, s = _operands(dtype)
    _assert_same(gk.compile(graph, outputs, target="llvm")(x=x, s=s), _expected(x, s))


def test_on_bool_they_are_the_logical_ops():
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    with gk.Graph() as g:
        x, y = gk.input("x", (4,), "bool"), gk.input("y", (4,), "bool")
        outputs = {"and": gk.bitwise_and(x, y), "or": gk.bitwise_or(x, y), "xor": gk.bitwise_xor(x, y)}
        outputs["not"] = gk.bitwise_not(x)
    expected = {"and": a & b, "or": a | b, "xor": a ^ b, "not": ~a}
    for target in ("numpy", "llvm"):
        _assert_same(gk.compile(g, outputs, target=target)(x=a, y=b), expected)
    model = gk.onnx_io.export(g, outputs)
    assert {n.op_type for n in model.graph.node} >= {"And", "Or", "Xor", "Not"}


@pytest.mark.parametrize("dtype", ["int16", "uint32"])
def test_export_at_opset_28_imports_back_to_the_same_ops(dtype):
    graph, outputs = _graph(dtype)
    model = gk.onnx_io.export(graph, outputs, opset=28)
    x, s = _operands(dtype)
    _assert_same(_run_reference(model, x, s), _expected(x, s))
    again, again_outputs = gk.onnx_io.import_model(model)
    assert sorted(n.op for n in again.nodes() if n.op != "input") == sorted(
        n.op for n in graph.nodes() if n.op != "input"
    )
    _assert_same(gk.compile(again, again_outputs)(x=x, s=s), _expected(x, s))


def _run_reference(model, x: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in model.graph.output]
    return dict(zip(names, reference.ReferenceEvaluator(model).run(None, {"x": x, "s": s})))


def test_signed_shifts_need_opset_28_to_export():
    graph, outputs = _graph("int32")
    with pytest.raises(
        UnsupportedOpError, match=r"left_shift.*BitShift takes int32 from opset 28; export with opset=28"
    ):
        gk.onnx_io.export(graph, {"left": outputs["left"]})


def test_floats_are_refused_naming_the_op():
    with gk.Graph():
        x = gk.input("x", (3,))
        with pytest.raises(DTypeError, match=r"bitwise_and takes integers or bools, got float32"):
            gk.bitwise_and(x, x)
        with pytest.raises(DTypeError, match=r"left_shift takes integers, got bool"):
            gk.left_shift(x > 0, x > 0)
