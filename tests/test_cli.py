"""The `gradkiln` command: info, grad, optimize, viz, train-graph and bench on ONNX models; exit codes 0, 1, 2."""

import json
import os
import re
import subprocess
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import gradkiln as gk
from gradkiln import cli, demo
from gradkiln.cli import main
from gradkiln.demo import DemoResult


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


@pytest.fixture(scope="module")
def torch_onnx(tmp_path_factory):
    """A conv + batch-norm + linear torch model exported with torch.onnx.export's defaults (weights as
    initializers, not inputs), every parameter and buffer random so torch shares none of them."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.Linear(12, 2)
    ).eval()
    with torch.no_grad():
        for tensor in [*net.parameters(), net[2].running_mean]:
            tensor.copy_(torch.randn_like(tensor))
    path = tmp_path_factory.mktemp("torch") / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(4, 2, 4, 4),), str(path), dynamo=False)
    return path, [name for name, _ in net.named_parameters()]


def _taken_as_params(out: str) -> list[str]:
    """The names --verbose reports as taken as parameters."""
    return re.findall(r"^param (\S+)$", out, re.MULTILINE)


def test_every_command_reports_the_same_params_of_a_default_torch_export(torch_onnx, tmp_path, capsys):
    path, names = torch_onnx
    assert main(["info", str(path), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert _taken_as_params(out) == names and f"params: {len(names)}" in out
    assert "  0.weight f32[3,2,3,3] 216 bytes" in out and "  4.bias f32[2] 8 bytes" in out
    assert "not a param 2.running_mean: a BatchNormalization running statistic" in out
    assert main(["grad", str(path), "-o", str(tmp_path / "g.onnx"), "--verbose"]) == 0
    assert _taken_as_params(capsys.readouterr().out) == names
    grads = [o.name for o in onnx.load(tmp_path / "g.onnx").graph.output if o.name.startswith("grad_")]
    assert grads == [f"grad_{name}" for name in names]
    assert main(["bench", str(path), "--grad", "--target", "numpy", "--repeats", "1", "--verbose"]) == 0
    assert _taken_as_params(capsys.readouterr().out) == names
    assert main(["train-graph", str(path), "-o", str(tmp_path / "t.onnx"), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert _taken_as_params(out) == names and f"wrote {tmp_path / 't.onnx'}: {len(names)} trainable" in out


def test_freeze_removes_exactly_the_matching_params_from_grad(torch_onnx, tmp_path, capsys):
    path, names = torch_onnx
    assert main(["grad", str(path), "-o", str(tmp_path / "g.onnx"), "--freeze", "4.*", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "frozen 4.weight: matches frozen= (--freeze)" in out and "frozen 4.bias: matches frozen= (--freeze)" in out
    grads = [o.name for o in onnx.load(tmp_path / "g.onnx").graph.output if o.name.startswith("grad_")]
    assert grads == [f"grad_{name}" for name in names if not name.startswith("4.")]


def test_a_freeze_pattern_matching_no_param_is_one_line_naming_the_params(torch_onnx, tmp_path, capsys):
    path, _ = torch_onnx
    assert main(["grad", str(path), "-o", str(tmp_path / "g.onnx"), "--freeze", "fc.*"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradkiln grad: error: GradientError: frozen patterns ['fc.*'] match no parameter")
    assert "'4.weight'" in err and err.count("\n") == 1


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
def test_viz_usage_errors_exit_2_with_one_line(mlp_onnx, tmp_path, capsys, bad):
    path, *_ = mlp_onnx
    with pytest.raises(SystemExit) as exit_info:
        main(["viz", str(path), "-o", str(tmp_path / "g.svg"), *bad])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"gradkiln viz: error: argument {bad[0]}: ") and "gradkiln viz --help" in err


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


def _wall(command: list[str]) -> float:
    """The fastest of three runs of `command`, in seconds of wall time."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        times.append(time.perf_counter() - start)
    return min(times)


