"""One pattern matcher and one rewrite engine; local rewrites are written as rule tables over it.

As in tinygrad's `PatternMatcher`, a rewrite is data: a `Rule` pairs a `Pat` (an op name or a
set of them, operand sub-patterns, captures, attribute values and a predicate) with a builder
that receives the `Match` and returns the value that replaces the matched one (or None to
decline). `rewrite` applies a rule table bottom-up to a fixpoint: one topological sweep, then a
worklist of the nodes rewrites touched; each visit tries only the rules keyed by the node's op.

    Rule("mul_one", P("mul", V("x"), C(1)), lambda m: m.fit(m["x"]))

A name captured twice must bind the same value (`P("sub", V("x"), V("x"))` is x - x); the
operands of commutative ops are tried in both orders.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..graph import Graph, ShapeError, TensorType, Value
from ..graph.types import broadcast_shapes
from .manager import PassContext

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "equal", "not_equal"})
VIEW_OPS = frozenset({"broadcast_to", "expand_dims", "squeeze", "reshape", "transpose"})  # keep every element
CONSTANT_VIEWS = VIEW_OPS | {"constant"}  # the ops a value `source_constant` sees through can have


@dataclass(frozen=True)
class Pat:
    """A pattern over one value: `op` (None: any), operand patterns (None: any operands),
    a capture `name`, required attribute values and a predicate `where(match, value)`."""

    op: frozenset[str] | None = None
    args: tuple[Pat, ...] | None = None
    name: str | None = None
    attrs: tuple[tuple[str, Any], ...] = ()
    where: Callable[[Match, Value], bool] | None = None


def P(op: str | Iterable[str], *args: Pat, name: str | None = None, where: Any = None, **attrs: Any) -> Pat:  # noqa: N802
    """A pattern for a node of `op` (a name or several) whose operands match `args`."""
    ops = frozenset([op] if isinstance(op, str) else op)
    return Pat(ops, args or None, name, tuple(sorted(attrs.items())), where)


def V(name: str | None = None, where: Callable[[Match, Value], bool] | None = None) -> Pat:  # noqa: N802
    """Any value, captured as `name`."""
    return Pat(name=name, where=where)


def C(value: float, name: str | None = None) -> Pat:  # noqa: N802
    """A value whose every element is `value`: a constant, possibly broadcast or reshaped (the
    op set lets a match fail before looking through views)."""
    return Pat(CONSTANT_VIEWS, name=name, where=lambda m, v: m.uniform(v) == value)


def constant_array(graph: Graph, value: Value) -> np.ndarray | None:
    """The array of a constant node, else None."""
    return graph.attrs_of(value.node)["value"] if graph.op_of(value.node) == "constant" else None


def source_constant(graph: Graph, value: Value) -> np.ndarray | None:
    """The constant `value` is made of, seen through ops that only move or repeat elements
    (broadcast_to, reshape, ...): every element of `value` is one of its elements. Else None."""
    while graph.op_of(value.node) in VIEW_OPS:
        value = graph.inputs_of(value.node)[0]
    return constant_array(graph, value)


def uniform_value(graph: Graph, value: Value) -> float | None:
    """The single value every element of `value` has, when `source_constant` knows it; else None."""
    array = source_constant(graph, value)
    if array is None or array.size == 0:
        return None
    first = array.flat[0]
    return first.item() if (array == first).all() else None


@dataclass
class Match:
    """What a pattern bound: `m["x"]` is the captured value; helpers build replacements."""

    graph: Graph
    root: Value
    ctx: PassContext
    captures: dict[str, Value]
    emitted: list[int] = field(default_factory=list)
    # facts shared by the rules tried at one node: inputs by node id, uniform values by Value
    memo: dict[Any, Any] = field(default_factory=dict)

    def inputs(self, node_id: int) -> list[Value]:
        if node_id not in self.memo:
            self.memo[node_id] = self.graph.inputs_of(node_id)
        return self.memo[node_id]

    def uniform(self, value: Value) -> float | None:
        """`uniform_value` of `value`, looked up once per node visit (several rules ask)."""
        if value not in self.memo:
            self.memo[value] = uniform_value(self.graph, value)
        return self.memo[value]

    def __getitem__(self, name: str) -> Value:
        return self.captures[name]

    def type(self, value: Value | str) -> TensorType:
        return self.graph.type_of(self[value] if isinstance(value, str) else value)

    def attrs(self, value: Value | str) -> Mapping[str, Any]:
        node = (self[value] if isinstance(value, str) else value).node
        return self.graph.attrs_of(node)

    @property
    def root_type(self) -> TensorType:
        return self.graph.type_of(self.root)

    def users(self, name: str) -> int:
        """How many uses the captured value has (a rewrite must not duplicate shared work)."""
        return len(self.graph.users_of(self[name]))

    def emit(self, op: str, *inputs: Value, **attrs: Any) -> Value:
        """Add a node with the role of the matched node; returns its value."""
        role = self.graph.role_of(self.root.node)
        node = self.graph.add_node(op, inputs, attrs, role=role)
        self.emitted.append(node.id)
        return node.outputs[0]

    def constant(self, array: np.ndarray) -> Value:
        return self.emit("constant", value=np.array(array, order="C"))

    def fill(self, scalar: float, type: TensorType) -> Value:
        """`scalar` in every element of `type` (a broadcast scalar: symbolic dims stay symbolic)."""
        value = self.constant(np.asarray(scalar, dtype=type.dtype))
        return value if not type.shape else self.emit("broadcast_to", value, shape=type.shape)

    def fit(self, value: Value) -> Value | None:
        """`value` with the matched value's exact type: itself, or broadcast up to its shape;
        None when the dtype differs or the shapes are not identical after broadcasting."""
        have, want = self.graph.type_of(value), self.root_type
        if have == want:
            return value
        if have.dtype != want.dtype or have.rank > want.rank:
            return None
        try:
            if broadcast_shapes(have.shape, want.shape) != want.shape:
                return None
        except ShapeError:
            return None
        return self.emit("broadcast_to", value, shape=want.shape)


Builder = Callable[[Match], "Value | None"]


@dataclass(frozen=True)
class Rule:
    """A named rewrite: where `pattern` matches, `build(match)` gives the replacement."""

    name: str
    pattern: Pat
    build: Builder


def match(graph: Graph, pattern: Pat, value: Value, ctx: PassContext, memo: dict | None = None) -> Match | None:
    """Match `pattern` at `value`; the Match holds the captures (`memo`: see `Match.memo`)."""
    m = Match(graph, value, ctx, {}, memo=memo if memo is not None else {})
    return m if _match(pattern, value, m) else None


def _match(pat: Pat, value: Value, m: Match) -> bool:
    if pat.name is not None and m.captures.get(pat.name, value) != value:
        return False
    op = m.graph.op_of(value.node)
    if pat.op is not None and op not in pat.op:
        return False
    if pat.attrs and any(m.graph.attrs_of(value.node).get(k) != v for k, v in pat.attrs):
        return False
    if pat.args is not None and not _match_operands(pat.args, m.inputs(value.node), op in COMMUTATIVE, m):
        return False
    if pat.name is not None:
        m.captures[pat.name] = value
    return pat.where is None or bool(pat.where(m, value))


def _match_operands(pats: tuple[Pat, ...], inputs: list[Value], commutative: bool, m: Match) -> bool:
    """Match the operands in order, or for a commutative binary op also swapped; a failed try
    leaves the captures as they were."""
    if len(inputs) != len(pats):
        return False
    orders = (inputs, inputs[::-1]) if commutative and len(inputs) == 2 else (inputs,)
    for order in orders:
        saved = m.captures.copy()
        if all(_match(p, v, m) for p, v in zip(pats, order)):
            return True
        m.captures = saved
    return False


def _rules_by_op(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    table: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.pattern.op is None:
            raise ValueError(f"rule {rule.name!r}: the root of a pattern must name its op")
        for op in rule.pattern.op:
            table.setdefault(op, []).append(rule)
    return table


def rewrite(graph: Graph, ctx: PassContext, rules: Iterable[Rule]) -> Counter[str]:
    """Apply `rules` to a fixpoint; returns how often each rule fired.

    One topological sweep visits every node; after that only the nodes a rewrite touched are
    revisited (the new nodes, the users of the replacement, and the users of producers that lost
    a use), so the work stays linear in graph size plus rewrites. Replaced nodes and the
    producers only they used are removed at once.
    """
    table = _rules_by_op(rules)
    fired: Counter[str] = Counter()
    work = deque(graph.topological_order())
    queued = set(work)
    budget = 16 * len(work) + 64  # a bound against rules that undo each other
    while work and budget:
        budget -= 1
        node_id = work.popleft()
        queued.discard(node_id)
        if node_id in graph and graph.op_of(node_id) in table:
            for touched in _rewrite_node(graph, ctx, table, Value(node_id, 0), fired):
                if touched not in queued:
                    work.append(touched)
                    queued.add(touched)
    return fired


def _rewrite_node(graph: Graph, ctx: PassContext, table: dict, value: Value, fired: Counter) -> set[int]:
    """Rewrite at `value` while a rule fires there; returns the nodes to revisit."""
    touched: set[int] = set()
    for _ in range(8):  # a bound against rules that undo each other
        if not graph.has_users(value.node) and value not in ctx.outputs:
            break  # dead: nothing reads it (DCE removes it)
        memo: dict[Any, Any] = {}
        for rule in table.get(graph.op_of(value.node), ()):
            m = match(graph, rule.pattern, value, ctx, memo)
            new = rule.build(m) if m is not None else None
            if new is not None and new != value:
                break
        else:
            break
        ctx.replace(graph, value, new)
        losers = _remove_dead(graph, ctx, value.node)
        touched |= set(m.emitted) | {u for n in losers if n in graph for u in graph.consumers_of(n)}
        touched |= {u for u, _ in graph.users_of(new)}
        fired[rule.name] += 1
        value = new
    touched.discard(value.node)
    return touched


def _remove_dead(graph: Graph, ctx: PassContext, node_id: int) -> set[int]:
    """Remove `node_id` if nothing uses it, then its producers that became unused; returns the
    producers that lost a use."""
    stack, outputs, losers = [node_id], ctx.output_nodes, set()
    while stack:
        node = stack.pop()
        if node not in graph or graph.has_users(node) or node in outputs:
            continue
        if graph.op_of(node) in ("input", "param"):
            continue
        producers = graph.producers_of(node)
        losers |= producers
        stack.extend(producers)
        graph.remove_node(node)
    return losers
