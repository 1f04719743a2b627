"""Control flow as in `jax.lax`: `cond`, `scan` and a bounded `while_loop`.

The functions given are traced once into sub-graphs (`Body`), held by one `scan` or `cond`
node. Carries, xs and operands are pytrees: a Tensor (or array, or Python number), or
tuples and lists of them, nested. Tensors of the enclosing graph that a function reads (weights,
say) become extra operands of the node, so gradients reach them.

`while_loop` is a `scan` of `max_trips` steps whose carry holds an `active` flag: a step whose
condition is false (or that follows one) keeps the carry as it is, `where(active, body(c), c)`.
Unlike `jax.lax.while_loop`, it is differentiable in reverse mode, through that bounded form.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..body import Body, BodyGraph
from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Graph, current_graph
from ..tensor import Tensor
from ..types import TensorType, dims_equal, same_type
from .core import _graph_of, _lift, cast, constant, emit, equal, where

Tree = Any  # a Tensor-like, or a tuple/list of Trees


def flatten(tree: Tree) -> tuple[list[Any], Any]:
    """The leaves of a pytree (tuples and lists nest; anything else is a leaf) and its structure."""
    if isinstance(tree, (tuple, list)):
        parts = [flatten(t) for t in tree]
        return [leaf for leaves, _ in parts for leaf in leaves], (type(tree), [s for _, s in parts])
    return [tree], None


def unflatten(structure: Any, leaves: Sequence[Any]) -> Tree:
    """The pytree of `structure` over `leaves` (the inverse of `flatten`)."""
    rest = list(leaves)

    def build(s: Any) -> Tree:
        if s is None:
            return rest.pop(0)
        kind, children = s
        return kind(build(c) for c in children)

    return build(structure)


def _tensors(leaves: Sequence[Any], graph: Graph) -> list[Tensor]:
    return [_lift(graph, leaf, None) for leaf in leaves]


def trace_body(fn: Callable[..., Any], args: Sequence[Tree], name: str) -> tuple[BodyGraph, Tree, list[Tensor]]:
    """Trace `fn(*args)` over new inputs of the types of `args` (trees of Tensors) into a
    `BodyGraph`; returns the graph, fn's result and its body-side input tensors."""
    body = BodyGraph(name)
    inputs: list[Tensor] = []
    with body:
        trees = []
        for arg in args:
            if arg is None:  # a scan without xs
                trees.append(None)
                continue
            leaves, structure = flatten(arg)
            fresh = [_body_input(body, f"in{len(inputs) + i}", leaf.type) for i, leaf in enumerate(leaves)]
            inputs += fresh
            trees.append(unflatten(structure, fresh))
        result = fn(*trees)
    return body, result, inputs


def _body_input(body: BodyGraph, name: str, ty: TensorType) -> Tensor:
    return Tensor(body, body.add_node("input", (), {"type": ty}, name=name).outputs[0])


def build_body(name: str, types: Sequence[TensorType], fn: Callable[[list[Tensor]], list[Tensor]]) -> Body:
    """A body over new inputs of `types`, computing `fn(inputs)` (a list of tensors); what the
    control-flow rules use to build the bodies of derivative and batched nodes."""
    body = BodyGraph(name)
    with body:
        inputs = [_body_input(body, f"in{i}", ty) for i, ty in enumerate(types)]
        outputs = _tensors(fn(inputs), body)
    if body.captured:
        raise GraphError(f"body '{name}' read tensors of another graph; pass them as inputs instead")
    return Body.make(body, [t.value for t in inputs], [t.value for t in outputs])


def body_outputs(body: BodyGraph, leaves: Sequence[Any]) -> list[Tensor]:
    """A body function's result leaves as tensors of the body (outer tensors are captured)."""
    with body:
        return _tensors(leaves, body)


