"""The soak benchmark's Python side (bench/soak.sh runs it; see that script's header).

Subcommands:

  sample  --pid PID --out CSV
      Once a second until PID exits (or this process is stopped): the router's RSS (VmRSS),
      open files (entries of /proc/PID/fd), threads, and CPU (utime+stime ticks since the
      last sample, as % of one core), plus the machine's 1-minute load average.

  load    --port P --seconds S --out JSON [rates]
      The Autobahn|Python and hand-written peers of the mixed load, for S seconds:
        healthy   sessions that stay for the whole run, each publishing sequenced,
                  acknowledged events to one topic all of them subscribe to (exclude_me off)
                  and calling the next one's procedure with sequence numbers; every event
                  and every result must arrive exactly once and in order per publisher /
                  caller, and every invocation in order per caller;
        churn     sessions that join, subscribe, register, publish (Autobahn ones also call
                  their own procedure), and leave (one in five drops its connection without
                  GOODBYE), over WebSocket and RawSocket, JSON/MessagePack/CBOR;
        slow      subscribers (RawSocket, tiny receive buffer) that stop reading a topic a
                  feeder session floods; after SLOW_HOLD seconds each reads what is left and
                  records whether the router closed it (GOODBYE shardbar.close.slow_consumer);
        hostile   peers from tests/interop/rawwamp.py misbehaving: bad RawSocket
                  handshakes, garbage frames, oversized HELLO, protocol violations after
                  WELCOME, unmasked WebSocket frames, garbage HTTP, silent (half-open)
                  connections, sessions dropped without GOODBYE.
      Then stops publishing and calling, waits for what is in flight, checks, closes
      everything and writes the counts.

  settle  --metrics URL --out FILE [--timeout S]
      Scrape /metrics until nothing is left over (or the timeout) and keep the last scrape.

  report  --work DIR --warmup S --seconds S [--results FILE --svg FILE --command TEXT]
      Read the run's files, print the report, write DIR/report.md and the plot, and with
      --results replace the "Soak" section of that file. Exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import glob
import itertools
import json
import os
import random
import statistics
import sys
import time
import types
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.join(HERE, "..", "tests", "interop")

RSS_DRIFT_MAX = 5.0  # percent (issue 13)


# ---------------------------------------------------------------- sample


def read_proc(pid: int):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    rss_kib = int(status["VmRSS"].split()[0])
    threads = int(status["Threads"])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    # Time the router's threads spent runnable but waiting for a CPU (schedstat field 2, ns):
    # high when the machine, not the router, is the bottleneck.
    wait_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                wait_ns += int(f.read().split()[1])
    return rss_kib, fds, threads, ticks, wait_ns


def cmd_sample(a):
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    prev = None
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "rss_kib", "open_files", "threads", "cpu_pct", "loadavg1", "runq_wait_pct"])
        n = 0
        while True:
            try:
                rss, fds, threads, ticks, wait_ns = read_proc(a.pid)
            except (FileNotFoundError, ProcessLookupError, KeyError):
                return
            now = time.monotonic()
            cpu = wait = ""
            if prev is not None:
                dt = now - prev[0]
                cpu = f"{100.0 * (ticks - prev[1]) / hz / dt:.1f}"
                wait = f"{100.0 * (wait_ns - prev[2]) / 1e9 / dt:.1f}"
            prev = (now, ticks, wait_ns)
            with open("/proc/loadavg") as la:
                load1 = la.read().split()[0]
            w.writerow([f"{now - t0:.1f}", rss, fds, threads, cpu, load1, wait])
            f.flush()
            n += 1
            time.sleep(max(0.0, t0 + n - time.monotonic()))


# ---------------------------------------------------------------- load


def interop():
    """The interop tests' clients (Autobahn wrapper and the hand-written raw peers)."""
    if INTEROP not in sys.path:
        sys.path.insert(0, INTEROP)
    import abclient
    import rawwamp

    return abclient, rawwamp


