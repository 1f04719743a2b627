"""docs/troubleshooting.md covers every error class gradkiln defines."""

from pathlib import Path

import gradkiln as gk

DOC = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"


def all_subclasses(cls):
    return {cls} | {s for sub in cls.__subclasses__() for s in all_subclasses(sub)}


def test_every_error_class_has_a_row():
    text = DOC.read_text()
    missing = [
        c.__name__ for c in all_subclasses(gk.GradkilnError) - {gk.GradkilnError} if f"`{c.__name__}`" not in text
    ]
    assert not missing, f"add these to docs/troubleshooting.md: {missing}"
