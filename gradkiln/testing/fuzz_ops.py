"""The op table the target fuzzer (`fuzz_targets.py`) draws random sub-graphs from.

Every family of the op table is here: elementwise math and arithmetic, comparisons and where,
casts, bitwise ops, reductions and scans, shape and indexing ops, selection, nn (conv, pools,
norms, softmax, dropout), linear algebra and control flow. A generator writes one builder
expression (`gk.sin(v0)`) over the values drawn so far; the expression is both what the graph is
built from and what a reproducer prints, so the two cannot drift apart.

Operands of ill-conditioned ops (exp, div, pow, ...) and of discontinuous ones (comparisons,
floor, argmax, sort indices, ...) are exact values: inputs, or results of ops that round once
from exact operands. An inexact operand there would turn a legitimate last-bit difference
between backends into a large one, which is a false alarm, not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..graph.dtypes import is_float, is_int
from ..graph.ops.elementwise_table import UNARY_ROWS

FLOATS = ("float16", "float32", "float64")
INTS = ("int8", "int32", "int64", "uint8")

# float ops whose result can move far when their operand moves by an ulp (or that jump)
ILL_CONDITIONED = ("exp", "log", "sqrt", "exp2", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos")
ILL_CONDITIONED += ("sinh", "cosh", "reciprocal", "rsqrt", "sign", "floor", "ceil", "round")
WELL_CONDITIONED = tuple(row.name for row in UNARY_ROWS if row.well_conditioned)  # in table order
INT_UNARY = ("neg", "abs", "sign", "relu", "square")
COMPARES = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")


@dataclass
class Var:
    """A value drawn so far: its name in the builder code, shape ("N" for the symbolic batch dim),
    dtype, and whether it is exact (an input, or rounded once from exact operands)."""

    name: str
    shape: tuple
    dtype: str
    exact: bool


@dataclass
class Leaf:
    """A graph input of a sub-graph and its values (at the batch size the case was drawn with)."""

    name: str
    shape: tuple
    dtype: str
    values: np.ndarray


@dataclass
class Draw:
    """What generators read and write while one sub-graph is drawn."""

    rng: np.random.Generator
    batch: int
    leaves: list[Leaf] = field(default_factory=list)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def sizes(self, shape: tuple) -> tuple[int, ...]:
        return tuple(self.batch if d == "N" else d for d in shape)

    def fresh(self, shape: tuple, dtype: str, kind: str = "any", bound: int = 0) -> str:
        """A new input of `shape`: "any" values (with the special ones), "normal", "nonzero" or
        "index" (integers in [-bound, bound)) or "conditioned" (2 I + noise, square matrices)."""
        name = f"x{len(self.leaves)}"
        shape = tuple(d if static(d) or d == "N" else 1 for d in shape)  # "2*N" cannot be an input's dim
        self.leaves.append(Leaf(name, shape, dtype, draw_values(self.rng, self.sizes(shape), dtype, kind, bound)))
        return name


def special_values(dtype: str) -> list[float]:
    """0, -0, +-inf, NaN, huge and denormal values of a float dtype, and a few ordinary ones."""
    info = np.finfo(dtype)
    huge, tiny = float(info.max) ** 0.8, float(info.smallest_subnormal)
    return [0.0, -0.0, np.inf, -np.inf, np.nan, huge, -huge, tiny, -tiny, 1.0, -1.0, 0.5, -2.5, 3.0]


def draw_values(rng: np.random.Generator, shape: tuple, dtype: str, kind: str, bound: int = 0) -> np.ndarray:
    """Random input values; "any" floats are special values with probability 0, 1/4 or 1/2."""
    if kind == "index":
        return rng.integers(-bound, bound, shape).astype(dtype)
    if kind == "conditioned":
        return (2 * np.eye(shape[-1]) + rng.uniform(-0.5, 0.5, shape)).astype(dtype)
    if is_int(dtype):
        info = np.iinfo(dtype)
        x = rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True)
        return (np.where(x == 0, 1, x) if kind == "nonzero" else x).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    x = rng.normal(0, 2, shape)
    if kind == "any":
        special = rng.random(shape) < rng.choice([0.0, 0.25, 0.5])
        x[special] = rng.choice(special_values(dtype), int(special.sum()))
    return x.astype(dtype)


def static(d) -> bool:
    """Whether a dim is a known int (symbolic dims are strings: "N", "2*N")."""
    return isinstance(d, int)


def dim_code(d) -> str:
    return repr(d if d == "N" else int(d))


def shape_code(shape: tuple) -> str:
    return "(" + "".join(f"{dim_code(d)}, " for d in shape).rstrip(" ") + ")"


def scalar_code(value: float, dtype: str) -> str:
    text = repr(float(value)) if is_float(dtype) else repr(int(value))
    return f"gk.constant(np.{dtype}({text}))"


def _broadcast_partner(d: Draw, a: Var) -> str:
    """A second operand for a binary op on `a`: `a` itself, a constant, or a fresh input of a
    shape that broadcasts with a's (some dims 1, some leading dims dropped)."""
    choice = d.rng.integers(4)
    if choice == 0:
        return a.name
    if choice == 1:
        values = special_values(a.dtype) if is_float(a.dtype) else [0, 1, 2, 7, -1 if a.dtype[0] == "i" else 255]
        return scalar_code(d.pick(values), a.dtype)
    keep = int(d.rng.integers(len(a.shape) + 1)) if choice == 2 else len(a.shape)
    shape = tuple(1 if d.rng.random() < 0.3 else s for s in a.shape[len(a.shape) - keep :])
    return d.fresh(shape, a.dtype)


