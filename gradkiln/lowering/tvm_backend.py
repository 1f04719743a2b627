"""The TVM backend: graph -> Relax IRModule (one emitter per op) -> llvm or GPU executable -> Relax VM.

Graph inputs and params become parameters of the Relax function `main`, with symbolic dims as TIR
variables, so one compiled module serves every batch size; constants become Relax constants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import sympy
import tvm
from tvm import relax
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

from ..atomic import write_atomic_with
from ..graph import GradkilnError, Graph, LoweringError, Node, TensorType, UnsupportedOpError, Value
from .anomaly import anomaly_enabled, check_in_order
from .cache import CompileCache, cache_key, cache_root
from .executable import Executable
from .gpu_launch import Launch, kernel_launches, webgpu_manifest, write_webgpu_bundle
from .profile import Profile
from .tvm_arguments import cpu_arguments, fresh_outputs, numpy_results
from .tvm_dims import DimConverter
from .tvm_emit_context import EMITTERS, EmitContext, Emitter
from .tvm_emitters import emit_constant  # also fills EMITTERS with every family
from .tvm_profile import kernel_nodes, profile_vm
from .tvm_quiet import tvm_section
from .tvm_reductions import check_nonempty, nonempty_checks
from .tvm_schedule_rules import schedule_kernels
from .tvm_schedules import CPU_TIR_PIPELINE, build_pipeline, fuse_kernels
from .tvm_targets import device_module, fusion_passes, gpu_kernels, resolve_target
from .tvm_vector_math import vector_math


def condense(err: BaseException) -> str:
    """The first meaningful line of an error (TVM messages can carry pages of C++ backtrace)."""
    lines = [line.strip() for line in str(err).splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(("Traceback", "File ", "[bt]"))]
    if not meaningful:
        return type(err).__name__
    first = " ".join(meaningful[:2]) if meaningful[0].endswith(":") else meaningful[0]
    return f"{type(err).__name__}: {first[:300]}"


def emitter_for(node: Node) -> Emitter:
    """The emitter of the node's op, or an UnsupportedOpError saying how to register one."""
    if node.op == "constant":
        return emit_constant
    if node.op not in EMITTERS:
        raise UnsupportedOpError(
            f"op {node.op!r} (node {node.label}) has no TVM emitter; register one with "
            f"@gradkiln.lowering.tvm_emitters.register_emitter({node.op!r})"
        )
    return EMITTERS[node.op]


@tvm_section()  # BlockBuilder keeps its function stack in a class attribute: one build at a time
def build_module(
    graph: Graph, params: dict[Value, str], nodes: Sequence[Node], outputs: Sequence[Value], target: str
) -> Any:
    """A Relax IRModule whose `main` takes `params` (value -> parameter name), computes `nodes` in
    order and returns the tuple of `outputs`. Emitting errors name the failing node and `target`."""
    bb = relax.BlockBuilder()
    ctx = EmitContext(bb, DimConverter(), lambda ctx, node, args: _emit_node(ctx, node, args, target))
    env: dict[Value, relax.Expr] = {}
    for value, name in params.items():
        ty = graph.type_of(value)
        env[value] = relax.Var(name, relax.TensorType(ctx.dim.shape(ty.shape), ty.dtype))
    try:
        with bb.function("main", list(env.values())):
            with bb.dataflow():
                for node in nodes:
                    env.update(ctx.emit_node(ctx, node, [env[v] for v in node.inputs]))
                result = bb.emit_output(relax.Tuple([env[v] for v in outputs]))
            bb.emit_func_output(result)
    except BaseException:  # close what TVM's scopes leave open, or its destructor logs "remaining blocks"
        bb._end_block()
        bb.end_scope()
        raise
    return bb.get()


def _emit_node(ctx: EmitContext, node: Node, args: list[relax.Expr], target: str) -> dict[Value, relax.Expr]:
    emitter = _empty if all(0 in ty.shape for ty in node.types) else emitter_for(node)
    try:
        expr = emitter(ctx, node, args)
        expr = expr if isinstance(expr, relax.Var) else ctx.bb.emit(expr, name_hint=binding_name(node))
    except GradkilnError:
        raise
    except Exception as err:  # TVM's own error, reported with the node that raised it
        raise LoweringError(f"cannot lower {describe(node)} for {target}: {condense(err)}") from err
    if len(node.types) == 1:
        return {node.outputs[0]: _with_known_shape(ctx, expr, node.types[0])}
    return {v: ctx.bb.emit(relax.TupleGetItem(expr, v.index)) for v in node.outputs}


