"""Derivative rules of the complex-number ops (real, imag, conj, angle, complex) and of `abs` on a
complex operand, in PyTorch's convention.

A complex z = x + iy is a pair of reals. For a real loss L, the gradient with respect to z is
dL/dx + i dL/dy = 2 dL/d(conj z), the conjugate Wirtinger derivative: what `torch.autograd`
returns (`jax.grad` returns its conjugate), so a step -lr * grad descends. A vjp rule maps the
cotangent of its output to its inputs' by the adjoint J^H of the real-linear derivative, so
`Re <J v, u> == Re <v, vjp(u)>`; a jvp rule applies the derivative itself (for a holomorphic op,
multiplication by f'(z): forward mode is complex-linear, without conjugation). Holomorphic ops
(add, mul, exp, matmul, ...) reuse their real rules through `vjp_rules.holomorphic`; the ops
here are not holomorphic and have rules of their own.
"""

from __future__ import annotations

from typing import Any

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.builder import zeros_like
from ..graph.dtypes import is_complex
from .jvp_rules import Tangents, register_jvp
from .vjp_rules import register_vjp, unbroadcast


def _as_complex(g: Tensor, like: Tensor) -> Tensor:
    """A real cotangent or tangent as a complex tensor of `like`'s dtype (imaginary part 0)."""
    return gb.cast(g, like.dtype)


def _safe(modulus: Tensor) -> Tensor:
    """|x| with 1 where x is 0, to divide by: the derivatives of abs and angle are 0 there, as torch's."""
    return gb.where(gb.equal(modulus, 0.0), 1.0, modulus)


# -- vjp rules: (inputs, output, cotangent) -> one cotangent per input ------------------------------
@register_vjp("real")
def _real(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    return (_as_complex(g, inputs[0]),)


@register_vjp("imag")
def _imag(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    return (gb.complex(zeros_like(g), g),)


@register_vjp("conj")
def _conj(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    return (gb.conj(g),)


@register_vjp("angle")
def _angle(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    """d angle = Im(conj(z) dz) / |z|^2, whose adjoint sends g to i g z / |z|^2."""
    (z,) = inputs
    modulus = _safe(gb.abs(z))
    return (gb.complex(zeros_like(g), g) * z / _as_complex(modulus * modulus, z),)


@register_vjp("complex")
def _complex(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    re, im = inputs
    return unbroadcast(gb.real(g), re), unbroadcast(gb.imag(g), im)


def _abs_vjp(inputs: tuple[Tensor, ...], out: Tensor, g: Tensor) -> tuple[Tensor]:
    """g times z / |z|, the direction in which |z| grows (0 at 0)."""
    (z,) = inputs
    return (_as_complex(g / _safe(out), z) * z,)


# -- jvp rules: (inputs, output, tangents) -> the output's tangent -----------------------------------
for _name in ("real", "imag", "conj"):
    register_jvp(_name)(lambda inputs, out, tangents, op=_name: gb.emit(op, tangents[0]))


@register_jvp("angle")
def _angle_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    (z,), (t,) = inputs, tangents
    modulus = _safe(gb.abs(z))
    return gb.imag(gb.conj(z) * t) / (modulus * modulus)


@register_jvp("complex")
def _complex_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    (re, im), (t_re, t_im) = inputs, tangents
    return gb.complex(zeros_like(re) if t_re is None else t_re, zeros_like(im) if t_im is None else t_im)


def _abs_jvp(inputs: tuple[Tensor, ...], out: Tensor, tangents: Tangents) -> Tensor:
    (z,), (t,) = inputs, tangents
    return gb.real(gb.conj(z) * t) / _safe(out)


def _complex_operand(inputs: tuple[Tensor, ...], *rest: Any, **attrs: Any) -> bool:
    """`abs` keeps its real rules for real operands and takes these for complex ones."""
    return is_complex(inputs[0].dtype)


register_vjp("abs", when=_complex_operand)(_abs_vjp)
register_jvp("abs", when=_complex_operand)(_abs_jvp)
