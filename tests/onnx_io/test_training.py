"""Training graphs of models exported from PyTorch: gradients against torch.autograd, optimizer
steps against torch.optim and the exported step run in onnxruntime."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest

import gradkiln as gk
from gradkiln.graph import GradientError, ONNXError

torch = pytest.importorskip("torch", reason="needs torch (the oracle): pip install -e '.[test]'")
nn = torch.nn


class Block(nn.Module):
    """A residual block: conv, batch norm, relu, conv, batch norm, skip connection, relu."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """ResNet-18 in miniature: a stem, two residual blocks of 8 channels, pooling, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.blocks(torch.relu(self.stem(x))).mean((2, 3)))


class MaskedDropout(nn.Module):
    """Dropout with a given keep-mask: the reference for gradkiln's dropout mask inputs."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p, self.mask = p, None

    def forward(self, x):
        return x * self.mask / (1 - self.p)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(6, 16), nn.Dropout(0.25), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.drop(torch.tanh(self.fc1(x))))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


class Recurrent(nn.Module):
    """An LSTM (exported as the ONNX LSTM op) and a classifier on its last step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.head = nn.LSTM(4, 8, batch_first=True), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


MODELS = {
    "mlp": (MLP, (5, 6), "cross_entropy"),
    "resnet": (ResNet, (4, 3, 8, 8), "cross_entropy"),
    "transformer": (Encoder, (3, 5, 16), "mse"),
    "lstm": (Recurrent, (3, 7, 4), "cross_entropy"),
}


