"""Install and run a real OctoPrint server on 127.0.0.1 for integration tests.

Standard library only: this file runs under the project's own interpreter, while
OctoPrint lives in a separate virtual environment (``<repo>/.servers/octoprint-venv``)
so that neither its many dependencies nor its AGPL code ever mix with the project's.

As a module it offers :func:`install`, :func:`start`, :func:`stop`,
:func:`restart` and :func:`free_port`; as a script::

    python tests/servers/octoprint_server.py install
    python tests/servers/octoprint_server.py start [--port N] [--basedir DIR]
    python tests/servers/octoprint_server.py stop [--basedir DIR]
    python tests/servers/octoprint_server.py restart [--basedir DIR]

The server is configured to stay offline (no update checks, no online check, no
multicast discovery, no tracking), binds to 127.0.0.1 only, and drives
OctoPrint's bundled virtual printer, which it connects before :func:`start`
returns. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

OCTOPRINT_VERSION = "1.11.8"
"""The OctoPrint release the integration tests are written against."""

HOST = "127.0.0.1"
"""Everything listens and connects on IPv4 loopback only."""

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS_DIR = REPO_ROOT / ".servers"
VENV_DIR = SERVERS_DIR / "octoprint-venv"
DEFAULT_BASEDIR = SERVERS_DIR / "octoprint-data"

INSTALL_TIMEOUT = 900.0
"""Seconds for the whole ``pip install`` (a cold one takes about 20 s)."""
CLI_TIMEOUT = 120.0
"""Seconds for one short ``octoprint`` command (``user add``)."""
READY_TIMEOUT = 60.0
"""Seconds from spawning ``octoprint serve`` until ``/api/version`` answers 200."""
OPERATIONAL_TIMEOUT = 30.0
"""Seconds from the connect request until the virtual printer is Operational."""
STOP_TIMEOUT = 15.0
"""Seconds to wait after SIGTERM before resorting to SIGKILL."""
HTTP_TIMEOUT = 5.0
"""Seconds for one HTTP request to the server."""

# The marker records what was installed; its presence means a previous install
# finished, so later calls can return without running pip at all.
_MARKER = VENV_DIR / ".octoproto-installed"
_STATE_FILE = "octoproto-server.json"
_LOG_FILE = "serve.log"
_APP_ID = "octoproto-tests"
_USERNAME = "octoproto"

# Overrides merged into config.yaml before every start. Why each is here:
_CONFIG_OVERRIDES: dict[str, Any] = {
    "server": {
        # Skip the first-run wizard (it would want an admin created in the UI).
        "firstRun": False,
        # The online check probes a public DNS server every few minutes.
        "onlineCheck": {"enabled": False},
        # The plugin blacklist is fetched from the internet when enabled.
        "pluginBlacklist": {"enabled": False},
    },
    "accessControl": {
        # Requests from 127.0.0.1 would otherwise be logged in automatically,
        # hiding exactly the authentication paths the tests want to exercise.
        "autologinLocal": False,
    },
    "serial": {
        "port": "VIRTUAL",
        "baudrate": 115200,
        # start() connects explicitly, so that it can wait for the result.
        "autoconnect": False,
    },
    "plugins": {
        "virtual_printer": {"enabled": True},
        # Every bundled plugin that talks to the network or phones home:
        # discovery sends multicast (zeroconf/SSDP), the rest fetch feeds,
        # update information, plugin repositories or upload error reports.
        "_disabled": [
            "announcements",
            "discovery",
            "errortracking",
            "health_check",
            "pluginmanager",
            "softwareupdate",
            "tracking",
        ],
    },
}

# Runs inside the OctoPrint venv, whose PyYAML does the YAML work so this file
# can stay standard-library only. Input and output are JSON on stdin/stdout.
# It merges the overrides into config.yaml (keeping what OctoPrint stored
# there itself, notably the password salt and the session secret: losing those
# would break the existing user's password after a restart), installs the API
# key in the appkeys plugin's store and reports whether the user exists.
_PREPARE_SCRIPT = r"""
import json, os, sys
import yaml

req = json.load(sys.stdin)
basedir = req["basedir"]

def load(path, default):
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        return default
    return default if data is None else data

def save(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, default_flow_style=False, allow_unicode=True)
    os.replace(tmp, path)

def merge(dst, src):
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = value

