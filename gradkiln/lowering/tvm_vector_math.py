"""Vectorizable float32 exp, log, tanh, sigmoid, sin, cos and erf for the llvm target.

TVM 0.27 lowers these intrinsics to libm calls on llvm (its LLVM has no vector-library option),
and a loop holding a call per element does not vectorize. While `vector_math()` is active (our
CPU builds), the float32 forms are instead lowered to plain arithmetic that LLVM vectorizes:
range reduction (Cody-Waite: the constant split into parts whose products with the small integer
`n` are exact) and a polynomial on the reduced range. The polynomials are Chebyshev
interpolants computed here from the functions themselves (near-minimax; every fit is below
float32's rounding error on its interval). Special values follow numpy: NaN in, NaN out;
exp over/underflows to inf/0 through the denormals; log(0) = -inf, log(x < 0) = NaN, log of a
denormal is exact; sin/cos(+-inf) = NaN; tanh and sigmoid saturate exactly.

Accuracy against the correctly rounded result (tested by dense sweeps, `tests/lowering/test_vector_math.py`):
exp, log, sigmoid, tanh, erf within 3 ulp; sin and cos within 3 ulp or 1e-7 absolute for |x| <= 2e8,
where the reduction is exact (pi/2 in four 26-bit parts, in float64); a vector holding a larger
argument, inf or NaN is computed by libm (exact reduction, as numpy). float64 and float16 keep
TVM's rules (libm).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Iterator

import numpy as np
import tvm
from tvm import tirx

PrimExpr = Any
_ACTIVE = contextvars.ContextVar("gradkiln_vector_math", default=False)
LEVEL = 20  # above TVM's own llvm rules (10)
EXP_RANGE = (-104.0, 89.0)  # exp is 0 below, inf above (float32)
FLT_MIN = 2.0**-126
SIN_EXACT_LIMIT = 2e8  # below this |x|, n * (each part of pi/2) is exact
ERF_ONE = 3.92  # from here on erfc(x) < 2**-25: erf(x) rounds to 1 in float32


@contextlib.contextmanager
def vector_math() -> Iterator[None]:
    """Lower float32 transcendentals to vectorizable arithmetic in llvm builds made inside this block."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@functools.cache
def fit(name: str, degree: int) -> tuple[float, ...]:
    """Power-series coefficients (constant first) of the Chebyshev interpolant of `name`'s kernel
    on its reduced interval; t is the squared argument for the odd and even kernels."""
    fn, lo, hi = KERNELS[name]
    series = np.polynomial.Chebyshev.interpolate(fn, degree, domain=[lo, hi])
    return tuple(float(c) for c in series.convert(kind=np.polynomial.Polynomial).coef)


KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float, float]] = {
    "exp": (np.exp, -math.log(2) / 2, math.log(2) / 2),  # e**r
    "log": (lambda t: np.arctanh(np.sqrt(t)) / np.sqrt(t), 0.0, 0.1716**2),  # atanh(s)/s, t = s*s
    "sin": (lambda t: np.sin(np.sqrt(t)) / np.sqrt(t), 0.0, (math.pi / 4) ** 2),  # sin(r)/r, t = r*r
    "cos": (lambda t: np.cos(np.sqrt(t)), 0.0, (math.pi / 4) ** 2),  # cos(r), t = r*r
    "tanh": (lambda t: np.tanh(np.sqrt(t)) / np.sqrt(t), 0.0, 0.625**2),  # tanh(x)/x, t = x*x
    "erf": (lambda t: np.vectorize(math.erf)(np.sqrt(t)) / np.sqrt(t), 0.0, 1.0),  # erf(x)/x, t = x*x
    "erfc": (lambda a: np.vectorize(math.erfc)(a) * np.exp(a * a), 1.0, ERF_ONE),  # erfc(a) e**(a*a)
}
DEGREES = {"exp": 7, "log": 5, "sin": 5, "cos": 6, "tanh": 8, "erf": 7, "erfc": 10}


def _lanes(x: PrimExpr) -> int:
    dtype = str(x.ty)
    return int(dtype.split("x")[1]) if "x" in dtype else 1


def _typed(base: str, lanes: int) -> str:
    return base if lanes == 1 else f"{base}x{lanes}"


