"""Import rules of ONNX's sampling ops onto `gk.random`: RandomUniform, RandomNormal, their *Like
forms and Bernoulli. ONNX leaves the values of these ops to each runtime, so no importer can
reproduce onnxruntime's draws; gradkiln draws from its own generator with the node's `seed`
attribute as the key (the same distribution, the same values on every gradkiln target, fixed
across runs, as a seeded ONNX node is). A node without a seed, which asks for fresh values per
run, is refused: gradkiln's graphs are pure functions of their inputs, so the key must be one."""

from __future__ import annotations

from ..graph import Tensor
from ..graph import builder as gb
from ..graph.builder import random as gr
from ..graph.errors import ONNXError
from .dtypes import from_onnx
from .importer import ImportContext, OnnxNode, Operand, register_importer

FLOAT = 1  # TensorProto.FLOAT, the ops' default dtype


def _seed(n: OnnxNode) -> int:
    if "seed" not in n.attrs:
        raise ONNXError(
            f"{n.op_type} node '{n.name}' has no seed: it draws fresh values each run, which a gradkiln graph "
            "cannot (it is a pure function of its inputs); give it a seed attribute, or feed a key and use "
            "gk.random in gradkiln"
        )
    return int(n.attrs["seed"])


def _like(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> tuple[tuple[int, ...], str]:
    x = ctx.tensor(args[0])
    dtype = from_onnx(n.attrs["dtype"], n.op_type) if "dtype" in n.attrs else x.dtype
    return tuple(x.shape), dtype


def _uniform(shape: tuple[int, ...], dtype: str, n: OnnxNode) -> Tensor:
    return gr.uniform(_seed(n), shape, dtype, n.attrs.get("low", 0.0), n.attrs.get("high", 1.0))


def _normal(shape: tuple[int, ...], dtype: str, n: OnnxNode) -> Tensor:
    return gr.normal(_seed(n), shape, dtype, n.attrs.get("mean", 0.0), n.attrs.get("scale", 1.0))


@register_importer("RandomUniform")
def _random_uniform(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return _uniform(tuple(n.attrs["shape"]), from_onnx(n.attrs.get("dtype", FLOAT), n.op_type), n)


@register_importer("RandomNormal")
def _random_normal(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return _normal(tuple(n.attrs["shape"]), from_onnx(n.attrs.get("dtype", FLOAT), n.op_type), n)


@register_importer("RandomUniformLike")
def _random_uniform_like(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return _uniform(*_like(ctx, n, args), n)


@register_importer("RandomNormalLike")
def _random_normal_like(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    return _normal(*_like(ctx, n, args), n)


@register_importer("Bernoulli")
def _bernoulli(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
    p = ctx.tensor(args[0])
    dtype = from_onnx(n.attrs["dtype"], n.op_type) if "dtype" in n.attrs else p.dtype
    return gb.cast(gr.bernoulli(_seed(n), p), dtype)
