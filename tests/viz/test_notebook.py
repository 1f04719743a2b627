"""Graphs display inline in notebooks: Graph._repr_svg_ gives SVG once gradkiln.viz is loaded."""

import xml.etree.ElementTree as ET

import gradkiln as gk
from gradkiln import viz
from gradkiln.graph import ir
from gradkiln.viz import NOTEBOOK_MAX_NODES, drawn_units, notebook_svg


def graph():
    with gk.Graph("nb") as g:
        gk.tanh(gk.input("x", (2, 3)) @ gk.param("w", [[1.0], [2.0], [3.0]]))
    return g


def test_repr_svg_is_an_svg_drawing_of_the_graph():
    g = graph()
    svg = g._repr_svg_()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert len([e for e in root.iter() if e.get("class") == "node"]) == len(g) - 1  # the param is folded


def test_without_graphviz_or_renderer_the_notebook_falls_back_to_text(tmp_path, monkeypatch):
    g = graph()
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot`
    assert g._repr_svg_() is None
    monkeypatch.undo()
    monkeypatch.setattr(ir, "_svg_renderer", None)
    assert g._repr_svg_() is None
    assert ir._svg_renderer is None and notebook_svg(g).startswith("<svg")


def test_a_graph_too_big_to_summarise_shows_as_text(monkeypatch):
    with gk.Graph("chain") as g:
        out = gk.input("x", (3,))
        for _ in range(NOTEBOOK_MAX_NODES):  # unnamed nodes: no scopes to collapse, so tanh nodes are one box
            out = gk.exp(gk.tanh(out))
    assert drawn_units(g, max_nodes=NOTEBOOK_MAX_NODES) == 3  # x, a box of tanh nodes, a box of exp nodes
    assert g._repr_svg_().startswith("<svg")
    monkeypatch.setattr(viz, "NOTEBOOK_MAX_NODES", 2)  # even one box per op is too many
    assert g._repr_svg_() is None
