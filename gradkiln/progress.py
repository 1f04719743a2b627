"""A dependency-free progress line on stderr for steps that take more than a second.

    with Progress("optimizing", total=len(passes)) as bar:
        for name in passes:
            bar.step(name)
            ...

It draws only on a terminal (or when forced: `force=True` or `GRADKILN_PROGRESS=1`), and only
once `delay` seconds have passed, so quick commands and piped output stay clean. A background
thread redraws the elapsed time, so one long step (a TVM compile) still shows it is alive; on
exit the line is finished with the total time ("done" or "failed").
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

_WIDTH = 20  # characters of the bar when the total is known
_SPINNER = "|/-\\"


class Progress:
    """A context manager drawing `label`, a bar (or spinner), the current step and elapsed time."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        force: bool | None = None,
        delay: float = 1.0,
        interval: float = 0.2,
    ) -> None:
        self.label, self.total, self.delay, self.interval = label, total, delay, interval
        self.stream = stream if stream is not None else sys.stderr
        if force is None:
            force = os.environ.get("GRADKILN_PROGRESS") == "1"
        self.enabled = force or _is_tty(self.stream)
        self.done, self.current = 0, ""
        self._drawn = 0  # length of the line on screen, 0 when nothing is drawn
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="gradkiln-progress", daemon=True)
            self._thread.start()
        return self

    def step(self, name: str) -> None:
        """Start the next step, named `name` (counts the previous one as done)."""
        with self._lock:
            if self.current:
                self.done += 1
            self.current = name
        self._redraw()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._drawn:
            outcome = "failed" if kind is not None else "done"
            self._write(f"{self.label}: {outcome} in {self.elapsed:.1f}s", end="\n")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def line(self) -> str:
        """The text of the progress line now."""
        if self.total:
            done = min(self.done, self.total)
            filled = _WIDTH * done // self.total
            bar = f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {done}/{self.total}"
        else:
            bar = _SPINNER[int(self.elapsed / self.interval) % len(_SPINNER)]
        return " ".join(p for p in (f"{self.label}:", bar, self.current, f"{self.elapsed:.1f}s") if p)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._redraw()

    def _redraw(self) -> None:
        if self.enabled and self.elapsed >= self.delay and not self._stop.is_set():
            self._write(self.line())

    def _write(self, text: str, end: str = "") -> None:
        text = "".join(c if c.isprintable() else "?" for c in text)  # names may hold terminal escapes
        with self._lock:
            self.stream.write("\r" + text.ljust(self._drawn) + end)
            self.stream.flush()
            self._drawn = 0 if end else len(text)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return False
