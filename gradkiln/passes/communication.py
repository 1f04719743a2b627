"""Communication analysis: the bytes each worker sends for the collectives of a graph (ring model).

`communication(graph, outputs, bindings)` lists every collective the outputs need with the bytes
one worker puts on the wire (`collective.ring_traffic`: 2 (W - 1) / W of the operand for an
all_reduce, and so on), so the cost of data parallelism can be read before anything runs and a
step time projected for a network bandwidth (`seconds(bandwidth)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..graph import Graph
from ..graph.ops.collective import COLLECTIVES, ring_traffic
from ..graph.outputs import normalize_outputs
from .cost import _concrete as concrete_shape


class Transfer(NamedTuple):
    """One collective: what it moves and the bytes a worker sends for it."""

    label: str
    op: str
    world_size: int
    operand_bytes: int
    wire_bytes: int


@dataclass(frozen=True)
class CommunicationReport:
    """The collectives of a graph, in the order they run, with the bytes each worker sends."""

    transfers: list[Transfer]

    @property
    def collectives(self) -> int:
        return len(self.transfers)

    @property
    def wire_bytes(self) -> int:
        return sum(t.wire_bytes for t in self.transfers)

    def seconds(self, bandwidth_bits_per_second: float) -> float:
        """The time on the wire at that link bandwidth (no latency term, no overlap)."""
        return self.wire_bytes * 8 / bandwidth_bits_per_second

    def __str__(self) -> str:
        lines = [f"{'collective':<24} {'op':<15} {'workers':>7} {'operand B':>12} {'wire B':>12}"]
        lines += [
            f"{t.label:<24} {t.op:<15} {t.world_size:>7} {t.operand_bytes:>12,} {t.wire_bytes:>12,}"
            for t in self.transfers
        ]
        lines.append(f"{'total':<24} {self.collectives:>15} {'':>7} {'':>12} {self.wire_bytes:>12,}")
        return "\n".join(lines)


def communication(graph: Graph, outputs: Any = None, bindings: Mapping[str, int] | None = None) -> CommunicationReport:
    """The collectives `outputs` need (all nodes if None) and their bytes on the wire per worker;
    symbolic dims need sizes in `bindings`."""
    node_ids = (
        graph.topological_order() if outputs is None else graph.needed_nodes(normalize_outputs(graph, outputs)[0])
    )
    transfers = []
    for node_id in node_ids:
        if graph.op_of(node_id) not in COLLECTIVES:
            continue
        node = graph.node(node_id)
        operand = graph.type_of(node.inputs[0])
        elements = int(np.prod(concrete_shape(operand, dict(bindings or {}), node.label)))
        itemsize = np.dtype(operand.dtype).itemsize
        world_size = node.attrs["world_size"]
        sent, _ = ring_traffic(node.op, elements, world_size)
        transfers.append(Transfer(node.label, node.op, world_size, elements * itemsize, round(sent * itemsize)))
    return CommunicationReport(transfers)
