"""vjp, jvp and batching rules of the control-flow ops (`scan`, `cond`).

Each rule builds new bodies by inlining the op's body into a fresh `BodyGraph` and applying the
ordinary transformation (`vjp`, `jvp`, `vmap`) to it, so the derivative bodies are ordinary
graphs again and higher derivatives come from the same rules.

- scan vjp: a reverse scan whose body is the vjp of the forward body. The carries entering each
  step are *recomputed*: the rule emits the forward scan once more with those carries as extra
  stacked outputs (a rule cannot change the forward node), which costs one more forward pass and
  T times the carries' memory. Cotangents of the consts (weights read by every step) are
  accumulated in the backward carry.
- scan jvp: one scan over (carry, tangent carry), (xs, tangent xs), (consts, tangent consts).
- cond vjp / jvp: a cond over the branches' vjps / jvps, on the same predicate.
- batching: a scan of the batched body (every carry batched; batched xs scanned along axis 1);
  a cond of the batched branches, or, with a batched predicate, both branches and a `where`.
Only float operands and outputs are differentiated; integer and bool ones get None.
"""

from __future__ import annotations

from typing import Sequence

from ..graph import Tensor, TensorType
from ..graph import builder as gb
from ..graph.body import Body
from ..graph.builder import zeros_like
from ..graph.builder.control import build_body, inline
from ..graph.dtypes import is_float
from ..graph.types import Dim
from .batching import register_batch, vmap
from .forward import jvp
from .jvp_rules import Tangents, register_jvp
from .reverse import vjp
from .vjp_rules import register_vjp

Outs = Tensor | tuple[Tensor, ...]
OutTangents = Tensor | tuple[Tensor | None, ...] | None  # what a jvp rule returns for one node


def _tuple(outs: Outs) -> tuple[Tensor, ...]:
    return outs if isinstance(outs, tuple) else (outs,)


def _shaped_like(outs: Outs, results: list[Tensor | None]) -> OutTangents:
    """A rule's results as the rule tables expect them: a tuple for multi-output nodes."""
    return tuple(results) if isinstance(outs, tuple) else results[0]


def _floats(tensors: Sequence[Tensor]) -> list[int]:
    return [i for i, t in enumerate(tensors) if is_float(t.dtype)]


def _types(tensors: Sequence[Tensor]) -> list[TensorType]:
    return [t.type for t in tensors]


def _pick(items: Sequence, indices: Sequence[int]) -> list:
    return [items[i] for i in indices]


def _emit_scan(
    carry: list[Tensor], xs: list[Tensor], consts: list[Tensor], body: Body, **attrs: object
) -> list[Tensor]:
    results = gb.emit("scan", *carry, *xs, *consts, body=body, num_carry=len(carry), num_xs=len(xs), **attrs)
    return list(_tuple(results))


