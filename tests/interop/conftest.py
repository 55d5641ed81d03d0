"""Fixtures: the real `shardbar` binary on free loopback ports, and async test support.

Every router is started from a TOML file written here (``--shards 2``, a TCP listener for
WebSocket + RawSocket, a Unix-socket RawSocket listener, and a metrics listener on
``router.metrics_port``), waited for with ``GET /health`` on the metrics listener (200 once
every shard serves), and stopped by its PID in a finalizer: SIGTERM, then SIGKILL after a
timeout. ``/health`` and ``/metrics`` are not served on the WAMP port unless a test opts in
(``metrics={"http_endpoints_on_wamp_port": True}``). Its stdout/stderr go to a log file the tests can read (``router.log_text()``).

Tests written as ``async def`` run in a fresh asyncio loop with a hard time limit
(``ASYNC_TEST_TIMEOUT_S`` or ``@pytest.mark.async_timeout(s)``); pytest-timeout is the
outer guard.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import txaio  # noqa: E402

txaio.use_asyncio()

ROOT = Path(__file__).resolve().parents[2]
ASYNC_TEST_TIMEOUT_S = 60.0


def shardbar_bin() -> str:
    b = os.environ.get("SHARDBAR_BIN") or str(ROOT / "target" / "debug" / "shardbar")
    if not os.access(b, os.X_OK):
        pytest.exit(f"router binary {b} not found: run `cargo build --bins` or set SHARDBAR_BIN", 2)
    return b


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_keys(keys: dict) -> list[str]:
    """``key = value`` lines of a TOML table."""
    return [f"{k} = {toml_value(v)}" for k, v in keys.items()]


def listener_lines(keys: dict | None) -> list[str]:
    """A ``[[listener]]``'s keys; a dict value becomes its sub-table (``tls`` → ``[listener.tls]``)."""
    keys = keys or {}
    lines = toml_keys({k: v for k, v in keys.items() if not isinstance(v, dict)})
    for k, v in keys.items():
        if isinstance(v, dict):
            lines += [f"[listener.{k}]"] + toml_keys(v)
    return lines


class Router:
    """One `shardbar` process. ``limits``/``router``/``metrics``: extra keys for those
    sections; ``realms``: list of dicts for ``[[realm]]`` (default: realm1); ``listener``,
    ``unix_listener``: extra keys of the TCP and Unix listeners (a dict value is a sub-table,
    e.g. ``{"tls": {...}}``); ``listener_toml``/``unix_listener_toml``: raw TOML sub-tables
    of the two listeners (``[listener.auth.ticket]`` ...); ``extra_toml``: raw TOML at the end
    (``[[realm.role]]`` tables of the last realm)."""

    def __init__(self, name: str = "router", shards: int = 2, limits: dict | None = None,
                 router: dict | None = None, realms: list[dict] | None = None, unix: bool = True,
                 listener: dict | None = None, unix_listener: dict | None = None, metrics: dict | None = None,
                 listener_toml: str = "", unix_listener_toml: str = "", extra_toml: str = ""):
        self.dir = Path(tempfile.mkdtemp(prefix=f"sb-{name}-"))
        self.port = free_port()
        self.metrics_port = free_port()
        self.unix_path = str(self.dir / "rs.sock") if unix else None
        self.config_path = self.dir / "shardbar.toml"
        self.log_path = self.dir / "router.log"
        self.proc: subprocess.Popen | None = None
        self.shards = shards
        r = {"shards": shards, "log": "info"}
        r.update(router or {})
        lines = ["[router]"] + toml_keys(r)
        lines += ["", "[[listener]]", f'address = "127.0.0.1:{self.port}"']
        lines += listener_lines(listener)
        lines += [listener_toml]
        if unix:
            lines += ["", "[[listener]]", f"path = {toml_value(self.unix_path)}"]
            lines += listener_lines(unix_listener)
            lines += [unix_listener_toml]
        if limits:
            lines += ["", "[limits]"] + toml_keys(limits)
        m = {"address": f"127.0.0.1:{self.metrics_port}", "summary_interval_s": 0}
        m.update(metrics or {})
        lines += ["", "[metrics]"] + toml_keys(m)
        for realm in realms or [{"name": "realm1"}]:
            lines += ["", "[[realm]]"] + toml_keys(realm)
        # Raw TOML at the end: `[[realm.role]]` tables belong to the last realm.
        lines += [extra_toml]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 30.0, preexec_fn=None) -> Router:
        """Start and wait for /health; ``preexec_fn`` runs in the child before exec (limits)."""
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [shardbar_bin(), "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"}, preexec_fn=preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited {self.proc.returncode} at start:\n{self.log_text()}")
            if self.healthy():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"router not healthy after {timeout}s:\n{self.log_text()}")
            # A child process gives no readiness event but /health: poll it.
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/health", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def make_router(request):
    """Factory: ``make_router(**Router kwargs)`` starts a router stopped at test end."""
    started = []

    def make(**kw) -> Router:
        r = Router(**kw)
        started.append(r)
        return r.start()

    yield make
    for r in started:
        if getattr(request.node, "rep_call_failed", False):
            sys.stderr.write(f"\n--- router log ({r.log_path}) ---\n{r.log_text()[-4000:]}\n")
        r.cleanup()


@pytest.fixture(scope="session")
def router(request):
    """The shared router: 2 shards, defaults except liveness pings off.

    Pings are off here because Autobahn|Python's asyncio RawSocket transport does not answer
    RawSocket PINGs (its ``ping()`` raises NotImplementedError); liveness has its own router.
    """
    r = Router(name="shared", limits={"ping_interval_ms": 0})
    r.start()
    yield r
    r.stop()
    if request.session.testsfailed:
        sys.stderr.write(f"\n--- shared router log, last 4000 characters ---\n{r.log_text()[-4000:]}\n")
    r.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    marker = pyfuncitem.get_closest_marker("async_timeout")
    limit = marker.args[0] if marker else ASYNC_TEST_TIMEOUT_S
    args = {a: pyfuncitem.funcargs[a] for a in pyfuncitem._fixtureinfo.argnames}

    async def run():
        txaio.config.loop = asyncio.get_running_loop()
        await asyncio.wait_for(pyfuncitem.obj(**args), limit)

    asyncio.run(run())
    return True
