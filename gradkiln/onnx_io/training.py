"""Training graphs for imported ONNX models: loss, parameter gradients and optimizer updates.

`training_graph(model, loss, trainable, optimizer)` imports a model for training and returns a
`TrainingGraph` whose inputs are the data (the model's inputs, `labels`, one dropout mask per
Dropout node), the trainable parameters under their initializer names, the state (batch-norm
running statistics, optimizer buffers) and the hyperparameters, and whose outputs are `loss`,
`grad.<param>` per trainable parameter and `<state>.new` per state input (a parameter is state
when an optimizer updates it). A training loop feeds each `<name>.new` back as `<name>`.

Choices: the parameters are those of `params.choose_params`, the rule `import_model` and the CLI
share (float initializers that are not shape data or batch-norm statistics, as `torch.onnx.export`
writes weights; only those declared as graph inputs where a model declares some so, as gradkiln's
exporter does); trainable ones become graph params, frozen ones constants. Batch norm trains as
PyTorch's `model.train()` does (batch statistics; running statistics updated by the ONNX
definition, which uses the population variance where PyTorch uses the unbiased one), or is
frozen with `batch_norm="eval"`. Dropout with a non-zero ratio multiplies by a keep-mask input
`dropout.<node>` (0/1, the shape of its input) scaled by 1/(1 - ratio), so steps are
reproducible and any runtime can draw the masks; `dropout="off"` makes it the identity.
Hyperparameters are params with defaults (graph inputs with initializers in ONNX), so a
learning-rate schedule needs no re-export. The optimizers follow `torch.optim`: SGD with
momentum and L2 weight decay, Adam with L2 weight decay; their formulas are those of
`symbolic/optimizers.py`, which the sparse updates of embedding tables share.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import numpy as np
import onnx

from ..graph import GradientError, Graph, ONNXError, Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_float
from ..lowering.executable import Executable
from ..symbolic.optimizers import adam_moments, bias_corrections, sgd_momentum
from . import importer
from .import_rules import IMPORTERS
from .importer import ImportContext, OnnxNode, Operand
from .params import ParamChoice, Patterns, choose_params, running_statistics, unshare_initializers

ModelSource = Union[onnx.ModelProto, str, os.PathLike, bytes]
Loss = Union[str, Callable[[Tensor], Tensor]]


@dataclass
class TrainingGraph:
    """An imported model's training step as a graph.

    `outputs` maps ONNX output names to tensors (`loss`, `grad.<p>`, `<state>.new`); `state`
    maps each state input to the output that replaces it after a step; `data` names the inputs
    to feed every step; `hyperparameters` are params with the defaults shown; `choice` says which
    initializers were taken as parameters, which frozen, and why.
    """

    graph: Graph
    outputs: dict[str, Tensor]
    params: list[str]
    state: dict[str, str]
    data: list[str]
    hyperparameters: dict[str, float]
    choice: ParamChoice

    def initial_state(self) -> dict[str, np.ndarray]:
        """The value of every state input before the first step (parameters, zero buffers)."""
        return {name: self.graph.by_name(name).attrs["value"] for name in self.state}

    def next_state(self, results: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The state inputs of the next step, taken from one step's outputs."""
        return {name: results[new] for name, new in self.state.items()}

    def compile(self, target: Any = "numpy", **options: Any) -> Executable:
        """`gk.compile` of the step; call it with the data, the state and any hyperparameters."""
        from ..lowering import compile as compile_graph

        return compile_graph(self.graph, self.outputs, target=target, **options)

    def export(self, path: str | os.PathLike | None = None) -> onnx.ModelProto:
        """The step as a checked ONNX model (written atomically to `path` when given)."""
        from .exporter import export

        return export(self.graph, self.outputs, path=path, name=f"{self.graph.name}_training")


def training_graph(
    model: ModelSource,
    loss: Loss = "cross_entropy",
    trainable: Patterns = None,
    optimizer: str | None = None,
    hyperparameters: Mapping[str, float] | None = None,
    output: str | None = None,
    batch_norm: str = "train",
    dropout: str = "mask",
    frozen: Patterns = None,
) -> TrainingGraph:
    """Import `model` (a ModelProto, path or bytes) as a training step.

    `loss`: "cross_entropy" (integer class `labels` over the last axis of the prediction),
    "mse" (`labels` shaped like the prediction) or a callable taking the prediction and
    returning a scalar, which may declare its own inputs with `gk.input`. The prediction is the
    model output named `output` (default: the first). `trainable`: None (the parameters, see the
    module doc), a list of initializer names, or a predicate on the name. `optimizer`: None (loss
    and gradients only), "sgd" or "adam", with `hyperparameters` overriding the defaults in
    `OPTIMIZER_DEFAULTS`. `batch_norm`: "train" or "eval"; `dropout`: "mask" or "off".
    """
    _check_choice("optimizer", optimizer, [None, *OPTIMIZERS])
    _check_choice("batch_norm", batch_norm, ["train", "eval"])
    _check_choice("dropout", dropout, ["mask", "off"])
    hyper = _hyperparameters(optimizer, hyperparameters or {})
    graph, outputs, choice, running = _import_for_training(
        model, trainable, frozen, batch_norm == "train", dropout == "mask"
    )
    params = choice.params
    with graph:
        loss_value = _loss(loss, _prediction(outputs, output))
        grads = _grad(loss_value, [_tensor_named(graph, p) for p in params])
        updates = dict(running)
        if optimizer is not None:
            with graph.building_as("optimizer"):  # viz colours the update apart from forward and backward
                h = {k: gb.param(k, np.float32(v)) for k, v in hyper.items()}
                updates |= OPTIMIZERS[optimizer](graph, params, grads, h)
    state = {name: f"{name}.new" for name in updates}
    result = {"loss": loss_value} | {f"grad.{p}": g for p, g in zip(params, grads)}
    result |= {state[name]: tensor for name, tensor in updates.items()}
    data = [n.name for n in graph.inputs()]
    return TrainingGraph(graph, result, params, state, data, hyper, choice)


