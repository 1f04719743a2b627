"""vjp, jvp and batching rules of resize and its transpose resize_grad.

resize is linear in x up to tf_crop_and_resize's extrapolation constant, so its vjp is resize_grad
(the transpose of the interpolation tables: a scatter-add of the weights; extrapolated positions
get no gradient) and its jvp is resize of the tangent with extrapolation value 0. resize_grad is
linear: its vjp is that resize, its jvp itself. Batching shifts the resized axes by one.
"""

from __future__ import annotations

from typing import Any

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.types import Dim
from .batching import register_batch
from .jvp_rules import Tangents, register_jvp
from .vjp_rules import register_vjp


def _linear(attrs: dict[str, Any]) -> dict[str, Any]:
    """resize's attributes without the extrapolation constant (the linear part of the op)."""
    return {**attrs, "extrapolation_value": 0.0}


@register_vjp("resize")
def _resize(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, **attrs: Any) -> tuple[Tensor]:
    input_sizes = tuple(inputs[0].shape[a] for a in attrs["axes"])
    return (gb.emit("resize_grad", g, input_sizes=input_sizes, **_linear(attrs)),)


@register_vjp("resize_grad")
def _resize_grad(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, input_sizes: tuple[int, ...], **attrs: Any):
    return (gb.emit("resize", g, **attrs),)


@register_jvp("resize")
def _resize_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, **attrs: Any) -> Tensor:
    return gb.emit("resize", tangents[0], **_linear(attrs))


@register_jvp("resize_grad")
def _resize_grad_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents, **attrs: Any) -> Tensor:
    return gb.emit("resize_grad", tangents[0], **attrs)


def _batch(op: str):
    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: Any) -> Tensor:
        return gb.emit(op, inputs[0], **{**attrs, "axes": tuple(a + 1 for a in attrs["axes"])})

    return rule


for _op in ("resize", "resize_grad"):
    register_batch(_op)(_batch(_op))
