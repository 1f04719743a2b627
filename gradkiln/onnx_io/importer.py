"""ONNX -> Graph: check the model, list every unsupported op at once, then convert node by node.

A value is either a `Tensor` of the graph being built or a `Known` array whose value is known at
import time: an initializer, a Constant, or shape arithmetic over known (possibly symbolic) dims.
Known values are evaluated here instead of becoming nodes, so `Reshape(x, Concat(Shape(x)[0], 4))`
imports as one reshape to (N, 4); they become graph nodes only where a tensor op consumes them.
"""

from __future__ import annotations

import os
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, MutableMapping, Sequence, Union

import numpy as np
import onnx
import sympy
from onnx import helper, numpy_helper

from ..graph import GradkilnError, Graph, ONNXError, Tensor, UnsupportedOpError, symbol
from ..graph import builder as gb
from ..graph.ir import ORIGIN
from ..graph.registry import Registry
from ..graph.types import Dim, as_dim
from ..lowering.numpy_backend import NumpyExecutable
from . import functions
from .constant_folding import fold_as_import_would
from .dtypes import NARROW, TO_ONNX, from_onnx, narrow_known, narrow_tensor, stand_in, widen
from .import_limits import ImportBudget, ImportLimits
from .model_file import default_opset, load, rule_key
from .params import ParamChoice, Patterns, choose_params, unshare_initializers


@dataclass
class Known:
    """A value known at import time: a numeric array, or an object array of ints and sympy exprs."""

    array: np.ndarray
    dtype: str


Operand = Union[Tensor, Known, None]
MAX_RANK = 64  # numpy arrays have at most 64 dims
SYMBOLIC_INT = "Cannot convert symbols to int"  # sympy's TypeError when a rule needs a dim as an int


class TensorSequence(list):
    """An ONNX sequence value while importing: a list of operands (one output, not several)."""


