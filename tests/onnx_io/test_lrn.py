"""ONNX LRN (local response normalization across channels) imports as a composition: forward
against the operator's definition written out channel by channel (onnx's reference evaluator
loops over the batch instead of the channels, and onnxruntime runs odd sizes of 4-D inputs
only: both checked where they hold), the input gradient against torch.autograd's
local_response_norm (which places the window as ONNX does for odd sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto
from onnx import helper as oh

import gradkiln as gk

ALPHA, BETA, BIAS = 0.02, 0.75, 2.0


def _lrn_model(shape: list, size: int):
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    node = oh.make_node("LRN", ["x"], ["y"], size=size, alpha=ALPHA, beta=BETA, bias=BIAS)
    graph = oh.make_graph([node], "lrn", [x], [oh.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])


def _lrn_by_definition(x: np.ndarray, size: int) -> np.ndarray:
    """ONNX's LRN: the squares summed over channels c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)."""
    total = np.zeros_like(x, dtype=np.float64)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - (size - 1) // 2), min(channels, c + size // 2 + 1)
        total[:, c] = (x[:, lo:hi].astype(np.float64) ** 2).sum(axis=1)
    return x / (BIAS + ALPHA / size * total) ** BETA


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [[2, 6, 3, 4], [3, 5, 7]])
def test_lrn_matches_its_definition_and_onnxruntime_where_it_runs(run_onnx, size, shape):
    model = _lrn_model(["N", *shape[1:]], size)
    graph, outputs = gk.onnx_io.import_model(model)
    x = np.random.default_rng(size).standard_normal(shape).astype(np.float32) * 3
    got = gk.compile(graph, outputs)(x=x)["y"]
    np.testing.assert_allclose(got, _lrn_by_definition(x, size), rtol=1e-5)
    if size % 2 and len(shape) == 4:
        np.testing.assert_allclose(got, run_onnx(model, {"x": x})["y"], rtol=1e-5)


@pytest.mark.parametrize("target", ["numpy", "llvm"])
@pytest.mark.parametrize("size", [3, 5])
def test_the_lrn_gradient_matches_torch_autograd(target, size):
    graph, outputs = gk.onnx_io.import_model(_lrn_model([2, 7, 3, 3], size))
    rng = np.random.default_rng(size)
    x, weights = (rng.standard_normal((2, 7, 3, 3)).astype(np.float32) for _ in range(2))
    with graph:
        (x_node,) = graph.inputs()
        loss = gk.sum(gk.mul(outputs["y"], gk.constant(weights)))
        (grad,) = gk.grad(loss, [gk.Tensor(graph, x_node.outputs[0])])
    got = gk.compile(graph, grad, target)(x=x)
    xt = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.local_response_norm(xt, size, ALPHA, BETA, BIAS) * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
