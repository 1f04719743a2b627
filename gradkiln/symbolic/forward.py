"""Forward-mode autodiff, source to source: `jvp` adds the tangent graph to the graph.

The nodes on a path from an input to an output are walked once in topological order; each
node's rule (see `jvp_rules`) maps the tangents of its inputs to the tangent of its output.
None stands for a zero tangent, so nodes that only see zero tangents emit nothing. New nodes
have role "grad" and are ordinary nodes: `jvp` of a `grad` graph is forward-over-reverse
(Hessian-vector products), and `vmap` can batch a jvp over many tangents (Jacobians).

The inputs are independent variables: an input computed from another input gets its seeded
tangent added to the one propagated to it, so `jvp` is the transpose of `vjp` in every case
(<jvp(v), u> == <v, vjp(u)>).
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

from ..graph import GradientError, Node, ShapeError, Tensor, UnsupportedOpError, Value
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.dtypes import is_inexact
from .jvp_rules import JVP_RULES
from .vjp_rules import NON_DIFFERENTIABLE
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


def jvp(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor], tangents: Any) -> list[Tensor]:
    """The Jacobian-vector products sum_i d outputs[k] / d inputs[i] . tangents[i], one per output.

    Each tangent is a Tensor of its input's type or an array of its (static) shape. An output
    that does not depend on the inputs gets a zero tangent.
    """
    wrt, seeds = paired(inputs, tangents, "tangents")
    outs = as_list(outputs)
    graph = common_graph([*outs, *wrt])
    require_float("input", wrt)
    path = nodes_between(graph, wrt, outs)
    first_new = graph.next_node_id
    with graph, graph.building_as("grad"):  # open, so that rules may call gk.constant
        seeded: dict[Value, Tensor] = {}
        for x, t in zip(wrt, seeds):
            _accumulate(seeded, x.value, as_tensor_for(x, t, "tangent"))
        known: dict[Value, Tensor] = {}
        for node_id in path:
            node = graph.node(node_id)
            in_tangents = [known.get(v) for v in node.inputs]
            out_tangents: Sequence[Tensor | None] = [None] * len(node.types)
            if node.op not in NON_DIFFERENTIABLE and any(t is not None for t in in_tangents):
                out_tangents = _apply_rule(node, in_tangents)
            for value, t in zip(node.outputs, out_tangents):
                if t is not None:
                    _accumulate(known, value, t)
                if value in seeded:
                    _accumulate(known, value, seeded[value])
        results = [known[out.value] if out.value in known else zeros_like(out) for out in outs]
    remove_unneeded(graph, first_new, results)
    return results


def _accumulate(tangents: dict[Value, Tensor], value: Value, t: Tensor) -> None:
    tangents[value] = t if value not in tangents else gb.add(tangents[value], t)


def _apply_rule(node: Node, tangents: list[Tensor | None]) -> list[Tensor | None]:
    """Call the op's rule, then fit each tangent to its output (broadcast) and check its type;
    tangents of non-float outputs are dropped (they are zero)."""
    rule = JVP_RULES.get(node.op)
    if rule is None:
        raise UnsupportedOpError(
            f"no jvp rule for op '{node.op}' (node {node.label}); register one with "
            f"@gradkiln.symbolic.register_jvp('{node.op}')"
        )
    graph = node.graph
    inputs = tuple(Tensor(graph, v) for v in node.inputs)
    outputs = tuple(Tensor(graph, v) for v in node.outputs)
    if len(outputs) == 1:
        results = [rule(inputs, outputs[0], tangents, **node.attrs)]
    else:
        results = list(rule(inputs, outputs, tangents, **node.attrs))
    return [_fitted(node, out, t) for out, t in zip(outputs, results)]


def _fitted(node: Node, out: Tensor, t: Tensor | None) -> Tensor | None:
    if t is None or not is_inexact(out.dtype):
        return None
    return fit_tangent(t, out, f"'{node.op}' ({node.label})")


def fit_tangent(t: Tensor, out: Tensor, rule: str) -> Tensor:
    """A tangent that a jvp `rule` returned, broadcast to its output's type where it is narrower;
    a GradientError naming the rule when it cannot have that type."""
    if t.ndim <= out.ndim and not same_type(t.type, out.type):
        with contextlib.suppress(ShapeError):  # reported below, with the rule that made it
            t = gb.broadcast_to(t, out.shape)
    if not same_type(t.type, out.type):
        raise GradientError(
            f"the jvp rule of {rule} returned a tangent of type {t.type} for an output "
            f"of type {out.type}; a tangent must have its output's type (or broadcast to it)"
        )
    return t