class _Builder:
    """Expression helpers for one vector width: constants broadcast, lets, bit casts, polynomials."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self.f32, self.f64, self.i32 = (_typed(t, lanes) for t in ("float32", "float64", "int32"))

    def const(self, value: float, base: str = "float32") -> PrimExpr:
        scalar = tirx.const(value, base)
        return scalar if self.lanes == 1 else tirx.Broadcast(scalar, self.lanes)

    def let(self, value: PrimExpr, body: Callable[[PrimExpr], PrimExpr]) -> PrimExpr:
        """`body(v)` with v bound to `value` once (the argument can be a long inlined chain)."""
        var = tirx.Var("vm", str(value.ty))
        return tirx.Let(var, value, body(var))

    def poly(self, name: str, t: PrimExpr, base: str = "float32") -> PrimExpr:
        """The fitted polynomial of `name` at t, by Horner's rule."""
        coefs = fit(name, DEGREES[name])
        acc = self.const(coefs[-1], base)
        for c in reversed(coefs[:-1]):
            acc = acc * t + self.const(c, base)
        return acc

    def pow2(self, k: PrimExpr) -> PrimExpr:
        """2**k as float32 for int32 k in [-126, 127], from its exponent bits."""
        return tirx.reinterpret(self.f32, tirx.shift_left(k + self.const(127, "int32"), self.const(23, "int32")))

    def all(self, cond: PrimExpr) -> PrimExpr:
        """Whether `cond` holds in every lane, as a scalar (what a branch per vector needs)."""
        if self.lanes == 1:
            return cond
        return tirx.call_llvm_pure_intrin("bool", "llvm.vector.reduce.and", cond)

    def select(self, cond: PrimExpr, a: PrimExpr, b: PrimExpr) -> PrimExpr:
        """a where cond, else b, as a bit blend (LLVM emits a vector select). tirx.Select would
        make TVM's simplifier analyse each branch under its condition, exponentially in the
        nesting of these functions."""
        base = str(a.ty).split("x")[0]
        bits = {"float32": "int32", "float64": "int64", "int32": "int32"}[base]
        typed = _typed(bits, self.lanes)
        mask = -tirx.Cast(typed, cond)
        a_bits, b_bits = (x if base == bits else tirx.reinterpret(typed, x) for x in (a, b))
        blend = (a_bits & mask) | (b_bits & ~mask)
        return blend if base == bits else tirx.reinterpret(_typed(base, self.lanes), blend)


def exp_f32(b: _Builder, x: PrimExpr) -> PrimExpr:
    """e**x = 2**n * e**r, n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]. 2**n is applied
    as two factors so that n down to -150 reaches the denormals with one rounding and n = 128 still
    overflows to inf."""
    lo, hi = EXP_RANGE
    ln2_hi = float(np.float32(round(math.log(2) * 2**16) / 2**16))  # 16 bits: n * ln2_hi exact
    ln2_lo = math.log(2) - ln2_hi

    def body(v: PrimExpr) -> PrimExpr:
        clamped = b.select(tirx.isnan(v), b.const(0.0), b.select(v < lo, b.const(lo), b.select(v > hi, b.const(hi), v)))

        def scaled(c: PrimExpr) -> PrimExpr:
            return b.let(tirx.nearbyint(c * b.const(1 / math.log(2))), lambda n: _exp_scale(b, c, n, ln2_hi, ln2_lo))

        return b.select(tirx.isnan(v), v, b.let(clamped, scaled))

    return b.let(x, body)


def _exp_scale(b: _Builder, c: PrimExpr, n: PrimExpr, ln2_hi: float, ln2_lo: float) -> PrimExpr:
    r = (c - n * b.const(ln2_hi)) - n * b.const(ln2_lo)
    k = tirx.Cast(b.i32, n)
    half = tirx.shift_right(k, b.const(1, "int32"))
    return b.let(k, lambda _: b.poly("exp", r) * b.pow2(half) * b.pow2(k - half))


def log_f32(b: _Builder, x: PrimExpr) -> PrimExpr:
    """log x = e ln 2 + log m, x = m 2**e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s),
    s = (m - 1) / (m + 1). Denormals are scaled by 2**23 first."""
    ln2_hi = float(np.float32(round(math.log(2) * 2**12) / 2**12))  # 12 bits: e * ln2_hi exact
    ln2_lo = math.log(2) - ln2_hi

    def body(v: PrimExpr) -> PrimExpr:
        tiny = v < b.const(FLT_MIN)
        scaled = b.select(tiny, v * b.const(2.0**23), v)
        bits = tirx.reinterpret(b.i32, scaled)
        exponent = tirx.shift_right(bits, b.const(23, "int32")) - b.select(
            tiny, b.const(150, "int32"), b.const(127, "int32")
        )
        mantissa = tirx.reinterpret(b.f32, (bits & b.const(0x7FFFFF, "int32")) | b.const(0x3F800000, "int32"))
        high = mantissa > b.const(math.sqrt(2))
        m = b.select(high, mantissa * b.const(0.5), mantissa)
        e = tirx.Cast(b.f32, exponent + b.select(high, b.const(1, "int32"), b.const(0, "int32")))
        s = b.let((m - b.const(1.0)) / (m + b.const(1.0)), lambda s: s * b.poly("log", s * s))
        value = e * b.const(ln2_hi) + (s + s + e * b.const(ln2_lo))
        inf = b.const(math.inf)
        value = b.select(v == inf, inf, b.select(v == b.const(0.0), -inf, value))
        return b.select(v < b.const(0.0), b.const(math.nan), b.select(tirx.isnan(v), v, value))

    return b.let(x, body)


