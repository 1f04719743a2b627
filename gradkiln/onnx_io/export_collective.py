"""ONNX export of the collective ops: ONNX has no collective operator (its graphs describe one
device), so a collective over several workers is refused, naming the node; over a group of one
worker every collective is the identity and is written as Identity, which is exact."""

from __future__ import annotations

from ..graph import Node, ONNXError
from ..graph.ops.collective import COLLECTIVES
from .exporter import ExportContext, register_exporter


def _export(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
    world_size = node.attrs["world_size"]
    if world_size != 1:
        raise ONNXError(
            f"{node.label} = {node.op}(...) is a collective over {world_size} workers: ONNX has no collective "
            f"operator; export the graph before gk.distributed.data_parallel (or built for world_size=1)"
        )
    ctx.emit("Identity", ins, outs)


for _name in COLLECTIVES:
    register_exporter(_name)(_export)
