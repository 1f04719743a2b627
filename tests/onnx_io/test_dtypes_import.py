"""ONNX's narrow element types (bfloat16, the float8s, float4e2m1, int4/uint4, int2/uint2) import
as float32, int8 or uint8 stand-ins, and Cast to them rounds or wraps as ONNX says. Oracles: ml_dtypes' conversions
(numpy), onnx's reference evaluator and onnxruntime."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, reference

import gradkiln as gk
from gradkiln.graph import ONNXError
from gradkiln.onnx_io.backend import GradkilnBackend

NARROW_FLOATS = {
    TensorProto.BFLOAT16: ml_dtypes.bfloat16,
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
    TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
    TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
    TensorProto.FLOAT4E2M1: ml_dtypes.float4_e2m1fn,
}
SATURATING = (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2fnuz)
NARROW_INTS = {
    TensorProto.INT4: ml_dtypes.int4,
    TensorProto.UINT4: ml_dtypes.uint4,
    TensorProto.INT2: ml_dtypes.int2,
    TensorProto.UINT2: ml_dtypes.uint2,
}
RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=21):
    graph = helper.make_graph(nodes, "narrow", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _every_exponent(count: int = 20000) -> np.ndarray:
    """float32 values from random bit patterns (every exponent, subnormals, inf and NaN), plus
    ties and the edges of the float8 ranges."""
    bits = RNG.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = [0.0, -0.0, 1.0, 1.0078125, 1.00390625, 1.01171875, 448, 464, 465, 480, 57344, 61440, 61441, 2.0**-9]
    edges += [0.25, 0.75, 1.25, 5, 6, 7, 240, 248, 2.0**-10, 2.0**-17]
    return np.concatenate([bits, np.float32(edges), -np.float32(edges), np.float32([np.inf, -np.inf, np.nan])])


def _cast_model(to: int, saturate: int | None = None):
    attrs = {} if saturate is None else {"saturate": saturate}
    cast = helper.make_node("Cast", ["x"], ["y"], to=to, **attrs)
    return _model(
        [cast], [helper.make_tensor_value_info("x", 1, ["N"])], [helper.make_tensor_value_info("y", to, ["N"])]
    )


def _expected_float_cast(x: np.ndarray, numpy_type, saturate: bool) -> np.ndarray:
    limit = float(ml_dtypes.finfo(numpy_type).max)
    if saturate and numpy_type in SATURATING:
        x = np.clip(x, -limit, limit)
    return x.astype(numpy_type).astype(np.float32)


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("to", list(NARROW_FLOATS), ids=TensorProto.DataType.Name)
def test_cast_of_a_tensor_rounds_to_the_narrow_float(to, saturate):
    x = _every_exponent()
    graph, outputs = gk.onnx_io.import_model(_cast_model(to, saturate))
    assert outputs["y"].dtype == "float32"
    with np.errstate(all="ignore"):
        got = gk.compile(graph, outputs)(x=x)["y"]
        expected = _expected_float_cast(x, NARROW_FLOATS[to], bool(saturate))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("to", list(NARROW_FLOATS), ids=TensorProto.DataType.Name)
def test_cast_of_a_constant_rounds_at_import_time_as_onnx_reference(to):
    x = _every_exponent(2000)
    x = x[np.isfinite(x)]
    constant = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(x, "c"))
    model = _model(
        [constant, helper.make_node("Cast", ["c"], ["y"], to=to)],
        [],
        [helper.make_tensor_value_info("y", to, [x.size])],
    )
    graph, outputs = gk.onnx_io.import_model(model)
    assert not graph.inputs()
    (expected,) = reference.ReferenceEvaluator(model).run(None, {})
    np.testing.assert_array_equal(gk.compile(graph, outputs)()["y"], expected.astype(np.float32))


@pytest.mark.parametrize("to", list(NARROW_INTS), ids=TensorProto.DataType.Name)
def test_cast_to_int4_and_int2_truncates_and_wraps_as_onnx_reference(to):
    x = np.float32([0, 2.5, 3.5, -9.4, 7.6, 20, 300, -1e6, 15.9, -0.5, 8, -8])
    model = _cast_model(to)
    (expected,) = reference.ReferenceEvaluator(model).run(None, {"x": x})
    graph, outputs = gk.onnx_io.import_model(model)
    assert outputs["y"].dtype == _stand_in(to)
    np.testing.assert_array_equal(gk.compile(graph, outputs)(x=x)["y"], expected.astype(_stand_in(to)))


def _stand_in(code: int) -> str:
    if code in NARROW_INTS:
        return "int8" if ml_dtypes.iinfo(NARROW_INTS[code]).min < 0 else "uint8"
    return "float32"


def _narrow_values(code: int):
    numpy_type = {**NARROW_FLOATS, **NARROW_INTS}[code]
    values = RNG.integers(0, 4, 12) if code in NARROW_INTS else RNG.standard_normal(12)
    return values.astype(numpy_type)


def _to_float(name: str, out: str):
    return helper.make_node("Cast", [name], [out], to=TensorProto.FLOAT)


@pytest.mark.parametrize("code", [*NARROW_FLOATS, *NARROW_INTS], ids=TensorProto.DataType.Name)
def test_narrow_initializers_import_as_onnxruntime_reads_them(code, run_onnx_or_reference):
    """y = x + Cast(w, float) with w an initializer of the narrow type."""
    w = _narrow_values(code)
    model = _model(
        [_to_float("w", "wf"), helper.make_node("Add", ["x", "wf"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [12])],
        [numpy_helper.from_array(w, "w")],
    )
    x = RNG.standard_normal(12).astype(np.float32)
    got = gk.compile(*gk.onnx_io.import_model(model))(x=x)["y"]
    np.testing.assert_array_equal(got, x + w.astype(np.float32))
    np.testing.assert_array_equal(got, run_onnx_or_reference(model, {"x": x})["y"])


@pytest.mark.parametrize("code", [*NARROW_FLOATS, *NARROW_INTS], ids=TensorProto.DataType.Name)
def test_narrow_graph_inputs_take_ml_dtypes_arrays(code):
    """y = Cast(x, float) * 2 with x a graph input of the narrow type, fed as an ml_dtypes array."""
    model = _model(
        [_to_float("x", "xf"), helper.make_node("Add", ["xf", "xf"], ["y"])],
        [helper.make_tensor_value_info("x", code, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
    )
    graph, outputs = gk.onnx_io.import_model(model)
    assert graph.by_name("x").types[0].dtype == _stand_in(code)
    x = _narrow_values(code)
    np.testing.assert_array_equal(gk.compile(graph, outputs)(x=x)["y"], 2 * x.astype(np.float32))


def test_the_backend_returns_the_declared_narrow_type():
    x = RNG.standard_normal(64).astype(np.float32)
    (y,) = GradkilnBackend.prepare(_cast_model(TensorProto.FLOAT8E4M3FN)).run([x])
    assert y.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(y, x.astype(ml_dtypes.float8_e4m3fn))


def test_other_element_types_still_raise_naming_the_input():
    model = _model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT8E8M0, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT8E8M0, [2])],
    )
    with pytest.raises(ONNXError, match=r"graph input 'x': element type FLOAT8E8M0 is not supported.*bfloat16"):
        gk.onnx_io.import_model(model)


@pytest.mark.parametrize("to", list(NARROW_FLOATS), ids=TensorProto.DataType.Name)
def test_castlike_to_a_narrow_input_rounds_as_cast_does(to):
    cast_like = helper.make_node("CastLike", ["x", "like"], ["y"])
    inputs = [helper.make_tensor_value_info("x", 1, ["N"]), helper.make_tensor_value_info("like", to, [1])]
    model = _model([cast_like], inputs, [helper.make_tensor_value_info("y", to, ["N"])])
    x = _every_exponent(2000)
    like = np.zeros(1, NARROW_FLOATS[to])
    with np.errstate(all="ignore"):
        got = gk.compile(*gk.onnx_io.import_model(model))(x=x, like=like)["y"]
        np.testing.assert_array_equal(got, _expected_float_cast(x, NARROW_FLOATS[to], saturate=True))
