"""Graph -> ONNX: walk the needed nodes in topological order and let each op's rule emit ONNX nodes.

Inputs become graph inputs, params graph inputs with a same-named initializer (fed or defaulted),
constants initializers. Symbolic dims inside attributes become int64 shape arithmetic computed
at run time from the graph inputs that carry each symbol (`ExportContext.dims`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
import sympy
from onnx import helper, numpy_helper

from ..atomic import write_atomic
from ..graph import GradkilnError, Graph, Node, ONNXError, TensorType, UnsupportedOpError, Value
from ..graph.ops.complex import first_complex_node
from ..graph.outputs import normalize_outputs
from ..graph.registry import Registry
from ..graph.types import Dim
from .dtypes import TO_ONNX

OPSET = 18


def value_info(name: str, type_: TensorType) -> onnx.ValueInfoProto:
    """A typed ONNX value: static dims as dim_value, symbolic ones as dim_param (the expression)."""
    dims = [d if isinstance(d, int) else str(d) for d in type_.shape]
    return helper.make_tensor_value_info(name, TO_ONNX[type_.dtype], dims)


class ExportContext:
    """What export rules build into: ONNX nodes, initializers, unique names, shape arithmetic."""

    def __init__(self, graph: Graph, opset: int) -> None:
        self.graph = graph
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: dict[int, onnx.ValueInfoProto] = {}
        self._taken: set[str] = set()
        self._names: dict[Value, str] = {}
        self._dims: dict[sympy.Expr, str] = {}
        self._sources = _symbol_sources(graph)
        for node in graph.inputs() + graph.params():  # named first: a helper value never takes a feed name
            self.name_of(node.outputs[0])

    # -- names ----------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A name no other ONNX value or node uses, as close to `hint` as possible."""
        name, k = hint, 0
        while name in self._taken:
            k += 1
            name = f"{hint}_{k}"
        self._taken.add(name)
        return name

    def name_of(self, value: Value) -> str:
        """The ONNX name of a graph value: its node's name where it has one, else op + id."""
        if value not in self._names:
            node = self.graph.node(value.node)
            hint = node.name if node.name is not None else f"{node.op}_{node.id}"
            self._names[value] = self.fresh(hint if len(node.types) == 1 else f"{hint}_{value.index}")
        return self._names[value]

    # -- building -------------------------------------------------------------------------------
    def emit(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None, **attrs: Any) -> str:
        """Append one ONNX node; returns its (first) output name."""
        outputs = list(outputs) if outputs is not None else [self.fresh(op_type.lower())]
        name = self.fresh(f"{op_type}_{outputs[0]}")
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs[0]

    def const(self, value: Any, hint: str = "const", dtype: Any = None) -> str:
        """A new initializer holding `value`; returns its name."""
        return self.initializer(self.fresh(hint), value, dtype)

    def initializer(self, name: str, value: Any, dtype: Any = None) -> str:
        """Define the (already reserved) name `name` as an initializer holding `value`."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        return self.const(np.asarray(list(values), np.int64).reshape(-1), hint)

    def dims(self, dims: Sequence[Dim], hint: str = "shape") -> str:
        """A 1-D int64 tensor of `dims`: an initializer when static, else computed at run time."""
        if all(isinstance(d, int) for d in dims):
            return self.ints(dims, hint)
        return self.emit("Concat", [self.dim(d) for d in dims], [self.fresh(hint)], axis=0)

    def dim(self, expr: Dim) -> str:
        """A [1] int64 tensor holding a dim expression, built once per distinct expression."""
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return self.ints([int(expr)], f"dim_{int(expr)}")
        if expr not in self._dims:
            self._dims[expr] = self._build_dim(expr)
        return self._dims[expr]

    def _build_dim(self, expr: sympy.Expr) -> str:
        hint = "dim_" + "".join(c if c.isalnum() else "_" for c in str(expr))
        if expr.is_Symbol:
            return self._symbol(expr, hint)
        coeff, rest = expr.as_coeff_Mul()
        if expr.is_Mul and coeff.is_Rational and not coeff.is_Integer:
            scaled = self.dim(coeff.p * rest)
            return self.emit("Div", [scaled, self.dim(coeff.q)], [self.fresh(hint)])
        if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
            return self.emit("Mul", [self.dim(expr.base), self.dim(expr.base ** (expr.exp - 1))], [self.fresh(hint)])
        if isinstance(expr, (sympy.floor, sympy.ceiling)):
            num, den = sympy.fraction(sympy.together(expr.args[0]))
            if den.is_Integer:
                num = num + den - 1 if isinstance(expr, sympy.ceiling) else num
                return self.emit("Div", [self.dim(num), self.dim(den)], [self.fresh(hint)])
        if type(expr) in _VARIADIC:
            return self._fold(_VARIADIC[type(expr)], expr.args, hint)
        raise ONNXError(f"cannot export the dim expression {expr}: only + * // ceil max min of symbols are supported")

    def _fold(self, op_type: str, args: Sequence[sympy.Expr], hint: str) -> str:
        names = [self.dim(a) for a in sorted(args, key=sympy.default_sort_key)]
        if op_type in ("Max", "Min"):
            return self.emit(op_type, names, [self.fresh(hint)])
        out = names[0]
        for i, name in enumerate(names[1:], start=1):
            out = self.emit(op_type, [out, name], [self.fresh(hint if i == len(names) - 1 else f"{hint}_part")])
        return out

    def _symbol(self, sym: sympy.Symbol, hint: str) -> str:
        if sym not in self._sources:
            raise ONNXError(f"symbol {sym} is in an attribute but no graph input has it as a dim; add such an input")
        node, axis = self._sources[sym]
        self.declare_input(node)
        return self.emit("Shape", [self.name_of(node.outputs[0])], [self.fresh(hint)], start=axis, end=axis + 1)

    def declare_input(self, node: Node) -> None:
        """Make an `input` or `param` node a graph input (params also get their initializer)."""
        if node.id in self.inputs:
            return
        name = self.name_of(node.outputs[0])
        self.inputs[node.id] = value_info(name, node.types[0])
        if node.op == "param":
            self.initializer(name, node.attrs["value"])


_VARIADIC = {sympy.Add: "Add", sympy.Mul: "Mul", sympy.Max: "Max", sympy.Min: "Min"}


def _symbol_sources(graph: Graph) -> dict[sympy.Symbol, tuple[Node, int]]:
    """For each symbol, the first graph input (and axis) that has it as a plain dim."""
    sources: dict[sympy.Symbol, tuple[Node, int]] = {}
    for node in graph.inputs():
        for axis, d in enumerate(node.types[0].shape):
            if isinstance(d, sympy.Symbol):
                sources.setdefault(d, (node, axis))
    return sources


def export(
    graph: Graph, outputs: Any, path: str | os.PathLike | None = None, opset: int = OPSET, name: str | None = None
) -> onnx.ModelProto:
    """Export the part of `graph` that `outputs` needs as a checked ONNX model.

    `outputs` is what `gk.compile` accepts: a tensor, a node name, a list, or a dict whose keys
    become the ONNX output names. With `path`, the model is also written there atomically.
    """
    if not OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ONNXError(
            f"opset {opset} is not supported: gradkiln writes opsets {OPSET} to {onnx.defs.onnx_opset_version()}"
        )
    values, structure = normalize_outputs(graph, outputs)
    needed = [graph.node(i) for i in graph.needed_nodes(values)]
    refuse_complex(needed)
    ctx = ExportContext(graph, opset)
    for node in needed:
        _export_node(ctx, node, EXPORTERS)
    out_infos = _graph_outputs(ctx, values, structure)
    inner = [value_info(ctx.name_of(v), graph.type_of(v)) for v in _inner_values(needed, values)]
    onnx_graph = helper.make_graph(
        ctx.nodes, name or graph.name, list(ctx.inputs.values()), out_infos, ctx.initializers, value_info=inner
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="gradkiln")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ONNXError(f"the exported model of graph '{graph.name}' is invalid: {err}") from None
    if path is not None:
        write_atomic(path, model.SerializeToString())
    return model


def _export_node(ctx: ExportContext, node: Node, rules: dict) -> None:
    if node.op in ("input", "param"):
        ctx.declare_input(node)
    elif node.op == "constant":
        ctx.initializer(ctx.name_of(node.outputs[0]), node.attrs["value"])
    elif node.op not in rules:
        raise UnsupportedOpError(f"ONNX export: no rule for op '{node.op}' ({node.label}: {_signature(node)})")
    else:
        ins = [ctx.name_of(v) for v in node.inputs]
        outs = [ctx.name_of(v) for v in node.outputs]
        try:
            rules[node.op](ctx, node, ins, outs)
        except GradkilnError as err:
            raise type(err)(f"ONNX export of {node.label} = {node.op}({_signature(node)}): {err}") from None


def _signature(node: Node) -> str:
    args = ", ".join(f"{node.graph.label_of(v)}: {node.graph.type_of(v)}" for v in node.inputs)
    return f"{args}) -> ({', '.join(map(str, node.types))}"


def _graph_outputs(ctx: ExportContext, values: list[Value], structure: Any) -> list[onnx.ValueInfoProto]:
    """One ONNX output per requested value, named by the dict key where outputs came as a dict;
    an Identity renames a value (or repeats one listed twice)."""
    keys = structure if isinstance(structure, tuple) else [None] * len(values)
    infos, used = [], set()
    for key, value in zip(keys, values):
        name = ctx.name_of(value)
        if (key is not None and key != name) or name in used:
            name = ctx.emit("Identity", [name], [ctx.fresh(key or name)])
        used.add(name)
        infos.append(value_info(name, ctx.graph.type_of(value)))
    return infos


def _inner_values(nodes: list[Node], outputs: list[Value]) -> list[Value]:
    """The non-source values between inputs and outputs (carried as value_info)."""
    wanted = set(outputs)
    return [v for node in nodes if not node.opdef.source for v in node.outputs if v not in wanted]


ExportRule = Callable[[ExportContext, Node, list[str], list[str]], None]
EXPORTERS: Registry[ExportRule] = Registry("ONNX export rule")  # filled by the export_* family modules


def register_exporter(op: str, **how: Any) -> Callable[[ExportRule], ExportRule]:
    """Register the ONNX export rule of gradkiln op `op` (also for users' custom ops); `how` is
    `Registry.register`'s `when=`/`override=`."""
    return EXPORTERS.register(op, **how)


COMPLEX_NOT_IN_ONNX = (
    "ONNX operators do not accept complex tensors; export a real graph (split complex values with gk.real "
    "and gk.imag before the outputs and inputs), or run this one with gk.compile(target='numpy')"
)


def complex_error(node: Node) -> ONNXError:
    """The error of exporting `node`, which computes complex values (export_complex.py)."""
    types = ", ".join(map(str, node.types))
    return ONNXError(f"ONNX export of {node.label} = {node.op}(...) -> {types}: {COMPLEX_NOT_IN_ONNX}")


def refuse_complex(nodes: Iterable[Node]) -> None:
    """Raise an ONNXError naming the first of `nodes` with a complex value."""
    node = first_complex_node(nodes)
    if node is not None:
        raise complex_error(node)
