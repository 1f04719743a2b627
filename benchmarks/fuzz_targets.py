"""A long differential fuzz run of the compile targets (gradkiln/testing/fuzz_targets.py).

    python benchmarks/fuzz_targets.py --graphs 2000 --seed 0 [--targets numpy,llvm] [--levels O0,O3] [--jobs 4]

Random sub-graphs of every op family run on each target at each level and are compared with the
numpy executor at O0. Prints the sub-graphs and outputs run, the mismatches (count and rate per
output and configuration) by known open class, the wall time, and for each unknown mismatch class
one reproducer minimized by delta debugging. The exit status is 1 when an unknown mismatch was found.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from gradkiln.testing.fuzz_targets import Mismatch, Summary, configurations, fuzz, minimize, signature


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=2000, help="random sub-graphs to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="numpy,llvm")
    parser.add_argument("--levels", default="O0,O3")
    parser.add_argument(
        "--per-compile",
        type=int,
        default=25,
        help="sub-graphs compiled together (a compile that fails is re-run to find its node, dearer on big graphs)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (same cases for any count)")
    parser.add_argument("--minimize-tries", type=int, default=60, help="candidate runs per minimization")
    args = parser.parse_args()
    configs = configurations(args.targets.split(","), args.levels.split(","))
    start = time.perf_counter()

    def progress(summary: Summary) -> None:
        print(
            f"  {summary.cases}/{args.graphs} sub-graphs, {len(summary.mismatches)} mismatches "
            f"({len(summary.unknown)} unknown), {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )

    summary = fuzz(args.seed, args.graphs, configs, args.per_compile, progress=progress, jobs=args.jobs)
    elapsed = time.perf_counter() - start
    compared = summary.outputs * len(configs)
    print(f"configurations: {', '.join(map(str, configs))} against numpy O0")
    print(f"sub-graphs: {summary.cases} ({summary.skipped} rejected by the reference), outputs: {summary.outputs}")
    print(
        f"mismatches: {len(summary.mismatches)} of {compared} compared outputs "
        f"({len(summary.mismatches) / max(compared, 1):.2%}), unknown: {len(summary.unknown)}; time {elapsed:.0f} s"
    )
    for name, count in Counter(m.known.name if m.known else "UNKNOWN" for m in summary.mismatches).most_common():
        print(f"  {count:6d}  {name}")
    print_reproducers(summary.unknown, args.minimize_tries)
    return 1 if summary.unknown else 0


def print_reproducers(mismatches: list[Mismatch], tries: int) -> None:
    """One minimized reproducer per unknown class (target, kind and ops on the way)."""
    first: dict[tuple, Mismatch] = {}
    for m in mismatches:
        first.setdefault(signature(m), m)
    for n, m in enumerate(first.values(), 1):
        count = sum(signature(o) == signature(m) for o in mismatches)
        small = minimize(m, tries)
        print(f"\n# --- unknown class {n}: {small.config}, {small.difference.kind} ({count} mismatches like it)")
        print(small.reproducer())


if __name__ == "__main__":
    sys.exit(main())
