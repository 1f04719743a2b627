"""User-defined forward-mode rules: `custom_jvp(fn).defjvp(jvp)`, in the style of JAX.

Calling the wrapped function builds `fn` over `stop_gradient` copies of the arguments, then adds
one `custom_jvp` node over `(*args, out)` that passes `out` through. No derivative looks inside
`fn`: forward mode asks the rule at that node, `jvp(primals, tangents) -> (out, tangent)`, and
reverse mode transposes the rule. The tangent must be linear in the tangents (it is a
Jacobian-vector product); the transpose is the vjp of the rule's tangent graph with respect to
zero placeholders for the tangents, so it never reads them, which is checked: a rule that is
not linear raises a `GradientError` at `grad` time. `vmap` re-emits the node with the rule
vmapped, so derivatives of batched graphs still use it. Values `fn` reads by closure are
constants to every derivative.

The node's `rule` attribute is any object with `tangent(primals, out, tangents) -> Tensor`
(`out` is the node's output, differentiable like any value): `custom_jvp` adapts the user's
JAX-style rule to it, and the implicit solvers (`implicit.py`) pass their own. A rule may also
have `transpose(primals, out, cotangent) -> [cotangent or None per primal]`, which reverse mode
then uses instead of transposing the tangent graph: `fixed_point`'s tangent is a loop, whose
transpose (a loop of vector-Jacobian products) the generic transposition cannot derive.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from ..graph import GradientError, Tensor
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.dtypes import is_float
from ..graph.types import Dim
from .batching import register_batch, vmap
from .custom import check_tensor_arguments
from .forward import fit_tangent
from .jvp_rules import register_jvp
from .reverse import vjp
from .vjp_rules import register_vjp

JVPFunction = Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, Tensor]]


class custom_jvp:  # noqa: N801 - a decorator, named like JAX's
    """`f = custom_jvp(fn)`, then `f.defjvp(jvp)`: `f(*args)` computes `fn(*args)` (a Tensor) whose
    derivatives, in both modes, come from `jvp(primals, tangents) -> (out, tangent_out)`: the
    primal output and the tangent, which must be linear in `tangents` (one per argument, zeros
    where the argument has none). Arguments must be Tensors; pass other values by closure."""

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.jvp: JVPFunction | None = None

    def defjvp(self, jvp: JVPFunction) -> custom_jvp:
        """Set the Jacobian-vector product rule; returns the function."""
        self.jvp = jvp
        return self

    def __call__(self, *args: Tensor) -> Tensor:
        if self.jvp is None:
            raise GradientError(f"{self!r}: call .defjvp(jvp) before using it")
        return with_jvp_rule(self, self.fn, args)

    def tangent(self, primals: tuple[Tensor, ...], out: Tensor, tangents: tuple[Tensor, ...]) -> Tensor:
        """The tangent of the output: the user's rule, checked to return `(out, tangent)`."""
        result = self.jvp(tuple(primals), tuple(tangents))
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], Tensor)):
            raise GradientError(f"the jvp rule of {self!r} must return (primal_out, tangent_out), got {result!r}")
        return result[1]

    def __repr__(self) -> str:
        return f"custom_jvp({self.fn.__name__})"


def with_jvp_rule(rule: Any, fn: Callable[..., Tensor], args: Sequence[Tensor]) -> Tensor:
    """`fn(*args)` whose derivatives come from `rule.tangent(primals, out, tangents)` (linear in
    the tangents; `out` is the node's output): `fn` is built over `stop_gradient` copies of
    `args`, then one `custom_jvp` node passes its value through. The implicit solvers use this
    directly; `custom_jvp` wraps a user's rule."""
    check_tensor_arguments(rule, tuple(args))
    out = fn(*(gb.stop_gradient(a) for a in args))
    if not isinstance(out, Tensor):
        raise GradientError(f"{rule!r}: the function returned a {type(out).__name__}; it must return one Tensor")
    return gb.emit("custom_jvp", *args, out, rule=rule, num_args=len(args))


