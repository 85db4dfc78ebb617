"""The docs generated from code are up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _load_statediagram() -> object:
    spec = importlib.util.spec_from_file_location("statediagram", DOCS / "statediagram.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_state_diagram_matches_the_transition_table() -> None:
    statediagram = _load_statediagram()
    text = (DOCS / "state-machine.md").read_text()
    assert statediagram.render(text) == text, "run: python docs/statediagram.py"  # type: ignore[attr-defined]
    assert "open --> closing: disconnect()" in text
