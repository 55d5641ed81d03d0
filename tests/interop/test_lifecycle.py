"""Process lifecycle: shutdown on SIGTERM/SIGINT, bad configuration, RLIMIT_MEMLOCK too low,
and the command line without a config file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import time

import pytest

import rawwamp as rw
from abclient import connect
from conftest import free_port, shardbar_bin

SHUTDOWN = "wamp.close.system_shutdown"


async def wait_exit(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Wait for the process to exit; returns (exit code, seconds waited)."""
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    try:
        code = await loop.run_in_executor(None, proc.wait, timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"router still running {timeout}s after the signal") from None
    return code, time.monotonic() - t0


def rawsocket_accepts(port: int) -> bool:
    """Whether a RawSocket handshake (JSON) on ``port`` gets the router's success reply."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(bytes([0x7F, 0xF1, 0, 0]))
            reply = sock.recv(4)
    except OSError:
        return False
    return len(reply) == 4 and reply[0] == 0x7F and reply[1] & 0x0F == 1


@contextlib.asynccontextmanager
async def cli_router(tmp_path, preexec_fn=None, from_env=False):
    """`shardbar --listen 127.0.0.1:P --shards 2` (no config file), serving within 30 s;
    yields (process, a Router probe for its port, log path). Killed by PID on the way out.
    With ``from_env`` the two settings come from SHARDBAR_LISTEN and SHARDBAR_SHARDS instead.
    The built-in defaults have no metrics listener and keep /health off the WAMP port, so
    "serving" is a RawSocket handshake the router accepts (``rawsocket_accepts``)."""
    from conftest import Router

    port = free_port()
    log_path = tmp_path / "router.log"
    log = open(log_path, "wb")
    settings = {"SHARDBAR_LISTEN": f"127.0.0.1:{port}", "SHARDBAR_SHARDS": "2"}
    if from_env:
        args, env = [], {**os.environ, **settings}
    else:
        args, env = ["--listen", settings["SHARDBAR_LISTEN"], "--shards", settings["SHARDBAR_SHARDS"]], None
    proc = subprocess.Popen([shardbar_bin(), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
    try:
        probe = Router.__new__(Router)
        probe.port, probe.unix_path = port, None
        deadline = time.monotonic() + 30
        while not rawsocket_accepts(port):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "not serving in 30 s"
            await asyncio.sleep(0.05)
        yield proc, probe, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.async_timeout(60)
async def test_sigterm_says_goodbye_to_every_session_and_exits_0(make_router):
    # Goal: on SIGTERM every session on every shard and transport gets GOODBYE
    # wamp.close.system_shutdown, and the process exits 0 within a few seconds.
    # Method: Autobahn sessions of several kinds on both shards plus a raw RawSocket session
    # (which echoes the GOODBYE as the spec requires); SIGTERM; every session's leave reason
    # must be system_shutdown; the process must exit 0 within 5 s.
    router = make_router(name="sigterm", limits={"ping_interval_ms": 0})
    sessions = [await connect(router, k, shard=s) for k, s in
                (("ws-json", 0), ("ws-msgpack", 1), ("rs-cbor", 0), ("rs-json", 1), ("unix-msgpack", 0))]
    assert {s.shard for s in sessions} == {0, 1}
    raw = await rw.raw_session(router, "ws-cbor", shard=1)
    router.proc.send_signal(signal.SIGTERM)
    for s in sessions:
        details = await asyncio.wait_for(s.left, 10)
        assert details.reason == SHUTDOWN, (s.kind, details.reason)
    m = await raw.recv()
    assert m[0] == rw.GOODBYE and m[2] == SHUTDOWN, m
    await raw.send([rw.GOODBYE, {}, "wamp.close.goodbye_and_out"])
    _, closed = await raw.recv_closed()
    code, waited = await wait_exit(router.proc, 15)
    assert code == 0, router.log_text()
    assert waited < 5, f"exit took {waited:.1f}s"
    for s in sessions:
        await asyncio.wait_for(s.gone, 5)


@pytest.mark.async_timeout(60)
async def test_sigterm_with_unresponsive_peers_still_exits_in_time(make_router):
    # Goal: peers that never echo GOODBYE, never finish a handshake, or never read do not
    # keep the router alive: it closes them after its grace time and exits 0.
    # Method: a raw session that ignores the GOODBYE and stops reading, a TCP connection that
    # sent nothing, a RawSocket connection that never sent HELLO; SIGTERM; exit 0 within 10 s
    # (the router's shutdown grace is 3 s); the silent session was told GOODBYE.
    router = make_router(name="sigterm-rude", limits={"ping_interval_ms": 0})
    rude = await rw.raw_session(router, "rs-msgpack")
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", router.port)
    no_hello = await rw.RawSocketConn.open(port=router.port, serializer="json")
    router.proc.send_signal(signal.SIGTERM)
    code, waited = await wait_exit(router.proc, 15)
    assert code == 0, router.log_text()
    assert waited < 10, f"exit took {waited:.1f}s"
    got, _ = await rude.recv_closed()
    assert got and got[0][0] == rw.GOODBYE and got[0][2] == SHUTDOWN, got
    for c in (rude, no_hello):
        c.close()
    idle_writer.close()


@pytest.mark.async_timeout(60)
async def test_command_line_listen_and_shards_then_sigint(tmp_path):
    # Goal: `shardbar --listen 127.0.0.1:P --shards 2` (no config file) serves both shards,
    # and SIGINT stops it with exit 0.
    # Method: start it, wait until it serves, open sessions until both shards were seen (bounded),
    # send SIGINT with a session open; the session gets system_shutdown; exit 0.
    async with cli_router(tmp_path) as (proc, probe, _):
        seen, kept = set(), None
        for _ in range(64):
            s = await connect(probe, "ws-json")
            seen.add(s.shard)
            if kept is None:
                kept = s
            else:
                await s.close()
            if seen == {0, 1}:
                break
        assert seen == {0, 1}, f"sessions only on shards {seen}"
        proc.send_signal(signal.SIGINT)
        details = await asyncio.wait_for(kept.left, 10)
        assert details.reason == SHUTDOWN
        code, waited = await wait_exit(proc, 15)
        assert code == 0 and waited < 5, (code, waited)


BAD_CONFIGS = [
    ("[limits]\npending_bytes_max = 10\n", "limits.pending_bytes_max"),
    ("[limits]\nping_interval_ms = 5\n", "limits.ping_interval_ms"),
    ("[limits]\nmessage_size_max = 100000000\n", "limits.message_size_max"),
    ("[router]\nshardz = 2\n", "shardz"),
    ('[router]\nshards = "two"\n', "shards"),
    ("[router]\nshards = 65\n", "router.shards"),
    ('[[listener]]\naddress = "nowhere"\n', "listener[0].address"),
    ('[[listener]]\naddress = "127.0.0.1:1"\nserializers = ["json", "xml"]\n', "listener[0].serializers"),
    ('[[realm]]\nname = "realm1"\nslow_consumer = "maybe"\n', "realm[0].slow_consumer"),
    ('[[realm]]\nname = "bad realm"\n', "realm[0].name"),
    ("[metrics]\nsummary_interval_s = -1\n", "metrics.summary_interval_s"),
]


@pytest.mark.parametrize("text,key", BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_bad_config_exits_2_naming_file_and_key(tmp_path, text, key):
    # Goal: an invalid config file stops the router at once with exit code 2 and a message
    # on stderr naming the file and the offending key.
    # Method: write the file, run `shardbar --config FILE` (bounded 20 s), check code/stderr.
    path = tmp_path / "bad-config.toml"
    path.write_text(text)
    r = subprocess.run([shardbar_bin(), "--config", str(path)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(path) in r.stderr, r.stderr
    assert key in r.stderr, r.stderr


def test_missing_config_file_exits_2(tmp_path):
    # Goal: a config path that does not exist is reported (exit 2, the path named).
    # Method: run with a path under an empty temporary directory.
    path = tmp_path / "nope.toml"
    r = subprocess.run([shardbar_bin(), "--config", str(path)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and str(path) in r.stderr, (r.returncode, r.stderr)


def test_bad_command_line_exits_2():
    # Goal: an unknown option or a bad --shards/--listen value exits 2 naming the option.
    # Method: three invocations, each bounded.
    for args, name in ((["--bogus"], "--bogus"), (["--shards", "lots"], "--shards"),
                       (["--listen", "nowhere"], "--listen")):
        r = subprocess.run([shardbar_bin(), *args], capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and name in r.stderr, (args, r.returncode, r.stderr)


@pytest.mark.async_timeout(60)
async def test_environment_variables_set_listen_and_shards(tmp_path):
    # Goal: SHARDBAR_LISTEN and SHARDBAR_SHARDS do what --listen and --shards do.
    # Method: start with only the two variables (no flags, no file), wait until that port
    # serves, open a session there, check the start line says 2 shards; SIGTERM, exit 0.
    async with cli_router(tmp_path, from_env=True) as (proc, probe, log):
        s = await connect(probe, "ws-json")
        assert "shards=2" in log.read_text(), log.read_text()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(s.left, 10)
        code, _ = await wait_exit(proc, 15)
        assert code == 0, log.read_text()


def test_bad_environment_variable_exits_2(tmp_path):
    # Goal: a bad SHARDBAR_SHARDS is a usage error naming the flag it stands for, and a bad
    # file named by SHARDBAR_CONFIG is reported like one given with --config.
    # Method: two invocations with the variable set, each bounded.
    env = {**os.environ, "SHARDBAR_SHARDS": "lots"}
    r = subprocess.run([shardbar_bin()], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--shards" in r.stderr, (r.returncode, r.stderr)
    path = tmp_path / "bad-config.toml"
    path.write_text("[limits]\npending_bytes_max = 10\n")
    env = {**os.environ, "SHARDBAR_CONFIG": str(path)}
    r = subprocess.run([shardbar_bin()], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and str(path) in r.stderr and "limits.pending_bytes_max" in r.stderr, r.stderr


def test_memlock_too_low_exits_with_a_clear_message():
    # Goal: with RLIMIT_MEMLOCK below 512 KiB the router exits non-zero at start with a
    # message naming RLIMIT_MEMLOCK and pointing at tuning/.
    # Method: the equivalent of `prlimit --memlock=65536 shardbar ...`: the child lowers its
    # own soft and hard limit to 64 KiB before exec.
    def lower():
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))

    port = free_port()
    r = subprocess.run([shardbar_bin(), "--listen", f"127.0.0.1:{port}", "--shards", "2"], capture_output=True,
                       text=True, timeout=20, preexec_fn=lower)
    assert r.returncode != 0, r.stderr
    assert "RLIMIT_MEMLOCK" in r.stderr and "tuning/" in r.stderr, r.stderr


async def test_second_router_on_a_port_in_use_refuses_to_start(make_router):
    # Goal: the README's "safe to start twice": a second router on a port that a running
    # router serves exits non-zero naming the address, and the first keeps serving.
    # Method: start one router, run a second on its port (bounded), then open a session on
    # the first.
    router = make_router(name="first", limits={"ping_interval_ms": 0})
    addr = f"127.0.0.1:{router.port}"
    r = subprocess.run([shardbar_bin(), "--listen", addr, "--shards", "2"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0, r.stderr
    assert addr in r.stderr, r.stderr
    s = await rw.RawSocketConn.open(port=router.port, serializer="json")
    await s.hello()
    s.close()


async def test_shards_pin_to_the_cpus_the_process_may_use(tmp_path):
    # Goal: under `taskset -c <last cpu>` both shards pin to the allowed CPU and serve (they
    # used to pin to CPU 0.. regardless; in a cpuset that fails to start). Method: start with
    # the affinity set in the child, wait until it serves (bounded), read each shard thread's
    # allowed CPUs from /proc, SIGTERM, expect exit 0.
    last = max(os.sched_getaffinity(0))
    async with cli_router(tmp_path, preexec_fn=lambda: os.sched_setaffinity(0, {last})) as (proc, _, log):
        pinned = {}
        for task in os.listdir(f"/proc/{proc.pid}/task"):
            name = open(f"/proc/{proc.pid}/task/{task}/comm").read().strip()
            if name.startswith("shard-"):
                status = open(f"/proc/{proc.pid}/task/{task}/status").read()
                allowed = [ln.split()[1] for ln in status.splitlines() if ln.startswith("Cpus_allowed_list")]
                pinned[name] = allowed[0]
        assert pinned == {"shard-0": str(last), "shard-1": str(last)}, pinned
        proc.send_signal(signal.SIGTERM)
        code, _ = await wait_exit(proc, 15)
        assert code == 0, log.read_text()


async def test_second_signal_exits_at_once(tmp_path):
    # Goal: a second shutdown signal while stopping exits at once with 130 (the operator's
    # way out of a slow shutdown). Method: start, wait until it serves, send SIGTERM then SIGINT
    # (different signals, so the kernel does not merge them) back to back, long before the
    # graceful stop could finish; expect 130 and the log line.
    async with cli_router(tmp_path) as (proc, _, log):
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        code, _ = await wait_exit(proc, 15)
        text = log.read_text()
        assert code == 130 and "second shutdown signal" in text, (code, text)


def test_help_and_version():
    # Goal: --help prints usage and exits 0; --version prints the version.
    # Method: run both (bounded).
    r = subprocess.run([shardbar_bin(), "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "--config" in r.stdout and "--shards" in r.stdout
    r = subprocess.run([shardbar_bin(), "--version"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout.startswith("shardbar "), r.stdout


@pytest.mark.async_timeout(60)
async def test_health_reports_503_while_stopping(make_router):
    # Goal: /health answers 200 while serving and stops answering 200 once shutdown began.
    # Method: hold a raw session that ignores GOODBYE (the router then waits its grace time),
    # SIGTERM; once that GOODBYE arrived, /health must stop answering 200 within 2 s (it is
    # refused or 503) while the router is still running.
    router = make_router(name="health", limits={"ping_interval_ms": 0})
    assert router.healthy()
    rude = await rw.raw_session(router, "rs-json")
    router.proc.send_signal(signal.SIGTERM)
    m = await rude.recv()
    assert m[0] == rw.GOODBYE
    # Each shard notices the shutdown on its own (a 20 ms tick), and /health is answered by
    # shard 0 (the metrics listener's): allow a short, bounded delay.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    while router.healthy():
        assert loop.time() < deadline, "/health still 200 two seconds after shutdown began"
        await asyncio.sleep(0.02)
    assert router.alive(), "the router exited early: it should wait for the GOODBYE echo"
    code, _ = await wait_exit(router.proc, 15)
    assert code == 0
    rude.close()


def test_router_logs_each_shard_serving(make_router):
    # Goal: the router logs that each shard serves (operators rely on it).
    # Method: start a router and read its log.
    router = make_router(name="log", limits={"ping_interval_ms": 0})
    text = router.log_text()
    assert "shard serving" in text and "shard=0" in text and "shard=1" in text, text


@pytest.mark.async_timeout(120)
async def test_restart_on_the_same_ports_after_clients_left_succeeds_at_once():
    # Goal: a router stopped cleanly after clients joined and left can be started again on
    # the same ports at once. The connections the router closed first sit in TIME_WAIT for
    # about a minute; they must not make the start-up "port in use" check refuse (it did:
    # the check bound with SO_REUSEADDR, the listeners' sockets without it), while a
    # second live router is still refused (test_second_router_on_a_port_in_use_refuses_to_start).
    # Method: one config with fixed ports, three rounds of: start (healthy within 15 s, or
    # the start fails with the router's message), a WebSocket and a RawSocket session join
    # and leave with GOODBYE, SIGTERM (exit 0); each next start follows at once.
    from conftest import Router

    r = Router(name="restart", limits={"ping_interval_ms": 0})
    try:
        for round_ in range(3):
            r.start(timeout=15)
            for kind in ("ws-json", "rs-msgpack"):
                s = await connect(r, kind)
                await s.close()
            raw = await rw.raw_session(r, "ws-cbor")
            await raw.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
            m = await raw.recv()
            assert m[0] == rw.GOODBYE, m
            raw.close()
            code = r.stop()
            assert code == 0, (round_, code, r.log_text())
    finally:
        r.cleanup()


@pytest.mark.async_timeout(60)
async def test_built_in_defaults_serve_no_http_endpoints_on_the_wamp_port(tmp_path):
    # Goal: with no config file (what users run first) /health and /metrics are not served
    # on the WAMP port, whatever address --listen gives it: they would tell anyone who can
    # connect every realm's name. The answer says where they are instead (404).
    # Method: start without a file, GET both paths on the WAMP port (bounded), then SIGTERM.
    async with cli_router(tmp_path) as (proc, probe, _):
        for path in ("/health", "/metrics"):
            status, _, body = await rw.http_exchange(probe.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert status == 404 and b"[metrics] address" in body, (path, status, body)
            assert b"realm1" not in body
        proc.send_signal(signal.SIGTERM)
        code, _ = await wait_exit(proc, 15)
        assert code == 0
