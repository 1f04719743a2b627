"""The dtypes gradkiln knows, their short names, and promotion."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DTypeError

SHORT_NAMES = {
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "int32": "i32",
    "int64": "i64",
    "bool": "bool",
}
DTYPES = tuple(SHORT_NAMES)
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int32", "int64")
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


def promote(*dtypes: str) -> str:
    """The common dtype, as in PyTorch and JAX: the highest kind (bool < int < float) wins,
    and within it the widest dtype (so int32 with float16 gives float16, not float64)."""
    kinds = [_KIND_ORDER.index(np.dtype(d).kind) for d in dtypes]
    top = max(kinds)
    widest = max((np.dtype(d) for d, k in zip(dtypes, kinds) if k == top), key=lambda d: d.itemsize)
    return as_dtype(widest)


_KIND_ORDER = "bif"
