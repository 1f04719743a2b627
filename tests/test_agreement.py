"""numpy, TVM (llvm) and onnxruntime agree on the same graphs: every op sample together with
its gradient graph, so forward and backward nodes are checked on all three runtimes."""

import numpy as np
import onnxruntime as ort
import pytest

import gradkiln as gk
from gradkiln.testing import op_samples


def with_gradients(sample):
    """The sample's graph plus the gradients of <seed, out> with respect to its float inputs."""
    graph, inputs, out = sample.graph()
    with graph:
        seed = gk.input("seed", out.shape, out.dtype)
    grads = gk.grad(out, [inputs[name] for name in sample.wrt], seed=seed)
    rng = np.random.default_rng(1)
    feeds = dict(sample.feeds)
    feeds["seed"] = rng.normal(size=np.shape(gk.compile(graph, out)(**sample.feeds))).astype(out.dtype)
    return graph, [out, *grads], feeds


def run_onnxruntime(graph, outputs, feeds):
    model = gk.onnx_io.export(graph, outputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in wanted})


@pytest.mark.slow
@pytest.mark.parametrize("sample", op_samples("float32"), ids=lambda s: s.name)
def test_numpy_tvm_and_onnxruntime_agree_on_forward_and_gradient(sample):
    graph, outputs, feeds = with_gradients(sample)
    reference = gk.compile(graph, outputs, target="numpy")(**feeds)
    results = {
        "llvm": gk.compile(graph, outputs, target="llvm")(**feeds),
        "onnxruntime": run_onnxruntime(graph, outputs, feeds),
    }
    for runtime, got in results.items():
        for index, (g, r) in enumerate(zip(got, reference)):
            np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-5, err_msg=f"{runtime}, output {index}")
