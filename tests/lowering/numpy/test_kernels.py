"""The planned numpy executor's kernels: ops without an out= form run block by block into their
buffers, bit-identical to the plain executor, and a run that is mostly such ops (convolutions,
gelu, softmax) uses about the planned peak, not the planned peak plus whole-value temporaries."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.lowering.numpy import kernels as numpy_kernels
from gradkiln.lowering.numpy.kernels import blocks
from gradkiln.testing import measured_peak_bytes, op_samples


@pytest.mark.parametrize("sample", op_samples("float32"), ids=lambda s: s.name)
def test_every_op_cut_into_tiny_blocks_gives_the_plain_executors_bits(sample, monkeypatch):
    monkeypatch.setattr(numpy_kernels, "BLOCK_ELEMENTS", 5)  # the samples are small: force many blocks
    graph, inputs, out = sample.graph()
    with graph:
        grads = gk.grad(gk.sum(out * out), [inputs[k] for k in sample.wrt])
    outputs = [out, *grads]
    got = gk.compile(graph, outputs, memory_plan=True)(**sample.feeds)
    for a, b in zip(got, gk.compile(graph, outputs)(**sample.feeds)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("shape", "split_axes", "row"),
    [((7, 5, 3), 3, None), ((7, 5, 3), 1, None), ((4, 9), 2, 10_000), ((), 0, None), ((3, 0, 2), 3, None)],
)
def test_blocks_cover_every_element_once_and_keep_the_rank(shape, split_axes, row, monkeypatch):
    monkeypatch.setattr(numpy_kernels, "BLOCK_ELEMENTS", 4)
    seen = np.zeros(shape, int)
    for index in blocks(shape, split_axes, row):
        assert seen[index].ndim == len(shape)
        seen[index] += 1
    assert (seen == 1).all()
    if split_axes < len(shape) and shape[0] > 1:  # only the leading axes are cut
        assert all(len(index) <= split_axes or index == (Ellipsis,) for index in blocks(shape, split_axes, row))


def test_an_elementwise_node_does_not_overwrite_an_input_another_operand_views():
    with gk.Graph() as g:
        x = gk.input("x", (6, 6))
        e = gk.exp(x)
        out = gk.where(gk.input("c", (6, 6), "bool"), e, gk.transpose(e))  # e dies here, read transposed too
    feeds = {"x": np.arange(36, dtype=np.float32).reshape(6, 6) / 10, "c": np.eye(6, dtype=bool)}
    fn = gk.compile(g, out, memory_plan=True)
    np.testing.assert_array_equal(fn(**feeds), gk.compile(g, out)(**feeds))
    assert out.value.node not in fn.plan().inplace


def small_cnn_and_attention():
    """A conv + pool + gelu + softmax training step: every heavy op is a blockwise one."""
    rng = np.random.default_rng(0)
    with gk.Graph("mixed") as g:
        images, tokens = gk.input("images", (8, 3, 32, 32)), gk.input("tokens", (4, 64, 64))
        w = gk.param("w", rng.normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32))
        h = gk.max_pool2d(gk.gelu(gk.conv2d(images, w, padding=1)), 2)
        attention = gk.softmax(gk.matmul(tokens, gk.transpose(tokens, (0, 2, 1))), -1)
        loss = gk.mean(h * h) + gk.mean(gk.erf(attention))
        grads = gk.grad(loss, [w])
    feeds = {
        "images": rng.normal(size=(8, 3, 32, 32)).astype(np.float32),
        "tokens": rng.normal(size=(4, 64, 64)).astype(np.float32),
    }
    return g, [loss, *grads], feeds


def test_a_run_of_convolutions_gelu_and_softmax_stays_near_the_planned_peak():
    g, outputs, feeds = small_cnn_and_attention()
    fn = gk.compile(g, outputs, memory_plan=True)
    planned = fn.plan().peak_bytes
    measured = measured_peak_bytes(fn, feeds)
    plain = measured_peak_bytes(gk.compile(g, outputs), feeds)
    # beyond the plan: block-sized temporaries, and the copy the weight-gradient convolution's
    # einsum makes of its whole second operand (the activation gradient, 0.5 MiB here) per call
    assert planned <= measured <= planned + 1.25 * 2**20, (measured, planned)
    assert measured < 0.6 * plain
    for a, b in zip(fn(**feeds), gk.compile(g, outputs)(**feeds)):
        np.testing.assert_array_equal(a, b)
