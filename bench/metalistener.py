"""A session meta-event listener for bench/meta.sh: an Autobahn|Python (asyncio) component
that joins REALM anonymously, subscribes to ``wamp.session.on_join`` and
``wamp.session.on_leave`` and counts the events it gets.

It prints ``ready`` once both subscriptions are in place, and writes
``joins N leaves M last_event_unix T`` to --counts FILE (replaced atomically) every
--write-every seconds, so the benchmark can wait until the counts reach
the storm's size. It runs at most --max-seconds, and on SIGTERM/SIGINT (or at that bound), or
when the router closes its session, it writes the counts a last time, prints them as
``counted joins N leaves M`` and exits (status 1 if the session was lost before the stop).

    python bench/metalistener.py --url rs://127.0.0.1:8080 --realm meta \
        --counts /tmp/counts --max-seconds 900

Runs with the Python that bench/compare.sh installs Crossbar into (bench/.venv: Autobahn,
msgpack). The ``on_leave`` payload differs by router (Crossbar: ``[session]``; the spec and
shardbar: ``[session, authid, authrole]``): only the events are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

import txaio

txaio.use_asyncio()

from autobahn.asyncio.component import Component  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="rs://HOST:PORT (RawSocket, MessagePack) or ws://HOST:PORT/PATH")
    p.add_argument("--realm", default="realm1")
    p.add_argument("--counts", required=True, help="file the counts are written to")
    p.add_argument("--write-every", type=float, default=0.2, help="seconds between writes of the counts file")
    p.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long in any case")
    return p.parse_args()


def transport(url: str) -> dict:
    if url.startswith("rs://"):
        return {"type": "rawsocket", "url": url, "serializer": "msgpack", "max_retries": 0}
    return {"type": "websocket", "url": url, "serializers": ["msgpack", "json"], "max_retries": 0}


async def main() -> int:
    a = parse_args()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    n = {"joins": 0, "leaves": 0, "last": 0.0}
    lost: list[str] = []

    def write_counts() -> None:
        tmp = a.counts + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"joins {n['joins']} leaves {n['leaves']} last_event_unix {n['last']:.6f}\n")
        os.replace(tmp, a.counts)

    async def writer() -> None:
        while True:
            await asyncio.sleep(a.write_every)
            write_counts()

    def on_join(*_args, **_kwargs) -> None:
        n["joins"] += 1
        n["last"] = time.time()

    def on_leave(*_args, **_kwargs) -> None:
        n["leaves"] += 1
        n["last"] = time.time()

    async def joined(session, details):
        try:
            await session.subscribe(on_join, "wamp.session.on_join")
            await session.subscribe(on_leave, "wamp.session.on_leave")
        except Exception as e:  # noqa: BLE001 — reported, then the run stops
            lost.append(f"subscribe failed: {e}")
            stop.set()
            return
        write_counts()
        print(f"subscribed to wamp.session.on_join and on_leave in {a.realm} as session {details.session}", flush=True)
        print("ready", flush=True)

    def left(_session, details):
        if not stop.is_set():
            lost.append(f"left the realm: {getattr(details, 'reason', details)}")
            stop.set()

    # No authentication: HELLO without authmethods, an anonymous session on both routers.
    c = Component(transports=[transport(a.url)], realm=a.realm)
    c.on("join", joined)
    c.on("leave", left)
    task = asyncio.ensure_future(c.start(loop))
    periodic = asyncio.ensure_future(writer())
    try:
        await asyncio.wait_for(stop.wait(), timeout=a.max_seconds)
    except asyncio.TimeoutError:
        print(f"metalistener: --max-seconds {a.max_seconds:g} reached", flush=True)
    periodic.cancel()
    write_counts()
    print(f"counted joins {n['joins']} leaves {n['leaves']}", flush=True)
    # Leaving: the component's reconnect check complains once its transport closes.
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        await asyncio.wait_for(c.stop(), timeout=2)
    except Exception:  # noqa: BLE001 — leaving anyway
        pass
    task.cancel()
    if lost:
        print("metalistener: " + "; ".join(lost), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
