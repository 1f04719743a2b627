"""Import rules for ONNX's quantization ops, composed of gradkiln's ops with the ONNX reference's
semantics: QuantizeLinear, DequantizeLinear (per tensor, per axis or blocked scales and zero
points; integer, float8, float4, int4 and int2 quantized types), DynamicQuantizeLinear,
MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv. Integer products accumulate in
float64, exact for every sum below 2**53 (int32, as ONNX's accumulators, overflows long before).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from ..graph.dtypes import is_int
from .dtypes import NARROW, TO_ONNX, NarrowInt, from_onnx
from .import_rules import IMPORTERS
from .importer import ImportContext, OnnxNode, Operand, register_importer

FLOAT8 = (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ)


def _elementwise(ctx: ImportContext, value: Operand, x: Tensor, n: OnnxNode) -> Tensor:
    """A scale or zero point made broadcastable to x: a scalar as it is, a vector along `axis`,
    a blocked one repeated `block_size` times along `axis` (cut to x's length)."""
    t = ctx.tensor(value)
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] == 1):
        return gb.reshape(t, ())
    axis = n.attrs.get("axis", 1) % x.ndim
    block = n.attrs.get("block_size", 0)
    if not block:
        return gb.reshape(t, tuple(t.shape[0] if a == axis else 1 for a in range(x.ndim)))
    spread = gb.repeat(t, int(block), axis)
    if spread.shape[axis] == x.shape[axis]:
        return spread
    stops = [x.shape[axis] if a == axis else d for a, d in enumerate(spread.shape)]
    return gb.slice(spread, [0] * x.ndim, stops)


