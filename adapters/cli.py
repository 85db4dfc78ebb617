"""The ``octoproto`` command line: ``demo``, ``watch``, ``record`` and ``replay``.

``demo`` starts the simulated OctoPrint server on 127.0.0.1 and watches it;
``watch`` watches a real server; ``record`` watches and writes the session's
trace to ``--out FILE``; ``replay FILE`` plays a trace back (exit 0 when
identical, 1 with the first differing step on stderr, 2 for a file that is
not a trace it can replay). The watching commands print a readable live view (a line per
event: the printer's state, temperatures and progress with every ``current``,
the throttle factor and how often the connection was re-established), or
with ``--json`` one JSON object per event per line::

    {"t": 0.503, "kind": "message", "type": "current", "data": {...}}

``t`` is seconds since start; ``kind`` is the event's name in snake_case
(``connected``, ``login_succeeded``, ``authenticated``, ``message``,
``disconnected``, ``reconnect_scheduled``, ``throttle_changed`` ...); the
other keys are the event's fields. Exit codes: 0 normal end (``--seconds``
over, Ctrl-C, or the reader of the output went away), 1 gave up or could not
connect (one line on stderr says why), 2 usage error (one line on stderr).

Credentials come from ``--api-key`` or ``--user``/``--password``, or from the
environment (``OCTOPROTO_API_KEY``, or ``OCTOPROTO_USER`` and
``OCTOPROTO_PASSWORD``); the command line wins over the environment. They are
never printed.
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
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, TextIO, TypeGuard

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
    Endpoint,
    Event,
    InvalidTraceError,
    LimitExceeded,
    LocalProtocolError,
    LoginFailed,
    LoginSucceeded,
    OctoPrintClient,
    OctoPrintConfig,
    OperationWarning,
    ProtocolError,
    PushMessage,
    ReauthRequired,
    ReconnectFailed,
    ReconnectScheduled,
    SendFailed,
    ThrottleChanged,
    ThroughputWarning,
    check_replay,
)

ADAPTERS = ("trio", "asyncio", "blocking")
ENV_API_KEY = "OCTOPROTO_API_KEY"
ENV_USER = "OCTOPROTO_USER"
ENV_PASSWORD = "OCTOPROTO_PASSWORD"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Seconds to wait for the server's close frame when the watch ends.
CLOSE_TIMEOUT = 2.0
#: How long the blocking runner waits for an event before it looks at the clock again.
_POLL = 0.05


class Stop(Exception):
    """Ends a watch with an exit code and, for failures, a one-line reason."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _OutputClosed(Stop):
    """The reader of our output went away (``octoproto demo --json | head``)."""

    def __init__(self) -> None:
        super().__init__(EXIT_OK)


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


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Watcher:
    """Turns events into output lines and decides when the watch ends."""

    def __init__(self, out: TextIO, *, as_json: bool, stop_on_first_failure: bool) -> None:
        self._out = out
        self._json = as_json
        self._stop_on_first_failure = stop_on_first_failure
        self._started = time.monotonic()
        self._ever_connected = False
        self._throttle = 1
        self._temps: dict[str, Any] = {}
        #: Times the session came up again after it was first up.
        self.reconnects = 0
        #: Push messages seen.
        self.messages = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the watch started."""
        return time.monotonic() - self._started

    def handle(self, event: Event) -> Stop | None:
        """Print ``event``; return a :class:`Stop` when the watch is over."""
        if isinstance(event, Connected):
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
        elif isinstance(event, ThrottleChanged):
            self._throttle = event.factor
        elif isinstance(event, PushMessage):
            self.messages += 1
        seconds = self.elapsed
        try:
            if self._json:
                self.write(json.dumps(event_record(event, seconds), default=_json_default))
            else:
                line = self._describe(event)
                if line:
                    self.write(f"{seconds:8.2f}s  {line}")
        except _OutputClosed as stop:
            return stop
        if (
            isinstance(event, ConnectFailed)
            and self._stop_on_first_failure
            and not self._ever_connected
        ):
            return Stop(EXIT_FAILED, f"could not connect: {event.reason}")
        if isinstance(event, LoginFailed) and event.retry_in is None:
            return Stop(EXIT_FAILED, f"login refused ({event.status}): {event.reason}")
        if isinstance(event, ReconnectFailed):
            return Stop(EXIT_FAILED, f"gave up after {event.attempts} reconnect attempts")
        return None

    def note(self, text: str) -> None:
        """A line for the human view only (a heading, a summary)."""
        if not self._json:
            self.write(text)

    def write(self, line: str) -> None:
        """Write one line; raise :class:`_OutputClosed` if nobody reads it any more."""
        try:
            self._out.write(line + "\n")
            self._out.flush()
        except BrokenPipeError:
            raise _OutputClosed() from None

    def _describe(self, event: Event) -> str | None:
        if isinstance(event, PushMessage):
            return self._describe_message(event)
        if isinstance(event, Connected):
            again = f" again (reconnect {self.reconnects})" if self.reconnects else ""
            return "connected" + again
        if isinstance(event, LoginSucceeded):
            return f"logged in as {event.user} ({event.mechanism})"
        if isinstance(event, LoginFailed):
            retry = "" if event.retry_in is None else f", trying again in {event.retry_in:.1f} s"
            return f"login failed ({event.status}): {event.reason}{retry}"
        if isinstance(event, Authenticated):
            return f"authenticated as {event.user}"
        if isinstance(event, Disconnected):
            return f"disconnected: {event.code} {event.reason}".rstrip()
        if isinstance(event, ConnectFailed):
            return f"connect failed: {event.reason}"
        if isinstance(event, ReconnectScheduled):
            return f"reconnecting in {event.delay:.1f} s (attempt {event.attempt})"
        if isinstance(event, ReconnectFailed):
            return f"gave up after {event.attempts} reconnect attempts"
        if isinstance(event, ThrottleChanged):
            return (
                f"throttle factor {event.previous} -> {event.factor}"
                f" (current at most every {event.factor * 0.5:g} s)"
            )
        if isinstance(event, ReauthRequired):
            again = ", logging in again" if event.relogin else ""
            return f"server asks to re-authenticate ({event.reason}){again}"
        if isinstance(event, ProtocolError):
            return f"protocol error ({event.layer}): {event.detail}"
        if isinstance(event, LimitExceeded):
            return f"limit exceeded: {event.limit} {event.size} > {event.maximum}"
        if isinstance(event, SendFailed):
            return f"{len(event.messages)} queued messages not sent: {event.reason}"
        if isinstance(event, OperationWarning):
            return f"slow {event.operation}: {event.us / 1000:.0f} ms"
        if isinstance(event, ThroughputWarning):
            return f"slow {event.direction}: {event.bytes_sec:.0f} bytes/s"
        return event_kind(event).replace("_", " ")

    def _describe_message(self, message: PushMessage) -> str | None:
        data = message.data if isinstance(message.data, dict) else {}
        if message.type == "connected":
            return f"server: OctoPrint {data.get('display_version', '?')}"
        if message.type == "current":
            return self._status_line(data)
        if message.type == "event":
            return f"event {data.get('type', '?')}"
        if message.type == "plugin":
            return f"plugin message from {data.get('plugin', '?')}"
        if message.type in ("history", "timelapse", "slicingProgress"):
            return None
        return f"{message.type} message"

    def _status_line(self, current: Mapping[str, Any]) -> str:
        state = current.get("state")
        text = state.get("text", "?") if isinstance(state, dict) else "?"
        parts = [str(text).ljust(12)]
        progress = current.get("progress")
        if isinstance(progress, dict) and _is_number(progress.get("completion")):
            parts.append(f"{progress['completion']:5.1f}%")
        if _is_number(current.get("currentZ")):
            parts.append(f"z={current['currentZ']:.2f}")
        temps = current.get("temps")
        if isinstance(temps, list) and temps and isinstance(temps[-1], dict):
            # ``current`` carries only the readings since the last one (maybe
            # none): keep the latest, so the line always shows temperatures.
            self._temps = {
                name: reading
                for name, reading in temps[-1].items()
                if isinstance(reading, dict) and _is_number(reading.get("actual"))
            }
        for name in sorted(self._temps, key=_heater_order):
            parts.append(_temperature(name, self._temps[name]))
        parts.append(f"throttle x{self._throttle}")
        parts.append(f"reconnects {self.reconnects}")
        return "  ".join(parts)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _heater_order(name: str) -> tuple[int, str]:
    """Tools first, then the bed, the chamber and anything else, as OctoPrint lists them."""
    rank = 0 if name.startswith("tool") else {"bed": 1, "chamber": 2}.get(name, 3)
    return rank, name


def _temperature(name: str, reading: Mapping[str, Any]) -> str:
    target = reading.get("target")
    heating = f" -> {target:.0f}°C" if _is_number(target) and target > 0 else ""
    return f"{name} {reading['actual']:.1f}°C{heating}"


# --- arguments -----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors end in :class:`Stop`: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise Stop(EXIT_USAGE, f"{message} (see '{self.prog} --help')")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _factor(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def _subscription(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object like '{{\"state\": true}}', not {text!r}"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="octoproto",
        description="Watch an OctoPrint push socket (octoproto " + octoproto.__version__ + ").",
        epilog="Exit codes: 0 normal end (--seconds over, Ctrl-C), 1 gave up or could not"
        " connect, 2 usage error; for replay: 0 identical, 1 a step differs, 2 a bad file.",
    )
    parser.add_argument("--version", action="version", version=octoproto.__version__)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{demo,watch,record,replay}"
    )

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--seconds",
            type=_seconds,
            default=None,
            metavar="N",
            help="stop after N seconds (default: run until Ctrl-C)",
        )
        sub.add_argument(
            "--json",
            action="store_true",
            help='one JSON object per event per line: {"t": seconds since start,'
            ' "kind": event name, ...the event\'s fields}',
        )
        sub.add_argument(
            "--adapter", choices=ADAPTERS, default="trio", help="I/O adapter (default trio)"
        )
        sub.add_argument(
            "--endpoint",
            choices=("sockjs", "raw"),
            default="sockjs",
            help="OctoPrint endpoint (default sockjs)",
        )

    demo = commands.add_parser(
        "demo",
        help="watch the built-in simulated OctoPrint on 127.0.0.1",
        description="Start a simulated OctoPrint on 127.0.0.1 (a free port) and watch it.",
    )
    common(demo)
    demo.set_defaults(seconds=10.0)

    credentials = (
        f"Credentials may come from the environment: {ENV_API_KEY}, or {ENV_USER} and"
        f" {ENV_PASSWORD}, so they stay out of shell history; the command line wins. They are"
        " never printed."
    )
    watch = commands.add_parser(
        "watch", help="watch a real OctoPrint server", description=credentials
    )
    _watch_options(watch)
    common(watch)

    record = commands.add_parser(
        "record",
        help="watch a real OctoPrint server and record the session to a trace file",
        description="Watch as `watch` does and write every input and output of the client to"
        " FILE (JSON lines), for `octoproto replay` and octoproto.replay(). Passwords, API keys"
        " and sessions are replaced by placeholders unless --record-secrets. " + credentials,
    )
    _watch_options(record)
    record.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="the trace file to write (replaced if it exists)",
    )
    record.add_argument(
        "--record-secrets",
        action="store_true",
        help="keep passwords, API keys and sessions in the trace (default: placeholders)",
    )
    common(record)

    replay = commands.add_parser(
        "replay",
        help="replay a trace file and check that the client does the same",
        description="Feed a trace's inputs to a fresh client and compare every output. Exit"
        " codes: 0 identical, 1 a step differs (the first one is described on stderr),"
        " 2 the file cannot be replayed (not a trace, another version, cut short).",
    )
    replay.add_argument("file", help="a trace from `octoproto record` or connect(record=...)")
    return parser


def _watch_options(watch: argparse.ArgumentParser) -> None:
    """The options of ``watch`` (and ``record``): the server, credentials, what to ask for."""
    watch.add_argument("url", help="the server, e.g. http://octopi.local or https://host/octoprint")
    watch.add_argument("--api-key", metavar="KEY", help=f"API key (or ${ENV_API_KEY})")
    watch.add_argument("--user", metavar="U", help=f"user name (or ${ENV_USER})")
    watch.add_argument("--password", metavar="P", help=f"password (or ${ENV_PASSWORD})")
    watch.add_argument(
        "--throttle",
        type=_factor,
        default=None,
        metavar="N",
        help="ask for `current` at most every N × 0.5 s (and keep it: no automatic throttle)",
    )
    watch.add_argument(
        "--subscribe",
        type=_subscription,
        default=None,
        metavar="JSON",
        help='a subscription as a JSON object, e.g. \'{"state": true, "events": true}\'',
    )
    watch.add_argument(
        "--keep-trying",
        action="store_true",
        help="follow the reconnect schedule even if the first attempt fails",
    )


def _credentials(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """The login options from the command line, else from the environment."""
    if args.api_key and (args.user or args.password):
        raise Stop(EXIT_USAGE, "give --api-key or --user/--password, not both")
    if args.api_key:
        return {"api_key": args.api_key}
    if args.user or args.password:
        user = args.user or environ.get(ENV_USER)
        password = args.password or environ.get(ENV_PASSWORD)
        if not user:
            raise Stop(EXIT_USAGE, f"--password needs --user (or ${ENV_USER})")
        if not password:
            raise Stop(EXIT_USAGE, f"--user needs --password (or ${ENV_PASSWORD})")
        return {"username": user, "password": password}
    api_key = environ.get(ENV_API_KEY)
    user = environ.get(ENV_USER)
    password = environ.get(ENV_PASSWORD)
    if api_key and (user or password):
        raise Stop(EXIT_USAGE, f"set ${ENV_API_KEY} or ${ENV_USER}/${ENV_PASSWORD}, not both")
    if api_key:
        return {"api_key": api_key}
    if bool(user) != bool(password):
        raise Stop(EXIT_USAGE, f"${ENV_USER} and ${ENV_PASSWORD} go together")
    return {"username": user, "password": password} if user and password else {}


def _check_url(url: str) -> None:
    """Refuse credentials in the URL before anything could echo it (even a broken URL)."""
    authority = re.match(r"[^:/?#]*:?/*([^/?#]*)", url.strip())
    if authority is not None and "@" in authority.group(1):
        raise Stop(
            EXIT_USAGE,
            "credentials in the URL are not supported: use --api-key or --user/--password",
        )


def _client_options(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    # Someone at a terminal pressing Ctrl-C should not wait 6 s for a dead
    # server's close frame: 2 s is plenty for a live one.
    options: dict[str, Any] = {"endpoint": args.endpoint, "close_timeout": CLOSE_TIMEOUT}
    if args.command in ("watch", "record"):
        _check_url(args.url)
        options.update(_credentials(args, environ))
        if args.throttle is not None:
            # A factor asked for on the command line is kept: the automatic
            # throttle would otherwise lower it again when handlers are fast.
            options["auto_throttle"] = False
        if args.subscribe is not None:
            options["subscription"] = args.subscribe
        # Refuse a bad URL or subscription (LocalProtocolError) before printing anything.
        config = {**options, "endpoint": Endpoint(args.endpoint)}
        OctoPrintClient(OctoPrintConfig(url=args.url, entropy=os.urandom, **config))
    if args.command == "record":
        try:  # a path that cannot be written is refused before anything starts
            with open(args.out, "w", encoding="utf-8"):
                pass
        except OSError as exc:
            raise Stop(EXIT_USAGE, f"cannot write {args.out}: {exc.strerror or exc}") from None
        options.update(record=args.out, record_secrets=args.record_secrets)
    return options


# --- running -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to watch and for how long."""

    url: str
    options: dict[str, Any]
    seconds: float | None
    throttle: int | None


