"""Fuzz target of the RPC dialect (registered in :mod:`fuzz.targets`).

``rpc_client``: a whole :class:`~octoproto.RpcClient`, session up, fed any
server messages. Byte 0 picks the encoding (even: JSON text frames, odd:
MessagePack binary frames) and whether a login and a subscription are in
place (so replies may meet the restore after a reconnect). Then a few calls
go out, and the rest is a program: each step a flag byte and a
length-prefixed chunk, sent as one server message (flag 0), as raw bytes
(flag 1: framing garbage), a new call (flag 2), the clock moved (flag 3:
timeouts fire) or the server's EOF (flag 4: a reconnect follows). Every
message is also decoded by the wire layer on its own, where the only
exception allowed is :class:`~octoproto._rpc_wire.RpcWireError`. Nothing
the server sends may raise from the client; the Driver's invariants hold.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import msgpack

from octoproto import Channel, RpcClient, RpcConfig, SeededEntropy, SessionState
from octoproto._rpc_wire import Encoding, Notification, Response, RpcCodec, RpcWireError

from .harness import ByteReader, Driver, Violation


def _check_decoded(codec: RpcCodec, payload: str | bytes) -> None:
    try:
        messages = codec.decode(payload)
    except RpcWireError:
        return
    if not messages:
        raise Violation("rpc-empty-decode", repr(payload)[:80])
    for message in messages:
        if isinstance(message, Notification):
            if not isinstance(message.name, str):
                raise Violation("bad-rpc-notification", repr(message)[:80])
        elif not isinstance(message, Response) or not (
            message.id is None or isinstance(message.id, (int, float, str))
        ):
            raise Violation("bad-rpc-response", repr(message)[:80])


class _RpcDriver(Driver):
    """The Driver with the RPC client's accounting instead of the plain client's.

    The plain client's check counts every data frame written as a user
    message; an RPC client writes its own requests (calls, and the login and
    subscription it restores), which the engine's call table accounts for.
    """

    def _check_accounting(self) -> None:
        client = self.client
        assert isinstance(client, RpcClient)
        if not 0 <= client.pending_calls <= client.config.max_pending_calls:
            raise Violation("rpc-pending-calls", str(client.pending_calls))
        if len(client._in_flight) > client.pending_calls + 1:  # + a restore request
            raise Violation("rpc-in-flight", f"{len(client._in_flight)} {client.pending_calls}")


def _open(variant: int) -> Driver:
    encoding: Encoding = "msgpack" if variant & 1 else "json"
    config = RpcConfig(
        url="ws://127.0.0.1:8080/ns?socket_id=f",
        entropy=SeededEntropy(1),
        encoding=encoding,
        compression=False,
    )
    driver = _RpcDriver(RpcClient(config))
    driver.connect()
    driver.transport_opened(Channel.SOCKET)
    driver.progress(ByteReader(b""))  # the 101
    if driver.client.state is not SessionState.OPEN:
        raise Violation("setup-failed", str(driver.client.state))
    return driver


def _user(driver: Driver, start: Callable[[], object]) -> None:
    """A user input that starts calls (their ids are not needed here)."""

    def call() -> None:
        start()

    driver.call(call)


def _encode(codec: RpcCodec, value: object) -> str | bytes:
    if codec.encoding == "msgpack":
        packed: bytes = msgpack.packb(value)
        return packed
    return codec.encode(value)  # type: ignore[arg-type]


def target_rpc_client(data: bytes) -> None:
    """An RpcClient fed any server messages between calls, timeouts and reconnects."""
    r = ByteReader(data)
    variant = r.u8()
    driver = _open(variant)
    client = driver.client
    assert isinstance(client, RpcClient)
    codec = RpcCodec(client._rpc_config.encoding)
    if variant & 2:
        _user(driver, partial(client.login, {"user": "u"}, now=driver.now, timeout=5.0))
        logged_in = _encode(codec, {"result": True, "id": 1})
        driver.receive(Channel.SOCKET, driver.message_frames(logged_in, r))
    if variant & 4:
        _user(driver, partial(client.subscribe, ["tick", "other"], now=driver.now))
    batch = [("a", None), ("b", [1])]
    _user(driver, partial(client.call_batch, batch, now=driver.now, timeout=1.0))
    _user(driver, partial(client.call, "c", {"k": 2**40}, now=driver.now))
    steps = 0
    while r.remaining and steps < 200:
        steps += 1
        flag = r.u8() % 5
        chunk = r.chunk()
        if flag == 0:
            payload: str | bytes = chunk
            if codec.encoding == "json":
                payload = chunk.decode("utf-8", "replace")
            _check_decoded(codec, payload)
            driver.receive(Channel.SOCKET, driver.message_frames(payload, r))
        elif flag == 1:
            driver.receive(Channel.SOCKET, chunk)
        elif flag == 2:
            method = chunk.decode("utf-8", "replace")
            _user(driver, partial(client.call, method, [len(chunk)], now=driver.now))
        elif flag == 3:
            driver.advance(len(chunk) / 4.0)
        else:
            driver.receive_eof(Channel.SOCKET)
            driver.progress(ByteReader(b""))
