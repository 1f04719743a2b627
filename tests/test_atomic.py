"""gradkiln.atomic: whole files or none, with the usual mode, and no umask race with other threads."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from gradkiln import atomic


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_follows_changes_without_touching_the_mask(umask_022, monkeypatch):
    assert atomic.current_umask() == 0o022
    os.umask(0o027)
    calls = []
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask))  # reading must not set it
    assert atomic.current_umask() == 0o027
    assert calls == []


def test_current_umask_falls_back_to_the_value_read_at_import(monkeypatch):
    monkeypatch.setattr(atomic, "_STATUS", "/nonexistent/status")
    monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called after import"))
    assert atomic.current_umask() == atomic._UMASK_AT_IMPORT


def test_written_files_get_the_usual_mode_and_content(tmp_path, umask_022):
    path = atomic.write_atomic(tmp_path / "sub" / "a.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert _mode(path) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["a.bin"]  # no temporary left behind


def test_a_failed_write_leaves_no_file(tmp_path):
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        atomic.write_atomic_with(tmp_path / "a.so", fail)
    assert list(tmp_path.iterdir()) == []


def test_files_other_threads_create_meanwhile_keep_their_mode(tmp_path, umask_022):
    """os.umask(0) to read the mask made files of other threads 0666 (78 in 20,000)."""
    stop = threading.Event()
    created: list[Path] = []

    def create(index: int) -> None:
        count = 0
        while not stop.is_set():
            path = tmp_path / f"plain-{index}-{count}"
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))
            created.append(path)
            count += 1

    def write(index: int) -> None:
        for count in range(1500):
            atomic.write_atomic(tmp_path / f"atomic-{index}-{count}", b"x")

    creators = [threading.Thread(target=create, args=(i,)) for i in range(2)]
    writers = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in creators + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in creators:
        thread.join()
    modes = {path.name: _mode(path) for path in tmp_path.iterdir()}
    assert len(modes) == 3000 + len(created)
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o644} == {}
