"""Per-kernel profiling of TVM executables: the timing hook and the kernel -> node map.

TVM 0.27's Relax VM has no profiler, but it calls an instrument function before and after every
call instruction; timing the calls of the compiled kernels among them (the rest are VM builtins)
gives the time per kernel. On a GPU the instrument synchronizes the device after each kernel, so a
kernel's time is its own. Kernels are named by TVM (`fused_matmul_add`); `kernel_nodes` maps them
back to the gradkiln nodes they compute by replaying the fusion on the Relax module, whose
bindings carry the node names. The result is the backend-neutral `Profile` of profile.py.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, Iterator, Sequence

import tvm
from tvm import relax, tirx

from ..profile import KernelTotal, Profile, check_repeat
from .calls import calls_op


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
    check_repeat(repeat)
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
    wall_seconds = time.perf_counter() - begin
    measured = [KernelTotal(name, calls, ns / 1e9, nodes.get(name, ())) for name, (calls, ns) in totals.items()]
    return Profile.of(title, measured, wall_seconds, repeat)


def kernel_nodes(
    module: tvm.IRModule, passes: Sequence[tvm.transform.Pass], target: tvm.target.Target, labels: dict[str, str]
) -> dict[str, tuple[str, ...]]:
    """Kernel name -> labels of the nodes it computes. `passes` are the legalization and fusion
    passes the compile ran; `labels` maps Relax binding names to node labels. FuseOps renames the
    binding of a group's last node, so such a node is found as the leftover that reads the group;
    a binding a pass before FuseOps folded into its reader (a transpose a matmul reads in place)
    belongs to the group of that reader."""
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
    _add_packing_bindings(fused, labels, members)
    placed = {v for group in members.values() for v in group} | {v for v, _ in _main_bindings(fused)}
    for leftover in (v for v in reads if v not in placed):
        group = next((g for g, vs in members.items() if reads[leftover] & set(vs)), None)
        if group is not None:
            members[group].append(leftover)
    original = {var: set(_arg_names(value)) for var, value in _main_bindings(module)}
    for folded in (v for v in original if v not in reads):
        group = next((g for g, vs in members.items() if any(folded in original.get(v, ()) for v in vs)), None)
        if group is not None:
            members[group].append(folded)
    return {kernel: tuple(dict.fromkeys(labels[v] for v in vs if v in labels)) for kernel, vs in members.items()}


def _add_packing_bindings(fused: tvm.IRModule, labels: dict[str, str], members: dict[str, list[str]]) -> None:
    """A multi-output node's binding is a tuple left in main (not in any kernel): it belongs to
    the kernels whose results it packs."""
    producer = {var: callee.name_hint for var, value in _main_bindings(fused) if (callee := _callee(value)) is not None}
    for var, value in _main_bindings(fused):
        if var in labels and var not in producer:
            for kernel in dict.fromkeys(producer[a] for a in _arg_names(value) if a in producer):
                members[kernel].append(var)


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
    if calls_op(value, "relax.call_tir"):
        return value.args[0]
    return None


def _arg_names(value: relax.Expr) -> Iterator[str]:
    if isinstance(value, relax.Var):
        yield value.name
    elif isinstance(value, relax.Tuple):
        for field in value.fields:
            yield from _arg_names(field)
    elif isinstance(value, relax.TupleGetItem):
        yield from _arg_names(value.tuple_value)
    elif isinstance(value, relax.Call):
        for arg in value.args:
            yield from _arg_names(arg)
