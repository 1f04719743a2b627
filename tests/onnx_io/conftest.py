"""Shared helpers of the ONNX tests: run a model in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.reference
import pytest

ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install -e '.[test]'")


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name; feeds the model does not take (inputs it does not need) are dropped."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # params are inputs with initializers; ORT warns about each
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    taken = {i.name for i in [*session.get_inputs(), *session.get_overridable_initializers()]}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in taken})))


def _run_or_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`_run`, or onnx's reference evaluator where onnxruntime has no kernel for an op at a type
    (Max of uint64, Where of int16, any op on float4 or int2, ...)."""
    try:
        return _run(model, feeds)
    except (ort.capi.onnxruntime_pybind11_state.InvalidGraph, ort.capi.onnxruntime_pybind11_state.NotImplemented):
        names = [o.name for o in model.graph.output]
        return dict(zip(names, onnx.reference.ReferenceEvaluator(model).run(names, feeds)))


@pytest.fixture
def run_onnx():
    return _run


@pytest.fixture
def run_onnx_or_reference():
    return _run_or_reference
