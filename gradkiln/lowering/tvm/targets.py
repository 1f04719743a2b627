"""The TVM targets gradkiln compiles for, in one table: what each kind compiles to, where it runs,
and which artifact `.export()` writes for it.

llvm ("cpu") gets our CPU schedules; the GPU kinds go through TVM's own GPU pipeline (LegalizeOps,
FuseOps, FuseTIR, then dlight schedules). GPU modules compile on any machine; running them needs
the device. Metal and WebGPU hosts are cross targets (an arm64 Mac, wasm32), so their artifacts
are archives of objects (`.tar`) for the deployment machine to link.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax, tirx
from tvm.s_tir import dlight as dl

from ...graph import LoweringError
from .schedules.common import cpu_fusion_passes

LLVM_KINDS = ("llvm", "cpu")


@dataclass(frozen=True)
class GPUKind:
    """A GPU target kind: its display name, host defaults and the artifact suffixes `.export` takes."""

    name: str
    host: dict[str, str] | None
    suffixes: tuple[str, ...]


GPU_KINDS: dict[str, GPUKind] = {
    "cuda": GPUKind("CUDA", None, (".so", ".tar")),
    "opencl": GPUKind("OpenCL", None, (".so", ".tar")),
    "metal": GPUKind("Metal", {"kind": "llvm", "mtriple": "arm64-apple-macos", "mcpu": "apple-m1"}, (".tar",)),
    "webgpu": GPUKind("WebGPU", {"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"}, (".tar",)),
}


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target: its kind ("llvm" or a GPU kind), the options it was built from, the TVM
    target and a label for messages."""

    kind: str
    options: dict[str, Any]
    target: tvm.target.Target
    label: str

    @property
    def is_gpu(self) -> bool:
        """Whether TVM's GPU pipeline (dlight) compiles for this target rather than our CPU schedules."""
        return self.kind in GPU_KINDS

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The file suffixes `.export()` writes for this target, the preferred one first."""
        return GPU_KINDS[self.kind].suffixes if self.is_gpu else (".so", ".tar")

    @property
    def loads_libraries(self) -> bool:
        """Whether a library compiled for this target loads in this process (what the compile cache
        needs): llvm always; cuda and opencl where the device (and so TVM's runtime for it) exists;
        never metal and webgpu, whose libraries are objects for another machine to link."""
        return not self.why_no_load

    @property
    def why_no_load(self) -> str:
        """Why a library for this target does not load here ("" when it does)."""
        if not self.is_gpu:
            return ""
        if GPU_KINDS[self.kind].host is not None:
            return f"it is an archive of objects for {GPU_KINDS[self.kind].host['mtriple']}"
        return "" if self.device().exist else f"this machine has no {GPU_KINDS[self.kind].name} device"

    def device(self) -> tvm.runtime.Device:
        """The first device of this kind (it may not exist: check `.exist`)."""
        return tvm.runtime.device("cpu" if self.kind == "llvm" else self.kind, 0)

    def require_device(self) -> tvm.runtime.Device:
        """The device, or a LoweringError saying there is none and what still works."""
        device = self.device()
        if not device.exist:
            name = GPU_KINDS[self.kind].name
            raise LoweringError(f"no {name} device on this machine; .source() and .export() still work")
        return device


def target_options(target: Any) -> dict[str, Any]:
    """The llvm target dict for `target` ("llvm", "cpu" or a dict with kind llvm, merged over the
    defaults): the host CPU's instruction set (LLVM 22 rejects mcpu=native) and all its cores."""
    defaults = {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": os.cpu_count()}
    if isinstance(target, dict) and target.get("kind", "llvm") in LLVM_KINDS:
        return defaults | target | {"kind": "llvm"}
    if target in LLVM_KINDS:
        return defaults
    raise LoweringError(f"target {target!r} is not an llvm (CPU) target")


def resolve_target(target: Any) -> TargetSpec:
    """The TargetSpec of a target name ("llvm", "cpu", "cuda", "metal", "webgpu", "opencl") or
    dict (`{"kind": "cuda", "arch": "sm_90"}`; a GPU dict may name its own "host")."""
    kind = target.get("kind") if isinstance(target, dict) else target
    if kind in LLVM_KINDS:
        options = target_options(target)
        return TargetSpec("llvm", options, tvm.target.Target(options), f"llvm (mcpu={options['mcpu']})")
    if kind not in GPU_KINDS:
        raise LoweringError(f"unknown TVM target {target!r}; available: {', '.join(LLVM_KINDS + tuple(GPU_KINDS))}")
    options = dict(target) if isinstance(target, dict) else {"kind": kind}
    host = options.pop("host", GPU_KINDS[kind].host)
    try:
        tvm_target = tvm.target.Target(options, host=host) if host else tvm.target.Target(options)
    except Exception as err:
        raise LoweringError(f"invalid {kind} target {target!r}: {err}") from err
    arch = f" ({options['arch']})" if "arch" in options else ""
    return TargetSpec(kind, options, tvm_target, f"{kind}{arch}")


def gpu_fusion_passes() -> list[tvm.transform.Pass]:
    """The start of TVM's GPU pipeline: legalization and fusion, before dlight schedules."""
    return [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def fusion_passes(spec: TargetSpec) -> list[tvm.transform.Pass]:
    """The legalization and fusion passes that make the kernels of `spec`'s target (the same list
    `tvm.schedules.common.fuse_kernels` runs on llvm)."""
    if spec.is_gpu:
        return gpu_fusion_passes()
    return cpu_fusion_passes(spec.target)


def device_module(module: Any, kind: str) -> Any:
    """The `kind` device module (CUDA C, MSL, WGSL, OpenCL C) imported somewhere under a compiled
    executable or a library loaded from disk."""
    pending = [getattr(module, "mod", module)]
    while pending:
        current = pending.pop()
        if current.kind == kind:
            return current
        pending.extend(current.imports)
    raise LoweringError(f"the compiled module holds no {kind} device code")


def gpu_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """`mod` legalized, fused and scheduled by dlight as TVM's GPU pipeline does, except that a
    dlight rule that crashes on a kernel (Reduction's rfactor does on a mean over a symbolic
    batch in TVM 0.27) is skipped for the next rule instead of failing the whole compile.
    `tvm.compile` then lowers the result, leaving the scheduled kernels alone."""
    with target:
        fused = tvm.ir.transform.Sequential(gpu_fusion_passes())(mod)
        functions = {
            gvar: _dlight_schedule(func, target) if isinstance(func, tirx.PrimFunc) else func
            for gvar, func in fused.functions_items()
        }
    return tvm.IRModule(functions, attrs=fused.attrs, global_infos=fused.global_infos)


def _dlight_schedule(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc:
    rules = (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    for rule in rules:
        try:
            sch = rule.apply(func, target, False)
        except Exception:  # a TVM bug in this rule for this kernel: the next rule is more general
            continue
        if sch is not None:
            sch = sch[0] if isinstance(sch, list) else sch
            return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return func
