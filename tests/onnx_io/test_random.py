"""random_bits exported to ONNX: onnxruntime computes the numpy reference's integers, uniforms and
bernoullis bit for bit from a seed that stays a model input, and the model imports back; ONNX's
own seeded sampling ops import onto gk.random (their values are up to each runtime, so the check
is the distribution), unseeded ones are refused."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from scipy import stats

import gradkiln as gk


def sampling_graph(seed_shape):
    with gk.Graph("sampling") as g:
        seed = gk.input("seed", seed_shape, "int64")
        exact = [gk.random.random_bits(seed, (4, 6), stream=1), gk.random.bernoulli(seed, 0.25, (30,))]
        exact += [gk.random.uniform(seed, (40,), dtype) for dtype in ("float16", "float32", "float64")]
        rounded = [gk.random.normal(seed, (40,), "float64"), gk.random.gumbel(seed, (40,), "float64")]
    return g, exact, rounded


@pytest.mark.parametrize(
    "seed_shape, seed", [((), np.array(-12, np.int64)), (("N",), np.array([3, 2**35, 0], np.int64))]
)
def test_onnxruntime_draws_the_reference_samples_from_a_runtime_seed(seed_shape, seed):
    g, exact, rounded = sampling_graph(seed_shape)
    model = gk.onnx_io.export(g, exact + rounded)
    assert [i.name for i in model.graph.input] == ["seed"]
    reference = gk.compile(g, exact + rounded)(seed=seed)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"seed": seed})
    for want, have in zip(reference[: len(exact)], got):
        assert want.dtype == have.dtype
        np.testing.assert_array_equal(have, want)
    for want, have in zip(reference[len(exact) :], got[len(exact) :]):
        np.testing.assert_allclose(have, want, rtol=1e-13, atol=1e-14)  # cos near its zeros: absolute


def test_the_exported_model_imports_back_drawing_the_same_integers():
    g, exact, _ = sampling_graph(())
    imported, outputs = gk.onnx_io.import_model(gk.onnx_io.export(g, exact))
    seed = np.int64(77)
    for want, have in zip(gk.compile(g, exact)(seed=seed), gk.compile(imported, list(outputs.values()))(seed=seed)):
        np.testing.assert_array_equal(have, want)


def sampling_model(op_type, out_shape, inputs=(), elem=TensorProto.FLOAT, **attrs):
    node = helper.make_node(op_type, [i.name for i in inputs], ["y"], **attrs)
    out = helper.make_tensor_value_info("y", elem, out_shape)
    graph = helper.make_graph([node], "sampling", list(inputs), [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run_imported(model, **feeds):
    graph, outputs = gk.onnx_io.import_model(model)
    return gk.compile(graph, list(outputs.values()))(**feeds)[0]


def test_seeded_random_uniform_and_normal_import_as_the_distributions_they_name():
    uniform = run_imported(sampling_model("RandomUniform", [20000], shape=[20000], low=-1.0, high=3.0, seed=5.0))
    normal = run_imported(
        sampling_model("RandomNormal", [20000], elem=11, shape=[20000], mean=2.0, scale=0.5, seed=5.0, dtype=11)
    )
    assert uniform.dtype == np.float32 and normal.dtype == np.float64
    assert stats.kstest(uniform, stats.uniform(-1, 4).cdf).pvalue > 1e-3
    assert stats.kstest(normal, stats.norm(2, 0.5).cdf).pvalue > 1e-3


def test_like_forms_and_bernoulli_take_shape_and_dtype_from_their_input():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [500, 4])
    like = run_imported(sampling_model("RandomNormalLike", [500, 4], [x], seed=1.0), x=np.zeros((500, 4), np.float32))
    assert like.shape == (500, 4) and like.dtype == np.float32
    p = np.tile(np.array([0.1, 0.5, 0.9, 0.0], np.float32), (5000, 1))
    draws = run_imported(
        sampling_model(
            "Bernoulli", [5000, 4], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5000, 4])], seed=2.0
        ),
        x=p,
    )
    assert draws.dtype == np.float32
    np.testing.assert_allclose(draws.mean(0), [0.1, 0.5, 0.9, 0.0], atol=4 * np.sqrt(0.25 / 5000))


def test_an_unseeded_random_node_is_refused_saying_why():
    model = sampling_model("RandomUniform", [3], shape=[3])
    onnx.checker.check_model(model)
    with pytest.raises(gk.ONNXError, match=r"RandomUniform node .* has no seed"):
        gk.onnx_io.import_model(model)
