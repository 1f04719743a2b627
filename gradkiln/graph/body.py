"""Sub-graphs held by control-flow ops: `Body` (a graph with ordered inputs and outputs), the
`BodyGraph` a body function is traced into, and `run_body`, the reference evaluator.

A body function may read tensors of the graph around it (an RNN step reads the weights): the
builder then calls `BodyGraph.capture`, which gives the outer tensor an input node of the body
and remembers it, so the control-flow op can take it as one more operand. Gradients with
respect to captured tensors flow through that operand like through any other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import sympy

from .errors import GraphError, ShapeError
from .ir import Graph, Value, current_graph
from .opdef import attrs_key, get_op
from .types import TensorType, is_symbolic

if TYPE_CHECKING:
    from .tensor import Tensor


class BodyGraph(Graph):
    """A graph a body function is traced into; reads of outer tensors become captured inputs."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.captured: dict[tuple[int, Value], tuple[Tensor, Value]] = {}

    def capture(self, outer: Tensor) -> Tensor:
        """The body-side input standing for tensor `outer` of an enclosing graph (one per value)."""
        from .tensor import Tensor

        key = (id(outer.graph), outer.value)
        if key not in self.captured:
            node = self.add_node("input", (), {"type": outer.type}, name=f"captured{len(self.captured)}")
            self.captured[key] = (outer, node.outputs[0])
        return Tensor(self, self.captured[key][1])

    def captured_tensors(self) -> list[Tensor]:
        """The outer tensors the body read, in the order they were captured."""
        return [outer for outer, _ in self.captured.values()]

    def captured_inputs(self) -> list[Value]:
        return [inner for _, inner in self.captured.values()]


def open_body() -> BodyGraph | None:
    """The innermost open graph if it is a body being traced, else None."""
    try:
        graph = current_graph()
    except GraphError:
        return None
    return graph if isinstance(graph, BodyGraph) else None


@dataclass(frozen=True, eq=False)
class Body:
    """A sub-graph with ordered inputs (input nodes) and outputs; immutable once built.

    Equal by content (`key`, a digest of every node's op, attrs, types and operands), so CSE can
    merge two control-flow nodes with the same bodies."""

    graph: Graph
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]

    @classmethod
    def make(cls, graph: Graph, inputs: Sequence[Value], outputs: Sequence[Value]) -> Body:
        """The body of `graph` computing `outputs` from `inputs`; nodes neither needs are removed."""
        keep = set(graph.needed_nodes(outputs)) | {v.node for v in inputs}
        for node_id in reversed(graph.topological_order()):
            if node_id not in keep:
                graph.remove_node(node_id)
        needed_inputs = {n.id for n in graph.inputs()} & set(graph.needed_nodes(outputs))
        stray = needed_inputs - {v.node for v in inputs}
        if stray:
            labels = ", ".join(graph.node(i).label for i in sorted(stray))
            raise GraphError(f"body '{graph.name}' reads inputs {labels} that are not among its declared inputs")
        return cls(graph, tuple(inputs), tuple(outputs))

    @property
    def input_types(self) -> tuple[TensorType, ...]:
        return tuple(self.graph.type_of(v) for v in self.inputs)

    @property
    def output_types(self) -> tuple[TensorType, ...]:
        return tuple(self.graph.type_of(v) for v in self.outputs)

    @cached_property
    def key(self) -> str:
        """A stable digest of the body's content (ops, attrs with arrays by value, types, wiring)."""
        position = {node_id: i for i, node_id in enumerate(self.nodes())}
        rows = []
        for node_id in self.nodes():
            node = self.graph.node(node_id)
            operands = tuple((position[v.node], v.index) for v in node.inputs)
            rows.append((node.op, attrs_key(node.attrs), tuple(map(str, node.types)), operands))
        ends = (tuple((position[v.node], v.index) for v in vs) for vs in (self.inputs, self.outputs))
        return hashlib.sha1(repr((rows, *ends)).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Body) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:  # by content: nested bodies' keys and cache keys stay stable
        return f"Body({self.key})"

    def __str__(self) -> str:
        ins = ", ".join(self.graph.label_of(v) for v in self.inputs)
        outs = ", ".join(self.graph.label_of(v) for v in self.outputs)
        return f"body({ins}) -> ({outs}) #{self.key[:8]}"

    def nodes(self) -> list[int]:
        """The body's node ids in topological order (cached by the graph, which stays unchanged)."""
        return self.graph.topological_order()


def run_body(body: Body, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `body` on numpy arrays, op by op (each op's `compute`), in topological order.

    Symbolic dims of the body are bound from the shapes of the arrays fed to its inputs."""
    graph = body.graph
    bindings = _bind(body, arrays)
    env: dict[Value, Any] = dict(zip(body.inputs, arrays))
    for node_id in body.nodes():
        node = graph.node(node_id)
        if node.op == "input":
            continue
        if node.op == "param":
            env[Value(node_id, 0)] = node.attrs["value"]
            continue
        attrs = {k: _resolve(v, bindings) for k, v in node.attrs.items()}
        with np.errstate(all="ignore"):
            result = get_op(node.op).compute(*(env[v] for v in node.inputs), **attrs)
        for i, r in enumerate(result if isinstance(result, tuple) else (result,)):
            env[Value(node_id, i)] = np.asarray(r)
    return [env[v] for v in body.outputs]


def _bind(body: Body, arrays: Sequence[np.ndarray]) -> dict[sympy.Symbol, int]:
    bindings: dict[sympy.Symbol, int] = {}
    for ty, array in zip(body.input_types, arrays):
        if array.ndim != ty.rank:
            raise ShapeError(f"body '{body.graph.name}': an input of type {ty} got an array of shape {array.shape}")
        for dim, size in zip(ty.shape, array.shape):
            if isinstance(dim, sympy.Symbol):
                bindings.setdefault(dim, int(size))
    return bindings


def _resolve(value: Any, bindings: dict[sympy.Symbol, int]) -> Any:
    if not bindings or not is_symbolic(value):
        return value
    if isinstance(value, sympy.Expr):
        return int(value.subs(bindings))
    return tuple(_resolve(v, bindings) for v in value)
