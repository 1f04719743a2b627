"""GPU targets compile with no GPU present (kernel source out, a clear error on call), CUDA source
compiles to PTX with nvcc, and exported artifacts run in a process that has TVM but no gradkiln."""

import json
import re
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import sympy
import tvm

import gradkiln as gk
from gradkiln.lowering.tvm.gpu_launch import split_sources
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


@pytest.mark.needs("nvcc")
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


def static_matmul_relu():
    rng = np.random.default_rng(1)
    with gk.Graph("dense") as g:
        x = gk.input("x", (8, 32))
        w = gk.param("w", rng.normal(size=(32, 16)).astype("float32"))
        y = gk.relu(x @ w + 0.5)
    return g, y


def test_cuda_launches_agree_with_the_kernel_signatures_in_the_source(cuda_mlp):
    signatures = {
        name: (int(bound or 0), [p.split()[-1].removesuffix("_ptr") for p in params.split(",")])
        for bound, name, params in re.findall(
            r"__global__ void (?:__launch_bounds__\((\d+)\) )?(\w+)\(([^)]*)\)", cuda_mlp.source()
        )
    }
    launches = cuda_mlp.launches()
    assert {launch.kernel for launch in launches} == set(signatures)
    for launch in launches:
        bound, params = signatures[launch.kernel]
        assert int(np.prod([int(d) for d in launch.block])) == bound or not bound  # TVM omits bounds of 1
        assert params == [*launch.buffers, *(name for name, _ in launch.scalars)]


def test_launches_are_a_gpu_notion():
    g, outputs = elementwise_step()
    with pytest.raises(gk.LoweringError, match="launches exist on GPU targets"):
        gk.compile(g, outputs, target="llvm").launches()


@pytest.fixture(scope="module")
def wgpu_device(tmp_path_factory):
    """A WebGPU device on a CPU adapter (Mesa's lavapipe through Vulkan, else llvmpipe GL)."""
    wgpu = pytest.importorskip("wgpu", reason="needs the wgpu package (WGSL validation): pip install -e '.[test]'")
    runtime_dir = tmp_path_factory.mktemp("xdg")
    runtime_dir.chmod(0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))  # Mesa complains without one
        adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
        if adapter is None:
            pytest.skip("needs a WebGPU adapter, Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1")
        yield adapter.request_device_sync()


@pytest.mark.parametrize("workload", [elementwise_step, static_matmul_relu])
def test_every_exported_wgsl_kernel_passes_naga_validation(workload, wgpu_device, tmp_path):
    g, outputs = workload()
    folder = gk.compile(g, outputs, target="webgpu").export(tmp_path / "bundle")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [k["file"] for k in manifest["kernels"]] + ["manifest.json"]
    )
    for kernel in manifest["kernels"]:
        shader = wgpu_device.create_shader_module(code=(folder / kernel["file"]).read_text())
        wgpu_device.create_compute_pipeline(layout="auto", compute={"module": shader, "entry_point": kernel["name"]})
        assert kernel["launches"] and kernel["bindings"][-1]["type"] == "PODArgs"
        for launch in kernel["launches"]:  # the host code's block is the kernel's declared workgroup
            assert [int(d) for d in launch["workgroup_size"]] == kernel["workgroup_size"]
            assert len(launch["buffers"]) == len(kernel["bindings"]) - 1


def test_naga_rejects_a_broken_kernel(wgpu_device):
    import wgpu

    with pytest.raises(wgpu.GPUValidationError):
        wgpu_device.create_shader_module(code="@compute @workgroup_size(1) fn f() { let x: f32 = 1i; }")


