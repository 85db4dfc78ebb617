"""Every input of the committed fuzz corpus, and every saved finding, passes its target.

``fuzz/corpus/<target>/`` holds seeds cut from real traffic (the real
OctoPrint and the simulated one) and hand-made ones; ``fuzz/regressions/
<target>/`` holds the inputs of findings that were fixed. Running them all
here keeps every target importable and green between fuzzing runs, and
turns each fixed finding into a regression test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # fuzz/ lives beside tests/
    sys.path.insert(0, str(ROOT))

from fuzz.run import corpus_files  # noqa: E402
from fuzz.targets import TARGETS  # noqa: E402


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_committed_input_passes(name: str) -> None:
    files = corpus_files(name)
    assert files, f"fuzz/corpus/{name}/ is empty: run python fuzz/corpus_tools.py"
    for path in files:
        TARGETS[name].run(path.read_bytes())  # raises on a finding
