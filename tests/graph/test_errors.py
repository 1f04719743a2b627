"""Build-time and call-time errors name the op, the operands, their shapes, and the fix."""

import numpy as np
import pytest

import gradkiln as gk


def test_matmul_shape_error_names_both_operands_and_shapes():
    with gk.Graph():
        a, b = gk.input("a", (3, 4)), gk.input("b", (5, 6))
        with pytest.raises(gk.ShapeError) as err:
            gk.matmul(a, b)
    message = str(err.value)
    for part in ("matmul", "%a", "%b", "f32[3,4]", "f32[5,6]", "4", "5"):
        assert part in message


def test_non_broadcastable_shapes():
    with gk.Graph():
        with pytest.raises(gk.ShapeError, match=r"add\(.*f32\[2,3\].*f32\[4\].*do not broadcast"):
            gk.input("a", (2, 3)) + gk.input("b", (4,))


def test_symbol_does_not_silently_broadcast_with_a_different_size():
    with gk.Graph():
        with pytest.raises(gk.ShapeError, match="N"):
            gk.input("a", ("N", 3)) + gk.input("b", (4, 3))


@pytest.mark.parametrize("dtype", ["float8", "complex32", object])
def test_unknown_dtype(dtype):
    with gk.Graph():
        with pytest.raises(gk.DTypeError, match="unknown dtype"):
            gk.input("x", (2,), dtype)


def test_rank_and_axis_errors():
    with gk.Graph():
        x = gk.input("x", (2, 3))
        with pytest.raises(gk.ShapeError, match="out of range"):
            gk.sum(x, axis=2)
        with pytest.raises(gk.ShapeError, match="too many indices"):
            x[0, 0, 0]
        with pytest.raises(gk.ShapeError, match="cannot reshape"):
            gk.reshape(x, (4, -1))
        with pytest.raises(gk.ShapeError, match="size is not 1"):
            gk.squeeze(x, 0)
        with pytest.raises(gk.ShapeError, match="out of bounds"):
            x[2]


def test_where_needs_bool_condition_and_exp_needs_float_after_explicit_emit():
    with gk.Graph():
        x = gk.input("x", (2,))
        with pytest.raises(gk.DTypeError, match="condition must be bool"):
            gk.emit("where", x, x, x)
        with pytest.raises(gk.DTypeError, match="floating dtype"):
            gk.emit("exp", gk.input("i", (2,), "int32"))


def test_mixing_graphs_and_duplicate_names():
    with gk.Graph():
        a = gk.input("a", (2,))
        with pytest.raises(gk.GraphError, match="already has a node named 'a'"):
            gk.input("a", (2,))
    with gk.Graph():
        b = gk.input("b", (2,))
    with pytest.raises(gk.GraphError, match="different graphs"):
        a + b
    with pytest.raises(gk.GraphError, match="no graph is open"):
        gk.input("c", (2,))


def test_tensors_have_no_truth_value():
    with gk.Graph():
        x = gk.input("x", (2,))
        with pytest.raises(gk.GraphError, match=r"gk\.where"):
            bool(x > 0)


def test_feed_errors_at_call_time():
    with gk.Graph() as g:
        x = gk.input("x", ("N", 3))
        y = gk.input("y", ("N", 3))
        out = x + y
    fn = gk.compile(g, out)
    with pytest.raises(gk.GraphError, match=r"missing inputs \['y'\]"):
        fn(x=np.ones((2, 3)))
    with pytest.raises(gk.GraphError, match="unknown feeds"):
        fn(x=np.ones((2, 3)), y=np.ones((2, 3)), z=1)
    with pytest.raises(gk.ShapeError, match="'y' has shape"):
        fn(x=np.ones((2, 3)), y=np.ones((4, 3)))
    with pytest.raises(gk.DTypeError, match="'x' has dtype"):
        fn(x=np.ones((2, 3), np.complex64), y=np.ones((2, 3)))