def _import_for_training(
    model: ModelSource, trainable: Patterns, frozen: Patterns, train_batch_norm: bool, dropout_masks: bool
) -> tuple[Graph, dict[str, Tensor], ParamChoice, dict[str, Tensor]]:
    """The imported graph, its outputs, the parameter choice and the updated running statistics."""
    recorder = _Recorder(train_batch_norm, dropout_masks)
    rules = IMPORTERS | recorder.rules()
    proto = unshare_initializers(importer.load(model, rules))
    running = _running_statistics(proto, required=train_batch_norm)
    choice = choose_params(proto, trainable, frozen)
    if not choice.params:
        raise GradientError(
            f"training_graph: no parameter is trainable (trainable={trainable!r}, frozen={frozen!r}); "
            f"the model's float initializers: {[t.name for t in proto.graph.initializer]}"
        )
    state_inputs = running if train_batch_norm else []
    graph, outputs = importer.import_loaded(_data_inputs_only(proto), [*choice.params, *state_inputs], rules)
    return graph, outputs, choice, recorder.running


def _grad(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    """Reverse-mode gradients (imported here: symbolic imports the graph layer, not onnx_io)."""
    from ..symbolic import grad

    return grad(loss, params, allow_unused=True)


def _tensor_named(graph: Graph, name: str) -> Tensor:
    """The tensor of the node named `name`."""
    return Tensor(graph, graph.by_name(name).outputs[0])


def _check_choice(what: str, value: Any, choices: list) -> None:
    if value not in choices:
        raise ONNXError(f"training_graph: {what}={value!r} is not one of {choices}")


def _hyperparameters(optimizer: str | None, given: Mapping[str, float]) -> dict[str, float]:
    defaults = OPTIMIZER_DEFAULTS.get(optimizer, {}) if optimizer else {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ONNXError(
            f"training_graph: hyperparameters {unknown} do not apply to optimizer {optimizer!r}; "
            f"it takes {sorted(defaults) or 'none'}"
        )
    return {k: float(v) for k, v in (defaults | dict(given)).items()}


# -- import -------------------------------------------------------------------------------------
def _data_inputs_only(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph inputs are the data inputs only: an initializer that is not a trainable
    parameter or state is a constant of the step, not an input to feed."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {t.name for t in proto.graph.initializer}
    del out.graph.input[:]
    out.graph.input.extend(i for i in proto.graph.input if i.name not in inits)
    return out


class _Recorder:
    """Import rules for training: BatchNormalization and Dropout, recording what they add."""

    def __init__(self, train_batch_norm: bool, dropout_masks: bool) -> None:
        self.train_batch_norm = train_batch_norm
        self.dropout_masks = dropout_masks
        self.running: dict[str, Tensor] = {}

    def rules(self) -> dict:
        """The rules `import_model` uses in place of the inference ones for BN and Dropout."""
        return {"BatchNormalization": self._batch_norm, "Dropout": self._dropout}

    def _batch_norm(self, ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Any:
        """Training mode records the updated running statistics; eval mode keeps them as they are."""
        rule = IMPORTERS["BatchNormalization"]
        if not self.train_batch_norm:
            y = rule(ctx, dataclasses.replace(n, attrs=n.attrs | {"training_mode": 0}, num_outputs=1), args)
            return (y, *args[3:5])[: n.num_outputs]
        training = dataclasses.replace(n, attrs=n.attrs | {"training_mode": 1}, opset=max(n.opset, 14), num_outputs=3)
        y, mean, var = rule(ctx, training, args)
        for stat, new in zip(args[3:5], (mean, var)):
            self.running[stat.name] = new
        return (y, mean, var)[: n.num_outputs]

    def _dropout(self, ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Any:
        x = ctx.tensor(args[0])
        ratio = float(ctx.optional(args, 1, "ratio", n.attrs.get("ratio", 0.5)))
        if not self.dropout_masks or ratio == 0:
            y, keep = x, gb.broadcast_to(gb.constant(True, graph=x.graph), x.shape)
        else:
            mask = gb.input(_mask_name(x.graph, n), x.shape, x.dtype)
            y, keep = gb.mul(x, gb.mul(mask, np.asarray(1 / (1 - ratio), x.dtype))), gb.cast(mask, "bool")
        return (y, keep)[: n.num_outputs]


def _mask_name(graph: Graph, n: OnnxNode) -> str:
    return f"dropout.{n.name}" if n.name else f"dropout.{len(graph.inputs())}"


def _running_statistics(proto: onnx.ModelProto, required: bool) -> list[str]:
    """The running mean and variance initializers of the model's BatchNormalization nodes (when
    `required`, an error if one is computed instead of stored)."""
    inits = {t.name for t in proto.graph.initializer}
    stats = running_statistics(proto.graph)
    missing = [name for name in stats if name not in inits]
    if missing and required:
        raise ONNXError(
            f"BatchNormalization running statistics {missing} are not initializers; training mode needs them "
            "stored in the model (or pass batch_norm='eval')"
        )
    return [name for name in stats if name in inits]


# -- loss -----------------------------------------------------------------------------------------
def _prediction(outputs: dict[str, Tensor], name: str | None) -> Tensor:
    if name is None:
        return next(iter(outputs.values()))
    if name not in outputs:
        raise ONNXError(f"training_graph: the model has no output {name!r}; its outputs are {list(outputs)}")
    return outputs[name]


def _labels(prediction: Tensor, shape: tuple, dtype: str) -> Tensor:
    if any(n.name == "labels" for n in prediction.graph.inputs()):
        raise ONNXError(
            "training_graph: the model already has an input named 'labels'; pass a callable loss that "
            "declares its labels under another name"
        )
    return gb.input("labels", shape, dtype)


def _cross_entropy(prediction: Tensor) -> Tensor:
    return gb.cross_entropy(prediction, _labels(prediction, prediction.shape[:-1], "int64"))


def _mse(prediction: Tensor) -> Tensor:
    return gb.mse_loss(prediction, _labels(prediction, prediction.shape, prediction.dtype))


LOSSES: dict[str, Callable[[Tensor], Tensor]] = {"cross_entropy": _cross_entropy, "mse": _mse}


def _loss(loss: Loss, prediction: Tensor) -> Tensor:
    if isinstance(loss, str):
        _check_choice("loss", loss, list(LOSSES))
        loss = LOSSES[loss]
    value = loss(prediction)
    if not isinstance(value, Tensor) or value.ndim != 0 or not is_float(value.dtype):
        described = f"{value.dtype}{list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise GradientError(f"training_graph: the loss must be a float scalar tensor, got {described}")
    return value


# -- optimizers ---------------------------------------------------------------------------------
Update = Callable[[Graph, list[str], list[Tensor], dict[str, Tensor]], dict[str, Tensor]]


def _sgd(graph: Graph, params: list[str], grads: list[Tensor], h: dict[str, Tensor]) -> dict[str, Tensor]:
    """torch.optim.SGD: buf = momentum * buf + (g + wd * p); p -= lr * buf."""
    updates: dict[str, Tensor] = {}
    for name, g in zip(params, grads):
        p = _tensor_named(graph, name)
        buffer = gb.param(f"sgd.momentum.{name}", np.zeros_like(graph.by_name(name).attrs["value"]))
        updates[name], updates[f"sgd.momentum.{name}"] = sgd_momentum(
            p, g, buffer, h["lr"], h["momentum"], h["weight_decay"]
        )
    return updates


def _adam(graph: Graph, params: list[str], grads: list[Tensor], h: dict[str, Tensor]) -> dict[str, Tensor]:
    """torch.optim.Adam (L2 weight decay, no amsgrad), with the step count as state."""
    step = gb.param("adam.step", np.float32(0))
    t = step + 1.0
    correction1, correction2 = bias_corrections(t, h["beta1"], h["beta2"])
    updates: dict[str, Tensor] = {}
    for name, g in zip(params, grads):
        p = _tensor_named(graph, name)
        zeros = np.zeros_like(graph.by_name(name).attrs["value"])
        m, v = gb.param(f"adam.m.{name}", zeros), gb.param(f"adam.v.{name}", zeros)
        g = g + h["weight_decay"] * p
        new_m, new_v = adam_moments(m, v, g, h["beta1"], h["beta2"])
        denom = gb.sqrt(new_v / correction2) + h["eps"]
        updates[name] = p - (h["lr"] / correction1) * new_m / denom
        updates[f"adam.m.{name}"], updates[f"adam.v.{name}"] = new_m, new_v
    updates["adam.step"] = t
    return updates


OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
}
OPTIMIZERS: dict[str, Callable[..., dict[str, Tensor]]] = {"sgd": _sgd, "adam": _adam}
