"""The compile cache: a second compile loads the library (much faster, same results), corrupted or
truncated entries are detected by their sha256 and rebuilt, distinct graphs, targets and options
never share an entry, and racing writers never leave a broken one."""

import functools
import json
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import relax

import gradkiln as gk
from gradkiln.lowering.cache import MANIFEST, CacheWarning, CompileCache, cache_key, cache_root
from gradkiln.lowering.tvm.emitters import EMITTERS
from gradkiln.testing import mlp_feeds, mlp_training_step


def scaled_tanh(scale: float = 2.0, name: str = "g"):
    """tanh(x * w) * scale, with a param w and the constant `scale` baked into the kernel."""
    with gk.Graph(name) as g:
        x = gk.input("x", ("N", 8))
        w = gk.param("w", np.linspace(-1, 1, 8, dtype="float32"))
        y = gk.tanh(x * w) * gk.constant(np.float32(scale))
    return g, y


def numpy_reference(graph, outputs, feeds):
    return gk.compile(graph, outputs, target="numpy")(**feeds)


def run_library(library, graph, x):
    """Run a library of `scaled_tanh` on the Relax VM directly, as a deployment without gradkiln would."""
    vm = relax.VirtualMachine(library, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(graph.by_name("w").attrs["value"]))[0].numpy()


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """A cache folder holding the entry of `scaled_tanh()` on llvm, compiled once per module."""
    root = tmp_path_factory.mktemp("seed")
    graph, y = scaled_tanh()
    gk.compile(graph, y, target="llvm", cache=root)
    return root


@pytest.fixture
def seeded(seed, tmp_path):
    """A private copy of `seed`, for tests that damage or extend it."""
    return Path(shutil.copytree(seed, tmp_path / "cache"))


def entries(root):
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).exists())


def test_the_second_compile_is_a_cache_hit_much_faster_with_the_same_results(tmp_path):
    graph, outputs = mlp_training_step()
    feeds = mlp_feeds(7)
    start = time.perf_counter()
    first = gk.compile(graph, outputs, target="llvm", cache=tmp_path)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    second = gk.compile(graph, outputs, target="llvm", cache=tmp_path)
    hit_seconds = time.perf_counter() - start
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert hit_seconds < compile_seconds / 5, (hit_seconds, compile_seconds)
    assert second.scheduled == first.scheduled and second.scheduled
    assert {r.kernel for r in second.profile(feeds, repeat=1).rows} == {r.kernel for r in first.profile(feeds).rows}
    for got, same, want in zip(second(**feeds), first(**feeds), numpy_reference(graph, outputs, feeds)):
        np.testing.assert_array_equal(got, same)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_params_are_fed_at_run_time_so_new_values_reuse_the_entry(seed):
    graph, y = scaled_tanh()
    graph.by_name("w").attrs["value"][:] = 0.5  # same graph, other param values
    hit = gk.compile(graph, y, target="llvm", cache=seed)
    x = np.ones((3, 8), "float32")
    assert hit.cache_hit
    np.testing.assert_allclose(hit(x=x), np.tanh(x * 0.5) * 2, rtol=1e-6)


