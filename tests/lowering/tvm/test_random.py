"""random_bits on TVM: llvm draws the numpy reference's integers and uniforms bit for bit (scalar
and batched, symbolic and int32 seeds, negative and large ones), its normals within a few ulps;
the GPU targets compile it (CUDA to PTX with nvcc) or, on WebGPU, which has no int64, refuse it
naming the node."""

import numpy as np
import pytest

import gradkiln as gk

SEEDS = np.array([0, 1, -5, 2**31 - 2, 2**40 + 3], np.int64)


def sampling_graph(seed_shape=(), seed_dtype="int64", floats=("float16", "float32", "float64")):
    """random_bits, uniforms of every float dtype and normals over one seed input."""
    with gk.Graph("sampling") as g:
        seed = gk.input("seed", seed_shape, seed_dtype)
        exact = [gk.random.random_bits(seed, (3, 7), stream=2)]
        exact += [gk.random.uniform(seed, (50,), dtype) for dtype in floats]
        exact += [gk.random.bernoulli(seed, 0.3, (20,)), gk.random.split(seed, 3)]
        rounded = [gk.random.normal(seed, (50,), dtype) for dtype in floats if dtype != "float16"]
    return g, exact, rounded


@pytest.fixture(scope="module")
def scalar_seed():
    g, exact, rounded = sampling_graph()
    return g, exact, rounded, gk.compile(g, exact + rounded, target="llvm")


@pytest.mark.parametrize("seed", SEEDS)
def test_llvm_draws_the_reference_bits_uniforms_and_bernoullis_exactly(scalar_seed, seed):
    g, exact, rounded, llvm = scalar_seed
    reference = gk.compile(g, exact + rounded)(seed=seed)
    got = llvm(seed=seed)
    for want, have in zip(reference[: len(exact)], got):
        assert want.dtype == have.dtype
        np.testing.assert_array_equal(have, want)
    for want, have in zip(reference[len(exact) :], got[len(exact) :]):
        np.testing.assert_allclose(have, want, rtol=8 * np.finfo(want.dtype).eps, atol=8 * np.finfo(want.dtype).eps)


def test_llvm_matches_the_reference_for_a_symbolic_batch_of_int32_seeds():
    g, exact, _ = sampling_graph(("N",), "int32")
    seeds = np.array([7, -1, 2**31 - 1, 12], np.int32)
    reference = gk.compile(g, exact)(seed=seeds)
    for want, have in zip(reference, gk.compile(g, exact, target="llvm")(seed=seeds)):
        np.testing.assert_array_equal(have, want)
    assert reference[0].shape == (4, 3, 7)


def test_one_compiled_step_draws_fresh_noise_per_runtime_seed(scalar_seed):
    llvm = scalar_seed[3]
    first, again, other = llvm(seed=np.int64(3)), llvm(seed=np.int64(3)), llvm(seed=np.int64(4))
    np.testing.assert_array_equal(first[2], again[2])
    assert not np.any(first[2] == other[2])


@pytest.fixture(scope="module")
def cuda_sampling():
    g, exact, rounded = sampling_graph(("N",))
    return gk.compile(g, exact + rounded, target={"kind": "cuda", "arch": "sm_90"})


@pytest.mark.needs("nvcc")
def test_cuda_source_of_the_sampling_kernels_compiles_to_ptx(cuda_sampling):
    import tvm
    from tvm.support import nvcc

    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        ptx = nvcc.compile_cuda(cuda_sampling.source(), target_format="ptx", arch="sm_90", compiler="nvcc").decode()
    assert ".target sm_90" in ptx and ".entry random_bits" in ptx


def test_metal_compiles_the_sampling_kernels():
    g, exact, rounded = sampling_graph(floats=("float16", "float32"))  # Metal has no float64
    assert "kernel void random_bits" in gk.compile(g, exact + rounded, target="metal").source()


def test_webgpu_refuses_the_int64_kernels_naming_the_node():
    g, exact, _ = sampling_graph()
    with pytest.raises(gk.LoweringError, match=r"random_bits.*webgpu.*i64"):
        gk.compile(g, exact, target="webgpu")