class Healthy:
    """The sessions whose every event and result must arrive exactly once, in order."""

    TOPIC = "soak.healthy.events"

    def __init__(self, n, rate, window):
        self.n, self.rate, self.window = n, rate, window
        self.sessions = []
        self.names = [f"h{i}" for i in range(n)]
        self.published = {name: 0 for name in self.names}  # acknowledged publications
        self.publish_errors = 0
        # per subscriber, per publisher: last seq seen, count, and faults
        self.ev_last = {s: {p: 0 for p in self.names} for s in self.names}
        self.ev_count = {s: {p: 0 for p in self.names} for s in self.names}
        self.ev_reordered = 0
        self.ev_duplicated = 0
        self.ev_gaps = 0
        self.calls_made = {name: 0 for name in self.names}
        self.results_ok = 0
        self.results_bad = 0
        self.call_errors = 0
        self.inv_last = {s: {} for s in self.names}
        self.inv_reordered = 0
        self.inv_duplicated = 0
        self.lost_sessions = []
        self.error_samples = []

    def note(self, what):
        if len(self.error_samples) < 20:
            self.error_samples.append(what)

    async def start(self, router, abclient):
        kinds = ["ws-json", "rs-msgpack", "ws-cbor", "rs-cbor", "rs-json", "ws-msgpack"]
        for i, name in enumerate(self.names):
            c = await abclient.connect(router, kinds[i % len(kinds)], shard=i % 2)
            self.sessions.append(c)

            def on_event(pub, seq, pad="", me=name):
                last = self.ev_last[me].get(pub)
                if last is None:
                    self.note(f"{me}: event from unknown publisher {pub!r}")
                    return
                if seq == last + 1:
                    pass
                elif seq <= last:
                    self.ev_duplicated += 1 if seq == last else 0
                    self.ev_reordered += 1 if seq < last else 0
                    self.note(f"{me}: event {pub}#{seq} after #{last}")
                else:
                    self.ev_gaps += 1
                    self.note(f"{me}: event {pub}#{seq} after #{last} (gap)")
                self.ev_last[me][pub] = max(last, seq)
                self.ev_count[me][pub] += 1

            def on_invoke(caller, seq, me=name):
                last = self.inv_last[me].get(caller, 0)
                if seq == last:
                    self.inv_duplicated += 1
                elif seq < last:
                    self.inv_reordered += 1
                    self.note(f"{me}: invocation {caller}#{seq} after #{last}")
                self.inv_last[me][caller] = max(last, seq)
                return [caller, seq]

            await c.subscribe(on_event, self.TOPIC)
            await c.register(on_invoke, f"soak.healthy.call.{name}")

    async def publisher(self, idx, stop):
        from autobahn.wamp.types import PublishOptions

        c, name = self.sessions[idx], self.names[idx]
        opts = PublishOptions(acknowledge=True, exclude_me=False)
        rnd = random.Random(idx)
        seq = 0
        t = time.monotonic()
        while not stop.is_set():
            seq += 1
            pad = "x" * rnd.choice([0, 0, 0, 100, 1000, 4000])
            try:
                await c.publish(self.TOPIC, name, seq, pad, options=opts)
                self.published[name] = seq
            except Exception as e:  # noqa: BLE001 - counted, the run goes on
                self.publish_errors += 1
                self.note(f"{name}: publish #{seq}: {e!r}")
                return
            t += 1.0 / self.rate
            await asyncio.sleep(max(0.0, t - time.monotonic()))

    async def caller(self, idx, stop):
        c, name = self.sessions[idx], self.names[idx]
        target = f"soak.healthy.call.{self.names[(idx + 1) % self.n]}"
        window = asyncio.Semaphore(self.window)
        pending = set()

        async def one(seq):
            try:
                r = await c.call(target, name, seq)
                if list(r) == [name, seq]:
                    self.results_ok += 1
                else:
                    self.results_bad += 1
                    self.note(f"{name}: call #{seq} answered {r!r}")
            except Exception as e:  # noqa: BLE001
                self.call_errors += 1
                self.note(f"{name}: call #{seq}: {e!r}")
            finally:
                window.release()

        seq = 0
        t = time.monotonic()
        while not stop.is_set():
            await window.acquire()
            seq += 1
            self.calls_made[name] = seq
            task = asyncio.ensure_future(one(seq))
            pending.add(task)
            task.add_done_callback(pending.discard)
            t += 1.0 / self.rate
            await asyncio.sleep(max(0.0, t - time.monotonic()))
        if pending:
            await asyncio.wait(pending, timeout=30)

    def finish(self):
        expected = sum(self.published.values())
        received = 0
        lost = 0
        for s in self.names:
            for p in self.names:
                received += self.ev_count[s][p]
                lost += max(0, self.published[p] - self.ev_count[s][p])
        for c, name in zip(self.sessions, self.names):
            if c.gone.done() or not c.is_attached():
                self.lost_sessions.append(name)
        calls = sum(self.calls_made.values())
        return {
            "sessions": self.n,
            "kinds": [c.kind for c in self.sessions],
            "shards": [c.shard for c in self.sessions],
            "published": expected,
            "publish_errors": self.publish_errors,
            "events_expected": expected * self.n,
            "events_received": received,
            "events_lost": lost,
            "events_gaps": self.ev_gaps,
            "events_reordered": self.ev_reordered,
            "events_duplicated": self.ev_duplicated,
            "calls": calls,
            "results_ok": self.results_ok,
            "results_bad": self.results_bad,
            "call_errors": self.call_errors,
            "calls_unanswered": calls - self.results_ok - self.results_bad - self.call_errors,
            "invocations_reordered": self.inv_reordered,
            "invocations_duplicated": self.inv_duplicated,
            "sessions_lost": self.lost_sessions,
            "error_samples": self.error_samples,
        }


class Counter(dict):
    def add(self, key, n=1):
        self[key] = self.get(key, 0) + n