def export(model: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """Export in training mode (Dropout and batch-norm statistics kept) with a symbolic batch,
    then reset the torch model's buffers to the exported values (the export ran it once)."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(shape),), f, dynamo=False, training=torch.onnx.TrainingMode.TRAINING,
            do_constant_folding=False, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}},
        )  # fmt: skip
    proto = onnx.load_from_string(f.getvalue())
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for name, buffer in model.named_buffers():
        if name in stored:
            buffer.copy_(torch.tensor(stored[name]))
    return proto


@pytest.fixture(scope="module")
def exported():
    """name -> (torch model, ONNX model, input shape, loss), built once."""
    result = {}
    for name, (cls, shape, loss) in MODELS.items():
        torch.manual_seed(0)
        model = cls()
        proto = export(model, shape)
        if isinstance(model, MLP):
            model.drop = MaskedDropout(0.25)
        result[name] = (model, proto, shape, loss)
    return result


def batch(tg: gk.onnx_io.TrainingGraph, model: nn.Module, shape, loss: str, rng) -> dict[str, np.ndarray]:
    """Random data, labels and dropout masks for one step (the masks also set on the torch model)."""
    feeds = {"x": rng.normal(size=shape).astype(np.float32)}
    out_shape = tuple(model(torch.from_numpy(feeds["x"])).shape) if loss == "mse" else None
    for name in tg.data:
        if name.startswith("dropout."):
            feeds[name] = (rng.random((shape[0], 16)) > 0.25).astype(np.float32)
            model.drop.mask = torch.from_numpy(feeds[name])
    if loss == "mse":
        feeds["labels"] = rng.normal(size=out_shape).astype(np.float32)
    else:
        feeds["labels"] = rng.integers(0, 2, size=shape[0]).astype(np.int64)
    return feeds


def torch_loss(model: nn.Module, feeds: dict[str, np.ndarray], loss: str):
    prediction = model(torch.from_numpy(feeds["x"]))
    labels = torch.from_numpy(feeds["labels"])
    if loss == "mse":
        return torch.nn.functional.mse_loss(prediction, labels)
    return torch.nn.functional.cross_entropy(prediction, labels)


def assert_relative(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4, what: str = "") -> None:
    """max |actual - expected| within rtol of max |expected| (float32 accumulation differs)."""
    error = np.abs(np.asarray(actual) - expected).max() / max(np.abs(expected).max(), 1e-30)
    assert error <= rtol, f"{what}: relative error {error:.2e} > {rtol}"


@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_match_torch_autograd(exported, name):
    model, proto, shape, loss = exported[name]
    model.train()
    tg = gk.onnx_io.training_graph(proto, loss)
    feeds = batch(tg, model, shape, loss, np.random.default_rng(1))
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model.zero_grad()
    expected = torch_loss(model, feeds, loss)
    expected.backward()
    got = tg.compile()(feeds)
    model.load_state_dict(snapshot)  # the torch forward moved the running statistics
    assert_relative(got["loss"], expected.detach().numpy(), what="loss")
    assert tg.params == [n for n, _ in model.named_parameters()]
    for param_name, param in model.named_parameters():
        assert_relative(got[f"grad.{param_name}"], param.grad.numpy(), what=param_name)


def test_batch_norm_updates_running_statistics_as_torch_does(exported):
    model, proto, shape, loss = exported["resnet"]
    model.train()
    tg = gk.onnx_io.training_graph(proto, loss)
    feeds = batch(tg, model, shape, loss, np.random.default_rng(2))
    before = {k: v.clone().numpy() for k, v in model.state_dict().items()}
    got = tg.compile()(feeds)
    torch_loss(model, feeds, loss)
    after = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()})
    assert sum(k.endswith(("running_mean", "running_var")) for k in tg.state) == 8
    count = shape[0] * shape[2] * shape[3]
    for stat in (k for k in tg.state if k.endswith("running_mean")):
        assert_relative(got[f"{stat}.new"], after[stat], what=stat)
        var = stat.replace("running_mean", "running_var")
        unbiased_batch_var = (after[var] - 0.9 * before[var]) / 0.1  # torch's momentum 0.1
        expected = 0.9 * before[var] + 0.1 * unbiased_batch_var * (count - 1) / count  # ONNX: population var
        assert_relative(got[f"{var}.new"], expected, what=var)


def test_frozen_parameters_are_constants_without_gradients(exported):
    model, proto, shape, loss = exported["mlp"]
    tg = gk.onnx_io.training_graph(proto, loss, trainable=lambda n: not n.startswith("fc1."), optimizer="sgd")
    assert tg.params == ["fc2.weight", "fc2.bias"]
    assert not any(n.name.startswith("fc1.") for n in tg.graph.params())
    assert set(tg.state) == {"fc2.weight", "fc2.bias", "sgd.momentum.fc2.weight", "sgd.momentum.fc2.bias"}
    feeds = batch(tg, model, shape, loss, np.random.default_rng(3))
    got = tg.compile()(feeds)
    model.zero_grad()
    model.fc1.requires_grad_(False)
    torch_loss(model, feeds, loss).backward()
    model.fc1.requires_grad_(True)
    assert "grad.fc1.weight" not in got
    assert_relative(got["grad.fc2.weight"], model.fc2.weight.grad.numpy(), what="fc2.weight")


def test_eval_batch_norm_and_disabled_dropout_train_as_torch_eval_mode(exported):
    model, proto, shape, loss = exported["resnet"]
    tg = gk.onnx_io.training_graph(proto, loss, batch_norm="eval", dropout="off")
    assert tg.state == {} and tg.data == ["x", "labels"]
    feeds = batch(tg, model, shape, loss, np.random.default_rng(4))
    model.eval()
    model.zero_grad()
    torch_loss(model, feeds, loss).backward()
    model.train()
    got = tg.compile()(feeds)
    for param_name, param in model.named_parameters():
        assert_relative(got[f"grad.{param_name}"], param.grad.numpy(), what=param_name)


OPTIMIZER_CASES = {
    "sgd": ({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, lambda p, h: torch.optim.SGD(p, **h)),
    "adam": (
        {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.01},
        lambda p, h: torch.optim.Adam(
            p, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=h["weight_decay"]
        ),
    ),
}


@pytest.mark.parametrize("optimizer,model_name", [("sgd", "mlp"), ("adam", "resnet")])
def test_optimizer_steps_agree_with_torch_optim_and_onnxruntime(exported, run_onnx, optimizer, model_name):
    model, proto, shape, loss = exported[model_name]
    hyper, make_optimizer = OPTIMIZER_CASES[optimizer]
    tg = gk.onnx_io.training_graph(proto, loss, optimizer=optimizer)
    rng = np.random.default_rng(5)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    torch_optimizer = make_optimizer(model.parameters(), hyper)
    step, onnx_step = tg.compile(), tg.export()
    ours, theirs = tg.initial_state(), tg.initial_state()
    model.train()
    for _ in range(3):
        feeds = batch(tg, model, shape, loss, rng) | {k: np.asarray(v, np.float32) for k, v in hyper.items()}
        ours = tg.next_state(step(feeds | ours))
        theirs = tg.next_state(run_onnx(onnx_step, feeds | theirs))
        torch_optimizer.zero_grad()
        torch_loss(model, feeds, loss).backward()
        torch_optimizer.step()
    expected = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    model.load_state_dict(snapshot)
    for name in tg.params:
        assert_relative(ours[name], expected[name], what=f"{name} against torch")
        assert_relative(theirs[name], ours[name], what=f"{name} onnxruntime against gradkiln")
    if optimizer == "adam":
        assert ours["adam.step"] == theirs["adam.step"] == 3


def test_exported_step_names_inputs_and_outputs(exported, tmp_path):
    _, proto, _, loss = exported["mlp"]
    tg = gk.onnx_io.training_graph(proto, loss, optimizer="adam", hyperparameters={"lr": 0.5})
    model = tg.export(tmp_path / "train.onnx")
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    assert {"x", "labels", "dropout./drop/Dropout", "fc1.weight", "adam.m.fc1.weight", "adam.step", "lr"} <= set(inputs)
    assert outputs[:2] == ["loss", "grad.fc1.weight"]
    assert {"fc1.weight.new", "adam.v.fc2.bias.new", "adam.step.new"} <= set(outputs)
    lr = next(t for t in model.graph.initializer if t.name == "lr")
    assert onnx.numpy_helper.to_array(lr) == np.float32(0.5)
    assert onnx.load(tmp_path / "train.onnx") == model


def test_callable_loss_may_declare_its_own_inputs(exported):
    model, proto, shape, _ = exported["lstm"]
    weights = np.array([1.0, 3.0], np.float32)

    def weighted_squares(prediction):
        target = gk.input("target", prediction.shape)
        return gk.sum((prediction - target) ** 2 * weights)

    tg = gk.onnx_io.training_graph(proto, weighted_squares)
    rng = np.random.default_rng(6)
    x, target = rng.normal(size=shape).astype(np.float32), rng.normal(size=(shape[0], 2)).astype(np.float32)
    got = tg.compile()(x=x, target=target)
    model.zero_grad()
    prediction = model(torch.from_numpy(x))
    ((prediction - torch.from_numpy(target)) ** 2 * torch.from_numpy(weights)).sum().backward()
    assert_relative(got["grad.head.weight"], model.head.weight.grad.numpy(), what="head.weight")


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"trainable": ["fc1.weight", "nope"]}, GradientError, "patterns ['nope'] match no parameter"),
        ({"trainable": []}, GradientError, "no parameter is trainable"),
        ({"optimizer": "rmsprop"}, ONNXError, "optimizer='rmsprop' is not one of"),
        ({"optimizer": "sgd", "hyperparameters": {"beta1": 0.9}}, ONNXError, "['beta1'] do not apply to optimizer"),
        ({"loss": "hinge"}, ONNXError, "loss='hinge' is not one of ['cross_entropy', 'mse']"),
        ({"loss": lambda p: p}, GradientError, "must be a float scalar tensor, got float32[N, 4]"),
        ({"output": "z"}, ONNXError, "no output 'z'; its outputs are ['y']"),
    ],
)
def test_bad_arguments_raise_clear_errors(exported, kwargs, error, message):
    with pytest.raises(error) as info:
        gk.onnx_io.training_graph(exported["mlp"][1], **kwargs)
    assert message in str(info.value)


@pytest.mark.slow
def test_tvm_compiled_steps_agree_with_onnxruntime(exported, run_onnx):
    model, proto, shape, loss = exported["mlp"]
    tg = gk.onnx_io.training_graph(proto, loss, optimizer="adam", hyperparameters={"lr": 0.05})
    step, onnx_step = tg.compile("llvm"), tg.export()
    ours, theirs = tg.initial_state(), tg.initial_state()
    rng = np.random.default_rng(7)
    for _ in range(3):
        feeds = batch(tg, model, shape, loss, rng)
        ours = tg.next_state(step(feeds | ours))
        theirs = tg.next_state(run_onnx(onnx_step, feeds | theirs))
    for name in tg.params:
        assert_relative(ours[name], theirs[name], what=name)


def test_a_model_input_named_labels_asks_for_a_callable_loss():
    with gk.Graph("m") as g:
        y = gk.input("labels", ("N", 4)) @ gk.param("w", np.ones((4, 3), np.float32))
    with pytest.raises(ONNXError, match="already has an input named 'labels'; pass a callable loss"):
        gk.onnx_io.training_graph(gk.onnx_io.export(g, {"y": y}), "mse")


def test_optimizer_updates_are_tagged_for_viz_apart_from_forward_and_backward(tmp_path):
    import torch

    path = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(4, 3),), str(path), dynamo=False)
    step = gk.onnx_io.training_graph(str(path), "mse", optimizer="sgd")
    roles = {node.role for node in step.graph.nodes()}
    assert {"forward", "grad", "optimizer"} <= roles
    from gradkiln.viz import ROLE_COLOURS, to_dot

    assert ROLE_COLOURS["optimizer"] in to_dot(step.graph).source