def _axes(d: Draw, a: Var, static_nonzero: bool = False) -> tuple[int, ...]:
    allowed = [i for i, s in enumerate(a.shape) if not static_nonzero or (static(s) and s > 0)]
    return tuple(i for i in allowed if d.rng.random() < 0.5) or tuple(allowed[:1])


def _axis(d: Draw, a: Var) -> int | None:
    return int(d.rng.integers(len(a.shape))) if a.shape else None


def unary(d: Draw, a: Var) -> str:
    table = WELL_CONDITIONED + (ILL_CONDITIONED if a.exact else ()) if is_float(a.dtype) else INT_UNARY
    return f"gk.{d.pick(table)}({a.name})"


def activation(d: Draw, a: Var) -> str | None:
    if not is_float(a.dtype):
        return None
    forms = [
        f"gk.gelu({a.name}, {d.pick(['none', 'tanh'])!r})",
        f"gk.leaky_relu({a.name}, {d.pick([0.1, 0.0, -0.5])})",
        f"gk.elu({a.name}, {d.pick([1.0, 1.5])})",
        f"gk.clip({a.name}, {d.pick([-1.0, None, 0.0])}, {d.pick([1.0, None, 0.5])})",
    ]
    return d.pick(forms)


def arithmetic(d: Draw, a: Var) -> str:
    """add, sub, mul, maximum, minimum with a broadcast partner; div, pow, atan2 on exact floats."""
    b = _broadcast_partner(d, a)
    ops = ["+", "-", "*", "maximum", "minimum"] + (["/", "**", "atan2"] if a.exact and is_float(a.dtype) else [])
    op = d.pick(ops)
    return f"{a.name} {op} {b}" if len(op) <= 2 else f"gk.{op}({a.name}, {b})"


def division(d: Draw, a: Var) -> str | None:
    """mod and floordiv; integer divisors are fresh nonzero inputs (x // 0 traps on integers)."""
    if not a.exact:
        return None
    op = d.pick(["mod", "floordiv"])
    if is_int(a.dtype):
        return f"gk.{op}({a.name}, {d.fresh(a.shape[d.rng.integers(len(a.shape) + 1) :], a.dtype, 'nonzero')})"
    return f"gk.{op}({a.name}, {_broadcast_partner(d, a)})"


def compare(d: Draw, a: Var) -> str | None:
    """A comparison used by where or cast; `a != a` (the NaN test) included."""
    if not a.exact:
        return None
    b = a.name if d.rng.random() < 0.25 else _broadcast_partner(d, a)
    cond = f"gk.{d.pick(COMPARES)}({a.name}, {b})"
    if d.rng.random() < 0.5:
        return f"gk.where({cond}, {a.name}, {_broadcast_partner(d, a)})"
    return f"gk.cast({cond}, {d.pick(['float32', 'int32', a.dtype])!r})"


def cast(d: Draw, a: Var) -> str | None:
    """float to float and integer to float or integer casts (float to int is undefined past the
    integer range, and NaN has no integer value, so the fuzzer leaves it out)."""
    targets = [t for t in FLOATS + (INTS if is_int(a.dtype) else ()) if t != a.dtype]
    return f"gk.cast({a.name}, {d.pick(targets)!r})"


def bitwise(d: Draw, a: Var) -> str | None:
    if not is_int(a.dtype):
        return None
    if d.rng.random() < 0.3:
        amounts = d.fresh(a.shape, a.dtype, "index", np.dtype(a.dtype).itemsize * 8 + 2)
        return f"gk.{d.pick(['left_shift', 'right_shift'])}({a.name}, gk.abs({amounts}))"
    op = d.pick(["bitwise_and", "bitwise_or", "bitwise_xor"])
    return f"gk.{op}({a.name}, {_broadcast_partner(d, a)})" if d.rng.random() < 0.8 else f"gk.bitwise_not({a.name})"


