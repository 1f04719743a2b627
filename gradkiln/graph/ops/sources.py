"""Source ops: graph inputs, trainable parameters and constants."""

from __future__ import annotations

import numpy as np

from ..opdef import OpDef, register_op
from ..types import TensorType


def _array_type(value: np.ndarray) -> tuple[TensorType]:
    return (TensorType(value.dtype, value.shape),)


def _no_compute(**attrs: object) -> None:
    raise RuntimeError("inputs and params are fed by the executor, not computed")


register_op(
    OpDef(
        "input",
        lambda type: (type,),
        _no_compute,
        0,
        source=True,
        doc="A graph input fed by name at call time; attrs: type.",
    )
)
register_op(
    OpDef(
        "param",
        lambda value: _array_type(value),
        _no_compute,
        0,
        source=True,
        doc="A trainable parameter; attrs: value (its initial array). Fed by name, defaults to value.",
    )
)
register_op(
    OpDef(
        "constant",
        lambda value: _array_type(value),
        lambda value: value,
        0,
        source=True,
        doc="A constant array; attrs: value.",
    )
)
