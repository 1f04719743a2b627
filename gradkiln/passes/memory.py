"""Memory planning: liveness over a schedule, in-place reuse, arena placement, and a schedule
that lowers the peak.

The plan covers the values a run computes: feeds, params and constants live outside it (they
exist before the run), and view ops (`VIEWS`: reshape, transpose, broadcast_to, ...) alias
their input's memory instead of owning any, extending that buffer's life to their last use.
Every other value gets a buffer. An elementwise node takes over the buffer of an input of its
exact type that dies at that node (in place). Buffers of the requested outputs are separate
arrays (they are returned); the others are placed in one arena, largest first, each at the
lowest offset not taken by a buffer alive at the same time, so buffers whose lifetimes do not
overlap share memory. Sizes are padded to `ALIGNMENT` bytes and need static shapes, or sizes
bound to the symbols (`bindings={"N": 64}`).

The plan reports three numbers: the planned peak (the arena plus the output buffers), the
no-reuse baseline (one buffer per value) and the lower bound (the most bytes live at any step
of the schedule, in-place aware); baseline >= peak >= lower bound always holds.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from ..graph import Graph, GraphError, TensorType, Value, get_op
from ..graph.types import symbol

SOURCES = frozenset({"input", "param", "constant"})
# view ops: which input's memory the result aliases, and whether a contiguous input stays contiguous
VIEWS: dict[str, tuple[int, bool]] = {
    "reshape": (0, True),
    "expand_dims": (0, True),
    "squeeze": (0, True),
    "stop_gradient": (0, True),
    "custom_vjp": (-1, True),
    "custom_jvp": (-1, True),
    "transpose": (0, False),
    "broadcast_to": (0, False),
    "slice": (0, False),
}
ALIGNMENT = 64  # bytes; each buffer starts at a multiple of it in the arena


@dataclass
class MemoryPlan:
    """Where every computed value lives. `buffer_of` maps each planned value (and each view of
    one) to a buffer; arena buffers sit at `offsets` in one arena of `arena_bytes`, output
    buffers are separate arrays. `value_bytes` are exact sizes; buffer sizes and the three
    reported numbers count each value padded to `ALIGNMENT`."""

    schedule: list[int]
    buffer_of: dict[Value, int]
    buffer_bytes: list[int]
    output_buffers: set[int]
    offsets: dict[int, int]
    arena_bytes: int
    inplace: set[int]
    value_bytes: dict[Value, int]
    peak_bytes: int
    baseline_bytes: int
    lower_bound_bytes: int

    def summary(self) -> str:
        """One line: planned peak, buffers, in-place nodes, no-reuse baseline, lower bound."""
        return (
            f"planned peak {self.peak_bytes / 2**20:.2f} MiB in {len(self.buffer_bytes)} buffers "
            f"({len(self.inplace)} nodes in place); no reuse {self.baseline_bytes / 2**20:.2f} MiB; "
            f"lower bound {self.lower_bound_bytes / 2**20:.2f} MiB"
        )


def value_bytes(t: TensorType, bindings: Mapping[Any, int]) -> int:
    """The size of a value of type `t` in bytes, with symbolic dims bound to `bindings`."""
    count = 1
    for dim in t.shape:
        size = dim if isinstance(dim, int) else sympy.sympify(dim).subs(bindings)
        if not isinstance(size, int) and not size.is_Integer:
            missing = ", ".join(sorted(str(s) for s in sympy.sympify(dim).free_symbols))
            raise GraphError(f"memory planning needs sizes for {missing}: plan_memory(..., bindings={{'N': 64}})")
        count *= int(size)
    return count * np.dtype(t.dtype).itemsize


class _Values:
    """The planning facts of the needed values: which are external, which views of which base."""

    def __init__(self, graph: Graph, order: Sequence[int], bindings: Mapping[Any, int]) -> None:
        self.graph = graph
        self.base: dict[Value, Value | None] = {}  # planned value -> itself; view -> its base; external -> None
        self.contiguous: dict[Value, bool] = {}
        self.size: dict[Value, int] = {}
        for node_id in order:
            node = graph.node(node_id)
            inputs = graph.inputs_of(node_id)
            for value in node.outputs:
                self._classify(value, node.op, inputs)
                if self.base[value] == value:
                    self.size[value] = value_bytes(node.types[value.index], bindings)

    def _classify(self, value: Value, op: str, inputs: list[Value]) -> None:
        view = VIEWS.get(op)
        if op in SOURCES:
            self.base[value], self.contiguous[value] = None, True
        elif view is not None and (op != "reshape" or self.contiguous[inputs[0]]):
            source = inputs[view[0]]
            self.base[value] = self.base[source]
            self.contiguous[value] = view[1] and self.contiguous[source]
        else:
            self.base[value], self.contiguous[value] = value, True

    def planned(self, node_id: int) -> list[Value]:
        return [v for v in self.graph.node(node_id).outputs if self.base[v] == v]


def _bindings(bindings: Mapping[Any, int] | None) -> dict[sympy.Symbol, int]:
    return {symbol(k) if isinstance(k, str) else k: int(v) for k, v in (bindings or {}).items()}


def greedy_schedule(graph: Graph, outputs: Sequence[Value], bindings: Mapping[Any, int] | None = None) -> list[int]:
    """A topological order that lowers peak memory: a list scheduler that runs, among the ready
    nodes, the one that frees the most bytes net of what it allocates (ties: original order).
    Recomputed copies (role "recompute": checkpoints, remat) run only when nothing else is ready,
    so they are computed late, when the backward needs them, not with the forward pass; among
    them, first the copies that the earliest backward node in the original order needs."""
    order = graph.needed_nodes(outputs)
    facts = _Values(graph, order, _bindings(bindings))
    position = {n: i for i, n in enumerate(order)}
    keep = {facts.base[v] for v in outputs}
    consumers: dict[Value, dict[int, int]] = {}  # base -> unscheduled consumer -> edges
    for node_id in order:
        for v in graph.inputs_of(node_id):
            if facts.base[v] is not None:
                uses = consumers.setdefault(facts.base[v], {})
                uses[node_id] = uses.get(node_id, 0) + 1
    alloc = {n: sum(facts.size[v] for v in facts.planned(n)) for n in order}
    waiting = {n: len(graph.producers_of(n)) for n in order}

    def score(n: int) -> int:
        bases = {facts.base[v] for v in graph.inputs_of(n)} - {None} - keep
        return sum(facts.size[b] for b in bases if set(consumers[b]) == {n}) - alloc[n]

    demand = _recompute_demand(graph, order)

    def priority(n: int) -> tuple[bool, int, int, int]:
        return (True, demand[n], position[n], n) if n in demand else (False, -score(n), position[n], n)

    heap = [priority(n) for n in order if not waiting[n]]
    heapq.heapify(heap)
    done, schedule = set(), []
    while heap:
        _, key, _, n = heapq.heappop(heap)
        if n in done or (n not in demand and -key != score(n)):
            continue
        done.add(n)
        schedule.append(n)
        touched = set()
        for v in graph.inputs_of(n):
            base = facts.base[v]
            if base is not None and consumers[base].pop(n, None) is not None and len(consumers[base]) == 1:
                touched |= set(consumers[base])
        for user in graph.consumers_of(n) & waiting.keys():
            waiting[user] -= 1
            touched.add(user)
        for m in touched:
            if not waiting[m] and m not in done:
                heapq.heappush(heap, priority(m))
    return schedule


def _recompute_demand(graph: Graph, order: Sequence[int]) -> dict[int, int]:
    """For each recomputed copy, the id of the first other node that needs it (through other
    copies). Ids follow creation order, and reverse mode creates the backward in the order it
    runs, so a lower id is needed sooner (topological positions are no guide: the copies were
    added last)."""
    needed = set(order)
    demand: dict[int, int] = {}
    for n in reversed(order):
        if graph.role_of(n) == "recompute":
            users = graph.consumers_of(n) & needed
            demand[n] = min((demand.get(u, u) for u in users), default=n)
    return demand


def _inplace_input(graph: Graph, facts: _Values, node_id: int, step: int, last: dict, kept: set) -> Value | None:
    """An input an elementwise node may overwrite: a planned value of the output's exact type
    whose buffer dies at this step (the output is not a requested one: those get own buffers)."""
    out = Value(node_id, 0)
    if not get_op(graph.op_of(node_id)).elementwise or facts.base.get(out) != out or out in kept:
        return None
    want = graph.type_of(out)
    inputs = graph.inputs_of(node_id)
    for v in inputs:
        aliased = any(u != v and facts.base[u] == v for u in inputs)  # x + transpose(x): writing x breaks the view
        if facts.base[v] == v and last.get(v) == step and graph.type_of(v) == want and not aliased:
            return v
    return None


def plan_memory(
    graph: Graph,
    outputs: Sequence[Value],
    schedule: str | Sequence[int] = "greedy",
    bindings: Mapping[Any, int] | None = None,
) -> MemoryPlan:
    """Plan the buffers of a run of `graph` for `outputs` over `schedule` ("greedy",
    "topological", or node ids in a topological order)."""
    bound = _bindings(bindings)
    if schedule == "greedy":
        schedule = greedy_schedule(graph, outputs, bound)
    elif schedule == "topological":
        schedule = graph.needed_nodes(outputs)
    schedule = list(schedule)
    facts = _Values(graph, schedule, bound)
    step_of = {n: i for i, n in enumerate(schedule)}
    end = len(schedule)
    last: dict[Value, int] = {v: step_of[v.node] for v in facts.size}
    for node_id in schedule:
        for v in graph.inputs_of(node_id):
            if facts.base[v] is not None:
                last[facts.base[v]] = max(last[facts.base[v]], step_of[node_id])
    kept = {facts.base[v] for v in outputs} - {None}
    for v in kept:
        last[v] = end

    groups: list[list[int]] = []  # per buffer: [first step, last step, bytes]
    buffer_of: dict[Value, int] = {}
    output_buffers: set[int] = set()
    inplace: set[int] = set()
    dying: dict[int, list[Value]] = {}
    live, lower_bound = 0, 0
    for step, node_id in enumerate(schedule):
        reused = _inplace_input(graph, facts, node_id, step, last, kept)
        new = facts.planned(node_id)
        for v in new:
            if reused is not None and v.index == 0:
                buffer = buffer_of[reused]
                groups[buffer][1] = last[v]
                inplace.add(node_id)
            else:
                buffer = len(groups)
                groups.append([step, last[v], padded(facts.size[v])])
                if v in kept:
                    output_buffers.add(buffer)
            buffer_of[v] = buffer
            dying.setdefault(last[v], []).append(v)
        live += sum(padded(facts.size[v]) for v in new)
        lower_bound = max(lower_bound, live - (padded(facts.size[reused]) if reused is not None else 0))
        live -= sum(padded(facts.size[v]) for v in dying.pop(step, []))
    for node_id in schedule:  # views share their base's buffer
        for v in graph.node(node_id).outputs:
            if facts.base[v] is not None:
                buffer_of[v] = buffer_of[facts.base[v]]
    offsets = _place({b: g for b, g in enumerate(groups) if b not in output_buffers})
    arena = max((offsets[b] + groups[b][2] for b in offsets), default=0)
    return MemoryPlan(
        schedule=schedule,
        buffer_of=buffer_of,
        buffer_bytes=[g[2] for g in groups],
        output_buffers=output_buffers,
        offsets=offsets,
        arena_bytes=arena,
        inplace=inplace,
        value_bytes=dict(facts.size),
        peak_bytes=arena + sum(groups[b][2] for b in output_buffers),
        baseline_bytes=sum(padded(size) for size in facts.size.values()),
        lower_bound_bytes=lower_bound,
    )


def padded(size: int) -> int:
    """The bytes a value takes in the arena: its size rounded up to the alignment."""
    return -(-size // ALIGNMENT) * ALIGNMENT


def _place(buffers: dict[int, list[int]]) -> dict[int, int]:
    """Arena offsets for buffers alive over [first, last] steps: largest first, each at the
    lowest offset where it overlaps no placed buffer alive at the same time (greedy by size,
    like TFLite's arena planner). Quadratic in the number of buffers alive together."""
    offsets: dict[int, int] = {}
    placed: list[tuple[int, int, int, int]] = []  # (offset, bytes, first, last)
    for buffer in sorted(buffers, key=lambda b: (-buffers[b][2], buffers[b][0])):
        first, last, size = buffers[buffer]
        offset = 0
        for at, taken in sorted((o, n) for o, n, f, la in placed if f <= last and first <= la):
            if at >= offset + size:
                break
            offset = max(offset, at + taken)
        offsets[buffer] = offset
        placed.append((offset, size, first, last))
    return offsets
