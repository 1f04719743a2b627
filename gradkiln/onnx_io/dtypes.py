"""The dtype correspondence between gradkiln and ONNX, shared by the exporter and the importer.

ONNX's narrow types have no gradkiln dtype, so the importer widens them to a stand-in that holds
every value exactly: bfloat16 and float8 (e4m3fn, e5m2) to float32, int4 and uint4 to int32 (the
narrowest gradkiln integer). Arithmetic then runs at the stand-in's precision, and a `Cast` to a
narrow type rounds (or wraps) to the narrow type's values while keeping the stand-in dtype.
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
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}
FROM_ONNX: dict[int, str] = {code: name for name, code in TO_ONNX.items()}


@dataclass(frozen=True)
class NarrowFloat:
    """A float format narrower than float32: `bits` fraction bits, smallest normal exponent
    `emin`, largest finite value `max`; `overflow_nan` when it has no infinity (overflow is NaN)."""

    numpy: type
    bits: int
    emin: int
    max: float
    overflow_nan: bool
    saturates: bool  # whether Cast's `saturate` attribute applies (float8 only)


@dataclass(frozen=True)
class NarrowInt:
    """A 4-bit integer format: a Cast to it truncates, then wraps to its `lo`..`hi` range."""

    numpy: type
    lo: int
    hi: int


NARROW: dict[int, NarrowFloat | NarrowInt] = {
    TensorProto.BFLOAT16: NarrowFloat(
        ml_dtypes.bfloat16, 7, -126, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max), False, False
    ),
    TensorProto.FLOAT8E4M3FN: NarrowFloat(ml_dtypes.float8_e4m3fn, 3, -6, 448.0, True, True),
    TensorProto.FLOAT8E5M2: NarrowFloat(ml_dtypes.float8_e5m2, 2, -14, 57344.0, False, True),
    TensorProto.INT4: NarrowInt(ml_dtypes.int4, -8, 7),
    TensorProto.UINT4: NarrowInt(ml_dtypes.uint4, 0, 15),
}


def stand_in(code: int) -> str:
    """The gradkiln dtype holding the values of narrow ONNX type `code`."""
    return "float32" if isinstance(NARROW[code], NarrowFloat) else "int32"


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
            return _wrap_int(array.astype(np.int64), fmt).astype("int32")
        if saturate and fmt.saturates:
            array = np.clip(array, -fmt.max, fmt.max)
        return array.astype(fmt.numpy).astype("float32")


def narrow_tensor(x: Tensor, code: int, saturate: bool = True) -> Tensor:
    """ONNX `Cast(to=code)` of a run-time tensor as graph ops: round half to even onto the narrow
    format's grid (its subnormals included), then saturate or overflow as ONNX's Cast does."""
    fmt = NARROW[code]
    if isinstance(fmt, NarrowInt):
        return _wrap_int(gb.cast(x, "int32"), fmt)
    x = gb.cast(x, "float32")
    magnitude = gb.maximum(gb.abs(x), np.float32(2.0**fmt.emin))
    exponent = gb.clip(gb.floor(gb.log(magnitude) / np.float32(np.log(2))), fmt.emin, 127)
    spacing = gb.exp2(exponent - fmt.bits)
    rounded = gb.round(x / spacing) * spacing
    if saturate and fmt.saturates:
        beyond = np.float32(fmt.max)
    else:
        beyond = np.float32("nan") if fmt.overflow_nan else np.float32("inf")
    return gb.where(gb.abs(rounded) > np.float32(fmt.max), gb.sign(x) * beyond, rounded)


def _wrap_int(values: Any, fmt: NarrowInt) -> Any:
    """Two's-complement wrap of integers into `fmt`'s range (a numpy array or a tensor)."""
    mod = np.mod if isinstance(values, np.ndarray) else gb.mod
    return mod(values - fmt.lo, fmt.hi - fmt.lo + 1) + fmt.lo
