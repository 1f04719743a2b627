"""Reverse-mode autodiff, source to source: `grad` and `vjp` add the gradient graph to the graph.

Like PyTensor's `grad` (not a tape): the nodes on a path from an input to an output are
walked once in reverse topological order; each node's rule (see `vjp_rules`) maps the
cotangent of its output to cotangents of its inputs, and contributions to one value are
summed. Every node added is tagged with role "grad" and is an ordinary node, so the result
can be compiled, exported, rendered or differentiated again. Nodes a rule emitted that no
requested gradient needs (the cotangent of a constant operand, say) are removed again.

An input that the outputs do not depend on is an error unless `allow_unused=True`; then its
gradient is zeros of its shape (as in JAX; PyTorch returns None), so the result is always a
list of Tensors. An input that the outputs reach only through non-differentiable ops
(comparisons, `sign`, ...) also gets zeros.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..graph import GradientError, Graph, Node, Tensor, UnsupportedOpError, Value
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.dtypes import is_complex
from ..graph.types import shape_size
from .checkpoint import Recomputer
from .vjp_rules import NON_DIFFERENTIABLE, VJP_RULES
from .walk import (
    as_list,
    as_tensor_for,
    common_graph,
    nodes_between,
    paired,
    remove_unneeded,
    require_float,
    same_type,
)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    seed: Any = None,
    allow_unused: bool = False,
) -> list[Tensor]:
    """The gradients of `outputs` with respect to each of `inputs`, as new nodes of their graph.

    A scalar output is seeded with 1; a non-scalar one needs `seed` (a Tensor, or an array of
    the output's shape), which makes the result a vector-Jacobian product. For a list of
    outputs, `seed` is None or a list with one seed (or None) per output; gradients of several
    outputs are summed.
    """
    outs, seeds = paired(outputs, seed, "seed")
    cotangents = [_default_seed(out) if s is None else s for out, s in zip(outs, seeds)]
    return vjp(outs, inputs, cotangents, allow_unused=allow_unused)


def vjp(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    cotangents: Any,
    *,
    allow_unused: bool = False,
) -> list[Tensor]:
    """The vector-Jacobian products sum_k cotangents[k] . d outputs[k] / d inputs[i], one per input.

    Each cotangent is a Tensor of its output's type or an array of its (static) shape.
    """
    outs, cts = paired(outputs, cotangents, "cotangents")
    wrt = as_list(inputs)
    graph = common_graph([*outs, *wrt])
    require_float("output", outs)
    require_float("input", wrt)
    path = nodes_between(graph, wrt, outs)
    on_path = set(path)
    first_new = graph.next_node_id
    with graph, graph.building_as("grad"):  # open, so that rules may call gk.constant
        grads: dict[Value, Tensor] = {}
        for out, ct in zip(outs, cts):
            _accumulate(grads, out.value, as_tensor_for(out, ct, "seed"))
        _backpropagate(graph, path, on_path, grads)
        results = [_gradient_of(t, grads, t.value.node in on_path, allow_unused) for t in wrt]
    remove_unneeded(graph, first_new, results)
    return results


def value_and_grad(
    output: Tensor, inputs: Tensor | Sequence[Tensor], seed: Any = None, allow_unused: bool = False
) -> tuple[Tensor, list[Tensor]]:
    """`(output, grad(output, inputs))`: the value and its gradients, to compile together."""
    return output, grad(output, inputs, seed=seed, allow_unused=allow_unused)


def _backpropagate(graph: Graph, path: list[int], on_path: set[int], grads: dict[Value, Tensor]) -> None:
    """The core walk: apply each node's rule once, last node first, summing per value."""
    recompute = Recomputer(graph)
    for node_id in reversed(path):
        node = graph.node(node_id)
        cotangents = [grads.get(v) for v in node.outputs]
        if (
            node.op in NON_DIFFERENTIABLE
            or all(ct is None for ct in cotangents)
            or not any(v.node in on_path for v in node.inputs)
        ):
            continue
        for value, ct in zip(node.inputs, _apply_rule(node, cotangents, recompute)):
            if ct is not None and value.node in on_path:
                _accumulate(grads, value, ct)


def _apply_rule(node: Node, cotangents: list[Tensor | None], recompute: Recomputer) -> Sequence[Tensor | None]:
    """Call the op's rule on Tensors of the node (recomputed copies inside checkpoint scopes),
    then check it returned one fitting cotangent (or None) per input, so a faulty custom rule
    is reported where it is."""
    rule = VJP_RULES.get(node.op)
    if rule is None:
        raise UnsupportedOpError(
            f"no gradient rule for op '{node.op}' (node {node.label}); register one with "
            f"@gradkiln.symbolic.register_vjp('{node.op}'), returning None for inputs without a gradient"
        )
    graph = node.graph
    inputs = tuple(Tensor(graph, recompute(v)) for v in node.inputs)
    outputs = tuple(Tensor(graph, recompute(v)) for v in node.outputs)
    filled = tuple(zeros_like(out) if ct is None else ct for out, ct in zip(outputs, cotangents))
    if len(outputs) == 1:
        results = rule(inputs, outputs[0], filled[0], **node.attrs)
    else:
        results = rule(inputs, outputs, filled, **node.attrs)
    if len(results) != len(inputs):
        raise GradientError(
            f"the gradient rule of '{node.op}' ({node.label}) returned {len(results)} cotangents for "
            f"{len(inputs)} inputs; return one Tensor or None per input"
        )
    for slot, (x, ct) in enumerate(zip(inputs, results)):
        if ct is not None and not same_type(ct.type, x.type):
            raise GradientError(
                f"the gradient rule of '{node.op}' ({node.label}) returned a cotangent of type {ct.type} "
                f"for input {slot}, which has type {x.type}; a cotangent must have its input's type"
            )
    return results


def _accumulate(grads: dict[Value, Tensor], value: Value, cotangent: Tensor) -> None:
    grads[value] = cotangent if value not in grads else gb.add(grads[value], cotangent)


def _gradient_of(x: Tensor, grads: dict[Value, Tensor], depended_on: bool, allow_unused: bool) -> Tensor:
    if x.value in grads:
        return grads[x.value]
    if depended_on or allow_unused:
        return zeros_like(x)
    raise GradientError(
        f"the outputs do not depend on input {x.name} ({x.type}); drop it from the inputs, or pass "
        "allow_unused=True to get zeros for it"
    )


def _default_seed(out: Tensor) -> np.ndarray:
    if is_complex(out.dtype):
        raise GradientError(
            f"output {out.name} is complex ({out.type}); differentiate a real loss of it (gk.abs, gk.real), or pass "
            "seed= (as torch, which implicitly seeds real scalar outputs only)"
        )
    if not (out.type.is_static and shape_size(out.shape) == 1):
        raise GradientError(
            f"output {out.name} has shape {out.type}, not a scalar; reduce it (gk.sum, gk.mean) or pass "
            f"seed= (a Tensor or an array of its shape) to get a vector-Jacobian product"
        )
    return np.ones(out.shape, out.dtype)
