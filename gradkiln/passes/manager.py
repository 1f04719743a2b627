"""The pass manager: runs named pipelines of passes, timing, verifying and dumping each step.

A pass is a function `(graph, ctx) -> bool` that rewrites `graph` in place and says whether it
changed anything. `PassContext` carries what passes must respect (the requested outputs, which
a pass updates through `ctx.replace`) and their options.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..graph import Graph, GraphError, Value, verify
from ..graph.registry import Registry

Pass = Callable[[Graph, "PassContext"], bool]

PASSES: Registry[Pass] = Registry("pass")


def register_pass(name: str, **how: Any) -> Callable[[Pass], Pass]:
    """Add a pass to the table under `name`, so pipelines can refer to it; `how` is
    `Registry.register`'s `when=`/`override=`."""
    return PASSES.register(name, **how)


DotWriter = Callable[[Graph, Path, list[Value]], Any]
_dot_writer: DotWriter | None = None  # set by gradkiln.viz on import: passes sit below viz


def set_dot_writer(writer: DotWriter | None) -> None:
    """Install the function `PassManager(dump_dir=...)` writes each pass's graph with (gradkiln.viz
    installs its DOT writer)."""
    global _dot_writer
    _dot_writer = writer


def _dump_dot(graph: Graph, path: Path, outputs: list[Value]) -> None:
    if _dot_writer is None:
        raise GraphError("PassManager(dump_dir=...) writes DOT with gradkiln.viz: `import gradkiln.viz` first")
    _dot_writer(graph, path, outputs)


@dataclass
class PassContext:
    """The outputs a pipeline must preserve, and the options passes read."""

    outputs: list[Value]
    fold_limit: int = 1 << 16  # constant folding keeps results of at most this many elements
    unsafe_math: bool = False  # simplify may assume no Inf/NaN and in-domain arguments (x*0 -> 0)
    memory_budget: int | None = None  # remat: the planned peak to fit, in bytes (None: remat does nothing)
    remat_strategy: str = "greedy"  # remat: "greedy" or "sqrt"
    bindings: dict[str, int] | None = None  # sizes of symbolic dims for passes that plan memory ({"N": 64})
    autocast_dtype: str = "float16"  # autocast: the dtype matmul and convolutions run in
    fuse_limit: int = 256  # fusion: at most this many operations per fused node (bounds sympy work, kernel size)
    simplify_limit: int = 48  # fusion with unsafe_math: sympy simplifies fused nodes of at most this many operations

    def replace(self, graph: Graph, old: Value, new: Value) -> None:
        """Redirect every use of `old` to `new`, including the requested outputs."""
        graph.replace_all_uses_with(old, new)
        self.outputs = [new if v == old else v for v in self.outputs]

    @property
    def output_nodes(self) -> set[int]:
        return {v.node for v in self.outputs}


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block. Passes allocate millions of small
    objects, and each collection they trigger rescans every dict of a large graph: at 100k nodes
    that tripled the time of CSE. Cycles made meanwhile are collected once it resumes."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class PassRecord:
    """What one pass did: its wall time and the graph size before and after."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    edges_before: int
    edges_after: int
    changed: bool


@dataclass
class PassManager:
    """Runs `passes` (names in PASSES) over a graph, repeating the list until nothing changes
    (at most `max_rounds` times). With `verify`, the graph invariants are checked after each
    pass; with `dump_dir`, the graph is written as DOT after each pass."""

    passes: Sequence[str]
    verify: bool = False
    dump_dir: str | Path | None = None
    max_rounds: int = 4
    records: list[PassRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [p for p in self.passes if p not in PASSES]
        if unknown:
            raise GraphError(f"unknown passes {unknown}; available: {', '.join(sorted(PASSES))}")

    def run(self, graph: Graph, ctx: PassContext) -> list[PassRecord]:
        with collector_paused():
            for _ in range(self.max_rounds):
                if not any([self._run_one(name, graph, ctx) for name in self.passes]):
                    break
        return self.records

    def _run_one(self, name: str, graph: Graph, ctx: PassContext) -> bool:
        nodes, edges = len(graph), graph.number_of_edges()
        start = time.perf_counter()
        changed = bool(PASSES[name](graph, ctx))
        seconds = time.perf_counter() - start
        self.records.append(PassRecord(name, seconds, nodes, len(graph), edges, graph.number_of_edges(), changed))
        if self.verify:
            try:
                verify(graph)
            except GraphError as err:
                raise GraphError(f"pass {name!r} broke the graph: {err}") from err
        if self.dump_dir is not None:
            _dump_dot(graph, Path(self.dump_dir) / f"{len(self.records):02d}_{name}.dot", ctx.outputs)
        return changed

    def table(self) -> str:
        """The records as a text table: pass, time, nodes and edges before -> after."""
        lines = [f"{'pass':16} {'ms':>8} {'nodes':>13} {'edges':>13}"]
        for r in self.records:
            lines.append(
                f"{r.name:16} {r.seconds * 1e3:8.2f} {r.nodes_before:>6}->{r.nodes_after:<6} "
                f"{r.edges_before:>6}->{r.edges_after:<6}"
            )
        return "\n".join(lines)


PIPELINES: dict[str, list[str]] = {
    "O0": [],
    "O1": ["constant_fold", "cse", "dce"],
    "O2": ["constant_fold", "simplify", "cse", "dce"],
    "O3": ["constant_fold", "simplify", "cse", "dce", "fusion"],
}


def optimize(
    graph: Graph, outputs: Sequence[Value], pipeline: str | Sequence[str] = "O1", **options: Any
) -> tuple[Graph, list[Value], PassManager]:
    """Optimize a copy of `graph` for `outputs`; returns (the copy, the outputs in it, the manager
    with its per-pass records). `pipeline` is a name in PIPELINES or a list of pass names;
    `options` go to PassManager (verify, dump_dir, max_rounds) or, when they name a PassContext
    field (fold_limit, unsafe_math, memory_budget, remat_strategy, bindings, autocast_dtype,
    fuse_limit, simplify_limit), to
    the context."""
    passes = PIPELINES[pipeline] if isinstance(pipeline, str) and pipeline in PIPELINES else pipeline
    if isinstance(passes, str):
        raise GraphError(f"unknown pipeline {pipeline!r}; available: {', '.join(PIPELINES)} or a list of passes")
    context_fields = {f.name for f in fields(PassContext)} - {"outputs"}
    ctx = PassContext(list(outputs), **{k: options.pop(k) for k in context_fields & set(options)})
    manager = PassManager(list(passes), **options)
    with collector_paused():  # the copy too: it allocates a dict per node and per edge
        optimized = graph.copy()
        manager.run(optimized, ctx)
    return optimized, ctx.outputs, manager
