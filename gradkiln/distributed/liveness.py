"""Which workers are still alive: heartbeats in the rendezvous store, to name a lost rank.

gloo tells a worker that a collective failed ("connection closed by peer", a timeout) but not
which worker is gone. Each worker runs a daemon thread that adds 1 to its counter in the
torch.distributed rendezvous store (the TCPStore at MASTER_ADDR:MASTER_PORT, hosted by rank 0)
every `PERIOD` seconds; after a failure, a worker marks itself failed and reads the counters
twice, `WATCH` seconds apart: a rank whose counter did not move (and that neither finished nor
failed) is lost. The store should outlive the workers (torchrun's agent hosts it, and so does
`spawn`'s parent); when it does not answer, rank 0, which then hosted it, is the one lost.
"""

from __future__ import annotations

import datetime
import os
import threading
import time

PERIOD = 0.25  # seconds between two heartbeats of a worker
WATCH = 12 * PERIOD  # how long a failed worker watches the counters (3 s)
CONNECT = datetime.timedelta(seconds=5)


def _key(kind: str, rank: int) -> str:
    return f"gradkiln/{kind}/{rank}"


def _client():
    """A new client of the rendezvous store, or None where the environment names none."""
    import torch.distributed as dist

    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port:
        return None
    return dist.TCPStore(host, int(port), is_master=False, timeout=CONNECT, wait_for_workers=False)


class Heartbeat:
    """This worker's heartbeat thread (`start`), its finish mark (`stop`) and `lost_ranks`."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start beating; False when there is no store to beat in (no MASTER_ADDR/MASTER_PORT)."""
        store = _client()
        if store is None:
            return False
        store.add(_key("beat", self.rank), 1)
        self._thread = threading.Thread(target=self._beat, args=(store,), daemon=True, name="gradkiln-heartbeat")
        self._thread.start()
        return True

    def _beat(self, store) -> None:
        while not self._stopped.wait(PERIOD):
            try:
                store.add(_key("beat", self.rank), 1)
            except RuntimeError:  # the store is gone (rank 0 ended): nothing left to tell
                return

    def stop(self) -> None:
        """Mark this worker finished (not lost) and stop beating."""
        self._stopped.set()
        try:
            store = _client()
            if store is not None:
                store.set(_key("done", self.rank), "1")
        except RuntimeError:
            pass

    def lost_ranks(self) -> list[int] | None:
        """The ranks that stopped beating without finishing or failing as this one did (this one
        is marked failed first); None where unknown (no store)."""
        if self._thread is None:
            return None
        try:
            store = _client()
            store.set(_key("failed", self.rank), "1")
            before = [store.add(_key("beat", r), 0) for r in range(self.world_size)]
            time.sleep(WATCH)
            after = [store.add(_key("beat", r), 0) for r in range(self.world_size)]
            done = [store.check([_key("done", r)]) or store.check([_key("failed", r)]) for r in range(self.world_size)]
        except RuntimeError:
            return [0]
        return [r for r in range(self.world_size) if after[r] == before[r] and not done[r] and r != self.rank]
