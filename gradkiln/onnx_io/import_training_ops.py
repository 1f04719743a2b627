"""Import rules of the ONNX training domain `ai.onnx.preview.training` (opset 1), which no ONNX
runtime implements: `Gradient` as gradkiln's reverse-mode `grad`, and the optimizers `Adagrad`,
`Adam` and `Momentum` as compositions of elementwise ops, term by term as the ONNX definition's
pseudo code (`onnx.defs.get_schema(op, domain=TRAINING_DOMAIN).doc`) writes them.

The optimizers take the learning rate `R` and the update count `T` (int64) as run-time scalars,
then one group of n tensors per role (`X...`, `G...`, then the states) and return the new `X...`
followed by the new states, each tensor updated on its own. R and T are cast to the dtype of
the X tensors (one dtype, float or double), so a float32 model updates in float32 (onnx's
reference evaluator computes the scalar factors in float64; the suite's tolerances cover that).
"""

from __future__ import annotations

import numpy as np

from ..graph import ONNXError, Tensor
from ..graph import builder as gb
from ..graph.types import shape_size
from ..symbolic import grad
from .importer import ImportContext, Known, OnnxNode, Operand, register_importer

TRAINING_DOMAIN = "ai.onnx.preview.training"


@register_importer("Gradient", TRAINING_DOMAIN)
def _gradient(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Tensor]:
    """d y / d x for each tensor x named in `xs`, at the values the node's inputs give the tensors
    named in `xs` then `zs` (the named sub-graph is recomputed from those inputs where they differ).

    `y` must hold one element (the gradient of a larger tensor is a Jacobian, which ONNX does not
    define); an x that y does not depend on gets zeros."""
    xs, zs, y_name = _names(n, "xs"), _names(n, "zs"), n.attrs.get("y")
    if not xs or not isinstance(y_name, str):
        raise ONNXError("Gradient requires the attributes xs (tensor names) and y (a tensor name)")
    names = xs + zs
    if len(args) != len(names):
        raise ONNXError(f"it has {len(args)} inputs for the {len(names)} tensors named by xs {xs} and zs {zs}")
    if n.num_outputs > len(xs):
        raise ONNXError(f"it has {n.num_outputs} outputs, but xs names only {len(xs)} tensors")
    named = [_named(ctx, name, "xs/zs") for name in names]
    _require_independent(ctx, names, named)
    given = [ctx.tensor(a, f"input for {name!r}") for a, name in zip(args, names)]
    for name, tensor, value in zip(names, named, given):
        if value.type != tensor.type:
            raise ONNXError(f"the input for {name!r} is a {value.type} tensor, but {name!r} is a {tensor.type} one")
    y = _recomputed(_named(ctx, y_name, "y"), {t.value: v for t, v in zip(named, given) if t.value != v.value})
    if not isinstance(shape_size(y.shape), int) or shape_size(y.shape) != 1:
        raise ONNXError(
            f"y {y_name!r} is a {y.type} tensor; Gradient needs one element (reduce it to a scalar first, "
            "e.g. with ReduceSum, for the gradient of its sum)"
        )
    return grad(y, given[: len(xs)], seed=np.ones(y.shape, y.dtype), allow_unused=True)


def _names(n: OnnxNode, attr: str) -> list[str]:
    """A list-of-strings attribute (onnx hands those back as bytes) as text."""
    try:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in n.attrs.get(attr, [])]
    except UnicodeDecodeError:
        raise ONNXError(f"attribute {attr!r} holds a name that is not UTF-8 text; the model file is damaged") from None


def _named(ctx: ImportContext, name: str, attr: str) -> Tensor:
    """The graph tensor an attribute names: computed before this node, from graph inputs or params."""
    operand = ctx.env.get(name)
    if isinstance(operand, Known):
        raise ONNXError(
            f"{attr} names {name!r}, a value known at import time (an initializer or constant); only tensors "
            "computed from graph inputs can be differentiated: make it a graph input"
        )
    if not isinstance(operand, Tensor):
        raise ONNXError(f"{attr} names {name!r}, which is not a tensor computed before this node")
    return operand


def _require_independent(ctx: ImportContext, names: list[str], tensors: list[Tensor]) -> None:
    """ONNX requires the tensors of xs and zs to be independent variables: none computed from another."""
    for name, tensor in zip(names, tensors):
        upstream = set(ctx.graph.needed_nodes([tensor.value])) - {tensor.value.node}
        for other_name, other in zip(names, tensors):
            if other.value.node in upstream:
                raise ONNXError(
                    f"xs/zs name {name!r}, which is computed from {other_name!r}, also named; they must be "
                    "independent variables"
                )


def _recomputed(y: Tensor, substitutes: dict) -> Tensor:
    """`y` computed again with the values in `substitutes` replaced (old Value -> new Tensor): the
    nodes between them and y are added anew; with nothing to replace, `y` itself."""
    if not substitutes:
        return y
    graph = y.graph
    replaced = {old: new.value for old, new in substitutes.items()}
    needed = graph.needed_nodes([y.value])
    substituted = {old.node for old in replaced}
    for node_id in needed:
        node = graph.node(node_id)
        if node_id in substituted or not any(v in replaced for v in node.inputs):
            continue
        copy = graph.add_node(node.op, [replaced.get(v, v) for v in node.inputs], dict(node.attrs))
        replaced.update(zip(node.outputs, copy.outputs))
    return Tensor(graph, replaced.get(y.value, y.value))