def run_wgsl_launch(device, wgsl: str, kernel: dict, arrays: dict, out_shape, sizes: dict[str, int]) -> np.ndarray:
    """Dispatch one launch of a bundle kernel as TVM's WebGPU runtime would: storage buffers by
    binding, then the PODArgs uniform (scalars as i32, packGridDimX as u32), grid from the manifest."""
    import wgpu

    (launch,) = kernel["launches"]
    symbols = {name: sympy.Symbol(name, integer=True) for name in sizes}

    def evaluate(text: str) -> int:
        return int(sympy.sympify(text, locals=symbols).subs({symbols[n]: v for n, v in sizes.items()}))

    value = {field["name"]: evaluate(field["value"]) for field in launch["uniform"]}
    grid = [evaluate(d) for d in launch["grid"]]
    usage = wgpu.BufferUsage
    buffers, output = [], None
    for binding in kernel["bindings"][:-1]:
        if binding["access"] == "read_write":
            output = device.create_buffer(size=int(np.prod(out_shape)) * 4, usage=usage.STORAGE | usage.COPY_SRC)
            buffers.append(output)
        else:
            buffers.append(device.create_buffer_with_data(data=arrays[binding["name"]], usage=usage.STORAGE))
    fields = list(value.values())
    pod = struct.pack(f"<{len(fields) - 1}iI", *fields).ljust(16 * -(-4 * len(fields) // 16), b"\0")
    buffers.append(device.create_buffer_with_data(data=pod, usage=usage.UNIFORM))
    pipeline = device.create_compute_pipeline(
        layout="auto", compute={"module": device.create_shader_module(code=wgsl), "entry_point": kernel["name"]}
    )
    entries = [{"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}} for i, b in enumerate(buffers)]
    encoder = device.create_command_encoder()
    compute = encoder.begin_compute_pass()
    compute.set_pipeline(pipeline)
    compute.set_bind_group(0, device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=entries))
    compute.dispatch_workgroups(*grid)
    compute.end()
    device.queue.submit([encoder.finish()])
    return np.frombuffer(device.queue.read_buffer(output), dtype=np.float32).reshape(out_shape)


def test_an_exported_elementwise_kernel_runs_on_a_cpu_webgpu_adapter_like_numpy(wgpu_device, tmp_path):
    with gk.Graph("tanh") as g:
        x = gk.input("x", ("N", 16))
        w = gk.param("w", np.linspace(-2, 2, 16, dtype="float32"))
        y = gk.tanh(x * w)
    folder = gk.compile(g, y, target="webgpu").export(tmp_path / "bundle")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["symbols"] == ["N"]
    (kernel,) = manifest["kernels"]
    x_value = np.random.default_rng(0).normal(size=(37, 16)).astype("float32")  # 37*16: not whole workgroups
    arrays = {"x": x_value, "w": w.node.attrs["value"]}
    got = run_wgsl_launch(wgpu_device, (folder / kernel["file"]).read_text(), kernel, arrays, (37, 16), {"N": 37})
    np.testing.assert_allclose(got, np.tanh(x_value * arrays["w"]), rtol=1e-5, atol=1e-6)


METAL_STDLIB = """// A stand-in for Metal's <metal_stdlib>: enough for g++ to type-check the C++ core of TVM's MSL.
#pragma once
#include <cmath>
#define kernel
#define device
#define thread
#define threadgroup
#define constant const
typedef unsigned int uint;
struct uint2 { uint x, y; };
struct uint3 { uint x, y, z; };
namespace metal {
enum class mem_flags { mem_none, mem_device, mem_threadgroup };
inline void threadgroup_barrier(mem_flags) {}
using std::exp; using std::log; using std::tanh; using std::sqrt; using std::fabs; using std::pow;
template <class T> T select(T if_false, T if_true, bool condition) { return condition ? if_true : if_false; }
template <class T> T max(T a, T b) { return a > b ? a : b; }
template <class T> T min(T a, T b) { return a < b ? a : b; }
}
"""


@pytest.mark.needs("g++")
def test_every_msl_kernel_type_checks_as_cpp_against_a_stub_metal_stdlib(tmp_path):
    """No Metal compiler runs on Linux; MSL is C++14-based, so g++ with a stub header catches
    C++-level errors (undeclared names, type errors, syntax), not MSL-only rules."""
    (tmp_path / "metal_stdlib").write_text(METAL_STDLIB)
    g, outputs = elementwise_step()
    kernels = split_sources(gk.compile(g, outputs, target="metal").source())
    broken = next(iter(kernels.values())) + "void f() { undeclared_name(); }\n"  # the negative control
    command = ["g++", "-std=c++17", "-fsyntax-only", "-Wno-attributes", f"-I{tmp_path}", "-x", "c++", "-"]
    for name, text in [*kernels.items(), ("broken", broken)]:
        result = subprocess.run(command, input=text, capture_output=True, text=True, timeout=60)
        assert (result.returncode == 0) == (name != "broken"), f"{name}: {result.stderr[:500]}"
