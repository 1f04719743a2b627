"""How numpy arrays cross into and out of the Relax VM on the CPU without copies.

In: TVM's kernels assume 64-byte-aligned arguments (AVX-512 aligned loads, which crash on numpy's
16-byte-aligned data), so passing numpy memory used to need a copy into an aligned buffer per call.
Our CPU TIR pipeline (`tvm.schedules.common.CPU_TIR_PIPELINE`) runs `element_aligned_arguments`, which lowers
the alignment each kernel promises LLVM about its arguments to the element's, so any
C-contiguous array is passed as it is (unaligned vector loads cost the same on aligned data).

Out: a kernel's result is a new buffer per call, which numpy takes over without a copy. An output
that aliases memory living past the call (an argument, a constant, or a view of one, such as a
reshape, which the VM makes without copying) is copied, so the caller never writes into a
compiled constant or receives its own input.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tvm
import tvm_ffi
from tvm import relax, tirx

from .calls import calls_op

STORAGE_ALIGNMENT = "storage_alignment"  # the attribute MakePackedAPI puts on each argument's data pointer
FRESH_OPS = ("relax.call_tir", "relax.call_dps_packed")  # each call allocates its results


def _element_aligned(stmt: tirx.AttrStmt) -> tirx.AttrStmt:
    if stmt.attr_key != STORAGE_ALIGNMENT:
        return stmt
    return tirx.AttrStmt(stmt.node, stmt.attr_key, tirx.IntImm("int32", 1), stmt.body)


@tirx.transform.prim_func_pass(opt_level=0, name="ElementAlignedArguments")
def element_aligned_arguments(func: tirx.PrimFunc, _mod: tvm.IRModule, _ctx: Any) -> tirx.PrimFunc:
    """Promise LLVM only element alignment of the arguments (alignment 1 makes LLVM use the
    element type's own)."""
    return tvm_ffi.structural_map(func, [(tirx.AttrStmt, _element_aligned)])


def cpu_arguments(arrays: Sequence[np.ndarray]) -> list[Any]:
    """The arrays as VM arguments, numpy's own memory where it can be lent (writable, with the
    compact row-major strides TVM checks), copies otherwise. Only for modules built with
    `element_aligned_arguments`."""
    return [tvm_ffi.from_dlpack(a) if a.flags.writeable and _compact(a) else tvm.runtime.tensor(a) for a in arrays]


def _compact(array: np.ndarray) -> bool:
    """Whether the strides are exactly row-major. numpy also calls an array with an axis of
    extent 0 or 1 contiguous whatever that axis' stride, which TVM refuses."""
    stride, expected = array.itemsize, []
    for extent in reversed(array.shape):
        expected.append(stride)
        stride *= extent
    return array.strides == tuple(reversed(expected))


def fresh_outputs(module: tvm.IRModule) -> list[bool]:
    """For each output of `main` (a tuple), whether the VM allocates it anew on each call."""
    main = relax.transform.RewriteDataflowReshape()(module)["main"]  # the reshapes the VM makes views
    bound = {b.var: b.value for block in main.body.blocks for b in block.bindings}

    def resolve(expr: relax.Expr) -> relax.Expr:
        while isinstance(expr, relax.Var) and expr in bound:
            expr = bound[expr]
        return expr

    def fresh(expr: relax.Expr) -> bool:
        expr = resolve(expr)
        if isinstance(expr, relax.TupleGetItem):
            return fresh(expr.tuple_value)
        return calls_op(expr, *FRESH_OPS)

    result = resolve(main.body.body)
    return [fresh(field) for field in result.fields]


def numpy_results(results: Sequence[Any], fresh: Sequence[bool]) -> list[np.ndarray]:
    """The VM's results as numpy arrays: taken over where `fresh` (a CPU result this call
    allocated), copied otherwise (an alias, or a result in GPU memory)."""
    return [np.from_dlpack(r) if new else r.numpy() for r, new in zip(results, fresh)]
