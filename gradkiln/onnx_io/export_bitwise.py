"""ONNX export rules of the bitwise ops: BitwiseAnd, BitwiseOr, BitwiseXor and BitwiseNot on
integers (And, Or, Xor and Not on bool), BitShift for the shifts. BitShift takes signed integers,
and defines shifts by a negative amount or by the bit width as gradkiln does, from opset 28; at
an older opset unsigned shifts export (ONNX leaves such amounts undefined there) and signed ones
are refused."""

from __future__ import annotations

from ..graph import Node, UnsupportedOpError
from ..graph.dtypes import is_unsigned
from .export_rules import register_exporter
from .exporter import ExportContext

SIGNED_SHIFT_OPSET = 28
# name: (ONNX op on integers, ONNX op on bool)
LOGICAL = {
    "bitwise_and": ("BitwiseAnd", "And"),
    "bitwise_or": ("BitwiseOr", "Or"),
    "bitwise_xor": ("BitwiseXor", "Xor"),
    "bitwise_not": ("BitwiseNot", "Not"),
}


def _logical(op_types: tuple[str, str]):
    def rule(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
        ctx.emit(op_types[node.types[0].dtype == "bool"], ins, outs)

    return rule


def _shift(direction: str):
    def rule(ctx: ExportContext, node: Node, ins: list[str], outs: list[str]) -> None:
        dtype = node.types[0].dtype
        if not is_unsigned(dtype) and ctx.opset < SIGNED_SHIFT_OPSET:
            raise UnsupportedOpError(
                f"ONNX BitShift takes {dtype} from opset {SIGNED_SHIFT_OPSET}; export with "
                f"opset={SIGNED_SHIFT_OPSET} (this export writes opset {ctx.opset}), or shift an unsigned cast"
            )
        ctx.emit("BitShift", ins, outs, direction=direction)

    return rule


for _name, _op_types in LOGICAL.items():
    register_exporter(_name)(_logical(_op_types))
register_exporter("left_shift")(_shift("LEFT"))
register_exporter("right_shift")(_shift("RIGHT"))
