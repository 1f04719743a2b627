"""The dtype correspondence between gradkiln and ONNX, shared by the exporter and the importer.

ONNX's narrow types have no gradkiln dtype, so the importer widens them to a stand-in that holds
every value exactly: bfloat16, the float8s (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz) and float4e2m1 to
float32, int4 and int2 to int8, uint4 and uint2 to uint8. Arithmetic then runs at the
stand-in's precision, and a `Cast` to a narrow type rounds (or wraps) to the narrow type's
values while keeping the stand-in dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto

from ..graph import ONNXError, Tensor
from ..graph import builder as gb

TO_ONNX: dict[str, int] = {
    "float16": TensorProto.FLOAT16,
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int8": TensorProto.INT8,
    "int16": TensorProto.INT16,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "uint8": TensorProto.UINT8,
    "uint16": TensorProto.UINT16,
    "uint32": TensorProto.UINT32,
    "uint64": TensorProto.UINT64,
    "bool": TensorProto.BOOL,
}
FROM_ONNX: dict[int, str] = {code: name for name, code in TO_ONNX.items()}


@dataclass(frozen=True)
class NarrowFloat:
    """A float format narrower than float32: `bits` fraction bits, smallest normal exponent
    `emin`, largest finite value `max`; `overflow` is what a value beyond it becomes without
    saturation (inf, NaN where the format has no infinity, or `max` for float4), `nan` what NaN
    becomes (float4 has no NaN: ml_dtypes, ONNX's reference, gives a zero)."""

    numpy: type
    bits: int
    emin: int
    max: float
    overflow: float
    saturates: bool  # whether Cast's `saturate` attribute applies (float8 only)
    nan: float = float("nan")


@dataclass(frozen=True)
class NarrowInt:
    """A 2- or 4-bit integer format: a Cast to it truncates, then wraps to its `lo`..`hi` range."""

    numpy: type
    lo: int
    hi: int


_INF, _NAN = float("inf"), float("nan")
NARROW: dict[int, NarrowFloat | NarrowInt] = {
    TensorProto.BFLOAT16: NarrowFloat(
        ml_dtypes.bfloat16, 7, -126, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max), _INF, False
    ),
    TensorProto.FLOAT8E4M3FN: NarrowFloat(ml_dtypes.float8_e4m3fn, 3, -6, 448.0, _NAN, True),
    TensorProto.FLOAT8E4M3FNUZ: NarrowFloat(ml_dtypes.float8_e4m3fnuz, 3, -7, 240.0, _NAN, True),
    TensorProto.FLOAT8E5M2: NarrowFloat(ml_dtypes.float8_e5m2, 2, -14, 57344.0, _INF, True),
    TensorProto.FLOAT8E5M2FNUZ: NarrowFloat(ml_dtypes.float8_e5m2fnuz, 2, -15, 57344.0, _NAN, True),
    TensorProto.FLOAT4E2M1: NarrowFloat(ml_dtypes.float4_e2m1fn, 1, 0, 6.0, 6.0, False, 0.0),
    TensorProto.INT4: NarrowInt(ml_dtypes.int4, -8, 7),
    TensorProto.UINT4: NarrowInt(ml_dtypes.uint4, 0, 15),
    TensorProto.INT2: NarrowInt(ml_dtypes.int2, -2, 1),
    TensorProto.UINT2: NarrowInt(ml_dtypes.uint2, 0, 3),
}


def stand_in(code: int) -> str:
    """The gradkiln dtype holding the values of narrow ONNX type `code`."""
    fmt = NARROW[code]
    return "float32" if isinstance(fmt, NarrowFloat) else ("int8" if fmt.lo < 0 else "uint8")


def from_onnx(code: int, where: str) -> str:
    """The gradkiln dtype of an ONNX element type (a narrow type's stand-in); `where` names what
    carries it, for the error."""
    if code in NARROW:
        return stand_in(code)
    try:
        return FROM_ONNX[code]
    except KeyError:
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        known = ", ".join([*TO_ONNX, *(TensorProto.DataType.Name(c).lower() for c in NARROW)])
        raise ONNXError(f"{where}: element type {name} is not supported; gradkiln imports {known}") from None


def widen(array: np.ndarray) -> np.ndarray:
    """`array` with a narrow ml_dtypes dtype converted to its stand-in (exactly); others as they are."""
    code = next((c for c, f in NARROW.items() if array.dtype == f.numpy), None)
    return array if code is None else array.astype(stand_in(code))


def to_onnx_array(array: np.ndarray, code: int) -> np.ndarray:
    """A stand-in array as the narrow ONNX type `code` declares (ml_dtypes), others as they are."""
    return array.astype(NARROW[code].numpy) if code in NARROW else array


def narrow_known(array: np.ndarray, code: int, saturate: bool = True) -> np.ndarray:
    """ONNX `Cast(to=code)` of an import-time value, exactly (through ml_dtypes), as the stand-in."""
    fmt = NARROW[code]
    with np.errstate(invalid="ignore", over="ignore"):
        if isinstance(fmt, NarrowInt):
            return _wrap_int(array.astype(np.int64), fmt).astype(stand_in(code))
        if saturate and fmt.saturates:
            array = np.clip(array, -fmt.max, fmt.max)
        return array.astype(fmt.numpy).astype("float32")


def narrow_tensor(x: Tensor, code: int, saturate: bool = True) -> Tensor:
    """ONNX `Cast(to=code)` of a run-time tensor as graph ops: round half to even onto the narrow
    format's grid (its subnormals included), then saturate or overflow as ONNX's Cast does."""
    fmt = NARROW[code]
    if isinstance(fmt, NarrowInt):
        return gb.cast(_wrap_int(gb.cast(x, "int32"), fmt), stand_in(code))
    x = gb.cast(x, "float32")
    magnitude = gb.maximum(gb.abs(x), np.float32(2.0**fmt.emin))
    exponent = gb.clip(gb.floor(gb.log(magnitude) / np.float32(np.log(2))), fmt.emin, 127)
    spacing = gb.exp2(exponent - fmt.bits)
    rounded = gb.round(x / spacing) * spacing
    beyond = np.float32(fmt.max if saturate and fmt.saturates else fmt.overflow)
    narrowed = gb.where(gb.abs(rounded) > np.float32(fmt.max), gb.sign(x) * beyond, rounded)
    return narrowed if np.isnan(fmt.nan) else gb.where(gb.not_equal(x, x), np.float32(fmt.nan), narrowed)


def _wrap_int(values: Any, fmt: NarrowInt) -> Any:
    """Two's-complement wrap of integers into `fmt`'s range (a numpy array or a tensor)."""
    mod = np.mod if isinstance(values, np.ndarray) else gb.mod
    return mod(values - fmt.lo, fmt.hi - fmt.lo + 1) + fmt.lo