def test_help_builds_without_importing_the_compiler():
    code = (
        "import sys; from gradkiln.cli import build_parser; build_parser(); "
        "print(sorted({'sympy', 'networkx', 'numpy', 'onnx', 'tvm', 'graphviz'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_help_answers_in_under_half_a_second():
    """Measured beside the interpreter's own start-up, which a loaded machine slows as much."""
    baseline = _wall([sys.executable, "-c", "pass"])
    helped = _wall([sys.executable, "-m", "gradkiln.cli", "--help"])
    assert helped - baseline < 0.5, f"--help took {helped:.2f} s, python alone {baseline:.2f} s"
    assert _wall([sys.executable, "-m", "gradkiln.cli", "viz", "--help"]) - baseline < 0.5


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"gradkiln {version('gradkiln')}\n"


@pytest.mark.parametrize("target", ['{"kind": llvm}', '{"kind": "llvm",}', '{"keys": 1}'])
def test_a_malformed_json_target_is_one_usage_line(mlp_onnx, capsys, target):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(mlp_onnx[0]), "--target", target])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("gradkiln bench: error: argument --target: ") and target in err


def test_a_model_that_does_not_import_is_one_line_unless_debugging(tmp_path, capsys, monkeypatch):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a protobuf \xff\xff\xff")
    assert main(["viz", str(model), "-o", str(tmp_path / "g.dot")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gradkiln viz: error: ONNXError: ") and "broken.onnx" in err
    with pytest.raises(gk.ONNXError):
        main(["--debug", "viz", str(model), "-o", str(tmp_path / "g.dot")])
    monkeypatch.setenv("GRADKILN_DEBUG", "1")
    with pytest.raises(gk.ONNXError):
        main(["viz", str(model), "-o", str(tmp_path / "g.dot")])


def test_a_multi_line_error_message_is_joined_into_one_line(mlp_onnx, tmp_path, capsys, monkeypatch):
    def fail(path):
        raise gk.GraphError("first line\n  second line\n")

    monkeypatch.setattr(cli, "_load", fail)
    assert main(["grad", str(mlp_onnx[0]), "-o", str(tmp_path / "g.onnx")]) == 1
    assert capsys.readouterr().err == "gradkiln grad: error: GraphError: first line second line\n"


def test_the_installed_command_prints_one_line_and_no_traceback(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x00garbage")
    run = subprocess.run(
        [sys.executable, "-m", "gradkiln.cli", "info", str(model)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_a_failing_demo_says_why(monkeypatch, tmp_path, capsys):
    def weak_demo(*args):
        return DemoResult(0.5, [2.3, 2.2], 0.0, 0.0, [])

    monkeypatch.setattr(demo, "run_demo", weak_demo)
    assert main(["demo", "--epochs", "2", "--out-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "final test accuracy 0.500" in captured.out
    assert captured.err.count("\n") == 1 and "test accuracy 0.500 is not above 0.9 after 2 epoch(s)" in captured.err


def test_the_demo_output_folder_is_ignored_by_git():
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    check = subprocess.run(["git", "check-ignore", "-q", "gradkiln-demo/forward.svg"], cwd=root, timeout=30)
    assert check.returncode == 0


@pytest.mark.parametrize("command", [["viz", "-o", "{tmp}/g.dot"], ["bench", "--repeats", "1"]])
def test_a_binding_for_a_dim_the_model_lacks_is_refused(mlp_onnx, tmp_path, capsys, command):
    argv = [command[0], str(mlp_onnx[0]), *(c.format(tmp=tmp_path) for c in command[1:]), "--bind", "M=4"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"gradkiln {command[0]}: error: --bind M: the model has no such dim; its symbolic dims are N\n"
    )
    assert not (tmp_path / "g.dot").exists()


@pytest.mark.parametrize("command", ["grad", "optimize", "compile", "viz", "train-graph"])
def test_a_missing_output_folder_is_refused_not_created(mlp_onnx, tmp_path, capsys, command):
    out = tmp_path / "missing" / "dir" / ("m.so" if command == "compile" else "m.onnx")
    assert main([command, str(mlp_onnx[0]), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"gradkiln {command}: error: cannot write {out}: {out.parent} does not exist (create it first)\n"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["grad", "-o", "{model}"],
        ["optimize", "-o", "{model}"],
        ["train-graph", "-o", "{model}"],
        ["compile", "-o", "{model}"],
        ["viz", "-o", "{model}"],
        ["viz", "-o", "{tmp}/g.dot", "--report", "{model}"],
        ["viz", "-o", "{tmp}/g.dot", "--report", "{tmp}/../{tmp_name}/g.dot"],
        ["viz", "-o", "{tmp}/g.dot", "--report", "{alias}"],
    ],
)
def test_no_command_writes_over_its_input_or_another_output(mlp_onnx, tmp_path, capsys, extra):
    model = mlp_onnx[0]
    alias = tmp_path / "alias.onnx"
    os.link(model, alias)  # a hard link: another path, the same file
    before = model.read_bytes()
    names = {"model": model, "tmp": tmp_path, "tmp_name": tmp_path.name, "alias": alias}
    argv = [extra[0], str(model), *(part.format(**names) for part in extra[1:])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gradkiln {extra[0]}: error: refusing to write ") and err.count("\n") == 1
    assert model.read_bytes() == before and not (tmp_path / "g.dot").exists()


def lstm_onnx(path, steps=8, hidden=16, features=8):
    """One ONNX LSTM layer: its import has about 200 nodes and no name scopes."""
    rng = np.random.default_rng(0)
    weights = [
        onnx.numpy_helper.from_array(rng.normal(size=(1, 4 * hidden, n)).astype(np.float32), name)
        for name, n in (("W", features), ("R", hidden))
    ]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden)],
        "lstm",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [steps, 1, features])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [steps, 1, 1, hidden])],
        weights,
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 14)]), path)
    return path


