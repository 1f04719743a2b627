"""Summarised drawings: params folded into labels, clusters by name scope, collapsed scopes that
still account for every node, and big graphs that render."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.viz import EDGE_LABEL_LIMIT, assign_scopes, drawn_units, name_scope, to_dot, to_svg

from .conftest import LAYERS

BOX_COUNT = re.compile(r'tooltip="scope [^:]*: (\d+) nodes?')


def drawn_nodes(source: str) -> list[str]:
    """The node statements of a DOT source (not edges, not graph/node/edge defaults)."""
    return [line for line in source.splitlines() if re.match(r"\s*(\d+|box\d+) \[", line)]


def outputs_of(loss, grads):
    return [loss.value, *(t.value for t in grads)]


@pytest.mark.parametrize(
    ("name", "scope"),
    [
        ("layer1.0.conv1.weight", ("layer1", "0", "conv1")),
        ("/layer1/conv/Conv", ("layer1", "conv")),
        ("w", ()),
        (None, None),
    ],
)
def test_name_scope_drops_the_last_part(name, scope):
    assert name_scope(name) == scope


def test_forward_and_gradient_nodes_land_in_their_layer(deep_mlp):
    g, loss, params, grads = deep_mlp
    scopes = assign_scopes(g, g.needed_nodes(outputs_of(loss, grads)))
    for i, grad in enumerate(grads[::2]):  # weight gradients: dW_i = h_{i-1}^T @ g_i, in layer i
        assert scopes[grad.value.node] == (f"layer{i}", "linear")
    for i, param in enumerate(params[::2]):  # the forward matmul reading layer i's weight
        (matmul,) = [u for u, _ in g.users_of(param.value) if g.node(u).op == "matmul" and g.node(u).role == "forward"]
        assert scopes[matmul] == (f"layer{i}", "linear")


def test_collapsed_sources_leave_their_readers_labelled(deep_mlp):
    g, loss, _, grads = deep_mlp
    source = to_dot(g, outputs_of(loss, grads), collapse_sources=True).source
    shown = drawn_nodes(source)
    needed = g.needed_nodes(outputs_of(loss, grads))
    sources = [n for n in needed if g.node(n).op in ("param", "constant")]
    assert len(shown) == len(needed) - len(sources)
    assert "layer7.linear.weight: f32[8,8]" in source
    assert "ellipse" in source  # inputs stay drawn
    assert not any(g.node(int(line.split()[0])).op == "param" for line in shown)


def test_depth_collapses_scopes_into_boxes_that_count_every_node(deep_mlp):
    g, loss, _, grads = deep_mlp
    outputs = outputs_of(loss, grads)
    source = to_dot(g, outputs, collapse_sources=True, group_by="scope", depth=0).source
    scopes = assign_scopes(g, g.needed_nodes(outputs))
    shown = [n for n in g.needed_nodes(outputs) if g.node(n).op not in ("param", "constant")]
    scoped = [n for n in shown if scopes[n]]
    boxes = [line for line in drawn_nodes(source) if line.strip().startswith("box")]
    assert len(boxes) == 2 * LAYERS  # one forward and one gradient box per layer
    assert sum(map(int, BOX_COUNT.findall(source))) == len(scoped)
    assert len(drawn_nodes(source)) == len(boxes) + len(shown) - len(scoped)


def test_max_nodes_summarises_a_big_gradient_graph_that_still_renders(deep_mlp):
    g, loss, _, grads = deep_mlp
    outputs = outputs_of(loss, grads)
    source = to_dot(g, outputs, max_nodes=80).source
    assert len(drawn_nodes(source)) == drawn_units(g, outputs, max_nodes=80) <= 80 < len(g)
    assert "shape=box3d" in source  # collapsed scopes
    svg = to_svg(g, outputs, max_nodes=80)
    root = ET.fromstring(svg)
    assert len([e for e in root.iter() if e.get("class") == "node"]) == len(drawn_nodes(source))


def test_scope_clusters_nest_and_name_the_role(deep_mlp):
    g, loss, _, grads = deep_mlp
    source = to_dot(g, outputs_of(loss, grads), collapse_sources=True, group_by="scope").source
    assert 'label="layer3 (grad)"' in source and 'label="layer3.linear"' in source
    assert source.count("subgraph cluster") == 4 * LAYERS  # layer_i and layer_i.linear, forward and grad


def test_big_drawings_put_edge_types_in_tooltips():
    with gk.Graph("wide") as g:
        x = gk.input("x", (3,))
        out = x
        for _ in range(EDGE_LABEL_LIMIT):
            out = gk.tanh(out)
    assert 'label="f32[3]"' not in to_dot(g).source and 'tooltip="f32[3]"' in to_dot(g).source
    small = gk.Graph("small")
    with small:
        gk.tanh(gk.input("x", (3,)))
    assert 'label="f32[3]"' in to_dot(small).source


@pytest.mark.parametrize("options", [{"group_by": "module"}, {"depth": -1}, {"max_nodes": 2.5}])
def test_bad_summary_options_are_clear_errors(options):
    with gk.Graph("g") as g:
        gk.exp(gk.input("x", (2,)))
    with pytest.raises(gk.VizError, match=next(iter(options))):
        to_dot(g, **options)


def test_a_scalar_constant_shows_its_value():
    with gk.Graph("c") as g:
        out = gk.input("x", (2,)) * gk.constant(np.float32(2.5))
    assert "const 2.5" in to_dot(g, [out.value], collapse_sources=True).source


OP_BOX = re.compile(r'tooltip="op (\w+)(?: \(\w+\))?: (\d+) nodes?, collapsed"')


def unscoped_chain():
    """200 tanh, 40 exp and 5 sin nodes, none named: no scope to collapse."""
    with gk.Graph("chain") as g:
        out = gk.input("x", (3,))
        for i in range(200):
            out = gk.tanh(out)
            if i % 5 == 0:
                out = gk.exp(out)
            if i % 40 == 0:
                out = gk.sin(out)
    return g, out


def test_without_scopes_the_most_numerous_ops_collapse_until_the_drawing_fits():
    g, out = unscoped_chain()
    source = to_dot(g, [out.value], max_nodes=100).source
    assert OP_BOX.findall(source) == [("tanh", "199")]  # 246 units -> 48: exp and sin stay nodes
    assert len(drawn_nodes(source)) == drawn_units(g, [out.value], max_nodes=100) == 1 + 1 + 1 + 40 + 5
    assert re.search(r"label=tanh .*peripheries=2", source)  # the output (a tanh) stays visible
    source = to_dot(g, [out.value], max_nodes=10).source
    assert sorted(OP_BOX.findall(source)) == [("exp", "40"), ("tanh", "199")]  # 248 -> 48 -> 9 units
    assert len(drawn_nodes(source)) == 1 + 2 + 1 + 5
    source = to_dot(g, [out.value], max_nodes=5).source
    assert sorted(OP_BOX.findall(source)) == [("exp", "40"), ("sin", "5"), ("tanh", "199")]
    assert len(drawn_nodes(source)) == 5  # the input, three boxes and the output
    assert drawn_units(g, [out.value], max_nodes=2) == 5  # one box per op is as far as it goes


def test_a_big_graph_without_scopes_summarises_into_a_few_boxes_that_render():
    """(A 100k-node model ran Graphviz for minutes; 20k nodes and a gradient keep the test short.)"""
    with gk.Graph("big") as g:
        x = out = gk.input("x", (3,))
        for i in range(10_000):
            out = gk.tanh(out) if i % 3 else gk.exp(out)
        loss = gk.sum(out * gk.input("y", (3,)))
        (dx,) = gk.grad(loss, [x])
    outputs = [loss.value, dx.value]
    assert len(g) > 40_000
    source = to_dot(g, outputs, max_nodes=150).source
    assert len(drawn_nodes(source)) == drawn_units(g, outputs, max_nodes=150) <= 150
    shown = [n for n in g.needed_nodes(outputs) if g.node(n).op not in ("param", "constant")]  # the rest fold
    boxes = OP_BOX.findall(source)
    assert sum(int(count) for _, count in boxes) + len(drawn_nodes(source)) - len(boxes) == len(shown)
    assert "op mul (grad)" in source
    assert ET.fromstring(to_svg(g, outputs, max_nodes=150)).tag.endswith("svg")