config_path = os.path.join(basedir, "config.yaml")
config = load(config_path, {})
merge(config, req["config"])
save(config_path, config)

keys_path = os.path.join(basedir, "data", "appkeys", "keys.yaml")
keys = load(keys_path, {})
entries = [e for e in keys.get(req["username"]) or [] if e.get("app_id") != req["app_id"]]
entries.append({"app_id": req["app_id"], "api_key": req["api_key"]})
keys[req["username"]] = entries
save(keys_path, keys)

users = load(os.path.join(basedir, "users.yaml"), {})
json.dump({"user_exists": req["username"] in users}, sys.stdout)
"""


class OctoPrintServerError(RuntimeError):
    """Installing, starting or stopping the OctoPrint server failed."""


@dataclasses.dataclass
class OctoPrintServer:
    """A running OctoPrint server and the credentials of its admin user.

    The object is mutable on purpose: :func:`restart` updates ``pid`` in place,
    so a fixture that handed this object out still stops the right process.
    """

    host: str
    port: int
    basedir: Path
    pid: int
    api_key: str
    username: str
    password: str
    base_url: str

    @property
    def log_file(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self.basedir / _LOG_FILE


# Popen objects of the servers this process started, by pid, so that stop()
# can reap them (no zombies, no ResourceWarning). A server started by another
# process (the CLI's ``stop``) is handled by pid alone.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    The kernel picks it (bind to port 0); there is an unavoidable race until the
    server binds it, which is harmless for tests on a quiet machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _venv_bin(name: str) -> Path:
    return VENV_DIR / "bin" / name


def _is_installed() -> bool:
    try:
        marker = _MARKER.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return False
    return marker == f"octoprint=={OCTOPRINT_VERSION}" and _venv_bin("octoprint").exists()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Two test sessions starting at once must not run pip into the same venv.
    SERVERS_DIR.mkdir(parents=True, exist_ok=True)
    with open(SERVERS_DIR / "octoprint-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _clean_env() -> dict[str, str]:
    # The server venv must not see the project venv's import settings.
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PATH"] = f"{VENV_DIR / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
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
        raise OctoPrintServerError(f"{what} timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise OctoPrintServerError(
            f"{what} failed with exit code {result.returncode}:\n"
            f"{_tail(result.stdout)}\n{_tail(result.stderr)}"
        )
    return result


def install(*, quiet: bool = False) -> Path:
    """Install OctoPrint into ``<repo>/.servers/octoprint-venv`` unless it is there.

    Idempotent and cheap when already installed (a marker file is checked; pip
    is not run). A cold install downloads from PyPI and compiles one dependency
    (netifaces), which needs a C compiler. Returns the venv's directory.
    """
    began = time.monotonic()
    if _is_installed():
        if not quiet:
            print(f"octoprint {OCTOPRINT_VERSION} already installed in {VENV_DIR}")
        return VENV_DIR
    with _install_lock():
        if _is_installed():  # another process finished it while we waited
            return VENV_DIR
        if not _venv_bin("python").exists():
            _run([sys.executable, "-m", "venv", str(VENV_DIR)], CLI_TIMEOUT, "creating the venv")
        _run(
            [
                str(_venv_bin("python")),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"octoprint=={OCTOPRINT_VERSION}",
            ],
            INSTALL_TIMEOUT,
            f"pip install octoprint=={OCTOPRINT_VERSION}",
        )
        _MARKER.write_text(f"octoprint=={OCTOPRINT_VERSION}\n", encoding="utf-8")
    if not quiet:
        print(f"installed octoprint {OCTOPRINT_VERSION} in {time.monotonic() - began:.1f} s")
    return VENV_DIR


def _load_state(basedir: Path) -> dict[str, Any]:
    try:
        data = json.loads((basedir / _STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise OctoPrintServerError(f"{basedir / _STATE_FILE} is not a JSON object")
    return data


def _save_state(basedir: Path, state: Mapping[str, Any]) -> None:
    path = basedir / _STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    # The file holds a password and an API key.
    tmp.chmod(0o600)
    tmp.replace(path)


def _credentials(basedir: Path) -> dict[str, Any]:
    """Load the basedir's credentials, generating them on first use."""
    state = _load_state(basedir)
    if not all(isinstance(state.get(k), str) for k in ("username", "password", "api_key")):
        state.update(
            username=_USERNAME,
            password=secrets.token_urlsafe(18),
            # OctoPrint's own keys are 43 URL-safe characters; match that shape.
            api_key=secrets.token_urlsafe(32),
        )
        _save_state(basedir, state)
    return state


