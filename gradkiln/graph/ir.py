"""The graph IR: a networkx.MultiDiGraph of op nodes whose edges carry (output index, input slot).

A value is (node id, output index). `Graph` hides networkx behind a small torch.fx-like API.
"""

from __future__ import annotations

import heapq
import os
import sys
import threading
from contextlib import contextmanager
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import networkx as nx
import numpy as np

from .errors import GradkilnError, GraphError
from .opdef import OpDef, get_op
from .printer import format_graph
from .types import TensorType

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class SourceLocation(NamedTuple):
    """Where user code built a node: the first stack frame outside the gradkiln package."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"


def user_source() -> SourceLocation | None:
    """The caller's first frame outside gradkiln; a frame walk, not `inspect.stack()`, to stay cheap."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return SourceLocation(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


class Value(NamedTuple):
    """One output of one node."""

    node: int
    index: int = 0


class Node:
    """A read-only view of one node of a graph."""

    __slots__ = ("graph", "id")

    def __init__(self, graph: Graph, node_id: int) -> None:
        self.graph = graph
        self.id = node_id

    @property
    def _data(self) -> dict:
        return self.graph.nx._node[self.id]

    @property
    def op(self) -> str:
        return self._data["op"]

    @property
    def opdef(self) -> OpDef:
        return get_op(self.op)

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self._data["attrs"]

    @property
    def types(self) -> tuple[TensorType, ...]:
        return self._data["types"]

    @property
    def name(self) -> str | None:
        return self._data["name"]

    @property
    def role(self) -> str:
        return self._data["role"]

    @property
    def source(self) -> SourceLocation | None:
        """The user's source line that built the node (None if built from inside gradkiln only)."""
        return self._data.get("source")

    @property
    def origin(self) -> str | None:
        """The model node an importer made this node for (the `ORIGIN` annotation): the ONNX node's
        name, where torch's exporter writes the module path ("/encoder/layer.0/attention/MatMul");
        None for a node built in Python."""
        return self.graph.annotation(self.id, ORIGIN)

    @property
    def built_at(self) -> str:
        """Where the node was built, for error messages: the model node it was imported for, else
        the user's line."""
        if self.origin is not None:
            return f"ONNX node {self.origin!r}"
        return str(self.source or "an unknown place (inside gradkiln)")

    @property
    def label(self) -> str:
        """How the node is written in printed graphs and error messages: `%name` or `%id`."""
        return f"%{self.name if self.name is not None else self.id}"

    @property
    def inputs(self) -> list[Value]:
        return self.graph.inputs_of(self.id)

    @property
    def outputs(self) -> list[Value]:
        return [Value(self.id, i) for i in range(len(self.types))]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other.graph is self.graph and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Node {self.label} = {self.op}>"


ORIGIN = "origin"  # the annotation naming the model node an importer made a node for (`Node.origin`)
_CORE_FIELDS = frozenset({"op", "attrs", "types", "name", "role", "source"})


def _annotation_key(key: str) -> str:
    if key in _CORE_FIELDS:
        raise GraphError(f"{key!r} is a field of every node, not an annotation; pick another key")
    return key


_current = threading.local()
# Graph -> SVG text (or None), set by gradkiln.viz on import: the IR cannot import viz itself
_svg_renderer: Callable[[Graph], str | None] | None = None


def set_svg_renderer(renderer: Callable[[Graph], str | None] | None) -> None:
    """Install the function `Graph._repr_svg_` calls (gradkiln.viz installs its renderer)."""
    global _svg_renderer
    _svg_renderer = renderer


def current_graph() -> Graph:
    """The innermost graph opened with `with Graph(...)`."""
    stack = getattr(_current, "stack", [])
    if not stack:
        raise GraphError("no graph is open: build inside `with gk.Graph('name') as g:`")
    return stack[-1]


