"""Sphinx configuration: ``python -m sphinx -W -b html docs docs/_build/html``.

Pages are Markdown (MyST). The API reference comes from the docstrings
(autodoc, type hints in the descriptions); the tables of config options,
events and errors are generated from the code by ``_ext/octoproto_docs.py``,
so they cannot fall behind it. ``octoproto.adapters`` is importable once the
package is installed (``pip install -e ".[docs]"``), as in CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import octoproto

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "octoproto"
author = "octoproto contributors"
copyright = "octoproto contributors"
release = octoproto.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinxcontrib.mermaid",
    "octoproto_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# examples/ are Python files included into pages; statediagram.py writes one.
exclude_patterns = ["_build", "_ext", "examples", "Thumbs.db", ".DS_Store"]

# The build runs with -W. These two are cosmetic, and common in the Markdown
# notes pages gathered from docs/ (a JSON sample with "..." in it, a heading
# level skipped): the block is shown unhighlighted, the heading as written.
# Broken links and references still fail the build.
suppress_warnings = ["misc.highlighting_failure", "myst.header"]

# --- MyST -------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
# ```mermaid fences (as GitHub renders them) become the mermaid directive.
myst_fence_as_directive = ["mermaid"]
# Headings get anchors, so pages can link to [a section](page.md#a-section).
myst_heading_anchors = 3

# --- autodoc ------------------------------------------------------------------
# Type hints in the signatures: most parameters are explained in prose, so
# "description" would leave their types out.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True

# --- HTML ---------------------------------------------------------------------
html_theme = "furo"
html_title = f"octoproto {release}"
html_static_path: list[str] = []
