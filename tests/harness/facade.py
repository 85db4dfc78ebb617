"""One synchronous facade over the trio, asyncio and blocking adapters.

Design must 5 says the three adapters behave the same, proven by one suite
run against each. The suite talks to :class:`Facade` only; the ``adapter``
fixture (:mod:`harness.fixtures`) hands each test a fresh one per adapter:

* **trio** and **asyncio**: the adapter's ``async with connect(...) as
  client`` runs on a background thread with its own event loop; a task
  there iterates ``async for event in client`` into a thread-safe queue,
  and every call is carried over to the loop (trio: ``run_sync_soon`` on the
  run's token; asyncio: ``run_coroutine_threadsafe``) and waited for,
  bounded.
* **blocking**: the adapter is used as it is: ``connect(...)``,
  ``client.events()``, ``client.wait()``, every method called on the test's
  thread; a reader thread of the facade iterates ``client.events()``.

Each event is stamped with ``time.monotonic()`` where it comes out of the
adapter's iterator (on the loop or reader thread), so intervals measured
from :attr:`Facade.log` do not depend on when the test reads them.

Leaving (:meth:`Facade.close`, :meth:`Facade.cancel`) is what a user does:
trio/asyncio leave the ``async with`` block (normally, by an error, or by a
cancellation from outside), blocking calls ``close()`` or leaves ``with``.
:meth:`Facade.assert_stopped` then checks that the loop is over and no task
of it is left; the fixture also checks threads and file descriptors.

Every wait here is bounded; a timeout fails the test with the events seen.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar

import trio
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking as blocking_adapter
from octoproto.adapters import trio as trio_adapter

from octoproto import Event, OctoPrintClient, PushMessage, Secret, SessionState

__all__ = [
    "ADAPTERS",
    "Facade",
    "describe",
    "in_order",
    "is_event",
    "is_message",
    "make_facade",
]

#: The adapters every test runs against, in the order the ids appear.
ADAPTERS = ("trio", "asyncio", "blocking")

#: Seconds for the loop thread to enter ``connect()``.
START_TIMEOUT = 5.0
#: Seconds for one call carried over to the loop (``disconnect()`` waits for
#: the close handshake, at most ``close_timeout + 1``; keep this above it).
CALL_TIMEOUT = 10.0
#: Seconds for leaving the block and joining the loop thread.
STOP_TIMEOUT = 10.0

T = TypeVar("T")
Handler = Callable[[PushMessage], object]
Predicate = Callable[[Event], bool]


def is_message(message_type: str) -> Predicate:
    """A predicate: a :class:`PushMessage` of ``message_type``."""

    def predicate(event: Event) -> bool:
        return isinstance(event, PushMessage) and event.type == message_type

    predicate.__qualname__ = f"is_message({message_type!r})"
    return predicate


def is_event(kind: type[Event], **fields: object) -> Predicate:
    """A predicate: an event of class ``kind`` whose ``fields`` have these values."""

    def predicate(event: Event) -> bool:
        return isinstance(event, kind) and all(
            getattr(event, name) == value for name, value in fields.items()
        )

    shown = "".join(f", {name}={value!r}" for name, value in fields.items())
    predicate.__qualname__ = f"is_event({kind.__name__}{shown})"
    return predicate


def in_order(events: list[Event], *predicates: Predicate) -> list[Event]:
    """The first event matching each predicate, each after the previous one's; else fail."""
    found: list[Event] = []
    index = 0
    for predicate in predicates:
        while index < len(events) and not predicate(events[index]):
            index += 1
        if index == len(events):
            raise AssertionError(
                f"no {_name(predicate)} after {describe(found)} in {describe(events)}"
            )
        found.append(events[index])
        index += 1
    return found


def describe(events: Iterable[Event]) -> list[str]:
    """Short names for an assertion message: ``PushMessage`` as ``msg:<type>``."""
    names = []
    for event in events:
        if isinstance(event, PushMessage):
            names.append(f"msg:{event.type}")
        else:
            text = repr(event)
            names.append(text if len(text) <= 80 else text[:77] + "...")
    return names


