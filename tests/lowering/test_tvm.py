"""The TVM (llvm) backend agrees with the numpy executor: op by op, across dtypes, with symbolic
batch sizes served by one compiled module, and with errors that name the node and target."""

import os
import subprocess
import sys

import numpy as np
import pytest
from tvm.relax import op as R  # noqa: N812 (the spelling TVM uses)

import gradkiln as gk
from gradkiln.graph import OpDef, register_op, symbol
from gradkiln.lowering.tvm_emitters import EMITTERS, register_emitter
from gradkiln.lowering.tvm_quiet import tvm_section
from gradkiln.lowering.tvm_targets import target_options
from gradkiln.symbolic import grad
from gradkiln.testing import op_samples


def assert_agree(graph, outputs, feed_sets, rtol=1e-5, atol=1e-6):
    """Compile once for llvm and numpy; run every feed set on both and compare."""
    compiled = gk.compile(graph, outputs, target="llvm")
    reference = gk.compile(graph, outputs, target="numpy")
    for feeds in feed_sets:
        got, want = compiled(**feeds), reference(**feeds)
        for g, w in zip(*(x if isinstance(x, list) else [x] for x in (got, want))):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return compiled


@pytest.mark.parametrize("sample", op_samples("float32"), ids=lambda s: s.name)
def test_every_op_sample_matches_numpy(sample):
    check_sample(sample)


@pytest.mark.parametrize("sample", op_samples("float64"), ids=lambda s: s.name)
def test_every_op_sample_matches_numpy_in_float64(sample):
    check_sample(sample)


def check_sample(sample) -> None:
    """The sample agrees with numpy; a symbolic one at two more batch sizes with the same module."""
    graph, _, out = sample.graph()
    feed_sets = [sample.feeds]
    if sample.shapes:
        feed_sets += [sample.feeds_at(7), sample.feeds_at(1)]
    assert_agree(graph, out, feed_sets)


@pytest.mark.parametrize(
    "op", ["add", "mul", "maximum", "sum", "max", "matmul", "where", "cast", "abs", "sign", "relu"]
)
@pytest.mark.parametrize("dtype", ["float64", "int32", "int64"])
def test_other_dtypes_match_numpy(op, dtype):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(-5, 5, (3, 4)).astype(dtype) for _ in range(2))
    build = {
        "add": lambda x, y: x + y,
        "mul": lambda x, y: x * y,
        "maximum": gk.maximum,
        "sum": lambda x, y: gk.sum(x, 1) + gk.sum(gk.sum(y, 1), ()),  # axes=() is the identity, not "all axes"
        "matmul": lambda x, y: x @ gk.transpose(y, (1, 0)),
        "where": lambda x, y: gk.where(x > y, x, y),
        "cast": lambda x, y: gk.cast(gk.cast(x, "bool"), dtype) + gk.cast(gk.cast(y, "float32"), dtype),
        "max": lambda x, y: gk.max(x, 0) + gk.max(y, (), keepdims=True),
        "abs": lambda x, y: gk.abs(x - y),
        "sign": lambda x, y: gk.sign(x) * y,
        "relu": lambda x, y: gk.relu(x) - gk.relu(-y),
    }[op]
    with gk.Graph() as g:
        out = build(gk.input("a", a.shape, dtype), gk.input("b", b.shape, dtype))
    assert_agree(g, out, [{"a": a, "b": b}])


def test_bool_inputs_and_outputs():
    with gk.Graph() as g:
        c, x = gk.input("c", (3, 4), "bool"), gk.input("x", (3, 4))
        outputs = [gk.equal(c, gk.cast(x, "bool")), gk.where(c, x, -x)]
    c = np.array([[True, False, True, False]] * 3)
    x = np.array([[0.0, 1.5, -2.0, 0.0]] * 3, dtype="float32")
    assert_agree(g, outputs, [{"c": c, "x": x}])


def test_one_hot_in_fill_mode_gives_zero_rows_for_out_of_range_indices():
    with gk.Graph() as g:
        out = gk.one_hot(gk.input("i", ("N",), "int64"), 3, mode="fill")
    indices = np.array([0, 2, 3, -1, 7])
    compiled = assert_agree(g, out, [{"i": indices}])
    np.testing.assert_array_equal(compiled(i=indices).sum(axis=1), [1, 1, 0, 0, 0])