async def churn(router, abclient, rw, stop, rate, counts: Counter):
    """Sessions that come, do a little, and go."""
    kinds = itertools.cycle(abclient.TCP_KINDS)
    seq = itertools.count()
    running = set()

    async def one(i, kind):
        tag = f"{os.getpid()}x{i}"
        topic = f"soak.churn.t{i % 10}"
        proc = f"soak.churn.p{tag}"
        abrupt = i % 5 == 4
        c = None
        try:
            if i % 2 == 0:
                c = await abclient.connect(router, kind)
                await c.subscribe(lambda *a: None, topic)
                await c.register(lambda x: x, proc)
                c.publish(topic, i)
                r = await c.call(proc, i)
                assert r == i, r
                if abrupt:
                    c._transport.close()
                else:
                    await c.close()
            else:
                c = await rw.raw_session(router, kind)
                await c.subscribe(topic)
                await c.register(proc)
                await c.send([rw.PUBLISH, c.request_id(), {}, topic, [i]])
                if not abrupt:
                    await c.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
                    await c.recv_until(lambda m: m[0] == rw.GOODBYE, timeout=10)
                c.close()
            c = None
            counts.add("abrupt" if abrupt else "goodbye")
            counts.add("ok")
        except Exception as e:  # noqa: BLE001
            counts.add("failed")
            samples = counts.setdefault("error_samples", [])
            if len(samples) < 10:
                samples.append(f"{kind}: {e!r}")
        finally:
            if c is not None:  # failed half-way: do not leave it connected
                with contextlib.suppress(Exception):
                    if isinstance(c, abclient.Client):
                        await c.close()
                    else:
                        c.close()

    t = time.monotonic()
    while not stop.is_set():
        if len(running) < 8:
            task = asyncio.ensure_future(asyncio.wait_for(one(next(seq), next(kinds)), 30))
            running.add(task)
            task.add_done_callback(running.discard)
        else:
            counts.add("skipped_busy")
        counts.add("started")
        t += 1.0 / rate
        await asyncio.sleep(max(0.0, t - time.monotonic()))
    if running:
        await asyncio.wait(running, timeout=40)


async def slow_consumers(router, abclient, rw, stop, n, hold, feed_rate, feed_bytes, counts: Counter):
    """N subscribers at a time that stop reading a flooded topic, each for HOLD seconds."""
    topic = "soak.slow.flood"
    feeder = await abclient.connect(router, "rs-msgpack")
    blob = "s" * feed_bytes

    async def feed():
        t = time.monotonic()
        while not stop.is_set():
            try:
                feeder.publish(topic, blob)
                counts.add("feed_publications")
            except Exception:  # noqa: BLE001
                counts.add("feed_errors")
            t += 1.0 / feed_rate
            await asyncio.sleep(max(0.0, t - time.monotonic()))

    async def one(i):
        try:
            c = await rw.RawSocketConn.open(port=router.port, serializer=["msgpack", "json", "cbor"][i % 3],
                                            rcvbuf=4096)
            await c.hello()
            await c.subscribe(topic)
        except Exception as e:  # noqa: BLE001
            counts.add("setup_failed")
            counts.setdefault("error_samples", []).append(repr(e))
            return
        counts.add("started")
        # Stop reading; wait; then read what is there and see whether the router closed us.
        end = time.monotonic() + hold
        while not stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(0.5)
        if stop.is_set() and time.monotonic() < end:
            counts.add("cut_short_by_run_end")
            c.close()
            return
        # The router discards a slow consumer's queue when it closes it, so its GOODBYE is
        # usually not among what is left to read: the EOF is the signal.
        try:
            got, closed = await c.recv_closed(timeout=10)
            counts.add("closed_by_router")
            if any(m and m[0] == rw.GOODBYE and m[2] == "shardbar.close.slow_consumer" for m in got):
                counts.add("goodbye_slow_consumer_read")
        except asyncio.TimeoutError:
            counts.add("not_closed")
        except Exception as e:  # noqa: BLE001
            counts.add("read_failed")
            samples = counts.setdefault("error_samples", [])
            if len(samples) < 5:
                samples.append(repr(e))
        finally:
            c.close()

    feeding = asyncio.ensure_future(feed())
    running = set()
    i = 0
    while not stop.is_set():
        while len(running) < n and not stop.is_set():
            task = asyncio.ensure_future(one(i))
            i += 1
            running.add(task)
            task.add_done_callback(running.discard)
            await asyncio.sleep(hold / max(1, n))  # stagger them
        await asyncio.sleep(0.5)
    await asyncio.wait({feeding, *running}, timeout=30) if running else await feeding
    await feeder.close()


