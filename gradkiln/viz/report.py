"""A pass-by-pass HTML report of a compilation, in one self-contained file.

`report(graph, outputs, "O2", "report.html")` runs the pipeline one pass at a time and writes:
the pass timings and node/edge counts, the graph after every pass that changed it (inline SVG,
summarised with `max_nodes`), the memory plan of the result as a timeline (live bytes per
schedule step, peak marked), and a per-kernel profile: the cost model's FLOPs and bytes per
node and, with `profile=True`, the numpy executor's `.profile` of random feeds (each node's time
and share). No JavaScript, stylesheet or network: snapshots fold with `<details>`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from ..atomic import write_atomic
from ..graph import GradkilnError, Graph, Value, VizError
from ..graph.outputs import normalize_outputs
from ..lowering import compile as compile_graph
from ..lowering.profile import KernelTime, Profile
from ..passes import PIPELINES, optimize, plan_memory
from ..passes.cost import cost
from ..passes.manager import PassRecord
from ..progress import Progress
from .render import to_svg
from .timeline import live_bytes, mib, timeline_svg

KERNEL_NAME_CHARS = 80  # fused kernel names list every op they fuse
PROFILE_ROWS = 40  # nodes listed in the profile table, hottest first
PROFILE_RUNS = 3  # timed runs of the profile, unless one run takes over a third of PROFILE_SECONDS
PROFILE_SECONDS = 2.0  # budget for the timed runs

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
details { margin: 0.4em 0; border: 1px solid #ddd; padding: 0.3em 0.6em; }
summary { cursor: pointer; font-weight: bold; }
.graph { overflow: auto; max-height: 900px; }
.graph svg { max-width: 100%; height: auto; }
.note { color: #666; }
"""


@dataclass
class Snapshot:
    """The graph after one pass (or the input graph)."""

    title: str
    graph: Graph
    outputs: list[Value]


def report(
    graph: Graph,
    outputs: Any,
    pipeline: str | Sequence[str] = "O2",
    path: str | Path = "report.html",
    *,
    bindings: Mapping[str, int] | None = None,
    max_nodes: int = 120,
    profile: bool = True,
    seed: int = 0,
    target: Any = "numpy",
) -> Path:
    """Optimize `graph` for `outputs` (what gk.compile takes) pass by pass and write the HTML
    report to `path` (atomically). Symbolic dims take their sizes from `bindings`; unbound ones
    are taken as 1, and the report says so. Graphs drawn with more than `max_nodes` nodes are
    summarised by name scope. The profile is measured on `target`: per node on "numpy", per
    kernel on a TVM target ("llvm"). Returns the path."""
    values, _ = normalize_outputs(graph, outputs)
    sizes = _sizes(graph, values, bindings)
    with Progress(f"report {graph.name}") as progress:
        progress.step("optimizing")
        snapshots, records, seconds = _run_passes(graph, values, pipeline)
        final = snapshots[-1]
        drawings = []
        for i, snap in enumerate(snapshots):
            progress.step(f"drawing {i + 1}/{len(snapshots)}")
            drawings.append(to_svg(snap.graph, snap.outputs, max_nodes=max_nodes))
        progress.step("memory plan")
        plan = plan_memory(final.graph, final.outputs, bindings=sizes)
        progress.step("profile")
        costs = cost(final.graph, final.outputs, bindings=sizes)
        measured, note = _measure(final, sizes, seed, target) if profile else (None, "not measured")
    page = _page(graph, pipeline, sizes, bindings, snapshots, drawings, records, seconds)
    page += _memory_section(final.graph, plan)
    page += _profile_section(final.graph, final.outputs, costs, measured, note)
    return write_atomic(path, (page + "</body></html>\n").encode())


