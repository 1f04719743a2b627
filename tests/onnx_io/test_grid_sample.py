"""ONNX GridSample imports as a gather and weighted sum (onnx_io/import_resize.py): every mode,
padding mode and align_corners against torch's grid_sample, forward and the gradients with
respect to the input and the grid (torch.autograd), on numpy and llvm; the suite's 18 cases
(4-D and volumetric) run in test_conformance.py.

Bicubic with border padding is the exception: ONNX's reference clamps an out-of-range coordinate
into the border before taking the 4 taps (as it does in every mode), torch (and onnxruntime)
only clamps each tap, so there the oracle is onnx's reference evaluator, and the input gradient
is checked as the adjoint of that linear map."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from onnx import TensorProto
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator

import gradkiln as gk

MODES = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}
PADDINGS = ["zeros", "border", "reflection"]
SETTINGS = [s for s in itertools.product(MODES, PADDINGS, [0, 1]) if s[:2] != ("cubic", "border")]


def _model(mode: str, padding: str, align: int):
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 5])
    grid = oh.make_tensor_value_info("grid", TensorProto.FLOAT, ["N", 3, 6, 2])
    node = oh.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding, align_corners=align)
    out = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3, 6])
    return oh.make_model(oh.make_graph([node], "g", [x, grid], [out]), opset_imports=[oh.make_opsetid("", 20)])


def _feeds(batch: int):
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 2, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, (batch, 3, 6, 2)).astype(np.float32)  # some samples fall outside
    return x, grid, rng.standard_normal((batch, 2, 3, 6)).astype(np.float32)


def _torch(x, grid, weights, mode, padding, align):
    xt, gt = torch.tensor(x, requires_grad=True), torch.tensor(grid, requires_grad=True)
    y = torch.nn.functional.grid_sample(xt, gt, MODES[mode], padding, bool(align))
    (y * torch.tensor(weights)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy(), gt.grad.numpy()


def _check(target, mode, padding, align):
    graph, outputs = gk.onnx_io.import_model(_model(mode, padding, align))
    with graph:
        x_in, grid_in = (gk.Tensor(graph, node.outputs[0]) for node in graph.inputs())
        weights = gk.input("weights", outputs["y"].shape)
        grads = gk.grad(gk.sum(gk.mul(outputs["y"], weights)), [x_in, grid_in])
    run = gk.compile(graph, [outputs["y"], *grads], target)
    for batch in (1, 3):
        x, grid, w = _feeds(batch)
        got = run(x=x, grid=grid, weights=w)
        for name, ours, theirs in zip(("forward", "d/dx", "d/dgrid"), got, _torch(x, grid, w, mode, padding, align)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5, err_msg=f"{name} at batch {batch}")


@pytest.mark.parametrize(("mode", "padding", "align"), SETTINGS)
def test_grid_sample_and_its_gradients_match_torch_on_numpy(mode, padding, align):
    _check("numpy", mode, padding, align)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "padding", "align"), [("linear", "zeros", 0), ("cubic", "reflection", 1)])
def test_grid_sample_and_its_gradients_match_torch_on_llvm(mode, padding, align):
    _check("llvm", mode, padding, align)


@pytest.mark.parametrize("align", [0, 1])
def test_bicubic_border_follows_the_onnx_reference(align):
    model = _model("cubic", "border", align)
    graph, outputs = gk.onnx_io.import_model(model)
    with graph:
        x_in = gk.Tensor(graph, graph.inputs()[0].outputs[0])
        weights = gk.input("weights", outputs["y"].shape)
        (grad,) = gk.grad(gk.sum(gk.mul(outputs["y"], weights)), [x_in])
    run = gk.compile(graph, [outputs["y"], grad])
    reference = ReferenceEvaluator(model)
    x, grid, w = _feeds(3)
    y, dx = run(x=x, grid=grid, weights=w)
    np.testing.assert_allclose(y, reference.run(None, {"x": x, "grid": grid})[0], rtol=1e-5, atol=1e-6)
    probe = np.random.default_rng(7).standard_normal(x.shape).astype(np.float32)
    along = reference.run(None, {"x": probe, "grid": grid})[0]  # y is linear in x: <dx, probe> = <w, y(probe)>
    np.testing.assert_allclose(np.vdot(dx, probe), np.vdot(w, along), rtol=1e-4)
