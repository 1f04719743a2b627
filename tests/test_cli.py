"""The `gradkiln` command: info, grad, optimize, viz, train-graph and bench on ONNX models; exit codes 0, 1, 2."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import gradkiln as gk
from gradkiln.cli import main


@pytest.fixture
def mlp_onnx(tmp_path):
    """A small MLP exported to ONNX: x[N,4] -> tanh(x @ w + b) -> y[N,3]."""
    rng = np.random.default_rng(0)
    with gk.Graph("mlp") as g:
        x = gk.input("x", ("N", 4))
        w = gk.param("w", rng.normal(size=(4, 3)).astype(np.float32))
        b = gk.param("b", rng.normal(size=3).astype(np.float32))
        y = gk.tanh(x @ w + b) * gk.constant(np.float32(1.0))
    path = tmp_path / "mlp.onnx"
    gk.onnx_io.export(g, {"y": y}, path=path)
    return path, g, x, w, b, y


def test_info_lists_inputs_params_outputs_and_ops(mlp_onnx, capsys):
    path, *_ = mlp_onnx
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for part in ("MatMul 1", "Tanh 1", "x f32[N,4]", "w f32[4,3]", "15 values", "y f32[N,3]"):
        assert part in out


def test_info_reports_unsupported_ops_without_failing(tmp_path, capsys):
    node = onnx.helper.make_node("NoSuchOp", ["x"], ["y"], domain="example.custom")
    graph = onnx.helper.make_graph(
        [node],
        "custom",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("example.custom", 1)]
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    assert main(["info", str(path)]) == 0
    assert "does not import" in capsys.readouterr().out


def test_grad_writes_a_model_whose_gradients_match_gradkiln(mlp_onnx, tmp_path):
    path, g, _, w, b, y = mlp_onnx
    out = tmp_path / "grad.onnx"
    assert main(["grad", str(path), "-o", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    data = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    seed = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": data, "seed_y": seed})))
    with g:
        seed_in = gk.input("seed", ("N", 3))
    dw, db = gk.grad(y, [w, b], seed=seed_in)
    want_w, want_b = gk.compile(g, [dw, db])(x=data, seed=seed)
    np.testing.assert_allclose(got["grad_w"], want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["grad_b"], want_b, rtol=1e-5, atol=1e-6)


def test_optimize_shrinks_the_model_and_keeps_its_values(mlp_onnx, tmp_path, capsys):
    path, *_ = mlp_onnx
    out = tmp_path / "opt.onnx"
    assert main(["optimize", str(path), "-o", str(out), "--level", "O1"]) == 0
    assert "cse" in capsys.readouterr().out
    data = np.ones((2, 4), np.float32)
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": data})
    after = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": data})
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)


def test_viz_renders_an_onnx_model(mlp_onnx, tmp_path):
    path, *_ = mlp_onnx
    out = tmp_path / "g.svg"
    assert main(["viz", str(path), "-o", str(out)]) == 0
    assert "<svg" in out.read_text()


def test_a_missing_file_is_one_line_on_stderr_and_exit_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.onnx" in err


@pytest.mark.slow
def test_compile_writes_an_artifact_that_runs_with_tvm_alone(mlp_onnx, tmp_path):
    path, g, _, _, _, y = mlp_onnx
    artifact = tmp_path / "mlp.so"
    assert main(["compile", str(path), "-o", str(artifact), "--target", "llvm"]) == 0
    manifest = json.loads((tmp_path / "mlp.so.json").read_text())
    assert [a["name"] for a in manifest["arguments"]] == ["x", "w", "b"]
    data = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    loader = f"""
import json, sys, numpy as np, tvm, tvm.runtime.vm
manifest = json.load(open({str(tmp_path / "mlp.so.json")!r}))
params = np.load({str(tmp_path)!r} + "/" + manifest["params_file"])
feeds = dict(params) | {{"x": np.load({str(tmp_path / "x.npy")!r})}}
vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module({str(artifact)!r}), tvm.cpu())
out = vm["main"](*[tvm.runtime.tensor(feeds[a["name"]]) for a in manifest["arguments"]])
np.save({str(tmp_path / "y.npy")!r}, out[0].numpy())
assert "gradkiln" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", loader], check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), gk.compile(g, y)(x=data), rtol=1e-5, atol=1e-6)


def test_train_graph_writes_a_step_whose_sgd_update_matches_numpy(mlp_onnx, tmp_path, capsys):
    path, g, *_ = mlp_onnx
    out = tmp_path / "train.onnx"
    args = ["train-graph", str(path), "--loss", "mse", "--optimizer", "sgd", "--lr", "0.5", "-o", str(out)]
    assert main(args) == 0
    assert "inputs to feed: x, labels" in capsys.readouterr().out
    rng = np.random.default_rng(4)
    x, labels = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # params are inputs with initializers; ORT warns about each
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"x": x, "labels": labels})))
    w0, b0 = g.param_values()["w"], g.param_values()["b"]
    y = np.tanh(x @ w0 + b0)
    dz = 2 * (y - labels) / y.size * (1 - y * y)  # numpy oracle: d mean((y - labels)**2) / d(x @ w + b)
    np.testing.assert_allclose(got["loss"], np.mean((y - labels) ** 2), rtol=1e-5)
    np.testing.assert_allclose(got["grad.w"], x.T @ dz, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["w.new"], w0 - 0.5 * (x.T @ dz), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["b.new"], b0 - 0.5 * dz.sum(0), rtol=1e-4, atol=1e-7)


def test_train_graph_refuses_a_learning_rate_without_an_optimizer(mlp_onnx, tmp_path, capsys):
    path, *_ = mlp_onnx
    assert main(["train-graph", str(path), "--lr", "0.1", "-o", str(tmp_path / "t.onnx")]) == 1
    assert "hyperparameters ['lr'] do not apply to optimizer None" in capsys.readouterr().err


def test_viz_writes_the_drawing_and_a_pass_by_pass_report(mlp_onnx, tmp_path, capsys):
    path, *_ = mlp_onnx
    svg, html = tmp_path / "g.svg", tmp_path / "report.html"
    assert main(["viz", str(path), "-o", str(svg), "--report", str(html), "--level", "O1", "--bind", "N=8"]) == 0
    assert "<svg" in svg.read_text()
    page = html.read_text()
    assert page.count("<svg") >= 2 and "N=8" in page and "Memory plan" in page
    assert str(html) in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--bind", "N"], ["--bind", "N=0"], ["--level", "O7"]])
def test_viz_usage_errors_exit_2(mlp_onnx, tmp_path, capsys, bad):
    path, *_ = mlp_onnx
    with pytest.raises(SystemExit) as exit_info:
        main(["viz", str(path), "-o", str(tmp_path / "g.svg"), *bad])
    assert exit_info.value.code == 2 and "usage: gradkiln viz" in capsys.readouterr().err


def test_an_unwritable_output_is_one_line_on_stderr_and_exit_1(mlp_onnx, tmp_path, capsys):
    path, *_ = mlp_onnx
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["viz", str(path), "-o", str(blocker / "g.svg")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("gradkiln viz: ") and "Traceback" not in err


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_bench_times_the_training_step_on_a_target(mlp_onnx, capsys, target):
    argv = ["bench", str(mlp_onnx[0]), "--target", target, "--grad", "--repeats", "3", "--bind", "N=4", "--level", "O3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "forward and parameter gradients" in out and "3 runs: median" in out and "{'N': 4}" in out


def test_bench_rejects_a_bad_repeat_count_as_a_usage_error(mlp_onnx):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(mlp_onnx[0]), "--repeats", "0"])
    assert exit_info.value.code == 2
