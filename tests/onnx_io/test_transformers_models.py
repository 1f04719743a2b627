"""Hugging Face transformers models (tiny configs, random weights, no downloads) exported by torch
import once with a symbolic batch (and sequence length where the export makes it symbolic), run at
two sizes, and differentiate: forward and parameter gradients checked against torch itself.

Their exports compute shapes from the input's (`Shape -> Gather -> Concat -> Expand`, `Range` over
the sequence length, causal masks from `Trilu`), which the importer keeps as sympy dims
(onnx_io/shape_rules.py); one llvm compile serves every size.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import pytest
import torch

import gradkiln as gk
from gradkiln.graph import symbol

transformers = pytest.importorskip("transformers", reason="needs transformers: pip install -e '.[test]'")
SIZES = [(2, 7), (3, 5)]  # (batch, sequence length); the vision models take (batch, 3, 16, 16) images
IMAGE = 16


@dataclass
class Case:
    """How to build one model and feed it: `tokens` models take int64 ids (batch, seq), the others images."""

    build: Callable[[], torch.nn.Module]
    tokens: bool


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )  # fmt: skip
    return transformers.BertModel(config, add_pooling_layer=False)


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2Model(config)


def _vit() -> torch.nn.Module:
    config = transformers.ViTConfig(
        image_size=IMAGE, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    return transformers.ViTModel(config, add_pooling_layer=False)


def _convnext() -> torch.nn.Module:
    config = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=IMAGE)
    return transformers.ConvNextModel(config)


def _swin() -> torch.nn.Module:
    config = transformers.SwinConfig(
        image_size=IMAGE, patch_size=2, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
    )
    return transformers.SwinModel(config, add_pooling_layer=False)


CASES = {
    "bert": Case(_bert, tokens=True),
    "gpt2": Case(_gpt2, tokens=True),
    "vit": Case(_vit, tokens=False),
    "convnext": Case(_convnext, tokens=False),
    "swin": Case(_swin, tokens=False),
}


class LastHidden(torch.nn.Module):
    """The model with one tensor out: its last hidden state."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).last_hidden_state


def _feed(case: Case, batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if case.tokens:  # no id 0: BERT's padding id, whose embedding row torch never updates (not in ONNX)
        return torch.randint(1, 50, (batch, seq), generator=generator)
    return torch.randn(batch, 3, IMAGE, IMAGE, generator=generator)


def _model(name: str) -> torch.nn.Module:
    """The model in eval mode with every parameter moved off its initial value, so that no two
    parameters are equal (layer norms start at ones) and each ONNX initializer names one."""
    torch.manual_seed(0)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    model = LastHidden(CASES[name].build()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _export(model: torch.nn.Module, case: Case, dynamo: bool) -> onnx.ModelProto:
    axes = {0: "batch", 1: "seq"} if case.tokens else {0: "batch"}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (_feed(case, *SIZES[0]),), f, input_names=["x"], output_names=["y"], dynamic_axes={"x": axes},
            dynamo=dynamo, **({} if dynamo else {"opset_version": 17}),
        )  # fmt: skip
    return onnx.load_from_string(f.getvalue())


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request):
    """(name, torch model, its TorchScript export with a symbolic batch)."""
    model = _model(request.param)
    return request.param, model, _export(model, CASES[request.param], dynamo=False)


def _grad_graph(model: onnx.ModelProto):
    """The imported model, its output, its params and the gradients of sum(y**2) with respect to them."""
    graph, outputs = gk.onnx_io.import_model(model)
    with graph:
        y = outputs["y"]
        params = [gk.Tensor(graph, p.outputs[0]) for p in graph.params()]
        grads = gk.grad(gk.sum(gk.square(y)), params)
    return graph, y, params, grads


