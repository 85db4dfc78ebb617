"""Test support shared by the adapter suite and the integration tests.

Importable as ``harness`` because pytest puts ``tests/`` on ``sys.path``
(``pythonpath`` in ``pyproject.toml``), the same way ``servers`` is.
"""