def reduction(d: Draw, a: Var) -> str | None:
    if not a.shape:
        return None
    keep = bool(d.rng.integers(2))
    ops = ["sum", "prod", "max", "min"] + (["mean", "logsumexp", "var", "std"] if is_float(a.dtype) else [])
    op = d.pick(ops)
    axes = _axes(d, a, static_nonzero=op in ("max", "min"))
    if not axes:
        return None
    return f"gk.{op}({a.name}, {axes}, keepdims={keep})"


def index_reduction(d: Draw, a: Var) -> str | None:
    """argmax/argmin, cumsum/cumprod, softmax/log_softmax along one axis."""
    axis = _axis(d, a)
    if axis is None:
        return None
    forms = [f"gk.cumsum({a.name}, {axis}, {bool(d.rng.integers(2))}, {bool(d.rng.integers(2))})"]
    forms += [f"gk.cumprod({a.name}, {axis})"]
    if a.exact and a.shape[axis] != 0:
        forms += [f"gk.{d.pick(['argmax', 'argmin'])}({a.name}, {axis}, keepdims={bool(d.rng.integers(2))})"]
    if is_float(a.dtype):
        forms += [f"gk.{d.pick(['softmax', 'log_softmax'])}({a.name}, {axis})"]
    return d.pick(forms)


def reshape(d: Draw, a: Var) -> str | None:
    forms = [f"gk.reshape({a.name}, (-1,))", f"gk.expand_dims({a.name}, {d.rng.integers(len(a.shape) + 1)})"]
    if all(static(s) or s == "N" for s in a.shape):
        forms += [f"gk.broadcast_to({a.name}, {shape_code((2, *a.shape))})"]
    if len(a.shape) >= 2 and (static(a.shape[0]) or a.shape[0] == "N"):
        forms += [f"gk.reshape({a.name}, ({dim_code(a.shape[0])}, -1))"]
        forms += [f"gk.transpose({a.name}, {tuple(int(p) for p in d.rng.permutation(len(a.shape)))})"]
    ones = [i for i, s in enumerate(a.shape) if s == 1]
    if ones:
        forms += [f"gk.squeeze({a.name}, {d.pick(ones)})"]
    return d.pick(forms)


def slicing(d: Draw, a: Var) -> str | None:
    """slice, pad, flip, concat on one axis (a static one for slice)."""
    axis = _axis(d, a)
    if axis is None:
        return None
    forms = [f"gk.flip({a.name}, {axis})", f"gk.concat([{a.name}, {a.name}], {axis})"]
    n = len(a.shape)
    low, high, interior = ([int(d.rng.integers(3)) if i == axis else 0 for i in range(n)] for _ in range(3))
    forms += [f"gk.pad({a.name}, {low}, {high}, {interior})"]
    size = a.shape[axis]
    if static(size):
        start, step = int(d.rng.integers(size + 1)), int(d.rng.integers(1, 3))
        stop = int(d.rng.integers(start, size + 1))
        index = ", ".join(f"{start}:{stop}:{step}" if i == axis else ":" for i in range(n))
        forms += [f"{a.name}[{index}]"]
    return d.pick(forms)


def selection(d: Draw, a: Var) -> str | None:
    """sort, argsort, topk, gather_elements, take, scatter_add, scatter_elements_add, one_hot."""
    axis = _axis(d, a)
    if axis is None or (is_int(a.dtype) and d.rng.random() < 0.3):
        return f"gk.one_hot(gk.mod({a.name}, {scalar_code(4, a.dtype)}), 4, 'float32')" if is_int(a.dtype) else None
    size = a.shape[axis]
    forms = [f"gk.sort({a.name}, {axis}, {bool(d.rng.integers(2))})"]
    if a.exact:
        forms += [f"gk.argsort({a.name}, {axis}, {bool(d.rng.integers(2))})"]
    if static(size) and size > 0:
        k = int(d.rng.integers(1, size + 1))
        forms += [f"gk.topk({a.name}, {k}, {axis}, {bool(d.rng.integers(2))})[{int(a.exact and d.rng.integers(2))}]"]
        picked = tuple(int(d.rng.integers(3)) if i == axis else s for i, s in enumerate(a.shape))
        index = d.fresh(picked, "int64", "index", size)
        forms += [f"gk.gather_elements({a.name}, {index}, {axis})"]
        update = d.fresh(picked, a.dtype)
        forms += [f"gk.scatter_elements_add({a.name}, {index}, {update}, {axis})"]
        taken = d.fresh((int(d.rng.integers(4)),), d.pick(["int32", "int64"]), "index", size)
        forms += [f"gk.take({a.name}, {taken}, {axis})"]
        rows, at = tuple(3 if i == axis else s for i, s in enumerate(a.shape)), d.fresh((3,), "int64", "index", size)
        forms += [f"gk.scatter_add({a.name}, {at}, {d.fresh(rows, a.dtype)}, {axis})"]
    return d.pick(forms)