def _optimized(ctx: ImportContext, n: OnnxNode, args: list[Operand], roles: str) -> tuple[Tensor, Tensor, list]:
    """R (cast to the optimized tensors' dtype), T, and the optimized tensors by role (`roles`: one
    letter each, "XGH"), one list of n tensors per role; checks that the inputs and outputs come in
    whole groups, R and T are scalars and the tensors share one float dtype (ONNX's T3)."""
    count, rest = divmod(len(args) - 2, len(roles))
    if len(args) < 2 + len(roles) or rest:
        raise ONNXError(
            f"it has {len(args)} inputs; {n.op_type} takes R, T, then n tensors each of {', '.join(roles)} "
            f"(2 + {len(roles)}n inputs)"
        )
    if n.num_outputs != count * (len(roles) - 1):
        raise ONNXError(
            f"it has {n.num_outputs} outputs for {count} optimized tensors; {n.op_type} returns "
            f"{count * (len(roles) - 1)} (the new {', '.join(r for r in roles if r != 'G')} of each)"
        )
    rate, steps = ctx.tensor(args[0], "learning rate R"), ctx.tensor(args[1], "update count T")
    for what, t in (("learning rate R", rate), ("update count T", steps)):
        if t.ndim != 0:
            raise ONNXError(f"the {what} is a {t.type} tensor; ONNX defines it as a scalar")
    tensors = [ctx.tensor(a, f"input {i + 2}") for i, a in enumerate(args[2:])]
    dtypes = sorted({t.dtype for t in tensors})
    if dtypes not in (["float32"], ["float64"]):
        raise ONNXError(f"{n.op_type} updates tensors of one type, float or double; its tensors are {dtypes}")
    groups = [tensors[i * count : (i + 1) * count] for i in range(len(roles))]
    return gb.cast(rate, dtypes[0]), steps, groups


def _regularized(x: Tensor, g: Tensor, norm_coefficient: float) -> Tensor:
    """G_regularized = norm_coefficient * X + G: the gradient of 0.5 * norm_coefficient * ||X||^2 added."""
    return norm_coefficient * x + g


@register_importer("Adagrad", TRAINING_DOMAIN)
def _adagrad(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Tensor]:
    """r = R / (1 + T * decay_factor); H_new = H + G_reg^2; X_new = X - r * G_reg / (sqrt(H_new) + epsilon)."""
    decay, epsilon = n.attrs.get("decay_factor", 0.0), n.attrs.get("epsilon", 1e-6)
    norm = n.attrs.get("norm_coefficient", 0.0)
    rate, steps, (xs, gs, hs) = _optimized(ctx, n, args, "XGH")
    r = rate / (1 + gb.cast(steps, rate.dtype) * decay)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g_reg = _regularized(x, g, norm)
        h_new = h + g_reg * g_reg
        new_x.append(x - r * g_reg / (gb.sqrt(h_new) + epsilon))
        new_h.append(h_new)
    return new_x + new_h


@register_importer("Adam", TRAINING_DOMAIN)
def _adam(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Tensor]:
    """V_new = alpha V + (1 - alpha) G_reg; H_new = beta H + (1 - beta) G_reg^2; the rate bias-corrected
    by sqrt(1 - beta^T) / (1 - alpha^T) when T > 0; X_final = (1 - norm_coefficient_post) * X_new."""
    alpha, beta = n.attrs.get("alpha", 0.9), n.attrs.get("beta", 0.999)
    epsilon, norm = n.attrs.get("epsilon", 1e-6), n.attrs.get("norm_coefficient", 0.0)
    post = n.attrs.get("norm_coefficient_post", 0.0)
    rate, steps, (xs, gs, vs, hs) = _optimized(ctx, n, args, "XGVH")
    t = gb.cast(gb.maximum(steps, 1), rate.dtype)  # T >= 1 where the correction is taken: no 0 / 0 beside it
    r = gb.where(gb.greater(steps, 0), rate * gb.sqrt(1 - beta**t) / (1 - alpha**t), rate)
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g_reg = _regularized(x, g, norm)
        v_new = alpha * v + (1 - alpha) * g_reg
        h_new = beta * h + (1 - beta) * (g_reg * g_reg)
        new_x.append((1 - post) * (x - r * (v_new / (gb.sqrt(h_new) + epsilon))))
        new_v.append(v_new)
        new_h.append(h_new)
    return new_x + new_v + new_h


@register_importer("Momentum", TRAINING_DOMAIN)
def _momentum(ctx: ImportContext, n: OnnxNode, args: list[Operand]) -> list[Tensor]:
    """V_new = alpha V + beta_adjusted G_reg (beta_adjusted = 1 while T == 0); X_new = X - R V_new
    ("standard") or X - R (G_reg + alpha V_new) ("nesterov")."""
    missing = [a for a in ("alpha", "beta", "mode", "norm_coefficient") if a not in n.attrs]
    if missing:
        raise ONNXError(f"Momentum requires the attributes {missing}")
    alpha, beta, norm, mode = (n.attrs[a] for a in ("alpha", "beta", "norm_coefficient", "mode"))
    if mode not in ("standard", "nesterov"):
        raise ONNXError(f"mode {mode!r} is not a Momentum mode; use 'standard' or 'nesterov'")
    rate, steps, (xs, gs, vs) = _optimized(ctx, n, args, "XGV")
    beta_adjusted = gb.where(gb.greater(steps, 0), gb.constant(np.asarray(beta, rate.dtype)), 1.0)
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g_reg = _regularized(x, g, norm)
        v_new = alpha * v + beta_adjusted * g_reg
        new_x.append(x - rate * (v_new if mode == "standard" else g_reg + alpha * v_new))
        new_v.append(v_new)
    return new_x + new_v
