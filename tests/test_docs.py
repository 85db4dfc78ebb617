"""The docs generated from code are up to date, and the reference is complete."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import octoproto

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


REFERENCE = DOCS / "reference"


def _load_extension() -> object:
    spec = importlib.util.spec_from_file_location(
        "octoproto_docs", DOCS / "_ext" / "octoproto_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_is_in_the_reference() -> None:
    # A name no page documents by name lands in api.rst's "Other names".
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    extension = _load_extension()
    documented = extension.documented_names(REFERENCE)  # type: ignore[attr-defined]
    others = extension.other_names(REFERENCE)  # type: ignore[attr-defined]
    assert documented | set(others) >= set(octoproto.__all__)
    assert "OctoPrintClient" in documented and "OctoPrintClient" not in others
    assert ".. octoproto-other-names::" in (REFERENCE / "api.rst").read_text()


def test_every_logger_is_documented() -> None:
    root = DOCS.parent
    in_code = {
        match.group(1)
        for folder in ("octoproto", "adapters")
        for path in (root / folder).rglob("*.py")
        for match in re.finditer(r"getLogger\(\s*[\"']([\w.]+)[\"']", path.read_text())
    }
    page = (REFERENCE / "logging.md").read_text()
    table = page.split("<!-- loggers:begin")[1].split("<!-- loggers:end")[0]
    in_docs = set(re.findall(r"^\| `([\w.]+)` \|", table, re.M))
    missing = sorted(in_code - in_docs)
    assert not missing, f"add these loggers to docs/reference/logging.md: {missing}"
    assert all(name.startswith("octoproto") for name in in_docs)
    assert all(name.startswith("octoproto.") for name in in_code)


def test_the_library_configures_no_logging() -> None:
    # A fresh interpreter: importing everything adds no handler and sets no level.
    code = (
        "import logging, octoproto, octoproto.testing, octoproto.adapters.cli\n"
        "import octoproto.adapters.blocking, octoproto.adapters.simulator\n"
        "names = [n for n in logging.root.manager.loggerDict if n.startswith('octoproto')]\n"
        "loggers = [logging.getLogger(n) for n in ['octoproto', *names]]\n"
        "assert not logging.root.handlers, logging.root.handlers\n"
        "assert all(not l.handlers and l.level == logging.NOTSET for l in loggers)\n"
        "assert all(l.propagate for l in loggers)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