def test_size_of_a_symbolic_product_as_int():
    with gk.Graph() as g:
        x = gk.input("x", ("N", "M", 2))
        out = gk.size(x, (0, 1, 2), "int64") + gk.cast(gk.size(x, (1,), "float64"), "int64")
    assert_agree(g, out, [{"x": np.zeros((n, m, 2), "float32")} for n, m in [(1, 1), (3, 5), (4, 2)]])


def test_symbolic_reshape_and_pad():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 4))
        flat = gk.reshape(x, (symbol("N") * 4,))
        out = gk.pad(flat, (2,), (1,), (1,))
    assert_agree(g, out, [{"x": np.arange(4 * n, dtype="float32").reshape(n, 4)} for n in (1, 3)])


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda x: gk.reshape(x, (0, 5)), (2, 0)),
        (lambda x: gk.reshape(x, (3, 0)), (0, 3)),
        (lambda x: gk.squeeze(x, [0]), (1, 0)),
        (lambda x: gk.cumprod(x, 0), (3, 0)),
        (lambda x: x + gk.constant(np.zeros((1, 0), "float32")), (3, 0)),
    ],
    ids=["reshape_to_zero", "reshape_zero_moved", "squeeze", "cumprod", "empty_constant"],
)
def test_outputs_without_elements_compile(build, shape):
    """A node with no element to compute is an empty tensor: Relax read a 0 in a new shape as "copy
    this dim" (reshape, squeeze failed), cumprod along an empty axis divided by zero, and a zero-size
    constant broke the VM's constant loading."""
    with gk.Graph() as g:
        out = build(gk.input("x", shape))
    got = gk.compile(g, out, target="llvm")(x=np.zeros(shape, "float32"))
    want = gk.compile(g, out, target="numpy")(x=np.zeros(shape, "float32"))
    assert got.shape == want.shape and got.dtype == want.dtype


def test_scatters_of_no_updates_return_their_input():
    """TVM's scatter of zero-size indices divided by their extent and failed to compile."""
    x = np.arange(6, dtype="float32").reshape(2, 3)
    with gk.Graph() as g:
        xs = gk.input("x", (2, 3))
        outs = [
            gk.scatter_elements_add(xs, gk.input("i", (2, 0), "int64"), gk.input("u", (2, 0)), 1),
            gk.scatter_add(xs, gk.input("j", (0,), "int64"), gk.input("v", (2, 0)), 1),
        ]
    feeds = {"x": x, "i": np.zeros((2, 0), "int64"), "u": np.zeros((2, 0), "float32")}
    feeds |= {"j": np.zeros(0, "int64"), "v": np.zeros((2, 0), "float32")}
    for got, want in zip(gk.compile(g, outs, target="llvm")(**feeds), gk.compile(g, outs, target="numpy")(**feeds)):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, x)


def mlp_graph():
    """A two-layer MLP with a symbolic batch and its mean cross-entropy loss."""
    rng = np.random.default_rng(0)
    with gk.Graph("mlp") as g:
        x, y = gk.input("x", ("N", 8)), gk.input("y", ("N",), "int64")
        w1 = gk.param("w1", rng.normal(0, 0.5, (8, 16)).astype("float32"))
        b1 = gk.param("b1", np.zeros(16, "float32"))
        w2 = gk.param("w2", rng.normal(0, 0.5, (16, 3)).astype("float32"))
        logits = gk.relu(x @ w1 + b1) @ w2
        loss = gk.cross_entropy(logits, y)
    return g, logits, loss, [w1, b1, w2]