async def hostile(router, rw, stop, rate, counts: Counter):
    """Misbehaving peers, a few a second, each bounded; outcome per case counted."""
    port = router.port

    async def bad_handshake_serializer():
        try:
            c = await rw.RawSocketConn.open(port=port, handshake=bytes([0x7F, 0xF9, 0, 0]))
            c.close()
            return "accepted"
        except rw.HandshakeRefused:
            return "refused"

    async def bad_magic():
        try:
            c = await rw.RawSocketConn.open(port=port, handshake=b"\x00\x01\x02\x03")
            c.close()
            return "accepted"
        except (rw.HandshakeRefused, rw.Closed):
            return "refused"

    async def garbage_frame():
        c = await rw.RawSocketConn.open(port=port, serializer=random.choice(["msgpack", "json", "cbor"]))
        await c.send_payload(os.urandom(random.randint(1, 300)))
        _, closed = await c.recv_closed(timeout=10)
        c.close()
        return "closed"

    async def oversized_hello():
        c = await rw.RawSocketConn.open(port=port, serializer="json", len_exp=15)
        big = {"roles": rw.CLIENT_ROLES, "junk": "j" * 100_000}
        with contextlib.suppress(rw.Closed):
            await c.send([rw.HELLO, "realm1", big])
        await c.recv_closed(timeout=10)
        c.close()
        return "closed"

    async def violation_after_welcome():
        c = await rw.raw_session(router, random.choice(["rs-json", "rs-msgpack", "ws-cbor", "ws-json"]))
        await c.subscribe(Healthy.TOPIC)  # a subscription that must be freed with the session
        await c.send([rw.SUBSCRIBE, c.request_id(), {}, 12345])  # topic not a string
        got, closed = await c.recv_closed(timeout=10)
        c.close()
        return "aborted" if any(m[0] == rw.ABORT for m in got) else "closed"

    async def welcome_from_client():
        c = await rw.raw_session(router, "rs-msgpack")
        await c.register(f"soak.hostile.p{random.getrandbits(40)}")
        await c.send([rw.WELCOME, 1, {}])
        got, closed = await c.recv_closed(timeout=10)
        c.close()
        return "aborted" if any(m[0] == rw.ABORT for m in got) else "closed"

    async def ws_unmasked():
        c = await rw.WebSocketConn.open(port, "json")
        await c.send_raw(rw.ws_frame(rw.OP_TEXT, b"[1]", mask=False))
        with contextlib.suppress(rw.Closed):
            await c.recv_closed(timeout=10)
        c.close()
        return "closed"

    async def http_garbage():
        req = b"GET /" + os.urandom(8).hex().encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        status, _, _ = await rw.http_exchange(port, req)
        return f"http {status}"

    async def silent_connection():
        # Half-open from the router's view: a TCP connection that never says anything; the
        # handshake deadline (10 s) closes it.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            data = await asyncio.wait_for(reader.read(1), 25)
            return "closed by router" if not data else "answered"
        except asyncio.TimeoutError:
            return "still open"
        finally:
            writer.close()

    async def session_dropped():
        c = await rw.raw_session(router, random.choice(["rs-cbor", "ws-msgpack"]))
        await c.subscribe(Healthy.TOPIC)
        await c.register(f"soak.hostile.p{random.getrandbits(40)}")
        c.close()  # no GOODBYE
        return "dropped"

    cases = [bad_handshake_serializer, bad_magic, garbage_frame, oversized_hello, violation_after_welcome,
             welcome_from_client, ws_unmasked, http_garbage, silent_connection, session_dropped]

    async def run(case):
        try:
            outcome = await asyncio.wait_for(case(), 30)
        except Exception as e:  # noqa: BLE001
            outcome = f"error {type(e).__name__}"
        counts.add(f"{case.__name__}: {outcome}")
        counts.add("run")

    running = set()
    order = itertools.cycle(cases)
    t = time.monotonic()
    while not stop.is_set():
        task = asyncio.ensure_future(run(next(order)))
        running.add(task)
        task.add_done_callback(running.discard)
        t += 1.0 / rate
        await asyncio.sleep(max(0.0, t - time.monotonic()))
    if running:
        await asyncio.wait(running, timeout=40)


