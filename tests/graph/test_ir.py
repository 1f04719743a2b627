"""The networkx-backed IR: values, edges with slots, rewiring, copying, verification."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph import Value, verify


def test_a_value_used_twice_gives_two_edges():
    with gk.Graph() as g:
        x = gk.input("x", (2,))
        y = x * x
    edges = list(g.nx.in_edges(y.value.node, data=True))
    assert sorted(d["slot"] for _, _, d in edges) == [0, 1]
    assert g.inputs_of(y.value.node) == [x.value, x.value]
    assert sorted(g.users_of(x.value)) == [(y.value.node, 0), (y.value.node, 1)]


def test_replace_all_uses_and_remove():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        a = gk.exp(x)
        b = gk.tanh(x)
        out = a + 1.0
    g.replace_all_uses_with(a.value, b.value)
    g.remove_node(a.value.node)
    verify(g)
    data = np.array([0.1, 0.2, 0.3], np.float32)
    np.testing.assert_allclose(gk.compile(g, out)(x=data), np.tanh(data) + 1, rtol=1e-6)
    with pytest.raises(gk.GraphError, match="still has users"):
        g.remove_node(x.value.node)


def test_replace_with_a_different_type_is_refused():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        s = gk.sum(x)
        e = gk.exp(x)
    with pytest.raises(gk.GraphError, match="cannot replace"):
        g.replace_all_uses_with(e.value, s.value)


def test_copy_is_independent_and_keeps_values():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        y = gk.exp(x)
    clone = g.copy()
    clone.remove_node(y.value.node)
    assert y.value.node in g and y.value.node not in clone
    assert clone.type_of(Value(x.value.node)) == x.type


def test_verify_detects_a_corrupted_type():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        y = gk.exp(x)
    g.nx.nodes[y.value.node]["types"] = (gk.TensorType("float32", (4,)),)
    with pytest.raises(gk.GraphError, match="records types"):
        verify(g)


def test_needed_nodes_skips_unrelated_work():
    with gk.Graph() as g:
        x = gk.input("x", (3,))
        gk.log(x)
        y = gk.exp(x)
    assert g.needed_nodes([y.value]) == [x.value.node, y.value.node]
