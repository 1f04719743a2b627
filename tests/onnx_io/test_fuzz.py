"""Fuzzing the importer: mutated and truncated models either import or raise a GradkilnError,
never another exception. Bounded here; `python benchmarks/fuzz_onnx.py --examples N` runs longer
(it sets GRADKILN_FUZZ_EXAMPLES)."""

import os

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from gradkiln import GradkilnError
from gradkiln.onnx_io import export, import_model
from gradkiln.testing import op_samples

EXAMPLES = int(os.environ.get("GRADKILN_FUZZ_EXAMPLES", "300"))
SEEDS = [export(*sample.graph()[::2]).SerializeToString() for sample in op_samples("float32")[::4]]


@st.composite
def mutated_models(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
        if not data:
            break
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_models())
def test_mutated_bytes_import_or_raise_a_gradkiln_error(data):
    try:
        import_model(data)
    except GradkilnError:
        pass


@st.composite
def mutated_protos(draw):
    """Structural mutations the byte level rarely reaches: renamed inputs, dropped nodes, wrong types."""
    model = onnx.load_model_from_string(draw(st.sampled_from(SEEDS)))
    nodes = model.graph.node
    kind = draw(st.sampled_from(["dangle", "drop", "dtype", "shape", "attr"]))
    if kind == "dangle" and nodes and nodes[-1].input:
        nodes[-1].input[0] = "no_such_value"
    elif kind == "drop" and nodes:
        del nodes[draw(st.integers(0, len(nodes) - 1))]
    elif kind == "dtype" and model.graph.input:
        model.graph.input[0].type.tensor_type.elem_type = draw(st.sampled_from([0, 8, 14, 16, 23]))
    elif kind == "shape" and model.graph.input:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        if dims:
            dims[0].dim_value = draw(st.integers(0, 5))
    elif nodes and nodes[0].attribute:
        del nodes[0].attribute[0]
    return model


@settings(max_examples=EXAMPLES * 2 // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_protos())
def test_structurally_broken_models_import_or_raise_a_gradkiln_error(model):
    try:
        import_model(model)
    except GradkilnError:
        pass


@pytest.mark.parametrize("fraction", [0, 0.01, 0.5, 0.99])
def test_truncated_files_raise_a_gradkiln_error(tmp_path, fraction):
    path = tmp_path / "cut.onnx"
    path.write_bytes(SEEDS[-1][: int(fraction * len(SEEDS[-1]))])
    with pytest.raises(GradkilnError):
        import_model(path)


def test_a_string_attribute_that_is_not_utf8_is_an_onnx_error():
    """Found by `benchmarks/fuzz_onnx.py`: a bit flip inside Einsum's equation."""
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Einsum", ["x"], ["y"], equation=b"\xe2ii->bi")],
            "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 3])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
        )
    )
    with pytest.raises(GradkilnError, match="attribute 'equation' is not UTF-8 text"):
        import_model(model.SerializeToString())
