"""Names from user code or ONNX files reach DOT, SVG and the HTML report only as text: a hostile
graph, node, input, param, scope or dim name neither rewrites the drawing nor adds a link or a
script (checked with Graphviz's own parser, an XML parser, html.parser and headless Chromium)."""

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.cli import main
from gradkiln.viz import drawn_units, to_dot, to_svg

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PWNED = "document.body.setAttribute('data-pwned', '1')"
GRAPH = '<x> {evil [URL="javascript:alert(1)"]} digraph <y>'
INPUT = 'in" [URL="javascript:alert(2)"] x="'
PARAM = '<b>"]; s [URL="javascript:alert(3)"]; t["</b>.w\\" ] ; n [URL="javascript:alert(3)"] ; \\'
NODE = f"</text><a href='javascript:alert(4)'>x</a><script>{PWNED}</script><img src=x onerror=\"{PWNED}\">\\N\\l"
DIM = "N<script>"
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background"}


def hostile_graph():
    with gk.Graph(GRAPH) as g:
        x = gk.input(INPUT, (DIM, 3))
        w = gk.param(PARAM, np.ones((3, 2), np.float32))
        node = g.add_node("tanh", [(x @ w).value], name=NODE)
        out = gk.sum(gk.Tensor(g, node.outputs[0]))
    return g, out


def assert_inert(elements: list[tuple[str, dict]]) -> None:
    """No element links anywhere or runs anything: no script, no URL attribute, no event handler."""
    for tag, attrs in elements:
        assert tag.rpartition("}")[2] != "script"
        for name, value in attrs.items():
            local = name.rpartition("}")[2]
            assert local not in URL_ATTRIBUTES and not local.startswith("on"), (tag, name, value)
            assert name != "data-pwned"


@pytest.mark.parametrize("summary", [{}, {"group_by": "scope"}, {"max_nodes": 2}])
def test_the_dot_of_hostile_names_is_one_graph_with_every_unit(summary):
    g, out = hostile_graph()
    source = to_dot(g, [out.value], **summary).source
    layout = subprocess.run(["dot", "-Tjson"], input=source.encode(), capture_output=True, timeout=60)
    assert layout.returncode == 0, layout.stderr.decode()
    drawing = json.loads(layout.stdout)  # a second graph would be a second JSON document: "Extra data"
    assert drawing["name"] == GRAPH
    nodes = [o for o in drawing["objects"] if "nodes" not in o]  # clusters list their nodes
    assert len(nodes) == drawn_units(g, [out.value], **summary)
    assert not any("URL" in o or "href" in o for o in drawing["objects"])


def test_the_svg_shows_hostile_names_as_text_and_links_nowhere():
    g, out = hostile_graph()
    root = ET.fromstring(to_svg(g, [out.value]))
    assert_inert([(e.tag, e.attrib) for e in root.iter()])
    texts = {e.text for e in root.iter() if e.tag.endswith("}text")}
    assert {INPUT, PARAM, NODE} <= texts  # literally, backslashes included (no \N or \l expansion)
    assert root.find("{http://www.w3.org/2000/svg}g/{http://www.w3.org/2000/svg}title").text == GRAPH


class Elements(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """The report of the hostile graph, through the command line from an ONNX file."""
    folder = tmp_path_factory.mktemp("hostile")
    g, out = hostile_graph()
    model = folder / "hostile.onnx"
    gk.onnx_io.export(g, {"out": out}, path=model)
    assert main(["viz", str(model), "-o", str(folder / "g.svg"), "--report", str(folder / "r.html")]) == 0
    return folder / "g.svg", folder / "r.html"


def test_the_report_of_a_hostile_model_holds_no_link_or_script(hostile_report):
    svg, html = hostile_report
    assert_inert([(e.tag, e.attrib) for e in ET.parse(svg).getroot().iter()])
    page = Elements(html.read_text())
    assert_inert(page.elements)
    assert sum(tag == "svg" for tag, _ in page.elements) >= 2  # drawings and the timeline


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed: apt-get install chromium")
def test_chromium_runs_no_script_and_finds_no_javascript_url_in_the_report(hostile_report, tmp_path):
    _, html = hostile_report
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0"]
    command += [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    elements = Elements(dom.stdout).elements
    assert_inert(elements)  # the DOM after load: a script that ran would have set data-pwned
    assert sum(tag == "svg" for tag, _ in elements) >= 2
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
