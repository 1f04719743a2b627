"""One TVM build at a time, with TVM's log lines kept from the user.

TVM's Relax `BlockBuilder` keeps its function stack in a class attribute, so two threads building
modules at once trip its bare `assert BlockBuilder._stack[-1] is self` (11 to 23 of 40 compiles from
8 threads); every build, export and load therefore runs inside `tvm_section()`, which holds one
process-wide lock.

TVM 0.27 logs from C++ with `std::cerr << line << std::endl` (`LogMessage` in
`tvm/runtime/logging.h`: no callback, no level setting for warnings): exporting a VM executable
prints an empty `Warning: Scope Saving:` per memory scope, loading one `Scope Loaded:`, legalizing
`take` a warning about its fast mode. While a section runs, file descriptor 2 points at a temporary
file; a thread forwards what else lands there (Python's own stderr, a progress line, a linker's
message) to the real stderr as it arrives, and drops TVM's lines. A file, not a pipe: TVM holds the
GIL while it logs, so a full pipe would wait forever for a reader that cannot run.
`GRADKILN_DEBUG=1` (the CLI's `--debug`) leaves stderr alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

DEBUG_VARIABLE = "GRADKILN_DEBUG"
TVM_LOCK = threading.RLock()
_TVM_LINE = re.compile(rb"\[\d\d:\d\d:\d\d\] [^\n]*?:\d+: ")  # LogMessage's prefix: [12:34:56] file.cc:276:
_POLL_SECONDS = 0.05
_state = threading.local()  # .filtering: this thread's outer section redirects stderr


def debug_enabled() -> bool:
    """Whether the user asked to see TVM's own output (GRADKILN_DEBUG=1)."""
    return os.environ.get(DEBUG_VARIABLE) == "1"


@contextlib.contextmanager
def tvm_section() -> Iterator[None]:
    """Hold the process-wide TVM lock; unless debugging, drop TVM's log lines meanwhile. Nests."""
    with TVM_LOCK:
        if getattr(_state, "filtering", False) or debug_enabled() or not hasattr(os, "pread"):  # pread: POSIX
            yield
            return
        _state.filtering = True
        try:
            with _tvm_lines_dropped():
                yield
        finally:
            _state.filtering = False


@contextlib.contextmanager
def _tvm_lines_dropped() -> Iterator[None]:
    """Point fd 2 at a temporary file and forward everything but TVM's log lines to the old fd 2."""
    with contextlib.ExitStack() as stack:
        try:
            capture = stack.enter_context(tempfile.TemporaryFile())
            saved = os.dup(2)
        except OSError:  # no room for the file, or no stderr: TVM's lines stay
            saved = None
        if saved is None:
            yield
            return
        stack.callback(os.close, saved)
        forwarder = _Forwarder(capture.fileno(), saved)
        stack.callback(forwarder.finish)
        _flush_python_stderr()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved, 2)


def _flush_python_stderr() -> None:
    for stream in {id(s): s for s in (sys.stderr, sys.__stderr__) if s is not None}.values():
        with contextlib.suppress(Exception):  # a closed or replaced stream has nothing buffered for fd 2
            stream.flush()


class _Forwarder:
    """Tails the capture file (reading at its own offset: fd 2 shares the file's position) and
    writes whole non-TVM lines, or a partial line that cannot start one, to `target`."""

    def __init__(self, source: int, target: int) -> None:
        self.source, self.target = source, target
        self.offset, self.pending = 0, b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gradkiln-tvm-stderr", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Forward what is left and stop."""
        self._stop.set()
        self._thread.join()
        self._pump()
        if self.pending and not _TVM_LINE.match(self.pending):
            self._write(self.pending)

    def _run(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            self._pump()

    def _pump(self) -> None:
        while chunk := os.pread(self.source, 1 << 16, self.offset):
            self.offset += len(chunk)
            self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not _TVM_LINE.match(line))
        if self.pending and not self.pending.startswith(b"["):  # a progress line, not a TVM line in the making
            kept, self.pending = kept + self.pending, b""
        self._write(kept)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # stderr closed: there is nobody to tell
            while data:
                data = data[os.write(self.target, data) :]