class _Batched:
    """The rule of a vmapped `custom_jvp` node (every argument batched): the user's rule on one
    example, vmapped over the primals and their tangents."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule

    def tangent(self, primals: tuple[Tensor, ...], out: Tensor, tangents: tuple[Tensor, ...]) -> Tensor:
        batches = [*primals, out, *tangents]
        examples = _examples(batches)
        n = len(primals)
        unbatched = self.rule.tangent(tuple(examples[:n]), examples[n], tuple(examples[n + 1 :]))
        (batched,) = vmap(unbatched, examples, batches)
        return batched

    def __repr__(self) -> str:
        return f"vmap({self.rule!r})"


class _BatchedTranspose(_Batched):
    """A vmapped rule that has its own transpose: that transpose on one example, vmapped."""

    def transpose(self, primals: tuple[Tensor, ...], out: Tensor, g: Tensor) -> list[Tensor | None]:
        batches = [*primals, out, g]
        examples = _examples(batches)
        n = len(primals)
        unbatched = list(self.rule.transpose(tuple(examples[:n]), examples[n], examples[n + 1]))
        present = [i for i, c in enumerate(unbatched) if c is not None]
        batched = iter(vmap([unbatched[i] for i in present], examples, batches))
        return [next(batched) if c is not None else None for c in unbatched]


def _examples(batches: list[Tensor]) -> list[Tensor]:
    """The first example of each batch, which the unbatched rule is built over and vmap replaces."""
    return [gb.squeeze(b[:1], 0) for b in batches]


@register_jvp("custom_jvp")
def _custom_jvp_tangent(
    inputs: tuple[Tensor, ...], out: Tensor, tangents: Sequence[Tensor | None], rule: Any, num_args: int
) -> Tensor:
    primals = inputs[:num_args]
    filled = tuple(zeros_like(p) if t is None else t for p, t in zip(primals, tangents))
    return rule.tangent(primals, out, filled)


@register_vjp("custom_jvp")
def _custom_jvp_transposed(
    inputs: tuple[Tensor, ...], out: Tensor, g: Tensor, rule: Any, num_args: int
) -> list[Tensor | None]:
    """The transpose of the linear map tangents -> tangent_out at these primals: the rule's own
    `transpose` where it has one, else the vjp of its tangent graph."""
    primals = inputs[:num_args]
    if hasattr(rule, "transpose"):
        return [*rule.transpose(primals, out, g), None]
    placeholders = tuple(zeros_like(p) for p in primals)
    tangent = fit_tangent(rule.tangent(primals, out, placeholders), out, repr(rule))
    wrt = [i for i, p in enumerate(primals) if is_float(p.dtype)]
    cotangents = vjp(tangent, [placeholders[i] for i in wrt], g, allow_unused=True)
    _require_linear(rule, out, placeholders, cotangents)
    by_slot = dict(zip(wrt, cotangents))
    return [by_slot.get(i) for i in range(num_args)] + [None]


def _require_linear(rule: Any, out: Tensor, placeholders: tuple[Tensor, ...], cotangents: list[Tensor]) -> None:
    """A transpose reads the tangents only if the rule is not linear in them (`size` reads only
    their shapes)."""
    graph = out.graph
    needed = set(graph.needed_nodes([c.value for c in cotangents]))
    for p in placeholders:
        readers = [u for u, _ in graph.users_of(p.value) if u in needed and graph.node(u).op != "size"]
        if readers:
            raise GradientError(
                f"reverse mode transposes the jvp rule of {rule!r}, but its tangent is not linear in the "
                f"tangents (node {graph.node(readers[0]).label} reads one); make the tangent linear, or "
                "wrap the function in custom_vjp to give its reverse-mode rule"
            )


@register_batch("custom_jvp")
def _custom_jvp_batched(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, rule: Any, num_args: int
) -> Tensor:
    args = inputs[:num_args]
    value = inputs[-1] if batched[-1] else gb.broadcast_to(inputs[-1], (size, *inputs[-1].shape))
    if not any(batched[:num_args]):
        return value
    stacked = [a if flag else gb.broadcast_to(a, (size, *a.shape)) for a, flag in zip(args, batched)]
    batched_rule = _BatchedTranspose(rule) if hasattr(rule, "transpose") else _Batched(rule)
    return gb.emit("custom_jvp", *stacked, value, rule=batched_rule, num_args=num_args)
