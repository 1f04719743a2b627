"""The op table: each op is defined once, with type inference and numpy reference semantics.

Other layers key their own rule tables (gradients, TVM emitters, ONNX converters) by op name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import UnsupportedOpError
from .registry import Registry
from .types import TensorType

InferFn = Callable[..., Sequence[TensorType]]
ComputeFn = Callable[..., Any]


@dataclass(frozen=True)
class OpDef:
    """One op: `infer(*input_types, **attrs)` gives output types, `compute(*arrays, **attrs)`
    gives the numpy result (one array, or a tuple for multi-output ops)."""

    name: str
    infer: InferFn
    compute: ComputeFn
    num_inputs: int | None  # None: variadic
    num_outputs: int = 1
    elementwise: bool = False
    source: bool = False  # input, param, constant: no inputs, value comes from outside or attrs
    foldable: bool = True  # False: the value is not a function of the operands alone (a collective's)
    doc: str = ""


OPS: Registry[OpDef] = Registry("op definition")


def register_op(op: OpDef) -> OpDef:
    """Add an op to the table (also how users add custom ops)."""
    return OPS.register(op.name)(op)


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedOpError(f"unknown op {name!r}; registered ops: {', '.join(sorted(OPS))}") from None


def attrs_key(attrs: Mapping[str, Any]) -> tuple:
    """A hashable, value-based key for an attribute dict (arrays hashed by content)."""
    return tuple(sorted((k, _attr_key(v)) for k, v in attrs.items()))


def _attr_key(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()
        return ("ndarray", value.dtype.str, value.shape, digest)
    if isinstance(value, (list, tuple)):
        return tuple(_attr_key(v) for v in value)
    return value
