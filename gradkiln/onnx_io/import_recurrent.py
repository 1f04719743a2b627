"""Import rules for the recurrent ops RNN, GRU and LSTM, unrolled over the (static) sequence.

Each step is the cell of the ONNX definition written with matmul and elementwise ops, per
direction (forward, reverse, or both); outputs are stacked as ONNX lays them out (`layout` 0:
sequence first, 1: batch first). Clipping, custom activation parameters and per-batch
`sequence_lens` shorter than the sequence are refused.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from .import_select import take_range
from .importer import ImportContext, OnnxNode, Operand, register_importer

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "Sigmoid": gb.sigmoid,
    "Tanh": gb.tanh,
    "Relu": gb.relu,
}
Cell = Callable[..., tuple[Tensor, Tensor | None]]


def _chunks(x: Tensor, count: int, axis: int = -1) -> list[Tensor]:
    """Split an axis (the last by default) into `count` equal parts."""
    axis = axis % x.ndim
    size = int(x.shape[axis]) // count
    return [take_range(x, axis, i * size, (i + 1) * size) for i in range(count)]


def _rnn_cell(xg, h, c, r, rb, p, act) -> tuple[Tensor, None]:
    return act[0](gb.add(gb.add(xg, gb.matmul(h, gb.transpose(r))), rb)), None


def _gru_cell(xg, h, c, r, rb, p, act, linear_before_reset: int = 0) -> tuple[Tensor, None]:
    xz, xr, xh = _chunks(xg, 3)
    rz, rr, rh = _chunks(r, 3, axis=0)
    bz, br, bh = _chunks(rb, 3)
    z = act[0](gb.add(gb.add(xz, gb.matmul(h, gb.transpose(rz))), bz))
    reset = act[0](gb.add(gb.add(xr, gb.matmul(h, gb.transpose(rr))), br))
    if linear_before_reset:
        hidden = gb.mul(reset, gb.add(gb.matmul(h, gb.transpose(rh)), bh))
    else:
        hidden = gb.add(gb.matmul(gb.mul(reset, h), gb.transpose(rh)), bh)
    candidate = act[1](gb.add(xh, hidden))
    return gb.add(gb.mul(gb.sub(1.0, z), candidate), gb.mul(z, h)), None


def _lstm_cell(xg, h, c, r, rb, p, act) -> tuple[Tensor, Tensor]:
    gates = _chunks(gb.add(gb.add(xg, gb.matmul(h, gb.transpose(r))), rb), 4)
    pi, po, pf = _chunks(p, 3) if p is not None else (None, None, None)
    peep = lambda g, w, state: gb.add(g, gb.mul(w, state)) if w is not None else g  # noqa: E731
    i = act[0](peep(gates[0], pi, c))
    f = act[0](peep(gates[2], pf, c))
    c = gb.add(gb.mul(f, c), gb.mul(i, act[1](gates[3])))
    o = act[0](peep(gates[1], po, c))
    return gb.mul(o, act[2](c)), c


def _direction(ctx: ImportContext, d: int, operand: Operand) -> Tensor:
    """Direction `d` of a per-direction input (its leading axis)."""
    return gb.squeeze(take_range(ctx.tensor(operand), 0, d, d + 1), 0)


# op: (cell, gates, default activations)
RECURRENT: dict[str, tuple[Cell, int, list[str]]] = {
    "RNN": (_rnn_cell, 1, ["Tanh"]),
    "GRU": (_gru_cell, 3, ["Sigmoid", "Tanh"]),
    "LSTM": (_lstm_cell, 4, ["Sigmoid", "Tanh", "Tanh"]),
}


def _recurrent(op_type: str):
    cell, gates, default = RECURRENT[op_type]

    def rule(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> Operand:
        if "clip" in n.attrs or "activation_alpha" in n.attrs or "activation_beta" in n.attrs:
            raise ONNXError("clip and activation_alpha/beta are not supported")
        args = args + [None] * (8 - len(args))
        layout = n.attrs.get("layout", 0)
        x, w, r = (ctx.tensor(a) for a in args[:3])
        if (x.ndim, w.ndim, r.ndim) != (3, 3, 3):
            raise ONNXError(f"X, W and R must be 3-D, got shapes {x.shape}, {w.shape} and {r.shape}")
        x = gb.transpose(x, (1, 0, 2)) if layout else x
        steps, batch = int(x.shape[0]), x.shape[1]
        lengths = ctx.optional(args, 4, "sequence_lens", None)
        if lengths is not None and np.any(np.asarray(lengths) != steps):
            raise ONNXError("sequence_lens shorter than the sequence are not supported")
        dirs, hidden = int(w.shape[0]), int(r.shape[-1])
        ctx.budget.unrolled(steps * dirs, f"{op_type} over {steps} time steps in {dirs} direction(s)")
        names = n.attrs.get("activations", default * dirs)
        extra = (
            {"linear_before_reset": n.attrs["linear_before_reset"]}
            if op_type == "GRU" and "linear_before_reset" in n.attrs
            else {}
        )
        ys, hs, cs = [], [], []
        for d in range(dirs):
            act = [ACTIVATIONS[name] for name in names[d * len(default) : (d + 1) * len(default)]]
            pick = partial(_direction, ctx, d)
            wd, rd = pick(args[1]), pick(args[2])
            if args[3] is not None:
                wb, rb = _chunks(pick(args[3]), 2)
            else:
                wb = rb = gb.constant(np.zeros(gates * hidden), x.dtype, graph=x.graph)
            h = (
                pick(args[5])
                if args[5] is not None
                else gb.broadcast_to(gb.constant(0, x.dtype, graph=x.graph), (batch, hidden))
            )
            c = pick(args[6]) if args[6] is not None else h
            p = pick(args[7]) if args[7] is not None else None
            reverse = n.attrs.get("direction", "forward") == "reverse" or d == 1
            order = range(steps - 1, -1, -1) if reverse else range(steps)
            outs = {}
            for t in order:
                xg = gb.add(gb.matmul(gb.squeeze(take_range(x, 0, t, t + 1), 0), gb.transpose(wd)), wb)
                h, c_new = cell(xg, h, c, rd, rb, p, act, **extra)
                c = c_new if c_new is not None else c
                outs[t] = gb.expand_dims(h, 0)
            ys.append(gb.expand_dims(gb.concat([outs[t] for t in range(steps)], 0), 1))
            hs.append(gb.expand_dims(h, 0))
            cs.append(gb.expand_dims(c, 0))
        y, y_h, y_c = (gb.concat(parts, a) for parts, a in ((ys, 1), (hs, 0), (cs, 0)))
        if layout:
            y, y_h, y_c = gb.transpose(y, (2, 0, 1, 3)), gb.transpose(y_h, (1, 0, 2)), gb.transpose(y_c, (1, 0, 2))
        return (y, y_h, y_c)[: n.num_outputs]

    return rule


for _op_type in RECURRENT:
    register_importer(_op_type)(_recurrent(_op_type))
