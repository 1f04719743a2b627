"""Which initializers of an ONNX model are its parameters: the one rule `import_model`,
`training_graph` and every `gradkiln` command share.

A parameter is a floating-point initializer (float16/32/64) that is neither
- data an op reads at import time (a shape, axes, pads, scales, a ratio: `STATIC_INPUTS`), nor
- a BatchNormalization running mean or variance: a buffer, not a parameter, as in PyTorch
  (`training_graph` trains them as state), nor
- an initializer left out of the graph inputs while the model declares others as inputs (as
  `keep_initializers_as_inputs=True` does), or of a model gradkiln's exporter wrote (which declares
  exactly its params as inputs, constants as plain initializers): the declared ones are the parameters.

`torch.onnx.export` keeps weights as initializers named by their module paths (`layer1.0.conv1.weight`),
so an imported torch model has torch's `named_parameters()` as its params (once `unshare_initializers`
has given back each tensor torch stored once for several equal ones its own initializer). `trainable` (keep only the
parameters matching one of these `fnmatch` patterns) and `frozen` (then drop those matching one of these)
narrow the choice; a pattern that matches no parameter is an error, as it is most likely a typo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable, Sequence, Union

import onnx

from ..graph import GradientError

Patterns = Union[None, str, Sequence[str], Callable[[str], bool]]

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)

STATIC_INPUTS: dict[str, tuple[int, ...]] = {
    "ConstantOfShape": (0,),
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "Dropout": (1, 2),
    "Clip": (1, 2),
    "CumSum": (1,),
    "Trilu": (1,),
    **{f"Reduce{kind}": (1,) for kind in ("Sum", "Mean", "Max", "Min", "Prod", "L1", "L2", "LogSumExp", "SumSquare")},
}
"""Per ONNX op type, the input positions the importer reads as values at import time (shapes, axes,
pads, scales, ratios; Clip's bounds, which make a native clip when known): an initializer read there
is data, never a parameter."""


@dataclass
class ParamChoice:
    """The outcome of the rule for one model.

    `params`: the trainable parameters, in initializer order. `frozen`: parameter candidates kept
    constant, with why. `not_params`: the other initializers, with why. `overridable`: graph inputs
    with an initializer that are not params; they stay inputs with a default (fed to override).
    """

    params: list[str]
    frozen: dict[str, str] = field(default_factory=dict)
    not_params: dict[str, str] = field(default_factory=dict)
    overridable: list[str] = field(default_factory=list)

    def report(self) -> list[str]:
        """One line per initializer: taken as a parameter, frozen, or not a parameter, and why."""
        lines = [f"param {name}" for name in self.params]
        lines += [f"frozen {name}: {why}" for name, why in self.frozen.items()]
        return lines + [f"not a param {name}: {why}" for name, why in self.not_params.items()]


def choose_params(model: onnx.ModelProto, trainable: Patterns = None, frozen: Patterns = None) -> ParamChoice:
    """Apply the rule (module doc) to an ONNX model; `trainable` and `frozen` are fnmatch patterns (one
    pattern, a list, or a predicate on the name). The model is read as `unshare_initializers` makes it."""
    graph = unshare_initializers(model).graph
    reasons = _not_params(graph)
    candidates = [t.name for t in graph.initializer if t.name not in reasons]
    declared = {i.name for i in graph.input} & set(candidates)
    chosen, left = _select(candidates, trainable, "trainable")
    frozen_names = _select(chosen, frozen, "frozen")[0] if frozen is not None else []
    why = {name: "does not match trainable= (--trainable)" for name in left}
    why |= {name: "matches frozen= (--freeze)" for name in frozen_names}
    user_choice = set(why)
    if (declared or model.producer_name == "gradkiln") and trainable is None:
        undeclared = "not a graph input, while the model declares its parameters as graph inputs"
        why |= {name: undeclared for name in chosen if name not in declared and name not in why}
    params = [name for name in chosen if name not in why]
    inits = {t.name for t in graph.initializer}
    overridable = [i.name for i in graph.input if i.name in inits and i.name not in {*params, *user_choice}]
    return ParamChoice(params, {n: why[n] for n in candidates if n in why}, reasons, overridable)


def unshare_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each top-level `Identity` of an initializer replaced by an initializer of its own
    (a copy, named by the Identity's output); the model itself when it has none.

    `torch.onnx.export` stores equal tensors once and reads the others through `Identity` nodes, so a
    freshly initialised model's zero biases, unit batch-norm weights and running statistics all share
    one initializer. Left shared, they would be one parameter: its gradient the sum over all of them,
    and a batch norm's running mean a function of some bias. Tied weights (one torch Parameter used
    twice) are one initializer read twice, without an Identity, and stay tied."""
    inits = {t.name: t for t in model.graph.initializer}
    shared = [n for n in model.graph.node if n.op_type == "Identity" and n.input and n.input[0] in inits]
    if not shared:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for n in out.graph.node if not (n.op_type == "Identity" and n.input and n.input[0] in inits)]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    for n in shared:
        copy = out.graph.initializer.add()
        copy.CopyFrom(inits[n.input[0]])
        copy.name = n.output[0]
    return out


def running_statistics(graph: onnx.GraphProto) -> list[str]:
    """The names BatchNormalization nodes read as running mean and variance, once each."""
    return list(dict.fromkeys(name for n in graph.node if n.op_type == "BatchNormalization" for name in n.input[3:5]))


def _not_params(graph: onnx.GraphProto) -> dict[str, str]:
    """The initializers that are not parameter candidates, with why."""
    static = {
        name: f"read at import time as input {i} of {n.op_type} node {n.name!r}"
        for n in graph.node
        for i, name in enumerate(n.input)
        if i in STATIC_INPUTS.get(n.op_type, ())
    }
    running = set(running_statistics(graph))
    reasons: dict[str, str] = {}
    for t in graph.initializer:
        if t.data_type not in FLOAT_TYPES:
            reasons[t.name] = f"not floating-point ({onnx.TensorProto.DataType.Name(t.data_type).lower()})"
        elif t.name in static:
            reasons[t.name] = static[t.name]
        elif t.name in running:
            reasons[t.name] = "a BatchNormalization running statistic: a buffer, not a parameter (as in PyTorch)"
    return reasons


def _select(names: list[str], patterns: Patterns, what: str) -> tuple[list[str], list[str]]:
    """The names matching `patterns` (all of them for None) and the rest; a pattern matching none of
    `names` is a `GradientError` listing them."""
    if patterns is None:
        return list(names), []
    if callable(patterns):
        matched = [n for n in names if patterns(n)]
    else:
        listed = [patterns] if isinstance(patterns, str) else list(patterns)
        unmatched = [p for p in listed if not any(fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise GradientError(
                f"{what} patterns {unmatched} match no parameter of the model; its parameters are {names} "
                "(batch-norm running statistics and shape data are not parameters)"
            )
        matched = [n for n in names if any(fnmatchcase(n, p) for p in listed)]
    return matched, [n for n in names if n not in matched]