class Facade:
    """The synchronous surface every adapter gets in the suite.

    ``start(url, **options)`` connects (``options`` are those of the
    adapter's ``connect``); ``handlers`` are registered before the loop runs
    (trio, asyncio) or right after ``connect()`` returns (blocking, whose
    loop starts at once). Events are read in order from the adapter's own
    iterator; :attr:`log` keeps each with the monotonic time the facade got
    it.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        #: Every event read so far: (monotonic time it left the adapter's iterator, event).
        self.log: list[tuple[float, Event]] = []
        #: What leaving the block raised (or ``None``), once stopped.
        self.outcome: BaseException | None = None
        # (arrival time, event), or (time, None) where an iteration ended.
        self._queue: queue.SimpleQueue[tuple[float, Event | None]] = queue.SimpleQueue()
        self._end_read: float | None = None  # an end drain() took off the queue

    # --- what each adapter implements ---------------------------------------

    def start(
        self, url: str, *, handlers: Iterable[tuple[str, Handler]] = (), **options: Any
    ) -> None:
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The adapter's ``Client`` (for what the facade does not wrap)."""
        raise NotImplementedError

    def on(self, message_type: str, handler: Handler) -> None:
        raise NotImplementedError

    def off(self, message_type: str, handler: Handler | None = None) -> None:
        raise NotImplementedError

    def send_message(self, message_type: str, payload: object) -> None:
        raise NotImplementedError

    def send_auth(self, user: str, session: str | Secret) -> None:
        raise NotImplementedError

    def subscribe(self, subscription: dict[str, object]) -> None:
        raise NotImplementedError

    def set_throttle(self, factor: int) -> None:
        raise NotImplementedError

    def reconnect(self) -> None:
        """``client.reconnect()``; after the iteration ended, a new one starts first."""
        raise NotImplementedError

    def disconnect(self, code: int | None = None, reason: str = "") -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> bool:
        """Whether the session is closed for good within ``timeout`` (blocking: ``wait()``)."""
        raise NotImplementedError

    def close(self, error: BaseException | None = None) -> BaseException | None:
        """Leave the block (with ``error`` raised in it, if given); return what came out.

        Idempotent. An unexpected error from the adapter is raised.
        """
        raise NotImplementedError

    def cancel(self) -> BaseException | None:
        """Leave by cancellation from outside (blocking: ``KeyboardInterrupt`` in ``with``)."""
        raise NotImplementedError

    def close_after_failure(self) -> BaseException | None:
        """Leave after a failed check; return (not raise) whatever the adapter raised.

        For a test that reports an adapter's crash as its own failure, so that
        teardown does not report it a second time.
        """
        try:
            return self.close()
        except BaseException as exc:
            return exc

    def assert_stopped(self) -> None:
        """The adapter's loop is over and left no task behind."""
        raise NotImplementedError

    def forget_client(self) -> None:
        """Drop the facade's reference to the client (so leaked sockets can be collected)."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------

    @property
    def core(self) -> OctoPrintClient:
        core: OctoPrintClient = self.client.core
        return core

    @property
    def state(self) -> SessionState:
        state: SessionState = self.client.state
        return state

    @property
    def is_open(self) -> bool:
        return bool(self.client.is_open)

    def events_until(self, predicate: Predicate, timeout: float) -> list[Event]:
        """Events in order up to and including the first that matches, within ``timeout``.

        Fails (with what was seen) on the timeout or if the iteration ends first.
        """
        deadline = time.monotonic() + timeout
        seen: list[Event] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"[{self.name}] no {_name(predicate)} within {timeout} s; got {describe(seen)}"
                )
            try:
                event = self._take(remaining)
            except TimeoutError:
                continue
            if event is None:
                raise AssertionError(
                    f"[{self.name}] the iteration ended before {_name(predicate)}; "
                    f"got {describe(seen)}"
                )
            seen.append(event)
            if predicate(event):
                return seen

    def events_until_end(self, timeout: float) -> list[Event]:
        """Every event until the iteration ends (closed for good), within ``timeout``."""
        deadline = time.monotonic() + timeout
        seen: list[Event] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"[{self.name}] the iteration did not end within {timeout} s; "
                    f"got {describe(seen)}"
                )
            try:
                event = self._take(remaining)
            except TimeoutError:
                continue
            if event is None:
                return seen
            seen.append(event)

    def events_for(self, seconds: float) -> list[Event]:
        """Every event for ``seconds`` (fewer if the iteration ends)."""
        deadline = time.monotonic() + seconds
        seen: list[Event] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self._take(remaining)
            except TimeoutError:
                break
            if event is None:
                break
            seen.append(event)
        return seen

    def drain(self) -> list[Event]:
        """Every event received so far and not read yet, without waiting."""
        seen: list[Event] = []
        while True:
            try:
                stamp, event = self._queue.get_nowait()
            except queue.Empty:
                return seen
            if event is None:
                self._end_read = stamp  # for the next reader
                return seen
            self.log.append((stamp, event))
            seen.append(event)

    def _put(self, event: Event | None) -> None:
        """From the thread that iterates: an event, or ``None`` for the iteration's end."""
        self._queue.put((time.monotonic(), event))

    def _take(self, timeout: float) -> Event | None:
        """The next event; ``None`` where an iteration ended; TimeoutError."""
        if self._end_read is not None:
            self._end_read = None
            return None
        try:
            stamp, event = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if event is not None:
            self.log.append((stamp, event))
        return event