@pytest.mark.parametrize(
    ("part", "damage"), [("library", "flip"), ("library", "truncate"), ("library", "delete"), ("kernels", "flip")]
)
def test_a_corrupted_entry_is_detected_by_its_hash_and_rebuilt(seeded, part, damage):
    graph, y = scaled_tanh()
    (folder,) = seeded.iterdir()
    path = folder / json.loads((folder / MANIFEST).read_text())[part]["file"]
    data = path.read_bytes()
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:100] + b"\xff" + data[101:])
    with pytest.warns(CacheWarning, match=f"{folder.name}.*unusable.*rebuilding"):
        rebuilt = gk.compile(graph, y, target="llvm", cache=seeded)
    x = np.linspace(-2, 2, 16, dtype="float32").reshape(2, 8)
    assert not rebuilt.cache_hit
    np.testing.assert_allclose(rebuilt(x=x), numpy_reference(graph, y, {"x": x}), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert gk.compile(graph, y, target="llvm", cache=seeded).cache_hit


def test_an_unreadable_manifest_is_rebuilt(seeded):
    graph, y = scaled_tanh()
    (folder,) = seeded.iterdir()
    (folder / MANIFEST).write_text('{"format": 1, "libr')
    with pytest.warns(CacheWarning, match="unusable"):
        assert not gk.compile(graph, y, target="llvm", cache=seeded).cache_hit


def test_distinct_graphs_outputs_options_and_targets_get_distinct_entries(seeded):
    graph, y = scaled_tanh(2.0)
    other_constant, y2 = scaled_tanh(3.0)
    variants = [
        (other_constant, y2, "llvm", {}),  # same structure, another baked-in constant
        (graph, [y, "w"], "llvm", {}),  # another output selection
        (graph, y, "llvm", {"schedule": False}),
        (graph, y, {"kind": "llvm", "mcpu": "x86-64"}, {}),
    ]
    for g, outputs, target, options in variants:
        compiled = gk.compile(g, outputs, target=target, cache=seeded, **options)
        assert not compiled.cache_hit, (target, options)
    assert len(entries(seeded)) == 1 + len(variants)
    hit = gk.compile(other_constant, y2, target="llvm", cache=seeded)
    x = np.ones((2, 8), "float32")
    assert hit.cache_hit
    np.testing.assert_allclose(hit(x=x), numpy_reference(other_constant, y2, {"x": x}), rtol=1e-6)


def test_the_key_ignores_node_ids_and_graph_names_but_not_node_names():
    (g1, y1), (g2, y2) = scaled_tanh(name="a"), scaled_tanh(name="b")

    def key(graph, y):
        exe = gk.compile(graph, y, target="numpy")
        return cache_key(graph, exe.node_ids, exe.output_values, "llvm", {}, [])

    assert key(g1, y1) == key(g2, y2)
    with gk.Graph("c") as g3:
        x = gk.input("x2", ("N", 8))  # another input name: another calling convention
        w = gk.param("w", np.linspace(-1, 1, 8, dtype="float32"))
        y3 = gk.tanh(x * w) * gk.constant(np.float32(2.0))
    assert key(g3, y3) != key(g1, y1)


def test_racing_writers_of_one_key_never_leave_a_broken_entry(tmp_path):
    graph, y = scaled_tanh()
    compiled = gk.compile(graph, y, target="llvm")
    store, key = CompileCache(tmp_path), "k" * 64
    errors = []

    def write():
        try:
            store.store(key, compiled.compiled, compiled.kernels, compiled.scheduled, "llvm")
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    def read():
        for _ in range(20):
            with warnings.catch_warnings():
                warnings.simplefilter("error", CacheWarning)
                store.load(key)  # absent or whole, never a mix of two writers' files

    threads = [threading.Thread(target=write) for _ in range(4)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    hit = store.load(key)
    x = np.ones((2, 8), "float32")
    np.testing.assert_allclose(run_library(hit.library, graph, x), numpy_reference(graph, y, {"x": x}), rtol=1e-6)
    assert not [p.name for p in (tmp_path / key).iterdir() if p.name.startswith(".")]  # no temporaries left


def test_cache_true_uses_the_environment_folder(seed, monkeypatch):
    monkeypatch.setenv("GRADKILN_CACHE_DIR", str(seed))
    assert cache_root(True) == seed
    graph, y = scaled_tanh()
    assert gk.compile(graph, y, target="cpu", cache=True).cache_hit
    assert cache_root(False) is None


def test_a_cache_hit_exports_the_cached_library(seed, tmp_path):
    graph, y = scaled_tanh()
    hit = gk.compile(graph, y, target="llvm", cache=seed)
    library = hit.export(tmp_path / "out.so")
    x = np.full((4, 8), 0.3, "float32")
    np.testing.assert_allclose(run_library(tvm.runtime.load_module(str(library)), graph, x), hit(x=x), rtol=1e-6)


def test_a_failed_store_warns_and_the_compile_still_works(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    graph, y = scaled_tanh()
    with pytest.warns(CacheWarning, match="cannot store"):
        compiled = gk.compile(graph, y, target="llvm", cache=blocker)
    x = np.ones((1, 8), "float32")
    np.testing.assert_allclose(compiled(x=x), numpy_reference(graph, y, {"x": x}), rtol=1e-6)


@pytest.mark.parametrize("target", ["webgpu", "metal"])
def test_caching_a_cross_compiled_target_is_a_clear_error(target, tmp_path):
    graph, y = scaled_tanh()
    with pytest.raises(gk.LoweringError, match=rf"{target} library does not load here.*cache=False"):
        gk.compile(graph, y, target=target, cache=tmp_path)


def test_a_bad_cache_option_is_a_clear_error():
    graph, y = scaled_tanh()
    with pytest.raises(gk.LoweringError, match="cache must be True, False or a folder path, got 3"):
        gk.compile(graph, y, target="llvm", cache=3)


WRITER = """
import sys
import numpy as np
import gradkiln as gk
with gk.Graph("g") as g:
    x = gk.input("x", ("N", 8))
    y = gk.tanh(x * gk.param("w", np.linspace(-1, 1, 8, dtype="float32"))) * gk.constant(np.float32(2.0))
gk.compile(g, y, target="llvm", cache=sys.argv[1])
"""


@pytest.mark.slow
def test_racing_writer_processes_leave_one_loadable_entry(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)]) for _ in range(2)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    (key,) = entries(tmp_path)  # the writers' key (this process may hash other lowering sources)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        hit = CompileCache(tmp_path).load(key)
    graph, y = scaled_tanh()
    x = np.ones((2, 8), "float32")
    np.testing.assert_allclose(run_library(hit.library, graph, x), numpy_reference(graph, y, {"x": x}), rtol=1e-6)


OFFSET = 0.0  # a global a custom emitter reads


def scaling_emitter(scale, kind):
    """A custom emitter computing x * scale + OFFSET, with `scale` captured as `kind` says."""
    if kind == "closure":
        return lambda ctx, node, args: relax.op.add(relax.op.multiply(args[0], relax.const(scale, "float32")), offset())
    if kind == "default":
        return lambda ctx, node, args, scale=scale: relax.op.multiply(args[0], relax.const(scale, "float32"))
    return functools.partial(partial_emitter, scale)


def partial_emitter(scale, ctx, node, args):
    return relax.op.multiply(args[0], relax.const(scale, "float32"))


def offset():
    return relax.const(OFFSET, "float32")


def custom_scale_graph(emitter):
    """A graph of one custom op `cache_test_scale` whose TVM lowering is `emitter`."""
    if "cache_test_scale" not in gk.graph.OPS:
        gk.graph.register_op(gk.graph.OpDef("cache_test_scale", lambda x: (x,), lambda x: x, 1))
    EMITTERS["cache_test_scale"] = emitter
    with gk.Graph() as g:
        out = gk.emit("cache_test_scale", gk.input("x", (2,)))
    return g, out


@pytest.mark.parametrize("kind", ["closure", "default", "partial"])
def test_a_custom_emitter_captured_constant_is_part_of_the_key(kind, tmp_path):
    x = np.float32([1, 2])
    g, out = custom_scale_graph(scaling_emitter(2.0, kind))
    first = gk.compile(g, out, target="llvm", cache=tmp_path)
    np.testing.assert_array_equal(first(x=x), [2, 4])
    g, out = custom_scale_graph(scaling_emitter(3.0, kind))  # the same code, another captured value
    second = gk.compile(g, out, target="llvm", cache=tmp_path)
    assert not second.cache_hit
    np.testing.assert_array_equal(second(x=x), [3, 6])
    g, out = custom_scale_graph(scaling_emitter(2.0, kind))  # the first value again: its entry
    again = gk.compile(g, out, target="llvm", cache=tmp_path)
    assert again.cache_hit
    np.testing.assert_array_equal(again(x=x), [2, 4])


def test_a_global_a_custom_emitter_reads_is_part_of_the_key(tmp_path, monkeypatch):
    g, out = custom_scale_graph(scaling_emitter(1.0, "closure"))
    assert gk.compile(g, out, target="llvm", cache=tmp_path)(x=np.float32([1, 2])).tolist() == [1, 2]
    monkeypatch.setattr(sys.modules[__name__], "OFFSET", 10.0)  # read by offset(), which the emitter calls
    changed = gk.compile(g, out, target="llvm", cache=tmp_path)
    assert not changed.cache_hit
    np.testing.assert_array_equal(changed(x=np.float32([1, 2])), [11, 12])


def test_an_emitter_reading_a_value_it_cannot_hash_is_compiled_without_the_cache(tmp_path):
    class Scale:
        value = 2.0

    scale = Scale()
    g, out = custom_scale_graph(lambda ctx, node, args: relax.op.multiply(args[0], relax.const(scale.value, "float32")))
    with pytest.warns(CacheWarning, match=r"not using the compile cache: emitter .*lambda.* reads a .*Scale"):
        compiled = gk.compile(g, out, target="llvm", cache=tmp_path)
    assert not compiled.cache_hit and entries(tmp_path) == []
    np.testing.assert_array_equal(compiled(x=np.float32([1, 2])), [2, 4])


def test_fused_constants_are_keyed_at_full_precision(tmp_path):
    """Two O3 graphs whose fused constants differ past the 15th digit get distinct entries."""
    compiled = []
    for c in (0.1, 0.1 + 2e-17):
        with gk.Graph() as g:
            x = gk.input("x", (2,), "float64")
            out = gk.neg(x * gk.constant(np.float64(c)))
        compiled.append(gk.compile(g, out, target="llvm", cache=tmp_path, optimize="O3"))
    assert [c.cache_hit for c in compiled] == [False, False]
    x = np.float64([1, 3])
    np.testing.assert_array_equal(compiled[1](x=x), -(x * (0.1 + 2e-17)))
