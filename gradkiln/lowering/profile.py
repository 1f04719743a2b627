"""Per-kernel profiling of TVM executables.

TVM 0.27's Relax VM has no profiler, but it calls an instrument function before and after every
call instruction; timing the calls of the compiled kernels among them (the rest are VM builtins)
gives the time per kernel. On a GPU the instrument synchronizes the device after each kernel, so a
kernel's time is its own. Kernels are named by TVM (`fused_matmul_add`); `kernel_nodes` maps them
back to the gradkiln nodes they compute by replaying the fusion on the Relax module, whose
bindings carry the node names.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import tvm
from tvm import relax, tirx

from ..graph import LoweringError


@dataclass(frozen=True)
class KernelTime:
    """One kernel: calls per run, time per run (all calls together), its share of the time in
    kernels, and the nodes (labels) whose results it computes."""

    kernel: str
    calls: int
    seconds: float
    share: float
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """Time per kernel of one executable, the hottest first; `run_seconds` is the wall time of a
    whole instrumented run (kernels plus VM work), averaged over `repeat` runs."""

    title: str
    rows: tuple[KernelTime, ...]
    run_seconds: float
    repeat: int

    @property
    def kernel_seconds(self) -> float:
        return sum(row.seconds for row in self.rows)

    def __getitem__(self, kernel: str) -> KernelTime:
        for row in self.rows:
            if row.kernel == kernel:
                return row
        raise KeyError(f"no kernel {kernel!r} in the profile; kernels: {[r.kernel for r in self.rows]}")

    def __str__(self) -> str:
        width = max([len(row.kernel) for row in self.rows] + [6])
        lines = [
            f"profile of {self.title}: {self.repeat} runs, {_ms(self.run_seconds)} per run, "
            f"{_ms(self.kernel_seconds)} in {len(self.rows)} kernels",
            f"{'kernel':<{width}}  calls      time   share  nodes",
        ]
        for row in self.rows:
            nodes = ", ".join(row.nodes) or "-"
            lines.append(f"{row.kernel:<{width}}  {row.calls:>5}  {_ms(row.seconds):>8}  {row.share:>5.1%}  {nodes}")
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def profile_vm(
    vm: relax.VirtualMachine,
    args: Sequence[Any],
    kernels: tvm.IRModule,
    nodes: dict[str, tuple[str, ...]],
    repeat: int,
    title: str,
    sync: Callable[[], None] = lambda: None,
) -> Profile:
    """Time each call of a PrimFunc of `kernels` while `vm` runs `main(*args)` `repeat` times,
    after one untimed warm-up run; `sync` waits for the device (a no-op on the CPU)."""
    if repeat < 1:
        raise LoweringError(f"profile(repeat={repeat}): repeat must be at least 1")
    names = {gvar.name_hint for gvar, func in kernels.functions_items() if isinstance(func, tirx.PrimFunc)}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kernel -> [calls, nanoseconds]
    started: dict[str, int] = {}

    def instrument(_func: Any, symbol: str, before: bool, _result: Any, *_args: Any) -> int:
        if symbol in names:
            if before:
                sync()
                started[symbol] = time.perf_counter_ns()
            else:
                sync()
                totals[symbol][0] += 1
                totals[symbol][1] += time.perf_counter_ns() - started[symbol]
        return 0  # VMInstrumentReturnKind.NO_OP: run the call

    vm["main"](*args)
    vm.set_instrument(instrument)
    begin = time.perf_counter()
    for _ in range(repeat):
        vm["main"](*args)
    sync()
    run_seconds = (time.perf_counter() - begin) / repeat
    in_kernels = sum(ns for _, ns in totals.values()) or 1
    rows = [
        KernelTime(name, calls // repeat, ns / 1e9 / repeat, ns / in_kernels, nodes.get(name, ()))
        for name, (calls, ns) in totals.items()
    ]
    return Profile(title, tuple(sorted(rows, key=lambda r: -r.seconds)), run_seconds, repeat)


def kernel_nodes(
    module: tvm.IRModule, passes: Sequence[tvm.transform.Pass], target: tvm.target.Target, labels: dict[str, str]
) -> dict[str, tuple[str, ...]]:
    """Kernel name -> labels of the nodes it computes. `passes` are the legalization and fusion
    passes the compile ran; `labels` maps Relax binding names to node labels. FuseOps renames the
    binding of a group's last node, so such a node is found as the leftover that reads the group."""
    names = [p.info.name for p in passes]
    if "FuseOps" not in names:
        return {}
    cut = names.index("FuseOps")
    with target:
        unfused = tvm.ir.transform.Sequential(list(passes[:cut]))(module)
        fused = passes[cut](unfused)
    reads = {var: set(_arg_names(value)) for var, value in _main_bindings(unfused)}
    members: dict[str, list[str]] = defaultdict(list)
    for var, value in _main_bindings(fused):
        callee = _callee(value)
        if callee is not None:
            func = fused[callee]
            inner = [v for v, _ in _bindings(func)] if isinstance(func, relax.Function) else [var]
            members[callee.name_hint].extend(inner)
    placed = {v for group in members.values() for v in group} | {v for v, _ in _main_bindings(fused)}
    for leftover in (v for v in reads if v not in placed):
        group = next((g for g, vs in members.items() if reads[leftover] & set(vs)), None)
        if group is not None:
            members[group].append(leftover)
    return {kernel: tuple(dict.fromkeys(labels[v] for v in vs if v in labels)) for kernel, vs in members.items()}


def _bindings(func: relax.Function) -> Iterator[tuple[str, relax.Expr]]:
    for block in func.body.blocks:
        for binding in block.bindings:
            yield binding.var.name, binding.value


def _main_bindings(module: tvm.IRModule) -> Iterator[tuple[str, relax.Expr]]:
    return _bindings(module["main"])


def _callee(value: relax.Expr) -> tvm.ir.GlobalVar | None:
    """The kernel (PrimFunc or fused function) a binding calls, if it calls one."""
    if not isinstance(value, relax.Call):
        return None
    if isinstance(value.op, tvm.ir.GlobalVar):
        return value.op
    if isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.call_tir":
        return value.args[0]
    return None


def _arg_names(value: relax.Expr) -> Iterator[str]:
    if isinstance(value, relax.Var):
        yield value.name
    elif isinstance(value, relax.Tuple):
        for field in value.fields:
            yield from _arg_names(field)
    elif isinstance(value, relax.Call):
        for arg in value.args:
            yield from _arg_names(arg)
