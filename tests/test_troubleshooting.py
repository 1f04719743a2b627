"""docs/troubleshooting.md covers every error class gradkiln defines, and every message it quotes is
one gradkiln raises today: each row's example is triggered here and compared line by line."""

import re
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import gradkiln as gk

DOC = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"


def all_subclasses(cls):
    return {cls} | {s for sub in cls.__subclasses__() for s in all_subclasses(sub)}


def test_every_error_class_has_a_row():
    text = DOC.read_text()
    missing = [
        c.__name__ for c in all_subclasses(gk.GradkilnError) - {gk.GradkilnError} if f"`{c.__name__}`" not in text
    ]
    assert not missing, f"add these to docs/troubleshooting.md: {missing}"


def matmul_of_mismatched_shapes():
    with gk.Graph():
        gk.matmul(gk.input("a", (3, 4)), gk.input("b", (5, 6)))


def feed_of_the_wrong_shape():
    with gk.Graph() as g:
        y = gk.sum(gk.input("x", ("N", 3)))
    gk.compile(g, y)(x=np.ones((2, 4), np.float32))


def unknown_dtype():
    with gk.Graph():
        gk.input("x", (2,), "float8")


def bitwise_and_of_floats():
    with gk.Graph():
        gk.bitwise_and(gk.input("x", (2,)), gk.input("y", (2,)))


def unknown_feed():
    with gk.Graph() as g:
        y = gk.sum(gk.input("x", (2,)))
    gk.compile(g, y)(x=np.ones(2, np.float32), y=np.ones(2, np.float32))


def unknown_op():
    with gk.Graph() as g:
        g.add_node("conv3d", [gk.input("x", (2,)).value])


def gradient_of_a_non_scalar():
    with gk.Graph():
        x = gk.input("x", (2, 3))
        gk.grad(gk.exp(x), [x])


def unknown_target():
    with gk.Graph() as g:
        y = gk.sum(gk.input("x", (2,)))
    gk.compile(g, y, target="vulkan")


def bytes_that_are_not_onnx():
    gk.onnx_io.import_model(b"not a model")


def axes_from_a_graph_input():
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="total")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    inputs.append(helper.make_tensor_value_info("axes", TensorProto.INT64, [1]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])]
    graph = helper.make_graph([node], "model", inputs, outputs)
    gk.onnx_io.import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


# The row's example built by a `forward` function on line 12 of a file "model.py".
MODEL_PY = "\n" * 10 + "def forward(x):\n    return gk.log(x)\n"


@pytest.fixture(params=["numpy", "llvm"])
def log_of_a_negative(request):
    def run():
        namespace = {"gk": gk}
        exec(compile(MODEL_PY, "model.py", "exec"), namespace)
        with gk.Graph() as g:
            y = namespace["forward"](gk.input("x", (3,)))
        gk.compile(g, y, target=request.param, detect_anomaly=True)(x=np.array([-1, 1, 2], np.float32))

    return run


def take_past_the_end(target: str = "numpy") -> None:
    with gk.Graph() as g:
        w, i = gk.input("w", (4, 2), "float64"), gk.input("i", (3,), "int64")
        y = gk.take(w, i, axis=0)
    gk.compile(g, y, target=target, detect_anomaly=target != "numpy")(w=np.zeros((4, 2)), i=np.array([0, 5, -1]))


def take_past_the_end_on_llvm_under_anomaly_detection():
    take_past_the_end("llvm")


def render_as_jpeg():
    with gk.Graph() as g:
        y = gk.sum(gk.input("x", (2,)))
    gk.viz.render(g, "g.jpeg", [y])


def collective_without_a_process_group():
    with gk.Graph() as g:
        y = gk.distributed.all_reduce(gk.input("x", (3,)), world_size=2)
    gk.compile(g, y)(x=np.ones(3, np.float32))


EXAMPLES = {
    "ShapeError": [matmul_of_mismatched_shapes, feed_of_the_wrong_shape],
    "DTypeError": [unknown_dtype, bitwise_and_of_floats],
    "GraphError": [unknown_feed],
    "UnsupportedOpError": [unknown_op],
    "GradientError": [gradient_of_a_non_scalar],
    "LoweringError": [unknown_target],
    "ONNXError": [bytes_that_are_not_onnx],
    "RunTimeValueError": [axes_from_a_graph_input],
    "IndexOutOfRangeError": [take_past_the_end, take_past_the_end_on_llvm_under_anomaly_detection],
    "VizError": [render_as_jpeg],
    "DistributedError": [collective_without_a_process_group],
}


def quoted_messages() -> dict[str, list[str]]:
    """Per error class, the backticked example messages of its table row."""
    rows = re.findall(r"^\| `(\w+)`[^|]*\|[^|]*\| (.*?) \|[^|]*\|$", DOC.read_text(), re.M)
    return {name: re.findall(r"`([^`]+)`", column) for name, column in rows}


def messages_of(name: str, examples) -> list[str]:
    """Run each example, which must raise exactly the error class `name`; its messages."""
    messages = []
    for example in examples:
        with pytest.raises(gk.GradkilnError) as info:
            example()
        assert type(info.value).__name__ == name, f"{example.__name__} raised {info.type.__name__}, not {name}"
        messages.append(str(info.value))
    return messages


def assert_quoted(quotes: list[str], messages: list[str]) -> None:
    """Every quote is one whole line of one of the messages; `...` in a quote stands for any text."""
    lines = [line.strip() for message in messages for line in message.splitlines()]
    for quote in quotes:
        pattern = ".*".join(map(re.escape, quote.split("...")))
        assert any(re.fullmatch(pattern, line) for line in lines), f"quoted {quote!r}, but gradkiln says {messages}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_quoted_messages_are_the_ones_gradkiln_raises(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quotes = quoted_messages()[name]
    assert quotes, f"the {name} row quotes no message"
    assert_quoted(quotes, messages_of(name, EXAMPLES[name]))


def test_the_quoted_anomaly_report_is_the_one_numpy_and_llvm_give(log_of_a_negative):
    assert_quoted(quoted_messages()["AnomalyError"], messages_of("AnomalyError", [log_of_a_negative]))


def test_every_row_quotes_a_message_checked_here():
    assert set(quoted_messages()) == set(EXAMPLES) | {"AnomalyError"}


def test_a_stale_quote_fails():
    with pytest.raises(AssertionError, match="quoted"):
        assert_quoted(
            ["unknown op 'conv2d'; registered ops: abs, ..."], messages_of("UnsupportedOpError", [unknown_op])
        )
