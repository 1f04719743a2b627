"""The `gradkiln` command."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Sequence

from .graph import GradientError, GradkilnError, Graph, Tensor, UnsupportedOpError
from .graph import builder as gb
from .graph.dtypes import is_float


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.epochs, args.batch_size, args.lr, args.target, args.out_dir)
    print(f"final test accuracy {result.test_accuracy:.3f}")
    return 0 if result.test_accuracy > 0.9 else 1


def _load(path: str) -> tuple[Graph, dict[str, Tensor]]:
    from .onnx_io import import_model

    return import_model(path)


def _info(args: argparse.Namespace) -> int:
    import onnx

    from .onnx_io.importer import load

    model = load(args.model, rules=None)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"{args.model}: graph {model.graph.name!r}, {len(model.graph.node)} ONNX nodes, opsets {opsets}")
    counts = Counter(n.op_type for n in model.graph.node)
    print("ONNX ops: " + ", ".join(f"{op} {n}" for op, n in counts.most_common()))
    try:
        graph, outputs = _load(args.model)
    except UnsupportedOpError as err:
        print(f"does not import: {err}")
        return 0
    for title, nodes in (("inputs", graph.inputs()), ("params", graph.params())):
        print(f"{title}: " + (", ".join(f"{n.name} {n.types[0]}" for n in nodes) or "none"))
    sizes = [n.attrs["value"] for n in graph.params()]
    print(f"parameters: {sum(a.size for a in sizes)} values, {sum(a.nbytes for a in sizes)} bytes")
    print("outputs: " + ", ".join(f"{name} {t.type}" for name, t in outputs.items()))
    print(f"imports into gradkiln: {len(graph)} nodes ({onnx.__name__} {onnx.__version__})")
    return 0


def _with_gradients(graph: Graph, outputs: dict[str, Tensor], wrt_names: str) -> dict[str, Tensor]:
    """The outputs plus grad_<param>: the gradients of <seed_<output>, output> summed over the float
    outputs (one seed input per output) with respect to the float params named (default: all)."""
    from .symbolic import vjp

    params = [Tensor(graph, n.outputs[0]) for n in graph.params() if is_float(n.types[0].dtype)]
    wrt = [p for p in params if not wrt_names or p.name in wrt_names.split(",")]
    if not wrt:
        raise GradientError(f"no float parameters to differentiate (asked for {wrt_names or 'all'})")
    differentiable = {name: t for name, t in outputs.items() if is_float(t.dtype)}
    with graph:
        seeds = [gb.input(f"seed_{name}", t.shape, t.dtype) for name, t in differentiable.items()]
    grads = vjp(list(differentiable.values()), wrt, seeds)
    return outputs | {f"grad_{p.name}": g for p, g in zip(wrt, grads)}


def _grad(args: argparse.Namespace) -> int:
    from . import onnx_io

    graph, outputs = _load(args.model)
    everything = _with_gradients(graph, outputs, args.wrt)
    onnx_io.export(graph, everything, path=args.output)
    wrt = [name.removeprefix("grad_") for name in everything if name not in outputs]
    print(
        f"wrote {args.output}: outputs {', '.join(outputs)} and the gradients of <seed_*, outputs> "
        f"with respect to {', '.join(wrt)}"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json
    import time

    import numpy as np

    from . import compile as compile_graph
    from .progress import Progress

    graph, outputs = _load(args.model)
    values = _with_gradients(graph, outputs, "") if args.grad else outputs
    target = json.loads(args.target) if args.target.startswith("{") else args.target
    with Progress(f"compiling for {args.target}"):
        start = time.perf_counter()
        executable = compile_graph(graph, values, target=target, optimize=args.level)
        compiled = time.perf_counter() - start
    feeds = executable.random_feeds(dict(args.bind or []))
    executable(feeds)  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        executable(feeds)
        seconds.append(time.perf_counter() - start)
    what = "forward and parameter gradients" if args.grad else "forward"
    print(f"{args.model}: {what} on {executable.target} after {args.level}, {len(executable.node_ids)} nodes")
    sizes = dict(args.bind or []) or "all 1"
    print(f"compile {compiled:.2f} s; random inputs, symbolic dims {sizes}")
    print(f"{args.repeats} runs: median {1e3 * float(np.median(seconds)):.3f} ms, fastest {1e3 * min(seconds):.3f} ms")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from . import onnx_io
    from .lowering.executable import normalize_outputs, restructure
    from .passes import optimize

    graph, outputs = _load(args.model)
    values, structure = normalize_outputs(graph, outputs)
    optimized, values, manager = optimize(graph, values, args.level, verify=True)
    onnx_io.export(optimized, restructure(values, structure), path=args.output)
    print(manager.table())
    print(f"wrote {args.output}: {len(graph)} -> {len(optimized)} nodes")
    return 0


def _compile(args: argparse.Namespace) -> int:
    import json
    import tempfile

    import numpy as np

    from . import compile as compile_graph
    from .atomic import write_atomic
    from .progress import Progress

    graph, outputs = _load(args.model)
    target = json.loads(args.target) if args.target.startswith("{") else args.target
    with Progress(f"compiling for {args.target}"):
        executable = compile_graph(graph, outputs, target=target, optimize=args.level)
    artifact = executable.export(args.output)
    params = {n.name: n.attrs["value"] for n in executable.param_nodes}
    manifest = {
        "artifact": artifact.name,
        "function": "main",
        "arguments": [
            {"name": n.name, "kind": n.op, "dtype": n.types[0].dtype, "shape": [str(d) for d in n.types[0].shape]}
            for n in (executable.graph.by_name(name) for name in executable.argument_names)
        ],
        "outputs": list(outputs),
        "params_file": f"{artifact.name}.params.npz",
    }
    with tempfile.TemporaryFile() as buffer:
        np.savez(buffer, **params)
        buffer.seek(0)
        write_atomic(artifact.with_name(manifest["params_file"]), buffer.read())
    write_atomic(artifact.with_name(f"{artifact.name}.json"), json.dumps(manifest, indent=2).encode())
    print(f"wrote {artifact} ({artifact.stat().st_size} bytes), {artifact.name}.json and {manifest['params_file']}")
    print("arguments, in order: " + ", ".join(executable.argument_names))
    return 0


def _train_graph(args: argparse.Namespace) -> int:
    from .onnx_io import training_graph

    frozen = tuple(p for p in args.freeze.split(",") if p)
    if args.trainable:
        trainable = args.trainable.split(",")
    else:
        trainable = (lambda name: not name.startswith(frozen)) if frozen else None
    hyper = {"lr": args.lr} if args.lr is not None else {}
    step = training_graph(
        args.model, args.loss, trainable, args.optimizer, hyper, batch_norm=args.batch_norm, dropout=args.dropout
    )
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

    graph, outputs = _load(args.model)
    values = [t.value for t in outputs.values()]
    summary = {"max_nodes": args.max_nodes} if args.max_nodes else {}
    with Progress(f"drawing {graph.name}"):
        drawing = viz.render(graph, args.output, outputs=values, **summary)
    print(f"wrote {drawing}")
    if args.report:
        bindings = dict(args.bind or [])
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


def build_parser() -> argparse.ArgumentParser:
    from .passes import PIPELINES

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
    info = commands.add_parser("info", help="describe an ONNX model: ops, inputs, params, outputs, support")
    info.add_argument("model", help="an .onnx file")
    info.set_defaults(run=_info)
    grad = commands.add_parser(
        "grad",
        help="write an ONNX model that also computes parameter gradients",
        description="Import an ONNX model, derive the gradients of its float outputs (weighted by one seed "
        "input per output, seed_<output>) with respect to its parameters, and export model and gradients.",
    )
    grad.add_argument("model", help="an .onnx file")
    grad.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    grad.add_argument("--wrt", default="", help="comma-separated parameter names (default: every float one)")
    grad.set_defaults(run=_grad)
    bench = commands.add_parser(
        "bench",
        help="time a model (or its training step) on a target",
        description="Import an ONNX model, compile it for a target after a pass pipeline, and time it on "
        "random inputs: the median and the fastest of --repeats runs after a warm-up, and the compile time. "
        "With --grad, the parameter gradients are computed too (as `gradkiln grad` builds them).",
        epilog="example: gradkiln bench resnet18.onnx --target llvm --level O3 --grad --bind N=8",
    )
    bench.add_argument("model", help="an .onnx file")
    bench.add_argument("--target", default="llvm", help="a target name (llvm, numpy, ...) or a JSON dict")
    bench.add_argument("--level", default="O2", choices=sorted(PIPELINES), help="the pass pipeline run first")
    bench.add_argument("--grad", action="store_true", help="also compute every float parameter's gradient")
    bench.add_argument("--repeats", type=_positive, default=20, help="timed runs (default 20)")
    bench.add_argument(
        "--bind", metavar="NAME=SIZE", type=_binding, action="append", help="a size for a symbolic dim (repeatable)"
    )
    bench.set_defaults(run=_bench)
    opt = commands.add_parser("optimize", help="run a pass pipeline over an ONNX model")
    opt.add_argument("model", help="an .onnx file")
    opt.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    opt.add_argument("--level", default="O1", choices=sorted(PIPELINES), help="the pass pipeline")
    opt.set_defaults(run=_optimize)
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
        "--target", default="llvm", help='llvm, cuda, metal, webgpu, opencl, or a JSON target dict ({"kind": ...})'
    )
    comp.add_argument("--level", default="O2", choices=sorted(PIPELINES), help="the pass pipeline run first")
    comp.set_defaults(run=_compile)
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
    viz.add_argument("--level", default="O2", choices=sorted(PIPELINES), help="the report's pass pipeline")
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
        help="fold params into their readers and collapse name scopes until at most N boxes are drawn; 0 draws "
        "every node (default 150)",
    )
    viz.set_defaults(run=_viz)
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
    train.add_argument("--trainable", default="", help="comma-separated initializer names (default: every float)")
    train.add_argument("--freeze", default="", help="comma-separated name prefixes to keep constant")
    train.add_argument("--batch-norm", default="train", choices=["train", "eval"])
    train.add_argument("--dropout", default="mask", choices=["mask", "off"], help="keep-mask inputs or none")
    train.set_defaults(run=_train_graph)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit codes: 0 success, 1 failure (one-line cause), 2 usage error."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (GradkilnError, OSError) as err:  # OSError: a file that cannot be read or written
        if args.debug:
            raise
        print(f"gradkiln {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
