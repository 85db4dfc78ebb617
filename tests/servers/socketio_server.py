"""Install and run a real python-socketio server on 127.0.0.1 for integration tests.

Standard library only: this file runs under the project's own interpreter,
while python-socketio (with aiohttp) lives in a separate virtual environment
(``<repo>/.servers/socketio-venv``), so the client under test never shares an
environment with the reference implementation. The server application is
``socketio_app.py`` beside this file (what it offers is described there).

As a module it offers :func:`install`, :func:`start`, :func:`stop`,
:func:`restart`, :func:`frozen` and :func:`free_port`; as a script::

    python tests/servers/socketio_server.py install
    python tests/servers/socketio_server.py serve [--port N] [--ping-interval S] [--ping-timeout S]

(``serve`` runs in the foreground until Ctrl-C, logging every packet.) Every
wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("python-socketio==5.18.1", "python-engineio==4.15.1", "aiohttp==3.14.5")
"""What the server venv holds, pinned: the releases the tests are written against."""

HOST = "127.0.0.1"
"""Everything listens and connects on IPv4 loopback only."""

TOKEN = "letmein"
"""The auth token the server accepts (``socketio_app.TOKEN``)."""

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS_DIR = REPO_ROOT / ".servers"
VENV_DIR = SERVERS_DIR / "socketio-venv"
APP = Path(__file__).resolve().with_name("socketio_app.py")

INSTALL_TIMEOUT = 600.0
"""Seconds for the whole ``pip install`` (a cold one takes about 10 s)."""
VENV_TIMEOUT = 120.0
"""Seconds for creating the venv."""
READY_TIMEOUT = 20.0
"""Seconds from spawning the server until its port accepts connections."""
STOP_TIMEOUT = 5.0
"""Seconds to wait after SIGTERM before resorting to SIGKILL."""
MAX_FROZEN = 30.0
"""The longest :func:`frozen` may keep the server stopped, in seconds."""

_MARKER = VENV_DIR / ".octoproto-installed"


class SocketIOServerError(RuntimeError):
    """Installing, starting or stopping the Socket.IO server failed."""


@dataclasses.dataclass
class SocketIOServer:
    """A running server. Mutable: :func:`restart` updates ``pid`` in place."""

    host: str
    port: int
    pid: int
    ping_interval: float
    ping_timeout: float
    log_file: Path

    @property
    def url(self) -> str:
        """The server's base URL (the client adds ``/socket.io/``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """The only ``Origin`` the server accepts (besides none)."""
        return self.url


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def _wanted_marker() -> str:
    return "\n".join(PACKAGES) + "\n"


def _is_installed() -> bool:
    try:
        marker = _MARKER.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return marker == _wanted_marker() and _venv_python().exists()


