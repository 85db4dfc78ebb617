"""The ``octoproto`` command line: ``demo`` and ``watch``.

``demo`` starts the simulated OctoPrint server on 127.0.0.1 and watches it;
``watch`` watches a real server. Both print a readable live view, or with
``--json`` one JSON object per event per line::

    {"t": 0.503, "kind": "message", "type": "current", "data": {...}}

``t`` is seconds since start; ``kind`` is the event's name in snake_case
(``connected``, ``login_succeeded``, ``authenticated``, ``message``,
``disconnected``, ``reconnect_scheduled``, ``throttle_changed`` ...); the
other keys are the event's fields. Exit codes: 0 normal end, 1 gave up or
could not connect (one line on stderr says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import trio
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking as blocking_adapter
from octoproto.adapters import trio as trio_adapter
from octoproto.adapters.simulator import run_simulator

import octoproto
from octoproto import (
    Authenticated,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    LocalProtocolError,
    LoginFailed,
    LoginSucceeded,
    PushMessage,
    ReauthRequired,
    ReconnectFailed,
    ReconnectScheduled,
    ThrottleChanged,
)

ADAPTERS = ("trio", "asyncio", "blocking")
ENV_API_KEY = "OCTOPROTO_API_KEY"
ENV_USER = "OCTOPROTO_USER"
ENV_PASSWORD = "OCTOPROTO_PASSWORD"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Stop(Exception):
    """Ends a watch with an exit code and, for failures, a one-line reason."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def event_kind(event: Event) -> str:
    """``PushMessage`` → ``message``; otherwise the class name in snake_case."""
    if isinstance(event, PushMessage):
        return "message"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


def event_record(event: Event, seconds: float) -> dict[str, Any]:
    """The JSON object ``--json`` prints for ``event``."""
    record: dict[str, Any] = {"t": round(seconds, 3), "kind": event_kind(event)}
    if isinstance(event, (Connected, ConnectFailed)):
        handshake = event.handshake
        record.update({k: v for k, v in dataclasses.asdict(event).items() if k != "handshake"})
        if handshake is not None:
            record["status_code"] = handshake.status_code
    else:
        record.update(dataclasses.asdict(event))  # type: ignore[call-overload]
    return record


class Watcher:
    """Turns events into output lines and decides when the watch ends."""

    def __init__(self, out: TextIO, *, as_json: bool, stop_on_first_failure: bool) -> None:
        self._out = out
        self._json = as_json
        self._stop_on_first_failure = stop_on_first_failure
        self._started = time.monotonic()
        self._ever_connected = False
        self._throttle = 1

    def handle(self, event: Event) -> None:
        """Print ``event``; raise :class:`Stop` when the watch is over."""
        seconds = time.monotonic() - self._started
        if self._json:
            self._write(json.dumps(event_record(event, seconds), default=str))
        else:
            line = self._describe(event)
            if line:
                self._write(f"{seconds:8.2f}s  {line}")
        if isinstance(event, Connected):
            self._ever_connected = True
        elif isinstance(event, ThrottleChanged):
            self._throttle = event.factor
        elif (
            isinstance(event, ConnectFailed)
            and self._stop_on_first_failure
            and not self._ever_connected
        ):
            raise Stop(EXIT_FAILED, f"could not connect: {event.reason}")
        elif isinstance(event, LoginFailed) and event.retry_in is None:
            raise Stop(EXIT_FAILED, f"login refused ({event.status}): {event.reason}")
        elif isinstance(event, ReconnectFailed):
            raise Stop(EXIT_FAILED, f"gave up after {event.attempts} reconnect attempts")

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def _describe(self, event: Event) -> str | None:
        if isinstance(event, PushMessage):
            return self._describe_message(event)
        if isinstance(event, Connected):
            return "connected"
        if isinstance(event, LoginSucceeded):
            return f"logged in as {event.user} ({event.mechanism})"
        if isinstance(event, Authenticated):
            return f"authenticated as {event.user}"
        if isinstance(event, Disconnected):
            return f"disconnected: {event.code} {event.reason}".rstrip()
        if isinstance(event, ConnectFailed):
            return f"connect failed: {event.reason}"
        if isinstance(event, ReconnectScheduled):
            return f"reconnecting in {event.delay:.1f} s (attempt {event.attempt})"
        if isinstance(event, ThrottleChanged):
            return f"throttle factor {event.previous} -> {event.factor}"
        if isinstance(event, ReauthRequired):
            return f"server asks to re-authenticate ({event.reason})"
        return type(event).__name__

    def _describe_message(self, message: PushMessage) -> str | None:
        data = message.data if isinstance(message.data, dict) else {}
        if message.type == "connected":
            return f"OctoPrint {data.get('display_version', '?')} says hello"
        if message.type == "current":
            return _status_line(data, self._throttle)
        if message.type == "event":
            return f"event {data.get('type', '?')}"
        if message.type in ("history", "timelapse"):
            return None
        return f"{message.type} message"


