"""The batching transform: `vmap` re-emits a subgraph over a batch of values of its inputs.

`vmap(outputs, inputs, batched_inputs)` takes, for each input `x`, a tensor of shape
`(B, *x.shape)` and emits the nodes between the inputs and the outputs once more, each through
its op's batching rule in `BATCH_RULES`, so that every output gets a leading batch axis of size
B. Nodes that no input reaches are shared, not batched. One batched graph replaces B copies:
`jacobian` and `hessian` batch a vjp or jvp over the rows of an identity matrix.

A rule is called as `rule(inputs, batched, output, batch, **attrs)`: `inputs` are the node's
operands, the batched ones (`batched[i]` true) carrying the batch axis first; `output` is the
original (unbatched) output, for its type; `batch` the batch size. It returns the output with
the batch axis first (a multi-output op's rule gets and returns a tuple of outputs). The batch
axis is always axis 0, so rules shift axis attributes by one; elementwise ops only need their
batched operands' ranks padded to the output's rank, so that numpy broadcasting lines up the
unbatched ones.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..graph import GradientError, Node, Tensor, TensorType, UnsupportedOpError, Value
from ..graph import builder as gb
from ..graph.opdef import OPS
from ..graph.registry import Registry
from ..graph.types import Dim, dims_equal, same_type
from .walk import as_list, common_graph, nodes_between, remove_unneeded

BatchRule = Callable[..., Tensor]
Outputs = Tensor | tuple[Tensor, ...]  # a multi-output op's rule gets and returns a tuple
BATCH_RULES: Registry[BatchRule] = Registry("batching rule")


def register_batch(op_name: str, **how: Any) -> Callable[[BatchRule], BatchRule]:
    """Decorator: make `rule` the batching rule of op `op_name` (also for custom ops); `how` is
    `Registry.register`'s `when=`/`override=`."""
    return BATCH_RULES.register(op_name, **how)


def vmap(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    batched_inputs: Tensor | Sequence[Tensor],
) -> list[Tensor]:
    """The outputs recomputed for a batch of values of the inputs: `batched_inputs[i]` has shape
    `(B, *inputs[i].shape)`, and each result has shape `(B, *outputs[k].shape)`."""
    outs, xs, batches = as_list(outputs), as_list(inputs), as_list(batched_inputs)
    if len(xs) != len(batches):
        raise GradientError(f"vmap: {len(xs)} inputs but {len(batches)} batched inputs")
    graph = common_graph([*outs, *xs, *batches])
    size = _batch_size(xs, batches)
    env: dict[Value, Tensor] = {x.value: b for x, b in zip(xs, batches)}
    first_new = graph.next_node_id
    with graph:
        for node_id in nodes_between(graph, xs, outs):
            node = graph.node(node_id)
            if any(v in env for v in node.outputs) or not any(v in env for v in node.inputs):
                continue
            with graph.building_as(node.role):
                env.update(zip(node.outputs, _apply_rule(node, env, size)))
        results = [env[out.value] if out.value in env else gb.broadcast_to(out, (size, *out.shape)) for out in outs]
    remove_unneeded(graph, first_new, results)
    return results


def _batch_size(xs: list[Tensor], batches: list[Tensor]) -> Dim:
    sizes = []
    for x, b in zip(xs, batches):
        if b.dtype != x.dtype or b.ndim != x.ndim + 1 or not all(map(dims_equal, b.shape[1:], x.shape)):
            raise GradientError(
                f"vmap: the batch for {x.name} ({x.type}) must have type {x.dtype}[B,...], got {b.type}"
            )
        sizes.append(b.shape[0])
    if any(not dims_equal(s, sizes[0]) for s in sizes):
        raise GradientError(f"vmap: the batched inputs have different batch sizes {sizes}")
    return sizes[0]


def _apply_rule(node: Node, env: dict[Value, Tensor], size: Dim) -> tuple[Tensor, ...]:
    """The node's batched outputs (a multi-output op's rule gets and returns tuples)."""
    rule = BATCH_RULES.get(node.op)
    if rule is None:
        raise UnsupportedOpError(
            f"no batching rule for op '{node.op}' (node {node.label}); register one with "
            f"@gradkiln.symbolic.register_batch('{node.op}')"
        )
    graph = node.graph
    inputs = tuple(env[v] if v in env else Tensor(graph, v) for v in node.inputs)
    batched = tuple(v in env for v in node.inputs)
    outputs = tuple(Tensor(graph, v) for v in node.outputs)
    result = rule(inputs, batched, outputs[0] if len(outputs) == 1 else outputs, size, **node.attrs)
    results = (result,) if len(outputs) == 1 else tuple(result)
    for out, ty in zip(results, node.types):
        want = TensorType(ty.dtype, (size, *ty.shape))
        if not same_type(out.type, want):
            raise GradientError(
                f"the batching rule of '{node.op}' ({node.label}) returned {out.type}, expected {want}: the "
                "output's type with the batch axis first"
            )
    return results