def _clean_env() -> dict[str, str]:
    # The server venv must not see the project venv's import settings.
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _run(cmd: list[str], timeout: float, what: str) -> None:
    try:
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SocketIOServerError(f"{what} timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise SocketIOServerError(
            f"{what} failed with exit code {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )


def install(*, quiet: bool = False) -> Path:
    """Install the pinned packages into ``.servers/socketio-venv`` unless they are there.

    Idempotent and cheap when installed (a marker file is checked). Returns
    the venv's directory.
    """
    began = time.monotonic()
    if _is_installed():
        return VENV_DIR
    SERVERS_DIR.mkdir(parents=True, exist_ok=True)
    with open(SERVERS_DIR / "socketio-venv.lock", "w") as lock:
        # Two test sessions starting at once must not run pip into the same venv.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_installed():  # another process finished it while we waited
            return VENV_DIR
        if not _venv_python().exists():
            _run([sys.executable, "-m", "venv", str(VENV_DIR)], VENV_TIMEOUT, "creating the venv")
        _run(
            [str(_venv_python()), "-m", "pip", "install", "--quiet", *PACKAGES],
            INSTALL_TIMEOUT,
            f"pip install {' '.join(PACKAGES)}",
        )
        _MARKER.write_text(_wanted_marker(), encoding="utf-8")
    if not quiet:
        print(f"installed {', '.join(PACKAGES)} in {time.monotonic() - began:.1f} s")
    return VENV_DIR


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    return child is not None and child.poll() is None


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(server: SocketIOServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if not _alive(server.pid):
            raise SocketIOServerError(
                f"the Socket.IO server exited during start-up; log tail:\n"
                f"{_log_tail(server.log_file)}"
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 1.0):
            return
        if time.monotonic() > deadline:
            raise SocketIOServerError(
                f"the Socket.IO server on port {server.port} not ready after "
                f"{READY_TIMEOUT:.0f} s; log tail:\n{_log_tail(server.log_file)}"
            )
        time.sleep(0.05)


def _spawn(port: int, ping_interval: float, ping_timeout: float, log_file: Path) -> int:
    with open(log_file, "ab") as log:
        log.write(f"\n=== socketio_app on {HOST}:{port} at {time.ctime()} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [
                str(_venv_python()),
                str(APP),
                "--port",
                str(port),
                "--ping-interval",
                str(ping_interval),
                "--ping-timeout",
                str(ping_timeout),
                "--exit-on-stdin-eof",
            ],
            # A pipe only this process holds: if it dies (a killed pytest),
            # the pipe ends and the server exits with it.
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            # Its own process group, so a Ctrl-C meant for pytest does not reach it first.
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def start(
    port: int,
    log_file: Path | str,
    *,
    ping_interval: float = 25.0,
    ping_timeout: float = 20.0,
) -> SocketIOServer:
    """Start the server on 127.0.0.1:``port``; returns once the port accepts connections.

    ``ping_interval`` and ``ping_timeout`` (seconds) are the server's
    Engine.IO heartbeat settings. Installs the venv first if needed.
    """
    install(quiet=True)
    log_path = Path(log_file)
    pid = _spawn(port, ping_interval, ping_timeout, log_path)
    server = SocketIOServer(HOST, port, pid, ping_interval, ping_timeout, log_path)
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: SocketIOServer) -> None:
    """Stop the server: SIGCONT and SIGTERM, then SIGKILL if it lingers. Safe when it exited."""
    child = _CHILDREN.pop(server.pid, None)
    if child is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGCONT)  # a frozen process would not see SIGTERM
        child.terminate()
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=STOP_TIMEOUT)


def restart(server: SocketIOServer) -> SocketIOServer:
    """Stop and start the server again on the same port; updates ``server.pid`` in place."""
    stop(server)
    server.pid = _spawn(server.port, server.ping_interval, server.ping_timeout, server.log_file)
    _wait_ready(server)
    return server


@contextlib.contextmanager
def frozen(server: SocketIOServer, seconds: float) -> Iterator[None]:
    """Stop the server process (SIGSTOP) for the ``with`` block, then let it go on.

    A frozen server answers nothing, not even pings, while the kernel keeps
    its sockets open: to the client the link is silent, not closed. The block
    must end within ``seconds`` (at most :data:`MAX_FROZEN`); the caller
    bounds its own waits by it, and the process is resumed on the way out
    whatever happens.
    """
    if not 0 < seconds <= MAX_FROZEN:
        raise ValueError(f"freeze for 0 < seconds <= {MAX_FROZEN}, not {seconds}")
    os.kill(server.pid, signal.SIGSTOP)
    began = time.monotonic()
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)
    held = time.monotonic() - began
    if held > seconds:
        raise SocketIOServerError(f"the server stayed frozen {held:.1f} s (> {seconds} s)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install python-socketio into .servers/socketio-venv")
    serve = sub.add_parser("serve", help="run the test server in the foreground")
    serve.add_argument("--port", type=int, default=0, help="default: a free one")
    serve.add_argument("--ping-interval", type=float, default=25.0)
    serve.add_argument("--ping-timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        install()
    except SocketIOServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "install":
        return 0
    port = args.port or free_port()
    print(f"serving on http://{HOST}:{port} (auth token {TOKEN!r}); Ctrl-C stops")
    cmd = [str(_venv_python()), str(APP), "--port", str(port)]
    cmd += ["--ping-interval", str(args.ping_interval), "--ping-timeout", str(args.ping_timeout)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, env=_clean_env(), check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
