"""Deployment bundles: the artifact, a structured manifest, the params, pinned requirements and a
standalone run.py that gives gradkiln's own results without gradkiln (in a fresh venv, too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import gradkiln as gk
from gradkiln import onnx_io
from gradkiln.cli import main as cli_main
from gradkiln.deploy import LOADER, write_bundle
from gradkiln.deploy import run as loader

# runs run.py as a script with gradkiln made unimportable
WITHOUT_GRADKILN = (
    "import runpy, sys; sys.modules['gradkiln'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _model() -> tuple[gk.Graph, dict[str, gk.Tensor]]:
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 4))
        mask = gk.input("mask", ("N", 3), "bool")
        w = gk.param("w", np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
        h = gk.where(mask, gk.tanh(x @ w), 0.0)
    return g, {"h": h, "total": gk.sum(h, axis=1)}


def _feeds(n: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {"x": rng.normal(size=(n, 4)).astype(np.float32), "mask": rng.random((n, 3)) > 0.3}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    graph, outputs = _model()
    executable = gk.compile(graph, outputs, target="llvm")
    return executable, write_bundle(executable, tmp_path_factory.mktemp("bundle") / "model.so")


def test_the_manifest_holds_shapes_as_data_and_the_requirements_pin_the_runtime(bundle):
    _, files = bundle
    manifest = json.loads(files.manifest.read_text())
    assert [(a["name"], a["kind"], a["dtype"], a["shape"]) for a in manifest["arguments"]] == [
        ("x", "input", "float32", ["N", 4]),
        ("mask", "input", "bool", ["N", 3]),
        ("w", "param", "float32", [4, 3]),
    ]
    assert manifest["outputs"] == [
        {"name": "h", "dtype": "float32", "shape": ["N", 3]},
        {"name": "total", "dtype": "float32", "shape": ["N"]},
    ]
    assert manifest["structure"] == "dict" and manifest["device"] == "cpu"
    requirements = files.requirements.read_text().splitlines()
    assert f"apache-tvm=={metadata.version('apache-tvm')}" in requirements
    assert "apache-tvm-ffi==0.1.14.post1" in requirements  # later releases segfault
    assert files.loader.read_bytes() == LOADER.read_bytes()
    with np.load(files.params) as params:
        np.testing.assert_array_equal(params["w"], np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))


def test_run_py_as_a_script_without_gradkiln_gives_gradkiln_results(bundle, tmp_path):
    executable, files = bundle
    feeds = _feeds()
    np.savez(tmp_path / "inputs.npz", **feeds)
    command = [sys.executable, "-c", WITHOUT_GRADKILN, str(files.loader), str(files.artifact)]
    done = subprocess.run(
        [*command, str(tmp_path / "inputs.npz"), "-o", str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # TVM's "Scope Loaded:" lines stay out of the user's terminal
    want = executable(**feeds)
    with np.load(tmp_path / "out.npz") as got:
        assert sorted(got.files) == ["h", "total"]
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


def test_run_py_as_a_module_checks_names_dtypes_and_shapes(bundle):
    executable, files = bundle
    model = loader.load(files.artifact)
    feeds = _feeds(3)
    want = executable(**feeds)
    got = model(feeds["x"], feeds["mask"])  # positionally, in the manifest's argument order
    np.testing.assert_allclose(got["total"], want["total"], rtol=1e-6)
    other = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(model(**feeds, w=other)["h"], executable(**feeds, w=other)["h"], rtol=1e-6)
    with pytest.raises(TypeError, match=r"missing inputs \['mask'\]; the model takes \(x, mask, w\)"):
        model(x=feeds["x"])
    with pytest.raises(TypeError, match="'mask' has dtype float32, the model takes bool"):
        model(x=feeds["x"], mask=np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"'mask' has shape \(2, 3\), the model takes \[N, 3\] with N=3"):
        model(x=feeds["x"], mask=feeds["mask"][:2])
    with pytest.raises(TypeError, match="unknown arguments"):
        model(**feeds, y=feeds["x"])


def test_gradkiln_compile_writes_the_bundle(tmp_path):
    graph, outputs = _model()
    onnx_io.export(graph, outputs, path=tmp_path / "mlp.onnx")
    (tmp_path / "out").mkdir()
    assert cli_main(["compile", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "out" / "mlp.so")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["mlp.so", "mlp.so.json", "mlp.so.params.npz", "requirements.txt", "run.py"]
    feeds = _feeds(2)
    got = loader.load(tmp_path / "out" / "mlp.so")(**feeds)
    want = gk.compile(graph, outputs)(**feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)


def test_a_bundle_never_replaces_files_it_did_not_write(tmp_path):
    graph, outputs = _model()
    executable = gk.compile(graph, outputs, target="llvm")
    (tmp_path / "requirements.txt").write_text("flask\n")
    with pytest.raises(gk.LoweringError, match=r"requirements.txt exists and was not written by gradkiln"):
        write_bundle(executable, tmp_path / "model.so")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requirements.txt"]  # refused before any work
    with pytest.raises(gk.LoweringError, match="compile for a TVM target"):
        write_bundle(gk.compile(graph, outputs, target="numpy"), tmp_path / "model.so")


@pytest.mark.slow
def test_run_py_in_a_fresh_venv_with_only_the_requirements_gives_gradkiln_results(bundle, tmp_path):
    executable, files = bundle
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--no-input", "--no-compile", "-q"]
    installed = subprocess.run([*pip, "-r", str(files.requirements)], capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:
        pytest.fail(f"pip could not install {files.requirements} into a fresh venv:\n{installed.stderr[-2000:]}")
    isolated = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    probe = subprocess.run([python, "-c", "import gradkiln"], capture_output=True, env=isolated, cwd=tmp_path)
    assert probe.returncode != 0  # the venv really lacks gradkiln
    feeds = _feeds(7)
    np.savez(tmp_path / "inputs.npz", **feeds)
    done = subprocess.run(
        [python, str(files.loader), str(files.artifact), str(tmp_path / "inputs.npz"), "-o", str(tmp_path / "o.npz")],
        capture_output=True,
        text=True,
        env=isolated,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    want = executable(**feeds)
    with np.load(tmp_path / "o.npz") as got:
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
    assert Path(files.loader).read_bytes() == LOADER.read_bytes()


def test_run_py_models_may_be_called_from_several_threads(bundle):
    executable, files = bundle
    model = loader.load(files.artifact)
    batches = [_feeds(n) for n in (1, 4, 9, 16)]
    expected = [executable(**feeds)["total"] for feeds in batches]
    failures: list[str] = []

    def work(offset: int) -> None:
        for k in range(20):
            index = (offset + k) % len(batches)
            got = model(**batches[index])["total"]
            if got.shape != expected[index].shape or not np.allclose(got, expected[index], rtol=1e-6):
                failures.append(f"thread {offset}, call {k}: wrong values")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
