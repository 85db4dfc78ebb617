"""Fixtures for the adapter suite: one facade per adapter, and a simulated OctoPrint.

``adapter`` runs each test once per adapter ("trio", "asyncio", "blocking")
through the same synchronous facade (:mod:`harness.facade`), and checks
afterwards that nothing is left running. ``simulator`` starts simulated
OctoPrints on loopback; they stop after the adapter has closed, and before
the check for threads and file descriptors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness.facade import ADAPTERS, Facade
from harness.faultmatrix import register
from harness.fixtures import facade_for, nothing_left_running
from octoproto.adapters.simulator import SimulatorHandle, run_simulator

__all__ = ["adapter", "nothing_left_running", "simulator"]


def pytest_configure(config: pytest.Config) -> None:
    """The ``fault_case`` marker, and the plugin that writes docs/fault-matrix.md on request."""
    register(config)


#: Short intervals so that a test sees every kind of message within a second.
FAST = {"tick_interval": 0.05, "update_interval": 0.05}


@pytest.fixture
def simulator(nothing_left_running: None) -> Iterator[Callable[..., SimulatorHandle]]:
    """Start a simulated OctoPrint: ``sim = simulator(heartbeat_interval=0.2, ...)``.

    Options are :func:`run_simulator`'s; ``tick_interval`` and
    ``update_interval`` default to 0.05 s. Stopped at teardown.
    """
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> SimulatorHandle:
            return stack.enter_context(run_simulator(**(FAST | options)))

        yield start


@pytest.fixture(params=ADAPTERS)
def adapter(
    request: pytest.FixtureRequest, simulator: Callable[..., SimulatorHandle]
) -> Iterator[Facade]:
    """A fresh, unstarted facade over each adapter in turn (see :mod:`harness.fixtures`).

    It depends on ``simulator`` so that it is closed while the servers still run.
    """
    yield from facade_for(request.param)
