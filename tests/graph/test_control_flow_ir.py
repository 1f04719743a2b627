"""The control-flow IR: bodies (content keys, captured tensors, pruning), the numpy semantics
of scan and cond, nesting, and the errors for malformed loops and branches."""

import numpy as np
import pytest

import gradkiln as gk
from gradkiln.graph.body import Body, run_body


def run(graph, outputs, **feeds):
    return gk.compile(graph, outputs, target="numpy")(**feeds)


def scan_node(graph):
    (node,) = graph.nodes_of("scan")
    return node


def test_outer_tensors_read_by_the_body_become_operands_of_the_scan():
    with gk.Graph() as g:
        w = gk.param("w", np.array([2.0, 3.0]))
        x = gk.input("x", (4, 2), "float64")
        final, _ = gk.scan(lambda c, xt: (c * w + xt, None), gk.constant(np.zeros(2)), x)
    node = scan_node(g)
    assert [g.label_of(v) for v in node.inputs][1:] == ["%x", "%w"]
    xv = np.arange(8.0).reshape(4, 2)
    expected = np.zeros(2)
    for row in xv:
        expected = expected * [2.0, 3.0] + row
    np.testing.assert_allclose(run(g, final, x=xv), expected)


def test_equal_bodies_have_equal_keys_and_constants_count_by_value():
    def body_of(scale):
        with gk.Graph() as g:
            x = gk.input("x", (3, 2), "float64")
            gk.scan(lambda c, xt: (c + xt * scale, None), gk.constant(np.zeros(2)), x)
        return scan_node(g).attrs["body"]

    assert body_of(2.0) == body_of(2.0) and hash(body_of(2.0)) == hash(body_of(2.0))
    assert body_of(2.0) != body_of(3.0)
    assert repr(body_of(2.0)).startswith("Body(")


def test_run_body_evaluates_op_by_op_and_binds_symbolic_dims_from_the_arrays():
    with gk.Graph() as g:
        x = gk.input("x", (2, "N"), "float64")
        _, ys = gk.scan(lambda c, xt: (c + gk.sum(xt), gk.reshape(xt, (-1,))), gk.constant(0.0, "float64"), x)
    body = scan_node(g).attrs["body"]
    assert isinstance(body, Body)
    total, flat = run_body(body, [np.array(1.0), np.ones(5)])
    assert total == 6.0 and flat.shape == (5,)
    np.testing.assert_allclose(run(g, ys, x=np.ones((2, 4))), np.ones((2, 4)))


def test_unused_nodes_are_pruned_from_a_body():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")

        def step(c, xt):
            gk.exp(xt) * 7.0  # computed, never used
            return c + xt, None

        gk.scan(step, gk.constant(0.0, "float64"), x)
    ops = {n.op for n in scan_node(g).attrs["body"].graph.nodes()}
    assert ops == {"input", "add"}


def test_nested_scans_capture_through_both_levels():
    with gk.Graph() as g:
        m = gk.input("m", (2, 3), "float64")
        k = gk.input("k", (), "float64")

        def outer(c, row):
            inner, _ = gk.scan(lambda a, v: (a + v * k, None), c, row)
            return inner, inner

        total, partial = gk.scan(outer, gk.constant(0.0, "float64"), m)
    mv = np.arange(6.0).reshape(2, 3)
    got_total, got_partial = run(g, [total, partial], m=mv, k=np.array(2.0))
    np.testing.assert_allclose(got_partial, np.cumsum(mv.sum(1)) * 2.0)
    assert got_total == 30.0


def test_pytrees_of_carries_and_ys():
    with gk.Graph() as g:
        x = gk.input("x", (3,), "float64")
        init = (gk.constant(0.0, "float64"), [gk.constant(1.0, "float64")])
        (s, [p]), ys = gk.scan(lambda c, xt: ((c[0] + xt, [c[1][0] * xt]), (xt, xt * 2)), init, x)
    got = run(g, [s, p, ys[0], ys[1]], x=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(got[0], 6.0)
    np.testing.assert_allclose(got[1], 6.0)
    np.testing.assert_allclose(got[3], [2.0, 4.0, 6.0])


def test_a_carry_that_changes_type_is_an_error_naming_both_types():
    with gk.Graph():
        x = gk.input("x", (3, 2), "float32")
        with pytest.raises(gk.ShapeError, match=r"carry leaf 0 enters the body as f32\[2\] and leaves it as f32\[\]"):
            gk.scan(lambda c, xt: (gk.sum(c + xt), None), gk.constant(np.zeros(2, "float32")), x)


def test_xs_of_different_lengths_and_missing_length_are_errors():
    with gk.Graph():
        a, b = gk.input("a", (3,), "float32"), gk.input("b", (4,), "float32")
        with pytest.raises(gk.ShapeError, match="one static int"):
            gk.scan(lambda c, x: (c, None), gk.constant(0.0), (a, b))
        with pytest.raises(gk.ShapeError, match="length="):
            gk.scan(lambda c, x: (c, None), gk.constant(0.0), None)
        with pytest.raises(gk.GraphError, match=r"pair \(new carry, y\)"):
            gk.scan(lambda c, x: c, gk.constant(0.0), a)


def test_cond_branches_must_agree_and_the_predicate_must_be_a_bool_scalar():
    with gk.Graph():
        x = gk.input("x", (3,), "float32")
        with pytest.raises(gk.ShapeError, match=r"output 1 is f32\[3\] in the true branch but f32\[\] in the false"):
            gk.cond(gk.sum(x) > 0, lambda v: (v, v), lambda v: (v, gk.sum(v)), x)
        with pytest.raises(gk.ShapeError, match="the true branch returns"):
            gk.cond(gk.sum(x) > 0, lambda v: (v, v), lambda v: v, x)
        with pytest.raises(gk.DTypeError, match="bool scalar"):
            gk.cond(x > 0, lambda v: v, lambda v: v, x)


def test_cond_runs_only_the_branch_taken_in_numpy():
    with gk.Graph() as g:
        x = gk.input("x", (), "float64")
        y = gk.cond(x > 0, lambda v: gk.log(v), lambda v: v - 1.0, x)
    with gk.detect_anomaly():  # log of a negative number would be NaN
        assert run(g, y, x=np.array(-2.0)) == -3.0


def test_while_loop_needs_a_bool_condition_and_a_positive_bound():
    with gk.Graph():
        s = gk.input("s", (), "float32")
        with pytest.raises(gk.DTypeError, match="cond_fn must return a bool scalar"):
            gk.while_loop(lambda v: v * 2.0, lambda v: v, s, 3)
        with pytest.raises(gk.ShapeError, match="max_trips"):
            gk.while_loop(lambda v: v < 1.0, lambda v: v, s, 0)


def test_cse_merges_identical_scans_and_cost_counts_the_body_per_step():
    with gk.Graph() as g:
        x = gk.input("x", (10, 4), "float32")
        one, _ = gk.scan(lambda c, xt: (c * xt + 1.0, None), gk.constant(np.zeros(4, "float32")), x)
        two, _ = gk.scan(lambda c, xt: (c * xt + 1.0, None), gk.constant(np.zeros(4, "float32")), x)
        out = one + two
    optimized, _, _ = gk.optimize(g, [out.value], "O2")
    assert len(optimized.nodes_of("scan")) == 1
    scan_cost = [n for n in gk.cost(g, out).nodes if n.op == "scan"]
    assert [n.flops for n in scan_cost] == [10 * 2 * 4] * 2
