"""ONNX ops that their schema defines as a function of other ops import by inlining that function.

The function body is the ONNX definition itself, so an op without an import rule of its own
(Attention, GroupNormalization, CenterCropPad, ...) gets exactly its ONNX semantics from the
rules of the ops it is made of. Bodies that depend on the input types are built for the types
at hand ("context-dependent" functions).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import onnx
from onnx import defs, helper

_expansions = itertools.count()


def schema_of(op_type: str, opset: int, domain: str = "") -> defs.OpSchema | None:
    """The op's schema at `opset`; None for unknown ops and for malformed names or versions."""
    try:
        return defs.get_schema(op_type, opset, domain)
    except (defs.SchemaError, TypeError, ValueError, OverflowError):
        return None


def static_body(op_type: str, opset: int, domain: str = "") -> onnx.FunctionProto | None:
    """The op's function body when it does not depend on the input types, else None."""
    schema = schema_of(op_type, opset, domain)
    return schema.function_body if schema is not None and schema.has_function else None


def has_function(op_type: str, opset: int, domain: str = "") -> bool:
    schema = schema_of(op_type, opset, domain)
    return schema is not None and (schema.has_function or schema.has_context_dependent_function)


def body_of(node: onnx.NodeProto, opset: int, input_types: Sequence[onnx.TypeProto]) -> onnx.FunctionProto | None:
    """The function `node` stands for, built for `input_types` where the schema needs them."""
    schema = schema_of(node.op_type, opset, node.domain)
    if schema is None:
        return None
    if schema.has_function:
        return schema.function_body
    if not schema.has_context_dependent_function:
        return None
    built = schema.get_context_dependent_function(
        node.SerializeToString(), [t.SerializeToString() for t in input_types]
    )
    return onnx.FunctionProto.FromString(built)


def body_opset(body: onnx.FunctionProto, default: int) -> int:
    return next((o.version for o in body.opset_import if o.domain in ("", "ai.onnx")), default)


def inline(node: onnx.NodeProto, body: onnx.FunctionProto, opset: int) -> list[onnx.NodeProto]:
    """The body's nodes reading `node`'s inputs, writing its outputs and using its attributes
    (or the schema's defaults); the body's own value names get a prefix unique to this call."""
    prefix = f"{node.name or node.op_type}/{next(_expansions)}/"
    names = dict(zip(body.input, list(node.input) + [""] * len(body.input))) | dict(zip(body.output, node.output))
    given = {a.name: a for a in node.attribute}
    schema = schema_of(node.op_type, opset, node.domain)
    defaults = {a.name: a for a in body.attribute_proto}
    if schema is not None:
        defaults |= {k: a.default_value for k, a in schema.attributes.items() if a.default_value.type}
    scope = {*body.input, *(out for inner in body.node for out in inner.output)}
    inlined = []
    for inner in body.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(inner)
        copy.name = prefix + inner.name
        copy.input[:] = [_renamed(n, names, prefix) for n in inner.input]
        copy.output[:] = [_renamed(n, names, prefix) for n in inner.output]
        del copy.attribute[:]
        for attr in inner.attribute:
            if not attr.ref_attr_name:
                copy.attribute.append(attr)
                continue
            source = given.get(attr.ref_attr_name, defaults.get(attr.ref_attr_name))
            if source is not None:
                copy.attribute.append(_renamed_attr(source, attr.name))
        for attr in copy.attribute:
            for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                _rename_captures(graph, scope, names, prefix)
        inlined.append(copy)
    return inlined


def _renamed(name: str, names: dict[str, str], prefix: str) -> str:
    if not name:
        return ""
    return names.get(name, prefix + name)


def _rename_captures(graph: onnx.GraphProto, scope: set[str], names: dict[str, str], prefix: str) -> None:
    """Rename, inside a control-flow body, the names it reads from the inlined function's scope."""
    for node in graph.node:
        node.input[:] = [_renamed(n, names, prefix) if n in scope else n for n in node.input]
        for attr in node.attribute:
            for inner in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                _rename_captures(inner, scope, names, prefix)


def _renamed_attr(source: onnx.AttributeProto, name: str) -> onnx.AttributeProto:
    attr = onnx.AttributeProto()
    attr.CopyFrom(source)
    attr.name = name
    return attr


def tensor_type(dtype: int, shape: Sequence[object]) -> onnx.TypeProto:
    """A tensor TypeProto: int dims as dim_value, symbolic ones as dim_param."""
    return helper.make_tensor_type_proto(dtype, [d if isinstance(d, int) else str(d) for d in shape])
