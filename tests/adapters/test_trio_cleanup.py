"""The trio adapter's exit when its loop task crashed: prompt, and no socket left open.

A crash of the loop is a bug (remote faults never raise), but leaving must
still be quick and close every stream itself: the error's traceback keeps
the adapter's frames, and with them the streams, alive for as long as the
caller holds it, so the garbage collector would not close them.
"""

from __future__ import annotations

import time

import pytest
import trio
from octoproto.adapters.simulator import run_simulator
from octoproto.adapters.trio import connect

TIMEOUT = 5.0


class Bug(Exception):
    pass


def crash() -> None:
    raise Bug("the loop's bug")


async def test_a_crashed_loop_is_left_at_once_with_every_stream_closed() -> None:
    with run_simulator() as sim:
        began = 0.0
        with trio.fail_after(TIMEOUT), pytest.raises(Bug):
            async with connect(sim.url, api_key=sim.api_key) as client:
                # Open, and the login's HTTP connection gone: only the socket left.
                while not (client.is_open and sim.connection_count == 1):
                    await trio.sleep(0.01)
                began = trio.current_time()
                client.core.get_timer = crash  # type: ignore[method-assign]
                await client.send_message("throttle", 2)  # wakes the loop, which crashes
                await trio.sleep_forever()  # cancelled by the crash
        # Not close_timeout + 1 s: there is no loop left to wait for.
        assert trio.current_time() - began < 1.0
        deadline = time.monotonic() + TIMEOUT
        while sim.connection_count:
            assert time.monotonic() < deadline, "the client's socket was left open"
            await trio.sleep(0.01)
