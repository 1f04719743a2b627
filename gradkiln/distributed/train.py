"""Train an ONNX model data-parallel: `torchrun --nproc-per-node 2 -m gradkiln.distributed.train
model.onnx data.npz --steps 100 --batch 32`.

Every worker imports the model for training (`onnx_io.training_graph`: loss, gradients, optimizer;
dropout off), makes the step data-parallel (`data_parallel`: the loss reported is the mean over
the workers) and trains on its shard of each global batch. `data.npz` holds one array per data
input of the step (the model's inputs and `labels`), rows along axis 0; step i reads the global
batch of rows [i * batch, (i + 1) * batch) modulo the row count, so a run is a function of the
step count alone. With `--checkpoint DIR`, rank 0 writes an atomic checkpoint of the whole state
every `--every` steps, and a restarted job resumes from the newest one, ending where an
uninterrupted run ends. Rank 0 prints the loss of each step and writes the final state to
`--output`. Under torchrun the environment names the group; a collective that waits longer than
`--timeout` seconds (a lost worker) ends every worker with an error naming the lost rank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..atomic import write_atomic_with
from ..graph.errors import DistributedError
from ..onnx_io import training_graph
from .checkpoint import Checkpoints
from .communicator import destroy_process_group, get_rank, get_world_size, init_process_group, shard
from .data_parallel import DEFAULT_BUCKET_BYTES, data_parallel

StepCallback = Callable[[int, dict[str, np.ndarray]], None]


def global_batch(data: dict[str, np.ndarray], step: int, batch: int) -> dict[str, np.ndarray]:
    """The rows of step `step` (0-based): [step * batch, (step + 1) * batch) modulo the row count."""
    rows = next(iter(data.values())).shape[0]
    index = np.arange(step * batch, (step + 1) * batch) % rows
    return {k: v[index] for k, v in data.items()}


def train(
    model: Any,
    data: dict[str, np.ndarray],
    steps: int,
    batch: int,
    optimizer: str = "sgd",
    hyperparameters: dict[str, float] | None = None,
    loss: str = "cross_entropy",
    target: str = "numpy",
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    checkpoints: Checkpoints | None = None,
    every: int = 10,
    on_step: StepCallback | None = None,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Train `model` data-parallel over the current group for `steps` steps in all (resuming from
    the newest checkpoint, if any); (the final state, the mean loss of each step run here).
    `on_step(step, state)` is called after each step (tests use it to stop a job midway)."""
    step_graph = training_graph(model, loss=loss, optimizer=optimizer, hyperparameters=hyperparameters, dropout="off")
    parallel = data_parallel(step_graph, bucket_bytes=bucket_bytes, average_outputs=["loss"])
    run = parallel.compile(target)
    start, state = 0, parallel.initial_state()
    resumed = checkpoints.latest() if checkpoints is not None else None
    if resumed is not None:
        start, state = resumed
    losses = []
    for step in range(start, steps):
        feeds = {k: shard(v) for k, v in global_batch(data, step, batch).items()}
        results = run(**feeds, **state)
        state = parallel.next_state(results)
        losses.append(float(results["loss"]))
        if checkpoints is not None and (step + 1) % every == 0 and get_rank() == 0:
            checkpoints.save(step + 1, state)
        if on_step is not None:
            on_step(step + 1, state)
    return state, losses


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradkiln.distributed.train", description=__doc__.split("\n\n")[1].replace("\n", " ")
    )
    parser.add_argument("model", help="the ONNX model to train")
    parser.add_argument("data", help=".npz with one array per data input of the step (model inputs, labels)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32, help="the global batch (divisible by the worker count)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (the optimizer's default if unset)")
    parser.add_argument("--loss", choices=["cross_entropy", "mse"], default="cross_entropy")
    parser.add_argument("--target", choices=["numpy", "llvm"], default="numpy")
    parser.add_argument("--bucket-mb", type=float, default=DEFAULT_BUCKET_BYTES / 2**20)
    parser.add_argument("--checkpoint", type=Path, default=None, help="folder of atomic checkpoints to resume from")
    parser.add_argument("--every", type=int, default=10, help="checkpoint every this many steps")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a collective may wait")
    parser.add_argument("--output", type=Path, default=None, help=".npz the final state is written to (rank 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    init_process_group(timeout=args.timeout)
    try:
        with np.load(args.data) as archive:
            data = {k: archive[k] for k in archive.files}
        state, losses = train(
            args.model, data, args.steps, args.batch, args.optimizer, None if args.lr is None else {"lr": args.lr},
            args.loss, args.target, int(args.bucket_mb * 2**20),
            Checkpoints(args.checkpoint) if args.checkpoint else None, args.every,
        )  # fmt: skip
        if get_rank() == 0:
            first = args.steps - len(losses)
            for i, value in enumerate(losses):
                print(f"step {first + i + 1}: loss {value:.6f}")
            print(f"{get_world_size()} workers, {len(losses)} steps from step {first}")
            if args.output is not None:
                write_atomic_with(args.output, lambda tmp: np.savez(tmp, **state))
    except DistributedError as error:
        print(f"gradkiln.distributed.train: rank {get_rank()}: {error}", file=sys.stderr)
        return 1
    finally:
        destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
