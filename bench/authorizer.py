"""A dynamic authorizer for bench/authz.sh: an Autobahn|Python (asyncio) component that
joins one or more realms with ticket authentication (as a role allowed to register the
procedure) and registers PROCEDURE in each, answering Crossbar's authorizer call
``(session_details, uri, action, options)`` with ``{"allow": ..., "disclose": false, "cache": ...}``.

It allows an action when the URI starts with one of --allow-prefix (default ``loadgen.``,
every URI loadgen uses) and denies anything else; ``cache`` is true in the realms given with
``--cached-realm``, false in those given with ``--realm``. It prints ``ready`` once the
procedure is registered in every realm, runs at most --max-seconds, and on SIGTERM/SIGINT (or
at that bound) prints how many calls it answered per realm and exits.

    AUTHORIZER_TICKET=... python bench/authorizer.py --url rs://127.0.0.1:8080 \
        --authid authorizer --realm dynamic --cached-realm cached --max-seconds 900

Runs with the Python that bench/compare.sh installs Crossbar into (bench/.venv: Autobahn,
msgpack). Only for loopback benchmarks: the ticket comes from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import txaio

txaio.use_asyncio()

from autobahn.asyncio.component import Component  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="rs://HOST:PORT (RawSocket, MessagePack) or ws://HOST:PORT/PATH")
    p.add_argument("--authid", default="authorizer")
    p.add_argument("--procedure", default="bench.authorize")
    p.add_argument("--realm", action="append", default=[], help="answer with cache: false here")
    p.add_argument("--cached-realm", action="append", default=[], help="answer with cache: true here")
    p.add_argument("--allow-prefix", action="append", default=None, help="allowed URI prefix (repeatable)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long in any case")
    a = p.parse_args()
    if not a.realm and not a.cached_realm:
        p.error("give at least one --realm or --cached-realm")
    a.allow_prefix = tuple(a.allow_prefix or ["loadgen."])
    return a


def transport(url: str) -> dict:
    if url.startswith("rs://"):
        return {"type": "rawsocket", "url": url, "serializer": "msgpack", "max_retries": 0}
    return {"type": "websocket", "url": url, "serializers": ["msgpack", "json"], "max_retries": 0}


async def main() -> int:
    a = parse_args()
    ticket = os.environ.get("AUTHORIZER_TICKET")
    if not ticket:
        print("authorizer: set AUTHORIZER_TICKET", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    realms = [(r, False) for r in a.realm] + [(r, True) for r in a.cached_realm]
    answered = {r: 0 for r, _ in realms}
    denied = {r: 0 for r, _ in realms}
    registered: set[str] = set()
    failed: list[str] = []

    def make(realm: str, cache: bool):
        async def authorize(session, uri, action, options=None):
            answered[realm] += 1
            allow = uri.startswith(a.allow_prefix)
            if not allow:
                denied[realm] += 1
            # Crossbar's broker needs `disclose` in a dict answer to a publish (KeyError otherwise).
            return {"allow": allow, "disclose": False, "cache": cache}

        async def joined(session, details):
            try:
                await session.register(authorize, a.procedure)
            except Exception as e:  # noqa: BLE001 — reported, then the run stops
                failed.append(f"{realm}: {e}")
                stop.set()
                return
            registered.add(realm)
            print(f"registered {a.procedure} in {realm} (cache {str(cache).lower()}) as {details.authrole}", flush=True)
            if len(registered) == len(realms):
                print("ready", flush=True)

        return joined

    comps = []
    for realm, cache in realms:
        c = Component(
            transports=[transport(a.url)],
            realm=realm,
            authentication={"ticket": {"authid": a.authid, "ticket": ticket}},
        )
        c.on("join", make(realm, cache))
        comps.append(c)
    tasks = [asyncio.ensure_future(c.start(loop)) for c in comps]
    try:
        await asyncio.wait_for(stop.wait(), timeout=a.max_seconds)
    except asyncio.TimeoutError:
        print(f"authorizer: --max-seconds {a.max_seconds:g} reached", flush=True)
    for realm, cache in realms:
        print(f"answered {realm} {answered[realm]} denied {denied[realm]} cache {str(cache).lower()}", flush=True)
    # Leaving: the components' reconnect checks complain once their transports close.
    loop.set_exception_handler(lambda _loop, _context: None)
    for c in comps:
        try:
            await asyncio.wait_for(c.stop(), timeout=2)
        except Exception:  # noqa: BLE001 — leaving anyway
            pass
    for t in tasks:
        t.cancel()
    if failed:
        print("authorizer: registration failed: " + "; ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
