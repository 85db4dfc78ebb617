"""The core is pure: no clock, no randomness, no I/O (design must 1).

Scans every module of the ``octoproto`` package (except ``__main__``, which
only forwards to the command line) for imports of OS-facing modules and for
``os.urandom``. A scan rather than a runtime check, so that a forbidden import
in a rarely used branch is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import octoproto

FORBIDDEN_MODULES = {
    "socket",
    "ssl",
    "select",
    "selectors",
    "threading",
    "asyncio",
    "trio",
    "anyio",
    "time",
    "random",
    "secrets",
    "subprocess",
    "multiprocessing",
    "signal",
}
PACKAGE = Path(octoproto.__file__).parent


def _core_modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.name != "__main__.py")


def _violations(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute) and node.attr == "urandom":
            names = ["os.urandom"]
        else:
            continue
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES or name == "os.urandom":
                found.append(f"{filename}:{node.lineno}: {name}")
    return found


def test_core_modules_import_nothing_that_touches_the_os() -> None:
    modules = _core_modules()
    assert len(modules) > 10  # the scan really looked at the package
    violations = [v for path in modules for v in _violations(path.read_text(), path.name)]
    assert violations == []


def test_the_scan_catches_each_kind_of_violation() -> None:
    source = "import time\nfrom socket import socket\nimport os\nos.urandom(4)\nimport json\n"
    assert _violations(source, "bad.py") == [
        "bad.py:1: time",
        "bad.py:2: socket",
        "bad.py:2: socket.socket",
        "bad.py:4: os.urandom",
    ]
