"""Rematerialization: trade recomputation for memory in a training graph under a budget.

A gradient graph keeps forward activations (the forward buffers that backward nodes, role
"grad", read) alive from the forward pass until the backward uses them. Dropping an activation
re-emits its forward producer as a copy (role "recompute", like a checkpoint scope's copies)
that the backward reads instead: the original dies at the end of its forward uses, and
`greedy_schedule` runs the copy late, when the backward needs it. A copy reads kept buffers, and
copies of the producers whose buffers are not kept (its recompute closure), so a dropped chain is
recomputed from the nearest kept value. Two strategies choose what to drop:

- "sqrt" (Chen et al. 2016, "Training deep nets with sublinear memory cost"): of the n
  activations in topological order, keep a checkpoint about every ceil(sqrt(n)), placed at split
  points of the forward pass (where one buffer alone carries the computation on), and drop the
  rest: about one extra forward pass for O(sqrt(n)) activation memory on a chain.
- "greedy": order the activations by bytes saved per FLOP of their recompute closure, best first
  (closures grow as more is dropped, so ratios are rescored), and drop the shortest prefix of
  that order whose planned peak (`plan_memory` over `greedy_schedule`) fits the budget.

The report gives the planned peaks, the activation bytes, and the FLOPs the copies add as a
multiple of the forward pass's (`cost` rules).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..graph import Graph, GraphError, Value
from ..graph.outputs import normalize_outputs
from ..graph.types import symbol
from ..symbolic.checkpoint import SCOPE_KEY, Recomputer
from .cost import cost
from .manager import PassContext, register_pass
from .memory import SOURCES, VIEWS, padded, plan_memory, value_bytes

BACKWARD_ROLES = frozenset({"grad", "recompute"})
STRATEGIES = ("greedy", "sqrt")


@dataclass(frozen=True)
class RematReport:
    """What rematerialization did: planned peaks (bytes) before and after, the budget (None when
    none was given), the bytes of the activations the backward read before (forward buffers), the
    FLOPs the recompute copies add next to the forward pass's FLOPs, and the labels of the
    activations the backward now recomputes."""

    peak_before: int
    peak_after: int
    budget: int | None
    activation_bytes: int
    recomputed_flops: int
    forward_flops: int
    recomputed_values: list[str] = field(default_factory=list)

    @property
    def saved_bytes(self) -> int:
        return self.peak_before - self.peak_after

    @property
    def recompute_ratio(self) -> float:
        """Recomputed FLOPs as a multiple of the forward pass's FLOPs."""
        return self.recomputed_flops / self.forward_flops if self.forward_flops else 0.0

    def summary(self) -> str:
        budget = "no budget" if self.budget is None else f"budget {self.budget / 2**20:.2f} MiB"
        return (
            f"planned peak {self.peak_before / 2**20:.2f} -> {self.peak_after / 2**20:.2f} MiB ({budget}); "
            f"{len(self.recomputed_values)} activations recomputed, {self.recompute_ratio:.2f}x the forward FLOPs"
        )


def rematerialize(
    graph: Graph,
    outputs: Any,
    budget_bytes: int | None = None,
    strategy: str = "greedy",
    bindings: Mapping[str, int] | None = None,
) -> tuple[Graph, list[Value], RematReport]:
    """Rematerialize activations of a copy of the gradient graph `graph` so that the planned peak
    of a run for `outputs` fits `budget_bytes`; returns (the copy, the output values, the report).

    `strategy` is "greedy" (needs a budget) or "sqrt" (the budget, when given, is checked).
    Symbolic dims need sizes in `bindings` ({"N": 64}). Raises GraphError when the budget cannot
    be met, naming the peak the strategy reaches."""
    values, _ = normalize_outputs(graph, outputs)
    remat = graph.copy()
    report = _rematerialize(remat, values, budget_bytes, strategy, bindings)
    return remat, values, report


@register_pass("remat")
def remat_pass(graph: Graph, ctx: PassContext) -> bool:
    """The pipeline form: a no-op without `memory_budget` or when the planned peak already fits."""
    if ctx.memory_budget is None:
        return False
    report = _rematerialize(graph, ctx.outputs, ctx.memory_budget, ctx.remat_strategy, ctx.bindings)
    return bool(report.recomputed_values)


