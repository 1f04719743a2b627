"""ONNX export of complex values: refused with a clear error. ONNX has complex64 and complex128
tensor types, but almost no operator accepts them (not Add, Mul, MatMul, Abs, ...), so a graph
computing on complex numbers has no faithful ONNX form; export a real graph instead."""

from __future__ import annotations

from typing import Iterable

from ..graph import Node, ONNXError
from ..graph.ops.complex import PARTS, first_complex_node
from .export_rules import register_exporter

COMPLEX_NOT_IN_ONNX = (
    "ONNX operators do not accept complex tensors; export a real graph (split complex values with gk.real "
    "and gk.imag before the outputs and inputs), or run this one with gk.compile(target='numpy')"
)


def _complex_error(node: Node) -> ONNXError:
    types = ", ".join(map(str, node.types))
    return ONNXError(f"ONNX export of {node.label} = {node.op}(...) -> {types}: {COMPLEX_NOT_IN_ONNX}")


def refuse_complex(nodes: Iterable[Node]) -> None:
    """Raise an ONNXError naming the first of `nodes` with a complex value."""
    node = first_complex_node(nodes)
    if node is not None:
        raise _complex_error(node)


def _refuse(ctx: object, node: Node, ins: list[str], outs: list[str]) -> None:
    raise _complex_error(node)


for _name in (*PARTS, "complex"):
    register_exporter(_name)(_refuse)
