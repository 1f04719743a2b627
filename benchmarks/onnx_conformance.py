"""Pass counts of the ONNX backend test suite (shipped inside `onnx`) per folder and backend.

    python benchmarks/onnx_conformance.py [--backends numpy,llvm,onnxruntime] [--failures] [--cases REGEX]

Runs every case of the node, simple, pytorch-converted and pytorch-operator folders through
gradkiln's numpy executor, gradkiln compiled with TVM for the CPU (llvm), and onnxruntime, and
prints the passes per folder side by side. A case passes when every data set's outputs match
the reference (the suite's own comparison and tolerances).
Cases run in a child process per backend and folder, so a case that crashes a compiler
(segfault) or runs past `--limit` seconds counts as a failure, is reported, and the run goes
on; the slowest cases are listed. `--failures` lists every
failing case with its error (to review tests/onnx_io/expected_failures.txt); `--cases` runs only
the cases whose name matches a regular expression (`--cases 'isnan|_mod_'`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import time
import warnings
from multiprocessing.connection import Connection
from typing import Any, Callable

import onnx
from onnx.backend.test.runner import Runner

from gradkiln.onnx_io.backend import GradkilnBackend, GradkilnTVMBackend
from gradkiln.testing.onnx_suite import SUITE_FOLDERS as FOLDERS
from gradkiln.testing.onnx_suite import load_case, suite_cases


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


def failure(backend: Any, model: onnx.ModelProto, data_sets: list, case: Any) -> str | None:
    """Why the case fails on `backend` (the first line of the error), or None when it passes."""
    try:
        rep = backend.prepare(model, "CPU")
        for inputs, expected in data_sets:
            Runner.assert_similar_outputs(expected, rep.run(inputs), rtol=case.rtol, atol=case.atol)
    except Exception as err:
        return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    return None


def _worker(name: str, folder: str, cases: list[str], start: int, results: Connection) -> None:
    """Run the named cases of `folder` from `start` on, sending (index, case name, failure, seconds)."""
    warnings.simplefilter("ignore")
    backend = BACKENDS[name][1]()
    wanted = set(cases)
    selected = [case for case in suite_cases(folder) if case.name in wanted]
    for index, case in enumerate(selected[start:], start=start):
        model, data_sets = load_case(case)
        began = time.perf_counter()
        why = failure(backend, model, data_sets, case)
        results.send((index, case.name, why, time.perf_counter() - began))


def run_folder(
    name: str, folder: str, cases: list[str], limit: float
) -> tuple[dict[str, str | None], dict[str, float]]:
    """{case: failure or None} and {case: seconds} of one backend on one folder. The cases run in
    a child process; a case that kills it (a segfault in a compiler) or runs past `limit`
    seconds fails, and a new child goes on from the next case."""
    outcomes: dict[str, str | None] = {}
    times: dict[str, float] = {}
    start, total = 0, len(cases)
    while start < total:
        receive, send = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.Process(target=_worker, args=(name, folder, cases, start, send))
        child.start()
        send.close()
        while start < total:
            result = _next_result(receive, child, limit)
            if isinstance(result, str):
                outcomes[cases[start]], times[cases[start]] = result, limit
                start += 1
                break
            index, case, why, spent = result
            outcomes[case], times[case], start = why, spent, index + 1
        child.join()
    return outcomes, times


def _next_result(receive: Connection, child: multiprocessing.Process, limit: float) -> tuple | str:
    """The child's next (index, case, failure, seconds), or why none comes: it died, or it ran
    past `limit` seconds on its case and is killed."""
    if not receive.poll(limit):
        child.kill()
        return f"timed out after {limit:.0f} s"
    try:
        return receive.recv()
    except EOFError:  # the child died while running its case
        return "crashed the process"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, from {', '.join(BACKENDS)}")
    parser.add_argument("--failures", action="store_true", help="also list each failing case with its error")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds a case may take before it fails")
    parser.add_argument("--slowest", type=int, default=5, help="list this many slowest cases per backend")
    parser.add_argument("--cases", default="", help="run only the cases whose name this regular expression matches")
    args = parser.parse_args()
    names = args.backends.split(",")
    chosen = re.compile(args.cases)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case_names = {
            folder: [case.name for case in suite_cases(folder) if chosen.search(case.name)] for folder in FOLDERS
        }
    totals = {folder: len(cases) for folder, cases in case_names.items()}
    outcomes, times = {}, {name: {} for name in names}
    for name in names:
        for folder in FOLDERS:
            outcomes[name, folder], spent = run_folder(name, folder, case_names[folder], args.limit)
            times[name].update({f"{folder}/{case}": t for case, t in spent.items()})
    seconds = {name: sum(times[name].values()) for name in names}
    passed = {key: sum(why is None for why in found.values()) for key, found in outcomes.items()}
    print("| folder | cases | " + " | ".join(BACKENDS[name][0] for name in names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for folder in FOLDERS:
        print(f"| {folder} | {totals[folder]} | " + " | ".join(str(passed[n, folder]) for n in names) + " |")
    total = sum(totals.values())
    print(f"| all | {total} | " + " | ".join(str(sum(passed[n, f] for f in FOLDERS)) for n in names) + " |")
    print("| seconds | | " + " | ".join(f"{seconds[n]:.0f}" for n in names) + " |")
    for name in names:
        slowest = sorted(times[name].items(), key=lambda item: -item[1])[: args.slowest]
        print(f"slowest on {BACKENDS[name][0]}: " + ", ".join(f"{case} {t:.1f} s" for case, t in slowest))
    for (name, folder), found in outcomes.items():
        for case, why in found.items():
            lost = why is not None and (why == "crashed the process" or why.startswith("timed out"))
            if lost or (args.failures and why is not None):
                print(f"{BACKENDS[name][0]} | {folder} | {case} | {why}")


if __name__ == "__main__":
    main()