PI_HALF = Fraction(Decimal("1.570796326794896619231321691639751442098584699687552910487472296153908203143104499"))


def _pi_half_parts(count: int = 4, bits: int = 26) -> list[float]:
    """pi/2 as float64 parts of `bits` significant bits each, so that n * part is exact for n < 2**(53 - bits)."""
    rest, parts = PI_HALF, []
    for _ in range(count):
        scale = 2 ** (bits - math.frexp(float(rest))[1])
        part = Fraction(round(rest * scale), scale)
        parts.append(float(part))
        rest -= part
    return parts


PI_HALF_PARTS = _pi_half_parts()
PI_HALF_PARTS_F32 = _pi_half_parts(bits=17)  # float32 parts; n * part is exact for |n| < 2**7
SIN_FAST_LIMIT = 125.0  # below this |x|, n < 2**7 and the float32 reduction is exact enough


def sincos_f32(b: _Builder, x: PrimExpr, quadrant_shift: int) -> PrimExpr:
    """sin (shift 0) or cos (shift 1) of x: r = x - n pi/2 (n = round(2x/pi)), then sin or cos
    of r by polynomial, picked and signed by the quadrant n + shift (mod 4). A branch per vector
    picks the cheapest exact reduction for all its lanes: in float32 (four parts of pi/2) below
    SIN_FAST_LIMIT, in float64 (twice the time of the rest) below SIN_EXACT_LIMIT, else libm
    (LLVM's sin/cos intrinsics, scalar calls), which reduces huge arguments exactly, as numpy
    does, and takes NaN and inf to NaN. sin(-0.0) is -0.0 (the reduction's -0 - n * part, n = -0,
    gave +0; tan = sin / cos too)."""

    def body(v: PrimExpr) -> PrimExpr:
        magnitude = tirx.abs(v)
        exact = _sincos_reduced(b, tirx.Cast(b.f64, v), quadrant_shift)
        libm = tirx.call_llvm_pure_intrin(b.f32, "llvm.cos" if quadrant_shift else "llvm.sin", v)
        wide = tirx.if_then_else(b.all(magnitude < b.const(SIN_EXACT_LIMIT)), exact, libm)
        small = b.all(magnitude < b.const(SIN_FAST_LIMIT))
        value = tirx.if_then_else(small, _sincos_small(b, v, quadrant_shift), wide)
        return value if quadrant_shift else b.select(v == b.const(0.0), v, value)

    return b.let(x, body)


def _sincos_small(b: _Builder, v: PrimExpr, quadrant_shift: int) -> PrimExpr:
    """The float32 reduction for |x| < SIN_FAST_LIMIT: each n * part exact, x - n * part1 exact."""

    def with_n(n: PrimExpr) -> PrimExpr:
        r = v
        for part in PI_HALF_PARTS_F32:
            r = r - n * b.const(part)
        q = (tirx.Cast(b.i32, n) + b.const(quadrant_shift, "int32")) & b.const(3, "int32")
        return b.let(r, lambda r32: b.let(q, lambda qi: _sincos_pick(b, r32, qi)))

    return b.let(tirx.nearbyint(v * b.const(2 / math.pi)), with_n)


def _sincos_reduced(b: _Builder, xd: PrimExpr, quadrant_shift: int) -> PrimExpr:
    """The float64 reduction for |x| < SIN_EXACT_LIMIT, where each n * part is exact: r and the
    quadrant (n + shift) mod 4."""

    def with_n(n: PrimExpr) -> PrimExpr:
        r = xd
        for part in PI_HALF_PARTS:
            r = r - n * b.const(part, "float64")
        quadrant = n + b.const(float(quadrant_shift), "float64")
        q = tirx.Cast(b.i32, quadrant - b.const(4.0, "float64") * tirx.floor(quadrant * b.const(0.25, "float64")))
        return b.let(tirx.Cast(b.f32, r), lambda r32: b.let(q, lambda qi: _sincos_pick(b, r32, qi)))

    return b.let(tirx.nearbyint(xd * b.const(2 / math.pi, "float64")), with_n)


