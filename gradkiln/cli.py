"""The `gradkiln` command."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .graph import GradkilnError


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.epochs, args.batch_size, args.lr, args.target, args.out_dir)
    print(f"final test accuracy {result.test_accuracy:.3f}")
    return 0 if result.test_accuracy > 0.9 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradkiln", description="Symbolic graph compiler for autodiff.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on failure")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train an MLP on the digits data set with a TVM-compiled gradient step",
        description="Build an MLP, derive its gradient graph, compile the training step with TVM, train on "
        "scikit-learn's handwritten digits, export the step to ONNX and render both graphs as SVG.",
    )
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    demo.add_argument("--target", default="llvm", help="llvm (TVM, CPU) or numpy")
    demo.add_argument("--out-dir", default="gradkiln-demo", help="where the SVG and ONNX files go")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit codes: 0 success, 1 failure (one-line cause), 2 usage error."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except GradkilnError as err:
        if args.debug:
            raise
        print(f"gradkiln {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
