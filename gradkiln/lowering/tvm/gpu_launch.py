"""How the kernels of a GPU executable are launched, and the WebGPU bundle built from it.

TVM keeps launch dimensions in the host code that calls the kernels, not in the kernel source. We
lower the compiled kernel module as `tvm.compile` does (Relax's GPU pipeline, then the TIR
pipeline), split host from device code, and read every `call_ffi_kernel` of the host functions:
the kernel, its buffers (the storage bindings, in order), its scalar arguments, and its grid and
block extents. Extents are sympy expressions over the symbolic dims (`floor(N/16 + 15/16)`), so a
runtime evaluates them for the bound sizes. A launch inside host loops (a kernel TVM could not
map to threads) lists those loops.

WebGPU's ABI (TVM's `web/src/webgpu.ts`): storage buffers at bindings 0..n-1 in argument order,
then one uniform at binding n holding the scalar arguments and `packGridDimX` (the grid's x
extent); dispatch is `dispatchWorkgroups(grid)`.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import sympy
import tvm
from tvm import relax, tirx
from tvm.tirx.build import split_host_device_mods

from ...atomic import write_atomic
from ...graph import LoweringError
from .calls import calls_op

AXES = ("x", "y", "z")
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    tirx.Add: operator.add,
    tirx.Sub: operator.sub,
    tirx.Mul: operator.mul,
    tirx.FloorDiv: lambda a, b: sympy.floor(a / b),
    tirx.Div: lambda a, b: sympy.floor(a / b),  # index arithmetic: non-negative operands
    tirx.FloorMod: sympy.Mod,
    tirx.Mod: sympy.Mod,
    tirx.Max: sympy.Max,
    tirx.Min: sympy.Min,
}


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the device `kernel` (as named in the source), the `function` of the
    compiled module that launches it, its storage buffers in binding order, its scalar arguments
    (name, value), grid and block extents (x, y, z) and the host loops around it (var, extent).
    Values are sympy expressions in the symbolic dims (integers where static)."""

    kernel: str
    function: str
    buffers: tuple[str, ...]
    scalars: tuple[tuple[str, sympy.Expr], ...]
    grid: tuple[sympy.Expr, ...]
    block: tuple[sympy.Expr, ...]
    loops: tuple[tuple[str, sympy.Expr], ...]

    @property
    def symbols(self) -> set[str]:
        """The names of the symbols the values use (dims, and loop variables where in loops)."""
        values = [*self.grid, *self.block, *(v for _, v in self.scalars), *(e for _, e in self.loops)]
        return {str(s) for v in values for s in v.free_symbols}


def kernel_launches(kernels: tvm.IRModule, target: tvm.target.Target) -> list[Launch]:
    """Every kernel launch of the compiled GPU module `kernels`, in host-code order."""
    with target:
        lowered = relax.get_default_pipeline(target)(kernels)
    prim_funcs = {gvar: f for gvar, f in lowered.functions_items() if isinstance(f, tirx.PrimFunc)}
    host_target = target.host or tvm.target.Target("llvm")  # as tvm.compile defaults it
    tir = tvm.tirx.transform.BindTarget(target.with_host(host_target))(tvm.IRModule(prim_funcs, attrs=lowered.attrs))
    pipeline, _, _ = tvm.tirx.get_default_tir_pipeline(target)
    host, devices = split_host_device_mods(pipeline(tir))
    params = {gvar.name_hint: f.params for module in devices.values() for gvar, f in module.functions_items()}
    return [
        launch
        for gvar, func in host.functions_items()
        if isinstance(func, tirx.PrimFunc)
        for launch in _launches(gvar.name_hint, func.body, params, {}, ())
    ]


def _launches(function: str, stmt: Any, params: dict, lets: dict, loops: tuple) -> Iterator[Launch]:
    """Walk host code in order, tracking let-bound index values and enclosing loops."""
    if isinstance(stmt, tirx.SeqStmt):
        for child in stmt.seq:
            yield from _launches(function, child, params, lets, loops)
        return
    if isinstance(stmt, tirx.Bind):
        try:
            lets[stmt.var.name] = to_sympy(stmt.value, lets)
        except LoweringError:  # a handle, a shape read from a tensor: stays a symbol
            pass
    if isinstance(stmt, tirx.For):
        loops = (*loops, (stmt.loop_var.name, to_sympy(stmt.extent, lets)))
    if isinstance(stmt, tirx.Evaluate) and calls_op(stmt.value, "tirx.call_ffi_kernel"):
        yield _launch(function, stmt.value, params, lets, loops)
    for field in ("body", "then_case", "else_case"):
        child = getattr(stmt, field, None)
        if isinstance(child, tirx.Stmt):
            yield from _launches(function, child, params, lets, loops)


