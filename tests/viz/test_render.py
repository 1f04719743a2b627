"""Rendering: DOT always, SVG through Graphviz, roles coloured, shapes on edges, clear errors."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.viz import ROLE_COLOURS, SOURCE_COLOURS, render, to_dot


def small_graph():
    with gk.Graph("small") as g:
        x = gk.input("x", ("N", 3))
        w = gk.param("w", np.ones((3, 2), np.float32))
        out = gk.sum(gk.tanh(x @ w))
        with g.building_as("grad"):
            extra = out * 2.0
    return g, out, extra


def test_dot_colours_roles_and_labels_edges_with_types():
    g, _out, _extra = small_graph()
    source = to_dot(g).source
    assert ROLE_COLOURS["forward"] in source and ROLE_COLOURS["grad"] in source
    assert SOURCE_COLOURS["input"] in source and SOURCE_COLOURS["param"] in source
    assert 'label="f32[N,3]"' in source and 'label="f32[N,2]"' in source


def test_outputs_restrict_the_drawing_and_get_a_double_border():
    g, out, _extra = small_graph()
    source = to_dot(g, [out.value]).source
    assert ROLE_COLOURS["grad"] not in source
    assert source.count("peripheries=2") == 1


def test_render_svg_is_valid_xml_with_one_group_per_node(tmp_path):
    g, _out, extra = small_graph()
    path = render(g, tmp_path / "g.svg", outputs=[extra])
    root = ET.parse(path).getroot()
    groups = [e for e in root.iter() if e.get("class") == "node"]
    assert len(groups) == len(g)


def test_dot_needs_no_graphviz_and_svg_without_dot_names_the_fix(tmp_path, monkeypatch):
    g, _, _ = small_graph()
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on PATH
    assert "digraph" in render(g, tmp_path / "g.dot").read_text()
    with pytest.raises(gk.VizError, match="apt-get install graphviz"):
        render(g, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_unknown_format_is_a_clear_error(tmp_path):
    g, _, _ = small_graph()
    with pytest.raises(gk.VizError, match=r"\.svg"):
        render(g, tmp_path / "g.jpeg")


def test_a_fused_node_shows_its_size_and_carries_its_sympy_expressions_in_the_tooltip():
    from gradkiln.passes import optimize

    with gk.Graph() as g:
        x = gk.input("x", (4, 4))
        loss = gk.sum((gk.tanh(x) * 0.9 + 0.1) ** 2)
    fused, outputs, _ = optimize(g, [loss.value], "O3")
    dot = gk.viz.to_dot(fused, outputs=outputs).source
    assert "1 output, sympy expressions in the tooltip" in dot
    assert "out0 = (tanh(x0)*0.899999976158142 + 0.100000001490116)**2" in dot