def nn(d: Draw, a: Var) -> str | None:
    """conv2d, conv_transpose2d, pools and group_norm on NCHW values; else layer/rms norm, dropout."""
    if not is_float(a.dtype):
        return None
    if len(a.shape) == 4 and all(static(s) and s > 0 for s in a.shape[1:]):
        return d.pick(_image_ops(d, a))
    forms = [f"gk.dropout({a.name}, {d.pick([0.25, 0.5])}, {int(d.rng.integers(100))})"]
    if a.exact and a.shape and static(a.shape[-1]):
        forms += [f"gk.layer_norm({a.name}, {a.shape[-1]})", f"gk.rms_norm({a.name})"]
    return d.pick(forms)


def _image_ops(d: Draw, a: Var) -> list[str]:
    c, h, w = a.shape[1:]
    kh, kw = int(d.rng.integers(1, h + 1)), int(d.rng.integers(1, w + 1))
    groups = d.pick([g for g in (1, 2, c) if c % g == 0])
    stride = (int(d.rng.integers(1, 3)), int(d.rng.integers(1, 3)))
    pad = ((int(d.rng.integers(kh)), 0), (0, int(d.rng.integers(kw))))
    forms = [
        f"gk.max_pool2d({a.name}, ({kh}, {kw}), {stride}, {pad})",
        f"gk.avg_pool2d({a.name}, ({kh}, {kw}), {stride}, {pad}, {bool(d.rng.integers(2))})",
        f"gk.dropout({a.name}, 0.5, {int(d.rng.integers(100))})",
    ]
    form = int(d.rng.integers(len(forms) + 3))
    if form == len(forms):
        weight = d.fresh((2 * groups, c // groups, kh, kw), a.dtype)
        return [f"gk.conv2d({a.name}, {weight}, {stride}, (({kh - 1}, 0), (0, {kw - 1})), 1, {groups})"]
    if form == len(forms) + 1:
        return [f"gk.conv_transpose2d({a.name}, {d.fresh((c, 2, kh, kw), a.dtype)}, {stride}, 0, 0, 1, {groups})"]
    if form == len(forms) + 2 and a.exact:
        return [f"gk.group_norm({a.name}, {groups})"]
    return forms


def linalg(d: Draw, a: Var) -> str | None:
    """matmul and einsum with a fresh operand; det, inv, solve on fresh well-conditioned matrices."""
    if len(a.shape) < 2 or not static(a.shape[-1]) or not (is_float(a.dtype) or a.dtype in ("int32", "int64")):
        return None
    k = a.shape[-1]
    forms = [f"{a.name} @ {d.fresh((k, int(d.rng.integers(4))), a.dtype)}"]
    forms += [f"gk.einsum('...ij,...kj->...ik', {a.name}, {a.name})"]
    if is_float(a.dtype) and a.dtype != "float16":
        m = int(d.rng.integers(1, 4))
        square = d.fresh((m, m), a.dtype, "conditioned")
        forms += [d.pick([f"gk.det({square})", f"gk.inv({square})", f"gk.solve({square}, {d.fresh((m, 2), a.dtype)})"])]
    return d.pick(forms)


def control(d: Draw, a: Var) -> str | None:
    """cond on a data-dependent predicate, and scan over the leading axis of a static value."""
    if not is_float(a.dtype):
        return None
    forms = [f"gk.cond(gk.sum({a.name}) > 0, lambda t: t * 2.0, lambda t: -t, {a.name})"] if a.exact else []
    if a.shape and static(a.shape[0]) and a.shape[0] > 0:
        forms += [f"gk.scan(lambda c, t: (c + t, c * t), {a.name}[0], {a.name})[1]"]
    return d.pick(forms) if forms else None


# family -> generator; a generator returns None when the family has nothing for that operand
FAMILIES: dict[str, Callable[[Draw, Var], str | None]] = {
    "unary": unary,
    "activation": activation,
    "arithmetic": arithmetic,
    "division": division,
    "compare": compare,
    "cast": cast,
    "bitwise": bitwise,
    "reduction": reduction,
    "index_reduction": index_reduction,
    "reshape": reshape,
    "slicing": slicing,
    "selection": selection,
    "nn": nn,
    "linalg": linalg,
    "control": control,
}