class Graph:
    """A static computation graph. Use as a context manager to build into it."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nx = nx.MultiDiGraph()
        self._next_id = 0
        self._names: dict[str, int] = {}
        self._order: list[int] | None = None
        self.role = "forward"

    # -- building -----------------------------------------------------------------------------
    @contextmanager
    def building_as(self, role: str) -> Iterator[None]:
        """Tag the nodes added inside the block with `role` (e.g. "grad"; viz colours by role)."""
        previous, self.role = self.role, role
        try:
            yield
        finally:
            self.role = previous

    def __enter__(self) -> Graph:
        if not hasattr(_current, "stack"):
            _current.stack = []
        _current.stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.stack.pop()

    def add_node(
        self,
        op: str,
        inputs: Sequence[Value] = (),
        attrs: Mapping[str, Any] | None = None,
        name: str | None = None,
        role: str | None = None,
    ) -> Node:
        """Type-check and add one node; errors name the op, the operands and their types."""
        opdef = get_op(op)
        attrs = dict(attrs or {})
        inputs = [Value(*v) for v in inputs]
        if opdef.num_inputs is not None and len(inputs) != opdef.num_inputs:
            raise GraphError(f"op '{op}' takes {opdef.num_inputs} inputs, got {len(inputs)}")
        for v in inputs:
            if v.node not in self.nx or v.index >= len(self.nx.nodes[v.node]["types"]):
                raise GraphError(f"op '{op}': input {v} is not a value of graph '{self.name}'")
        in_types = [self.type_of(v) for v in inputs]
        try:
            types = tuple(opdef.infer(*in_types, **attrs))
        except GradkilnError as err:
            operands = ", ".join(f"{self.label_of(v)}: {self.type_of(v)}" for v in inputs)
            raise type(err)(f"{op}({operands}): {err}") from None
        if name is not None and name in self._names:
            raise GraphError(f"graph '{self.name}' already has a node named {name!r}; names must be unique")
        node_id = self._next_id
        self._next_id += 1
        self.nx.add_node(
            node_id, op=op, attrs=attrs, types=types, name=name, role=role or self.role, source=user_source()
        )
        if name is not None:
            self._names[name] = node_id
        for slot, v in enumerate(inputs):
            self.nx.add_edge(v.node, node_id, out=v.index, slot=slot)
        self._order = None
        return Node(self, node_id)

    def remove_node(self, node_id: int) -> None:
        """Remove a node that has no users."""
        if self.nx.out_degree(node_id):
            raise GraphError(f"cannot remove {self.node(node_id).label}: it still has users")
        name = self.nx.nodes[node_id]["name"]
        if name is not None:
            del self._names[name]
        self.nx.remove_node(node_id)
        self._order = None

    def replace_all_uses_with(self, old: Value, new: Value) -> None:
        """Make every consumer of `old` read `new` instead (types must agree)."""
        if self.type_of(old) != self.type_of(new):
            raise GraphError(
                f"cannot replace {self.label_of(old)}: {self.type_of(old)} with "
                f"{self.label_of(new)}: {self.type_of(new)}"
            )
        for user, keyed in list(self.nx._succ[old.node].items()):
            for key, data in list(keyed.items()):
                if data["out"] == old.index:
                    self.nx.remove_edge(old.node, user, key)
                    self.nx.add_edge(new.node, user, out=new.index, slot=data["slot"])
        self._order = None

    def replace_uses_in(self, users: Iterable[int], old: Value, new: Value) -> None:
        """Make only the consumers `users` of `old` read `new` instead (types must agree)."""
        if self.type_of(old) != self.type_of(new):
            raise GraphError(f"cannot replace {self.label_of(old)}: {self.type_of(old)} with {self.type_of(new)}")
        for user in set(users):
            for key, data in list(self.nx.get_edge_data(old.node, user, default={}).items()):
                if data["out"] == old.index:
                    self.nx.remove_edge(old.node, user, key)
                    self.nx.add_edge(new.node, user, out=new.index, slot=data["slot"])
        self._order = None

    def copy(self, name: str | None = None) -> Graph:
        """An independent copy with the same node ids (so Values carry over)."""
        clone = Graph(name or self.name)
        clone.nx = self.nx.copy()
        clone._next_id, clone._names, clone.role = self._next_id, dict(self._names), self.role
        return clone

    # -- queries ------------------------------------------------------------------------------
    def node(self, node_id: int) -> Node:
        if node_id not in self.nx:
            raise GraphError(f"graph '{self.name}' has no node {node_id}")
        return Node(self, node_id)

    def __contains__(self, node_id: int) -> bool:
        return node_id in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def op_of(self, node_id: int) -> str:
        """The op name of a node (the cheap form of `graph.node(i).op` for hot loops)."""
        return self.nx._node[node_id]["op"]

    def type_of(self, value: Value) -> TensorType:
        return self.nx._node[value.node]["types"][value.index]

    def label_of(self, value: Value) -> str:
        label = Node(self, value.node).label
        return label if value.index == 0 else f"{label}.{value.index}"

    def inputs_of(self, node_id: int) -> list[Value]:
        # the adjacency dicts directly: networkx's edge views cost several times more on hot paths
        edges = [
            (data["slot"], src, data["out"]) for src, keyed in self.nx._pred[node_id].items() for data in keyed.values()
        ]
        edges.sort()
        return [Value(src, out) for _, src, out in edges]

    def users_of(self, value: Value) -> list[tuple[int, int]]:
        """(consumer node id, input slot) for each use of `value`."""
        return [
            (dst, data["slot"])
            for dst, keyed in self.nx._succ[value.node].items()
            for data in keyed.values()
            if data["out"] == value.index
        ]

    def producers_of(self, node_id: int) -> set[int]:
        """The distinct nodes whose outputs `node_id` reads."""
        return set(self.nx._pred[node_id])

    def consumers_of(self, node_id: int) -> set[int]:
        """The distinct nodes that read an output of `node_id` (empty: nothing uses it)."""
        return set(self.nx._succ[node_id])

    def has_users(self, node_id: int) -> bool:
        """Whether any node reads an output of `node_id`."""
        return bool(self.nx._succ[node_id])

    def use_count(self, node_id: int) -> int:
        """How many times the outputs of `node_id` are read (`x * x` reads x twice)."""
        return sum(map(len, self.nx._succ[node_id].values()))

    def role_of(self, node_id: int) -> str:
        """The role of a node ("forward", "grad", "recompute", ...), cheap for hot loops."""
        return self.nx._node[node_id]["role"]

    def attrs_of(self, node_id: int) -> Mapping[str, Any]:
        """The attributes of a node, cheap for hot loops."""
        return self.nx._node[node_id]["attrs"]

    def node_ids(self) -> Iterator[int]:
        """Every node id, in the order the nodes were added (not necessarily topological)."""
        return iter(self.nx._node)

    @property
    def next_node_id(self) -> int:
        """The id the next added node gets: nodes with this id or above are newer than now."""
        return self._next_id

    def annotation(self, node_id: int, key: str, default: Any = None) -> Any:
        """A pass's own mark on a node (say, the checkpoint scope it belongs to), or `default`.
        Annotations travel with the node through `copy`."""
        return self.nx._node[node_id].get(_annotation_key(key), default)

    def annotate(self, node_id: int, key: str, value: Any) -> None:
        """Set a pass's mark `key` on a node."""
        self.nx._node[node_id][_annotation_key(key)] = value

    def clear_annotation(self, node_id: int, key: str) -> None:
        """Remove the mark `key` from a node if it has one."""
        self.nx._node[node_id].pop(_annotation_key(key), None)

    def number_of_edges(self) -> int:
        """How many edges (uses of values) the graph has; cheaper than networkx's own count."""
        return sum(map(len, chain.from_iterable(map(dict.values, self.nx._succ.values()))))

    def by_name(self, name: str) -> Node:
        try:
            return Node(self, self._names[name])
        except KeyError:
            raise GraphError(f"graph '{self.name}' has no node named {name!r}") from None

    def nodes(self) -> Iterator[Node]:
        """Every node in topological order."""
        return (Node(self, i) for i in self.topological_order())

    def topological_order(self) -> list[int]:
        """Node ids in topological order, the smallest ready id first (so the order is
        deterministic); Kahn's algorithm over the adjacency dicts, cached until the graph changes."""
        if self._order is None:
            pred, succ = self.nx._pred, self.nx._succ
            waiting = {n: len(producers) for n, producers in pred.items()}
            ready = [n for n, count in waiting.items() if not count]
            heapq.heapify(ready)
            order = []
            while ready:
                node_id = heapq.heappop(ready)
                order.append(node_id)
                for user in succ[node_id]:
                    waiting[user] -= 1
                    if not waiting[user]:
                        heapq.heappush(ready, user)
            if len(order) != len(pred):
                raise GraphError(f"graph '{self.name}' has a cycle; a computation graph must be acyclic")
            self._order = order
        return self._order

    def nodes_of(self, op: str) -> list[Node]:
        return [n for n in self.nodes() if n.op == op]

    def inputs(self) -> list[Node]:
        return self.nodes_of("input")

    def params(self) -> list[Node]:
        return self.nodes_of("param")

    def param_values(self) -> dict[str, np.ndarray]:
        return {n.name: n.attrs["value"] for n in self.params()}

    def needed_nodes(self, outputs: Iterable[Value]) -> list[int]:
        """The nodes the given outputs depend on, in topological order."""
        stack = [v.node for v in outputs]
        needed = set(stack)
        producers = self.nx._pred
        while stack:
            for pred in producers[stack.pop()]:
                if pred not in needed:
                    needed.add(pred)
                    stack.append(pred)
        return [i for i in self.topological_order() if i in needed]

    def __str__(self) -> str:
        return format_graph(self)

    def _repr_svg_(self) -> str | None:
        """Inline display in Jupyter: SVG when gradkiln.viz is loaded and Graphviz is installed
        (None otherwise, so the notebook shows the text form)."""
        return None if _svg_renderer is None else _svg_renderer(self)
