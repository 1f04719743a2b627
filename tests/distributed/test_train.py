"""The launcher: `torchrun -m gradkiln.distributed.train` trains an imported model on 2 processes to
the state one process reaches on the whole batches, and a job killed midway resumes from its last
atomic checkpoint to exactly the state of an uninterrupted run."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from gradkiln import distributed as dist
from gradkiln.distributed.checkpoint import Checkpoints
from gradkiln.distributed.train import global_batch, train
from gradkiln.onnx_io import training_graph

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def model_and_data() -> tuple[bytes, dict]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(4, 5),), buffer, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(24, 5)).astype("float32"), "labels": rng.integers(0, 3, 24)}
    return buffer.getvalue(), data


def one_process(model: bytes, data: dict, steps: int, batch: int) -> dict:
    step = training_graph(model, optimizer="sgd", hyperparameters={"lr": 0.1}, dropout="off")
    run, state = step.compile(), step.initial_state()
    for i in range(steps):
        state = step.next_state(run(**global_batch(data, i, batch), **state))
    return state


@pytest.mark.slow
def test_torchrun_trains_an_imported_model_as_one_process(tmp_path):
    model, data = model_and_data()
    (tmp_path / "model.onnx").write_bytes(model)
    np.savez(tmp_path / "data.npz", **data)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "gradkiln.distributed.train", "model.onnx", "data.npz", "--steps", "6", "--batch", "8"]
    command += ["--lr", "0.1", "--output", "final.npz"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 workers, 6 steps from step 0" in done.stdout
    with np.load(tmp_path / "final.npz") as final:
        for name, want in one_process(model, data, 6, 8).items():
            np.testing.assert_allclose(final[name], want, rtol=2e-5, atol=2e-6, err_msg=name)


def _train_job(model: bytes, data: dict, folder: str, kill_at: int | None) -> tuple[dict, list[float]]:
    def kill(step: int, state: dict) -> None:
        if step == kill_at:
            os._exit(9)  # every worker killed, after the checkpoint of step 4 and one more step

    return train(model, data, 7, 8, hyperparameters={"lr": 0.1}, checkpoints=Checkpoints(folder), every=2, on_step=kill)


def test_a_killed_job_resumes_from_its_last_checkpoint_to_the_uninterrupted_state(tmp_path):
    model, data = model_and_data()
    uninterrupted = dist.spawn(_train_job, 2, model, data, str(tmp_path / "a"), None)
    with pytest.raises(dist.DistributedError, match="died with exit code 9"):
        dist.spawn(_train_job, 2, model, data, str(tmp_path / "b"), 5)
    assert Checkpoints(tmp_path / "b").latest()[0] == 4
    resumed = dist.spawn(_train_job, 2, model, data, str(tmp_path / "b"), None)
    assert len(resumed[0][1]) == 3  # steps 5, 6 and 7 ran after the restart
    assert resumed[0][1] == uninterrupted[0][1][4:]
    for name, want in uninterrupted[0][0].items():
        np.testing.assert_array_equal(resumed[0][0][name], want, err_msg=name)
        np.testing.assert_array_equal(resumed[1][0][name], want, err_msg=name)
