"""The integer dtypes int8, int16, uint8, uint16, uint32 and uint64 (besides int32 and int64):
promotion as numpy's, ops on the numpy executor and TVM, export that onnxruntime runs, and a
clear error where an ONNX op does not take the dtype. Oracles: numpy, onnxruntime."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph import ONNXError
from gradkiln.graph.dtypes import INT_DTYPES, promote

NEW_INTS = ("int8", "int16", "uint8", "uint16", "uint32", "uint64")
RNG = np.random.default_rng(0)


def test_the_new_integer_dtypes_are_known():
    assert set(NEW_INTS) < set(INT_DTYPES)
    with gk.Graph():
        assert gk.constant(np.zeros(2, np.uint16)).dtype == "uint16"


@pytest.mark.parametrize("a, b", list(itertools.combinations_with_replacement(INT_DTYPES, 2)))
def test_integer_promotion_is_numpys(a, b):
    assert promote(a, b) == np.result_type(a, b).name


def test_integers_with_floats_and_bools_keep_the_kind_order():
    assert promote("uint8", "float16") == "float16"
    assert promote("bool", "uint16") == "uint16"
    assert promote("int8", "uint64", "float32") == "float32"


def _elementwise_graph(dtype: str) -> tuple[gk.Graph, dict]:
    with gk.Graph() as g:
        a, b = gk.input("a", (3, 4), dtype), gk.input("b", (3, 4), dtype)
        outputs = {
            "add": a + b,
            "sub": a - b,
            "mul": a * b,
            "max": gk.maximum(a, b),
            "min": gk.minimum(a, b),
            "mod": gk.mod(a, b),
            "less": a < b,
            "equal": gk.equal(a, b),
            "where": gk.where(a > b, a, b),
            "float": gk.cast(a, "float32"),
        }
    return g, outputs


def _operands(dtype: str) -> dict[str, np.ndarray]:
    info = np.iinfo(dtype)
    a = RNG.integers(max(info.min, -100), min(info.max, 100), (3, 4)).astype(dtype)
    a[0, 0] = info.max  # sums and products wrap around as numpy's do
    b = RNG.integers(1, min(info.max, 100), (3, 4)).astype(dtype)
    return {"a": a, "b": b}


def _numpy_results(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    with np.errstate(over="ignore"):
        return {
            "add": a + b,
            "sub": a - b,
            "mul": a * b,
            "max": np.maximum(a, b),
            "min": np.minimum(a, b),
            "mod": np.mod(a, b),
            "less": a < b,
            "equal": a == b,
            "where": np.where(a > b, a, b),
            "float": a.astype(np.float32),
        }


def _assert_same(got: dict, expected: dict) -> None:
    for key, want in expected.items():
        assert np.asarray(got[key]).dtype == want.dtype, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)


@pytest.mark.parametrize("dtype", NEW_INTS)
def test_integer_ops_on_the_numpy_executor_match_numpy(dtype):
    graph, outputs = _elementwise_graph(dtype)
    feeds = _operands(dtype)
    _assert_same(gk.compile(graph, outputs)(**feeds), _numpy_results(**feeds))


@pytest.mark.parametrize("dtype", NEW_INTS)
def test_integer_reductions_keep_the_dtype(dtype):
    with gk.Graph() as g:
        a = gk.input("a", (3, 4), dtype)
        outputs = {"sum": gk.sum(a, 1), "max": gk.max(a, 0)}
    x = _operands(dtype)["a"]
    with np.errstate(over="ignore"):
        expected = {"sum": x.sum(1, dtype=dtype), "max": x.max(0)}
    _assert_same(gk.compile(g, outputs)(a=x), expected)


@pytest.mark.parametrize("dtype", ["int8", "uint16", "uint64"])
def test_integer_ops_compiled_with_tvm_match_numpy(dtype):
    graph, outputs = _elementwise_graph(dtype)
    feeds = _operands(dtype)
    _assert_same(gk.compile(graph, outputs, target="llvm")(**feeds), _numpy_results(**feeds))


@pytest.mark.parametrize("dtype", NEW_INTS)
def test_exported_integer_graphs_run_in_onnxruntime(dtype, run_onnx_or_reference):
    """onnxruntime, or onnx's reference evaluator where onnxruntime lacks a kernel (Max of uint64)."""
    graph, outputs = _elementwise_graph(dtype)
    model = gk.onnx_io.export(graph, outputs)
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {gk.onnx_io.dtypes.TO_ONNX[dtype]}
    feeds = _operands(dtype)
    _assert_same(run_onnx_or_reference(model, feeds), _numpy_results(**feeds))


def test_export_names_the_onnx_op_that_lacks_the_dtype():
    with gk.Graph() as g:
        total = gk.sum(gk.input("a", (3,), "int8"))
    with pytest.raises(ONNXError, match=r"ReduceSum.*int8"):
        gk.onnx_io.export(g, total)
