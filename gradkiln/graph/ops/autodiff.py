"""Ops that exist for autodiff: `stop_gradient` and `custom_vjp` are identities to every
backend; only the gradient transformations in `gradkiln.symbolic` treat them specially."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GraphError
from ..opdef import OpDef, register_op
from ..types import TensorType


def _custom_vjp_infer(*types: TensorType, rule: Any, num_args: int) -> tuple[TensorType]:
    if len(types) < num_args + 1:
        raise GraphError(f"needs its {num_args} arguments, its residuals and the output as inputs")
    return (types[-1],)


def _custom_vjp(*arrays: np.ndarray, rule: Any, num_args: int) -> np.ndarray:
    return arrays[-1]


register_op(
    OpDef(
        "stop_gradient",
        lambda x: (x,),
        lambda x: x,
        1,
        elementwise=True,
        doc="The identity; no gradient flows through it (forward or reverse).",
    )
)
register_op(
    OpDef(
        "custom_vjp",
        _custom_vjp_infer,
        _custom_vjp,
        None,
        doc="custom_vjp(*args, *residuals, out): passes `out` through; reverse mode takes the cotangents "
        "of the first `num_args` inputs from the user's rule (attrs: rule, num_args). See symbolic/custom.py.",
    )
)
