"""Import rules of ONNX's bitwise ops onto gradkiln's: BitwiseAnd, BitwiseOr, BitwiseXor,
BitwiseNot and BitShift (by its `direction`); ONNX's BitShift definition (opset 28) is gradkiln's."""

from __future__ import annotations

from ..graph import builder as gb
from .importer import ImportContext, OnnxNode, Operand, register_importer

BINARY = {"BitwiseAnd": gb.bitwise_and, "BitwiseOr": gb.bitwise_or, "BitwiseXor": gb.bitwise_xor}


def _binary(fn):
    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        return fn(ctx.tensor(args[0]), ctx.tensor(args[1]))

    return rule


@register_importer("BitwiseNot")
def _bitwise_not(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return gb.bitwise_not(ctx.tensor(args[0]))


@register_importer("BitShift")
def _bit_shift(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    shift = gb.left_shift if n.attrs["direction"] == "LEFT" else gb.right_shift
    return shift(ctx.tensor(args[0]), ctx.tensor(args[1]))


for _op_type, _fn in BINARY.items():
    register_importer(_op_type)(_binary(_fn))
