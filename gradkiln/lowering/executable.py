"""What every backend's compiled graph shares: output selection, feed checking, symbol binding."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from ..graph import DTypeError, Graph, GraphError, Node, ShapeError
from ..graph.dtypes import is_float
from ..graph.outputs import normalize_outputs, restructure
from ..graph.types import Dim, dims_equal, symbol


def resolve(value: Any, bindings: dict[sympy.Symbol, int]) -> Any:
    """Replace symbolic dims inside an attribute value by their bound sizes."""
    if isinstance(value, sympy.Expr):
        return int(value.subs(bindings))
    if isinstance(value, tuple):
        return tuple(resolve(v, bindings) for v in value)
    return value


class Executable:
    """A compiled graph: call with numpy arrays, positionally or by name, get numpy arrays back.

    Inputs are required; params default to their stored values and may be overridden.
    `.argument_names` is the calling order: the inputs, then the params, each in the order they were
    created (the repr shows it with the types).
    """

    target = "abstract"

    def __init__(self, graph: Graph, outputs: Any) -> None:
        self.graph = graph
        self.output_values, self._structure = normalize_outputs(graph, outputs)
        self.node_ids = self._with_shape_inputs(graph.needed_nodes(self.output_values))
        sources = sorted(self.node_ids)  # in the order they were created, like a function's parameters
        self.input_nodes = [graph.node(i) for i in sources if graph.node(i).op == "input"]
        self.param_nodes = [graph.node(i) for i in sources if graph.node(i).op == "param"]
        self.argument_names = [n.name for n in self.input_nodes + self.param_nodes]
        self._slice_bounds = _symbolic_slice_bounds(graph, self.node_ids)

    def _with_shape_inputs(self, node_ids: list[int]) -> list[int]:
        """`node_ids` plus the graph inputs whose shapes alone bind a symbolic dim of a computed
        value (`gk.zeros(x.shape)` needs x's size, not its data), so a call must feed them."""
        nodes = [self.graph.node(i) for i in node_ids]
        fed = {s for node in nodes if node.op in ("input", "param") for s in node.types[0].symbols}
        unbound = set().union(*(t.symbols for node in nodes for t in node.types)) - fed
        carriers = [node.id for node in self.graph.inputs() if node.types[0].symbols & unbound]
        missing = unbound - {s for i in carriers for s in self.graph.node(i).types[0].symbols}
        if missing:
            user = next(node for node in nodes if set().union(*(t.symbols for t in node.types)) & missing)
            raise ShapeError(
                f"{user.op} node {user.label} has type {', '.join(map(str, user.types))}, but no input of "
                f"graph '{self.graph.name}' has the dim(s) {', '.join(sorted(map(str, missing)))} in its shape, "
                "so no call could know their size; make the dims static or add an input that has them"
            )
        return carriers + node_ids

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the graph: arrays positionally in `.argument_names` order (the inputs, then the params),
        by name, both (each argument once), or one dict of named arrays. Params not given take their
        stored values; the result has the structure of `compile`'s outputs."""
        arrays, bindings = self.check_feeds(self.named_feeds(args, kwargs))
        return restructure(self.run(arrays, bindings), self._structure)

    def named_feeds(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The feeds of a call by name: positional arguments take the names of `.argument_names` in order."""
        if len(args) == 1 and isinstance(args[0], Mapping):
            args, kwargs = (), _merged(dict(args[0]), kwargs)
        if len(args) > len(self.argument_names):
            raise GraphError(
                f"graph '{self.graph.name}' takes {len(self.argument_names)} positional argument(s) "
                f"({self.signature()}), got {len(args)}"
            )
        return _merged(dict(zip(self.argument_names, args)), kwargs)

    @property
    def structure(self) -> str:
        """What a call returns: "tensor" (one array), "list" or "dict" (by `output_names`)."""
        return "tensor" if self._structure is None else "dict" if isinstance(self._structure, tuple) else "list"

    @property
    def output_names(self) -> list[str]:
        """The outputs' names: the keys of a dict of outputs, else output0, output1, ..."""
        if isinstance(self._structure, tuple):
            return [str(key) for key in self._structure]
        return [f"output{i}" for i in range(len(self.output_values))]

    def signature(self) -> str:
        """The arguments in calling order with their types; params show that they have a default."""
        return ", ".join(
            f"{n.name}: {n.types[0]}" + (" = <param>" if n.op == "param" else "")
            for n in self.input_nodes + self.param_nodes
        )

    def __repr__(self) -> str:
        outputs = ", ".join(str(self.graph.type_of(v)) for v in self.output_values)
        return f"<{type(self).__name__} '{self.graph.name}' on {self.target}: ({self.signature()}) -> {outputs}>"

    def random_feeds(self, sizes: Mapping[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs to time or profile with: floats standard normal, integers and bools zero (valid
        indices and labels); a symbolic dim takes its size from `sizes` ({"N": 64}), else 1."""
        rng = np.random.default_rng(seed)
        bound = {s: 1 for node in self.input_nodes for s in node.types[0].symbols}
        bound.update({symbol(name): size for name, size in (sizes or {}).items()})
        feeds = {}
        for node in self.input_nodes:
            ty = node.types[0]
            shape = tuple(int(sympy.sympify(d).subs(bound)) for d in ty.shape)
            random = is_float(ty.dtype)
            feeds[node.name] = rng.standard_normal(shape).astype(ty.dtype) if random else np.zeros(shape, ty.dtype)
        return feeds

    def run(self, feeds: dict[str, np.ndarray], bindings: dict[sympy.Symbol, int]) -> Sequence[np.ndarray]:
        """Compute the outputs from checked feeds (every input and param, by name), given the
        sizes bound to the symbolic dims."""
        raise NotImplementedError

    def check_feeds(self, feeds: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[sympy.Symbol, int]]:
        """Validate names, dtypes and shapes, binding symbolic dims consistently."""
        known = {n.name for n in self.graph.inputs()} | {n.name for n in self.graph.params()}
        unknown = sorted(set(feeds) - known)
        if unknown:  # feeds of graph inputs that these outputs do not need are accepted and ignored
            raise GraphError(f"unknown feeds {unknown}; graph '{self.graph.name}' takes {sorted(known)}")
        missing = [n.name for n in self.input_nodes if n.name not in feeds]
        if missing:
            raise GraphError(
                f"missing inputs {missing}: pass them by name, e.g. fn({missing[0]}=array), or positionally "
                f"in the order ({self.signature()})"
            )
        bindings: dict[Any, int] = {}
        checked = {}
        for node in self.input_nodes + self.param_nodes:
            value = feeds.get(node.name, node.attrs.get("value"))
            checked[node.name] = self._check_one(node.name, node.types[0], value, bindings)
        _check_slice_bounds(self._slice_bounds, bindings)
        return checked, bindings

    @staticmethod
    def _check_one(name: str, expected: Any, value: Any, bindings: dict) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype != expected.dtype:
            if not np.can_cast(array.dtype, expected.dtype, "same_kind"):
                raise DTypeError(f"feed {name!r} has dtype {array.dtype}, expected {expected}; convert it first")
            array = array.astype(expected.dtype)
        if array.ndim != expected.rank:
            raise ShapeError(f"feed {name!r} has shape {array.shape}, expected {expected}")
        for dim, size in zip(expected.shape, array.shape):
            if isinstance(dim, int):
                ok = dim == size
            elif dim.is_Symbol:
                ok = bindings.setdefault(dim, size) == size
            else:
                ok = not dim.free_symbols <= set(bindings) or dims_equal(dim.subs(bindings), size)
            if not ok:
                raise ShapeError(f"feed {name!r} has shape {array.shape}, expected {expected} (bound {bindings})")
        return array


def _symbolic_slice_bounds(graph: Graph, node_ids: Sequence[int]) -> list[tuple[Node, int, Dim, int]]:
    """(node, axis, bound, dim) for each symbolic start or stop of a slice on a static axis:
    the slice's type takes it in range (BERT's position ids cut to the sequence length), which
    only the sizes of a call decide."""
    bounds = []
    for node in (graph.node(i) for i in node_ids if graph.op_of(i) == "slice"):
        dims = graph.type_of(node.inputs[0]).shape
        for key in ("starts", "stops"):
            bounds += [
                (node, axis, b, d)
                for axis, (b, d) in enumerate(zip(node.attrs[key], dims))
                if isinstance(d, int) and not isinstance(b, int)
            ]
    return bounds


def _check_slice_bounds(bounds: Sequence[tuple[Node, int, Dim, int]], bindings: dict[sympy.Symbol, int]) -> None:
    """A ShapeError naming the slice whose symbolic bound the bound sizes put past its axis."""
    for node, axis, bound, dim in bounds:
        value = int(sympy.sympify(bound).subs(bindings))
        if value > dim:
            sizes = ", ".join(f"{k}={v}" for k, v in sorted(bindings.items(), key=lambda kv: str(kv[0])))
            raise ShapeError(
                f"slice node {node.label} takes axis {axis} of {node.graph.type_of(node.inputs[0])} up to "
                f"{bound} = {value} at {sizes}, past its {dim} elements; feed sizes that keep {bound} <= {dim}"
            )


def _merged(named: dict[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    twice = sorted(set(named) & set(kwargs))
    if twice:
        raise GraphError(f"argument {twice[0]!r} is given twice (positionally or in the feed dict, and by name)")
    return named | dict(kwargs)
