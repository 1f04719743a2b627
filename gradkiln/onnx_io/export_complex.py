"""ONNX export of complex values: refused with a clear error. ONNX has complex64 and complex128
tensor types, but almost no operator accepts them (not Add, Mul, MatMul, Abs, ...), so a graph
computing on complex numbers has no faithful ONNX form; export a real graph instead."""

from __future__ import annotations

from ..graph import Node
from ..graph.ops.complex import PARTS
from .exporter import complex_error, register_exporter


def _refuse(ctx: object, node: Node, ins: list[str], outs: list[str]) -> None:
    raise complex_error(node)


for _name in (*PARTS, "complex"):
    register_exporter(_name)(_refuse)
