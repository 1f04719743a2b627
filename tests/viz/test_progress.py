"""The progress line: drawn on a terminal or when forced, silent otherwise, always finished cleanly."""

import io
import threading
import time

import pytest

from gradkiln.progress import Progress


def progress_threads():
    return [t for t in threading.enumerate() if t.name == "gradkiln-progress"]


def test_forced_progress_draws_steps_and_finishes_the_line():
    stream = io.StringIO()
    with Progress("optimizing", total=2, stream=stream, force=True, delay=0, interval=0.01) as bar:
        bar.step("cse")
        time.sleep(0.05)
        bar.step("dce")
    text = stream.getvalue()
    assert "optimizing: [----------" in text and "0/2 cse" in text and "1/2 dce" in text
    last = text.split("\r")[-1]
    assert last.endswith("\n") and last.strip().startswith("optimizing: done in ")
    assert not progress_threads()


def test_a_spinner_shows_elapsed_time_during_one_long_step():
    stream = io.StringIO()
    with Progress("compiling", stream=stream, force=True, delay=0, interval=0.01):
        time.sleep(0.08)
    frames = stream.getvalue().split("\r")
    assert len(frames) > 3 and any(f.startswith("compiling: |") or f.startswith("compiling: /") for f in frames)


def test_not_a_terminal_means_no_output(monkeypatch):
    monkeypatch.delenv("GRADKILN_PROGRESS", raising=False)
    stream = io.StringIO()
    with Progress("quiet", stream=stream, delay=0, interval=0.01) as bar:
        bar.step("one")
        time.sleep(0.03)
    assert stream.getvalue() == "" and not progress_threads()


def test_quick_work_draws_nothing_before_the_delay():
    stream = io.StringIO()
    with Progress("fast", stream=stream, force=True, delay=5.0, interval=0.01) as bar:
        bar.step("one")
    assert stream.getvalue() == ""


def test_an_exception_finishes_the_line_as_failed(monkeypatch):
    monkeypatch.setenv("GRADKILN_PROGRESS", "1")
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Progress("work", stream=stream, delay=0, interval=0.01) as bar:
        bar.step("boom")
        raise RuntimeError("boom")
    assert stream.getvalue().endswith("\n") and "work: failed in" in stream.getvalue()
    assert not progress_threads()


def test_terminal_escapes_in_a_label_are_not_written():
    stream = io.StringIO()
    with Progress("report \x1b]0;owned\x07\x1b[2J", stream=stream, force=True, delay=0, interval=0.01) as bar:
        bar.step("drawing \x1b[31mred")
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "report ?]0;owned??[2J" in text
