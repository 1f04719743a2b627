"""The importer's last step: evaluate what its rules built over constants where the importer
evaluates the same ONNX ops over known values, so that import -> export -> import is stable."""

from __future__ import annotations

import math

import numpy as np

from ..graph import Graph, Node, Tensor, Value
from ..graph.dtypes import is_int
from .import_limits import ImportBudget

# gradkiln ops the importer evaluates when their ONNX counterparts meet known values (shape_rules)
_FOLDED_SHAPE_OPS = frozenset({"expand_dims", "squeeze", "reshape", "slice", "concat", "take", "where"})
_FOLDED_COMPARISONS = frozenset({"equal", "not_equal", "less", "less_equal", "greater", "greater_equal"})


def fold_as_import_would(graph: Graph, outputs: dict[str, Tensor], budget: ImportBudget) -> dict[str, Tensor]:
    """Evaluate the nodes that rules built over constants where the importer evaluates the same
    ONNX ops over known values (shape arithmetic: integer elementwise ops, comparisons, shape
    ops; Hardmax's index arithmetic, an unrolled Loop over known values), so that a model imports
    as the graph its export imports as: import -> export -> import is stable. Float arithmetic
    on constants stays as written, as in ONNX. The folded nodes stay (unused): other tensors a
    rule made may refer to them. Each folded value is charged to the import's `budget` first.
    Returns `outputs`, the folded ones replaced."""
    replaced: dict[Value, Value] = {}
    for node in list(graph.nodes()):
        if not _folds(graph, node):
            continue
        budget.value(node.types[0].shape, f"folding the {node.op} node {node.label} at the end of the import")
        args = [graph.node(v.node).attrs["value"] for v in node.inputs]
        with np.errstate(all="ignore"):
            result = node.opdef.compute(*args, **node.attrs)
        value = np.array(result, dtype=node.types[0].dtype)
        const = graph.add_node("constant", (), {"value": value}).outputs[0]
        graph.replace_all_uses_with(node.outputs[0], const)
        replaced[node.outputs[0]] = const
    return {name: Tensor(graph, replaced.get(t.value, t.value)) for name, t in outputs.items()}


def _folds(graph: Graph, node: Node) -> bool:
    if node.opdef.source or len(node.outputs) != 1 or not node.types[0].is_static or not node.inputs:
        return False
    inputs = [graph.node(v.node) for v in node.inputs]
    if any(i.op != "constant" for i in inputs) or math.prod(node.types[0].shape) > _FOLD_LIMIT:
        return False
    if node.op in _FOLDED_SHAPE_OPS or node.op in _FOLDED_COMPARISONS:
        return True
    return node.opdef.elementwise and any(is_int(i.types[0].dtype) for i in inputs)


_FOLD_LIMIT = 1 << 16  # elements: folding must not bloat the graph
