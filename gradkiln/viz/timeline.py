"""The memory plan as a timeline: bytes live at each step of the schedule, drawn as an SVG plot.

A buffer is live from the step that first writes it to the last step that reads it (or any
view of it); buffers of requested outputs stay live to the end. In-place nodes share their
input's buffer, so the curve counts it once: its maximum is the plan's in-place-aware lower
bound, and the planned peak (arena plus outputs, drawn dashed) sits at or above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ..graph import Graph
from ..passes.memory import MemoryPlan

_W, _H = 760, 260  # plot size in pixels
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 30, 40  # margins


@dataclass(frozen=True)
class Timeline:
    """Live bytes per schedule step, and where the peak is."""

    live: list[int]
    peak_step: int
    peak_label: str

    @property
    def peak(self) -> int:
        return self.live[self.peak_step] if self.live else 0


def live_bytes(graph: Graph, plan: MemoryPlan) -> Timeline:
    """The bytes of the plan's buffers live at each step of `plan.schedule`."""
    steps = len(plan.schedule)
    step_of = {node_id: i for i, node_id in enumerate(plan.schedule)}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for value, buffer in plan.buffer_of.items():
        uses = [step_of[value.node]] + [step_of[user] for user, _ in graph.users_of(value) if user in step_of]
        first[buffer] = min(first.get(buffer, steps), step_of[value.node])
        last[buffer] = max(last.get(buffer, 0), *uses)
    for buffer in plan.output_buffers:
        last[buffer] = steps - 1
    change = [0] * (steps + 1)
    for buffer, start in first.items():
        change[start] += plan.buffer_bytes[buffer]
        change[last[buffer] + 1] -= plan.buffer_bytes[buffer]
    live, total = [], 0
    for delta in change[:steps]:
        total += delta
        live.append(total)
    peak_step = max(range(steps), key=live.__getitem__, default=0)
    label = ""
    if steps:
        node = graph.node(plan.schedule[peak_step])
        label = f"{node.label} = {node.op}"
    return Timeline(live, peak_step, label)


def mib(size: int) -> str:
    """Bytes as a short human-readable string."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def timeline_svg(timeline: Timeline, planned_peak: int) -> str:
    """An inline SVG plot: live bytes over the schedule, the peak marked and labelled with its
    node, and the planned peak (arena plus outputs) as a dashed line."""
    top = max(planned_peak, timeline.peak, 1)
    count = max(len(timeline.live) - 1, 1)

    def x(step: float) -> float:
        return _LEFT + (_W - _LEFT - _RIGHT) * step / count

    def y(size: float) -> float:
        return _TOP + (_H - _TOP - _BOTTOM) * (1 - size / top)

    points = " ".join(f"{x(i):.1f},{y(b):.1f}" for i, b in enumerate(timeline.live))
    px, py = x(timeline.peak_step), y(timeline.peak)
    anchor = "end" if px > _W / 2 else "start"
    shift = -8 if anchor == "end" else 8
    peak_text = escape(f"peak {mib(timeline.peak)} at step {timeline.peak_step}: {timeline.peak_label}")
    return "\n".join(
        [
            f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
            f'viewBox="0 0 {_W} {_H}" role="img" aria-label="live bytes per schedule step">',
            f'<line x1="{_LEFT}" y1="{y(0)}" x2="{_W - _RIGHT}" y2="{y(0)}" stroke="#444"/>',
            f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{y(0)}" stroke="#444"/>',
            f'<text x="{_LEFT - 6}" y="{y(top) + 4:.1f}" text-anchor="end" font-size="11">{mib(top)}</text>',
            f'<text x="{_LEFT - 6}" y="{y(0) + 4:.1f}" text-anchor="end" font-size="11">0</text>',
            f'<text x="{_LEFT}" y="{_H - 22}" font-size="11">step 0</text>',
            f'<text x="{_W - _RIGHT}" y="{_H - 22}" text-anchor="end" font-size="11">step {count}</text>',
            f'<text x="{(_LEFT + _W) / 2}" y="{_H - 6}" text-anchor="middle" font-size="12">schedule step</text>',
            f'<line class="planned" x1="{_LEFT}" y1="{y(planned_peak):.1f}" x2="{_W - _RIGHT}" '
            f'y2="{y(planned_peak):.1f}" stroke="#999" stroke-dasharray="5,4"/>',
            f'<text x="{_W - _RIGHT}" y="{y(planned_peak) + 13:.1f}" text-anchor="end" font-size="11" fill="#666">'
            f"planned peak {mib(planned_peak)} (arena + outputs)</text>",
            f'<polyline class="live" fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>',
            f'<circle class="peak" cx="{px:.1f}" cy="{py:.1f}" r="4" fill="#d62728">'
            f"<title>{peak_text}</title></circle>",
            f'<text class="peak-label" x="{px + shift:.1f}" y="{py - 8:.1f}" text-anchor="{anchor}" '
            f'font-size="11" fill="#d62728">{peak_text}</text>',
            "</svg>",
        ]
    )