def _rematerialize(
    graph: Graph, outputs: list[Value], budget: int | None, strategy: str, bindings: Mapping[str, int] | None
) -> RematReport:
    if strategy not in STRATEGIES:
        raise GraphError(f"remat: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy == "greedy" and budget is None:
        raise GraphError("remat: the greedy strategy needs a memory budget (budget_bytes=..., or use 'sqrt')")
    before = _peak(graph, outputs, bindings)
    recomputed_before = _flops_by_role(graph, outputs, bindings)["recompute"]
    activations = _Activations(graph, outputs, bindings)
    activation_bytes = sum(activations.bytes[v] for v in activations.kept_for_backward())
    dropped: list[int] = []
    if budget is None or before > budget:
        if strategy == "sqrt":
            chosen = activations.sqrt_segments()
        else:
            chosen = _fitting_prefix(graph, outputs, budget, bindings, activations.greedy_order())
        dropped = drop_activations(graph, chosen)
    after = _peak(graph, outputs, bindings)
    if budget is not None and after > budget:
        raise GraphError(
            f"remat ({strategy}): the planned peak is {after:,} bytes with {len(dropped)} activations recomputed, "
            f"over the budget of {budget:,} bytes (before remat: {before:,}); raise the budget"
        )
    flops = _flops_by_role(graph, outputs, bindings)
    return RematReport(
        peak_before=before,
        peak_after=after,
        budget=budget,
        activation_bytes=activation_bytes,
        recomputed_flops=flops["recompute"] - recomputed_before,
        forward_flops=flops["forward"],
        recomputed_values=[graph.node(n).label for n in dropped],
    )


def _flops_by_role(graph: Graph, outputs: list[Value], bindings: Mapping[str, int] | None) -> dict[str, int]:
    flops = {"forward": 0, "recompute": 0}
    for node in cost(graph, outputs, bindings).nodes:
        flops[node.role] = flops.get(node.role, 0) + node.flops
    return flops


def _peak(graph: Graph, outputs: list[Value], bindings: Mapping[str, int] | None) -> int:
    return plan_memory(graph, outputs, "greedy", bindings).peak_bytes


def drop_activations(graph: Graph, nodes: Iterable[int]) -> list[int]:
    """Make the backward read recomputed copies of the forward `nodes` (and of the forward views of
    them) instead of the nodes themselves; returns the dropped nodes the backward read."""
    dropped = _with_views(graph, set(nodes))
    readers = {
        v: [u for u, _ in graph.users_of(v) if graph.role_of(u) in BACKWARD_ROLES]
        for n in sorted(dropped)
        for v in graph.node(n).outputs
    }
    tagged = [n for n in dropped if graph.annotation(n, SCOPE_KEY) is None]
    for n in tagged:
        graph.annotate(n, SCOPE_KEY, "remat")
    recompute = Recomputer(graph)
    try:
        for value, users in readers.items():
            if users:
                graph.replace_uses_in(users, value, recompute(value))
    finally:
        for n in tagged:
            graph.clear_annotation(n, SCOPE_KEY)
    return sorted({value.node for value, users in readers.items() if users})


def _with_views(graph: Graph, dropped: set[int]) -> set[int]:
    """`dropped` plus every forward view of a dropped value (a kept view would keep its base alive)."""
    for n in graph.topological_order():
        node = graph.node(n)
        if node.op in VIEWS and node.role == "forward" and n not in dropped:
            if graph.inputs_of(n)[VIEWS[node.op][0]].node in dropped:
                dropped.add(n)
    return dropped


def _fitting_prefix(
    graph: Graph, outputs: list[Value], budget: int, bindings: Mapping[str, int] | None, order: list[list[int]]
) -> list[int]:
    """The nodes of the shortest prefix of the greedy `order` whose planned peak fits (found by
    doubling, then bisection: a logarithmic number of plans), or of the whole order when none does."""

    def fits(count: int) -> bool:
        trial = graph.copy()
        drop_activations(trial, [n for step in order[:count] for n in step])
        return _peak(trial, outputs, bindings) <= budget

    high = 1
    while high < len(order) and not fits(high):
        high *= 2
    high = min(high, len(order))
    low = high // 2  # fits(low) is False (or low == 0, where the caller checked the peak)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return [n for step in order[:high] for n in step]


class _Activations:
    """The forward values of a gradient graph: their bytes, FLOPs, and which the backward reads."""

    def __init__(self, graph: Graph, outputs: list[Value], bindings: Mapping[str, int] | None) -> None:
        self.graph = graph
        self.order = graph.needed_nodes(outputs)
        kept_outputs = {v.node for v in outputs}
        self.flops = dict(zip(self.order, (c.flops for c in cost(graph, outputs, bindings).nodes)))
        sizes = {symbol(k) if isinstance(k, str) else k: v for k, v in (bindings or {}).items()}
        self.bytes: dict[Value, int] = {}
        self.base: dict[Value, Value | None] = {}
        self.forward: list[int] = []  # the droppable forward nodes: computed, not views, not outputs
        for n in self.order:
            node = graph.node(n)
            for v in node.outputs:
                self.base[v] = self._base_of(v, node.op)
                if self.base[v] == v:
                    self.bytes[v] = padded(value_bytes(node.types[v.index], sizes))
            if node.role == "forward" and node.op not in SOURCES and node.op not in VIEWS:
                if n not in kept_outputs:
                    self.forward.append(n)

    def _base_of(self, value: Value, op: str) -> Value | None:
        if op in SOURCES:
            return None
        if op in VIEWS:
            return self.base[self.graph.inputs_of(value.node)[VIEWS[op][0]]]
        return value

    def sqrt_segments(self) -> list[int]:
        """Chen et al.'s segments over the n activations (the forward buffers the backward reads,
        in topological order): a checkpoint about every k = ceil(sqrt(n)) activations, at a split
        point of the forward pass where one can (`split_points`), so that a segment is recomputed
        from its checkpoint alone; the other activations are dropped with their recompute
        closures, which reach back to the nearest checkpoint."""
        kept = self.kept_for_backward()
        activations = [n for n in self.forward if self._saved(n, kept)]
        step = math.ceil(math.sqrt(len(activations))) if activations else 1
        splits = self.split_points() or set(activations)
        dropped, since = [], 0
        for n in activations:
            since += 1
            if n in splits and since >= step:
                since = 0
            else:
                dropped.append(n)
        for n in dropped:
            kept -= set(self.graph.node(n).outputs)
        return sorted({m for n in dropped for m in self._closure(n, kept)})

    def split_points(self) -> set[int]:
        """Forward nodes whose output is the only computed buffer that the forward nodes after
        them read from the ones before (articulation points of the forward pass, such as the
        residual stream between transformer blocks)."""
        forward = [n for n in self.order if self.graph.role_of(n) == "forward"]
        position = {n: i for i, n in enumerate(forward)}
        end = {b: position[b.node] for b in self.bytes if b.node in position}
        for n in forward:
            for v in self.graph.inputs_of(n):
                if self.base[v] in end:
                    end[self.base[v]] = max(end[self.base[v]], position[n])
        crossing = [0] * (len(forward) + 1)
        for b, last in end.items():
            crossing[position[b.node]] += 1
            crossing[last] -= 1
        splits, open_buffers = set(), 0
        for i, n in enumerate(forward):
            open_buffers += crossing[i]
            if open_buffers == 1 and any(end.get(v, i) > i for v in self.graph.node(n).outputs):
                splits.add(n)
        return splits

    def greedy_order(self) -> list[list[int]]:
        """The greedy drops in order, each the forward nodes to recompute for one activation: the
        activation and the ancestors that are not kept (its recompute closure). The best bytes
        saved per FLOP recomputed goes first; a drop only grows the closures of later ones, so
        ratios only fall and a lazy heap (rescore the top, push back if it fell) stays exact."""
        kept = self.kept_for_backward()
        heap = [(-self._ratio(n, kept), n) for n in self.forward if self._saved(n, kept)]
        heapq.heapify(heap)
        steps: list[list[int]] = []
        while heap:
            key, n = heapq.heappop(heap)
            ratio = self._ratio(n, kept)
            if ratio < -key:
                heapq.heappush(heap, (-ratio, n))
                continue
            steps.append(self._closure(n, kept))
            kept -= set(self.graph.node(n).outputs)
        return steps

    def kept_for_backward(self) -> set[Value]:
        """The forward buffers that backward nodes read (through views or not)."""
        graph = self.graph
        return {
            self.base[v]
            for n in self.order
            if graph.role_of(n) in BACKWARD_ROLES
            for v in graph.inputs_of(n)
            if self.base[v] is not None and graph.role_of(v.node) == "forward"
        }

    def _saved(self, n: int, kept: set[Value]) -> int:
        return sum(self.bytes[v] for v in self.graph.node(n).outputs if v in kept)

    def _ratio(self, n: int, kept: set[Value]) -> float:
        flops = sum(self.flops[m] for m in self._closure(n, kept))
        return self._saved(n, kept) / max(flops, 1)

    def _closure(self, n: int, kept: set[Value]) -> list[int]:
        """n and the forward nodes a copy of n must recompute because their buffers are not kept
        (stopping at kept buffers and sources)."""
        closure, stack = {n}, [n]
        while stack:
            for v in self.graph.inputs_of(stack.pop()):
                if self.base[v] is not None and self.base[v] not in kept and v.node not in closure:
                    closure.add(v.node)
                    stack.append(v.node)
        return sorted(closure)
