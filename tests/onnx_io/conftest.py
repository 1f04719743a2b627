"""Shared helpers of the ONNX tests: run a model in onnxruntime, resize symbolic batch dims."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name; feeds the model does not take (inputs it does not need) are dropped."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # params are inputs with initializers; ORT warns about each
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    taken = {i.name for i in [*session.get_inputs(), *session.get_overridable_initializers()]}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in taken})))


def _resized(feeds: dict[str, np.ndarray], shapes: dict[str, tuple], batch: int) -> dict[str, np.ndarray]:
    """Feeds whose symbolic axes are tiled (or cut) to `batch` rows, so labels stay valid."""
    out = {}
    for name, value in feeds.items():
        for axis, dim in enumerate(shapes.get(name, value.shape)):
            if isinstance(dim, str):
                value = np.take(value, np.arange(batch) % value.shape[axis], axis=axis)
        out[name] = value
    return out


@pytest.fixture
def run_onnx():
    return _run


@pytest.fixture
def resized():
    return _resized