def _name(predicate: Predicate) -> str:
    return getattr(predicate, "__qualname__", repr(predicate))


_END = None  # the queue's marker for "the iteration ended"


class _LoopFacade(Facade):
    """A trio or asyncio adapter on a background thread with its own loop."""

    def __init__(self) -> None:
        super().__init__()
        self._client: Any = None
        self._ready = threading.Event()
        #: Set when an iteration ends (cleared when reconnect() starts another).
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._exit_error: BaseException | None = None
        #: On the loop thread: the pump waits for reconnect() to iterate again.
        self._pump_idle = False
        #: Tasks alive after the block, beyond those before it (set by the loop).
        self.tasks_left: int | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise AssertionError(f"[{self.name}] not started")
        return self._client

    def start(
        self, url: str, *, handlers: Iterable[tuple[str, Handler]] = (), **options: Any
    ) -> None:
        assert not self.started, "start() once per facade"
        self.started = True
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(url, list(handlers), options),
            name=f"facade-{self.name}",
            daemon=True,  # a hung loop must not hang the interpreter's exit too
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise AssertionError(f"[{self.name}] the loop did not start in {START_TIMEOUT} s")
        if self._client is None:  # connect() itself failed
            self._join()
            self.stopped = True
            assert self.outcome is not None
            raise self.outcome

    def _thread_main(self, url: str, handlers: list[tuple[str, Handler]], options: Any) -> None:
        try:
            self._run_loop(url, handlers, options)
        except BaseException as exc:
            self.outcome = exc
        finally:
            self._ready.set()
            self._ended.set()
            self._put(_END)  # also when the loop died with the pump in mid-iteration

    def _run_loop(self, url: str, handlers: list[tuple[str, Handler]], options: Any) -> None:
        raise NotImplementedError

    def _join(self) -> None:
        assert self._thread is not None
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise AssertionError(f"[{self.name}] the loop thread did not end in {STOP_TIMEOUT} s")

    def wait(self, timeout: float) -> bool:
        return self._ended.wait(timeout)

    def assert_stopped(self) -> None:
        if not self.started:
            return
        assert self.stopped, f"[{self.name}] still running"
        assert self._thread is not None and not self._thread.is_alive()
        assert self.tasks_left == 0, f"[{self.name}] {self.tasks_left} task(s) left after the block"

    def forget_client(self) -> None:
        assert self.stopped
        self._client = None


