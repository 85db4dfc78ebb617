"""Install and run a real rpc-websockets server on 127.0.0.1 for integration tests.

Standard library only. The npm packages (``rpc-websockets`` and a MessagePack
library, both pinned) are installed with ``npm`` into ``<repo>/.servers/rpc-node``;
``rpc_server.js`` beside this file is the server. One node process listens on two
ports: one speaks JSON-RPC 2.0 in text frames, the other uses a MessagePack data
pack (every message one binary frame holding a msgpack map).

As a module it offers :func:`install`, :func:`start`, :func:`stop`, :func:`restart`
and :func:`free_port`; as a script::

    python tests/servers/rpc_server.py install
    python tests/servers/rpc_server.py start [--json-port N] [--msgpack-port N]

(``start`` stays in the foreground until Ctrl-C.) Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RPC_WEBSOCKETS_VERSION = "10.0.1"
"""The rpc-websockets release the integration tests are written against."""
MSGPACK_VERSION = "3.1.3"
"""The @msgpack/msgpack release behind the server's MessagePack data pack."""

HOST = "127.0.0.1"
"""Everything listens and connects on IPv4 loopback only."""

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS_DIR = REPO_ROOT / ".servers"
NODE_DIR = SERVERS_DIR / "rpc-node"
SERVER_SCRIPT = Path(__file__).resolve().with_suffix(".js")

#: What login accepts (rpc_server.js has the same values).
USER = "octoproto"
PASSWORD = "let-me-in"

INSTALL_TIMEOUT = 300.0
"""Seconds for the whole ``npm install`` (a cold one takes about 3 s)."""
READY_TIMEOUT = 20.0
"""Seconds from spawning node until it reports both ports listening."""
STOP_TIMEOUT = 5.0
"""Seconds to wait after SIGTERM before resorting to SIGKILL."""

_PACKAGES = {"rpc-websockets": RPC_WEBSOCKETS_VERSION, "@msgpack/msgpack": MSGPACK_VERSION}
# Its presence and content mean a previous install of these versions finished.
_MARKER = NODE_DIR / ".octoproto-installed"


class RpcServerError(RuntimeError):
    """Installing, starting or stopping the rpc-websockets server failed."""


@dataclasses.dataclass
class RpcServer:
    """A running server: one process, a JSON port and a MessagePack port.

    Mutable on purpose: :func:`restart` updates ``pid`` in place, so a fixture
    that handed this object out still stops the right process.
    """

    host: str
    json_port: int
    msgpack_port: int
    pid: int
    log_file: Path

    def url(self, encoding: str = "json", path: str = "/") -> str:
        """The ``ws://`` URL of the port for ``encoding`` (``json`` or ``msgpack``)."""
        port = self.json_port if encoding == "json" else self.msgpack_port
        return f"ws://{self.host}:{port}{path}"


# Popen objects of the servers this process started, by pid, so stop() can reap them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _marker_text() -> str:
    return json.dumps(_PACKAGES, sort_keys=True)


def _is_installed() -> bool:
    try:
        return _MARKER.read_text(encoding="utf-8") == _marker_text()
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Two test sessions starting at once must not run npm in the same folder.
    SERVERS_DIR.mkdir(parents=True, exist_ok=True)
    with open(SERVERS_DIR / "rpc-node.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def install(*, quiet: bool = False) -> Path:
    """Install the pinned npm packages into ``<repo>/.servers/rpc-node`` unless there.

    Idempotent and cheap when already installed (a marker file is checked; npm
    is not run). Needs ``node`` (18 or later) and ``npm`` on the PATH.
    """
    began = time.monotonic()
    if _is_installed():
        return NODE_DIR
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RpcServerError("node and npm are needed for the rpc-websockets server")
    with _install_lock():
        if _is_installed():  # another process finished it while we waited
            return NODE_DIR
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        package = {"name": "octoproto-rpc-server", "private": True, "dependencies": _PACKAGES}
        (NODE_DIR / "package.json").write_text(json.dumps(package, indent=2) + "\n")
        try:
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"],
                cwd=NODE_DIR,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RpcServerError(f"npm install timed out after {INSTALL_TIMEOUT:.0f} s") from exc
        if result.returncode != 0:
            raise RpcServerError(
                f"npm install failed ({result.returncode}):\n{_tail(result.stdout)}\n"
                f"{_tail(result.stderr)}"
            )
        _MARKER.write_text(_marker_text(), encoding="utf-8")
    if not quiet:
        print(f"installed {_PACKAGES} in {time.monotonic() - began:.1f} s")
    return NODE_DIR


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _read_log(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def start(json_port: int, msgpack_port: int, log_file: Path | None = None) -> RpcServer:
    """Start the server on 127.0.0.1 and return once both ports listen.

    Installs the npm packages first if needed. Raises :class:`RpcServerError`
    (with the log tail) when node exits or does not report ready in time.
    """
    install(quiet=True)
    if log_file is None:
        log_file = Path(tempfile.mkdtemp(prefix="rpc-server-")) / "server.log"
    # A fresh log per start: the ready line is looked for in it.
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            ["node", str(SERVER_SCRIPT), str(json_port), str(msgpack_port)],
            cwd=NODE_DIR,  # where node_modules is
            # A pipe held open by this process: the server exits at its end,
            # so it cannot outlive us, even if we are killed.
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")},
            # Its own process group: stop() signals it, and a Ctrl-C meant for
            # pytest does not reach the server first.
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    server = RpcServer(HOST, json_port, msgpack_port, proc.pid, log_file)
    deadline = time.monotonic() + READY_TIMEOUT
    while "READY" not in _read_log(log_file):
        if not _alive(proc.pid) or time.monotonic() > deadline:
            stop(server)
            raise RpcServerError(
                f"rpc server not ready (ports {json_port}, {msgpack_port}); log:\n"
                f"{_tail(_read_log(log_file))}"
            )
        time.sleep(0.02)
    return server


def stop(server: RpcServer) -> None:
    """Stop the server: SIGTERM, then SIGKILL if it lingers. Safe on an exited server."""
    pid = server.pid
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # start_new_session made it the group's leader
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not _alive(pid):
            break
    else:
        raise RpcServerError(f"rpc server (pid {pid}) survived SIGKILL")
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=1)
        if child.stdin is not None:
            child.stdin.close()


def restart(server: RpcServer, *, down_for: float = 0.0) -> RpcServer:
    """Stop the server, wait ``down_for`` seconds, start it on the same ports.

    Every connection drops (without a close frame: the process dies) and all
    server state (logins, subscriptions) is gone. Updates ``server.pid`` in
    place and returns the same object.
    """
    stop(server)
    time.sleep(down_for)
    fresh = start(server.json_port, server.msgpack_port, server.log_file)
    server.pid = fresh.pid
    return server


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install the npm packages into .servers/rpc-node")
    cmd = sub.add_parser("start", help="run the server until Ctrl-C")
    cmd.add_argument("--json-port", type=int, default=0)
    cmd.add_argument("--msgpack-port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
            return 0
        began = time.monotonic()
        server = start(args.json_port or free_port(), args.msgpack_port or free_port())
    except RpcServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"ready in {time.monotonic() - began:.2f} s: {server.url('json')} {server.url('msgpack')}"
    )
    print(f"login: user={USER!r} password={PASSWORD!r}; log: {server.log_file}")
    try:
        while _alive(server.pid):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
