"""numpy, TVM (llvm) and onnxruntime agree on the same graphs: every op sample together with
its gradient graph, so forward and backward nodes are checked on all three runtimes."""

import numpy as np
import onnxruntime as ort
import pytest

import gradkiln as gk
from gradkiln.testing import op_samples


def run_onnxruntime(graph, outputs, feeds):
    model = gk.onnx_io.export(graph, outputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in wanted})


@pytest.mark.slow
@pytest.mark.parametrize("sample", op_samples("float32"), ids=lambda s: s.name)
def test_numpy_tvm_and_onnxruntime_agree_on_forward_and_gradient(sample):
    graph, outputs, feeds = sample.with_gradients()
    reference = gk.compile(graph, outputs, target="numpy")(**feeds)
    results = {
        "llvm": gk.compile(graph, outputs, target="llvm")(**feeds),
        "onnxruntime": run_onnxruntime(graph, outputs, feeds),
    }
    for runtime, got in results.items():
        for name, g, r in zip(reference, got if isinstance(got, list) else got.values(), reference.values()):
            np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-5, err_msg=f"{runtime}, output {name}")
