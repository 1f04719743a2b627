"""Complex-number ops: the parts `real` and `imag`, `conj`, the argument `angle`, and
`complex(re, im)`, which builds a complex tensor from two real ones.

`real`, `imag`, `conj` and `angle` take complex operands only (the builder handles real tensors
itself: a real tensor is its own real part and conjugate); `complex` takes float32 or float64
parts, broadcast together, and gives complex64 or complex128. `abs` of a complex tensor (the
real modulus) is the `abs` op of `elementwise`. All are elementwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from ..dtypes import complex_dtype, is_complex, real_dtype
from ..errors import DTypeError
from ..opdef import OpDef, register_op
from ..types import TensorType, broadcast_shapes
from .common import require_same_dtype

if TYPE_CHECKING:
    from ..ir import Node


def _require_complex(x: TensorType) -> None:
    if not is_complex(x.dtype):
        raise DTypeError(
            f"takes a complex tensor, got {x.dtype}; gk.real, gk.imag, gk.conj and gk.angle accept real ones"
        )


def _part_infer(real_result: bool) -> Callable[..., tuple[TensorType]]:
    def infer(x: TensorType) -> tuple[TensorType]:
        _require_complex(x)
        return (x.with_dtype(real_dtype(x.dtype)) if real_result else x,)

    return infer


def _complex_infer(re: TensorType, im: TensorType) -> tuple[TensorType]:
    dtype = require_same_dtype(re, im)
    if dtype not in ("float32", "float64"):
        raise DTypeError(f"the parts must be float32 or float64, got {dtype}; cast them first (gk.cast)")
    return (TensorType(complex_dtype(dtype), broadcast_shapes(re.shape, im.shape)),)


def _complex(re: np.ndarray, im: np.ndarray) -> np.ndarray:
    """re + i im, part by part (re + 1j * im would turn an infinite im into a NaN real part)."""
    out = np.empty(np.broadcast_shapes(re.shape, im.shape), complex_dtype(re.dtype.name))
    out.real, out.imag = re, im
    return out


PARTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], bool, str]] = {
    # name: (numpy function, real result, doc)
    "real": (np.real, True, "The real part of a complex tensor."),
    "imag": (np.imag, True, "The imaginary part of a complex tensor."),
    "conj": (np.conjugate, False, "The complex conjugate re - i im."),
    "angle": (np.angle, True, "The argument atan2(im, re), in (-pi, pi]."),
}

for _name, (_fn, _real, _doc) in PARTS.items():
    register_op(OpDef(_name, _part_infer(_real), _fn, 1, elementwise=True, doc=_doc))
register_op(
    OpDef(
        "complex",
        _complex_infer,
        _complex,
        2,
        elementwise=True,
        doc="complex(re, im) = re + i im from float32 (complex64) or float64 (complex128) parts, broadcast.",
    )
)


def first_complex_node(nodes: Iterable[Node]) -> Node | None:
    """The first node with a complex output, for backends without complex dtypes to name it."""
    return next((node for node in nodes if any(is_complex(t.dtype) for t in node.types)), None)