def _sincos_pick(b: _Builder, r: PrimExpr, q: PrimExpr) -> PrimExpr:
    def pick(t: PrimExpr) -> PrimExpr:
        odd = (q & b.const(1, "int32")) == b.const(1, "int32")
        value = b.select(odd, b.poly("cos", t), r * b.poly("sin", t))
        return b.select((q & b.const(2, "int32")) == b.const(2, "int32"), -value, value)

    return b.let(r * r, pick)


def tanh_f32(b: _Builder, x: PrimExpr) -> PrimExpr:
    """x * P(x*x) for |x| < 0.625, else sign(x) (1 - 2 / (e**2|x| + 1)), which no longer cancels."""

    def body(v: PrimExpr) -> PrimExpr:
        a = tirx.abs(v)
        big = b.let(exp_f32(b, a + a), lambda e: b.const(1.0) - b.const(2.0) / (e + b.const(1.0)))
        signed = b.select(v < b.const(0.0), -big, big)
        return b.select(a < b.const(0.625), v * b.poly("tanh", v * v), signed)

    return b.let(x, body)


def sigmoid_f32(b: _Builder, x: PrimExpr) -> PrimExpr:
    """1 / (1 + e**-x) for x >= 0, e**x / (1 + e**x) below: no overflow, denormal tails kept."""

    def body(v: PrimExpr) -> PrimExpr:
        def from_e(e: PrimExpr) -> PrimExpr:
            return b.let(b.const(1.0) / (b.const(1.0) + e), lambda d: b.select(v >= b.const(0.0), d, e * d))

        return b.let(exp_f32(b, -tirx.abs(v)), from_e)

    return b.let(x, body)


def erf_f32(b: _Builder, x: PrimExpr) -> PrimExpr:
    """x P(x*x) for |x| < 1, else sign(x) (1 - e**(-x*x) Q(|x|)) with Q(a) = erfc(a) e**(a*a), a smooth
    function a polynomial fits (erfc itself spans seven decades there); +-1 from ERF_ONE on."""

    def body(v: PrimExpr) -> PrimExpr:
        a = tirx.abs(v)
        clamped = b.select(a < b.const(ERF_ONE), a, b.const(ERF_ONE))  # NaN and inf too: finite below
        tail = b.let(clamped, lambda c: b.const(1.0) - exp_f32(b, -(c * c)) * b.poly("erfc", c))
        big = b.select(a < b.const(ERF_ONE), tail, b.const(1.0))
        value = b.select(a < b.const(1.0), v * b.poly("erf", v * v), b.select(v < b.const(0.0), -big, big))
        return b.select(tirx.isnan(v), v, value)

    return b.let(x, body)


LOWERINGS: dict[str, Callable[[_Builder, PrimExpr], PrimExpr]] = {
    "exp": exp_f32,
    "log": log_f32,
    "tanh": tanh_f32,
    "sigmoid": sigmoid_f32,
    "sin": lambda b, x: sincos_f32(b, x, 0),
    "cos": lambda b, x: sincos_f32(b, x, 1),
    "erf": erf_f32,
}


def _rule(name: str, previous: Callable[[PrimExpr], PrimExpr] | None) -> Callable[[PrimExpr], PrimExpr]:
    """The llvm lowering of tirx.<name>: ours for float32 while active, else TVM's (or the next
    pattern, when TVM had no llvm rule: returning the call unchanged passes it on)."""

    def lower(call: PrimExpr) -> PrimExpr:
        if _ACTIVE.get() and str(call.ty).split("x")[0] == "float32":
            return LOWERINGS[name](_Builder(_lanes(call)), call.args[0])
        return previous(call) if previous is not None else call

    return lower


_INSTALLED: set[str] = set()


def install() -> None:
    """Register the rules (once per process); they stay inert outside `vector_math()`."""
    for name in LOWERINGS:
        if name in _INSTALLED:
            continue
        previous = tvm.ir.Op.get(f"tirx.{name}").get_attr("llvm.FLowerIntrinsic")
        _INSTALLED.add(name)
        tirx.register_intrin_lowering(f"tirx.{name}", "llvm", f=_rule(name, previous), level=LEVEL)


install()
