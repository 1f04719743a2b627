"""random_bits and gk.random's sampling on the numpy reference: the integer stream's properties,
the distributions against scipy.stats (Kolmogorov-Smirnov, chi-square) with fixed seeds, the
runtime seed, and the errors bad keys, shapes and dtypes give."""

import numpy as np
import pytest
from scipy import stats

import gradkiln as gk
from gradkiln.graph.ops.dropout import PRIME

P_MIN = 1e-3  # a correct sampler fails a test at a fixed seed with about this probability


def draw(build, key=7, key_shape=(), key_dtype="int64"):
    """Compile `build(key_tensor)` once on numpy and run it with `key` fed."""
    with gk.Graph() as g:
        k = gk.input("key", key_shape, key_dtype)
        out = build(k)
    return gk.compile(g, out)(key=np.asarray(key, key_dtype))


def test_random_bits_are_int64_codes_of_shape_key_shape_plus_shape():
    bits = draw(lambda k: gk.random.random_bits(k, (4, 5)), key=[3, -2, 9], key_shape=(3,))
    assert bits.dtype == np.int64 and bits.shape == (3, 4, 5)
    assert bits.min() >= 0 and bits.max() < PRIME
    assert len(np.unique(bits)) == bits.size  # a permutation of the block's indices: no repeats


def test_a_batch_of_keys_draws_each_keys_own_block():
    batch = draw(lambda k: gk.random.random_bits(k, (6,)), key=[11, 12], key_shape=(2,))
    for row, key in zip(batch, (11, 12)):
        np.testing.assert_array_equal(row, draw(lambda k: gk.random.random_bits(k, (6,)), key=key))


def test_equal_runtime_seeds_give_equal_samples_and_different_ones_differ():
    with gk.Graph() as g:
        step = gk.input("step", (), "int64")
        z = gk.random.normal(step, (100,))
    f = gk.compile(g, z)
    first, again, other = f(step=np.int64(1)), f(step=np.int64(1)), f(step=np.int64(2))
    np.testing.assert_array_equal(first, again)
    assert np.mean(first == other) == 0


def test_seeds_are_taken_modulo_the_prime_negative_ones_included():
    def bits(key):
        return draw(lambda k: gk.random.random_bits(k, (8,)), key=key)

    np.testing.assert_array_equal(bits(-5), bits(PRIME - 5))
    np.testing.assert_array_equal(bits(2**40), bits(2**40 % PRIME))
    np.testing.assert_array_equal(bits(3), draw(lambda k: gk.random.random_bits(k, (8,)), key=3, key_dtype="int32"))


def test_streams_split_and_fold_in_give_unrelated_draws():
    def build(k):
        return [
            gk.random.uniform(k, (2000,)),
            gk.random.uniform(gk.random.fold_in(k, 0), (2000,)),
            gk.random.uniform(gk.random.fold_in(k, 1), (2000,)),
            gk.random.uniform(gk.random.split(k, 2), (2000,)),
        ]

    a, b, c, pair = draw(build)
    samples = [a, b, c, *pair]
    correlation = np.corrcoef(samples)
    assert np.abs(correlation - np.eye(len(samples))).max() < 4 / np.sqrt(2000)
    # neighbouring seeds (step counters) are unrelated too
    seeds = draw(lambda k: gk.random.uniform(k, (2000,)), key=np.arange(5), key_shape=(5,))
    assert np.abs(np.corrcoef(seeds) - np.eye(5)).max() < 4 / np.sqrt(2000)


@pytest.mark.parametrize("dtype, bits", [("float16", 11), ("float32", 24), ("float64", 31)])
def test_uniform_is_exact_multiples_of_two_to_the_minus_bits_on_zero_one(dtype, bits):
    u = draw(lambda k: gk.random.uniform(k, (20000,), dtype))
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    scaled = u.astype(np.float64) * 2.0**bits
    np.testing.assert_array_equal(scaled, np.floor(scaled))
    assert stats.kstest(u.astype(np.float64), "uniform").pvalue > P_MIN


def test_uniform_with_bounds_and_kolmogorov_smirnov():
    u = draw(lambda k: gk.random.uniform(k, (20000,), "float64", low=-2.0, high=3.0))
    assert u.min() >= -2 and u.max() < 3
    assert stats.kstest(u, stats.uniform(-2, 5).cdf).pvalue > P_MIN


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_normal_matches_scipy_by_kolmogorov_smirnov(dtype):
    z = draw(lambda k: gk.random.normal(k, (20000,), dtype, mean=1.5, std=2.0), key=3)
    assert z.dtype == dtype and np.isfinite(z).all()
    assert stats.kstest(z.astype(np.float64), stats.norm(1.5, 2.0).cdf).pvalue > P_MIN