def mlp_feeds(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {"x": rng.normal(size=(n, 8)).astype("float32"), "y": rng.integers(0, 3, n)}


@pytest.mark.slow
def test_symbolic_batch_mlp_compiles_once_and_runs_for_several_batch_sizes():
    g, logits, loss, _ = mlp_graph()
    compiled = assert_agree(g, [logits, loss], [mlp_feeds(n) for n in (1, 3, 17)])
    assert "N" in compiled.source() and "R.function" in compiled.source()


@pytest.mark.slow
def test_embedding_gradient_over_a_symbolic_batch_matches_numpy():
    """scatter_add over a symbolic number of ids (an embedding's gradient with batch N) lowers."""
    with gk.Graph() as g:
        table = gk.param("table", np.random.default_rng(0).normal(size=(10, 4)))
        ids = gk.input("ids", ("N", 3), "int64")
        (gt,) = grad(gk.sum(gk.embedding(table, ids) ** 2), [table])
    compiled = gk.compile(g, gt, target="llvm")
    for feeds in ({"ids": np.array([[1, 2, 1], [9, 0, 1]])}, {"ids": np.array([[3, 3, 3]])}):
        np.testing.assert_allclose(compiled(**feeds), gk.compile(g, gt, target="numpy")(**feeds), rtol=1e-12)


def test_gradient_graph_of_mlp_matches_numpy():
    g, _, loss, params = mlp_graph()
    grads = grad(loss, params)
    assert_agree(g, [loss, *grads], [mlp_feeds(n) for n in (2, 9)], rtol=1e-4, atol=1e-6)


def test_params_can_be_overridden_by_name():
    g, logits, _, _ = mlp_graph()
    feeds = mlp_feeds(2) | {"w2": np.ones((16, 3), "float32")}
    assert_agree(g, logits, [feeds])


def test_wrong_feed_shape_is_a_shape_error():
    with gk.Graph() as g:
        out = gk.input("x", ("N", 4)) * 2.0
    compiled = gk.compile(g, out, target="llvm")
    with pytest.raises(gk.ShapeError, match="x"):
        compiled(x=np.zeros((3, 5), "float32"))


def test_target_dict_is_merged_over_the_host_defaults():
    with gk.Graph() as g:
        out = gk.exp(gk.input("x", (4,)))
    compiled = gk.compile(g, out, target={"kind": "llvm", "mcpu": "generic"})
    assert compiled.target_options["mcpu"] == "generic" and compiled.target_options["num-cores"] >= 1
    np.testing.assert_allclose(compiled(x=np.zeros(4, "float32")), np.ones(4))


def custom_op(name: str) -> None:
    register_op(OpDef(name, lambda x: (x,), lambda x: x, 1))


def test_custom_op_without_emitter_is_unsupported_and_says_how_to_register():
    custom_op("tvm_test_noemit")
    with gk.Graph() as g:
        out = gk.emit("tvm_test_noemit", gk.input("x", (2,)))
    with pytest.raises(gk.UnsupportedOpError, match=r"tvm_test_noemit.*register_emitter"):
        gk.compile(g, out, target="llvm")


def test_custom_op_with_registered_emitter_runs():
    custom_op("tvm_test_double")
    register_emitter("tvm_test_double")(lambda ctx, node, args: args[0] + args[0])
    with gk.Graph() as g:
        out = gk.emit("tvm_test_double", gk.input("x", (2,)))
    np.testing.assert_array_equal(gk.compile(g, out, target="llvm")(x=np.array([1.0, 2.0], "float32")), [2, 4])
    assert "tvm_test_double" in EMITTERS


def test_failing_emitter_is_a_lowering_error_naming_node_op_shapes_and_target():
    custom_op("tvm_test_bad_reshape")
    register_emitter("tvm_test_bad_reshape")(lambda ctx, node, args: R.reshape(args[0], (5, 2)))
    with gk.Graph() as g:
        out = gk.emit("tvm_test_bad_reshape", gk.input("x", (3, 4)), name="broken")
    with pytest.raises(gk.LoweringError) as err:
        gk.compile(g, out, target="llvm")
    message = str(err.value)
    for part in ("%broken", "tvm_test_bad_reshape", "f32[3,4]", "llvm", "Reshape expects"):
        assert part in message
    assert len(message.splitlines()) == 1


def test_non_llvm_target_is_a_lowering_error():
    with pytest.raises(gk.LoweringError, match="cuda"):
        target_options({"kind": "cuda"})


def test_compile_failure_is_blamed_on_the_node_that_fails_alone():
    custom_op("tvm_test_fma")
    # Relax has no lowering for ewise_fma, so the module builds but does not compile
    register_emitter("tvm_test_fma")(lambda ctx, node, args: R.ewise_fma(args[0], args[0], args[0]))
    with gk.Graph() as g:
        out = gk.exp(gk.emit("tvm_test_fma", gk.exp(gk.input("x", (3,))), name="fma"))
    with pytest.raises(gk.LoweringError, match=r"cannot compile %fma = tvm_test_fma\(f32\[3\]\) for llvm.*CodeGenVM"):
        gk.compile(g, out, target="llvm")


def test_symbol_only_inside_an_input_dim_expression_is_reported_before_tvm_fails():
    with gk.Graph() as g:
        out = gk.input("x", (symbol("N") * 2,)) * 2.0
    with pytest.raises(gk.LoweringError, match=r"\['N'\].*exactly the symbol"):
        gk.compile(g, out, target="llvm")


def test_symbol_inside_an_expression_is_fine_when_another_input_binds_it():
    n = symbol("N")
    with gk.Graph() as g:
        x, y = gk.input("x", (n * 2,)), gk.input("y", (n,))
        out = gk.reshape(x, (n, 2)) * gk.expand_dims(y, (1,))
    assert_agree(g, out, [{"x": np.arange(2.0 * k, dtype="float32"), "y": np.ones(k, "float32")} for k in (1, 3)])


def test_symbolic_slices_combine_where_relax_cannot_prove_their_shapes_equal():
    n = symbol("N")
    with gk.Graph() as g:
        x = gk.input("x", ("N", 6))
        shifted = gk.slice(x, (1, 2), (n, 6), (1, 1)) + gk.slice(x, (0, 0), (n - 1, 4), (1, 1))
        out = gk.concat([shifted, gk.slice(x, (0, 0), (n, 4), (1, 1))], 0)
    assert_agree(g, out, [{"x": np.arange(6.0 * k, dtype="float32").reshape(k, 6)} for k in (1, 2, 5)])


@pytest.mark.parametrize("op", ["sum", "mean", "max", "expand_dims", "squeeze"])
def test_empty_axes_mean_no_axis_not_every_axis(op):
    attrs = {"keepdims": False} if op in ("sum", "mean", "max") else {}
    with gk.Graph() as g:
        out = gk.emit(op, gk.input("x", ("N", 3)), axes=(), **attrs)
    assert_agree(g, out, [{"x": np.arange(3.0 * k, dtype="float32").reshape(k, 3)} for k in (1, 4)])


def test_vm_run_time_check_failure_is_a_condensed_lowering_error():
    n = symbol("N")
    with gk.Graph() as g:
        x, y = gk.input("x", (n * 2,)), gk.input("y", (n,))
        out = gk.reshape(x, (n, 2)) * gk.expand_dims(y, (1,))
    compiled = gk.compile(g, out, target="llvm")
    with pytest.raises(gk.LoweringError, match="running graph") as err:
        compiled(x=np.zeros(8, "float32"), y=np.zeros(3, "float32"))  # x binds N before y does
    assert len(str(err.value).splitlines()) == 1


def test_float16_matmul_accumulates_in_float32_like_numpy():
    """4096 ones summed in float16 would stop at 2048; autocast relies on float32 accumulation."""
    with gk.Graph() as g:
        a = gk.input("a", (2, 4096), "float16")
        b = gk.input("b", (4096, 3), "float16")
        out = a @ b
    feeds = {"a": np.ones((2, 4096), np.float16), "b": np.ones((4096, 3), np.float16)}
    np.testing.assert_array_equal(gk.compile(g, out, target="llvm")(**feeds), np.full((2, 3), 4096, np.float16))
    np.testing.assert_array_equal(gk.compile(g, out)(**feeds), np.full((2, 3), 4096, np.float16))


def test_compiling_does_not_import_torch_which_then_imports_normally():
    """apache-tvm-ffi imports torch whenever it is installed (1.4 s of a cold compile); gradkiln
    hides it while TVM loads, and torch stays importable afterwards."""
    pytest.importorskip("torch", reason="needs torch: pip install -e '.[test]'")
    script = (
        "import sys, numpy as np, gradkiln as gk\n"
        "with gk.Graph() as g:\n"
        "    x = gk.input('x', (4, 4))\n"
        "    y = gk.tanh(x @ x)\n"
        "got = gk.compile(g, y, target='llvm')(x=np.eye(4, dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import torch\n"
        "assert torch.allclose(torch.tanh(torch.eye(4)), torch.from_numpy(got))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_executables_take_arguments_positionally_in_argument_order(target):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.0, -2.0, 0.5], np.float32)
    w = np.full((3,), 3.0, np.float32)
    with gk.Graph("affine") as g:
        x = gk.input("x", ("N", 3))
        scale = gk.param("scale", np.ones(3, np.float32))
        y = gk.input("y", (3,))  # created after the param: inputs still come first
        out = x * scale + y
    run = gk.compile(g, out, target=target)
    assert run.argument_names == ["x", "y", "scale"]
    assert "(x: f32[N,3], y: f32[3], scale: f32[3] = <param>) -> f32[N,3]" in repr(run)
    np.testing.assert_allclose(run(a, b), a + b)
    np.testing.assert_allclose(run(a, b, w), a * w + b)
    np.testing.assert_allclose(run(a, y=b, scale=w), a * w + b)
    np.testing.assert_allclose(run({"x": a, "y": b}, scale=w), a * w + b)
    np.testing.assert_allclose(run(x=a, y=b), a + b)


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_a_wrong_positional_call_says_how_to_call(target):
    with gk.Graph("affine") as g:
        x, y = gk.input("x", (3,)), gk.input("y", (3,))
        out = x + y
    run = gk.compile(g, out, target=target)
    a = np.ones(3, np.float32)
    with pytest.raises(gk.GraphError, match=r"takes 2 positional argument\(s\) \(x: f32\[3\], y: f32\[3\]\), got 3"):
        run(a, a, a)
    with pytest.raises(gk.GraphError, match="argument 'x' is given twice"):
        run(a, x=a, y=a)
    with pytest.raises(gk.GraphError, match=r"missing inputs \['y'\].*positionally in the order \(x: f32\[3\], y"):
        run(a)


QUIET_SCRIPT = """
import sys, tempfile
import numpy as np
import gradkiln as gk
from gradkiln.graph import OpDef, register_op

folder = tempfile.mkdtemp()
with gk.Graph() as g:
    x = gk.input("x", ("N", 4))
    w = gk.param("w", np.ones((4, 3), np.float32))
    y = gk.relu(x @ w + gk.constant(np.arange(3, dtype=np.float32)))
gk.compile(g, y, target="llvm", cache=folder)
assert gk.compile(g, y, target="llvm", cache=folder).cache_hit
gk.compile(g, y, target="llvm").export(folder + "/model.so")  # TVM logs one line per memory scope
register_op(OpDef("quiet_test_noemit", lambda x: (x,), lambda x: x, 1))
with gk.Graph() as h:
    out = gk.emit("quiet_test_noemit", gk.input("x", (2,)))
try:
    gk.compile(h, out, target="llvm")  # fails inside TVM's BlockBuilder scopes
except gk.UnsupportedOpError:
    pass
print("python's own stderr stays", file=sys.stderr)
"""


@pytest.mark.slow
def test_tvm_log_lines_reach_the_user_only_with_gradkiln_debug():
    def run(debug: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "GRADKILN_DEBUG": debug}
        command = [sys.executable, "-c", QUIET_SCRIPT]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    quiet, debug = run("0"), run("1")
    assert quiet.returncode == 0 and debug.returncode == 0, quiet.stderr + debug.stderr
    assert "Scope Saving:" in debug.stderr  # TVM does log here: the filter is what keeps it out below
    output = quiet.stdout + quiet.stderr
    assert "Scope" not in output and "Warning:" not in output, output
    assert quiet.stderr == "python's own stderr stays\n"


def test_tvm_sections_drop_tvm_log_lines_and_forward_the_rest(capfd, monkeypatch):
    monkeypatch.delenv("GRADKILN_DEBUG", raising=False)
    with tvm_section():
        os.write(2, b"[19:03:11] /project/src/runtime/vm/executable.cc:276: Warning: Scope Saving:")
        os.write(2, b"\nkept line\n\rprogress 1")
        with tvm_section():  # nested: the outer section's filter stays in place
            os.write(2, b"\n[19:03:11] /project/src/relax/ir/block_builder.cc:67: Warning: BlockBuilder destroyed\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "kept line\n\rprogress 1\nafter\n"
