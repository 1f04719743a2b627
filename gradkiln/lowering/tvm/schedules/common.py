"""CPU schedules for the kernels of a legalized, fused Relax module (TVM 0.27 schedules none on CPU).

`fuse_kernels` runs TVM's legalization and fusion (each op becomes a PrimFunc, neighbours merge);
`schedule_kernels` (rules.py) then rewrites each PrimFunc with the first rule of `RULES` that applies:

- matmul-like kernels (a reduction block with spatial iterators (b,) i, j and one reduction
  iterator k, whatever the function is called), with whatever the fusion put around it: producers
  such as a transpose are inlined into the matmul, epilogues such as bias add, relu or the relu
  mask of the backward pass are computed per tile from the accumulators. A tile is rows x two
  vectors of accumulators in registers, vectorized along j for the host's `mcpu`, tiles in
  parallel; a symbolic batch dim is padded to whole tiles;
- convolutions with a tiny output tile and a long innermost reduction (weight gradients): that
  reduction split into vector lanes (rfactor), lanes summed per tile;
- spatial reductions such as convolutions, their gradients and pooling (a reduction block with
  >= 3 spatial and >= 2 reduction iterators): a tile of the output rows accumulated in registers,
  vectorized when the row is wide, unrolled when it is a 3x3; the padding stays a parallel copy;
- reductions over leading axes (a bias gradient): the reductions outside, strips of outputs
  accumulated in vectors inside, strips in parallel;
- elementwise kernels (no reduction): single-consumer blocks inlined, the outer loops of each
  loop nest in parallel when there is enough work.

A rule that fails on a kernel leaves it as TVM made it: slower, never wrong or uncompiled.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import tvm
from tvm import relax, s_tir, tirx
from tvm.relax.backend.cpu_generic import library_dispatch_passes
from tvm.s_tir.pipeline import default_s_tir_pipeline
from tvm.tirx import compilation_pipeline

from ..arguments import element_aligned_arguments
from ..ieee import LEGALIZE_MAP, shield_float_identities
from ..operand_transposes import absorb_operand_transposes
from ..reductions import initialize_before_reducing

SPATIAL, REDUCE = 0, 2  # tirx.IterVar kinds: data parallel, commutative reduction
PARALLEL_MIN_ELEMENTS = 1 << 16  # below this, waking the thread pool costs more than it saves
SCHEDULED_ATTR = "tirx.is_scheduled"
SYMBOLIC_EXTENT = 8  # what a symbolic dim (a batch N) is taken to be when weighing parallel work
UNROLL_MAX = 4  # a conv's loops this short (kernel windows, tile rows) are unrolled

Rule = Callable[[tirx.PrimFunc, "Vector"], "tirx.PrimFunc | None"]


def cpu_fusion_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """TVM's CPU legalization and fusion (its `cpu_generic.legalize_passes`: LegalizeOps, FoldConstant,
    FuseOps, FuseTIR), after matmuls absorb their operands' transposes (`tvm.operand_transposes`);
    float zero constants are legalized behind a barrier (`tvm.ieee.LEGALIZE_MAP`)."""
    return [
        absorb_operand_transposes,
        *library_dispatch_passes(target),
        relax.transform.LegalizeOps(customize_legalize_map=LEGALIZE_MAP),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def fuse_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """`mod` through `cpu_fusion_passes`: the module whose PrimFuncs the schedules rewrite."""
    with target:
        return tvm.ir.transform.Sequential(cpu_fusion_passes(target))(mod)


@tvm.transform.module_pass(opt_level=0, name="MarkShapeFuncsNoalias")
def mark_shape_funcs_noalias(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """Declare the VM's shape functions (one buffer, the shape heap) free of aliasing. TVM's LLVM
    codegen gives kernels `noalias` pointers only when every function of the module is declared so;
    without them, accumulators round-trip through memory and matmuls run twice as slow."""
    functions = {
        gvar: func.with_attr("tirx.noalias", True) if _is_shape_func(func) else func
        for gvar, func in mod.functions_items()
    }
    return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos)


def _is_shape_func(func: Any) -> bool:
    host = isinstance(func, tirx.PrimFunc) and bool(func.attrs.get("tirx.is_host_func", False))
    return host and len(func.params) == 1


def build_pipeline() -> tvm.transform.Pass:
    """The Relax pipeline after `fuse_kernels` (and scheduling): lowering to the VM, keeping the
    kernels as they are (TVM's own pipeline would legalize and fuse again)."""
    return tvm.transform.Sequential([relax.get_pipeline("default_build"), mark_shape_funcs_noalias])


CPU_TIR_PIPELINE = "gradkiln_cpu"


def _cpu_tir_pipeline() -> tuple[Any, Any, Any]:
    """TVM's TIR pipeline with IEEE float semantics kept (`tvm.ieee.shield_float_identities` before its
    first simplification), reductions initialised even when empty (`tvm.reductions`) and kernels
    promising LLVM element-aligned arguments only (`tvm.arguments`)."""
    lower, finalize_host, finalize_device = default_s_tir_pipeline()
    first = tvm.transform.Sequential([shield_float_identities, initialize_before_reducing, lower])
    return first, lambda: tvm.transform.Sequential([element_aligned_arguments, finalize_host()]), finalize_device


compilation_pipeline.PIPELINE_MAP[CPU_TIR_PIPELINE] = _cpu_tir_pipeline


@dataclass(frozen=True)
class Vector:
    """The target CPU's SIMD registers: float32 lanes per register and how many registers there are."""

    lanes: int
    registers: int

    @classmethod
    def of(cls, target: tvm.target.Target) -> Vector:
        """From the x86 feature flags of the target's `mcpu` (a 128-bit, 16-register ISA otherwise)."""
        has = tvm.target.codegen.llvm_cpu_has_features
        if has("avx512f", target):
            return cls(16, 32)
        return cls(8, 16) if has("avx2", target) else cls(4, 16)


def static_extent(expr: Any) -> int | None:
    """The loop extent as an int, or None when it is symbolic (a batch dim N)."""
    return int(expr) if isinstance(expr, tirx.IntImm) else None


def root_blocks(sch: s_tir.Schedule) -> list[Any]:
    return sch.get_child_blocks(sch.get_sblock("root"))


def iter_kinds(sch: s_tir.Schedule, block: Any) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def is_matmul(sch: s_tir.Schedule, block: Any) -> bool:
    """A reduction over one axis of a product of two buffers: batch dims (any number), i, j
    spatial, k reduced, two reads, loops in iterator order (as legalization produces them)."""
    stmt = sch.get(block)
    kinds = iter_kinds(sch, block)
    shape_ok = len(kinds) >= 3 and kinds == [SPATIAL] * (len(kinds) - 1) + [REDUCE]
    return shape_ok and stmt.init is not None and len(stmt.reads) == 2 and len(sch.get_loops(block)) == len(kinds)


def schedule_matmul(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """Tile i x j into register accumulators (half the vector registers, two vectors wide),
    vectorize along j, parallelize over the tiles; the kernel's other blocks are inlined into the
    matmul (producers) or computed per tile from the accumulators (the epilogue)."""
    sch = s_tir.Schedule(func)
    matmuls = [b for b in root_blocks(sch) if is_matmul(sch, b)]
    if len(matmuls) != 1 or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
        return None
    matmul = matmuls[0]
    (rows, cols), padded = _pad_symbolic(sch, matmul, [vector.registers // 4, 2 * vector.lanes])
    output = inline_all_but(sch, [matmul, *padded])
    *batch, i, j, k = sch.get_loops(matmul)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, cols])
    sch.reorder(io, jo, k, ii, ji)
    if output is None:
        output = sch.cache_write(matmul, 0, "local")
    else:
        sch.set_scope(matmul, 0, "local")
    sch.reverse_compute_at(output, jo)
    _vectorize_columns(sch, ji, vector.lanes)
    sch.unroll(ii)
    sch.parallel(sch.fuse(*batch, io, jo))
    init = sch.decompose_reduction(matmul, k)
    for block in (init, output):
        sch.vectorize(sch.get_loops(block)[-1])
    for block in padded:
        parallel_outer(sch, block)
    return sch.mod["main"]


def _pad_symbolic(sch: s_tir.Schedule, matmul: Any, preferred: list[int]) -> tuple[list[int], list[Any]]:
    """Tile sizes for the i and j loops of the matmul (`preferred`, or the whole loop when shorter),
    and the blocks that pad its inputs. A loop its tile does not divide, such as the symbolic batch
    N, is padded to a multiple of the tile: the inputs are copied with zero rows appended, padded
    rows are not written back. A tile without a bounds check inside keeps its accumulators in
    registers, which is worth the copy."""
    *batch, i, j, _ = sch.get_loops(matmul)
    extents = [static_extent(sch.get(loop).extent) for loop in (i, j)]
    tiles = [min(extent or size, size) for extent, size in zip(extents, preferred)]
    padding = [tile if extent is None or extent % tile else 1 for extent, tile in zip(extents, tiles)]
    if max(padding) == 1:
        return tiles, []
    inputs = {sch.get(block).name_hint for block in sch.get_producers(matmul)}
    sch.pad_einsum(matmul, [1] * len(batch) + padding + [1])
    return tiles, [block for block in sch.get_producers(matmul) if sch.get(block).name_hint not in inputs]


def inline_all_but(sch: s_tir.Schedule, kept: list[Any]) -> Any:
    """Inline every block but `kept` (the matmul first) and the kernel's output block into its
    consumers; returns the output block when it is an epilogue, None when the matmul writes it."""
    output = sch.get_output_blocks(sch.get_sblock("root"))[0]
    names = {sch.get(block).name_hint for block in kept}  # inlining rewrites blocks, names stay
    for block in root_blocks(sch):
        if sch.get(block).name_hint not in names | {sch.get(output).name_hint}:
            sch.compute_inline(block)
    return None if sch.get(output).name_hint == sch.get(kept[0]).name_hint else output


def _vectorize_columns(sch: s_tir.Schedule, ji: Any, lanes: int) -> None:
    """Vectorize the column loop of the tile in chunks of `lanes` (the whole loop when narrower)."""
    width = static_extent(sch.get(ji).extent)
    if width is not None and width > lanes and width % lanes == 0:
        outer, inner = sch.split(ji, [None, lanes])
        sch.unroll(outer)
        sch.vectorize(inner)
    else:
        sch.vectorize(ji)


def loop_work(sch: s_tir.Schedule, loops: list[Any]) -> int:
    """The iterations of a loop nest, a symbolic extent counting as SYMBOLIC_EXTENT."""
    return math.prod(static_extent(sch.get(loop).extent) or SYMBOLIC_EXTENT for loop in loops)


def parallel_outer(sch: s_tir.Schedule, block: Any) -> bool:
    """Run the loops around the block's innermost loop in parallel if the block has enough work
    (a symbolic dim counts as SYMBOLIC_EXTENT); whether it did."""
    *outer, _ = loops = sch.get_loops(block)
    if not outer or loop_work(sch, loops) < PARALLEL_MIN_ELEMENTS:
        return False
    sch.parallel(sch.fuse(*outer))
    return True


def is_conv(sch: s_tir.Schedule, block: Any) -> bool:
    """A spatial reduction such as a convolution and its gradients: >= 3 spatial iterators, then
    >= 2 reduced ones, loops in iterator order (as legalization produces them)."""
    kinds = iter_kinds(sch, block)
    spatial = kinds.count(SPATIAL)
    in_order = kinds == [SPATIAL] * spatial + [REDUCE] * (len(kinds) - spatial)
    nest_ok = sch.get(block).init is not None and len(sch.get_loops(block)) == len(kinds)
    return spatial >= 3 and len(kinds) >= spatial + 2 and in_order and nest_ok


def schedule_conv(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """A tile of the two innermost spatial loops accumulated in registers across all reductions,
    the epilogue computed per tile, the outer spatial loops in parallel. A wide output row (forward
    conv, conv_transpose) is vectorized, rows x two vectors; a narrow one (a weight gradient's 3x3)
    is unrolled whole. Producers (padding, dilation, kernel flip) stay separate loop nests, in
    parallel: inlined, their bounds checks in the inner loop measured 6x slower on W2."""
    sch = s_tir.Schedule(func)
    convs = [b for b in root_blocks(sch) if is_conv(sch, b) and not is_matmul(sch, b)]
    if len(convs) != 1 or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
        return None
    conv = convs[0]
    producers = sch.get_producers(conv)
    output = inline_all_but(sch, [conv, *producers])
    spatial = iter_kinds(sch, conv).count(SPATIAL)
    loops = sch.get_loops(conv)
    *outer, row, col = loops[:spatial]
    reduce = loops[spatial:]
    height, width = (static_extent(sch.get(loop).extent) for loop in (row, col))
    if width is not None and width % vector.lanes == 0:
        cols = 2 * vector.lanes if width % (2 * vector.lanes) == 0 else vector.lanes
        rows = 4 if height is not None and height % 4 == 0 else 1
        ro, ri = sch.split(row, [None, rows])
        co, ci = sch.split(col, [None, cols])
        sch.reorder(ro, co, *reduce, ri, ci)
        outer, tile = [*outer, ro, co], [ri]
        _vectorize_columns(sch, ci, vector.lanes)
    elif height is not None and width is not None and height * width <= vector.registers:
        sch.reorder(*reduce, row, col)
        tile = [row, col]
    else:
        return None
    if output is None:
        output = sch.cache_write(conv, 0, "local")
    else:
        sch.set_scope(conv, 0, "local")
    sch.reverse_compute_at(output, outer[-1])
    for loop in [*tile, *reduce[1:]]:
        if (static_extent(sch.get(loop).extent) or UNROLL_MAX + 1) <= UNROLL_MAX:
            sch.unroll(loop)
    sch.parallel(sch.fuse(*outer))
    init = sch.decompose_reduction(conv, reduce[0])
    for block in (init, output):
        sch.vectorize(sch.get_loops(block)[-1])
    for block in producers:
        parallel_outer(sch, block)
    return sch.mod["main"]


def schedule_conv_rfactor(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """A convolution whose output tile is a few values (a weight gradient's 3x3) and whose
    innermost reduction runs along the inputs' rows (the image columns): that reduction is split
    into vector lanes (rfactor), so each of the tile's values accumulates a vector, and the lanes
    are summed once per tile. Without it the whole reduction is scalar."""
    sch = s_tir.Schedule(func)
    convs = [b for b in root_blocks(sch) if is_conv(sch, b) and not is_matmul(sch, b)]
    if len(convs) != 1 or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
        return None
    conv = convs[0]
    spatial = iter_kinds(sch, conv).count(SPATIAL)
    loops = sch.get_loops(conv)
    height, width, last = (static_extent(sch.get(loop).extent) for loop in (*loops[spatial - 2 : spatial], loops[-1]))
    narrow = height is not None and width is not None and height * width <= vector.registers // 2
    if not narrow or last is None or last % vector.lanes or not reads_along(sch, conv, -1):
        return None
    producers = sch.get_producers(conv)
    if inline_all_but(sch, [conv, *producers]) is not None:
        return None
    _, lanes = sch.split(loops[-1], [None, vector.lanes])
    partial = sch.rfactor(lanes, factor_axis=spatial)  # lanes innermost in the partial sums
    partial_loops = sch.get_loops(partial)  # the spatial loops, the reductions, then the lanes
    *outer, row, col = partial_loops[:spatial]
    reduce, lane = partial_loops[spatial:-1], partial_loops[-1]
    sch.reorder(*reduce, row, col, lane)
    tile = sch.fuse(*outer)
    sch.reverse_compute_at(sch.cache_write(partial, 0, "local"), tile)
    sch.reverse_compute_at(conv, tile)
    sch.unroll(row)
    sch.unroll(col)
    sch.vectorize(lane)
    sch.parallel(tile)
    init = sch.decompose_reduction(partial, reduce[0])
    sch.vectorize(sch.get_loops(init)[-1])
    for block in producers:
        parallel_outer(sch, block)
    return sch.mod["main"]


def reads_along(sch: s_tir.Schedule, block: Any, iterator: int) -> bool:
    """Whether every input of the block is indexed by its `iterator`-th iterator in the last dim."""
    stmt = sch.get(block)
    name = re.compile(rf"\b{re.escape(stmt.iter_vars[iterator].var.name)}\b")
    return all(region.region and name.search(str(region.region[-1].min)) for region in stmt.reads)
