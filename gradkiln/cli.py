"""The `gradkiln` command.

Only argparse loads before a subcommand runs: `gradkiln --help` and `--version` answer without
importing sympy, networkx, onnx or TVM (about 1.5 s); each subcommand imports what it uses.
Failures end as one line, `gradkiln <command>: error: <what and what to do>`, with exit 1 (2 for
usage errors); `--debug` or GRADKILN_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

if TYPE_CHECKING:
    from .graph import Graph, Tensor
    from .onnx_io.params import ParamChoice

DEMO_ACCURACY = 0.9  # the demo fails below this test accuracy


class RefusedError(Exception):
    """A command refused before it starts: an output path it must not write (exit 1, as `cp`)."""

    exit_code = 1


class UsageError(RefusedError):
    """A command-line argument that does not fit the model (exit 2, as argparse's errors)."""

    exit_code = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line naming the command and pointing at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _Version(argparse.Action):
    """--version: the installed distribution's version, read from its metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        from importlib.metadata import version

        print(f"gradkiln {version('gradkiln')}")
        parser.exit()


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.epochs, args.batch_size, args.lr, args.target, args.out_dir)
    print(f"final test accuracy {result.test_accuracy:.3f}")
    if result.test_accuracy > DEMO_ACCURACY:
        return 0
    print(
        f"gradkiln demo: error: test accuracy {result.test_accuracy:.3f} is not above {DEMO_ACCURACY} after "
        f"{args.epochs} epoch(s) at lr {args.lr:g}: train for more --epochs",
        file=sys.stderr,
    )
    return 1


def _load(args: argparse.Namespace) -> tuple[Graph, dict[str, Tensor], ParamChoice]:
    """Import args.model with the parameters --trainable and --freeze choose (where the command has
    them); with --verbose, say which initializers were taken as parameters, which frozen, and why."""
    from .onnx_io.importer import import_with_params

    trainable, frozen = _patterns(getattr(args, "trainable", "")), _patterns(getattr(args, "freeze", ""))
    graph, outputs, choice = import_with_params(args.model, trainable=trainable, frozen=frozen)
    if getattr(args, "verbose", False):
        print("\n".join(choice.report()) or "the model has no initializers")
    return graph, outputs, choice


def _patterns(text: str) -> list[str] | None:
    """Comma-separated fnmatch patterns (--trainable, --freeze); None when none are given."""
    patterns = [p for p in text.split(",") if p]
    return patterns or None


def _symbolic_dims(graph: Graph) -> set[str]:
    return {str(s) for node in graph.inputs() for s in node.types[0].symbols}


def _check_bindings(graph: Graph, bindings: list[tuple[str, int]] | None) -> dict[str, int]:
    """The --bind sizes as a dict, refusing a dim the model does not have."""
    dims = _symbolic_dims(graph)
    unknown = sorted({name for name, _ in bindings or []} - dims)
    if unknown:
        has = f"its symbolic dims are {', '.join(sorted(dims))}" if dims else "it has no symbolic dims"
        raise UsageError(f"--bind {', '.join(unknown)}: the model has no such dim; {has}")
    return dict(bindings or [])


def _info(args: argparse.Namespace) -> int:
    import onnx

    from .graph import UnsupportedOpError
    from .onnx_io.importer import load

    model = load(args.model, rules=None)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"{args.model}: graph {model.graph.name!r}, {len(model.graph.node)} ONNX nodes, opsets {opsets}")
    counts = Counter(n.op_type for n in model.graph.node)
    print("ONNX ops: " + ", ".join(f"{op} {n}" for op, n in counts.most_common()))
    try:
        graph, outputs, choice = _load(args)
    except UnsupportedOpError as err:
        print(f"does not import: {err}")
        return 0
    print("inputs: " + (", ".join(f"{n.name} {n.types[0]}" for n in graph.inputs()) or "none"))
    params = [graph.by_name(name) for name in choice.params]
    print(f"params: {len(params) or 'none'}")
    for n in params:
        print(f"  {n.name} {n.types[0]} {n.attrs['value'].nbytes} bytes")
    sizes = [n.attrs["value"] for n in params]
    print(f"parameters: {sum(a.size for a in sizes)} values, {sum(a.nbytes for a in sizes)} bytes")
    if choice.overridable:
        print("inputs with defaults (not parameters): " + ", ".join(choice.overridable))
    print("outputs: " + ", ".join(f"{name} {t.type}" for name, t in outputs.items()))
    print(f"imports into gradkiln: {len(graph)} nodes ({onnx.__name__} {onnx.__version__})")
    return 0


def _with_gradients(graph: Graph, outputs: dict[str, Tensor], params: list[str], wrt_names: str) -> dict[str, Tensor]:
    """The outputs plus grad_<param>: the gradients of <seed_<output>, output> summed over the float
    outputs (one seed input per output) with respect to the parameters `params` (those named in
    `wrt_names`, default: all)."""
    from .graph import GradientError, Tensor
    from .graph import builder as gb
    from .graph.dtypes import is_float
    from .symbolic import vjp

    asked = [name for name in wrt_names.split(",") if name]
    unknown = sorted(set(asked) - set(params))
    if unknown:
        raise GradientError(f"--wrt {', '.join(unknown)}: not parameters of the model; its parameters are {params}")
    wrt = [Tensor(graph, graph.by_name(name).outputs[0]) for name in asked or params]
    if not wrt:
        raise GradientError(
            "the model has no parameters to differentiate (no float initializers, or all frozen); "
            "see `gradkiln info --verbose`"
        )
    differentiable = {name: t for name, t in outputs.items() if is_float(t.dtype)}
    with graph:
        seeds = [gb.input(f"seed_{name}", t.shape, t.dtype) for name, t in differentiable.items()]
    grads = vjp(list(differentiable.values()), wrt, seeds)
    return outputs | {f"grad_{p.name}": g for p, g in zip(wrt, grads)}


def _grad(args: argparse.Namespace) -> int:
    from . import onnx_io

    graph, outputs, choice = _load(args)
    everything = _with_gradients(graph, outputs, choice.params, args.wrt)
    onnx_io.export(graph, everything, path=args.output)
    wrt = [name.removeprefix("grad_") for name in everything if name not in outputs]
    print(
        f"wrote {args.output}: outputs {', '.join(outputs)} and the gradients of <seed_*, outputs> "
        f"with respect to {', '.join(wrt)}"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from . import compile as compile_graph
    from .progress import Progress

    graph, outputs, choice = _load(args)
    sizes = _check_bindings(graph, args.bind)
    values = _with_gradients(graph, outputs, choice.params, "") if args.grad else outputs
    with Progress(f"compiling for {_target_text(args.target)}"):
        start = time.perf_counter()
        executable = compile_graph(graph, values, target=args.target, optimize=args.level)
        compiled = time.perf_counter() - start
    feeds = executable.random_feeds(sizes)
    executable(feeds)  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        executable(feeds)
        seconds.append(time.perf_counter() - start)
    what = "forward and parameter gradients" if args.grad else "forward"
    print(f"{args.model}: {what} on {executable.target} after {args.level}, {len(executable.node_ids)} nodes")
    print(f"compile {compiled:.2f} s; random inputs, symbolic dims {sizes or 'all 1'}")
    print(f"{args.repeats} runs: median {1e3 * float(np.median(seconds)):.3f} ms, fastest {1e3 * min(seconds):.3f} ms")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from . import onnx_io
    from .graph.outputs import normalize_outputs, restructure
    from .passes import optimize

    graph, outputs, _ = _load(args)
    values, structure = normalize_outputs(graph, outputs)
    optimized, values, manager = optimize(graph, values, args.level, verify=True)
    onnx_io.export(optimized, restructure(values, structure), path=args.output)
    print(manager.table())
    print(f"wrote {args.output}: {len(graph)} -> {len(optimized)} nodes")
    return 0


def _compile(args: argparse.Namespace) -> int:
    from . import compile as compile_graph
    from .deploy import write_bundle
    from .progress import Progress

    graph, outputs, _ = _load(args)
    with Progress(f"compiling for {_target_text(args.target)}"):
        executable = compile_graph(graph, outputs, target=args.target, optimize=args.level)
    bundle = write_bundle(executable, args.output)
    artifact = bundle.artifact
    print(f"wrote {artifact} ({artifact.stat().st_size} bytes), {bundle.manifest.name} and {bundle.params.name}")
    if bundle.loader is not None:
        print(
            f"and {bundle.requirements.name} and {bundle.loader.name}: pip install -r {bundle.requirements.name}, "
            f"then python {bundle.loader.name} {artifact.name} inputs.npz -o outputs.npz"
        )
    print("arguments, in order: " + ", ".join(executable.argument_names))
    return 0


def _train_graph(args: argparse.Namespace) -> int:
    from .onnx_io import training_graph

    hyper = {"lr": args.lr} if args.lr is not None else {}
    step = training_graph(
        args.model,
        args.loss,
        _patterns(args.trainable),
        args.optimizer,
        hyper,
        batch_norm=args.batch_norm,
        dropout=args.dropout,
        frozen=_patterns(args.freeze),
    )
    if args.verbose:
        print("\n".join(step.choice.report()))
    step.export(args.output)
    print(f"wrote {args.output}: {len(step.params)} trainable parameters, outputs loss, grad.<param>")
    print("inputs to feed: " + ", ".join(step.data))
    if step.state:
        print(f"state (feed each <name>.new back as <name>): {', '.join(step.state)}")
    defaults = ", ".join(f"{k}={v:g}" for k, v in step.hyperparameters.items())
    if defaults:
        print(f"hyperparameters (inputs with defaults): {defaults}")
    return 0


def _viz(args: argparse.Namespace) -> int:
    from . import viz
    from .progress import Progress

    graph, outputs, _ = _load(args)
    bindings = _check_bindings(graph, args.bind)
    values = [t.value for t in outputs.values()]
    summary = {"max_nodes": args.max_nodes} if args.max_nodes else {}
    units = viz.drawn_units(graph, values, **summary)
    if args.max_nodes and units > args.max_nodes:
        print(
            f"gradkiln viz: note: {units} boxes drawn, over --max-nodes {args.max_nodes}: the graph has more "
            "top-level name scopes and distinct ops than that, and neither can be collapsed further",
            file=sys.stderr,
        )
    with Progress(f"drawing {units} boxes"):
        drawing = viz.render(graph, args.output, outputs=values, **summary)
    print(f"wrote {drawing}: {len(graph)} nodes drawn as {units} boxes")
    if args.report:
        path = viz.report(
            graph,
            values,
            args.level,
            args.report,
            bindings=bindings,
            max_nodes=args.max_nodes or 120,
            target=args.target,
        )
        print(f"wrote {path}: passes, graph after each pass, memory timeline, per-node profile")
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {text!r}")
    return int(text)


def _binding(text: str) -> tuple[str, int]:
    """`N=64` -> ("N", 64), for --bind."""
    name, _, size = text.partition("=")
    if not name.isidentifier() or not size.isdigit() or int(size) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE with a positive size (e.g. N=64), got {text!r}")
    return name, int(size)


def _level(text: str) -> str:
    """A pass pipeline name, checked when given (the pipelines load with the passes, not for --help)."""
    from .passes import PIPELINES

    if text not in PIPELINES:
        raise argparse.ArgumentTypeError(f"unknown pipeline {text!r}: choose from {', '.join(sorted(PIPELINES))}")
    return text


def _target(text: str) -> str | dict[str, Any]:
    """A target name, or a JSON target dict when the text starts with `{`."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        target = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"malformed JSON target {text!r}: {err}") from None
    if not isinstance(target, dict) or "kind" not in target:
        raise argparse.ArgumentTypeError(
            f'a JSON target is a dict with a "kind", e.g. {{"kind": "llvm"}}; got {text!r}'
        )
    return target


def _target_text(target: str | dict[str, Any]) -> str:
    return target if isinstance(target, str) else json.dumps(target)


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output whose folder does not exist (as `cp` does) and an output
    that is an input (the model or one of its external data files) or another output of the same
    command (e.g. --report naming the model)."""
    model = Path(args.model) if getattr(args, "model", None) else None
    outputs = [Path(p) for p in (getattr(args, name, None) for name in args.writes) if p]
    inputs = [model] if model else []
    if model and any(out.exists() for out in outputs):  # only an existing file can be external data
        inputs += _external_data_files(model)
    for k, out in enumerate(outputs):
        folder = out.parent
        if not folder.is_dir():
            why = "is not a directory" if folder.exists() else "does not exist (create it first)"
            raise RefusedError(f"cannot write {out}: {folder} {why}")
        earlier = [(p, "an input") for p in inputs] + [(p, "another output of this command") for p in outputs[:k]]
        for other, role in earlier:
            if _same_file(out, other):
                raise RefusedError(f"refusing to write {out}: it is {role} ({other}); choose another output path")


def _external_data_files(model: Path) -> list[Path]:
    """The files an ONNX model keeps tensors in (none when it does not parse: the command then
    fails on reading it, with its own message)."""
    import onnx
    from google.protobuf.message import DecodeError

    from .onnx_io.model_file import _tensors

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except (OSError, DecodeError):
        return []
    locations = ({e.key: e.value for e in t.external_data}.get("location") for t in _tensors(proto.graph))
    return [model.parent / location for location in locations if location]


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or (existing files) the same inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _param_options(command: argparse.ArgumentParser) -> None:
    """--trainable, --freeze and --verbose: which initializers are the model's parameters (docs/onnx.md)."""
    command.add_argument(
        "--trainable", default="", metavar="PATTERNS", help="comma-separated fnmatch patterns of the parameters to keep"
    )
    command.add_argument(
        "--freeze", default="", metavar="PATTERNS", help="comma-separated fnmatch patterns of parameters kept constant"
    )
    command.add_argument(
        "--verbose", action="store_true", help="say which initializers are parameters, which are frozen, and why"
    )


def build_parser() -> argparse.ArgumentParser:
    """The `gradkiln` argument parser (builds without importing the compiler)."""
    parser = _Parser(prog="gradkiln", description="Symbolic graph compiler for autodiff.")
    parser.add_argument("--version", action=_Version, help="print gradkiln's version and exit")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback on failure (also: GRADKILN_DEBUG=1)"
    )
    parser.set_defaults(writes=())
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
    info = commands.add_parser("info", help="describe an ONNX model: ops, inputs, params, outputs, support")
    info.add_argument("model", help="an .onnx file")
    _param_options(info)
    info.set_defaults(run=_info)
    grad = commands.add_parser(
        "grad",
        help="write an ONNX model that also computes parameter gradients",
        description="Import an ONNX model, derive the gradients of its float outputs (weighted by one seed "
        "input per output, seed_<output>) with respect to its parameters, and export model and gradients.",
    )
    grad.add_argument("model", help="an .onnx file")
    grad.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    grad.add_argument("--wrt", default="", help="comma-separated parameter names (default: every parameter)")
    _param_options(grad)
    grad.set_defaults(run=_grad, writes=("output",))
    bench = commands.add_parser(
        "bench",
        help="time a model (or its training step) on a target",
        description="Import an ONNX model, compile it for a target after a pass pipeline, and time it on "
        "random inputs: the median and the fastest of --repeats runs after a warm-up, and the compile time. "
        "With --grad, the parameter gradients are computed too (as `gradkiln grad` builds them).",
        epilog="example: gradkiln bench resnet18.onnx --target llvm --level O3 --grad --bind N=8",
    )
    bench.add_argument("model", help="an .onnx file")
    bench.add_argument("--target", default="llvm", type=_target, help="a target name (llvm, numpy, ...) or a JSON dict")
    bench.add_argument("--level", default="O2", type=_level, help="the pass pipeline run first (O0-O3)")
    bench.add_argument("--grad", action="store_true", help="also compute every parameter's gradient")
    _param_options(bench)
    bench.add_argument("--repeats", type=_positive, default=20, help="timed runs (default 20)")
    bench.add_argument(
        "--bind", metavar="NAME=SIZE", type=_binding, action="append", help="a size for a symbolic dim (repeatable)"
    )
    bench.set_defaults(run=_bench)
    opt = commands.add_parser("optimize", help="run a pass pipeline over an ONNX model")
    opt.add_argument("model", help="an .onnx file")
    opt.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    opt.add_argument("--level", default="O1", type=_level, help="the pass pipeline (O0-O3)")
    opt.set_defaults(run=_optimize, writes=("output",))
    comp = commands.add_parser(
        "compile",
        help="compile an ONNX model with TVM into an artifact that deploys without gradkiln",
        description="Import an ONNX model, optimize it, compile it for a TVM target and write the artifact, "
        "a JSON manifest (argument order, types, outputs) and the parameter values (.npz) beside it. Load "
        "the artifact with tvm.runtime.load_module and run it with tvm.runtime.vm.VirtualMachine.",
    )
    comp.add_argument("model", help="an .onnx file")
    comp.add_argument("-o", "--output", required=True, help="the artifact: .so for llvm/cuda/opencl, .tar otherwise")
    comp.add_argument(
        "--target",
        default="llvm",
        type=_target,
        help='llvm, cuda, metal, webgpu, opencl, or a JSON target dict ({"kind": ...})',
    )
    comp.add_argument("--level", default="O2", type=_level, help="the pass pipeline run first (O0-O3)")
    comp.set_defaults(run=_compile, writes=("output",))
    viz = commands.add_parser(
        "viz",
        help="draw an ONNX model's graph with Graphviz; optionally write a pass-by-pass HTML report",
        description="Draw the graph of an ONNX model (forward nodes blue, params folded into the nodes that read "
        "them, large graphs collapsed by name scope). With --report, also run a pass pipeline and write one "
        "self-contained HTML page: pass timings and node counts, the graph after each pass, the memory plan as "
        "a timeline and a per-node profile.",
        epilog="example: gradkiln viz resnet18.onnx -o g.svg --report report.html --level O2 --bind N=8",
    )
    viz.add_argument("model", help="an .onnx file")
    viz.add_argument("-o", "--output", required=True, help="a .svg, .png, .pdf or .dot file")
    viz.add_argument("--report", metavar="HTML", help="also write the pass-by-pass report to this .html file")
    viz.add_argument("--level", default="O2", type=_level, help="the report's pass pipeline (O0-O3)")
    viz.add_argument(
        "--target",
        default="numpy",
        help="where the report's profile is measured: numpy (per node) or llvm (per kernel)",
    )
    viz.add_argument(
        "--bind",
        metavar="NAME=SIZE",
        type=_binding,
        action="append",
        help="a size for a symbolic dim in the report's memory plan and profile (repeatable; unbound dims are 1)",
    )
    viz.add_argument(
        "--max-nodes",
        type=int,
        default=150,
        metavar="N",
        help="fold params into their readers and collapse name scopes (then nodes outside scopes, one box per "
        "op) until at most N boxes are drawn; 0 draws every node, up to 5000 (default 150)",
    )
    viz.set_defaults(run=_viz, writes=("output", "report"))
    train = commands.add_parser(
        "train-graph",
        help="write an ONNX training step of a model: loss, gradients and optimizer updates",
        description="Import an ONNX model for training and export one step: inputs are the data, labels, "
        "parameters and state; outputs are loss, grad.<param> and <state>.new to feed back (docs/onnx.md).",
    )
    train.add_argument("model", help="an .onnx file")
    train.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    train.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"])
    train.add_argument("--optimizer", default=None, choices=["sgd", "adam"], help="default: gradients only")
    train.add_argument("--lr", type=float, default=None, help="the learning rate's default (an input)")
    _param_options(train)
    train.add_argument("--batch-norm", default="train", choices=["train", "eval"])
    train.add_argument("--dropout", default="mask", choices=["mask", "off"], help="keep-mask inputs or none")
    train.set_defaults(run=_train_graph, writes=("output",))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit codes: 0 success, 1 failure (one-line cause), 2 usage error."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        return _run(args)
    previous = os.environ.get("GRADKILN_DEBUG")
    os.environ["GRADKILN_DEBUG"] = "1"  # tracebacks, and TVM's own log lines (lowering/tvm/quiet.py)
    try:
        return _run(args)
    finally:
        if previous is None:
            del os.environ["GRADKILN_DEBUG"]
        else:
            os.environ["GRADKILN_DEBUG"] = previous


def _run(args: argparse.Namespace) -> int:
    """Run the subcommand; a failure is one line on stderr unless GRADKILN_DEBUG=1."""
    from .graph import GradkilnError

    debug = os.environ.get("GRADKILN_DEBUG") == "1"
    try:
        _check_paths(args)
        return args.run(args)
    except (RefusedError, GradkilnError, OSError) as err:  # OSError: a file that cannot be read or written
        if debug:
            raise
        print(f"gradkiln {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return err.exit_code if isinstance(err, RefusedError) else 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"gradkiln {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    """The error's message on one line (ONNX and TVM messages span several)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text if isinstance(err, RefusedError) else f"{type(err).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
