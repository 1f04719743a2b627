"""The pass-by-pass HTML report: its content parsed with html.parser, the memory timeline checked
against the plan and by hand, the measured profile, and the page rendered in headless Chromium."""

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.passes import plan_memory
from gradkiln.viz import live_bytes, report
from gradkiln.viz.timeline import timeline_svg

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Page(HTMLParser):
    """The tags, attributes and text of a page, in order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.cells: list[list[str]] = []  # the text of each <tr>
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.cells.append([])

    def handle_data(self, data):
        self.text.append(data)
        if self.cells and data.strip() and self.tags[-1][0] in ("td", "th"):
            self.cells[-1].append(data.strip())

    def count(self, tag: str, **attrs) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """An MLP gradient graph with foldable constants, reported under O2 with N bound to 16."""
    rng = np.random.default_rng(0)
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 6))
        y = gk.input("y", ("N",), "int64")
        w1 = gk.param("fc1.weight", rng.normal(size=(6, 5)).astype(np.float32))
        w2 = gk.param("fc2.weight", rng.normal(size=(5, 3)).astype(np.float32))
        scale = gk.constant(np.float32(2.0)) * gk.constant(np.float32(0.5))  # folds to 1, then x*1 goes
        loss = gk.cross_entropy(gk.relu(x @ w1 * scale) @ w2, y)
        grads = gk.grad(loss, [w1, w2])
    path = report(g, [loss, *grads], "O2", tmp_path_factory.mktemp("r") / "report.html", bindings={"N": 16})
    return path, Page(path.read_text())


def test_the_report_is_one_self_contained_page(small_report):
    path, page = small_report
    assert page.count("script") == 0 and page.count("link") == 0 and page.count("img") == 0
    assert not [a for _, a in page.tags if any(str(a.get(k, "")).startswith("http") for k in ("src", "href"))]
    assert not list(path.parent.glob(".report.*"))  # no temporary left behind


def test_pass_table_and_one_snapshot_per_changing_pass(small_report):
    _, page = small_report
    rows = [r for r in page.cells if r and r[0] in ("constant_fold", "simplify", "cse", "dce")]
    changed = [r for r in rows if r[-1] == "yes"]
    assert changed and len(rows) >= 4
    assert page.count("details", **{"class": "snapshot"}) == 1 + len(changed)
    graphs = [a for t, a in page.tags if t == "svg" and a.get("class") != "timeline"]
    assert len(graphs) == 1 + len(changed)
    assert "input graph" in "".join(page.text) and "after constant_fold (round 1)" in "".join(page.text)


def test_memory_timeline_is_drawn_with_its_peak(small_report):
    _, page = small_report
    assert page.count("svg", **{"class": "timeline"}) == 1
    assert page.count("circle", **{"class": "peak"}) == 1
    (line,) = [a for t, a in page.tags if t == "polyline"]
    assert len(line["points"].split()) > 10
    assert any(text.startswith("peak ") for text in page.text)


def test_profile_lists_measured_nodes_hottest_first(small_report):
    _, page = small_report
    header = next(r for r in page.cells if r[:2] == ["node", "op"])
    assert header[-2:] == ["µs", "time share"]
    start = page.cells.index(header) + 1
    rows = [r for r in page.cells[start:] if len(r) == len(header)]
    times = [float(r[-2]) for r in rows]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert "matmul" in {r[1] for r in rows}
    shares = [float(r[-1].rstrip("%")) for r in rows]  # the Profile's shares, less the constants' (not listed)
    assert len(rows) < 40 and 50 < sum(shares) <= 100 + 0.05 * len(rows)
    assert "numpy executor's .profile, random feeds, mean of 3 run(s)" in "".join(page.text)


def test_live_bytes_by_hand():
    """x (64 B, fed) -> a = x*2 (64 B) -> b = a+1 (in place, a's buffer) -> c = sum(b) (4 B, padded to 64)."""
    with gk.Graph("chain") as g:
        x = gk.input("x", (16,))
        c = gk.sum(x * 2.0 + 1.0)
    plan = plan_memory(g, [c.value], schedule="topological")
    timeline = live_bytes(g, plan)
    ops = [g.node(n).op for n in plan.schedule]
    expected = {"input": 0, "constant": None, "mul": 64, "add": 64, "sum": 128}
    for op, live in zip(ops, timeline.live):
        if expected[op] is not None:
            assert live == expected[op], (op, timeline.live)
    assert timeline.peak == 128 and g.node(plan.schedule[timeline.peak_step]).op == "sum"


def test_timeline_peak_is_the_plans_lower_bound(deep_mlp):
    g, loss, _, grads = deep_mlp
    plan = plan_memory(g, [loss.value, *(t.value for t in grads)], bindings={"N": 32})
    timeline = live_bytes(g, plan)
    assert timeline.peak == plan.lower_bound_bytes <= plan.peak_bytes
    svg = timeline_svg(timeline, plan.peak_bytes)
    assert svg.count("<polyline") == 1 and timeline.peak_label in svg


def test_unbound_symbols_are_taken_as_one_and_said(tmp_path):
    with gk.Graph("sym") as g:
        out = gk.sum(gk.exp(gk.input("x", ("B", 3))))
    text = report(g, out, "O1", tmp_path / "r.html", profile=False).read_text()
    assert "B=1 (B not given: taken as 1" in text and "not measured" in text


@pytest.mark.parametrize(("pipeline", "bindings", "match"), [("O9", None, "O9"), ("O1", {"N": 0}, "positive")])
def test_bad_report_arguments_are_clear_errors(tmp_path, pipeline, bindings, match):
    with gk.Graph("e") as g:
        out = gk.sum(gk.input("x", ("N", 2)))
    with pytest.raises(gk.VizError, match=match):
        report(g, out, pipeline, tmp_path / "r.html", bindings=bindings)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.needs("chromium")
def test_chromium_renders_the_report_without_errors(small_report, tmp_path):
    path, page = small_report
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0"]
    command += [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*command, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == page.count("svg") >= 3
    assert "gradkiln report: mlp" in dom.stdout and "Per-kernel profile" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*command, "--window-size=1200,1600", f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_tvm_target_profiles_kernels_with_the_nodes_they_compute(tmp_path):
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 6))
        w = gk.param("w", np.ones((6, 3), np.float32))
        loss = gk.sum(gk.tanh(x @ w) * 2.0)
        (dw,) = gk.grad(loss, [w])
    page = Page(report(g, [loss, dw], "O3", tmp_path / "r.html", bindings={"N": 8}, target="llvm").read_text())
    header = next(r for r in page.cells if r[:2] == ["kernel", "calls"])
    following = page.cells[page.cells.index(header) + 1 :]
    rows = following[: next(i for i, r in enumerate(following) if r[:2] == ["node", "op"])]
    times = [float(r[2]) for r in rows]
    assert times and times == sorted(times, reverse=True)
    assert any("%" in r[4] for r in rows)  # the nodes each kernel computes
    assert "TVM llvm's .profile, random feeds" in "".join(page.text)