def _launch(function: str, call: Any, params: dict, lets: dict, loops: tuple) -> Launch:
    kernel = call.args[0].value
    kernel_params = params[kernel]
    args = call.args[1 : 1 + len(kernel_params)]
    extents = dict(zip(call.attrs.launch_params, call.args[1 + len(kernel_params) :]))
    buffers = tuple(p.name.removesuffix("_ptr") for p in kernel_params if _is_pointer(p))
    scalars = tuple((p.name, to_sympy(a, lets)) for p, a in zip(kernel_params, args) if not _is_pointer(p))

    def dims(kind: str) -> tuple[sympy.Expr, ...]:
        tags = [f"{kind}.{axis}" for axis in AXES]
        return tuple(to_sympy(extents[tag], lets) if tag in extents else sympy.Integer(1) for tag in tags)

    return Launch(kernel, function, buffers, scalars, dims("blockIdx"), dims("threadIdx"), loops)


def _is_pointer(param: tirx.Var) -> bool:
    return isinstance(param.ty, tvm.ir.PointerType)


def to_sympy(expr: Any, lets: dict[str, sympy.Expr]) -> sympy.Expr:
    """A TIR index expression as sympy, with let-bound variables substituted."""
    if isinstance(expr, tirx.IntImm):
        return sympy.Integer(expr.value)
    if isinstance(expr, tirx.Var):
        return lets.get(expr.name, sympy.Symbol(expr.name, integer=True))
    if isinstance(expr, tirx.Cast):
        return to_sympy(expr.value, lets)
    combine = _BINARY.get(type(expr))
    if combine is None:
        raise LoweringError(f"cannot read launch value {expr} ({type(expr).__name__}) as an index expression")
    return combine(to_sympy(expr.a, lets), to_sympy(expr.b, lets))


def split_sources(source: str) -> dict[str, str]:
    """Kernel name -> its own source, from TVM's dump of a GPU module (kernels follow `// Function:
    NAME` headers; each WGSL or MSL kernel declares its own bindings and structs, so they compile
    one at a time)."""
    parts = re.split(r"^// Function: (\S+)\n(?://-+\n)?", source, flags=re.MULTILINE)
    kernels: dict[str, str] = {}
    for name, text in zip(parts[1::2], parts[2::2]):
        kernels[name] = (kernels.get(name, "") + text).strip() + "\n"
    return kernels


_BINDING = re.compile(r"@group\(0\) @binding\((\d+)\) var<(storage, \w+|uniform)> (\w+) : ([^;]+);")
_WORKGROUP = re.compile(r"@workgroup_size\(([^)]*)\)")


def webgpu_manifest(source: str, launches: list[Launch], arguments: list[str], graph: str) -> dict[str, Any]:
    """The JSON manifest of a WebGPU bundle: per kernel its file, bindings (as declared in its
    WGSL), uniform fields with their values, workgroup size and grid, and every launch of it."""
    kernels = []
    for name, text in split_sources(source).items():
        launches_of = [launch for launch in launches if launch.kernel == name]
        bindings = [
            {"binding": int(b), "name": n.removesuffix("_ptr"), "access": a.replace("storage, ", ""), "type": t}
            for b, a, n, t in _BINDING.findall(text)
        ]
        (workgroup,) = _WORKGROUP.findall(text)
        kernels.append(
            {
                "name": name,
                "file": f"{name}.wgsl",
                "bindings": bindings,
                "workgroup_size": [int(v) for v in workgroup.split(",")],
                "launches": [_launch_record(launch) for launch in launches_of],
            }
        )
    symbols = sorted({name for launch in launches for name in launch.symbols})
    return {
        "format": 1,
        "graph": graph,
        "target": "webgpu",
        "arguments": arguments,
        "symbols": symbols,
        "kernels": kernels,
    }


def _launch_record(launch: Launch) -> dict[str, Any]:
    """A launch as JSON: values as sympy strings (`floor(N/16 + 15/16)`; parse them with the
    manifest's `symbols` as local names, since sympy reads a bare `N` as its N() function)."""
    scalars = [*launch.scalars, ("packGridDimX", launch.grid[0])]
    return {
        "function": launch.function,
        "buffers": list(launch.buffers),
        "uniform": [{"name": name, "value": str(value)} for name, value in scalars],
        "grid": [str(d) for d in launch.grid],
        "workgroup_size": [str(d) for d in launch.block],
        "loops": [{"var": var, "extent": str(extent)} for var, extent in launch.loops],
    }


def write_webgpu_bundle(folder: Path, source: str, manifest: dict[str, Any]) -> Path:
    """Write one `.wgsl` file per kernel and `manifest.json` (last) into `folder`, each atomically."""
    sources = split_sources(source)
    for kernel in manifest["kernels"]:
        write_atomic(folder / kernel["file"], sources[kernel["name"]].encode())
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1).encode())
    return folder
