"""Checkpoint scopes: the forward nodes built inside `checkpoint(fn)` are recomputed for the
backward pass instead of being kept alive until it.

`checkpoint(fn)(*args)` builds fn's nodes as usual and tags them with a scope number (the node
data key `checkpoint`). When reverse mode applies the rule of a tagged node, it hands the rule
recomputed copies of the node's inputs and outputs (role "recompute"), built from the scope's
boundary values (its arguments and anything else from outside the scope). The gradient graph
then reads only the copies, so a memory planner may free the scope's activations right after
the forward pass. The forward result is unchanged; only where the backward reads from moves.
CSE keeps role "recompute" nodes apart from the originals they duplicate (merging them would
undo the checkpoint).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

from ..graph import Graph, GraphError, Tensor, Value
from ..graph.ir import current_graph

SCOPE_KEY = "checkpoint"
_scopes = itertools.count(1)


def checkpoint(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `fn` (Tensors in, Tensors out) so that reverse mode recomputes its forward nodes."""

    @functools.wraps(fn)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        graphs = {id(a.graph): a.graph for a in [*args, *kwargs.values()] if isinstance(a, Tensor)}
        if len(graphs) > 1:
            raise GraphError(f"checkpoint({fn.__name__}): the arguments come from different graphs")
        graph = next(iter(graphs.values())) if graphs else current_graph()
        first = graph.next_node_id
        result = fn(*args, **kwargs)
        scope = next(_scopes)
        for node_id in range(first, graph.next_node_id):
            if node_id in graph and not graph.node(node_id).opdef.source:
                graph.annotate(node_id, SCOPE_KEY, scope)
        return result

    return scoped


class Recomputer:
    """Maps a value to the value the backward pass should read: itself, or for a value computed
    inside a checkpoint scope, its recomputed copy (made once per gradient call)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.copies: dict[int, int] = {}

    def __call__(self, value: Value) -> Value:
        if self.graph.annotation(value.node, SCOPE_KEY) is None:
            return value
        return Value(self._copy(value.node), value.index)

    def _copy(self, node_id: int) -> int:
        """The copy of a scoped node; its scoped inputs are copied first (iteratively, since a
        scope may be deep)."""
        stack = [node_id]
        while stack:
            current = stack[-1]
            if current in self.copies:
                stack.pop()
                continue
            node = self.graph.node(current)
            pending = [v.node for v in node.inputs if self._scoped(v.node) and v.node not in self.copies]
            if pending:
                stack.extend(pending)
                continue
            inputs = [self(v) for v in node.inputs]
            self.copies[current] = self.graph.add_node(node.op, inputs, node.attrs, role="recompute").id
            stack.pop()
        return self.copies[node_id]

    def _scoped(self, node_id: int) -> bool:
        return self.graph.annotation(node_id, SCOPE_KEY) is not None
