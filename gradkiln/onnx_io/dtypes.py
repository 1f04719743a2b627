"""The dtype correspondence between gradkiln and ONNX, shared by the exporter and the importer."""

from __future__ import annotations

from onnx import TensorProto

from ..graph import ONNXError

TO_ONNX: dict[str, int] = {
    "float16": TensorProto.FLOAT16,
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}
FROM_ONNX: dict[int, str] = {code: name for name, code in TO_ONNX.items()}


def from_onnx(code: int, where: str) -> str:
    """The gradkiln dtype of an ONNX element type; `where` names what carries it, for the error."""
    try:
        return FROM_ONNX[code]
    except KeyError:
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        raise ONNXError(f"{where}: element type {name} is not supported; gradkiln has {', '.join(TO_ONNX)}") from None