def inline(body: Body, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Copy `body`'s nodes into the graph of `inputs` (or the open graph), fed by `inputs`;
    returns the copies of its outputs. The rules of the control-flow ops use this to
    differentiate or batch a body with the ordinary transformations."""
    graph = _graph_of(inputs) if inputs else current_graph()
    env = {v: t for v, t in zip(body.inputs, inputs)}
    source = body.graph
    for node_id in body.nodes():
        node = source.node(node_id)
        if node.op == "input":
            continue
        if node.op == "param":
            env[node.outputs[0]] = constant(node.attrs["value"], graph=graph)
            continue
        new = graph.add_node(node.op, [_lift(graph, env[v], None).value for v in node.inputs], node.attrs)
        env.update((v, Tensor(graph, w)) for v, w in zip(node.outputs, new.outputs))
    return [env[v] for v in body.outputs]


def scan(
    fn: Callable[[Tree, Tree], tuple[Tree, Tree]],
    init: Tree,
    xs: Tree = None,
    length: int | None = None,
    reverse: bool = False,
) -> tuple[Tree, Tree]:
    """`jax.lax.scan`: carry = init; for each t, (carry, y_t) = fn(carry, xs[t]); returns
    (final carry, ys stacked on a new leading axis). The trip count is static: the leading dim
    of every xs leaf, or `length` when xs is None. `reverse` runs t from the last step down,
    keeping ys[t] at index t. Differentiable (its vjp is a reverse scan) and batchable."""
    init_leaves, init_structure = flatten(init)
    xs_leaves, xs_structure = flatten(xs) if xs is not None else ([], None)
    graph = _graph_of([*init_leaves, *xs_leaves])
    carry, x_leaves = _tensors(init_leaves, graph), _tensors(xs_leaves, graph)
    steps = _trip_count(x_leaves, length)
    x_tree = None if xs is None else unflatten(xs_structure, [_Typed(x.type.with_shape(x.shape[1:])) for x in x_leaves])
    body, result, inputs = trace_body(fn, [unflatten(init_structure, carry), x_tree], "scan_body")
    if not isinstance(result, tuple) or len(result) != 2:
        raise GraphError("scan: the function must return a pair (new carry, y); return (carry, None) for no ys")
    new_leaves, new_structure = flatten(result[0])
    if new_structure != init_structure:
        raise ShapeError(f"scan: the function returns a carry shaped {new_structure}, but init is {init_structure}")
    y_leaves, y_structure = flatten(result[1]) if result[1] is not None else ([], None)
    outs = body_outputs(body, [*new_leaves, *y_leaves])
    for i, (old, new) in enumerate(zip(carry, outs)):
        if not same_type(old.type, new.type):
            raise ShapeError(f"scan: carry leaf {i} enters the body as {old.type} and leaves it as {new.type}")
    made = Body.make(body, [t.value for t in inputs] + body.captured_inputs(), [t.value for t in outs])
    operands = [*carry, *x_leaves, *body.captured_tensors()]
    results = emit(
        "scan", *operands, body=made, num_carry=len(carry), num_xs=len(x_leaves), length=steps, reverse=reverse
    )
    results = results if isinstance(results, tuple) else (results,)
    final = unflatten(init_structure, results[: len(carry)])
    ys = None if result[1] is None else unflatten(y_structure, results[len(carry) :])
    return final, ys


def _trip_count(xs: list[Tensor], length: int | None) -> int:
    counts = {x.shape[0] for x in xs if x.ndim}
    if any(x.ndim == 0 for x in xs):
        raise ShapeError("scan: every xs leaf needs a leading axis to scan over; got a scalar")
    if length is None and not counts:
        raise ShapeError("scan: pass xs (scanned along their leading axis) or length= for a scan without xs")
    steps = length if length is not None else next(iter(counts))
    if not isinstance(steps, int) or any(not dims_equal(c, steps) for c in counts):
        raise ShapeError(
            f"scan: the trip count must be one static int; xs leading dims {sorted(map(str, counts))}, length={length}"
        )
    return steps


class _Typed:
    """A stand-in for one step of an xs leaf: `trace_body` makes a body input of its type."""

    def __init__(self, ty: TensorType) -> None:
        self.type = ty


def cond(pred: Any, true_fn: Callable[..., Tree], false_fn: Callable[..., Tree], *operands: Tree) -> Tree:
    """`jax.lax.cond`: true_fn(*operands) if pred else false_fn(*operands), pred a bool scalar
    tensor known at run time. Both branches are traced and must return the same structure and
    types. Differentiable (vjp and jvp are conds of the branches' vjps and jvps)."""
    leaves = flatten(list(operands))[0]
    graph = _graph_of([pred, *leaves])
    tensors = _tensors(leaves, graph)
    tree = unflatten(flatten(list(operands))[1], tensors)
    traced = [trace_body(f, tree, f"{side}_branch") for f, side in ((true_fn, "true"), (false_fn, "false"))]
    structures = [flatten(result)[1] for _, result, _ in traced]
    if structures[0] != structures[1]:
        raise ShapeError(
            f"cond: the true branch returns {structures[0]}, the false branch {structures[1]}; make them match"
        )
    bodies, captured = _branch_bodies(traced)
    pred = _lift(graph, pred, "bool")
    results = emit("cond", pred, *tensors, *captured, true_body=bodies[0], false_body=bodies[1])
    results = results if isinstance(results, tuple) else (results,)
    return unflatten(structures[0], results)


def _branch_bodies(traced: list[tuple[BodyGraph, Tree, list[Tensor]]]) -> tuple[list[Body], list[Tensor]]:
    """Both branch bodies over one operand list: the operands, then each branch's captures
    (a branch gets unused inputs for the other branch's captures)."""
    outputs = [body_outputs(body, flatten(result)[0]) for body, result, _ in traced]  # may capture more
    captured = [t for body, _, _ in traced for t in body.captured_tensors()]
    bodies = []
    for k, ((body, _, inputs), outs) in enumerate(zip(traced, outputs)):
        extra = []
        for j, (other, _, _) in enumerate(traced):
            if j == k:
                extra += body.captured_inputs()
            else:
                extra += [_body_input(body, f"other{i}", t.type).value for i, t in enumerate(other.captured_tensors())]
        bodies.append(Body.make(body, [t.value for t in inputs] + extra, [t.value for t in outs]))
    return bodies, captured


def _both(a: Tensor, b: Tensor) -> Tensor:
    """a and b, as int32 arithmetic (onnxruntime has no Where over bool values)."""
    return equal(cast(a, "int32") + cast(b, "int32"), 2)


def _predicate(value: Any, like: Tensor) -> Tensor:
    pred = _lift(_graph_of([value, like]), value, "bool")
    if pred.dtype != "bool" or pred.ndim != 0:
        raise DTypeError(f"while_loop: cond_fn must return a bool scalar, got {pred.type}; compare, e.g. err > 1e-6")
    return pred


def while_loop(cond_fn: Callable[[Tree], Any], body_fn: Callable[[Tree], Tree], init: Tree, max_trips: int) -> Tree:
    """`jax.lax.while_loop` bounded by `max_trips`: state = body_fn(state) while cond_fn(state),
    at most `max_trips` times. Built as a scan whose steps after the condition first fails keep
    the state, so reverse-mode gradients flow through it (zero cotangents reach the skipped
    steps' bodies: a NaN there would still poison the gradient, as with `where`)."""
    if not isinstance(max_trips, int) or max_trips < 1:
        raise ShapeError(f"while_loop: max_trips must be an int >= 1, got {max_trips!r}")

    def step(carry: tuple[Tensor, Tree], _: None) -> tuple[tuple[Tensor, Tree], None]:
        active, state = carry
        going = _both(active, _predicate(cond_fn(state), active))
        new_leaves, structure = flatten(body_fn(state))
        old_leaves, old_structure = flatten(state)
        if structure != old_structure:
            raise ShapeError(f"while_loop: body_fn returns {structure}, but the state is {old_structure}")
        kept = [where(going, new, old) for new, old in zip(new_leaves, old_leaves)]
        return (going, unflatten(structure, kept)), None

    graph = _graph_of(flatten(init)[0])
    (_, final), _ = scan(step, (constant(True, graph=graph), init), length=max_trips)
    return final
