"""`Tensor`: the user's handle on a graph value, with Python operators that build nodes."""

from __future__ import annotations

from typing import Any

from .errors import GraphError
from .ir import Graph, Node, Value
from .types import Dim, TensorType


class Tensor:
    """A symbolic value of a graph: (graph, Value). Operators add nodes; nothing is computed."""

    __slots__ = ("graph", "value")
    __array_priority__ = 1000  # numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, graph: Graph, value: Value) -> None:
        self.graph = graph
        self.value = value

    @property
    def node(self) -> Node:
        return self.graph.node(self.value.node)

    @property
    def type(self) -> TensorType:
        return self.graph.type_of(self.value)

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.rank

    @property
    def name(self) -> str:
        return self.graph.label_of(self.value)[1:]

    @property
    def T(self) -> Tensor:  # noqa: N802 - numpy's name
        return builder.transpose(self)

    @property
    def real(self) -> Tensor:
        return builder.real(self)

    @property
    def imag(self) -> Tensor:
        return builder.imag(self)

    def conj(self) -> Tensor:
        return builder.conj(self)

    def __repr__(self) -> str:
        return f"<Tensor {self.graph.label_of(self.value)}: {self.type}>"

    def __bool__(self) -> bool:
        raise GraphError("a symbolic tensor has no truth value; use gk.where(cond, a, b) to select")

    __hash__ = object.__hash__

    def __neg__(self) -> Tensor:
        return builder.neg(self)

    def __abs__(self) -> Tensor:
        return builder.abs(self)

    def __invert__(self) -> Tensor:
        return builder.bitwise_not(self)

    def __lt__(self, other: Any) -> Tensor:
        return builder.less(self, other)

    def __le__(self, other: Any) -> Tensor:
        return builder.less_equal(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return builder.greater(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return builder.greater_equal(self, other)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return builder.equal(self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return builder.not_equal(self, other)

    def __getitem__(self, index: Any) -> Tensor:
        return builder.getitem(self, index)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return builder.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return builder.mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return builder.max(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return builder.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def astype(self, dtype: Any) -> Tensor:
        return builder.cast(self, dtype)


# Python operator -> builder function; each also gets its reflected form (2 - x: __rsub__).
BINARY_OPERATORS = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "truediv": "div",
    "floordiv": "floordiv",
    "mod": "mod",
    "pow": "pow",
    "matmul": "matmul",
    "and": "bitwise_and",
    "or": "bitwise_or",
    "xor": "bitwise_xor",
    "lshift": "left_shift",
    "rshift": "right_shift",
}


def _operator(function: str, reflected: bool) -> Any:
    def apply(self: Tensor, other: Any) -> Tensor:
        build = getattr(builder, function)
        return build(other, self) if reflected else build(self, other)

    apply.__name__ = function
    return apply


for _name, _function in BINARY_OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _operator(_function, reflected=False))
    setattr(Tensor, f"__r{_name}__", _operator(_function, reflected=True))

from . import builder  # noqa: E402  (circular: the builder returns Tensors)
