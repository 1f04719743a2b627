"""A long fuzz run of the ONNX importer: the fuzz tests with many more examples than CI runs.

    python benchmarks/fuzz_onnx.py [--examples 20000]

Mutated, truncated and structurally broken models must import or raise a GradkilnError (never
another exception, never a crash or a hang). Prints the examples run, the wall time and the
pytest summary; the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "onnx_io" / "test_fuzz.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples for the mutated-bytes test")
    args = parser.parse_args()
    env = os.environ | {"GRADKILN_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS)], env=env)
    print(
        f"{args.examples} mutated-bytes examples (+{args.examples * 2 // 3} broken models): "
        f"{time.perf_counter() - start:.1f} s, exit status {run.returncode}"
    )
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
