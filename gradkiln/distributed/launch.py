"""Run a function in several local worker processes joined by a gloo process group: what the
tests and documentation examples use, and a quick way to try data parallelism on one machine.

`spawn(fn, nprocs, *args)` starts `nprocs` processes, each joining a gloo group over loopback on a
free port, runs `fn(*args)` in each and returns their results in rank order. It never hangs: a
worker that raises or dies makes `spawn` stop the others and raise `DistributedError` naming the
rank (and its traceback), and so does a run longer than `timeout` seconds. A worker that dies
does not stop the others: they fail on their own (a collective's timeout at the latest), each
naming the lost rank, and every rank's failure is in the error.
"""

from __future__ import annotations

import datetime
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


def store_client(port: int) -> Any:
    """A client of the rendezvous store `spawn` hosts on loopback `port`."""
    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", port, is_master=False, timeout=datetime.timedelta(seconds=30))


def _host_store(port: int, nprocs: int) -> Any:
    """The rendezvous store, hosted by the parent so that it outlives any worker (as torchrun's
    agent does): the survivors of a lost worker still meet in it to name that worker."""
    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", port, nprocs, is_master=True, wait_for_workers=False)


def _worker(
    fn: Callable[..., Any], rank: int, nprocs: int, port: int, args: tuple, options: tuple[float, str], results: Any
) -> None:
    collective_timeout, start_method = options
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(nprocs))
    if start_method == "fork":
        # a forked child has a copy of TVM's thread pool without its threads (if the parent ran a
        # compiled kernel): a parallel kernel would wait on them forever, so TVM runs one thread
        os.environ["TVM_NUM_THREADS"] = "1"
    try:
        init_process_group("gloo", rank, nprocs, timeout=collective_timeout, store=store_client(port))
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
    Linux) starts faster and also takes closures, and runs TVM kernels on one thread per worker."""
    context = multiprocessing.get_context(start_method)
    results = context.Queue()
    port = free_port()
    workers = [
        context.Process(
            target=_worker,
            args=(fn, rank, nprocs, port, args, (collective_timeout, start_method), results),
            daemon=True,
        )
        for rank in range(nprocs)
    ]
    for w in workers:
        w.start()
    store = _host_store(port, nprocs)  # after the forks: no worker inherits its socket or threads
    try:
        return _collect(workers, results, time.monotonic() + timeout)
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
            w.join(5)
        del store


def _collect(workers: list[Any], results: Any, deadline: float) -> list[Any]:
    """Every worker's result by rank; a DistributedError naming each failed, dead or late rank."""
    outcomes: dict[int, tuple[bool, Any]] = {}
    while len(outcomes) < len(workers) and time.monotonic() < deadline:
        try:
            rank, ok, value = results.get(timeout=0.2)
            outcomes[rank] = (ok, value)
        except queue.Empty:
            for rank, w in enumerate(workers):
                if rank not in outcomes and w.exitcode not in (None, 0):
                    outcomes[rank] = (False, f"died with exit code {w.exitcode}")
    _drain(results, outcomes)  # a message sent just before its worker exited replaces "died"
    failures = {r: value for r, (ok, value) in sorted(outcomes.items()) if not ok}
    late = [r for r in range(len(workers)) if r not in outcomes]
    if failures or late:
        raise DistributedError(_report(failures, late))
    return [outcomes[r][1] for r in range(len(workers))]


def _drain(results: Any, outcomes: dict[int, tuple[bool, Any]]) -> None:
    while True:
        try:
            rank, ok, value = results.get(timeout=0.5)
        except queue.Empty:
            return
        outcomes[rank] = (ok, value)


def _report(failures: dict[int, str], late: list[int]) -> str:
    """One line per failed rank (the last line of its traceback), then the first full traceback."""
    lines = [f"worker rank {r}: {text.strip().splitlines()[-1]}" for r, text in failures.items()]
    lines += [f"worker rank {r}: did not finish within the timeout (stopped)" for r in late]
    first = next(iter(failures.values()), "")
    return "\n".join(lines + ([f"first failure:\n{first}"] if "Traceback" in first else []))