def _status_line(current: dict[str, Any], throttle: int) -> str:
    state = current.get("state")
    text = state.get("text", "?") if isinstance(state, dict) else "?"
    parts = [str(text).ljust(12)]
    progress = current.get("progress")
    if isinstance(progress, dict) and isinstance(progress.get("completion"), (int, float)):
        parts.append(f"{progress['completion']:5.1f}%")
    temps = current.get("temps")
    if isinstance(temps, list) and temps and isinstance(temps[-1], dict):
        for tool, reading in sorted(temps[-1].items()):
            if isinstance(reading, dict) and reading.get("actual") is not None:
                target = reading.get("target")
                target_text = f"/{target:.0f}" if isinstance(target, (int, float)) else ""
                parts.append(f"{tool} {reading['actual']:.1f}{target_text}°C")
    if isinstance(current.get("currentZ"), (int, float)):
        parts.append(f"z={current['currentZ']:.2f}")
    parts.append(f"throttle x{throttle}")
    return "  ".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octoproto",
        description="Watch an OctoPrint push socket (octoproto " + octoproto.__version__ + ").",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--seconds",
            type=float,
            default=None,
            help="stop after this many seconds (default: run until Ctrl-C)",
        )
        sub.add_argument("--json", action="store_true", help="one JSON object per event per line")
        sub.add_argument(
            "--adapter", choices=ADAPTERS, default="trio", help="I/O adapter (default trio)"
        )
        sub.add_argument(
            "--endpoint",
            choices=("sockjs", "raw"),
            default="sockjs",
            help="OctoPrint endpoint (default sockjs)",
        )

    demo = commands.add_parser("demo", help="watch the built-in simulated OctoPrint on 127.0.0.1")
    common(demo)
    demo.set_defaults(seconds=10.0)

    watch = commands.add_parser(
        "watch",
        help="watch a real OctoPrint server",
        description=f"Credentials may come from the environment: {ENV_API_KEY}, or {ENV_USER} and"
        f" {ENV_PASSWORD}, so they stay out of shell history. They are never printed.",
    )
    watch.add_argument("url", help="the server, e.g. http://octopi.local or https://host/octoprint")
    watch.add_argument(
        "--api-key", default=os.environ.get(ENV_API_KEY), help=f"API key (or ${ENV_API_KEY})"
    )
    watch.add_argument(
        "--user", default=os.environ.get(ENV_USER), help=f"user name (or ${ENV_USER})"
    )
    watch.add_argument(
        "--password", default=os.environ.get(ENV_PASSWORD), help=f"password (or ${ENV_PASSWORD})"
    )
    watch.add_argument("--throttle", type=int, default=None, help="throttle factor to ask for")
    watch.add_argument(
        "--subscribe", default=None, help="a subscription as JSON, e.g. '{\"events\": true}'"
    )
    watch.add_argument(
        "--keep-trying",
        action="store_true",
        help="follow the reconnect schedule even if the first attempt fails",
    )
    common(watch)
    return parser


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"endpoint": args.endpoint}
    if args.command == "watch":
        if args.api_key and (args.user or args.password):
            raise Stop(EXIT_USAGE, "give --api-key or --user/--password, not both")
        if bool(args.user) != bool(args.password):
            raise Stop(EXIT_USAGE, "--user and --password go together")
        if args.api_key:
            options["api_key"] = args.api_key
        if args.user:
            options.update(username=args.user, password=args.password)
        if args.throttle is not None:
            # A factor asked for on the command line is kept: the automatic
            # throttle would otherwise lower it again when handlers are fast.
            options["auto_throttle"] = False
        if args.subscribe is not None:
            try:
                options["subscription"] = json.loads(args.subscribe)
            except ValueError as exc:
                raise Stop(EXIT_USAGE, f"--subscribe is not JSON: {exc}") from None
    return options


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to watch and for how long."""

    url: str
    options: dict[str, Any]
    seconds: float | None
    throttle: int | None


async def _watch_async(connect: Callable[..., Any], plan: Plan, watcher: Watcher) -> None:
    """The watch loop shared by the trio and asyncio adapters (same surface)."""
    async with connect(plan.url, **plan.options) as client:
        if plan.throttle is not None:
            await client.set_throttle(plan.throttle)
        async for event in client:
            watcher.handle(event)


def _run_trio(plan: Plan, watcher: Watcher) -> None:
    async def watch() -> None:
        with trio.move_on_after(plan.seconds if plan.seconds is not None else math.inf):
            await _watch_async(trio_adapter.connect, plan, watcher)

    trio.run(watch)


def _run_asyncio(plan: Plan, watcher: Watcher) -> None:
    async def watch() -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                _watch_async(asyncio_adapter.connect, plan, watcher), plan.seconds
            )

    asyncio.run(watch())


def _run_blocking(plan: Plan, watcher: Watcher) -> None:
    deadline = None if plan.seconds is None else time.monotonic() + plan.seconds
    with blocking_adapter.connect(plan.url, **plan.options) as client:
        if plan.throttle is not None:
            client.set_throttle(plan.throttle)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        for event in client.events(timeout=remaining):
            watcher.handle(event)
            if deadline is not None and time.monotonic() >= deadline:
                return


RUNNERS: dict[str, Callable[[Plan, Watcher], None]] = {
    "trio": _run_trio,
    "asyncio": _run_asyncio,
    "blocking": _run_blocking,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    out = out if out is not None else sys.stdout
    try:
        options = _client_options(args)
        if args.command == "demo":
            with run_simulator() as simulator:
                options["api_key"] = simulator.api_key
                watcher = Watcher(out, as_json=args.json, stop_on_first_failure=True)
                RUNNERS[args.adapter](Plan(simulator.url, options, args.seconds, None), watcher)
        else:
            watcher = Watcher(out, as_json=args.json, stop_on_first_failure=not args.keep_trying)
            plan = Plan(args.url, options, args.seconds, args.throttle)
            RUNNERS[args.adapter](plan, watcher)
    except Stop as stop:
        if stop.reason:
            print(f"octoproto: {stop.reason}", file=sys.stderr)
        return stop.code
    except LocalProtocolError as exc:
        print(f"octoproto: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK
