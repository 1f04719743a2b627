"""Matmuls that read a transposed operand in place, for the CPU build (before legalization).

A gradient graph is full of `matmul(transpose(x), g)` (weight gradients) and of attention's
head permutations feeding matmuls. TVM's FuseOps never fuses a matmul's producers into it, so
each transpose became a copy kernel of its own. Here `matmul(permute_dims(a), b)` becomes one TE
matmul that indexes `a` through the permutation, where that keeps our matmul schedule
(`tvm.schedules.common.schedule_matmul`) fast: any permutation of the left operand (read one element at
a time), and of the right operand only when it keeps the last axis (the one read as vectors).
A right operand with its last two axes swapped keeps its transpose kernel (`schedule_transpose`
makes it a fast tiled copy). A transpose nothing else reads is then dead and removed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from .calls import calls_op


@tvm.transform.module_pass(opt_level=0, name="AbsorbOperandTransposes")
def absorb_operand_transposes(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """Rewrite every matmul of a transposed operand that `_absorbable` allows, in every Relax function."""
    rewriter = _Rewriter(mod)
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    return relax.transform.DeadCodeElimination()(rewriter.builder_.get())


@mutator
class _Rewriter(PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = self.visit_expr_post_order(call)
        if not calls_op(call, "relax.matmul") or not _plain(call):
            return call
        operands, perms = [], []
        for side, arg in enumerate(call.args):
            bound = self.lookup_binding(arg) if isinstance(arg, relax.Var) else None
            perm = _permutation(bound)
            if perm is not None and _absorbable(side, perm):
                operands.append(bound.args[0])
                perms.append(perm)
            else:
                operands.append(arg)
                perms.append(None)
        if all(p is None for p in perms):
            return call
        shape = call.ty.shape.values
        return self.builder_.call_te(_matmul, *operands, perms=perms, shape=shape, primfunc_name_hint="matmul")


def _plain(call: relax.Call) -> bool:
    """A matmul `_matmul` computes as Relax would: operands of rank >= 2 and one dtype, the result's
    shape known, no other output dtype."""
    a, b = (arg.ty for arg in call.args)
    ranks = a.ndim >= 2 and b.ndim >= 2 and a.dtype == b.dtype
    out_dtype = str(call.attrs.out_dtype or call.ty.dtype) == str(call.ty.dtype)
    return ranks and out_dtype and isinstance(call.ty.shape, relax.ShapeExpr)


def _permutation(expr: Any) -> tuple[int, ...] | None:
    """The axes of a `permute_dims` call (None for anything else, or when they are implicit)."""
    if not calls_op(expr, "relax.permute_dims") or expr.attrs.axes is None:
        return None
    return tuple(int(axis) for axis in expr.attrs.axes)


def _absorbable(side: int, perm: tuple[int, ...]) -> bool:
    """Whether reading the operand through `perm` keeps the matmul schedule's access pattern: the
    left operand is read one element at a time, the right one as vectors along its last axis."""
    return side == 0 or perm[-1] == len(perm) - 1


def _reader(tensor: te.Tensor, perm: tuple[int, ...] | None) -> Callable[..., Any]:
    """Element access of the operand as the matmul sees it: `permute_dims(tensor, perm)[idx]`."""
    if perm is None:
        return lambda *idx: tensor[idx]
    return lambda *idx: tensor[tuple(idx[perm.index(axis)] for axis in range(len(perm)))]


def _matmul(a: te.Tensor, b: te.Tensor, perms: Sequence[Any], shape: Sequence[Any]) -> te.Tensor:
    """numpy's matmul of the (permuted) operands, both of rank >= 2, with broadcast batch dims:
    an operand's batch dim of extent 1 is read at 0, its missing leading dims are broadcast."""
    read_a, read_b = _reader(a, perms[0]), _reader(b, perms[1])
    extents = [_permuted_shape(t, p) for t, p in ((a, perms[0]), (b, perms[1]))]
    depth = extents[0][-1]
    batch = len(shape) - 2

    def batch_index(idx: Sequence[Any], operand: int) -> list[Any]:
        own = extents[operand][:-2]
        leading = idx[batch - len(own) : batch]
        outer = shape[batch - len(own) : batch]
        return [0 if _is_one(dim) and not _is_one(out) else i for i, dim, out in zip(leading, own, outer)]

    def compute(*idx: Any) -> Any:
        k = te.reduce_axis((0, depth), name="k")
        *_, i, j = idx
        lhs = read_a(*batch_index(idx, 0), i, k)
        rhs = read_b(*batch_index(idx, 1), k, j)
        return te.sum(lhs * rhs, axis=k)

    return te.compute(shape, compute, name="matmul")


def _permuted_shape(tensor: te.Tensor, perm: tuple[int, ...] | None) -> list[Any]:
    return list(tensor.shape) if perm is None else [tensor.shape[axis] for axis in perm]


def _is_one(dim: Any) -> bool:
    return isinstance(dim, tirx.IntImm) and int(dim) == 1