def _prepare_basedir(basedir: Path, username: str, password: str, api_key: str) -> None:
    request = {
        "basedir": str(basedir),
        "config": _CONFIG_OVERRIDES,
        "username": username,
        "app_id": _APP_ID,
        "api_key": api_key,
    }
    try:
        result = subprocess.run(
            [str(_venv_bin("python")), "-c", _PREPARE_SCRIPT],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            env=_clean_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OctoPrintServerError("writing the OctoPrint config timed out") from exc
    if result.returncode != 0:
        raise OctoPrintServerError(f"writing the OctoPrint config failed:\n{_tail(result.stderr)}")
    if not json.loads(result.stdout)["user_exists"]:
        _run(
            [
                str(_venv_bin("octoprint")),
                "--basedir",
                str(basedir),
                "user",
                "add",
                "--password",
                password,
                "--admin",
                username,
            ],
            CLI_TIMEOUT,
            f"octoprint user add {username}",
        )


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _log_tail(basedir: Path) -> str:
    try:
        text = (basedir / _LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return _tail(text)


def _request(
    server: OctoPrintServer, method: str, path: str, body: Mapping[str, Any] | None = None
) -> tuple[int, bytes]:
    # http.client rather than urllib: urllib would honour http_proxy from the
    # environment even for 127.0.0.1.
    conn = http.client.HTTPConnection(server.host, server.port, timeout=HTTP_TIMEOUT)
    try:
        headers = {"X-Api-Key": server.api_key}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _process_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # Not our child: if its parent has not reaped it yet, a zombie still
    # answers kill(0), but it is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_ready(server: OctoPrintServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer yet"
    while True:
        if not _process_alive(server.pid):
            raise OctoPrintServerError(
                f"octoprint serve exited during start-up; log tail:\n{_log_tail(server.basedir)}"
            )
        try:
            # While it boots, OctoPrint runs an intermediary server that answers
            # a bare "Not found" line (not even HTTP), so a connection alone
            # does not mean ready.
            status, _ = _request(server, "GET", "/api/version")
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"HTTP {status}"
        if time.monotonic() > deadline:
            raise OctoPrintServerError(
                f"OctoPrint on {server.base_url} not ready after {READY_TIMEOUT:.0f} s "
                f"(last: {last}); log tail:\n{_log_tail(server.basedir)}"
            )
        time.sleep(0.1)


def _printer_state(server: OctoPrintServer) -> str:
    status, data = _request(server, "GET", "/api/connection")
    if status != 200:
        return f"HTTP {status}"
    state: str = json.loads(data)["current"]["state"]
    return state


def _connect_printer(server: OctoPrintServer) -> None:
    status, data = _request(
        server,
        "POST",
        "/api/connection",
        {"command": "connect", "port": "VIRTUAL", "baudrate": 115200},
    )
    if status not in (200, 204):
        raise OctoPrintServerError(f"connecting the virtual printer: HTTP {status} {data!r}")
    deadline = time.monotonic() + OPERATIONAL_TIMEOUT
    while (state := _printer_state(server)) != "Operational":
        if time.monotonic() > deadline:
            raise OctoPrintServerError(
                f"virtual printer not Operational after {OPERATIONAL_TIMEOUT:.0f} s "
                f"(state {state!r}); log tail:\n{_log_tail(server.basedir)}"
            )
        time.sleep(0.1)


def start(port: int, basedir: Path | str) -> OctoPrintServer:
    """Start OctoPrint on 127.0.0.1:``port`` with its data in ``basedir``.

    Installs OctoPrint first if needed. On first use of ``basedir`` this writes
    an offline configuration, creates an admin user with a random password and
    an API key, and records both in ``basedir/octoproto-server.json``; later
    starts reuse them. Returns once ``GET /api/version`` answers 200 and the
    virtual printer is connected and Operational; raises
    :class:`OctoPrintServerError` (with the log tail) otherwise.
    """
    basedir = Path(basedir).resolve()
    basedir.mkdir(parents=True, exist_ok=True)
    install(quiet=True)
    state = _credentials(basedir)
    _prepare_basedir(basedir, state["username"], state["password"], state["api_key"])

    with open(basedir / _LOG_FILE, "ab") as log:
        log.write(f"\n=== octoprint serve on {HOST}:{port} at {time.ctime()} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [
                str(_venv_bin("octoprint")),
                "serve",
                # Needed when running as root (as in CI containers); harmless otherwise.
                "--iknowwhatimdoing",
                "--host",
                HOST,
                "--port",
                str(port),
                "--basedir",
                str(basedir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            # Its own process group: stop() signals the whole group, and a
            # Ctrl-C meant for pytest does not reach the server first.
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    server = OctoPrintServer(
        host=HOST,
        port=port,
        basedir=basedir,
        pid=proc.pid,
        api_key=state["api_key"],
        username=state["username"],
        password=state["password"],
        base_url=f"http://{HOST}:{port}",
    )
    state.update(port=port, pid=proc.pid)
    _save_state(basedir, state)
    try:
        _wait_ready(server)
        _connect_printer(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(server: OctoPrintServer) -> None:
    """Stop the server: SIGTERM its process group, then SIGKILL if it lingers.

    Safe to call on a server that has already exited.
    """
    pid = server.pid
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            # start_new_session made the server its group's leader: pgid == pid.
            os.killpg(pid, sig)
        if _wait_exit(pid, timeout):
            break
    else:
        raise OctoPrintServerError(f"octoprint serve (pid {pid}) survived SIGKILL")
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=1)
    state = _load_state(server.basedir)
    if state.get("pid") == pid:
        state["pid"] = None
        _save_state(server.basedir, state)


def restart(server: OctoPrintServer) -> OctoPrintServer:
    """Stop and start the server again on the same port and basedir.

    Users and API keys survive; login sessions do not (OctoPrint keeps them in
    memory). Updates ``server.pid`` in place and returns the same object.
    """
    stop(server)
    fresh = start(server.port, server.basedir)
    server.pid = fresh.pid
    return server


def server_from_state(basedir: Path | str) -> OctoPrintServer:
    """Describe the server last started in ``basedir`` (for the CLI's stop/restart)."""
    basedir = Path(basedir).resolve()
    state = _load_state(basedir)
    if not state.get("pid") or not state.get("port"):
        raise OctoPrintServerError(f"no running server recorded in {basedir / _STATE_FILE}")
    pid = int(state["pid"])
    # Guard against a stale pid that now belongs to an unrelated process.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        cmdline = b""
    if b"octoprint" not in cmdline:
        state["pid"] = None
        _save_state(basedir, state)
        raise OctoPrintServerError(f"the server recorded in {basedir} (pid {pid}) is not running")
    port = int(state["port"])
    return OctoPrintServer(
        host=HOST,
        port=port,
        basedir=basedir,
        pid=pid,
        api_key=state["api_key"],
        username=state["username"],
        password=state["password"],
        base_url=f"http://{HOST}:{port}",
    )


def _describe(server: OctoPrintServer) -> str:
    return (
        f"OctoPrint {OCTOPRINT_VERSION} at {server.base_url} (pid {server.pid})\n"
        f"  basedir  {server.basedir}\n"
        f"  user     {server.username} / {server.password}\n"
        f"  api key  {server.api_key}\n"
        f"  log      {server.log_file}"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install OctoPrint into .servers/octoprint-venv")
    for name in ("start", "stop", "restart"):
        cmd = sub.add_parser(name, help=f"{name} the server")
        cmd.add_argument("--basedir", type=Path, default=DEFAULT_BASEDIR)
        if name == "start":
            cmd.add_argument("--port", type=int, help="default: the last one used, else a free one")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            install()
            return 0
        if args.command == "start":
            port = args.port or _load_state(Path(args.basedir).resolve()).get("port") or free_port()
            began = time.monotonic()
            server = start(int(port), args.basedir)
            print(_describe(server))
            print(f"ready in {time.monotonic() - began:.1f} s")
            # Detach: the server keeps running after this script exits.
            _CHILDREN.pop(server.pid, None)
            return 0
        server = server_from_state(args.basedir)
        if args.command == "stop":
            stop(server)
            print(f"stopped pid {server.pid}")
            return 0
        began = time.monotonic()
        restart(server)
        print(_describe(server))
        print(f"restarted in {time.monotonic() - began:.1f} s")
        _CHILDREN.pop(server.pid, None)
        return 0
    except OctoPrintServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
