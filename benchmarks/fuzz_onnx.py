"""A long fuzz run of the ONNX importer: the fuzz tests with many more examples than CI runs.

    python benchmarks/fuzz_onnx.py [--examples 20000] [--flips 20000] [--seed 0]

Mutated, truncated and structurally broken models must import or raise a GradkilnError (never
another exception, never a crash or a hang). Then `--flips` seeded bit-flip mutants of valid
models and of the hostile corpus (`gradkiln/testing/hostile_onnx.py`: huge declared sizes,
unbounded loops, malformed values) must each import or raise a GradkilnError within 10 s.
Prints the examples run, the wall time, the pytest summary and the problems the flips found; the
exit status is non-zero when either part found one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from gradkiln.testing.hostile_onnx import flip_fuzz, fuzz_seeds

TESTS = Path(__file__).resolve().parents[1] / "tests" / "onnx_io" / "test_fuzz.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples for the mutated-bytes test")
    parser.add_argument("--flips", type=int, default=20000, help="bit-flip mutants of valid and hostile models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bit-flip mutants")
    args = parser.parse_args()
    env = os.environ | {"GRADKILN_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS)], env=env)
    print(
        f"{args.examples} mutated-bytes examples (+{args.examples * 2 // 3} broken models): "
        f"{time.perf_counter() - start:.1f} s, exit status {run.returncode}"
    )
    start = time.perf_counter()
    problems = flip_fuzz(fuzz_seeds(), args.flips, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(f"{args.flips} bit-flip mutants (seed {args.seed}): {elapsed:.1f} s, {len(problems)} problems")
    print("\n".join(problems))
    return run.returncode or int(bool(problems))


if __name__ == "__main__":
    sys.exit(main())
