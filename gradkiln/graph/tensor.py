"""`Tensor`: the user's handle on a graph value, with Python operators that build nodes."""

from __future__ import annotations

from .errors import GraphError
from .ir import Graph, Node, Value
from .types import Dim, TensorType


class Tensor:
    """A symbolic value of a graph: (graph, Value). Operators add nodes; nothing is computed.

    The operators (`x + y`, `x[i]`, `x < 0`) and numpy-style methods (`x.sum()`, `x.T`) are the
    builder's functions; `graph/builder/operators.py` installs them when the builder loads (as JAX
    installs its array methods), so this module needs nothing from the builder."""

    __slots__ = ("graph", "value")
    __array_priority__ = 1000  # numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, graph: Graph, value: Value) -> None:
        self.graph = graph
        self.value = value

    @property
    def node(self) -> Node:
        return self.graph.node(self.value.node)

    @property
    def type(self) -> TensorType:
        return self.graph.type_of(self.value)

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.rank

    @property
    def name(self) -> str:
        return self.graph.label_of(self.value)[1:]

    def __repr__(self) -> str:
        return f"<Tensor {self.graph.label_of(self.value)}: {self.type}>"

    def __bool__(self) -> bool:
        raise GraphError("a symbolic tensor has no truth value; use gk.where(cond, a, b) to select")

    __hash__ = object.__hash__  # a Tensor is a dict key by identity; `==` builds an `equal` node
