"""Reading an ONNX model for import: parse, list unsupported ops at once, check, and load the
tensors kept in external data files."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Mapping

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ..graph import ONNXError, UnsupportedOpError
from . import functions


def load(model_or_path: onnx.ModelProto | str | os.PathLike | bytes, rules: Mapping | None) -> onnx.ModelProto:
    """Read and check a model: every way it can be malformed surfaces as an `ONNXError`, and ops
    without a rule in `rules` as one `UnsupportedOpError` (before the checker validates them;
    `rules=None` skips that check, to describe a model gradkiln cannot import).

    A model read from a path gets its external data (tensors saved in side files) from the
    model's folder after the checker ran on the small model file, so models whose weights are
    external load however large they are (protobuf caps one serialized message at 2 GB)."""
    if isinstance(model_or_path, onnx.ModelProto):
        model, where, folder = model_or_path, "the model", None
    else:
        data, where = _read(model_or_path)
        folder = None if isinstance(model_or_path, bytes) else os.path.dirname(os.fspath(model_or_path))
        try:
            model = onnx.load_model_from_string(data)
        except (DecodeError, RuntimeError, ValueError) as err:
            raise ONNXError(f"{where} is not an ONNX model (it does not parse as a ModelProto: {err})") from None
    if not model.HasField("graph"):
        raise ONNXError(f"{where} is not an ONNX model: it has no graph (an empty, truncated or foreign file?)")
    _check_opset(model, where)
    if rules is not None:
        _check_supported(model, rules)
    _check_external_files(model, where, folder)
    try:
        onnx.checker.check_model(model if folder is None else os.fspath(model_or_path))
    except (onnx.checker.ValidationError, UnicodeDecodeError) as err:  # names that are not UTF-8
        first = str(err).strip().splitlines()[0]
        raise ONNXError(f"{where} is not a valid ONNX model: {first}") from None
    if folder is not None:
        external_data_helper.load_external_data_for_model(model, folder)
    return model


def _check_opset(model: onnx.ModelProto, where: str) -> None:
    """An `ONNXError` for a default-domain opset newer than the installed onnx package defines
    (its ops' meanings are unknown, so importing them by an older definition could be wrong)."""
    newest = onnx.defs.onnx_opset_version()
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > newest:
            raise ONNXError(
                f"{where} imports opset {entry.version} of the ONNX domain, but the installed onnx "
                f"{onnx.__version__} supports opsets up to {newest}; upgrade onnx, or export the model at "
                f"opset {newest} or older"
            )


def _check_external_files(model: onnx.ModelProto, where: str, folder: str | None) -> None:
    """An `ONNXError` naming the first tensor whose external data cannot be read: no folder to
    look in, a field that is not a number, a location that is not a file, a range past its end."""
    for tensor in _tensors(model.graph):
        if not external_data_helper.uses_external_data(tensor):
            continue
        what = f"{where}: tensor {tensor.name!r} keeps its data in the external file"
        try:
            info = external_data_helper.ExternalDataInfo(tensor)
        except ValueError as err:  # offset or length not a number, or negative
            raise ONNXError(f"{what}, but its offset or length is not a non-negative number ({err})") from None
        if folder is None:
            raise ONNXError(
                f"{what} {info.location!r}, which a ModelProto or bytes cannot locate; pass the model's path, "
                "or onnx.load(path) it first"
            )
        _check_external_range(what, info, os.path.join(folder, info.location))


def _check_external_range(what: str, info: external_data_helper.ExternalDataInfo, path: str) -> None:
    if os.path.isdir(path):
        raise ONNXError(f"{what} {info.location!r}, but {path!r} is a folder, not a file; the model is malformed")
    if not os.path.isfile(path):
        raise ONNXError(
            f"{what} {info.location!r}, but {path!r} does not exist; keep the data file next to the model, "
            "under that name"
        )
    size, offset, length = os.path.getsize(path), info.offset or 0, info.length
    if offset + (length or 0) > size:
        raise ONNXError(
            f"{what} {info.location!r} at offset {offset}, length {length}, past the end of that "
            f"{size}-byte file; the data file is truncated or belongs to another model"
        )


def _read(source: str | os.PathLike | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, "the bytes given"
    try:
        with open(source, "rb") as f:
            return f.read(), f"'{os.fspath(source)}'"
    except OSError as err:
        raise ONNXError(f"cannot read ONNX model '{os.fspath(source)}': {err.strerror}") from None


def rule_key(domain: str, op_type: str) -> str:
    """The import-rule key of an op: its type in the ONNX domain ("" or "ai.onnx"), `domain.op_type`
    in another (`ai.onnx.preview.training.Adam`), so ops of other domains never take a default-domain rule."""
    return op_type if domain in ("", "ai.onnx") else f"{domain}.{op_type}"


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _check_supported(model: onnx.ModelProto, rules: dict) -> None:
    """Raise one error listing every (op type, opset) of the model that has no import rule,
    looking into the ONNX functions that stand in for ops without one."""
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    missing: set[tuple[str, int | None]] = set()
    _collect_missing(model.graph.node, versions, rules, missing)
    if missing:
        listed = ", ".join(f"{op} (opset {version})" for op, version in sorted(missing, key=str))
        raise UnsupportedOpError(f"the model uses ops gradkiln cannot import: {listed}")


def _collect_missing(nodes: Iterable[onnx.NodeProto], versions: dict, rules: dict, missing: set) -> None:
    for n in nodes:
        domain = n.domain or "ai.onnx"
        version = versions.get(domain)
        if rule_key(n.domain, n.op_type) in rules:
            continue
        body = functions.static_body(n.op_type, version or 1, n.domain) if version else None
        if body is not None:
            inner = {o.domain or "ai.onnx": o.version for o in body.opset_import}
            _collect_missing(body.node, versions | inner, rules, missing)
        elif version is None or not functions.has_function(n.op_type, version, n.domain):
            missing.add((n.op_type if domain == "ai.onnx" else f"{n.domain}.{n.op_type}", version))
    for n in nodes:  # the bodies of control flow
        for attr in n.attribute:
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                _collect_missing(body.node, versions, rules, missing)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """The initializers and tensor attributes of `graph` and of its control-flow bodies."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            yield from [attr.t] if attr.HasField("t") else []
            yield from attr.tensors
            for body in [attr.g] if attr.HasField("g") else []:
                yield from _tensors(body)
            for body in attr.graphs:
                yield from _tensors(body)
