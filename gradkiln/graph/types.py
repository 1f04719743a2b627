"""Tensor types: a dtype and a shape whose dims are ints or sympy expressions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import sympy

from .dtypes import SHORT_NAMES, as_dtype
from .errors import ShapeError

Dim = Union[int, sympy.Expr]


def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol gradkiln uses for a named dim such as "N" (a non-negative integer)."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


def as_dim(dim: Any) -> Dim:
    """Normalise a user dim: an int, a name (becomes a symbol) or a sympy expression."""
    if isinstance(dim, str):
        return symbol(dim)
    if isinstance(dim, sympy.Expr):
        dim = sympy.sympify(dim)
        return int(dim) if dim.is_Integer else dim
    if isinstance(dim, bool) or not hasattr(dim, "__index__"):
        raise ShapeError(f"a dim must be an int, a name or a sympy expression, got {dim!r}")
    if int(dim) < 0:
        raise ShapeError(f"a dim must be non-negative, got {dim}")
    return int(dim)


def dims_equal(a: Dim, b: Dim) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def is_static(dim: Dim) -> bool:
    return isinstance(dim, int)


def is_symbolic(value: Any) -> bool:
    """Whether an attribute value (a dim, or a tuple of them) holds a sympy expression."""
    if isinstance(value, (tuple, list)):
        return any(is_symbolic(v) for v in value)
    return isinstance(value, sympy.Expr)


def shape_size(shape: Sequence[Dim]) -> Dim:
    size: Dim = 1
    for d in shape:
        size = size * d
    return as_dim(sympy.sympify(size)) if not isinstance(size, int) else size


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: dtype name and shape (a tuple of dims)."""

    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", as_dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(as_dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(is_static(d) for d in self.shape)

    @property
    def symbols(self) -> set[sympy.Symbol]:
        return {s for d in self.shape if not is_static(d) for s in d.free_symbols}

    def with_shape(self, shape: Sequence[Dim]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{SHORT_NAMES[self.dtype]}[{','.join(str(d) for d in self.shape)}]"


def broadcast_shapes(*shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """numpy broadcasting over int and symbolic dims; a symbol only matches itself or 1."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    result = []
    for axis, dims in enumerate(zip(*padded)):
        out: Dim = 1
        for d in dims:
            if dims_equal(d, 1):
                continue
            if dims_equal(out, 1):
                out = d
            elif not dims_equal(out, d):
                listed = " and ".join(f"({', '.join(map(str, s))})" for s in shapes)
                raise ShapeError(f"shapes {listed} do not broadcast: axis {axis - rank} has sizes {out} and {d}")
        result.append(out)
    return tuple(result)


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def normalize_axes(axes: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """Sorted non-negative axes; None means every axis."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, int):
        axes = (axes,)
    normalized = sorted({normalize_axis(a, rank) for a in axes})
    if len(normalized) != len(tuple(axes)):
        raise ShapeError(f"repeated axis in {tuple(axes)}")
    return tuple(normalized)


def same_type(a: TensorType, b: TensorType) -> bool:
    """Equal dtypes and shapes, dims compared as `dims_equal` does (symbolic dims included)."""
    return a.dtype == b.dtype and a.rank == b.rank and all(map(dims_equal, a.shape, b.shape))
