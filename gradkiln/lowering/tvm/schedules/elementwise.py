"""CPU schedules for reduction-free kernels and for reductions over leading axes (the rules of
`tvm.schedules.rules.RULES` after matmul and conv)."""

from __future__ import annotations

import re
from typing import Any

from tvm import s_tir, tirx

from .common import (
    PARALLEL_MIN_ELEMENTS,
    REDUCE,
    SPATIAL,
    Vector,
    inline_all_but,
    iter_kinds,
    loop_work,
    parallel_outer,
    reads_along,
    root_blocks,
    static_extent,
)


def schedule_elementwise(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """A kernel without reductions. Blocks are inlined into their single consumer, except those
    computing a transcendental (exp, log, sin, ...): `tvm.vector_math` lowers each to a polynomial
    that names its argument several times, and nested inline they grow (and compile) exponentially.
    With one output, the kernel then runs tile by tile (in parallel): each kept block computes its
    tile into a small buffer, vectorized. Otherwise each loop nest runs its outer loops in parallel
    and its innermost loop vectorized."""
    sch = s_tir.Schedule(func)
    if not _inline_single_consumers(sch):
        return None
    outputs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(root_blocks(sch)) > 1 and len(outputs) == 1 and _tile_into(sch, outputs[0], vector):
        return sch.mod["main"]
    changed = False
    for block in root_blocks(sch):
        changed |= parallel_outer(sch, block)
        changed |= _vectorize_innermost(sch, sch.get_loops(block)[-1], vector.lanes)
    return sch.mod["main"] if changed else None


def schedule_transpose(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """A kernel that is one loop nest (after inlining) reading an input whose contiguous axis is
    not the output's, such as a transpose of the last two axes: square tiles, a vector wide, each
    read row by row into a local buffer and written row by row, tiles in parallel. Element by
    element, one of the two sides walks with a large stride, and with power-of-two row lengths its
    cache lines evict each other (a 512x512 transpose ran at 7 GB/s)."""
    sch = s_tir.Schedule(func)
    if not _inline_single_consumers(sch) or len(root_blocks(sch)) != 1:
        return None
    (block,) = root_blocks(sch)
    loops = sch.get_loops(block)
    found = _transposed_read(sch, block, len(loops))
    if found is None:
        return None
    read, axis = found
    tile = vector.lanes
    rows, columns = loops[axis], loops[-1]
    if any((static_extent(sch.get(loop).extent) or 1) % tile for loop in (rows, columns)):
        return None
    row_tiles, row = sch.split(rows, [None, tile])
    column_tiles, column = sch.split(columns, [None, tile])
    outer = [loop for i, loop in enumerate(loops[:-1]) if i != axis]
    sch.reorder(*outer, row_tiles, column_tiles, row, column)
    staged = sch.cache_read(block, read, "local")
    sch.compute_at(staged, column_tiles)
    sch.vectorize(sch.get_loops(staged)[-1])
    sch.vectorize(column)
    sch.parallel(sch.fuse(*outer, row_tiles))
    return sch.mod["main"]


def _transposed_read(sch: s_tir.Schedule, block: Any, rank: int) -> tuple[int, int] | None:
    """(which read, which loop) for the first input of `block` whose last dim is indexed by a loop
    other than the innermost one; None if there is none. The loops are taken to be the block's
    iterators in order, as legalization makes them (`rank` loops for as many iterators)."""
    stmt = sch.get(block)
    iters = [iv.var for iv in stmt.iter_vars]
    if len(iters) != rank or any(int(iv.iter_type) != SPATIAL for iv in stmt.iter_vars):
        return None
    for index, region in enumerate(stmt.reads):
        last = region.region[-1].min if region.region else None
        axis = next((i for i, var in enumerate(iters) if last is not None and var.same_as(last)), None)
        if axis is not None and axis != rank - 1 and region.region[-1].extent == 1:
            return index, axis
    return None


TRANSCENDENTAL = re.compile(r"T\.(exp|log|sin|cos|tanh|sigmoid|erf)\(")
TILE_VECTORS = 16  # elements per tile of a materialized elementwise kernel, in vectors


def _inline_single_consumers(sch: s_tir.Schedule) -> bool:
    """Inline each block read by exactly one other block (inlining a block that several read would
    recompute it, exponentially so along a chain) unless it computes a transcendental; False,
    changing nothing, if there are reductions."""
    if any(REDUCE in iter_kinds(sch, block) for block in root_blocks(sch)):
        return False
    outputs = {sch.get(block).name_hint for block in sch.get_output_blocks(sch.get_sblock("root"))}
    for block in root_blocks(sch):
        kept = sch.get(block).name_hint in outputs or TRANSCENDENTAL.search(sch.get(block).script())
        if not kept and len(sch.get_consumers(block)) == 1:
            sch.compute_inline(block)
    return True


def _tile_into(sch: s_tir.Schedule, output: Any, vector: Vector) -> bool:
    """Compute every block per tile of the output's (fused) loop nest, vectorized; whether it could."""
    loops = sch.get_loops(output)
    extent = static_extent(sch.get(loops[-1]).extent)
    tile = vector.lanes * TILE_VECTORS
    if extent is None or extent % tile:
        return False
    work = loop_work(sch, loops)
    *rows, columns = loops
    column_tiles, _ = sch.split(columns, [None, tile])
    outer = sch.fuse(*rows, column_tiles)
    for block in reversed(root_blocks(sch)[:-1]):
        sch.compute_at(block, outer)
    for block in root_blocks(sch):
        _vectorize_innermost(sch, sch.get_loops(block)[-1], vector.lanes)
    if work >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(outer)
    return True


def _vectorize_innermost(sch: s_tir.Schedule, loop: Any, lanes: int) -> bool:
    """Vectorize the loop in chunks of `lanes` (whole when it is at most that long); whether it could."""
    width = static_extent(sch.get(loop).extent)
    if width is not None and width > lanes and width % lanes == 0:
        sch.vectorize(sch.split(loop, [None, lanes])[1])
    elif width is not None and 1 < width <= lanes:
        sch.vectorize(loop)
    else:
        return False
    return True


def schedule_column_reduction(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """A sum (max, ...) over leading axes, such as a bias gradient: the reduced axes are outer in
    memory, so the reductions loop outside and a strip of outputs, two vectors wide, accumulates
    inside, strips in parallel (TVM's loop nest walks each output's column with a stride)."""
    sch = s_tir.Schedule(func)
    found = _lone_reduction(sch)
    if found is None or not _inner_is_spatial(sch, found[0]):
        return None
    block, spatial, loops = found
    width = static_extent(sch.get(loops[spatial - 1]).extent)
    strip = 2 * vector.lanes
    if width is None or width % strip:
        return None
    output = inline_all_but(sch, [block])
    outer, inner = sch.split(loops[spatial - 1], [None, strip])
    sch.reorder(outer, *loops[spatial:], inner)
    if output is not None:
        sch.reverse_compute_at(output, outer)
        sch.vectorize(sch.get_loops(output)[-1])
    sch.vectorize(inner)
    sch.parallel(sch.fuse(*loops[: spatial - 1], outer))
    init = sch.decompose_reduction(block, loops[spatial])
    sch.vectorize(sch.get_loops(init)[-1])
    return sch.mod["main"]


def schedule_row_reduction(func: tirx.PrimFunc, vector: Vector) -> tirx.PrimFunc | None:
    """A sum (max, ...) whose innermost reduced axis is the inputs' contiguous one, such as a
    layer norm's statistics, a global average pool or a convolution's bias gradient: that axis
    split into vector lanes (rfactor), each output accumulating a vector in registers and summing
    its lanes once, outputs in parallel. TVM's loop nest adds one scalar at a time."""
    sch = s_tir.Schedule(func)
    found = _lone_reduction(sch)
    if found is None:
        return None
    block, spatial, loops = found
    last = static_extent(sch.get(loops[-1]).extent)
    if last is None or last % vector.lanes or not reads_along(sch, block, -1):
        return None
    work = loop_work(sch, loops)
    output = inline_all_but(sch, [block])
    _, lanes = sch.split(loops[-1], [None, vector.lanes])
    partial = sch.rfactor(lanes, factor_axis=spatial)  # lanes innermost in the partial sums
    partial_loops = sch.get_loops(partial)
    row = sch.fuse(*partial_loops[:spatial])
    sch.reverse_compute_at(sch.cache_write(partial, 0, "local"), row)
    sch.reverse_compute_at(block, row)
    if output is not None:
        sch.reverse_compute_at(output, row)
    sch.vectorize(partial_loops[-1])
    if work >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(row)
    init = sch.decompose_reduction(partial, partial_loops[spatial])
    sch.vectorize(sch.get_loops(init)[-1])
    return sch.mod["main"]


def _lone_reduction(sch: s_tir.Schedule) -> tuple[Any, int, list[Any]] | None:
    """The kernel's only reduction block, if the kernel has one output and the block's iterators
    are spatial ones (at least one) then reduced ones, a loop each in that order (as legalization
    makes them): the block, its number of spatial iterators and its loops."""
    reductions = [b for b in root_blocks(sch) if REDUCE in iter_kinds(sch, b)]
    if len(reductions) != 1 or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
        return None
    block = reductions[0]
    kinds = iter_kinds(sch, block)
    spatial = kinds.count(SPATIAL)
    loops = sch.get_loops(block)
    in_order = kinds == [SPATIAL] * spatial + [REDUCE] * (len(kinds) - spatial) and len(loops) == len(kinds)
    return (block, spatial, loops) if spatial and in_order else None


def _inner_is_spatial(sch: s_tir.Schedule, block: Any) -> bool:
    """Whether the block's (first) input is indexed by the last spatial iterator in its last dim."""
    stmt = sch.get(block)
    spatial = [iv.var for iv in stmt.iter_vars if int(iv.iter_type) == SPATIAL]
    last = stmt.reads[0].region[-1].min if stmt.reads and stmt.reads[0].region else None
    return last is not None and spatial[-1].same_as(last)
