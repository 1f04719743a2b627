"""Ops that exist for autodiff: `stop_gradient`, `custom_vjp` and `custom_jvp` are identities to
every backend; only the gradient transformations in `gradkiln.symbolic` treat them specially."""

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


def _custom_jvp_infer(*types: TensorType, rule: Any, num_args: int) -> tuple[TensorType]:
    if len(types) != num_args + 1:
        raise GraphError(f"needs its {num_args} arguments and the output as inputs, got {len(types)} inputs")
    return (types[-1],)


def _pass_through(*arrays: np.ndarray, rule: Any, num_args: int) -> np.ndarray:
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
        _pass_through,
        None,
        doc="custom_vjp(*args, *residuals, out): passes `out` through; reverse mode takes the cotangents "
        "of the first `num_args` inputs from the user's rule (attrs: rule, num_args). See symbolic/custom.py.",
    )
)
register_op(
    OpDef(
        "custom_jvp",
        _custom_jvp_infer,
        _pass_through,
        None,
        doc="custom_jvp(*args, out): passes `out` through; forward mode takes its tangent from the user's jvp "
        "rule and reverse mode transposes that rule (attrs: rule, num_args). See symbolic/custom_jvp.py.",
    )
)
