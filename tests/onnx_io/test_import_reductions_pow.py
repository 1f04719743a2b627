"""Integer Pow, ReduceMax/ReduceMin of bool and reductions over an empty axis import with ONNX's
semantics. Oracle: onnx's reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, reference

from gradkiln.onnx_io.backend import GradkilnBackend


def _check(node, inputs: dict[str, np.ndarray], opset: int = 18) -> None:
    infos = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()
    ]
    out = helper.make_tensor_value_info("y", 0, None)
    model = helper.make_model(
        helper.make_graph([node], "r", infos, [out]), opset_imports=[helper.make_opsetid("", opset)]
    )
    (expected,) = reference.ReferenceEvaluator(model).run(None, inputs)
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(expected.dtype), expected.shape)
    )
    (got,) = GradkilnBackend.prepare(model).run(inputs)  # axes given as an input: specialized on
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("exponent_dtype", [np.int64, np.float32])
def test_integer_pow_keeps_the_base_dtype(exponent_dtype):
    base = np.array([-3, -1, 0, 2, 7, 1000], np.int64)
    exponent = np.array([3, 4, 0, 20, 5, 5], exponent_dtype)
    _check(helper.make_node("Pow", ["x", "e"], ["y"]), {"x": base, "e": exponent})


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("shape", [(3, 4), (3, 0)])
def test_bool_max_is_any_and_min_is_all_also_over_no_elements(op, shape):
    x = np.random.default_rng(0).random(shape) > 0.5
    x[0] = True if shape[1] else x[0]
    axes = np.array([1], np.int64)
    _check(helper.make_node(op, ["x", "axes"], ["y"], keepdims=0), {"x": x, "axes": axes})


@pytest.mark.parametrize(
    "op, dtype",
    [("ReduceMax", np.float32), ("ReduceMin", np.float32), ("ReduceLogSumExp", np.float32)]
    + [("ReduceMax", np.int32), ("ReduceMin", np.int32)],
)
def test_extremes_over_an_empty_axis_are_the_dtype_limits(op, dtype):
    x = np.zeros((2, 0, 3), dtype)
    _check(helper.make_node(op, ["x", "axes"], ["y"], keepdims=1), {"x": x, "axes": np.array([1], np.int64)})
