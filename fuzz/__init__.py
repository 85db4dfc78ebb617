"""Fuzz targets for octoproto's parsers and session engine, and their corpora.

``python fuzz/run.py --list`` names the targets; ``docs/fuzzing.md`` says how
to run them and what the long runs found. :mod:`fuzz.harness` (the adapter
model and the invariant checks) is shared with ``tests/core/test_stateful.py``.
"""
