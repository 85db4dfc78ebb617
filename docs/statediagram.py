"""Generate the session state diagram (Mermaid) from the core's transition table.

Run ``python docs/statediagram.py`` to rewrite the diagram block in
``docs/state-machine.md``; ``tests/test_docs.py`` fails when the file is out
of date, so the diagram can never drift from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from octoproto import TRANSITIONS

DOC = Path(__file__).with_name("state-machine.md")
BEGIN, END = "<!-- state-diagram:begin -->", "<!-- state-diagram:end -->"


def mermaid() -> str:
    """The transition table as a Mermaid ``stateDiagram-v2`` block."""
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> idle"]
    edges: dict[tuple[str, str], list[str]] = {}
    for (state, trigger), target in TRANSITIONS.items():
        edges.setdefault((state.value, target.value), []).append(trigger.value)
    for (source, target), triggers in edges.items():
        lines.append(f"    {source} --> {target}: {' / '.join(triggers)}")
    lines.append("```")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with its diagram block replaced by the current one."""
    block = f"{BEGIN}\n{mermaid()}\n{END}"
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
    sys.stdout.write(f"wrote {DOC}\n")
