"""The main job end to end: the TVM-compiled training step really learns the digits."""

import xml.etree.ElementTree as ET

import onnx
import pytest

from gradkiln.cli import main
from gradkiln.demo import run_demo


@pytest.mark.slow
def test_demo_trains_with_tvm_and_writes_its_files(tmp_path):
    lines = []
    result = run_demo(epochs=6, target="llvm", out_dir=tmp_path, log=lines.append)
    assert result.test_accuracy > 0.9
    assert result.losses[-1] < result.losses[0] / 3
    assert sum("test accuracy" in line for line in lines) == 6
    forward, gradient, model = result.files
    assert ET.parse(forward).getroot().tag.endswith("svg")
    assert ET.parse(gradient).getroot().tag.endswith("svg")
    onnx.checker.check_model(onnx.load(model), full_check=True)


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


def test_cli_failure_is_one_line_on_stderr(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--target", "nonsense", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "LoweringError" in err and "nonsense" in err