class TrioFacade(_LoopFacade):
    """``trio.run`` on a thread; calls go in through the run's token."""

    name = "trio"

    def _run_loop(self, url: str, handlers: list[tuple[str, Handler]], options: Any) -> None:
        trio.run(self._main, url, handlers, options)

    async def _main(self, url: str, handlers: list[tuple[str, Handler]], options: Any) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._again = trio.Event()
        living = trio.lowlevel.current_statistics().tasks_living
        try:
            with trio.CancelScope() as self._outer:
                async with trio_adapter.connect(url, **options) as client:
                    for message_type, handler in handlers:
                        client.on(message_type, handler)  # before the loop's first turn
                    async with trio.open_nursery() as helpers:
                        self._helpers = helpers
                        helpers.start_soon(self._pump, client)
                        self._client = client
                        self._ready.set()
                        await self._stop.wait()
                        helpers.cancel_scope.cancel()
                    if self._exit_error is not None:
                        raise self._exit_error
        finally:
            self.tasks_left = trio.lowlevel.current_statistics().tasks_living - living

    async def _pump(self, client: trio_adapter.Client) -> None:
        while True:
            async for event in client:
                self._put(event)
            self._pump_idle = True
            self._ended.set()
            self._put(_END)
            await self._again.wait()
            self._again = trio.Event()

    def _call(self, function: Callable[[], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``function()`` as a task on the loop; wait for its result, bounded."""
        assert self.started and not self.stopped, f"[{self.name}] not running"
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        async def runner() -> None:
            try:
                with trio.fail_after(timeout):
                    result = await function()
            except Exception as exc:
                # The caller's, as from ``await client.method()`` (a
                # SendQueueFullError ...): raising it here would end the
                # helpers' nursery, and with it the block.
                future.set_exception(exc)
                return
            except BaseException as exc:
                future.set_exception(exc)
                raise
            future.set_result(result)

        def spawn() -> None:
            try:
                self._helpers.start_soon(runner)
            except RuntimeError as exc:  # the helpers' nursery is closed: we are leaving
                future.set_exception(exc)

        self._token.run_sync_soon(spawn)
        return future.result(timeout + 1.0)

    def _call_sync(self, function: Callable[[], T]) -> T:
        async def run() -> T:
            return function()

        return self._call(run)

    def on(self, message_type: str, handler: Handler) -> None:
        self._call_sync(lambda: self.client.on(message_type, handler))

    def off(self, message_type: str, handler: Handler | None = None) -> None:
        self._call_sync(lambda: self.client.off(message_type, handler))

    def send_message(self, message_type: str, payload: object) -> None:
        self._call(lambda: self.client.send_message(message_type, payload))

    def send_auth(self, user: str, session: str | Secret) -> None:
        self._call(lambda: self.client.send_auth(user, session))

    def subscribe(self, subscription: dict[str, object]) -> None:
        self._call(lambda: self.client.subscribe(subscription))

    def set_throttle(self, factor: int) -> None:
        self._call(lambda: self.client.set_throttle(factor))

    def reconnect(self) -> None:
        async def reconnect() -> None:
            await self.client.reconnect()
            if self._pump_idle:
                self._pump_idle = False
                self._ended.clear()
                self._again.set()

        self._call(reconnect)

    def disconnect(self, code: int | None = None, reason: str = "") -> None:
        self._call(lambda: self.client.disconnect(code, reason))

    def close(self, error: BaseException | None = None) -> BaseException | None:
        if not self.started or self.stopped:
            return self.outcome
        self._exit_error = error
        self._token.run_sync_soon(self._stop.set)
        return self._finish(expected=error)

    def cancel(self) -> BaseException | None:
        if not self.started or self.stopped:
            return self.outcome
        self._token.run_sync_soon(self._outer.cancel)
        return self._finish(expected=None)

    def _finish(self, expected: BaseException | None) -> BaseException | None:
        self._join()
        self.stopped = True
        outcome = self.outcome
        if outcome is not None and not _carries(outcome, expected):
            raise outcome
        return outcome


class AsyncioFacade(_LoopFacade):
    """``asyncio.run`` on a thread; calls go in with ``run_coroutine_threadsafe``."""

    name = "asyncio"

    def _run_loop(self, url: str, handlers: list[tuple[str, Handler]], options: Any) -> None:
        asyncio.run(self._main(url, handlers, options))

    async def _main(self, url: str, handlers: list[tuple[str, Handler]], options: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        self._stop = asyncio.Event()
        self._again = asyncio.Event()
        try:
            async with asyncio_adapter.connect(url, **options) as client:
                for message_type, handler in handlers:
                    client.on(message_type, handler)  # before the loop's first turn
                pump = asyncio.create_task(self._pump(client))
                self._client = client
                self._ready.set()
                try:
                    await self._stop.wait()
                finally:
                    pump.cancel()
                    await asyncio.wait({pump})
                if self._exit_error is not None:
                    raise self._exit_error
        finally:
            # asyncio.run() would cancel leftovers silently: count them first.
            self.tasks_left = len(asyncio.all_tasks() - {asyncio.current_task()})

    async def _pump(self, client: asyncio_adapter.Client) -> None:
        while True:
            async for event in client:
                self._put(event)
            self._pump_idle = True
            self._ended.set()
            self._put(_END)
            await self._again.wait()
            self._again.clear()

    def _call(self, function: Callable[[], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        assert self.started and not self.stopped, f"[{self.name}] not running"

        async def run() -> T:
            return await asyncio.wait_for(function(), timeout)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout + 1.0)

    def _call_sync(self, function: Callable[[], T]) -> T:
        async def run() -> T:
            return function()

        return self._call(run)

    def on(self, message_type: str, handler: Handler) -> None:
        self._call_sync(lambda: self.client.on(message_type, handler))

    def off(self, message_type: str, handler: Handler | None = None) -> None:
        self._call_sync(lambda: self.client.off(message_type, handler))

    def send_message(self, message_type: str, payload: object) -> None:
        self._call(lambda: self.client.send_message(message_type, payload))

    def send_auth(self, user: str, session: str | Secret) -> None:
        self._call(lambda: self.client.send_auth(user, session))

    def subscribe(self, subscription: dict[str, object]) -> None:
        self._call(lambda: self.client.subscribe(subscription))

    def set_throttle(self, factor: int) -> None:
        self._call(lambda: self.client.set_throttle(factor))

    def reconnect(self) -> None:
        async def reconnect() -> None:
            await self.client.reconnect()
            if self._pump_idle:
                self._pump_idle = False
                self._ended.clear()
                self._again.set()

        self._call(reconnect)

    def disconnect(self, code: int | None = None, reason: str = "") -> None:
        self._call(lambda: self.client.disconnect(code, reason))

    def close(self, error: BaseException | None = None) -> BaseException | None:
        if not self.started or self.stopped:
            return self.outcome
        self._exit_error = error
        self._loop.call_soon_threadsafe(self._stop.set)
        return self._finish(expected=error)

    def cancel(self) -> BaseException | None:
        if not self.started or self.stopped:
            return self.outcome
        task = self._main_task
        assert task is not None
        self._loop.call_soon_threadsafe(task.cancel)
        return self._finish(expected=asyncio.CancelledError())

    def _finish(self, expected: BaseException | None) -> BaseException | None:
        self._join()
        self.stopped = True
        outcome = self.outcome
        if outcome is not None and not _carries(outcome, expected):
            raise outcome
        return outcome


class BlockingFacade(Facade):
    """The blocking adapter as it is; a reader thread iterates ``client.events()``."""

    name = "blocking"

    def __init__(self) -> None:
        super().__init__()
        self._client: blocking_adapter.Client | None = None
        self._reader: threading.Thread | None = None
        self._ended = threading.Event()

    @property
    def client(self) -> blocking_adapter.Client:
        if self._client is None:
            raise AssertionError(f"[{self.name}] not started")
        return self._client

    def start(
        self, url: str, *, handlers: Iterable[tuple[str, Handler]] = (), **options: Any
    ) -> None:
        assert not self.started, "start() once per facade"
        self.started = True
        try:
            self._client = blocking_adapter.connect(url, **options)
        except BaseException:
            self.stopped = True
            raise
        # The loop runs already; the first message needs a round trip first.
        for message_type, handler in handlers:
            self._client.on(message_type, handler)
        # The first events() call gets every event from connect() on.
        self._read(self._client.events())

    def _read(self, events: blocking_adapter.EventIterator) -> None:
        def read() -> None:
            with events:
                for event in events:
                    self._put(event)
            self._ended.set()
            self._put(_END)

        self._ended.clear()
        self._reader = threading.Thread(target=read, name="facade-blocking-reader", daemon=True)
        self._reader.start()

    def on(self, message_type: str, handler: Handler) -> None:
        self.client.on(message_type, handler)

    def off(self, message_type: str, handler: Handler | None = None) -> None:
        self.client.off(message_type, handler)

    def send_message(self, message_type: str, payload: object) -> None:
        self.client.send_message(message_type, payload)

    def send_auth(self, user: str, session: str | Secret) -> None:
        self.client.send_auth(user, session)

    def subscribe(self, subscription: dict[str, object]) -> None:
        self.client.subscribe(subscription)

    def set_throttle(self, factor: int) -> None:
        self.client.set_throttle(factor)

    def reconnect(self) -> None:
        if not self._ended.is_set():
            self.client.reconnect()
            return
        assert self._reader is not None
        self._reader.join(STOP_TIMEOUT)
        # Iterate before dialing, so that nothing in between is missed; read
        # after, or the new iterator would find the session still closed.
        events = self.client.events()
        self.client.reconnect()
        self._read(events)

    def disconnect(self, code: int | None = None, reason: str = "") -> None:
        self.client.disconnect(code, reason)

    def wait(self, timeout: float) -> bool:
        return self.client.wait(timeout)

    def close(self, error: BaseException | None = None) -> BaseException | None:
        if not self.started or self.stopped:
            return self.outcome
        self.stopped = True
        if error is None:
            self.client.close()
        else:  # as ``with connect(...) as client: raise error`` does
            self.client.__exit__(type(error), error, error.__traceback__)
            self.outcome = error
        if self._reader is not None:  # its iterator ends once the session is closed
            self._reader.join(STOP_TIMEOUT)
            if self._reader.is_alive():
                raise AssertionError(f"[{self.name}] the reader did not end in {STOP_TIMEOUT} s")
        return self.outcome

    def cancel(self) -> BaseException | None:
        # No cancellation in plain threads: Ctrl-C inside ``with connect(...)``.
        return self.close(KeyboardInterrupt())

    def forget_client(self) -> None:
        assert self.stopped
        self._client = None

    def assert_stopped(self) -> None:
        if not self.started or self._client is None:
            return
        assert self.stopped, f"[{self.name}] still running"
        assert self._reader is None or not self._reader.is_alive()
        assert self._client.state in (SessionState.CLOSED, SessionState.IDLE)
        assert self._client.wait(0), f"[{self.name}] not closed for good"


def _carries(outcome: BaseException, expected: BaseException | None) -> bool:
    """Whether ``outcome`` is ``expected`` (same type), alone or inside exception groups."""
    if expected is None:
        return False
    inner = getattr(outcome, "exceptions", None)  # an exception group (no 3.10 builtin)
    if isinstance(inner, tuple):
        return bool(inner) and all(_carries(exc, expected) for exc in inner)
    return type(outcome) is type(expected)


_FACADES: dict[str, type[Facade]] = {
    "trio": TrioFacade,
    "asyncio": AsyncioFacade,
    "blocking": BlockingFacade,
}


def make_facade(adapter: str) -> Facade:
    """A fresh, unstarted facade over ``adapter`` (one of :data:`ADAPTERS`)."""
    return _FACADES[adapter]()