def _empty(ctx: EmitContext, node: Node, args: list[relax.Expr]) -> relax.Expr:
    """The outputs of a node that has no elements to compute (a zero in every output's static
    shape), made without its emitter: TVM's lowerings of shape ops read a 0 in a new shape as
    "copy this dim" (reshape to (0, 5) of a (2, 0) array failed, squeeze of (1, 0) too) and some
    divide by a zero extent (cumprod along an empty axis)."""
    empties = [R.builtin.alloc_tensor(relax.ShapeExpr(ctx.dim.shape(ty.shape)), ty.dtype, 0) for ty in node.types]
    return empties[0] if len(empties) == 1 else relax.Tuple(empties)


def _with_known_shape(ctx: EmitContext, expr: relax.Var, ty: TensorType) -> relax.Var:
    """`expr`, cast to its gradkiln type where Relax's shape is unknown or not provably the same
    (after a slice with a symbolic stop, for instance). Relax then sees equal dims written alike
    downstream, which broadcasting and TE lowering need; the VM checks the cast at run time."""
    shape = ctx.dim.shape(ty.shape)
    known = expr.ty.shape
    if isinstance(known, relax.ShapeExpr) and all(map(ctx.analyzer.can_prove_equal, known.values, shape)):
        return expr
    return ctx.bb.match_cast(expr, relax.TensorType(shape, ty.dtype))


def binding_name(node: Node) -> str:
    """The Relax variable name of a node's result: its name, or op and id when it has none. TVM
    keeps these names through legalization and fusion, which maps kernels back to nodes."""
    return node.name or f"{node.op}_{node.id}"


def check_bindable(sources: Sequence[Node], target: str) -> None:
    """The VM binds a symbol only from a dim that is exactly that symbol (`N`, not `2*N`), in the
    shape of some input or param; say so before TVM fails with an obscure message."""
    types = [n.types[0] for n in sources]
    plain = {d for t in types for d in t.shape if isinstance(d, sympy.Symbol)}
    unbound = sorted(map(str, set().union(*(t.symbols for t in types)) - plain))
    if unbound:
        raise LoweringError(
            f"cannot compile for {target}: symbolic dims {unbound} appear in input shapes only inside "
            "expressions; give some input a dim that is exactly the symbol so it can be bound at call time"
        )


def _no_sync() -> None:
    """CPU kernels finish before their call returns: nothing to wait for."""


def describe(node: Node) -> str:
    """`%label = op(f32[N,4], ...)`: how errors name a node."""
    shapes = ", ".join(str(node.graph.type_of(v)) for v in node.inputs)
    return f"{node.label} = {node.op}({shapes})"