class RunTimeValueError(ONNXError):
    """An input an op needs at import time (axes, a shape, pads) is a run-time value; `inputs`
    names the graph inputs it is computed from, so a caller can specialize on their values."""

    def __init__(self, message: str, inputs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.inputs = list(inputs)


@dataclass
class OnnxNode:
    """One ONNX node as the import rules see it: its type, name, decoded attributes, opset."""

    op_type: str
    name: str
    attrs: dict[str, Any]
    opset: int
    num_outputs: int = 1
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = f"{self.op_type} node {self.name!r}" if self.name else f"{self.op_type} node"


ImportRule = Callable[["ImportContext", OnnxNode, list[Operand]], Union[Operand, Sequence[Operand]]]
IMPORTERS: Registry[ImportRule] = Registry("ONNX import rule")


def register_importer(op_type: str, domain: str = "", **how: Any) -> Callable[[ImportRule], ImportRule]:
    """Register the import rule of ONNX op type `op_type` of `domain` (default: the ONNX domain; the
    key is `rule_key`'s); see import_rules.py. `how` is `Registry.register`'s `when=`/`override=`."""
    return IMPORTERS.register(rule_key(domain, op_type), **how)


class ImportContext:
    """Turns operands into tensors or known values for the rules, materializing known values once."""

    def __init__(
        self, graph: Graph, opset: int = 1, rules: dict | None = None, limits: ImportLimits | None = None
    ) -> None:
        self.graph = graph
        self.opset = opset
        self.rules = rules if rules is not None else IMPORTERS
        self.budget = ImportBudget(limits)
        self.env: MutableMapping[str, Any] = {"": None}
        self.sources: dict[sympy.Symbol, tuple[Tensor, int]] = {}
        self._constants: dict[int, tuple[Known, Tensor]] = {}
        self._narrow: dict[int, tuple[Operand, int]] = {}  # by id; holding the operand keeps its id

    def subgraph(self, body: onnx.GraphProto, inputs: Sequence[Operand]) -> list[Operand]:
        """Import a control-flow body once with its inputs bound to `inputs` (the names of the
        enclosing scopes stay visible); returns its outputs."""
        outer, self.env = self.env, ChainMap({}, self.env)
        try:
            self.env.update(zip((i.name for i in body.input), inputs))
            for t in body.initializer:
                known = Known(tensor_value(t), from_onnx(t.data_type, f"initializer {t.name!r}"))
                self.env[t.name] = self.mark_narrow(known, t.data_type)
            for proto in body.node:
                _import_node(self, proto, self.opset, self.env, self.rules)
            return [self.env[o.name] for o in body.output]
        finally:
            self.env = outer

    def narrow_type(self, operand: Operand) -> int | None:
        """The narrow ONNX element type (bfloat16, float8, float4, int4, int2) that `operand` stands in for, if any."""
        return self._narrow.get(id(operand), (None, None))[1]

    def mark_narrow(self, operand: Operand, code: int) -> Operand:
        """Record that `operand` holds values of narrow ONNX type `code` (in its stand-in dtype)."""
        if code in NARROW:
            self._narrow[id(operand)] = (operand, code)
        return operand

    def cast_narrow(self, operand: Operand, code: int, saturate: bool = True) -> Operand:
        """ONNX Cast of `operand` to narrow type `code`: rounded (or wrapped) to that type's values,
        in its stand-in dtype; evaluated now for a known value."""
        if isinstance(operand, Known) and operand.array.dtype != object:
            return self.mark_narrow(Known(narrow_known(operand.array, code, saturate), stand_in(code)), code)
        return self.mark_narrow(narrow_tensor(self.tensor(operand), code, saturate), code)

    def add_source(self, tensor: Tensor) -> None:
        """Remember the first tensor carrying each symbol as a dim (to compute it at run time)."""
        for axis, d in enumerate(tensor.shape):
            if isinstance(d, sympy.Symbol):
                self.sources.setdefault(d, (tensor, axis))

    def tensor(self, operand: Operand, what: str = "operand") -> Tensor:
        """`operand` as a graph tensor: known values become constants, or size arithmetic when symbolic."""
        if isinstance(operand, Tensor):
            return operand
        if operand is None:
            raise ONNXError(f"the {what} is missing")
        if isinstance(operand, TensorSequence):
            raise ONNXError(f"the {what} is a sequence where a tensor is needed")
        if id(operand) not in self._constants:  # the Known is kept alive, so its id stays its own
            self._constants[id(operand)] = (operand, self._materialize(operand))
        return self._constants[id(operand)][1]

    def known(self, operand: Operand, what: str) -> np.ndarray:
        """The import-time value of `operand` (evaluated when it is computed from constants only);
        an error naming the graph inputs it is computed from when it is only known at run time."""
        if isinstance(operand, Tensor) and not self._inputs_behind(operand):
            return self._evaluate(operand, what)  # computed from constants only
        if not isinstance(operand, Known):
            inputs = self._inputs_behind(operand)
            raise RunTimeValueError(
                f"the {what} must be known at import time (a constant or shape arithmetic)"
                + (f"; it is computed from the graph inputs {inputs}" if inputs else ""),
                inputs,
            )
        return operand.array

    def _evaluate(self, tensor: Tensor, what: str) -> np.ndarray:
        """Run the nodes computing `tensor` on the numpy executor, each output charged first."""
        nodes = (self.graph.node(i) for i in self.graph.needed_nodes([tensor.value]))
        for node in nodes:
            for ty in node.types if node.op != "constant" else ():  # constants hold their values already
                self.budget.value(ty.shape, f"evaluating the {what}, a {node.op} node's result")
        return NumpyExecutable(self.graph, tensor)()

    def _inputs_behind(self, operand: Operand) -> list[str]:
        if not isinstance(operand, Tensor):
            return []
        nodes = (self.graph.node(i) for i in self.graph.needed_nodes([operand.value]))
        return sorted(node.name for node in nodes if node.op in ("input", "param"))

    def dims(self, operand: Operand, what: str) -> list[Dim]:
        """A known 1-D int operand as a list of dims (ints or sympy expressions)."""
        return [_as_int_or_expr(v) for v in np.asarray(self.known(operand, what)).reshape(-1)]

    def shape(self, operand: Operand, what: str = "shape") -> list[Dim]:
        """A known 1-D int operand used as a shape: `dims`, at most `MAX_RANK` of them."""
        dims = self.dims(operand, what)
        if len(dims) > MAX_RANK:
            raise ONNXError(f"the {what} has {len(dims)} dims; tensors have at most {MAX_RANK} (numpy's limit)")
        return dims

    def optional(self, args: list[Operand], i: int, what: str, default: Any, dims: bool = False) -> Any:
        """The known value (or dims) of optional input `i`, or `default` when it is absent."""
        if len(args) <= i or args[i] is None:
            return default
        return self.dims(args[i], what) if dims else self.known(args[i], what)

    def _materialize(self, known: Known) -> Tensor:
        if known.array.dtype != object:
            return gb.constant(known.array.astype(known.dtype), graph=self.graph)
        self.budget.unrolled(known.array.size, f"computing {known.array.size} dims at run time, one at a time")
        parts = [self._expr_tensor(sympy.sympify(v), known.dtype) for v in known.array.reshape(-1)]
        if known.array.ndim == 0:
            return parts[0]
        flat = gb.concat([gb.expand_dims(p, 0) for p in parts], 0)
        return gb.reshape(flat, known.array.shape)

    def _expr_tensor(self, expr: sympy.Expr, dtype: str) -> Tensor:
        """A scalar tensor computing a dim expression at run time from `size` nodes."""
        if expr.is_Number:
            return gb.constant(np.asarray(expr, dtype=dtype), graph=self.graph)
        coeff, rest = expr.as_coeff_Mul()
        factors = rest.as_ordered_factors()
        if all(f in self.sources for f in factors) and len({id(self.sources[f][0]) for f in factors}) == 1:
            source = self.sources[factors[0]][0]
            count = gb.size(source, sorted(self.sources[f][1] for f in factors), dtype)
            return count if coeff == 1 else gb.mul(self._expr_tensor(coeff, dtype), count)
        if expr.is_Add or expr.is_Mul:
            terms = [self._expr_tensor(a, dtype) for a in expr.args]
            combine = gb.add if expr.is_Add else gb.mul
            result = terms[0]
            for term in terms[1:]:
                result = combine(result, term)
            return result
        raise ONNXError(f"cannot compute the dim expression {expr} at run time: no input carries its symbols")


def _as_int_or_expr(value: Any) -> Dim:
    if isinstance(value, sympy.Expr) and not value.is_Integer:
        return value
    return int(value)


def import_model(
    model_or_path: onnx.ModelProto | str | os.PathLike | bytes,
    rules: Mapping[str, ImportRule] | None = None,
    limits: ImportLimits | None = None,
    trainable: Patterns = None,
    frozen: Patterns = None,
) -> tuple[Graph, dict[str, Tensor]]:
    """Import an ONNX model (a ModelProto, a path or serialized bytes).

    Returns the graph and its outputs by ONNX output name, ready for `gk.compile(graph, outputs)`.
    The model's parameters (`params.choose_params`: float initializers that are not shape data or
    batch-norm statistics, narrowed by the fnmatch patterns `trainable` and `frozen`) become params
    named by their initializer names; other graph inputs with an initializer stay params (fed to
    override), other initializers become constants, and `dim_param` dims become symbols. A path
    may keep tensors in external data files next to it.
    Narrow element types import as their stand-ins (see `dtypes.py`): bfloat16, float8 and
    float4 as float32, int4 and int2 as int8, uint4 and uint2 as uint8. `rules` maps ONNX op
    types to import rules used for this import in place of (or besides) the registered
    `IMPORTERS`, e.g. training-mode BatchNorm. `limits` bounds the work import does itself
    (values evaluated at import time, unrolled Loop iterations, node imports; `ImportLimits`
    holds the defaults): past one, an `ONNXError` names the node and the limit.
    """
    graph, outputs, _ = import_with_params(model_or_path, rules, limits, trainable, frozen)
    return graph, outputs


def import_with_params(
    model_or_path: onnx.ModelProto | str | os.PathLike | bytes,
    rules: Mapping[str, ImportRule] | None = None,
    limits: ImportLimits | None = None,
    trainable: Patterns = None,
    frozen: Patterns = None,
) -> tuple[Graph, dict[str, Tensor], ParamChoice]:
    """`import_model`, also returning which initializers it took as parameters and why (the CLI
    reports them): the model is read once, however large (IMPORTERS is filled: the package's
    `__init__` loads every rule module before any of its modules is used)."""
    table = IMPORTERS | dict(rules or {})
    model = unshare_initializers(load(model_or_path, table))
    choice = choose_params(model, trainable, frozen)
    return (*import_loaded(model, [*choice.params, *choice.overridable], table, limits), choice)


def import_loaded(
    model: onnx.ModelProto, params: Collection[str], rules: Mapping[str, ImportRule], limits: ImportLimits | None = None
) -> tuple[Graph, dict[str, Tensor]]:
    """Import a model `load` has checked, with the initializers named in `params` as params and the
    others as constants (`training_graph` chooses them itself; `import_model` by `choose_params`)."""
    table = dict(rules)
    opset = default_opset(model)
    graph = Graph(model.graph.name or "onnx")
    ctx = ImportContext(graph, opset, table, limits)
    with graph:
        env = ctx.env = _sources(ctx, model.graph, set(params))
        for proto in model.graph.node:
            _import_node(ctx, proto, opset, env, table)
        outputs = {o.name: ctx.tensor(env[o.name], f"output {o.name!r}") for o in model.graph.output}
    return graph, fold_as_import_would(graph, outputs, ctx.budget)


def _sources(ctx: ImportContext, onnx_graph: onnx.GraphProto, params: set[str]) -> dict[str, Operand]:
    """Graph inputs without an initializer become inputs, the initializers named in `params`
    params, other initializers known values."""
    env: dict[str, Operand] = {"": None}
    inits = {t.name for t in onnx_graph.initializer}
    for info in onnx_graph.input:
        if info.name not in inits:
            env[info.name] = gb.input(info.name, _shape(info), _elem_dtype(info))
            ctx.add_source(env[info.name])
            ctx.mark_narrow(env[info.name], info.type.tensor_type.elem_type)
    for t in onnx_graph.initializer:
        if t.name in params:
            env[t.name] = gb.param(t.name, tensor_value(t))
        else:
            env[t.name] = Known(tensor_value(t), from_onnx(t.data_type, f"initializer {t.name!r}"))
        ctx.mark_narrow(env[t.name], t.data_type)
    return env


def tensor_value(proto: onnx.TensorProto) -> np.ndarray:
    """The array a TensorProto holds (a narrow type widened to its stand-in); an `ONNXError` when
    its type or data is malformed."""
    try:
        return widen(numpy_helper.to_array(proto))
    except (KeyError, ValueError, TypeError) as err:
        raise ONNXError(f"initializer {proto.name!r} is malformed: {err}") from None


def _elem_dtype(info: onnx.ValueInfoProto) -> str:
    return from_onnx(info.type.tensor_type.elem_type, f"graph input {info.name!r}")


def _shape(info: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    if not info.type.tensor_type.HasField("shape"):
        raise ONNXError(f"graph input {info.name!r} has no shape; gradkiln needs at least its rank")
    dims = info.type.tensor_type.shape.dim
    return tuple(_dim(d, info.name, i) for i, d in enumerate(dims))


def _dim(d: onnx.TensorShapeProto.Dimension, input_name: str, axis: int) -> Dim:
    """A dim_value as an int; a dim_param (or no dim at all) as a symbol, named after the input
    and axis when it is not an identifier."""
    if d.HasField("dim_value"):
        return as_dim(d.dim_value)
    fallback = f"{input_name}_{axis}"
    name = d.dim_param if d.HasField("dim_param") else fallback
    if isinstance(name, bytes):  # protobuf hands back a string that is not UTF-8 as bytes
        raise ONNXError(
            f"graph input {input_name!r}: the dim_param of axis {axis} is not UTF-8 text ({name[:16]!r}); "
            "the model file is damaged"
        )
    return symbol(name) if name.isidentifier() else symbol(fallback)


def _import_node(ctx: ImportContext, proto: onnx.NodeProto, opset: int, env: dict, rules: dict) -> None:
    key = rule_key(proto.domain, proto.op_type)
    if key not in rules:
        first = ctx.graph.next_node_id
        _inline_function(ctx, proto, opset, env, rules)
        _mark_origin(ctx.graph, first, proto.name)
        return
    attrs = {a.name: _attr(proto, a.name, helper.get_attribute_value(a)) for a in proto.attribute}
    node = OnnxNode(proto.op_type, proto.name, attrs, opset, len(proto.output))
    first = ctx.graph.next_node_id
    try:
        ctx.budget.node()
        args = [env[name] for name in proto.input]
        result = rules[key](ctx, node, args)
    except GradkilnError as err:
        err.args = (f"importing {node.label}: {err}", *err.args[1:])
        raise err from None
    except TypeError as err:
        if str(err) != SYMBOLIC_INT:
            raise
        raise ONNXError(
            f"importing {node.label}: gradkiln imports it for static sizes only, and the model gives it "
            "symbolic dims (dim_param); export the model with fixed input shapes"
        ) from None
    _mark_origin(ctx.graph, first, proto.name)
    several = isinstance(result, (list, tuple)) and not isinstance(result, TensorSequence)
    results = result if several else [result]
    env.update((name, r) for name, r in zip(proto.output, results) if name)  # "" skips an optional output


def _mark_origin(graph: Graph, first: int, name: str) -> None:
    """Annotate the nodes made since id `first` with the ONNX node's `name` (`Node.origin`), which
    torch's exporter writes as the module path: error reports name it, and drawings cluster by it.
    A node an earlier ONNX node already claimed (a shared constant) keeps its first origin."""
    if not name:
        return
    for node_id in range(first, graph.next_node_id):
        if node_id in graph and graph.annotation(node_id, ORIGIN) is None:
            graph.annotate(node_id, ORIGIN, name)


def _inline_function(ctx: ImportContext, proto: onnx.NodeProto, opset: int, env: dict, rules: dict) -> None:
    """Import an op without a rule of its own as the ONNX function its schema defines."""
    types = [_type_of(env.get(name)) for name in proto.input]
    try:
        body = functions.body_of(proto, opset, types)
    except Exception as err:  # onnx's function builders reject input types they do not handle
        raise ONNXError(f"cannot build the ONNX function of {proto.op_type}: {err}") from None
    if body is None:
        raise UnsupportedOpError(f"{proto.op_type} (opset {opset}) has no import rule and no ONNX function")
    inner_opset = functions.body_opset(body, opset)
    for inner in functions.inline(proto, body, opset):
        _import_node(ctx, inner, inner_opset, env, rules)


def _type_of(operand: Operand) -> onnx.TypeProto:
    if isinstance(operand, Tensor):
        return functions.tensor_type(TO_ONNX[operand.dtype], operand.shape)
    if isinstance(operand, Known):
        return functions.tensor_type(TO_ONNX[operand.dtype], operand.array.shape)
    return onnx.TypeProto()


def _attr(proto: onnx.NodeProto, name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ONNXError(
                f"{proto.op_type} node {proto.name!r}: attribute {name!r} is not UTF-8 text ({value[:16]!r}...); "
                "the model file is damaged"
            ) from None
    if isinstance(value, onnx.TensorProto):
        return tensor_value(value)
    return value