def _sizes(graph: Graph, values: list[Value], bindings: Mapping[str, int] | None) -> dict[str, int]:
    """Sizes for every symbolic dim the outputs need: the given ones, 1 for the rest."""
    symbols: set[str] = set()
    for node_id in graph.needed_nodes(values):
        for t in graph.node(node_id).types:
            symbols |= {str(s) for d in t.shape if not isinstance(d, int) for s in sympy.sympify(d).free_symbols}
    sizes = {name: 1 for name in sorted(symbols)} | dict(bindings or {})
    bad = {k: v for k, v in sizes.items() if not isinstance(v, (int, np.integer)) or v < 1}
    if bad:
        raise VizError(f"report: bindings {bad} are not positive sizes; pass e.g. bindings={{'N': 64}}")
    return sizes


def _run_passes(
    graph: Graph, values: list[Value], pipeline: str | Sequence[str], rounds: int = 4
) -> tuple[list[Snapshot], list[tuple[int, PassRecord]], float]:
    """Run the pipeline to a fixpoint one pass at a time, keeping a copy after each change."""
    passes = PIPELINES.get(pipeline, pipeline) if isinstance(pipeline, str) else list(pipeline)
    if isinstance(passes, str):
        raise VizError(f"report: unknown pipeline {pipeline!r}; use one of {', '.join(PIPELINES)} or a list of passes")
    snapshots = [Snapshot("input graph", graph, values)]
    records: list[tuple[int, PassRecord]] = []
    current, outs = graph, values
    started = time.perf_counter()
    for round_number in range(1, rounds + 1):
        changed = False
        for name in passes:
            current, outs, manager = optimize(current, outs, [name], max_rounds=1, verify=True)
            record = manager.records[-1]
            records.append((round_number, record))
            if record.changed:
                changed = True
                snapshots.append(Snapshot(f"after {name} (round {round_number})", current, outs))
        if not changed:
            break
    return snapshots, records, time.perf_counter() - started


def _measure(final: Snapshot, sizes: Mapping[str, int], seed: int, target: Any) -> tuple[Profile | None, str]:
    """The profile on `target` of random feeds (`Executable.random_feeds`): one timed run, then
    PROFILE_RUNS if they fit in PROFILE_SECONDS."""
    try:
        executable = compile_graph(final.graph, final.outputs, target=target)
        feeds = executable.random_feeds(sizes, seed)
        measured = executable.profile(feeds, repeat=1)
        if measured.run_seconds * PROFILE_RUNS < PROFILE_SECONDS:
            measured = executable.profile(feeds, repeat=PROFILE_RUNS)
    except GradkilnError as err:
        return None, f"not measured: the {target} run on random feeds failed ({type(err).__name__}: {err})"
    who = "numpy executor" if executable.target == "numpy" else f"TVM {executable.target}"
    return measured, f"{who}'s .profile, random feeds, mean of {measured.repeat} run(s) after a warm-up"


def _page(
    graph: Graph,
    pipeline: Any,
    sizes: Mapping[str, int],
    given: Mapping[str, int] | None,
    snapshots: list[Snapshot],
    drawings: list[str],
    records: list[tuple[int, PassRecord]],
    seconds: float,
) -> str:
    title = escape(f"gradkiln report: {graph.name}")
    defaulted = sorted(set(sizes) - set(given or {}))
    size_text = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "all static"
    if defaulted:
        size_text += f" ({', '.join(defaulted)} not given: taken as 1; pass bindings)"
    final = snapshots[-1].graph
    head = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>pipeline <b>{escape(str(pipeline))}</b>: {len(graph)} &rarr; {len(final)} nodes in "
        f"{seconds * 1e3:.1f} ms; sizes: {escape(size_text)}; made by gradkiln.</p>",
        "<h2>Passes</h2>",
        _table(
            ["pass", "round", "ms", "nodes", "edges", "changed"],
            [
                [
                    r.name,
                    rnd,
                    f"{r.seconds * 1e3:.2f}",
                    f"{r.nodes_before} → {r.nodes_after}",
                    f"{r.edges_before} → {r.edges_after}",
                    "yes" if r.changed else "no",
                ]
                for rnd, r in records
            ],
        ),
        "<h2>Graph after each pass</h2>",
        "<p class='note'>Only passes that changed the graph are shown. Blue: forward, red: gradient, "
        "green: inputs; boxes with a count are name scopes collapsed to fit.</p>",
    ]
    for i, (snap, svg) in enumerate(zip(snapshots, drawings)):
        is_open = " open" if i == len(snapshots) - 1 else ""
        summary = f"{snap.title}: {len(snap.graph)} nodes, {snap.graph.number_of_edges()} edges"
        head.append(f"<details class='snapshot'{is_open}><summary>{escape(summary)}</summary>")
        head.append(f"<div class='graph'>{svg}</div></details>")
    return "\n".join(head) + "\n"


