"""The dtypes gradkiln knows, their short names, and promotion."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DTypeError

SHORT_NAMES = {
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
    "complex64": "c64",
    "complex128": "c128",
    "bool": "bool",
}
DTYPES = tuple(SHORT_NAMES)
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
UNSIGNED_DTYPES = ("uint8", "uint16", "uint32", "uint64")
COMPLEX_DTYPES = ("complex64", "complex128")
DEFAULT_FLOAT = "float32"
_ALIASES = {short: name for name, short in SHORT_NAMES.items()} | {
    "half": "float16",
    "float": "float32",
    "double": "float64",
    "int": "int64",
    "long": "int64",
    "bool_": "bool",
}


def as_dtype(dtype: Any) -> str:
    """Return the canonical dtype name for a name, alias, numpy dtype or Python type."""
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype, dtype)
    elif dtype is bool:
        name = "bool"
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype)
    if name not in SHORT_NAMES:
        raise DTypeError(f"unknown dtype {dtype!r}; gradkiln supports {', '.join(DTYPES)}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def is_unsigned(dtype: str) -> bool:
    return dtype in UNSIGNED_DTYPES


def is_complex(dtype: str) -> bool:
    return dtype in COMPLEX_DTYPES


def is_inexact(dtype: str) -> bool:
    """A floating or complex dtype: the ones differentiable ops and true division accept."""
    return is_float(dtype) or is_complex(dtype)


def real_dtype(dtype: str) -> str:
    """The real dtype of a complex one's parts (complex64 -> float32); other dtypes unchanged."""
    return {"complex64": "float32", "complex128": "float64"}.get(dtype, dtype)


def complex_dtype(dtype: str) -> str:
    """The complex dtype with parts of float dtype `dtype` (float16 and float32 -> complex64)."""
    return "complex128" if dtype in ("float64", "complex128") else "complex64"


def promote(*dtypes: str) -> str:
    """The common dtype, as in PyTorch and JAX: the highest kind (bool < int < float < complex) wins,
    and within it the widest dtype (so int32 with float16 gives float16, not float64).
    Integers of mixed signedness promote as numpy does (int8 with uint8 gives int16, int64
    with uint64 float64)."""
    kinds = [_KIND_ORDER[np.dtype(d).kind] for d in dtypes]
    top = max(kinds)
    if top == _KIND_ORDER["i"]:
        return as_dtype(np.result_type(*[d for d, k in zip(dtypes, kinds) if k == top]))
    if top == _KIND_ORDER["c"]:  # float32 with complex64 gives complex64, float64 with it complex128
        return as_dtype(np.result_type(*[d for d, k in zip(dtypes, kinds) if k >= _KIND_ORDER["f"]]))
    widest = max((np.dtype(d) for d, k in zip(dtypes, kinds) if k == top), key=lambda d: d.itemsize)
    return as_dtype(widest)


_KIND_ORDER = {"b": 0, "i": 1, "u": 1, "f": 2, "c": 3}
