"""The one rule for which initializers of an ONNX model are its parameters (gradkiln/onnx_io/params.py),
checked on a default `torch.onnx.export` of a conv + batch-norm + linear model against torch itself."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

import gradkiln as gk
from gradkiln.graph import GradientError
from gradkiln.onnx_io.params import choose_params

BATCH = 5


class Net(torch.nn.Module):
    """conv -> relu -> batch norm -> linear (batch norm after relu: torch's export keeps it, not folded)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.bn(torch.relu(self.conv(x))), 1))


@pytest.fixture(scope="module", params=["fresh", "random"])
def torch_net(request):
    """The model in eval mode and its default ONNX export: as torch initialises it ("fresh": the
    export stores the batch norm's zero bias and running mean once, read through Identity nodes, and
    likewise its unit weight and running variance), or with every parameter and buffer random."""
    torch.manual_seed(0)
    net = Net().eval()
    if request.param == "random":
        with torch.no_grad():
            for tensor in [*net.parameters(), net.bn.running_mean]:
                tensor.copy_(torch.randn_like(tensor))
            net.bn.running_var.copy_(torch.rand_like(net.bn.running_var) + 0.5)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(BATCH, 2, 6, 6),), f, dynamo=False)
    return net, onnx.load_from_string(f.getvalue())


def test_params_of_a_default_torch_export_are_the_modules_named_parameters(torch_net):
    net, model = torch_net
    graph, _ = gk.onnx_io.import_model(model)
    params = {n.name: n.attrs["value"] for n in graph.params()}
    assert list(params) == [name for name, _ in net.named_parameters()]
    for name, value in net.named_parameters():
        np.testing.assert_array_equal(params[name], value.detach().numpy())


def test_batch_norm_running_statistics_are_buffers_not_params(torch_net):
    _, model = torch_net
    choice = choose_params(model)
    assert set(choice.not_params) == {"bn.running_mean", "bn.running_var"}
    assert all("running statistic" in why for why in choice.not_params.values())
    assert choice.frozen == {} and choice.overridable == []


def test_gradients_of_a_cross_entropy_loss_match_torch_autograd(torch_net):
    net, model = torch_net
    graph, outputs = gk.onnx_io.import_model(model)
    names = [name for name, _ in net.named_parameters()]
    with graph:
        labels = gk.input("labels", (BATCH,), "int64")
        loss = gk.cross_entropy(next(iter(outputs.values())), labels)
        params = [gk.Tensor(graph, graph.by_name(name).outputs[0]) for name in names]
        grads = gk.grad(loss, params)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(BATCH, 2, 6, 6)).astype(np.float32), rng.integers(0, 3, BATCH)
    feed = {graph.inputs()[0].name: x, "labels": y}
    got = gk.compile(graph, {"loss": loss} | dict(zip(names, grads)), target="numpy")(**feed)
    net.zero_grad()
    want = torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(y))
    want.backward()
    np.testing.assert_allclose(got["loss"], want.item(), rtol=1e-4)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_freeze_patterns_remove_exactly_the_matching_params(torch_net):
    net, model = torch_net
    graph, outputs = gk.onnx_io.import_model(model, frozen=["fc.*"])
    names = [name for name, _ in net.named_parameters()]
    assert [n.name for n in graph.params()] == [n for n in names if not n.startswith("fc.")]
    assert choose_params(model, frozen="fc.*").frozen == dict.fromkeys(
        ["fc.weight", "fc.bias"], "matches frozen= (--freeze)"
    )
    x = np.ones((BATCH, 2, 6, 6), np.float32)
    with torch.no_grad():
        want = net(torch.tensor(x)).numpy()
    got = gk.compile(graph, outputs, target="numpy")(x)
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-5)


def test_trainable_patterns_keep_only_the_matching_params(torch_net):
    _, model = torch_net
    assert choose_params(model, trainable=["conv.*", "bn.weight"]).params == ["conv.weight", "conv.bias", "bn.weight"]


def test_a_pattern_matching_no_param_is_an_error_listing_them(torch_net):
    _, model = torch_net
    with pytest.raises(GradientError, match=r"frozen patterns \['fc2.\*'\] match no parameter.*'fc.weight'"):
        gk.onnx_io.import_model(model, frozen=["fc2.*"])


def test_training_graph_trains_the_same_params_and_keeps_running_statistics_as_state(torch_net):
    _, model = torch_net
    step = gk.onnx_io.training_graph(model, frozen=["bn.*"])
    assert step.params == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert set(step.state) == {"bn.running_mean", "bn.running_var"}


def _model(nodes, inputs, initializers) -> onnx.ModelProto:
    graph = oh.make_graph(
        nodes, "m", inputs, [oh.make_tensor_value_info("y", TensorProto.FLOAT, [3])], initializer=initializers
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])


def test_data_an_op_reads_at_import_time_is_not_a_param():
    w = numpy_helper.from_array(np.full(3, 2.0, np.float32), "w")
    bounds = [numpy_helper.from_array(np.float32(v), name) for name, v in [("lo", -1.0), ("hi", 1.0)]]
    shape = numpy_helper.from_array(np.array([3], np.int64), "shape")
    nodes = [
        oh.make_node("Mul", ["x", "w"], ["m"]),
        oh.make_node("Clip", ["m", "lo", "hi"], ["c"]),
        oh.make_node("Reshape", ["c", "shape"], ["y"]),
    ]
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    model = _model(nodes, [x], [w, *bounds, shape])
    choice = choose_params(model)
    assert choice.params == ["w"]
    assert choice.not_params == {
        "lo": "read at import time as input 1 of Clip node ''",
        "hi": "read at import time as input 2 of Clip node ''",
        "shape": "not floating-point (int64)",
    }
    graph, outputs = gk.onnx_io.import_model(model)
    assert [n.name for n in graph.params()] == ["w"]
    got = gk.compile(graph, outputs, target="numpy")(np.array([-1.0, 0.25, 3.0], np.float32))
    np.testing.assert_array_equal(got["y"], [-1.0, 0.5, 1.0])


def test_a_model_declaring_some_initializers_as_inputs_has_those_as_params():
    w, c = (numpy_helper.from_array(np.full(3, v, np.float32), name) for name, v in [("w", 2.0), ("c", 1.0)])
    nodes = [oh.make_node("Mul", ["x", "w"], ["m"]), oh.make_node("Add", ["m", "c"], ["y"])]
    inputs = [oh.make_tensor_value_info(name, TensorProto.FLOAT, [3]) for name in ("x", "w")]
    choice = choose_params(_model(nodes, inputs, [w, c]))
    assert choice.params == ["w"]
    assert choice.frozen == {"c": "not a graph input, while the model declares its parameters as graph inputs"}
    graph, _ = gk.onnx_io.import_model(_model(nodes, inputs, [w, c]))
    assert [n.name for n in graph.params()] == ["w"]
