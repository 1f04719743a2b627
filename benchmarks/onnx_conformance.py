"""Pass counts of the ONNX backend test suite (shipped inside `onnx`) per folder and backend.

    python benchmarks/onnx_conformance.py [--backends numpy,llvm,onnxruntime] [--failures]

Runs every case of the node, simple, pytorch-converted and pytorch-operator folders through
gradkiln's numpy executor, gradkiln compiled with TVM for the CPU (llvm), and onnxruntime, and
prints the passes per folder side by side. A case passes when every data set's outputs match
the reference (the suite's own comparison and tolerances).
Cases run in a child process per backend and folder, so a case that crashes a compiler
(segfault) counts as a failure, is reported, and the run goes on. `--failures` lists every
failing case with its error (to review tests/onnx_io/expected_failures.txt).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import warnings
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests
from onnx.backend.test.runner import Runner

from gradkiln.onnx_io.backend import GradkilnBackend, GradkilnTVMBackend

FOLDERS = ("node", "simple", "pytorch-converted", "pytorch-operator")


def _onnxruntime() -> Any:
    import onnxruntime  # an optional peer, imported only when asked for
    import onnxruntime.backend

    onnxruntime.set_default_logger_severity(4)  # it logs every model it refuses
    return onnxruntime.backend


BACKENDS: dict[str, tuple[str, Callable[[], Any]]] = {
    # name: (column title, backend factory)
    "numpy": ("gradkiln numpy", lambda: GradkilnBackend),
    "llvm": ("gradkiln TVM llvm", lambda: GradkilnTVMBackend),
    "onnxruntime": ("onnxruntime", _onnxruntime),
}


def _tensors(folder: Path, prefix: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(f))) for f in files]


def load_case(case: Any) -> tuple[onnx.ModelProto, list[tuple[list, list]]]:
    """The model and its (inputs, expected outputs) data sets, in memory or from disk."""
    if case.model is not None:
        sets = [([_normalize(i) for i in ins], [_normalize(o) for o in outs]) for ins, outs in case.data_sets]
        return case.model, sets
    folder = Path(case.model_dir)
    sets = [(_tensors(d, "input"), _tensors(d, "output")) for d in sorted(folder.glob("test_data_set*"))]
    return onnx.load(str(folder / "model.onnx")), sets


def _normalize(value: Any) -> Any:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value


def failure(backend: Any, model: onnx.ModelProto, data_sets: list, case: Any) -> str | None:
    """Why the case fails on `backend` (the first line of the error), or None when it passes."""
    try:
        rep = backend.prepare(model, "CPU")
        for inputs, expected in data_sets:
            Runner.assert_similar_outputs(expected, rep.run(inputs), rtol=case.rtol, atol=case.atol)
    except Exception as err:
        return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    return None


def _worker(name: str, folder: str, start: int, results: Connection) -> None:
    """Run the cases of `folder` from `start` on, sending (index, case name, failure, seconds)."""
    warnings.simplefilter("ignore")
    backend = BACKENDS[name][1]()
    for index, case in enumerate(load_model_tests(kind=folder)[start:], start=start):
        model, data_sets = load_case(case)
        began = time.perf_counter()
        why = failure(backend, model, data_sets, case)
        results.send((index, case.name, why, time.perf_counter() - began))


def run_folder(name: str, folder: str, total: int) -> tuple[dict[str, str | None], float]:
    """{case: failure or None} and seconds of one backend on one folder. The cases run in a child
    process; a case that kills it (a segfault in a compiler) fails, and a new child goes on
    from the next case."""
    outcomes: dict[str, str | None] = {}
    seconds, start = 0.0, 0
    while start < total:
        receive, send = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.Process(target=_worker, args=(name, folder, start, send))
        child.start()
        send.close()
        while start < total:
            try:
                index, case, why, spent = receive.recv()
            except EOFError:  # the child died while running case `start`
                outcomes[f"{folder} case {start}"] = "crashed the process"
                start += 1
                break
            outcomes[case], seconds, start = why, seconds + spent, index + 1
        child.join()
    return outcomes, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, from {', '.join(BACKENDS)}")
    parser.add_argument("--failures", action="store_true", help="also list each failing case with its error")
    args = parser.parse_args()
    names = args.backends.split(",")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        totals = {folder: len(load_model_tests(kind=folder)) for folder in FOLDERS}
    outcomes, seconds = {}, dict.fromkeys(names, 0.0)
    for name in names:
        for folder in FOLDERS:
            outcomes[name, folder], spent = run_folder(name, folder, totals[folder])
            seconds[name] += spent
    passed = {key: sum(why is None for why in found.values()) for key, found in outcomes.items()}
    print("| folder | cases | " + " | ".join(BACKENDS[name][0] for name in names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for folder in FOLDERS:
        print(f"| {folder} | {totals[folder]} | " + " | ".join(str(passed[n, folder]) for n in names) + " |")
    total = sum(totals.values())
    print(f"| all | {total} | " + " | ".join(str(sum(passed[n, f] for f in FOLDERS)) for n in names) + " |")
    print("| seconds | | " + " | ".join(f"{seconds[n]:.0f}" for n in names) + " |")
    for (name, folder), found in outcomes.items():
        for case, why in found.items():
            if why == "crashed the process" or (args.failures and why is not None):
                print(f"{BACKENDS[name][0]} | {folder} | {case} | {why}")


if __name__ == "__main__":
    main()