def _split(inputs: Sequence[Tensor], num_carry: int, num_xs: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    return list(inputs[:num_carry]), list(inputs[num_carry : num_carry + num_xs]), list(inputs[num_carry + num_xs :])


def _step_types(xs: Sequence[Tensor]) -> list[TensorType]:
    return [x.type.with_shape(x.shape[1:]) for x in xs]


# -- scan -----------------------------------------------------------------------------------------------
@register_vjp("scan")
def _scan_vjp(
    inputs: tuple[Tensor, ...],
    outs: Outs,
    gs: Outs,
    body: Body,
    num_carry: int,
    num_xs: int,
    length: int,
    reverse: bool,
) -> list[Tensor | None]:
    carry, xs, consts = _split(inputs, num_carry, num_xs)
    gs = _tuple(gs)
    fc, fx, fk = _floats(carry), _floats(xs), _floats(consts)
    fy = _floats(_tuple(outs)[num_carry:])
    if not (fc or fy) or not (fc or fx or fk):
        return [None] * len(inputs)
    saved = _saved_carries(carry, xs, consts, body, length, reverse)
    backward = _backward_body(body, num_carry, carry, xs, consts, (fc, fx, fk, fy))
    init = [*_pick(gs, fc), *(zeros_like(consts[k]) for k in fk)]
    step_xs = [*saved, *xs, *(gs[num_carry + j] for j in fy)]
    results = _emit_scan(init, step_xs, consts, backward, length=length, reverse=not reverse)
    grads: list[Tensor | None] = [None] * len(inputs)
    cotangents = iter(results)
    for slot in [*fc, *(num_carry + num_xs + k for k in fk), *(num_carry + j for j in fx)]:
        grads[slot] = next(cotangents)
    return grads


def _saved_carries(
    carry: list[Tensor], xs: list[Tensor], consts: list[Tensor], body: Body, length: int, reverse: bool
) -> list[Tensor]:
    """The carry entering each step, stacked: the forward scan again, the carry inputs as extra ys."""
    n = len(carry)
    saving = Body.make(body.graph, body.inputs, (*body.outputs, *body.inputs[:n]))
    results = _emit_scan(carry, xs, consts, saving, length=length, reverse=reverse)
    return results[len(body.outputs) :]


def _backward_body(
    body: Body, num_carry: int, carry: list[Tensor], xs: list[Tensor], consts: list[Tensor], floats: tuple
) -> Body:
    """One backward step: (carry cotangents, const accumulators | carry_t, x_t, y cotangents |
    consts) -> (carry cotangents before the step, accumulators | x_t cotangents)."""
    fc, fx, fk, fy = floats
    step_x = _step_types(xs)
    y_types = [body.output_types[num_carry + j] for j in fy]
    types = [*_pick(_types(carry), fc), *_pick(_types(consts), fk), *_types(carry), *step_x, *y_types, *_types(consts)]

    def step(ins: list[Tensor]) -> list[Tensor]:
        g_carry, acc = ins[: len(fc)], ins[len(fc) : len(fc) + len(fk)]
        rest = ins[len(fc) + len(fk) :]
        c_t, x_t = rest[:num_carry], rest[num_carry : num_carry + len(xs)]
        g_y, k = rest[num_carry + len(xs) : num_carry + len(xs) + len(fy)], rest[num_carry + len(xs) + len(fy) :]
        outs = inline(body, [*c_t, *x_t, *k])
        wrt = [*_pick(c_t, fc), *_pick(k, fk), *_pick(x_t, fx)]
        targets = [*_pick(outs, fc), *(outs[num_carry + j] for j in fy)]
        grads = vjp(targets, wrt, [*g_carry, *g_y], allow_unused=True)
        summed = [a + g for a, g in zip(acc, grads[len(fc) : len(fc) + len(fk)])]
        return [*grads[: len(fc)], *summed, *grads[len(fc) + len(fk) :]]

    return build_body("scan_vjp_body", types, step)


@register_jvp("scan")
def _scan_jvp(
    inputs: tuple[Tensor, ...],
    outs: Outs,
    tangents: Tangents,
    body: Body,
    num_carry: int,
    num_xs: int,
    length: int,
    reverse: bool,
) -> OutTangents:
    groups = _split(inputs, num_carry, num_xs)
    tangent_groups = _split(
        [t if t is not None or not is_float(x.dtype) else zeros_like(x) for x, t in zip(inputs, tangents)],
        num_carry,
        num_xs,
    )
    floats = [_floats(g) for g in groups]
    operands = [[*g, *_pick(t, f)] for g, t, f in zip(groups, tangent_groups, floats)]
    types = [_types(operands[0]), _step_types(operands[1]), _types(operands[2])]
    fy = _floats(_tuple(outs)[num_carry:])

    def step(ins: list[Tensor]) -> list[Tensor]:
        sizes = [len(t) for t in types]
        parts = [ins[: sizes[0]], ins[sizes[0] : sizes[0] + sizes[1]], ins[sizes[0] + sizes[1] :]]
        primal = [p[: len(g)] for p, g in zip(parts, groups)]
        seeds = [p[len(g) :] for p, g in zip(parts, groups)]
        results = inline(body, [v for p in primal for v in p])
        wrt = [v for p, f in zip(primal, floats) for v in _pick(p, f)]
        targets = [*_pick(results, floats[0]), *(results[num_carry + j] for j in fy)]
        out_tangents = jvp(targets, wrt, [v for s in seeds for v in s]) if wrt else []
        nfc = len(floats[0])
        return [*results[:num_carry], *out_tangents[:nfc], *results[num_carry:], *out_tangents[nfc:]]

    tangent_body = build_body("scan_jvp_body", [t for ts in types for t in ts], step)
    results = _emit_scan(operands[0], operands[1], operands[2], tangent_body, length=length, reverse=reverse)
    carry_t = iter(results[len(operands[0]) - len(floats[0]) : len(operands[0])])
    ys = results[len(operands[0]) :]
    ys_t = iter(ys[len(ys) - len(fy) :])
    n_ys = len(_tuple(outs)) - num_carry
    tangents = [next(carry_t) if i in floats[0] else None for i in range(num_carry)]
    return _shaped_like(outs, tangents + [next(ys_t) if j in fy else None for j in range(n_ys)])


def batched_body(body: Body, batched: Sequence[bool], size: Dim, name: str) -> Body:
    """`body` over a batch: inputs flagged in `batched` (and every output) get a leading axis."""
    types = [TensorType(t.dtype, (size, *t.shape)) if b else t for t, b in zip(body.input_types, batched)]

    def batch(ins: list[Tensor]) -> list[Tensor]:
        stand_ins = [gb.emit("input", type=t) if b else x for x, t, b in zip(ins, body.input_types, batched)]
        outs = inline(body, stand_ins)
        pairs = [(s, x) for s, x, b in zip(stand_ins, ins, batched) if b]
        if not pairs:
            return [gb.broadcast_to(o, (size, *o.shape)) for o in outs]
        return vmap(outs, [s for s, _ in pairs], [x for _, x in pairs])

    return build_body(name, types, batch)


def _to_front(x: Tensor, axis: int) -> Tensor:
    order = (axis, *(a for a in range(x.ndim) if a != axis))
    return gb.transpose(x, order)


@register_batch("scan")
def _scan_batch(
    inputs: tuple[Tensor, ...],
    batched: tuple[bool, ...],
    out: Outs,
    size: Dim,
    body: Body,
    num_carry: int,
    num_xs: int,
    length: int,
    reverse: bool,
) -> Outs:
    carry, xs, consts = _split(inputs, num_carry, num_xs)
    flags = _split(batched, num_carry, num_xs)
    carry = [c if b else gb.broadcast_to(c, (size, *c.shape)) for c, b in zip(carry, flags[0])]
    xs = [_to_front(x, 1) if b else x for x, b in zip(xs, flags[1])]
    new_body = batched_body(body, [True] * num_carry + list(flags[1]) + list(flags[2]), size, "scan_batched_body")
    results = _emit_scan(carry, xs, consts, new_body, length=length, reverse=reverse)
    return _shaped_like(out, results[:num_carry] + [_to_front(y, 1) for y in results[num_carry:]])


# -- cond -----------------------------------------------------------------------------------------------
def _emit_cond(pred: Tensor, operands: Sequence[Tensor], bodies: Sequence[Body]) -> list[Tensor]:
    return list(_tuple(gb.emit("cond", pred, *operands, true_body=bodies[0], false_body=bodies[1])))


@register_vjp("cond")
def _cond_vjp(
    inputs: tuple[Tensor, ...], outs: Outs, gs: Outs, true_body: Body, false_body: Body
) -> list[Tensor | None]:
    pred, operands = inputs[0], list(inputs[1:])
    fi, fo = _floats(operands), _floats(_tuple(outs))
    if not fi or not fo:
        return [None] * len(inputs)
    seeds = _pick(_tuple(gs), fo)

    def branch(body: Body) -> Body:
        def step(ins: list[Tensor]) -> list[Tensor]:
            results = inline(body, ins[: len(operands)])
            return vjp(_pick(results, fo), _pick(ins, fi), ins[len(operands) :], allow_unused=True)

        return build_body("cond_vjp_branch", [*_types(operands), *_types(seeds)], step)

    grads = iter(_emit_cond(pred, [*operands, *seeds], [branch(true_body), branch(false_body)]))
    return [None] + [next(grads) if i in fi else None for i in range(len(operands))]


@register_jvp("cond")
def _cond_jvp(
    inputs: tuple[Tensor, ...], outs: Outs, tangents: Tangents, true_body: Body, false_body: Body
) -> OutTangents:
    pred, operands = inputs[0], list(inputs[1:])
    fi, fo = _floats(operands), _floats(_tuple(outs))
    seeds = [zeros_like(operands[i]) if tangents[1 + i] is None else tangents[1 + i] for i in fi]

    def branch(body: Body) -> Body:
        def step(ins: list[Tensor]) -> list[Tensor]:
            results = inline(body, ins[: len(operands)])
            return jvp(_pick(results, fo), _pick(ins, fi), ins[len(operands) :])

        return build_body("cond_jvp_branch", [*_types(operands), *_types(seeds)], step)

    out_tangents = iter(_emit_cond(pred, [*operands, *seeds], [branch(true_body), branch(false_body)]))
    return _shaped_like(outs, [next(out_tangents) if i in fo else None for i in range(len(_tuple(outs)))])


@register_batch("cond")
def _cond_batch(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Outs, size: Dim, true_body: Body, false_body: Body
) -> Outs:
    pred, operands = inputs[0], list(inputs[1:])
    bodies = [batched_body(b, batched[1:], size, "cond_batched_branch") for b in (true_body, false_body)]
    if not batched[0]:
        results = _emit_cond(pred, operands, bodies)
    else:  # a predicate per batch element: both branches, then a select
        taken, other = (inline(b, operands) for b in bodies)
        results = [gb.where(gb.reshape(pred, (size, *[1] * (t.ndim - 1))), t, f) for t, f in zip(taken, other)]
    return _shaped_like(out, results)