async def _watch_async(
    connect: Callable[..., Any],
    plan: Plan,
    watcher: Watcher,
    until: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> None:
    """The watch loop shared by the trio and asyncio adapters (same surface).

    ``until()`` bounds the watch from inside the ``async with``, so that
    only the iteration is cancelled and the client closes as usual. A
    :class:`Stop` is raised once the client is closed, so it does not come
    wrapped in the adapter's exception group.
    """
    stop = None
    async with connect(plan.url, **plan.options) as client:
        if plan.throttle is not None:
            await client.set_throttle(plan.throttle)
        with until():
            async with contextlib.aclosing(client.__aiter__()) as events:
                async for event in events:
                    stop = watcher.handle(event)
                    if stop is not None:
                        break
    if stop is not None:
        raise stop


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``exc`` if it is an exception group, else ``exc``."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        for each in inner:
            yield from _leaves(each)
    else:
        yield exc


def _in_main_thread() -> bool:
    """Signal handlers can only be installed there (``main()`` may run elsewhere in tests)."""
    return threading.current_thread() is threading.main_thread()


def _run_trio(plan: Plan, watcher: Watcher) -> None:
    async def watch() -> None:
        seconds = plan.seconds if plan.seconds is not None else math.inf
        scope = trio.CancelScope(deadline=trio.current_time() + seconds)
        with contextlib.ExitStack() as stack:
            async with trio.open_nursery() as nursery:
                if _in_main_thread():
                    # Ctrl-C ends the watch like --seconds does, so the client
                    # closes as usual: a KeyboardInterrupt could hit any task,
                    # the adapter's own loop too.
                    signals = stack.enter_context(trio.open_signal_receiver(signal.SIGINT))
                    nursery.start_soon(_cancel_on_signal, signals, scope)
                await _watch_async(trio_adapter.connect, plan, watcher, lambda: scope)
                nursery.cancel_scope.cancel()

    try:
        trio.run(watch)
    except BaseException as exc:
        # An error of ours may come out of a nursery in an exception group:
        # take it out, so main() knows what it is.
        leaves = list(_leaves(exc))
        if leaves == [exc]:
            raise
        if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            raise KeyboardInterrupt from None
        if len(leaves) == 1 and isinstance(leaves[0], (Stop, LocalProtocolError)):
            raise leaves[0] from None
        raise


async def _cancel_on_signal(signals: Any, scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return


def _run_asyncio(plan: Plan, watcher: Watcher) -> None:
    async def watch() -> None:
        loop = asyncio.get_running_loop()
        interrupted = asyncio.Event()
        if _in_main_thread():
            # Ctrl-C cancels the watch, so the client closes as usual.
            with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
                loop.add_signal_handler(signal.SIGINT, interrupted.set)
        watching = asyncio.ensure_future(_watch_async(asyncio_adapter.connect, plan, watcher))
        waiting = asyncio.ensure_future(interrupted.wait())
        try:
            await asyncio.wait(
                {watching, waiting}, timeout=plan.seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiting.cancel()
            if not watching.done():
                watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    asyncio.run(watch())


def _run_blocking(plan: Plan, watcher: Watcher) -> None:
    deadline = math.inf if plan.seconds is None else time.monotonic() + plan.seconds
    stop = None
    with blocking_adapter.connect(plan.url, **plan.options) as client:
        if plan.throttle is not None:
            client.set_throttle(plan.throttle)
        with client.events(timeout=_POLL) as events:
            while stop is None and time.monotonic() < deadline:
                try:
                    event = next(events)
                except TimeoutError:
                    continue
                except StopIteration:
                    break
                stop = watcher.handle(event)
    if stop is not None:
        raise stop


RUNNERS: dict[str, Callable[[Plan, Watcher], None]] = {
    "trio": _run_trio,
    "asyncio": _run_asyncio,
    "blocking": _run_blocking,
}


def _replay(path: str, out: TextIO) -> None:
    """``octoproto replay FILE``: 0 identical, 1 a step differs, 2 not a trace we can replay."""
    try:
        with open(path, "rb") as trace:
            result = check_replay(trace)
    except OSError as exc:
        raise Stop(EXIT_USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
    except InvalidTraceError as exc:
        raise Stop(EXIT_USAGE, f"{path} cannot be replayed: {exc}") from None
    if not result.identical:
        raise Stop(EXIT_FAILED, f"{path}: {result.report()}")
    try:
        out.write(f"{path}: {result.report()}\n")
        out.flush()
    except BrokenPipeError:
        raise _OutputClosed() from None


def _run(args: argparse.Namespace, out: TextIO, environ: Mapping[str, str]) -> None:
    if args.command == "replay":
        _replay(args.file, out)
        return
    options = _client_options(args, environ)
    until = "Ctrl-C" if args.seconds is None else f"{args.seconds:g} s or Ctrl-C"
    with contextlib.ExitStack() as stack:
        if args.command == "demo":
            simulator = stack.enter_context(run_simulator())
            options["api_key"] = simulator.api_key
            watcher = Watcher(out, as_json=args.json, stop_on_first_failure=True)
            plan = Plan(simulator.url, options, args.seconds, None)
            watcher.note(f"watching a simulated OctoPrint at {plan.url} until {until}")
        else:
            watcher = Watcher(out, as_json=args.json, stop_on_first_failure=not args.keep_trying)
            plan = Plan(args.url, options, args.seconds, args.throttle)
            watcher.note(f"watching {plan.url} until {until}")
            if args.command == "record":
                watcher.note(f"recording to {args.out}")
        with contextlib.suppress(KeyboardInterrupt):
            RUNNERS[args.adapter](plan, watcher)
        watcher.note(
            f"{watcher.elapsed:8.2f}s  stopped: {watcher.messages} messages,"
            f" {watcher.reconnects} reconnects"
        )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code.

    Events go to ``out`` (default: standard output), the reason for a
    failure to standard error.
    """
    stream = out if out is not None else sys.stdout
    try:
        args = _parser().parse_args(argv)
        _run(args, stream, os.environ)
    except _OutputClosed:
        if stream is sys.stdout:
            # Nobody reads standard output: point it at /dev/null so that
            # the interpreter's final flush does not complain either.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
        return EXIT_OK
    except Stop as stop:
        if stop.reason:
            print(f"octoproto: {stop.reason}", file=sys.stderr)
        return stop.code
    except LocalProtocolError as exc:
        print(f"octoproto: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C before or after the watch itself
        return EXIT_OK
    return EXIT_OK