def test_a_wrong_transform_would_fail_the_normal_test():
    """The KS test has the power to see a near-normal impostor (a scaled uniform sum)."""
    u = draw(lambda k: gk.random.uniform(k, (20000, 3), "float64"))
    impostor = (u.sum(1) - 1.5) * 2.0  # variance 1, but not normal
    assert stats.kstest(impostor, "norm").pvalue < P_MIN


def test_gumbel_matches_scipy_and_is_finite():
    g = draw(lambda k: gk.random.gumbel(k, (20000,), "float64"))
    assert np.isfinite(g).all()
    assert stats.kstest(g, "gumbel_r").pvalue > P_MIN


def test_bernoulli_frequencies_per_probability():
    p = np.array([0.05, 0.3, 0.5, 0.9], np.float32)
    samples = draw(lambda k: gk.random.bernoulli(k, gk.constant(p), (5000, 4)))
    assert samples.dtype == bool and samples.shape == (5000, 4)
    frequency = samples.mean(0)
    np.testing.assert_array_less(np.abs(frequency - p), 4 * np.sqrt(p * (1 - p) / 5000))


def test_categorical_frequencies_are_the_softmax_by_chi_square():
    probabilities = np.array([0.1, 0.2, 0.3, 0.4])
    logits = np.log(probabilities).astype(np.float32)
    rows = np.tile(logits, (8000, 1))
    classes = draw(lambda k: gk.random.categorical(k, gk.constant(rows)))
    assert classes.dtype == np.int64 and classes.shape == (8000,)
    counts = np.bincount(classes, minlength=4)
    assert stats.chisquare(counts, 8000 * probabilities).pvalue > P_MIN


def test_categorical_along_a_leading_axis_with_a_batch_of_keys():
    logits = np.log(np.array([[0.7, 0.1], [0.3, 0.9]], np.float32))  # classes on axis 0
    classes = draw(
        lambda k: gk.random.categorical(k, gk.constant(logits), axis=0), key=np.arange(4000), key_shape=(4000,)
    )
    assert classes.shape == (4000, 2)
    np.testing.assert_allclose(classes.mean(0), [0.3, 0.9], atol=4 * np.sqrt(0.25 / 4000))


def test_a_python_int_key_is_a_constant_seed():
    with gk.Graph() as g:
        u = gk.random.uniform(5, (10,))
    np.testing.assert_array_equal(gk.compile(g, u)(), draw(lambda k: gk.random.uniform(k, (10,)), key=5))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gk.random.uniform(gk.input("f", ()), (3,)), "seed must be an integer tensor"),
        (lambda: gk.random.uniform(gk.input("u", (), "uint64"), (3,)), "other than uint64"),
        (lambda: gk.random.uniform(1.5, (3,)), "key must be an int or an integer Tensor"),
        (lambda: gk.random.uniform(True, (3,)), "key must be an int or an integer Tensor"),
        (lambda: gk.random.normal(0, ("N", 3)), "shape must be non-negative ints"),
        (lambda: gk.random.uniform(0, (3,), "int32"), "dtype must be a float dtype"),
        (lambda: gk.random.random_bits(0, (3,), stream=-1), "stream must be a non-negative int"),
        (lambda: gk.random.bernoulli(0, gk.input("p", (3,), "int32")), "p must be a float probability"),
        (lambda: gk.random.categorical(0, gk.input("l", (3,), "int64")), "logits must be a float Tensor"),
        (lambda: gk.random.fold_in(0, -1), "data must be a non-negative int"),
    ],
)
def test_bad_keys_shapes_and_dtypes_raise_graph_errors_that_say_what_to_do(build, message):
    with gk.Graph(), pytest.raises(gk.GraphError, match=message):
        build()


def test_random_bits_shows_in_the_printed_graph_and_its_cost():
    with gk.Graph() as g:
        bits = gk.random.random_bits(gk.input("key", (), "int64"), (10, 10))
    assert "random_bits(%key, shape=(10,10), stream=0) : i64[10,10]" in str(g)
    assert gk.cost(g, bits).by_op()["random_bits"].flops > 0