def test_viz_honours_max_nodes_on_a_model_without_name_scopes(tmp_path, capsys):
    model = lstm_onnx(tmp_path / "lstm.onnx")
    out = tmp_path / "lstm.dot"
    assert main(["viz", str(model), "-o", str(out), "--max-nodes", "150"]) == 0
    statements = [line for line in out.read_text().splitlines() if re.match(r"\s*(\d+|box\d+) \[", line)]
    nodes, boxes = re.search(r"(\d+) nodes drawn as (\d+) boxes", capsys.readouterr().out).groups()
    assert len(statements) == int(boxes) <= 150 < int(nodes)


def test_viz_says_when_max_nodes_cannot_be_met(mlp_onnx, tmp_path, capsys):
    assert main(["viz", str(mlp_onnx[0]), "-o", str(tmp_path / "g.dot"), "--max-nodes", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(r"gradkiln viz: note: \d+ boxes drawn, over --max-nodes 2: ", err)


def test_an_interrupt_is_one_line_and_exit_130(mlp_onnx, capsys, monkeypatch):
    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load", interrupted)
    assert main(["info", str(mlp_onnx[0])]) == 130
    assert capsys.readouterr().err == "gradkiln info: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "info", str(mlp_onnx[0])])


def test_no_command_writes_over_the_models_external_data(mlp_onnx, tmp_path, capsys):
    model = onnx.load(mlp_onnx[0])
    path = tmp_path / "external.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="weights.onnx", size_threshold=0)
    weights = tmp_path / "weights.onnx"
    before = weights.read_bytes()
    assert main(["optimize", str(path), "-o", str(weights)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gradkiln optimize: error: refusing to write {weights}: it is an input ({weights}); ")
    assert weights.read_bytes() == before
    assert main(["optimize", str(path), "-o", str(tmp_path / "out.onnx")]) == 0  # the model itself reads fine
