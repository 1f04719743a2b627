"""User-defined gradients: `custom_vjp(fn).defvjp(fwd, bwd)`, in the style of JAX.

Calling the wrapped function runs the user's `fwd(*args) -> (out, residuals)`, which builds its
nodes as usual, then adds one `custom_vjp` node over `(*args, *residuals, out)` that passes `out`
through. Everything downstream reads that node, so reverse mode meets it first and asks its
rule: `bwd(residuals, g)` returns one cotangent (or None) per argument, built with the builder
API like any rule. The cotangent of `out` itself is not propagated, so the nodes `fwd` built get
no gradient from this path: the user's rule replaces them. Forward mode (`jvp`) differentiates
the nodes `fwd` built, as written. Since the residuals are node inputs, graph copies and passes
keep them, and they stay alive until the backward pass that reads them.

`straight_through(x, fn)` is the straight-through estimator built on `stop_gradient`;
forward-mode rules are in `custom_jvp.py`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from .jvp_rules import register_jvp
from .vjp_rules import register_vjp

Forward = Callable[..., tuple[Tensor, Sequence[Tensor]]]
Backward = Callable[[tuple[Tensor, ...], Tensor], Sequence[Tensor | None]]


class custom_vjp:  # noqa: N801 - a decorator, named like JAX's
    """`f = custom_vjp(fn)`, then `f.defvjp(fwd, bwd)`: `f(*args)` computes `fn(*args)` (a
    Tensor) with the reverse-mode gradient `bwd(residuals, g)`, where `fwd(*args)` returns
    `(out, residuals)` with `out` equal to `fn(*args)` and `residuals` a sequence of Tensors.
    Arguments must be Tensors; pass other values by closure."""

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.fwd: Forward | None = None
        self.bwd: Backward | None = None

    def defvjp(self, fwd: Forward, bwd: Backward) -> custom_vjp:
        """Set the forward (with residuals) and the backward rule; returns the function."""
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args: Tensor) -> Tensor:
        if self.fwd is None:
            raise GradientError(f"custom_vjp {self.fn.__name__}: call .defvjp(fwd, bwd) before using it")
        check_tensor_arguments(self, args)
        out, residuals = self.fwd(*args)
        return gb.emit("custom_vjp", *args, *residuals, out, rule=self, num_args=len(args))

    def __repr__(self) -> str:
        return f"custom_vjp({self.fn.__name__})"


def check_tensor_arguments(rule: Any, args: tuple[Any, ...]) -> None:
    """Custom rules take Tensors only: other values are passed by closure."""
    for i, a in enumerate(args):
        if not isinstance(a, Tensor):
            raise GradientError(
                f"{rule!r}: argument {i} is a {type(a).__name__}; arguments must be Tensors "
                "(pass other values by closure)"
            )


def straight_through(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """`fn(x)` in the forward pass with the identity's gradient (a straight-through estimator):
    `x + stop_gradient(fn(x) - x)`, for rounding, quantization or sampling steps that have no
    useful derivative. `fn(x)` must have the type of `x`."""
    return x + gb.stop_gradient(fn(x) - x)


@register_vjp("custom_vjp")
def _custom_vjp(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, rule: custom_vjp, num_args: int
) -> list[Tensor | None]:
    residuals = inputs[num_args:-1]
    cotangents = list(rule.bwd(tuple(residuals), g))
    if len(cotangents) != num_args:
        raise GradientError(
            f"the backward rule of {rule!r} returned {len(cotangents)} cotangents for {num_args} arguments; "
            "return one Tensor or None per argument"
        )
    return cotangents + [None] * (len(residuals) + 1)


@register_jvp("custom_vjp")
def _custom_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Sequence[Tensor | None], **attrs: Any) -> Any:
    return tangents[-1]