class TVMExecutable(Executable):
    """A graph compiled by TVM for the host CPU or a GPU target, run on the Relax virtual machine.

    `.module` is the Relax IRModule before compilation. On llvm the module is legalized and fused
    (FuseOps/FuseTIR), then, with `schedule=True` (the default), its kernels get our CPU schedules
    (`tvm_schedules`: tiled, vectorized, parallel matmuls and convolutions); `schedule=False` keeps
    TVM's default loop nests, for comparison. `.kernels` is the module that was compiled, `.scheduled` names each
    scheduled kernel's rule; the scheduled build also lowers float32 exp, log, tanh, sigmoid, sin,
    cos and erf to vectorizable polynomials (`tvm_vector_math`, within 3 ulp).
    GPU targets (`tvm_targets.GPU_KINDS`) compile with TVM's own pipeline
    (fusion, then dlight schedules) and run only where the device exists.

    `cache=True` (or a folder) keeps the compiled library in the compile cache (`cache.py`) and
    loads it on the next compile of the same graph, target and options; `.cache_hit` says whether
    this one was loaded. Off by default: storing costs a link (~0.5 s) that one-off compiles never
    win back. `.profile(feeds)` times each kernel. `detect_anomaly=True` (or `gk.detect_anomaly()`)
    runs an instrumented build that returns every value and names the first node with a NaN or Inf.
    """

    def __init__(
        self,
        graph: Graph,
        outputs: Any,
        target: Any = "llvm",
        schedule: bool = True,
        cache: bool | str | os.PathLike[str] = False,
        detect_anomaly: bool = False,
    ) -> None:
        super().__init__(graph, outputs)
        self.detect_anomaly = detect_anomaly
        self._instrumented: tuple[list[Value], Any] | None = None  # (every value, its VM), built when needed
        self.spec = resolve_target(target)
        self.target = self.spec.kind
        self.target_options = self.spec.options
        self.schedule = schedule and not self.spec.is_gpu
        os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count()))  # TVM's pool defaults to half the cores
        sources = self.input_nodes + self.param_nodes
        self.nodes = [graph.node(i) for i in self.node_ids if graph.node(i).op not in ("input", "param")]
        check_bindable(sources, self.spec.label)
        self._params = {n.outputs[0]: n.name for n in sources}
        self.module = build_module(graph, self._params, self.nodes, self.output_values, self.spec.label)
        self._nonempty = nonempty_checks(self.nodes)  # max, argmax, ... over symbolic axes: refused when empty
        self.cache_hit, self._cached_library = False, None
        self.compiled = self._load_or_compile(cache)
        self._fresh = [False] * len(self.output_values) if self.spec.is_gpu else fresh_outputs(self.kernels)
        device = self.spec.device()
        self.vm = relax.VirtualMachine(self.compiled, device) if device.exist else None
        self._vm_lock = threading.Lock()  # the Relax VM keeps per-call state: concurrent calls crash it

    def source(self) -> str:
        """The generated kernel source on GPU targets (CUDA C, MSL, WGSL, OpenCL C); the Relax
        IRModule as TVMScript on llvm, whose kernels are machine code."""
        if not self.spec.is_gpu:
            return self.module.script()
        return device_module(self.compiled, self.target).inspect_source()

    @tvm_section()
    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the compiled module to `path` (`.so`, or `.tar` of objects for cross targets),
        atomically. Load it with `tvm.runtime.load_module` and run it with
        `tvm.runtime.vm.VirtualMachine`, passing tensors in `.argument_names` order: no gradkiln needed.
        On webgpu a `path` without suffix is a folder that gets the WGSL bundle: one `.wgsl` per
        kernel and `manifest.json` (bindings, uniforms, workgroup sizes, grids; `gpu_launch.py`)."""
        path = Path(path)
        if self.target == "webgpu" and not path.suffix:
            manifest = webgpu_manifest(self.source(), self.launches(), self.argument_names, self.graph.name)
            return write_webgpu_bundle(path, self.source(), manifest)
        if path.suffix not in self.spec.suffixes:
            folder = " or a folder (the WGSL bundle)" if self.target == "webgpu" else ""
            raise LoweringError(
                f"cannot export {self.spec.label} to {path.name}: use a {' or '.join(self.spec.suffixes)} file{folder}"
            )
        try:
            if self._cached_library is not None and path.suffix == ".so":  # the cached file is that library
                return write_atomic_with(path, lambda tmp: shutil.copyfile(self._cached_library, tmp))
            compiled = self._build(self.module)[0] if self.cache_hit else self.compiled  # a loaded library
            return write_atomic_with(path, lambda tmp: compiled.export_library(str(tmp)))
        except Exception as err:
            raise LoweringError(f"exporting {self.spec.label} to {path} failed: {condense(err)}") from err

    @tvm_section()
    def launches(self) -> list[Launch]:
        """How each GPU kernel is launched: buffers, scalar arguments, grid and block extents (as
        expressions in the symbolic dims), read from the host code TVM generates."""
        if not self.spec.is_gpu:
            raise LoweringError(
                f"{self.spec.label} kernels are functions called on the CPU: launches exist on GPU targets"
            )
        try:
            return kernel_launches(self.kernels, self.spec.target)
        except GradkilnError:
            raise
        except Exception as err:  # TVM's lowering of the host code
            raise LoweringError(f"reading the kernel launches for {self.spec.label} failed: {condense(err)}") from err

    def run(self, feeds: dict[str, np.ndarray], bindings: dict[sympy.Symbol, int]) -> Sequence[np.ndarray]:
        check_nonempty(self._nonempty, bindings)
        if self.detect_anomaly or anomaly_enabled():
            return self._run_checked(feeds)
        return self._call(self.vm, feeds, self._fresh)

    def _arguments(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        """The VM's arguments: numpy's own memory on the CPU (`tvm_arguments`), copies on a GPU."""
        arrays = [feeds[name] for name in self.argument_names]
        if not self.spec.is_gpu:
            return cpu_arguments(arrays)
        device = self.spec.require_device()
        return [tvm.runtime.tensor(array, device) for array in arrays]

    def _call(self, vm: Any, feeds: dict[str, np.ndarray], fresh: list[bool]) -> list[np.ndarray]:
        """Run `vm` on the feeds; the results that are `fresh` (allocated by this call, on the CPU)
        are handed to numpy without a copy."""
        args = self._arguments(feeds)
        try:
            with self._vm_lock:
                return numpy_results(vm["main"](*args), fresh)
        except Exception as err:  # a failed run-time check of the VM, e.g. a shape it could not bind
            raise LoweringError(
                f"running graph '{self.graph.name}' on {self.spec.label} failed: {condense(err)}"
            ) from err

    def _run_checked(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Anomaly detection on TVM: an instrumented build returns every value, which is checked
        node by node in order (`anomaly.check_in_order`); built on first use."""
        if self._instrumented is None:
            every = [v for node in self.nodes for v in node.outputs]
            module = build_module(self.graph, self._params, self.nodes, every, self.spec.label)
            self._instrumented = every, relax.VirtualMachine(self._build(module)[0], self.spec.require_device())
        every, vm = self._instrumented
        values = dict(zip(every, self._call(vm, feeds, [False] * len(every))))
        values.update({n.outputs[0]: feeds[n.name] for n in self.input_nodes + self.param_nodes})
        check_in_order(self.nodes, values)
        return [values[v] for v in self.output_values]

    def profile(self, feeds: dict[str, Any] | None = None, repeat: int = 10, **kwargs: Any) -> Profile:
        """Run the graph `repeat` times (after one warm-up run) on a VM that times every kernel call,
        and report the time per kernel, the hottest first, each with the nodes it computes."""
        arrays, _ = self.check_feeds(dict(feeds or {}) | kwargs)
        device = self.spec.require_device()
        args = self._arguments(arrays)
        vm = relax.VirtualMachine(self.compiled, device)  # its own VM: calls on `.vm` are not slowed
        labels = {binding_name(n): n.label for n in self.nodes}
        nodes = kernel_nodes(self.module, fusion_passes(self.spec), self.spec.target, labels)
        title = f"'{self.graph.name}' on {self.spec.label}"
        return profile_vm(vm, args, self.kernels, nodes, repeat, title, device.sync if self.spec.is_gpu else _no_sync)

    @tvm_section()  # TVM's loads and exports log to stderr; tvm_quiet drops its lines
    def _load_or_compile(self, cache: bool | str | os.PathLike[str]) -> Any:
        """The compiled module: from the compile cache when `cache` names one and holds it (then
        `.cache_hit`), else compiled now (and stored in the cache, if any)."""
        root = cache_root(cache)
        if root is None:
            return self._compile()
        if not self.spec.loads_libraries:
            raise LoweringError(
                f"cache={cache!r}: the compile cache keeps libraries this machine can load, and a "
                f"{self.spec.label} library does not load here ({self.spec.why_no_load}); compile with cache=False"
            )
        store = CompileCache(root)
        emitters = {emitter_for(node) for node in self.nodes}
        options = {"schedule": self.schedule, "tir_pipeline": CPU_TIR_PIPELINE}
        key = cache_key(self.graph, self.node_ids, self.output_values, str(self.spec.target), options, emitters)
        hit = store.load(key)
        if hit is not None:
            self.kernels, self.scheduled, self._cached_library = hit.kernels, hit.scheduled, hit.library_path
            self.cache_hit = True
            return hit.library
        compiled = self._compile()
        store.store(key, compiled, self.kernels, self.scheduled, self.spec.label)
        return compiled

    def _compile(self) -> Any:
        try:
            executable, self.kernels, self.scheduled = self._build(self.module)
        except Exception as err:
            raise self._blame(err) from err
        return executable

    @tvm_section()
    def _build(self, module: Any) -> tuple[Any, Any, dict[str, str]]:
        """The VM executable of `module`, the fused (and scheduled) module it was built from, and
        the schedule rule applied to each kernel. GPU targets take TVM's whole pipeline, dlight included."""
        if self.spec.is_gpu:
            kernels = gpu_kernels(module, self.spec.target)
            return tvm.compile(kernels, target=self.spec.target), kernels, {}
        kernels, scheduled = fuse_kernels(module, self.spec.target), {}
        if self.schedule:
            kernels, scheduled = schedule_kernels(kernels, self.spec.target)
        with vector_math() if self.schedule else contextlib.nullcontext():
            compiled = tvm.compile(
                kernels, target=self.spec.target, relax_pipeline=build_pipeline(), tir_pipeline=CPU_TIR_PIPELINE
            )
        return compiled, kernels, scheduled

    def _blame(self, err: Exception) -> LoweringError:
        """Name the node that breaks compilation: bisect for the shortest prefix of the schedule
        (returning every value it computes) that fails to compile. Runs only on the error path."""
        good, bad = 0, len(self.nodes)
        while bad - good > 1:
            middle = (good + bad) // 2
            prefix = self.nodes[:middle]
            outputs = [v for node in prefix for v in node.outputs]
            try:
                self._build(build_module(self.graph, self._params, prefix, outputs, self.spec.label))
                good = middle
            except Exception as prefix_err:
                bad, err = middle, prefix_err
        return LoweringError(f"cannot compile {describe(self.nodes[bad - 1])} for {self.spec.label}: {condense(err)}")
