"""One row per simple elementwise op (the unary ops without attributes, and binary arithmetic):
everything each layer needs to know about it, in one place.

Each layer derives its rule for an op from the op's row (JAX keeps a primitive, its derivative and
its lowering on adjacent lines in the same spirit):

| field | read by |
|---|---|
| `numpy`, `floats` | the op definition and reference (`ops/elementwise.py`), the builder function |
| `doc` | the builder function's docstring (`gk.<name>`, `builder/elementwise.py`) |
| `sympy` | fused expressions (`ops/fused.py`): a sympy function, or `Derivative` for a new one |
| `derivative` | vjp and jvp rules (`symbolic/vjp_rules.py`, `jvp_rules.py`); None: no gradient |
| `onnx` | ONNX export (`onnx_io/export_rules.py`) and, its inverse, import (`import_rules.py`) |
| `relax` | TVM lowering (`lowering/tvm/emitters/elementwise.py`), a Relax op named by its path under `relax.op` |
| `flops` | the cost model (`passes/cost.py`) |
| `domain` | test samples (`testing/families.py`) |
| `rounding`, `well_conditioned` | the differential fuzzer's error bounds and draws (`testing/`) |

A field left None means the layer has no derived rule for the op: it either has none (no gradient,
not expressible in fused nodes, no one-to-one ONNX op) or keeps a hand-written one (numerics-
sensitive TVM emitters, compositions in export_elementwise.py). graph/ must not import TVM or onnx, so
those layers' fields are names that their own layer resolves. `Binary` rows have no `sympy`,
`domain` or `well_conditioned`: their fused forms (sums, products, powers) are structural
(`ops/fused.py`), and their samples exercise broadcasting and integer operands by hand
(`testing/families.py`, `samples.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import sympy

TRANSCENDENTAL = 4  # FLOPs charged for one exp, log, sqrt, sin, ...: several, not one


@dataclass(frozen=True)
class Derivative:
    """A new sympy function for the op in fused expressions, given its derivative
    `fdiff(x, y, functions)`: x the argument, y the function applied to it, `functions` the
    sympy function of each op (so a derivative can name another op's function)."""

    fdiff: Callable[[sympy.Expr, sympy.Expr, dict[str, Any]], sympy.Expr]


@dataclass(frozen=True)
class Unary:
    """One unary op. `derivative(gb, x, y, g)` is d(op)/dx applied to the cotangent g, written
    with the builder namespace `gb` (y = op(x)); the jvp reuses it (a diagonal Jacobian is its
    own transpose). `domain` is the sample's input range, "nonzero", "off_grid" (values away from
    integers and halves, for rounding ops) or None (sampled in testing/samples.py)."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    doc: str
    floats: bool = True
    sympy: type[sympy.Function] | Derivative | None = None
    derivative: Callable[..., Any] | None = None
    onnx: str | None = None
    relax: str | None = None
    flops: int = 1
    domain: tuple[float, float] | Literal["nonzero", "off_grid"] | None = (-2.0, 2.0)
    rounding: Literal["exact", "once", "transcendental"] = "transcendental"
    well_conditioned: bool = False


def libm(
    name: str, numpy: Callable[[np.ndarray], np.ndarray], doc: str, derivative: Callable[..., Any], **fields: Any
) -> Unary:
    """The row of a C math library function (`exp`, `sin`, `erf`, ...), which every layer has under
    its own name: sympy's function of that name, the ONNX op of the capitalised name (`Sin`), the
    Relax op of the name, and TRANSCENDENTAL FLOPs; `fields` sets the others (domain, ...)."""
    return Unary(
        name,
        numpy,
        doc,
        sympy=getattr(sympy, name),
        derivative=derivative,
        onnx=name.capitalize(),
        relax=name,
        flops=TRANSCENDENTAL,
        **fields,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype)


def erf_array(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x)).astype(x.dtype)  # 0-d input gives a Python float


UNARY_ROWS: tuple[Unary, ...] = (
    Unary(
        "neg",
        np.negative,
        "-x.",
        floats=False,
        derivative=lambda gb, x, y, g: -g,
        onnx="Neg",
        domain=None,
        rounding="exact",
        well_conditioned=True,
    ),
    Unary(
        "abs",
        np.abs,
        "|x| (gradient 0 at 0).",
        floats=False,
        sympy=Derivative(lambda x, y, fn: fn["sign"](x)),
        derivative=lambda gb, x, y, g: g * gb.sign(x),
        onnx="Abs",
        relax="abs",
        domain=None,
        rounding="exact",
        well_conditioned=True,
    ),
    Unary(
        "sign",
        np.sign,
        "-1, 0 or 1 (gradient 0).",
        floats=False,
        sympy=Derivative(lambda x, y, fn: sympy.Integer(0)),
        onnx="Sign",
        domain=None,
        rounding="exact",
    ),
    Unary(
        "relu",
        lambda x: np.maximum(x, np.zeros((), x.dtype)),
        "max(x, 0) (gradient 0 at 0).",
        floats=False,
        sympy=Derivative(lambda x, y, fn: fn["sign"](y)),
        # y > 0 iff x > 0; reading y lets relu fuse into its producer
        derivative=lambda gb, x, y, g: gb.where(y > 0, g, 0.0),
        onnx="Relu",
        domain=None,
        rounding="exact",
        well_conditioned=True,
    ),
    libm("exp", np.exp, "e**x.", lambda gb, x, y, g: g * y, domain=None),
    libm("log", np.log, "Natural logarithm.", lambda gb, x, y, g: g / x, domain=None),
    Unary(
        "sqrt",
        np.sqrt,
        "Square root.",
        derivative=lambda gb, x, y, g: g * 0.5 / y,
        onnx="Sqrt",
        relax="sqrt",
        flops=TRANSCENDENTAL,
        domain=None,
        rounding="once",
    ),
    Unary(
        "tanh",
        np.tanh,
        "Hyperbolic tangent.",
        sympy=sympy.tanh,
        derivative=lambda gb, x, y, g: g * (1.0 - y * y),
        onnx="Tanh",
        flops=TRANSCENDENTAL,
        domain=None,
        well_conditioned=True,
    ),
    Unary(
        "sigmoid",
        _sigmoid,
        "1 / (1 + e**-x), computed stably.",
        sympy=Derivative(lambda x, y, fn: y * (1 - y)),
        derivative=lambda gb, x, y, g: g * y * (1.0 - y),
        onnx="Sigmoid",
        relax="sigmoid",
        flops=TRANSCENDENTAL + 2,
        domain=None,
        well_conditioned=True,
    ),
    Unary(
        "exp2",
        np.exp2,
        "2**x.",
        derivative=lambda gb, x, y, g: g * y * math.log(2.0),
        flops=TRANSCENDENTAL,
    ),
    Unary(
        "log1p",
        np.log1p,
        "log(1 + x), accurate near 0.",
        sympy=Derivative(lambda x, y, fn: 1 / (1 + x)),
        derivative=lambda gb, x, y, g: g / (1.0 + x),
        flops=TRANSCENDENTAL,
        domain=(-0.5, 2.0),
    ),
    Unary(
        "expm1",
        np.expm1,
        "e**x - 1, accurate near 0.",
        sympy=Derivative(lambda x, y, fn: y + 1),
        derivative=lambda gb, x, y, g: g * (y + 1.0),
        flops=TRANSCENDENTAL,
    ),
    libm("sin", np.sin, "Sine.", lambda gb, x, y, g: g * gb.cos(x)),
    libm("cos", np.cos, "Cosine.", lambda gb, x, y, g: -(g * gb.sin(x))),
    libm("tan", np.tan, "Tangent.", lambda gb, x, y, g: g * (1.0 + y * y), domain=(-1.2, 1.2)),
    libm("asin", np.arcsin, "Inverse sine.", lambda gb, x, y, g: g * gb.rsqrt(1.0 - x * x), domain=(-0.8, 0.8)),
    libm("acos", np.arccos, "Inverse cosine.", lambda gb, x, y, g: -(g * gb.rsqrt(1.0 - x * x)), domain=(-0.8, 0.8)),
    libm("atan", np.arctan, "Inverse tangent.", lambda gb, x, y, g: g / (1.0 + x * x), well_conditioned=True),
    libm("sinh", np.sinh, "Hyperbolic sine.", lambda gb, x, y, g: g * gb.cosh(x)),
    libm("cosh", np.cosh, "Hyperbolic cosine.", lambda gb, x, y, g: g * gb.sinh(x)),
    libm(
        "erf",
        erf_array,
        "The error function.",
        lambda gb, x, y, g: g * (2.0 / math.sqrt(math.pi)) * gb.exp(-(x * x)),
        well_conditioned=True,
    ),
    Unary(
        "softplus",
        lambda x: np.logaddexp(np.zeros((), x.dtype), x),
        "log(1 + e**x), computed stably.",
        sympy=Derivative(lambda x, y, fn: fn["sigmoid"](x)),
        derivative=lambda gb, x, y, g: g * gb.sigmoid(x),
        onnx="Softplus",
        relax="nn.softplus",
        flops=2 * TRANSCENDENTAL + 1,
        well_conditioned=True,
    ),
    Unary(
        "silu",
        lambda x: x * _sigmoid(x),
        "x * sigmoid(x) (also called swish).",
        derivative=lambda gb, x, y, g: g * (y + gb.sigmoid(x) * (1.0 - y)),
        relax="nn.silu",
        flops=TRANSCENDENTAL + 3,
        well_conditioned=True,
    ),
    Unary(
        "floor",
        np.floor,
        "Round toward -inf (gradient 0).",
        onnx="Floor",
        relax="floor",
        domain="off_grid",
        rounding="exact",
    ),
    Unary(
        "ceil",
        np.ceil,
        "Round toward +inf (gradient 0).",
        onnx="Ceil",
        relax="ceil",
        domain="off_grid",
        rounding="exact",
    ),
    Unary(
        "round",
        np.round,
        "Round to the nearest integer, halves to even like numpy and ONNX (gradient 0).",
        onnx="Round",
        domain="off_grid",
        rounding="exact",
    ),
    Unary(
        "reciprocal",
        np.reciprocal,
        "1 / x.",
        derivative=lambda gb, x, y, g: -(g * y * y),
        onnx="Reciprocal",
        domain="nonzero",
        rounding="once",
    ),
    Unary(
        "rsqrt",
        lambda x: np.reciprocal(np.sqrt(x)),
        "1 / sqrt(x).",
        derivative=lambda gb, x, y, g: g * -0.5 * y / x,
        relax="rsqrt",
        flops=TRANSCENDENTAL + 1,
        domain=(0.3, 2.0),
    ),
    Unary(
        "square",
        np.square,
        "x * x.",
        floats=False,
        derivative=lambda gb, x, y, g: g * 2.0 * x,
        relax="square",
        rounding="once",
        well_conditioned=True,
    ),
)


@dataclass(frozen=True)
class Binary:
    """One binary op over operands broadcast together (numpy rules). `derivative(gb, a, b, y, g)`
    gives the cotangents of a and b at the broadcast shape (the rules sum them back to each
    operand's shape); the jvp reuses it with g set to one operand's tangent. Its fused form, where
    it has one, is structural (a sum, product or power) and lives in `ops/fused.py`."""

    name: str
    numpy: Callable[[np.ndarray, np.ndarray], np.ndarray]
    doc: str
    floats: bool = False
    derivative: Callable[..., tuple[Any, Any]] | None = None
    onnx: str | None = None
    relax: str | None = None
    flops: int = 1
    rounding: Literal["exact", "once", "transcendental"] = "transcendental"


def _tie_split(gb: Any, g: Any, a: Any, b: Any, a_wins: Any) -> tuple[Any, Any]:
    """The cotangents of a and b for maximum/minimum: all to the winner, halves at ties."""
    to_a = gb.where(a_wins, g, gb.where(gb.equal(a, b), g * 0.5, 0.0))
    return to_a, g - to_a


def _atan2(gb: Any, a: Any, b: Any, g: Any) -> tuple[Any, Any]:
    scale = g / (a * a + b * b)
    return scale * b, -(scale * a)


BINARY_ROWS: tuple[Binary, ...] = (
    Binary(
        "add",
        np.add,
        "a + b with numpy broadcasting.",
        derivative=lambda gb, a, b, y, g: (g, g),
        onnx="Add",
        relax="add",
        rounding="once",
    ),
    Binary(
        "sub",
        np.subtract,
        "a - b with numpy broadcasting.",
        derivative=lambda gb, a, b, y, g: (g, -g),
        onnx="Sub",
        relax="subtract",
        rounding="once",
    ),
    Binary(
        "mul",
        np.multiply,
        "a * b with numpy broadcasting.",
        derivative=lambda gb, a, b, y, g: (g * b, g * a),
        onnx="Mul",
        relax="multiply",
        rounding="once",
    ),
    Binary(
        "div",
        np.divide,
        "True division a / b (integers are divided as float32, as in PyTorch).",
        floats=True,
        derivative=lambda gb, a, b, y, g: (g / b, -g * y / b),
        onnx="Div",
        relax="divide",
        rounding="once",
    ),
    Binary(
        "pow",
        np.power,
        "a ** b elementwise, in floating point.",
        floats=True,
        derivative=lambda gb, a, b, y, g: (g * b * gb.pow(a, b - 1.0), g * y * gb.log(a)),
        onnx="Pow",
        relax="power",
        flops=TRANSCENDENTAL,
    ),
    Binary(
        "maximum",
        np.maximum,
        "Elementwise max; at ties the gradient is split equally between a and b.",
        derivative=lambda gb, a, b, y, g: _tie_split(gb, g, a, b, gb.greater(a, b)),
        onnx="Max",
        rounding="exact",
    ),
    Binary(
        "minimum",
        np.minimum,
        "Elementwise min; at ties the gradient is split equally between a and b.",
        derivative=lambda gb, a, b, y, g: _tie_split(gb, g, a, b, gb.less(a, b)),
        onnx="Min",
        rounding="exact",
    ),
    Binary(
        "atan2",
        np.arctan2,
        "The angle of the point (b, a), in (-pi, pi], like numpy.arctan2(a, b).",
        floats=True,
        derivative=lambda gb, a, b, y, g: _atan2(gb, a, b, g),
        relax="atan2",
        flops=TRANSCENDENTAL,
    ),
    Binary(
        "mod",
        np.mod,  # numpy's sign convention: the result has the divisor's sign
        "a mod b with numpy's sign convention: the result has the sign of b (ints and floats).",
        derivative=lambda gb, a, b, y, g: (g, -(g * gb.floordiv(a, b))),
        flops=2,
        rounding="once",
    ),
    Binary(
        "floordiv",
        np.floor_divide,  # rounds toward -inf, for ints and floats
        "a // b rounded toward -inf, like numpy (ints and floats; gradient 0).",
        flops=2,
        rounding="once",
    ),
)
