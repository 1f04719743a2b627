"""GPU targets compile with no GPU present (kernel source out, a clear error on call), CUDA source
compiles to PTX with nvcc, and exported artifacts run in a process that has TVM but no gradkiln."""

import json
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tvm

import gradkiln as gk
from gradkiln.symbolic import grad
from gradkiln.testing import mlp_feeds, mlp_training_step

ENTRY_MARKERS = {"cuda": 'extern "C" __global__', "metal": "kernel void", "webgpu": "@compute", "opencl": "__kernel"}


def elementwise_step():
    """A small training step without matmul (dlight's Metal matmul rule takes ~35 s to import its
    tensor intrinsics) and without int64 (WGSL has none), with a symbolic batch."""
    with gk.Graph("ewise") as g:
        x = gk.input("x", ("N", 16))
        w = gk.param("w", np.linspace(-1, 1, 16, dtype="float32"))
        loss = gk.mean(gk.tanh(x * w) * gk.sigmoid(x))
    return g, [loss, *grad(loss, [w])]


@pytest.fixture(scope="module", params=list(ENTRY_MARKERS))
def gpu_executable(request):
    g, outputs = elementwise_step()
    return gk.compile(g, outputs, target=request.param)


@pytest.fixture(scope="module")
def cuda_mlp():
    g, outputs = mlp_training_step()
    return gk.compile(g, outputs, target={"kind": "cuda", "arch": "sm_90"})


def kernel_names(executable) -> list[str]:
    return [gv.name_hint for gv, f in executable.kernels.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


def test_gpu_source_is_the_kernel_code_with_an_entry_point_per_kernel(gpu_executable):
    source = gpu_executable.source()
    assert ENTRY_MARKERS[gpu_executable.target] in source
    names = kernel_names(gpu_executable)
    assert names and all(name in source for name in names)


def test_calling_without_the_device_says_so_and_what_still_works(gpu_executable):
    if gpu_executable.spec.device().exist:
        pytest.skip(f"this machine has a {gpu_executable.target} device")
    with pytest.raises(gk.LoweringError, match=r"no \w+ device on this machine; .source\(\) and .export\(\)"):
        gpu_executable(x=np.ones((3, 16), "float32"))


def test_gpu_targets_take_no_cpu_schedule_option():
    g, outputs = elementwise_step()
    with pytest.raises(gk.LoweringError, match="takes no option schedule"):
        gk.compile(g, outputs, target="cuda", schedule=False)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_cuda_source_of_an_mlp_training_step_compiles_to_ptx(cuda_mlp):
    from tvm.support import nvcc

    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        ptx = nvcc.compile_cuda(cuda_mlp.source(), target_format="ptx", arch="sm_90", compiler="nvcc").decode()
    assert ".target sm_90" in ptx
    assert all(f".entry {name}" in ptx for name in kernel_names(cuda_mlp))


def test_cuda_export_is_a_library_with_the_cuda_source_embedded(cuda_mlp, tmp_path):
    path = cuda_mlp.export(tmp_path / "mlp.so")
    assert b"__global__" in path.read_bytes()


@pytest.mark.parametrize("target", ["metal", "webgpu"])
def test_cross_targets_export_an_archive_of_objects(target, tmp_path):
    g, outputs = elementwise_step()
    compiled = gk.compile(g, outputs, target=target)
    with pytest.raises(gk.LoweringError, match=r"use a \.tar file"):
        compiled.export(tmp_path / "step.so")
    with tarfile.open(compiled.export(tmp_path / "step.tar")) as archive:
        assert archive.getnames()
    assert [p.name for p in tmp_path.iterdir()] == ["step.tar"]


def test_a_failed_export_leaves_neither_the_file_nor_a_temporary(tmp_path, monkeypatch):
    g, outputs = elementwise_step()
    compiled = gk.compile(g, outputs, target="llvm")

    def broken(path):
        open(path, "wb").write(b"half")
        raise RuntimeError("linker died")

    monkeypatch.setattr(compiled.compiled, "export_library", broken, raising=False)
    with pytest.raises(gk.LoweringError, match="linker died"):
        compiled.export(tmp_path / "step.so")
    assert list(tmp_path.iterdir()) == []


LOADER = """
import json, sys
import numpy as np
import tvm, tvm.runtime.vm
path, names, feeds = sys.argv[1], json.loads(sys.argv[2]), np.load(sys.argv[3])
vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
outputs = vm["main"](*[tvm.runtime.tensor(feeds[name]) for name in names])
np.savez(sys.argv[4], *[o.numpy() for o in outputs])
assert not any(m.startswith("gradkiln") for m in sys.modules), "gradkiln was imported"
"""


def test_cpu_export_runs_in_a_fresh_process_without_gradkiln(tmp_path):
    g, outputs = mlp_training_step()
    compiled = gk.compile(g, outputs, target="llvm")
    library = compiled.export(tmp_path / "mlp.so")
    feeds = mlp_feeds(5)
    all_feeds = {n.name: n.attrs["value"] for n in compiled.param_nodes} | feeds
    np.savez(tmp_path / "feeds.npz", **all_feeds)
    names = json.dumps(compiled.argument_names)
    command = [sys.executable, "-c", LOADER, str(library), names, "feeds.npz", "out.npz"]
    subprocess.run(command, check=True, cwd=tmp_path, capture_output=True, timeout=60)
    with np.load(tmp_path / "out.npz") as loaded:
        got = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
    for g_out, want in zip(got, compiled(**feeds)):
        np.testing.assert_allclose(g_out, want, rtol=1e-6)
