"""Pooling imported by gathering windows (onnx_io/import_conv.py), against onnxruntime: a pool
with a large dilated kernel takes one slice per kernel row and column, not one per kernel cell."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import gradkiln as gk
from gradkiln.onnx_io import import_model


def _pool_model(op: str, shape: list[int], **attrs) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(len(shape))])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "pool", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]).SerializeToString()


@pytest.mark.parametrize(
    "op, shape, attrs",
    [
        ("MaxPool", [1, 2, 90, 100], dict(kernel_shape=[12, 16], dilations=[3, 2], strides=[4, 5], pads=[2, 4, 2, 4])),
        ("AveragePool", [1, 1, 20, 20, 20], dict(kernel_shape=[5, 5, 5], dilations=[2, 2, 2], strides=[3, 3, 3])),
        (
            "AveragePool",
            [1, 2, 30, 31],
            dict(kernel_shape=[6, 7], strides=[2, 3], pads=[1, 2, 3, 1], count_include_pad=1),
        ),
        ("LpPool", [1, 2, 30, 31], dict(kernel_shape=[6, 7], strides=[2, 3], pads=[1, 2, 3, 1], p=3)),
    ],
    ids=["maxpool_2d_dilated", "averagepool_3d_dilated", "averagepool_padded", "lppool"],
)
def test_pools_reduce_one_axis_at_a_time_and_match_onnxruntime(op, shape, attrs):
    model = _pool_model(op, shape, **attrs)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    graph, outputs = import_model(model)
    assert len(graph) < 120  # a 12 x 16 kernel cell by cell was 192 slices, a 5 x 5 x 5 one 125
    (want,) = ort.InferenceSession(model).run(None, {"x": x})
    for target in ("numpy", "llvm"):
        got = gk.compile(graph, outputs, target=target)(x=x)["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
