"""Rendering: DOT always, SVG through Graphviz, roles coloured, shapes on edges, clear errors."""

import importlib
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.viz import ROLE_COLOURS, SOURCE_COLOURS, render, to_dot
from gradkiln.viz.render import pipe

render_module = importlib.import_module("gradkiln.viz.render")  # `gradkiln.viz.render` is also the function


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


FAKE_DOT = '#!/bin/sh\necho $$ > "$FAKE_DOT_PID"\nexec sleep 60\n'


@pytest.fixture
def sleeping_dot(tmp_path, monkeypatch):
    """A `dot` on PATH that records its pid and never answers; returns a function reading the pid."""
    (tmp_path / "dot").write_text(FAKE_DOT)
    (tmp_path / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOT_PID", str(tmp_path / "dot.pid"))

    def pid() -> int:
        deadline = time.monotonic() + 10
        while not (tmp_path / "dot.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return int((tmp_path / "dot.pid").read_text())

    return pid


def gone(pid: int, wait: float = 10.0) -> bool:
    """Whether process `pid` has exited (a zombie counts) within `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_dot_that_times_out_is_killed(sleeping_dot):
    g = small_graph()[0]
    with pytest.raises(gk.VizError, match=r"took more than 2 s to lay out graph 'small' and was stopped"):
        pipe(to_dot(g), "svg", "graph 'small'", timeout=2)
    assert gone(sleeping_dot(), wait=0)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_an_interrupted_render_kills_dot(sleeping_dot, monkeypatch):
    g = small_graph()[0]

    def interrupt(self, *args, **kwargs):
        sleeping_dot()  # dot is running
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pipe(to_dot(g), "svg", "graph 'small'")
    assert gone(sleeping_dot(), wait=0)


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal is Linux's")
def test_dot_dies_with_a_killed_caller(sleeping_dot, tmp_path):
    caller = subprocess.Popen(
        [sys.executable, "-c", "from tests.viz.test_render import draw_forever; draw_forever()"],
        cwd=Path(__file__).resolve().parents[2],
    )
    pid = sleeping_dot()
    try:
        assert not gone(pid, wait=0.2)
        caller.kill()
        caller.wait(timeout=30)
        assert gone(pid)
    finally:
        caller.kill()
        if not gone(pid, wait=0):
            os.kill(pid, signal.SIGKILL)


def draw_forever() -> None:
    """Run in a child process by the test above: render with a `dot` that never answers."""
    g = small_graph()[0]
    pipe(to_dot(g), "svg", "graph 'small'", timeout=600)


def test_drawings_over_the_render_limit_are_refused_but_dot_files_are_written(tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "RENDER_LIMIT", 3)
    g = small_graph()[0]
    with pytest.raises(gk.VizError, match=r"g.svg: \d+ boxes to lay out, over the 3 .* max_nodes=150"):
        render(g, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    assert render(g, tmp_path / "g.dot").read_text().startswith("digraph small {")