async def load_main(a):
    abclient, rw = interop()
    router = types.SimpleNamespace(port=a.port, unix_path=None)
    stop = asyncio.Event()
    healthy = Healthy(a.healthy, a.healthy_rate, a.healthy_window)
    await healthy.start(router, abclient)
    churn_counts, slow_counts, hostile_counts = Counter(), Counter(), Counter()
    tasks = []
    for i in range(healthy.n):
        tasks.append(asyncio.ensure_future(healthy.publisher(i, stop)))
        tasks.append(asyncio.ensure_future(healthy.caller(i, stop)))
    others = [
        asyncio.ensure_future(churn(router, abclient, rw, stop, a.churn_rate, churn_counts)),
        asyncio.ensure_future(slow_consumers(router, abclient, rw, stop, a.slow, a.slow_hold, a.slow_feed_rate,
                                             a.slow_feed_bytes, slow_counts)),
        asyncio.ensure_future(hostile(router, rw, stop, a.hostile_rate, hostile_counts)),
    ]
    t_end = time.monotonic() + a.seconds
    while time.monotonic() < t_end:
        await asyncio.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
        for t in others:
            if t.done() and t.exception() is not None:
                raise t.exception()
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    # Events still in flight after the last acknowledged publication: wait until every
    # subscriber has everything (or 15 s).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if all(healthy.ev_count[s][p] >= healthy.published[p] for s in healthy.names for p in healthy.names):
            break
        await asyncio.sleep(0.2)
    await asyncio.wait(others, timeout=90)
    result = {
        "seconds": a.seconds,
        "slow_hold": a.slow_hold,
        "healthy": healthy.finish(),
        "churn": dict(churn_counts),
        "slow": dict(slow_counts),
        "hostile": dict(sorted(hostile_counts.items())),
    }
    await asyncio.gather(*(c.close() for c in healthy.sessions), return_exceptions=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


def cmd_load(a):
    asyncio.run(load_main(a))


# ---------------------------------------------------------------- settle


def parse_metrics(text: str):
    """Prometheus text → {name: total over all label sets}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0) + float(value)
    return out


# What must be zero once every client has gone: live state, not counters.
LEFT_OVER = ["shardbar_connections_admitted", "shardbar_connections", "shardbar_handshakes", "shardbar_sessions",
             "shardbar_auth_pending", "shardbar_pending_out_bytes", "shardbar_subscriptions",
             "shardbar_registrations", "shardbar_mesh_outbox_messages", "shardbar_testaments_stored",
             "shardbar_authorizer_pending", "shardbar_retained_bytes"]


def left_over(m):
    got = {name: int(m.get(name, 0)) for name in LEFT_OVER}
    # No gauge counts calls in flight; a call that was neither answered nor failed shows here.
    got["calls unanswered (calls_total - ok - error)"] = int(
        m.get("shardbar_calls_total", 0) - m.get("shardbar_calls_ok_total", 0) - m.get("shardbar_calls_error_total", 0))
    return got


def cmd_settle(a):
    deadline = time.monotonic() + a.timeout
    text = ""
    while True:
        try:
            with urllib.request.urlopen(a.metrics, timeout=10) as r:
                text = r.read().decode()
        except OSError as e:
            text = f"# scrape failed: {e}\n"
        if not any(left_over(parse_metrics(text)).values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with open(a.out, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- report


def load_samples(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append({"t": float(r["t_s"]), "rss": int(r["rss_kib"]), "fds": int(r["open_files"]),
                         "threads": int(r["threads"]), "cpu": float(r["cpu_pct"]) if r["cpu_pct"] else None,
                         "load": float(r["loadavg1"]),
                         "wait": float(r["runq_wait_pct"]) if r.get("runq_wait_pct") else None})
    return rows


def loadgen_totals(work):
    keys = ["sent_total", "expected_total", "received_total", "calls_unanswered", "sessions_dropped",
            "protocol_errors"]
    out = {}
    for kind in ("fanout", "rpc"):
        tot = {k: 0 for k in keys}
        tot.update(runs=0, gap_lost=0, tail_lost=0, reordered=0, failed_runs=0, missing_reports=0)
        rcs = {}
        rc_file = os.path.join(work, "loadgen", f"{kind}.rc")
        if os.path.exists(rc_file):
            for line in open(rc_file):
                i, rc = line.split()
                rcs[i] = int(rc)
        for i, rc in rcs.items():
            tot["runs"] += 1
            if rc != 0:
                tot["failed_runs"] += 1
            path = os.path.join(work, "loadgen", f"{kind}-{i}.json")
            if not os.path.exists(path):
                tot["missing_reports"] += 1
                continue
            d = json.load(open(path))
            for k in keys:
                tot[k] += d.get(k) or 0
            for k in ("gap_lost", "tail_lost", "reordered"):
                tot[k] += d["integrity"].get(k, 0)
        out[kind] = tot
    return out


def span(seconds):
    return f"{seconds / 60:g} min" if seconds % 60 == 0 else f"{seconds:g} s"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def svg_plot(rows, warmup, load_end, title, rss_limit_kib=None):
    """Panels sharing the time axis: RSS (MiB, with a dashed line at ``rss_limit_kib``, the drift
    target above the RSS at the end of warm-up), open files, and the router's CPU (with the time
    its threads waited for a CPU, when the samples have it)."""
    cpu = [("cpu", 1, "#7a3fb0")]
    if any(r["wait"] is not None for r in rows):
        cpu.append(("wait", 1, "#e08000"))
    panels = [("router RSS (MiB); dashed orange: end of warm-up + 5 %", [("rss", 1 / 1024, "#1f5fbf")],
               rss_limit_kib / 1024 if rss_limit_kib else None),
              ("router open files", [("fds", 1, "#2a8a2a")], None),
              ("router CPU, % of one core" + ("; orange: its threads waiting for a CPU" if len(cpu) > 1 else ""),
               cpu, None)]
    W, left, right, top, gap, ph = 900, 70, 20, 50, 45, 140
    H = top + len(panels) * (ph + gap) + 5
    tmax = max(r["t"] for r in rows) or 1

    def x(t):
        return left + (W - left - right) * t / tmax

    def panel(y0, label, series, mark):
        vals = [r[key] * scale for key, scale, _ in series for r in rows if r[key] is not None]
        vals += [mark] if mark is not None else []
        lo, hi = min(vals), max(vals)
        span = (hi - lo) or 1.0
        lo, hi = lo - 0.1 * span, hi + 0.1 * span

        def y(v):
            return y0 + ph - ph * (v - lo) / (hi - lo)

        out = [f'<rect x="{left}" y="{y0}" width="{W - left - right}" height="{ph}" fill="none" stroke="#999"/>',
               f'<rect x="{x(0):.1f}" y="{y0}" width="{x(warmup) - x(0):.1f}" height="{ph}" fill="#eee"/>',
               f'<line x1="{x(load_end):.1f}" y1="{y0}" x2="{x(load_end):.1f}" y2="{y0 + ph}" stroke="#c00" '
               f'stroke-dasharray="4 3"/>',
               f'<text x="{left - 8}" y="{y0 - 8}" font-size="13" text-anchor="start">{label}</text>']
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.1f}</text>')
            out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{W - right}" y2="{y(v):.1f}" stroke="#ddd"/>')
        if mark is not None:
            out.append(f'<line x1="{left}" y1="{y(mark):.1f}" x2="{W - right}" y2="{y(mark):.1f}" stroke="#e08000" '
                       f'stroke-dasharray="6 4"/>')
        for key, scale, colour in series:
            pts = " ".join(f"{x(r['t']):.1f},{y(r[key] * scale):.1f}" for r in rows if r[key] is not None)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.2"/>')
        return out

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" font-size="15" text-anchor="middle">{title}</text>']
    for i, (label, series, mark) in enumerate(panels):
        parts += panel(top + i * (ph + gap), label, series, mark)
    axis_y = top + len(panels) * (ph + gap) - gap
    step = 60 if tmax <= 900 else 300
    for sec in range(0, int(tmax) + 1, step):
        parts.append(f'<text x="{x(sec):.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle">{sec // 60}</text>')
    parts.append(f'<text x="{W / 2}" y="{axis_y + 34}" font-size="12" text-anchor="middle">minutes '
                 f'(grey: warm-up; dashed red: load stopped)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def cmd_report(a):
    work = a.work
    rows = load_samples(os.path.join(work, "samples.csv"))
    load = json.load(open(os.path.join(work, "load.json"))) if os.path.exists(os.path.join(work, "load.json")) \
        else None
    meta = json.load(open(os.path.join(work, "run.json")))
    metrics_text = open(os.path.join(work, "metrics-end.txt")).read() \
        if os.path.exists(os.path.join(work, "metrics-end.txt")) else ""
    m = parse_metrics(metrics_text)
    warm, dur = a.warmup, a.seconds
    during = [r for r in rows if r["t"] <= dur]
    after_warm = [r for r in during if r["t"] >= warm]
    at_warm = min(during, key=lambda r: abs(r["t"] - warm))
    warm_tail = [r["rss"] for r in during if warm - 60 <= r["t"] <= warm]
    last_min = [r["rss"] for r in during if r["t"] >= dur - 60]
    peak = max(after_warm, key=lambda r: r["rss"])
    drift_max = 100.0 * (peak["rss"] - at_warm["rss"]) / at_warm["rss"]
    drift_med = 100.0 * (median(last_min) - median(warm_tail)) / median(warm_tail)
    # Sustained growth without single-second peaks: the highest 60-s rolling median after warm-up.
    rss_after = [r["rss"] for r in after_warm]
    rolling = [median(rss_after[i:i + 60]) for i in range(0, max(1, len(rss_after) - 59))]
    drift_roll = 100.0 * (max(rolling) - median(warm_tail)) / median(warm_tail)
    cpu = [r["cpu"] for r in after_warm if r["cpu"] is not None]
    cpu_sorted = sorted(cpu)
    cpu_p95 = cpu_sorted[int(0.95 * (len(cpu_sorted) - 1))] if cpu_sorted else float("nan")
    idle = [r for r in rows if r["t"] > dur]
    lg = loadgen_totals(work)
    left = left_over(m) if metrics_text else {"metrics": "not scraped"}
    router_log = open(os.path.join(work, "shardbar.log"), errors="replace").read()
    panics = router_log.count("panicked")
    exit_code = meta.get("router_exit")

    h = load["healthy"] if load else None
    fails = []
    # Drift is sustained growth: one-minute medians (longer than the slow consumers' cycle,
    # whose bounded queues swing RSS for seconds at a time) against the end of warm-up. The
    # single-second peak is reported beside it.
    if drift_roll >= RSS_DRIFT_MAX or drift_med >= RSS_DRIFT_MAX:
        fails.append(f"RSS drift {max(drift_roll, drift_med):.1f} % ≥ {RSS_DRIFT_MAX} %")
    if h is None:
        fails.append("no load report (the driver failed)")
    else:
        for k in ("events_lost", "events_gaps", "events_reordered", "events_duplicated", "publish_errors",
                  "results_bad", "call_errors", "calls_unanswered", "invocations_reordered",
                  "invocations_duplicated"):
            if h[k]:
                fails.append(f"healthy {k} = {h[k]}")
        if h["sessions_lost"]:
            fails.append(f"healthy sessions lost: {h['sessions_lost']}")
    for kind, t in lg.items():
        lost = t["gap_lost"] + t["tail_lost"]
        if lost or t["reordered"] or t["sessions_dropped"] or t["protocol_errors"] or t["calls_unanswered"]:
            fails.append(f"loadgen {kind}: lost {lost}, reordered {t['reordered']}, dropped sessions "
                         f"{t['sessions_dropped']}, protocol errors {t['protocol_errors']}, unanswered calls "
                         f"{t['calls_unanswered']}")
        if t["runs"] == 0:
            fails.append(f"loadgen {kind}: no run")
    if not metrics_text or "scrape failed" in metrics_text:
        fails.append("/metrics not scraped at the end")
    else:
        leaks = {k: v for k, v in left.items() if v}
        if leaks:
            fails.append(f"left over in /metrics: {leaks}")
        if m.get("shardbar_encode_failures_total", 0):
            fails.append(f"encode_failures_total = {int(m['shardbar_encode_failures_total'])}")
    if panics:
        fails.append(f"{panics} panic(s) in the router log")
    if meta.get("router_died"):
        fails.append("the router died during the run")
    if exit_code not in (0, None):
        fails.append(f"router exit status {exit_code} on SIGTERM")
    verdict = "PASS" if not fails else "FAIL"

    mib = 1 / 1024
    lines = []
    lines.append(f"Run {meta['stamp']}: {meta['date']}, {span(dur)} of load ({span(warm)} warm-up), "
                 f"{meta['machine']}; router `{meta['shardbar']}` (2 shards), command `{a.command}`.")
    lines.append("")
    lines.append(f"**{verdict}**" + ("" if not fails else ": " + "; ".join(fails)))
    lines.append("")
    lines.append("| figure | value | target |")
    lines.append("|---|---|---|")
    lines.append(f"| RSS at the end of warm-up (t = {at_warm['t']:.0f} s) | {at_warm['rss'] * mib:.1f} MiB | |")
    lines.append(f"| max RSS after warm-up (t = {peak['t']:.0f} s) | {peak['rss'] * mib:.1f} MiB | |")
    lines.append(f"| **RSS drift**: highest 60-s rolling median of RSS after warm-up vs the last minute of "
                 f"warm-up (sustained growth) | {max(rolling) * mib:.1f} vs {median(warm_tail) * mib:.1f} MiB "
                 f"(**{drift_roll:+.1f} %**) | < {RSS_DRIFT_MAX:g} % |")
    lines.append(f"| **RSS drift**: median of the last minute of load vs the last minute of warm-up | "
                 f"{median(last_min) * mib:.1f} vs {median(warm_tail) * mib:.1f} MiB (**{drift_med:+.1f} %**) "
                 f"| < {RSS_DRIFT_MAX:g} % |")
    lines.append(f"| single-second peak after warm-up vs the end-of-warm-up sample (the slow consumers' bounded "
                 f"queues, seconds at a time) | {peak['rss'] * mib:.1f} vs {at_warm['rss'] * mib:.1f} MiB "
                 f"({drift_max:+.1f} %) | (for reference) |")
    lines.append(f"| RSS at start / at the end of load / idle after load | {rows[0]['rss'] * mib:.1f} / "
                 f"{during[-1]['rss'] * mib:.1f} / {(idle[-1]['rss'] * mib) if idle else float('nan'):.1f} MiB | |")
    lines.append(f"| open files at start / end of warm-up / end of load / idle after load | {rows[0]['fds']} / "
                 f"{at_warm['fds']} / {during[-1]['fds']} / {idle[-1]['fds'] if idle else '–'} | |")
    lines.append(f"| router CPU after warm-up (% of one core): mean / p95 / max | {statistics.mean(cpu):.0f} / "
                 f"{cpu_p95:.0f} / {max(cpu):.0f} | |")
    waits = [r["wait"] for r in after_warm if r["wait"] is not None]
    if waits:
        lines.append(f"| router threads runnable but waiting for a CPU after warm-up (% of one core, schedstat): "
                     f"mean / max | {statistics.mean(waits):.0f} / {max(waits):.0f} | |")
    # What the machine was doing in the 30 s up to the RSS peak: a router starved of CPU queues
    # what it cannot write yet.
    near = [r for r in after_warm if peak["t"] - 30 <= r["t"] <= peak["t"]]
    near_cpu = [r["cpu"] for r in near if r["cpu"] is not None]
    near_wait = [r["wait"] for r in near if r["wait"] is not None]
    lines.append(f"| in the 30 s up to the RSS peak: router CPU mean / min (% of one core); load average"
                 + ("; CPU wait mean" if near_wait else "") + f" | {statistics.mean(near_cpu):.0f} / "
                 f"{min(near_cpu):.0f}; {max(r['load'] for r in near):.1f}"
                 + (f"; {statistics.mean(near_wait):.0f} %" if near_wait else "") + " | |")
    loads = [r["load"] for r in during]
    lines.append(f"| machine load average (1 min) during the run: median / max | {median(loads):.1f} / "
                 f"{max(loads):.1f} | |")
    if h:
        lines.append(f"| healthy sessions ({h['sessions']}: {', '.join(h['kinds'])}; shards {h['shards']}) | "
                     f"{len(h['sessions_lost'])} lost | 0 lost |")
        lines.append(f"| healthy events: expected / received / lost / reordered / duplicated | "
                     f"{h['events_expected']} / {h['events_received']} / {h['events_lost']} / "
                     f"{h['events_reordered']} / {h['events_duplicated']} | 0 lost, 0 reordered |")
        lines.append(f"| healthy calls: made / correct results / errors / unanswered; invocations out of order | "
                     f"{h['calls']} / {h['results_ok']} / {h['call_errors']} / {h['calls_unanswered']}; "
                     f"{h['invocations_reordered']} | all answered, in order |")
    for kind, t in lg.items():
        what = "deliveries" if kind == "fanout" else "calls"
        lines.append(f"| loadgen {kind}: runs (non-zero exit) / {what} expected / received / lost / reordered / "
                     f"dropped sessions | {t['runs']} ({t['failed_runs']}) / {t['expected_total']} / "
                     f"{t['received_total']} / {t['gap_lost'] + t['tail_lost']} / {t['reordered']} / "
                     f"{t['sessions_dropped']} | 0 lost, 0 reordered |")
    if load:
        c, s = load["churn"], load["slow"]
        lines.append(f"| churn sessions: done (GOODBYE / dropped) / failed | {c.get('ok', 0)} ({c.get('goodbye', 0)} "
                     f"/ {c.get('abrupt', 0)}) / {c.get('failed', 0)} | |")
        lines.append(f"| slow consumers: started / closed by the router / not closed after {load['slow_hold']:g} s / cut short "
                     f"by the end of the run | {s.get('started', 0)} / {s.get('closed_by_router', 0)} / "
                     f"{s.get('not_closed', 0)} / {s.get('cut_short_by_run_end', 0)} | (counted, not loss) |")
        lines.append(f"| `shardbar_slow_consumer_disconnects_total` | "
                     f"{int(m.get('shardbar_slow_consumer_disconnects_total', 0))} | |")
        lines.append(f"| hostile peers run | {load['hostile'].get('run', 0)} | |")
    if metrics_text:
        lines.append(f"| left over in `/metrics` after the load ({', '.join(k.replace('shardbar_', '') for k in left)}) "
                     f"| {sum(left.values())} | 0 |")
        lines.append(f"| `/metrics` totals: sessions opened / connections opened / protocol violations / "
                     f"hello timeouts | {int(m.get('shardbar_sessions_opened_total', 0))} / "
                     f"{int(m.get('shardbar_connections_opened_total', 0))} / "
                     f"{int(m.get('shardbar_protocol_violations_total', 0))} / "
                     f"{int(m.get('shardbar_hello_timeouts_total', 0))} | |")
    lines.append(f"| router log: panics; exit status on SIGTERM | {panics}; {exit_code} | 0; 0 |")
    if load:
        lines.append("")
        lines.append("Hostile peers by case and outcome: " + ", ".join(
            f"{k} × {v}" for k, v in load["hostile"].items() if k != "run") + ".")
        samples = (h or {}).get("error_samples") or []
        if samples:
            lines.append("")
            lines.append("Healthy-session faults (first ones): " + "; ".join(samples))
    body = "\n".join(lines) + "\n"

    svg = svg_plot(rows, warm, dur, f"shardbar soak {meta['stamp']}: {span(dur)} of mixed load",
                   at_warm["rss"] * (1 + RSS_DRIFT_MAX / 100))
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg)
    with open(os.path.join(work, "plot.svg"), "w") as f:
        f.write(svg)
    with open(os.path.join(work, "report.md"), "w") as f:
        f.write(body)
    print(body)
    if a.results:
        write_section(a.results, body, a.svg, section_intro(meta))
    return 0 if verdict == "PASS" else 1


SECTION = "## Soak"


def section_intro(meta):
    L = meta["load"]
    return (
        "Written by `bench/soak.sh` (see its header and bench/README.md): one shardbar (2 shards,\n"
        f"127.0.0.1) under mixed load for the whole run: `loadgen fanout` 1 → {L['fanout_subs']} at "
        f"{L['fanout_rate']} publications/s and\n`loadgen rpc` {L['rpc_callers']} callers at {L['rpc_rate']} "
        f"calls/s each ({L['loadgen_run']}-s runs back to back, alternating RawSocket/WebSocket\nand the three "
        f"serializers), {L['healthy']} healthy Autobahn|Python sessions publishing sequenced events to each "
        f"other and\ncalling each other ({L['healthy_rate']}/s each), {L['churn_rate']} sessions/s joining, "
        f"subscribing, registering and leaving, {L['slow']} slow consumers\nat a time (`pending_bytes_max` = "
        f"1 MiB in this config), {L['hostile_rate']} hostile peers/s; the router's VmRSS, open files and CPU\n"
        "read from /proc once a second. Every figure below comes from that run's work directory\n"
        "(`bench/work/<stamp>-soak/`).\n\n")


def write_section(path, body, svg, intro):
    rel = os.path.relpath(svg, os.path.dirname(os.path.abspath(path))) if svg else None
    text = open(path).read() if os.path.exists(path) else ""
    section = f"{SECTION}\n\n{intro}" + (f"![RSS, open files and CPU over the run]({rel})\n\n" if rel else "") + body
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start + 1] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("load")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--healthy", type=int, default=4)
    s.add_argument("--healthy-rate", type=float, default=20, help="publications and calls/s per healthy session")
    s.add_argument("--healthy-window", type=int, default=4, help="calls outstanding per healthy session")
    s.add_argument("--churn-rate", type=float, default=3, help="sessions/s that come and go")
    s.add_argument("--slow", type=int, default=2, help="slow consumers at a time")
    s.add_argument("--slow-hold", type=float, default=40, help="seconds a slow consumer does not read")
    s.add_argument("--slow-feed-rate", type=float, default=50, help="publications/s on the flooded topic")
    s.add_argument("--slow-feed-bytes", type=int, default=8192)
    s.add_argument("--hostile-rate", type=float, default=2, help="hostile peers/s")
    s = sub.add_parser("settle")
    s.add_argument("--metrics", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--timeout", type=float, default=15)
    s = sub.add_parser("report")
    s.add_argument("--work", required=True)
    s.add_argument("--warmup", type=float, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--results")
    s.add_argument("--svg")
    s.add_argument("--command", default="bench/soak.sh")
    a = p.parse_args()
    if a.cmd == "sample":
        cmd_sample(a)
    elif a.cmd == "load":
        cmd_load(a)
    elif a.cmd == "settle":
        cmd_settle(a)
    else:
        sys.exit(cmd_report(a))


if __name__ == "__main__":
    main()
