"""Run a function in several local worker processes joined by a gloo process group: what the
tests and documentation examples use, and a quick way to try data parallelism on one machine.

`spawn(fn, nprocs, *args)` starts `nprocs` processes, each joining a gloo group over loopback on a
free port, runs `fn(*args)` in each and returns their results in rank order. It never hangs: a
worker that raises or dies makes `spawn` stop the others and raise `DistributedError` naming the
rank (and its traceback), and so does a run longer than `timeout` seconds.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import time
import traceback
from typing import Any, Callable

from ..graph.errors import DistributedError
from .communicator import DEFAULT_TIMEOUT, destroy_process_group, init_process_group


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(
    fn: Callable[..., Any], rank: int, nprocs: int, port: int, args: tuple, collective_timeout: float, results: Any
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(nprocs))
    try:
        init_process_group("gloo", rank, nprocs, timeout=collective_timeout)
        value = fn(*args)
        results.put((rank, True, value))
    except BaseException:  # reported to the parent, which names the rank
        results.put((rank, False, traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        destroy_process_group()


def spawn(
    fn: Callable[..., Any],
    nprocs: int,
    *args: Any,
    timeout: float = 120.0,
    collective_timeout: float = DEFAULT_TIMEOUT,
    start_method: str = "fork",
) -> list[Any]:
    """`fn(*args)` in `nprocs` gloo workers on this machine; their results by rank. `fn` must be
    picklable with `start_method` "spawn" (a module-level function); "fork" (the default on
    Linux) starts faster and also takes closures."""
    context = multiprocessing.get_context(start_method)
    results = context.Queue()
    port = free_port()
    workers = [
        context.Process(target=_worker, args=(fn, rank, nprocs, port, args, collective_timeout, results), daemon=True)
        for rank in range(nprocs)
    ]
    for w in workers:
        w.start()
    try:
        return _collect(workers, results, time.monotonic() + timeout)
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
            w.join(5)


def _collect(workers: list[Any], results: Any, deadline: float) -> list[Any]:
    values: dict[int, Any] = {}
    while len(values) < len(workers):
        try:
            rank, ok, value = results.get(timeout=0.2)
        except queue.Empty:
            dead = [r for r, w in enumerate(workers) if r not in values and w.exitcode not in (None, 0)]
            if dead:
                raise DistributedError(f"worker rank {dead[0]} died (exit code {workers[dead[0]].exitcode})") from None
            if time.monotonic() > deadline:
                waiting = [r for r in range(len(workers)) if r not in values]
                raise DistributedError(f"workers {waiting} did not finish within the timeout") from None
            continue
        if not ok:
            raise DistributedError(f"worker rank {rank} failed:\n{value}")
        values[rank] = value
    return [values[r] for r in range(len(workers))]
