"""What the transformations (reverse, forward, batching) share: argument checks and the walks
that select the nodes between some inputs and some outputs."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..graph import GradientError, Graph, Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_inexact
from ..graph.types import same_type


def paired(outputs: Tensor | Sequence[Tensor], values: Any, what: str) -> tuple[list[Tensor], list[Any]]:
    """Outputs as a list, with one value (a seed, cotangent or tangent; or None) each."""
    if isinstance(outputs, Tensor):  # one value, or a list of one Tensor as torch.autograd.grad takes
        one_tensor = isinstance(values, (list, tuple)) and len(values) == 1 and isinstance(values[0], Tensor)
        return [outputs], [values[0] if one_tensor else values]
    outs = list(outputs)
    if values is None:
        return outs, [None] * len(outs)
    if not isinstance(values, (list, tuple)) or len(values) != len(outs):
        raise GradientError(f"for {len(outs)} tensors, pass `{what}` as a list of {len(outs)} (entries may be None)")
    return outs, list(values)


def as_list(tensors: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def common_graph(tensors: list[Tensor]) -> Graph:
    for t in tensors:
        if not isinstance(t, Tensor):
            raise GradientError(f"outputs and inputs must be Tensors, got {type(t).__name__}")
    graphs = {id(t.graph): t.graph for t in tensors}
    if len(graphs) != 1:
        raise GradientError("outputs and inputs come from different graphs; differentiate within one graph")
    return tensors[0].graph


def require_float(kind: str, tensors: list[Tensor]) -> None:
    for t in tensors:
        if not is_inexact(t.dtype):
            raise GradientError(
                f"cannot differentiate {kind} {t.name} of type {t.type}: it must be a float tensor (or a complex one)"
            )


def nodes_between(graph: Graph, inputs: list[Tensor], outputs: list[Tensor]) -> list[int]:
    """The nodes on some path from an input to an output, in topological order."""
    needed = graph.needed_nodes([t.value for t in outputs])
    reached = {t.value.node for t in inputs}
    for node_id in needed:
        if node_id not in reached and any(p in reached for p in graph.producers_of(node_id)):
            reached.add(node_id)
    return [node_id for node_id in needed if node_id in reached]


def remove_unneeded(graph: Graph, first_new: int, results: list[Tensor]) -> None:
    """Remove the nodes added since `first_new` that no result needs, users first."""
    keep = set(graph.needed_nodes([r.value for r in results]))
    for node_id in sorted((i for i in graph.node_ids() if i >= first_new and i not in keep), reverse=True):
        graph.remove_node(node_id)


def as_tensor_for(of: Tensor, value: Any, what: str) -> Tensor:
    """`value` (a Tensor or an array) as a Tensor of the type of `of`, for use as its `what`
    (a seed, cotangent or tangent), checked against that type."""
    if isinstance(value, Tensor):
        if value.graph is not of.graph or not same_type(value.type, of.type):
            raise GradientError(f"the {what} {value!r} for {of.name} must be a {of.type} tensor of its graph")
        return value
    try:
        array = np.asarray(value, dtype=of.dtype)
    except (TypeError, ValueError) as err:
        raise GradientError(
            f"the {what} for {of.name} must be a {of.type} Tensor or array, got {type(value).__name__}: {err}"
        ) from err
    if not of.type.is_static:
        raise GradientError(
            f"{of.name} has symbolic shape {of.type}: seed it with a Tensor, e.g. gk.input('{what}', shape)"
        )
    if array.shape != of.shape:
        raise GradientError(f"the {what} for {of.name} has shape {array.shape}, expected {of.type}")
    return gb.constant(array, graph=of.graph)