def _memory_section(graph: Graph, plan: Any) -> str:
    timeline = live_bytes(graph, plan)
    return "\n".join(
        [
            "<h2>Memory plan</h2>",
            f"<p>{escape(plan.summary())}; {len(plan.schedule)} steps; the curve peaks at "
            f"{mib(timeline.peak)} at step {timeline.peak_step} ({escape(timeline.peak_label)}).</p>",
            timeline_svg(timeline, plan.peak_bytes),
            "",
        ]
    )


def _profile_section(graph: Graph, outputs: list[Value], costs: Any, measured: Profile | None, note: str) -> str:
    """The measured kernels (a TVM target), then the cost model's FLOPs and bytes per node beside
    the node's measured time (the numpy executor times nodes), then the costs by op."""
    per_node = measured if measured is not None and measured.unit == "node" else None
    nodes = [graph.node(i) for i in graph.needed_nodes(outputs)]
    timed = {row.kernel: row for row in per_node.rows} if per_node is not None else {}
    untimed = KernelTime("", 0, 0.0, 0.0, ())
    rows = [(c, timed.get(node.label, untimed)) for node, c in zip(nodes, costs.nodes) if not node.opdef.source]
    rows.sort(key=lambda row: (-row[1].seconds, -row[0].flops, -row[0].bytes))
    body = [
        [c.label, c.op, c.role, f"{c.flops:,}", f"{c.bytes:,}"]
        + ([f"{t.seconds * 1e6:.1f}", f"{t.share:.1%}"] if per_node is not None else [])
        for c, t in rows[:PROFILE_ROWS]
    ]
    header = ["node", "op", "role", "FLOPs", "bytes"] + (["µs", "time share"] if per_node is not None else [])
    total = f"; measured {measured.kernel_seconds * 1e3:.2f} ms per run" if measured is not None else ""
    return "\n".join(
        [
            "<h2>Per-kernel profile</h2>",
            f"<p>Cost model: {costs.flops:,} FLOPs, {costs.bytes:,} bytes moved{total}. Measured: {escape(note)}.</p>",
            _kernel_table(measured) if measured is not None and per_node is None else "",
            f"<p>The {min(len(rows), PROFILE_ROWS)} hottest of {len(rows)} nodes:</p>",
            _table(header, body),
            "<h3>By op</h3>",
            _table(
                ["op", "nodes", "FLOPs", "bytes"],
                [[op, c.count, f"{c.flops:,}", f"{c.bytes:,}"] for op, c in costs.by_op().items()],
            ),
        ]
    )


def _kernel_table(measured: Profile) -> str:
    """A TVM target's kernels, hottest first, with the nodes each computes."""
    rows = [
        [t.kernel[:KERNEL_NAME_CHARS], t.calls, f"{t.seconds * 1e6:.1f}", f"{t.share:.1%}", " ".join(t.nodes) or "-"]
        for t in measured.rows[:PROFILE_ROWS]
    ]
    return "<h3>Kernels, hottest first</h3>\n" + _table(["kernel", "calls", "µs", "time share", "nodes"], rows)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