def _quantized_type(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> int:
    """The ONNX type QuantizeLinear writes: the zero point's, else `output_dtype`, else uint8."""
    if len(args) > 2 and args[2] is not None:
        return ctx.narrow_type(args[2]) or TO_ONNX[args[2].dtype]
    return n.attrs.get("output_dtype") or TensorProto.UINT8


def _quantize(ctx: ImportContext, scaled: Tensor, zero: Tensor | None, code: int, saturate: bool) -> Operand:
    """`scaled` (x / scale) onto ONNX type `code`: integers round half to even, add the zero point
    and saturate to the type's range; float8 and float4 round as Cast to them does."""
    if code in FLOAT8:
        return ctx.cast_narrow(scaled, code, saturate)
    if code == TensorProto.FLOAT4E2M1:
        return ctx.cast_narrow(scaled if zero is None else scaled + gb.cast(zero, scaled.dtype), code)
    fmt = NARROW.get(code)
    lo, hi = (fmt.lo, fmt.hi) if isinstance(fmt, NarrowInt) else _int_range(code)
    rounded = gb.round(gb.cast(scaled, "float64"))
    shifted = rounded if zero is None else rounded + gb.cast(zero, "float64")
    return ctx.mark_narrow(gb.cast(gb.clip(shifted, lo, hi), from_onnx(code, "QuantizeLinear")), code)


def _int_range(code: int) -> tuple[int, int]:
    dtype = from_onnx(code, "QuantizeLinear's output")
    if not is_int(dtype):
        raise ONNXError(f"QuantizeLinear: {TensorProto.DataType.Name(code)} is not a quantized type")
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@register_importer("QuantizeLinear")
def _quantize_linear(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    scale = _elementwise(ctx, args[1], x, n)
    zero = _elementwise(ctx, args[2], x, n) if len(args) > 2 and args[2] is not None else None
    code = _quantized_type(ctx, n, args)
    return _quantize(ctx, x / gb.cast(scale, x.dtype), zero, code, bool(n.attrs.get("saturate", 1)))


def _dequantize(x: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
    """(x - zero) * scale in float32 (a float8 or float4 x has no zero point)."""
    shifted = gb.cast(x, "float32") if zero is None else gb.cast(x, "float32") - gb.cast(zero, "float32")
    return shifted * gb.cast(scale, "float32")


@register_importer("DequantizeLinear")
def _dequantize_linear(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    x = ctx.tensor(args[0])
    scale = _elementwise(ctx, args[1], x, n)
    floating = ctx.narrow_type(args[0]) in (*FLOAT8, TensorProto.FLOAT4E2M1)
    has_zero = len(args) > 2 and args[2] is not None and not floating
    zero = _elementwise(ctx, args[2], x, n) if has_zero else None
    out = n.attrs.get("output_dtype")
    return gb.cast(_dequantize(x, scale, zero), from_onnx(out, n.label) if out else ctx.tensor(args[1]).dtype)


@register_importer("DynamicQuantizeLinear")
def _dynamic_quantize_linear(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """uint8 with scale (max(x, 0) - min(x, 0)) / 255 and zero point round(-min(x, 0) / scale)."""
    x = ctx.tensor(args[0])
    low, high = gb.minimum(gb.min(x), 0.0), gb.maximum(gb.max(x), 0.0)
    scale = (high - low) / np.float32(255)
    zero = gb.cast(gb.clip(gb.round(-low / scale), 0, 255), "uint8")
    return _quantize(ctx, x / scale, zero, TensorProto.UINT8, True), scale, zero


def _centered(ctx: ImportContext, x: Operand, zero: Operand | None) -> Tensor:
    """An integer operand minus its zero point, in float64 (exact)."""
    wide = gb.cast(ctx.tensor(x), "float64")
    return wide if zero is None else wide - gb.cast(ctx.tensor(zero), "float64")


def _zero_along(ctx: ImportContext, zero: Operand | None, rank: int, axis: int) -> Operand | None:
    """A per-row (A, axis 0 of its last two) or per-column (B) zero point made broadcastable."""
    if zero is None or ctx.tensor(zero).ndim == 0 or ctx.tensor(zero).shape[0] == 1:
        return None if zero is None else gb.reshape(ctx.tensor(zero), ())
    return gb.reshape(ctx.tensor(zero), tuple(-1 if a == rank + axis else 1 for a in range(rank)))


@register_importer("MatMulInteger")
def _matmul_integer(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    a, b = ctx.tensor(args[0]), ctx.tensor(args[1])
    a_zero = _zero_along(ctx, _arg(args, 2), a.ndim, -2)
    b_zero = _zero_along(ctx, _arg(args, 3), b.ndim, -1)
    return gb.cast(gb.matmul(_centered(ctx, a, a_zero), _centered(ctx, b, b_zero)), "int32")


@register_importer("QLinearMatMul")
def _qlinear_matmul(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """round((a - a_zero) @ (b - b_zero) * a_scale * b_scale / y_scale) + y_zero, saturated."""
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = (list(args) + [None] * 8)[:8]
    product = gb.matmul(_centered(ctx, a, a_zero), _centered(ctx, b, b_zero))
    factor = _scalar(ctx, a_scale) * _scalar(ctx, b_scale) / _scalar(ctx, y_scale)
    scaled = product * gb.cast(factor, "float64")
    code = TO_ONNX[(y_zero if y_zero is not None else a).dtype]
    zero = None if y_zero is None else gb.reshape(ctx.tensor(y_zero), ())
    return _quantize(ctx, scaled, zero, code, True)


def _scalar(ctx: ImportContext, value: Operand) -> Tensor:
    return gb.reshape(ctx.tensor(value), ())


def _arg(args: list[Operand], index: int) -> Operand | None:
    return args[index] if len(args) > index else None


@register_importer("ConvInteger")
def _conv_integer(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Conv of the centered operands (w's zero point per output channel) in float64, as int32."""
    x, w = ctx.tensor(args[0]), ctx.tensor(args[1])
    x_zero, w_zero = _arg(args, 2), _arg(args, 3)
    w_zero = None if w_zero is None else _zero_along(ctx, w_zero, w.ndim, -w.ndim)
    conv = IMPORTERS["Conv"](ctx, n, [_centered(ctx, x, x_zero), _centered(ctx, w, w_zero)])
    return gb.cast(conv, "int32")


@register_importer("QLinearConv")
def _qlinear_conv(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    """Conv of the centered operands, scaled by x_scale * w_scale / y_scale (w_scale per output
    channel), plus the int32 bias in units of x_scale * w_scale; then quantized like y_zero."""
    x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero, bias = (list(args) + [None] * 9)[:9]
    wt = ctx.tensor(w)
    w_zero = None if w_zero is None else _zero_along(ctx, w_zero, wt.ndim, -wt.ndim)
    conv = IMPORTERS["Conv"](ctx, n, [_centered(ctx, x, x_zero), _centered(ctx, w, w_zero)])
    channel = _channel(ctx, w_scale, conv.ndim)
    if bias is not None:
        conv = conv + gb.reshape(gb.cast(ctx.tensor(bias), "float64"), (-1, *[1] * (conv.ndim - 2)))
    scale = gb.cast(_scalar(ctx, x_scale), "float64") / gb.cast(_scalar(ctx, y_scale), "float64")
    scaled = conv * scale * channel
    code = TO_ONNX[(y_zero if y_zero is not None else x).dtype]
    zero = None if y_zero is None else gb.reshape(ctx.tensor(y_zero), ())
    return _quantize(ctx, scaled, zero, code, True)


def _channel(ctx: ImportContext, scale: Operand, rank: int) -> Tensor:
    t = gb.cast(ctx.tensor(scale), "float64")
    return gb.reshape(t, ()) if t.ndim == 0 else gb.reshape(t, (-1, *[1] * (rank - 2)))