# -- rules ----------------------------------------------------------------------------------------------
def lift_batched(x: Tensor, rank: int) -> Tensor:
    """A batched x (B, *s) as (B, 1, ..., 1, *s) of rank `rank` + 1, so that it broadcasts
    against unbatched operands of rank <= `rank` as x did."""
    missing = rank - (x.ndim - 1)
    return gb.expand_dims(x, tuple(range(1, 1 + missing))) if missing else x


def broadcasting_rule(op: str) -> BatchRule:
    """The batching rule of an op that broadcasts its operands (elementwise ops, fused nodes,
    matrix ops batched over leading dims): batched operands get their rank padded, and each
    output is broadcast to carry the batch axis."""

    def rule(
        inputs: tuple[Tensor, ...],
        batched: tuple[bool, ...],
        out: Tensor | tuple[Tensor, ...],
        size: Dim,
        **attrs: object,
    ) -> Tensor | tuple[Tensor, ...]:
        outs = out if isinstance(out, tuple) else (out,)
        operands = [lift_batched(x, outs[0].ndim) if b else x for x, b in zip(inputs, batched)]
        results = gb.emit(op, *operands, **attrs)
        results = results if isinstance(results, tuple) else (results,)
        lifted = tuple(gb.broadcast_to(r, (size, *o.shape)) for r, o in zip(results, outs))
        return lifted if isinstance(out, tuple) else lifted[0]

    return rule


def _shifted(axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(a + 1 for a in axes)


def _over_axes(op: str) -> BatchRule:
    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: object) -> Tensor:
        return gb.emit(op, inputs[0], **attrs | {"axes": _shifted(attrs["axes"])})

    return rule


def _over_axis(op: str) -> BatchRule:
    def rule(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: object) -> Tensor:
        return gb.emit(op, inputs[0], **attrs | {"axis": attrs["axis"] + 1})

    return rule


for _name, _op in OPS.items():
    if _op.elementwise:
        register_batch(_name)(broadcasting_rule(_name))
for _name in ("sum", "mean", "max", "min", "prod", "logsumexp", "var", "std", "expand_dims", "squeeze"):
    register_batch(_name)(_over_axes(_name))
for _name in ("softmax", "log_softmax", "argmax", "argmin", "cumsum", "cumprod"):
    register_batch(_name)(_over_axis(_name))


@register_batch("size")
def _size(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: object) -> Tensor:
    return gb.broadcast_to(gb.emit("size", inputs[0], **attrs | {"axes": _shifted(attrs["axes"])}), (size,))


@register_batch("reshape")
def _reshape(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, shape: tuple) -> Tensor:
    return gb.emit("reshape", inputs[0], shape=(size, *shape))


@register_batch("transpose")
def _transpose(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, perm: tuple) -> Tensor:
    return gb.emit("transpose", inputs[0], perm=(0, *_shifted(perm)))


@register_batch("broadcast_to")
def _broadcast_to(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, shape: tuple
) -> Tensor:
    return gb.emit("broadcast_to", lift_batched(inputs[0], len(shape)), shape=(size, *shape))


@register_batch("concat")
def _concat(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, axis: int) -> Tensor:
    operands = [x if b else gb.broadcast_to(x, (size, *x.shape)) for x, b in zip(inputs, batched)]
    return gb.emit("concat", *operands, axis=axis + 1)


@register_batch("slice")
def _slice(
    inputs: tuple[Tensor, ...],
    batched: tuple[bool, ...],
    out: Tensor,
    size: Dim,
    starts: tuple,
    stops: tuple,
    steps: tuple,
) -> Tensor:
    return gb.emit("slice", inputs[0], starts=(0, *starts), stops=(size, *stops), steps=(1, *steps))


@register_batch("pad")
def _pad(
    inputs: tuple[Tensor, ...],
    batched: tuple[bool, ...],
    out: Tensor,
    size: Dim,
    low: tuple,
    high: tuple,
    interior: tuple,
) -> Tensor:
    return gb.emit("pad", inputs[0], low=(0, *low), high=(0, *high), interior=(0, *interior))


@register_batch("matmul")
def _matmul(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim) -> Tensor:
    """Batched operands get their rank padded like elementwise ones: matmul broadcasts its
    leading axes as numpy does."""
    a, b = (lift_batched(x, out.ndim) if flag else x for x, flag in zip(inputs, batched))
    return gb.broadcast_to(gb.emit("matmul", a, b), (size, *out.shape))


@register_batch("one_hot")
def _one_hot(inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: object) -> Tensor:
    return gb.emit("one_hot", inputs[0], **attrs)


@register_batch("custom_vjp")
def _custom_vjp(
    inputs: tuple[Tensor, ...], batched: tuple[bool, ...], out: Tensor, size: Dim, **attrs: object
) -> Tensor:
    """The batched value, without the custom rule: differentiating a batched graph again goes
    through the nodes of the user's forward function (see docs/autodiff.md)."""
    value = inputs[-1]
    return value if batched[-1] else gb.broadcast_to(value, (size, *value.shape))
