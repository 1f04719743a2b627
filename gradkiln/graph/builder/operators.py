"""`Tensor`'s Python operators and numpy-style methods, each a builder function.

The builder package installs them on `Tensor` when it loads (JAX does the same for its arrays), so
graph/tensor.py imports nothing from the builder and the two form no import circle. Every binary
operator also gets its reflected form (`2 - x` is `__rsub__`)."""

from __future__ import annotations

from typing import Any, Callable

from ..tensor import Tensor
from .bitwise import bitwise_and, bitwise_not, bitwise_or, bitwise_xor, left_shift, right_shift
from .complex import conj, imag, real
from .core import cast, equal, greater, greater_equal, less, less_equal, not_equal
from .elementwise import FUNCTIONS
from .linalg import matmul
from .reduce import max, mean, sum
from .shape import getitem, reshape, transpose

BINARY_OPERATORS: dict[str, Callable[[Any, Any], Tensor]] = {
    "add": FUNCTIONS["add"],
    "sub": FUNCTIONS["sub"],
    "mul": FUNCTIONS["mul"],
    "truediv": FUNCTIONS["div"],
    "floordiv": FUNCTIONS["floordiv"],
    "mod": FUNCTIONS["mod"],
    "pow": FUNCTIONS["pow"],
    "matmul": matmul,
    "and": bitwise_and,
    "or": bitwise_or,
    "xor": bitwise_xor,
    "lshift": left_shift,
    "rshift": right_shift,
}
COMPARISONS: dict[str, Callable[[Any, Any], Tensor]] = {
    "lt": less,
    "le": less_equal,
    "gt": greater,
    "ge": greater_equal,
    "eq": equal,
    "ne": not_equal,
}
UNARY_OPERATORS: dict[str, Callable[[Any], Tensor]] = {
    "neg": FUNCTIONS["neg"],
    "abs": FUNCTIONS["abs"],
    "invert": bitwise_not,
    "getitem": getitem,
}


def _reflected(function: Callable[[Any, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
    def apply(self: Tensor, other: Any) -> Tensor:
        return function(other, self)

    apply.__name__ = function.__name__
    return apply


def _reduction(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def method(self: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
        return function(self, axis, keepdims)

    method.__name__ = function.__name__
    return method


def _reshape(self: Tensor, *shape: Any) -> Tensor:
    """`x.reshape(2, 3)` or `x.reshape((2, 3))`, as numpy takes either."""
    return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)


def install() -> None:
    """Set the operators and methods on `Tensor`."""
    for name, function in BINARY_OPERATORS.items():
        setattr(Tensor, f"__{name}__", function)
        setattr(Tensor, f"__r{name}__", _reflected(function))
    for name, function in {**COMPARISONS, **UNARY_OPERATORS}.items():
        setattr(Tensor, f"__{name}__", function)
    for function in (sum, mean, max):
        setattr(Tensor, function.__name__, _reduction(function))
    Tensor.T = property(transpose)  # type: ignore[attr-defined]
    Tensor.real = property(real)  # type: ignore[attr-defined]
    Tensor.imag = property(imag)  # type: ignore[attr-defined]
    Tensor.conj = conj  # type: ignore[attr-defined]
    Tensor.reshape = _reshape  # type: ignore[attr-defined]
    Tensor.astype = cast  # type: ignore[attr-defined]