def _torch_reference(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """torch's output and the gradients of sum(y**2) by parameter, computed by torch.autograd (the
    parameters the output needs: the export leaves the others out, a pooler's)."""
    model.zero_grad()
    y = model(x)
    (y**2).sum().backward()
    grads = {name: p.grad.numpy() for name, p in model.named_parameters() if p.grad is not None}
    return y.detach().numpy(), grads


def _torch_param_of(value: np.ndarray, model: torch.nn.Module) -> tuple[str, bool] | None:
    """The torch parameter an initializer holds (by value: the export transposes MatMul weights
    and renames them `onnx::MatMul_<n>`), and whether it is transposed; None for an initializer the
    exporter computed from parameters (Swin's relative position bias, folded at export)."""
    for name, p in model.named_parameters():
        data = p.detach().numpy()
        for transposed in (False, True):
            candidate = data.T if transposed else data
            if candidate.shape == value.shape and np.array_equal(candidate, value):
                return name, transposed
    return None


def _check_outputs(name, model, graph, params, results, x):
    """Forward and every matched parameter's gradient against torch, within float32 error."""
    y, grads = _torch_reference(model, x)
    scale = np.abs(y).max()
    np.testing.assert_allclose(results[0], y, rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name} forward at {x.shape}")
    matched = 0
    for param, grad in zip(params, results[1:]):
        value = param.node.attrs["value"]
        found = _torch_param_of(value, model)
        if found is None:  # the dynamo exporter writes scalar literals (gelu's 0.5) as initializers
            assert name == "swin" or value.ndim == 0, f"{name}: initializer {param.name} is no torch parameter"
            continue
        torch_name, transposed = found
        expected = grads[torch_name].T if transposed else grads[torch_name]
        # relative to the largest element; key biases have gradient 0 up to rounding (softmax is shift invariant)
        err = np.abs(grad - expected).max() / max(np.abs(expected).max(), 1e-3)
        assert err < 1e-3, f"{name}: gradient of {param.name} ({torch_name}) off by {err:.2e} at {x.shape}"
        matched += 1
    folded = 2 if name == "swin" else 0  # one relative position bias table per stage
    assert matched == len(grads) - folded, f"{name}: {matched} of torch's {len(grads)} parameters imported"


def test_the_export_imports_with_symbolic_batch_and_sequence_length(exported):
    name, _, model = exported
    graph, outputs = gk.onnx_io.import_model(model)
    (x,) = graph.inputs()
    batch, seq = symbol("batch"), symbol("seq")
    assert x.types[0].shape[0] == batch and outputs["y"].shape[0] == batch
    if CASES[name].tokens:
        assert x.types[0].shape == (batch, seq) and outputs["y"].shape == (batch, seq, 16)


def test_forward_and_gradients_match_torch_at_two_sizes_on_numpy(exported):
    name, model, onnx_model = exported
    graph, y, params, grads = _grad_graph(onnx_model)
    run = gk.compile(graph, [y, *grads])
    for batch, seq in SIZES:
        x = _feed(CASES[name], batch, seq, seed=batch)
        _check_outputs(name, model, graph, params, run(x=x.numpy()), x)


@pytest.mark.slow
def test_one_llvm_compile_runs_every_size(exported):
    name, model, onnx_model = exported
    graph, y, params, grads = _grad_graph(onnx_model)
    run = gk.compile(graph, [y, *grads], "llvm")
    for batch, seq in SIZES:
        x = _feed(CASES[name], batch, seq, seed=batch)
        _check_outputs(name, model, graph, params, run(x=x.numpy()), x)


@pytest.mark.parametrize("name", ["bert", "convnext"])
def test_the_dynamo_export_imports_and_matches_torch(name):
    """torch.onnx's default (dynamo) exporter writes other shape arithmetic (Range over a
    symbolic dim in ConvNeXt's and BERT's exports, opset 18)."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript: pip install -e '.[test]'")
    model = _model(name)
    graph, y, params, grads = _grad_graph(_export(model, CASES[name], dynamo=True))
    run = gk.compile(graph, [y, *grads])
    for batch, seq in SIZES:
        x = _feed(CASES[name], batch, seq, seed=batch)
        _check_outputs(name, model, graph, params, run(x=x.numpy()), x)


def test_a_sequence_longer_than_the_position_table_is_refused_naming_the_slice():
    """BERT cuts its position ids (a table of max_position_embeddings) to the sequence length: the
    import takes the cut in range, and a call with a longer sequence is refused before it runs."""
    model = _model("bert")
    graph, outputs = gk.onnx_io.import_model(_export(model, CASES["bert"], dynamo=False))
    run = gk.compile(graph, outputs["y"])
    with pytest.raises(gk.graph.ShapeError, match=r"slice node .* up to seq = 40 .* past its 32 elements"):
        run(x=np.zeros((1, 40), np.int64))


def test_imported_nodes_name_the_torch_module_they_came_from():
    """torch's exporter names each ONNX node by module path; the import keeps it (`Node.origin`)."""
    graph, _ = gk.onnx_io.import_model(_export(_model("bert"), CASES["bert"], dynamo=False))
    origins = {node.origin for node in graph.nodes_of("matmul")}
    assert "/model/encoder/layer.0/attention/self/query/MatMul" in origins
