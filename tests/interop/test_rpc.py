"""Remote procedure calls through the real router: Autobahn|Python callers and callees over
every transport and serializer, on different shards; raw clients where Autobahn cannot send
what the test needs (disclose_me, CANCEL modes, a YIELD after a cancel)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult, RegisterOptions

import rawwamp as rw
from abclient import ALL_KINDS, Pool, other

ARGS = [1, 2**53, -7, 0.5, "ü✓", None, False, [[]], {"d": {"e": [1]}}, b"\x00\xff\x10"]
KWARGS = {"bin": b"\x01\x02", "text": "x", "n": -(2**40), "list": [1.25, "a", None]}


def uid() -> str:
    return uuid.uuid4().hex[:12]


def echo(*args, **kwargs):
    return CallResult(*args, **kwargs)


async def register_within(session, proc, seconds: float):
    """Register ``lambda: "new"``, retrying on procedure_already_exists for at most
    ``seconds`` (for teardown that is legitimately asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await session.register(lambda: "new", proc)
        except ApplicationError as e:
            if e.error != "wamp.error.procedure_already_exists" or loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("callee_kind", ALL_KINDS)
async def test_call_reaches_every_kind_on_the_other_shard(router, callee_kind):
    # Goal: calls from JSON, MessagePack and CBOR callers reach a callee of each
    # transport/serializer on the other shard, and args/kwargs (binary included) come back
    # exactly as sent, both ways through the transcoder.
    # Method: an echo callee of `callee_kind`; three callers of different serializers on the
    # other shard each call it and compare the CallResult.
    proc = f"test.rpc.echo.{uid()}"
    async with Pool(router) as pool:
        s = 0 if callee_kind.startswith("unix") else ALL_KINDS.index(callee_kind) % 2
        callee = await pool.connect(callee_kind, shard=s)
        await callee.register(echo, proc)
        for kind in ("ws-json", "rs-msgpack", "ws-cbor"):
            caller = await pool.connect(kind, shard=other(s))
            res = await caller.call(proc, *ARGS, **KWARGS)
            assert isinstance(res, CallResult), kind
            assert list(res.results) == ARGS, (kind, callee_kind)
            assert res.kwresults == KWARGS, (kind, callee_kind)
            assert await caller.call(proc, "single") == "single"


async def test_no_such_procedure(router):
    # Goal: a call to a procedure nobody registered fails with wamp.error.no_such_procedure,
    # and so does one to a procedure after its callee unregistered.
    # Method: Autobahn caller; register, call, unregister, call again.
    proc = f"test.rpc.nosuch.{uid()}"
    async with Pool(router) as pool:
        caller = await pool.connect("rs-cbor", shard=0)
        with pytest.raises(ApplicationError) as e:
            await caller.call(proc)
        assert e.value.error == "wamp.error.no_such_procedure"
        callee = await pool.connect("ws-msgpack", shard=1)
        reg = await callee.register(lambda: "here", proc)
        assert await caller.call(proc) == "here"
        await reg.unregister()
        with pytest.raises(ApplicationError) as e:
            await caller.call(proc)
        assert e.value.error == "wamp.error.no_such_procedure"


@pytest.mark.parametrize("kind", ["rs-json", "ws-msgpack", "unix-cbor"])
async def test_invalid_procedure_uris(router, kind):
    # Goal: REGISTER of a reserved ("wamp.") or malformed URI and CALL of a malformed URI get
    # ERROR wamp.error.invalid_uri; the session keeps working.
    # Method: raw client; then a good REGISTER and a call to it on the same session.
    async with Pool(router) as pool:
        c = await pool.raw(kind)
        for proc in ("wamp.my.proc", "a..b", "has space", "x#y", ""):
            m = await c.call_expect([rw.REGISTER, c.request_id(), {}, proc], rw.REGISTERED)
            assert m[0] == rw.ERROR and m[4] == "wamp.error.invalid_uri", (proc, m)
        for proc in ("a..b", "has space", ""):
            m = await c.call_expect([rw.CALL, c.request_id(), {}, proc, []], rw.RESULT)
            assert m[0] == rw.ERROR and m[1] == rw.CALL and m[4] == "wamp.error.invalid_uri", (proc, m)
        proc = f"test.rpc.valid.{uid()}"
        await c.register(proc)
        req = c.request_id()
        await c.send([rw.CALL, req, {}, proc, [1]])
        inv, _ = await c.recv_until(lambda m: m[0] == rw.INVOCATION)
        assert inv[4] == [1]
        await c.send([rw.YIELD, inv[1], {}, ["ok"]])
        res, _ = await c.recv_until(lambda m: m[0] == rw.RESULT)
        assert res[1] == req and res[3] == ["ok"]


@pytest.mark.parametrize("callee_kind,caller_kind", [("ws-json", "rs-cbor"), ("rs-msgpack", "ws-json"),
                                                     ("unix-cbor", "ws-msgpack")])
async def test_application_error_with_args_and_kwargs(router, callee_kind, caller_kind):
    # Goal: an application error raised by the callee reaches the caller with its URI, args
    # and kwargs intact across serializers and shards.
    # Method: Autobahn callee raises ApplicationError(uri, *args, **kwargs).
    proc = f"test.rpc.apperr.{uid()}"
    async with Pool(router) as pool:
        callee = await pool.connect(callee_kind, shard=0)

        def fail(x):
            raise ApplicationError("com.example.error.oops", "bad", x, [1, 2], detail={"k": b"\x05"}, n=3)

        await callee.register(fail, proc)
        caller = await pool.connect(caller_kind, shard=1)
        with pytest.raises(ApplicationError) as e:
            await caller.call(proc, 42)
        assert e.value.error == "com.example.error.oops"
        assert list(e.value.args) == ["bad", 42, [1, 2]]
        assert e.value.kwargs == {"detail": {"k": b"\x05"}, "n": 3}


async def test_register_conflicts(router):
    # Goal: a second single registration, or a shared one with a different invocation policy,
    # is refused with wamp.error.procedure_already_exists; so is a session registering the
    # same shared procedure twice. Matching the policy is accepted.
    # Method: Autobahn callees on both shards register the same URI with various policies.
    proc, shared = f"test.rpc.conflict.{uid()}", f"test.rpc.conflict.{uid()}"
    async with Pool(router) as pool:
        a = await pool.connect("ws-json", shard=0)
        b = await pool.connect("rs-msgpack", shard=1)
        await a.register(lambda: "a", proc)
        for opts in (None, RegisterOptions(invoke="roundrobin")):
            with pytest.raises(ApplicationError) as e:
                await b.register(lambda: "b", proc, options=opts)
            assert e.value.error == "wamp.error.procedure_already_exists"
        await a.register(lambda: "a", shared, options=RegisterOptions(invoke="roundrobin"))
        for opts in (RegisterOptions(invoke="random"), RegisterOptions(invoke="single"), None):
            with pytest.raises(ApplicationError) as e:
                await b.register(lambda: "b", shared, options=opts)
            assert e.value.error == "wamp.error.procedure_already_exists", opts
        with pytest.raises(ApplicationError) as e:
            await a.register(lambda: "a2", shared, options=RegisterOptions(invoke="roundrobin"))
        assert e.value.error == "wamp.error.procedure_already_exists"
        await b.register(lambda: "b", shared, options=RegisterOptions(invoke="roundrobin"))
        # A different match policy is a different registration.
        await b.register(lambda: "b", proc, options=RegisterOptions(match="prefix"))


async def _shared(pool, proc, invoke, n=3):
    callees = []
    for i in range(n):
        c = await pool.connect(["ws-json", "rs-cbor", "ws-msgpack"][i], shard=i % 2)
        await c.register(lambda i=i: f"c{i}", proc, options=RegisterOptions(invoke=invoke))
        callees.append(c)
    return callees


async def test_shared_registration_roundrobin(router):
    # Goal: invoke=roundrobin rotates through every callee in turn (callees on both shards).
    # Method: three callees; nine sequential calls from one caller; each callee answers three
    # times and the answer sequence repeats with period three.
    proc = f"test.rpc.rr.{uid()}"
    async with Pool(router) as pool:
        await _shared(pool, proc, "roundrobin")
        caller = await pool.connect("rs-json", shard=1)
        got = [await caller.call(proc) for _ in range(9)]
        assert sorted(set(got)) == ["c0", "c1", "c2"], got
        assert got[:3] * 3 == got, got


async def test_shared_registration_first_and_last(router):
    # Goal: invoke=first always picks the earliest remaining registration, invoke=last the
    # latest; when that callee leaves, the next in line takes over.
    # Method: three callees registered in order c0, c1, c2 (REGISTERED awaited each time).
    async with Pool(router) as pool:
        for invoke, order in (("first", ["c0", "c1"]), ("last", ["c2", "c1"])):
            proc = f"test.rpc.{invoke}.{uid()}"
            callees = await _shared(pool, proc, invoke)
            caller = await pool.connect("ws-cbor", shard=0)
            assert [await caller.call(proc) for _ in range(4)] == [order[0]] * 4
            await callees[int(order[0][1])].close()
            assert [await caller.call(proc) for _ in range(4)] == [order[1]] * 4


async def test_shared_registration_random(router):
    # Goal: invoke=random spreads calls over the callees (and every call is answered).
    # Method: three callees, 60 calls; all answered by one callee has probability 3^-59.
    proc = f"test.rpc.random.{uid()}"
    async with Pool(router) as pool:
        await _shared(pool, proc, "random")
        caller = await pool.connect("rs-msgpack", shard=0)
        got = await asyncio.gather(*(caller.call(proc) for _ in range(60)))
        assert set(got) <= {"c0", "c1", "c2"} and len(set(got)) >= 2, got


async def test_caller_identification(router):
    # Goal: CALL.Options.disclose_me and REGISTER.Options.disclose_caller put caller,
    # caller_authid, caller_authrole into INVOCATION.Details; neither means no disclosure.
    # Method: a raw JSON caller (Autobahn cannot send disclose_me) calls an Autobahn callee
    # on the other shard that records CallDetails; a raw callee registers with
    # disclose_caller and sees an Autobahn caller's identity.
    async with Pool(router) as pool:
        proc = f"test.rpc.disclose.{uid()}"
        callee = await pool.connect("rs-cbor", shard=1)
        seen = []

        def record(details=None):
            seen.append((details.caller, details.caller_authid, details.caller_authrole))
            return len(seen)

        await callee.register(record, proc, options=RegisterOptions(details_arg="details"))
        raw = await pool.raw("rs-json", shard=0)
        for opts in ({"disclose_me": True}, {}):
            m = await raw.call_expect([rw.CALL, raw.request_id(), opts, proc, []], rw.RESULT)
            assert m[0] == rw.RESULT, m
        assert seen[0] == (raw.session_id, raw.welcome[2]["authid"], raw.welcome[2]["authrole"])
        assert seen[1] == (None, None, None)

        proc2 = f"test.rpc.disclose_caller.{uid()}"
        raw_callee = await pool.raw("ws-msgpack", shard=0)
        await raw_callee.register(proc2, {"disclose_caller": True})
        caller = await pool.connect("ws-json", shard=1)
        fut = asyncio.ensure_future(caller.call(proc2))
        inv, _ = await raw_callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        assert inv[3].get("caller") == caller.session_id, inv
        assert inv[3].get("caller_authid") == caller.details.authid
        await raw_callee.send([rw.YIELD, inv[1], {}, ["done"]])
        assert await fut == "done"


async def test_pattern_registrations(router):
    # Goal: prefix and wildcard registrations get calls for matching URIs with
    # INVOCATION.Details.procedure set to the called URI; an exact registration beats a
    # prefix one, the longest prefix wins, and prefix beats wildcard.
    # Method: Autobahn callees (prefix on shard 0, wildcard on shard 1) answer with the
    # registration they are and the procedure they saw; a caller calls several URIs.
    base = f"test.rpc.pat.u{uid()}"
    async with Pool(router) as pool:
        c0 = await pool.connect("ws-msgpack", shard=0)
        c1 = await pool.connect("rs-json", shard=1)

        def answer(name):
            return lambda *a, details=None: [name, details.procedure]

        await c0.register(answer("prefix"), f"{base}.a", options=RegisterOptions(match="prefix", details_arg="details"))
        await c0.register(answer("longer"), f"{base}.a.b", options=RegisterOptions(match="prefix", details_arg="details"))
        await c1.register(answer("wildcard"), f"{base}..z", options=RegisterOptions(match="wildcard", details_arg="details"))
        await c1.register(answer("exact"), f"{base}.a.b.c", options=RegisterOptions(details_arg="details"))
        caller = await pool.connect("ws-cbor", shard=1)
        cases = {
            f"{base}.a.q": "prefix",
            f"{base}.a.b.q": "longer",
            f"{base}.a.b.c": "exact",
            f"{base}.y.z": "wildcard",
            f"{base}.a.z": "prefix",
            f"{base}.ax": "prefix",
        }
        # Autobahn reports the registered URI when Details.procedure is absent, so a router
        # that left it out of a pattern INVOCATION would show the pattern here, not the URI.
        for uri, name in cases.items():
            assert await caller.call(uri) == [name, uri], uri
        with pytest.raises(ApplicationError) as e:
            await caller.call(f"{base}.b.y")
        assert e.value.error == "wamp.error.no_such_procedure"


@pytest.mark.parametrize("callee_kind,caller_kind", [("ws-json", "rs-msgpack"), ("rs-cbor", "ws-json"),
                                                     ("unix-msgpack", "ws-cbor")])
async def test_progressive_call_results(router, callee_kind, caller_kind):
    # Goal: progressive results are relayed in order as RESULT(progress=true) before the
    # final RESULT, across shards and serializers.
    # Method: Autobahn callee sends five progress updates then returns; the caller's
    # on_progress records them; a caller that did not ask for progress sees only the
    # final result and the callee sees details.progress unset.
    proc = f"test.rpc.progress.{uid()}"
    async with Pool(router) as pool:
        callee = await pool.connect(callee_kind, shard=0)

        async def count(n, details=None):
            if details.progress is None:
                return "no progress requested"
            for i in range(n):
                details.progress(i, square=i * i)
            return "done"

        await callee.register(count, proc, options=RegisterOptions(details_arg="details"))
        caller = await pool.connect(caller_kind, shard=1)
        progress = []
        res = await caller.call(proc, 5, options=CallOptions(on_progress=lambda i, square: progress.append((i, square))))
        assert res == "done"
        assert progress == [(i, i * i) for i in range(5)]
        assert await caller.call(proc, 5) == "no progress requested"


async def test_progress_dropped_for_caller_that_did_not_ask(router):
    # Goal: a YIELD(progress=true) for a call without receive_progress is not relayed; the
    # caller gets exactly one final RESULT.
    # Method: raw callee yields progress then a final result; raw caller checks the first
    # answer it receives is the final RESULT without Details.progress.
    proc = f"test.rpc.noprogress.{uid()}"
    async with Pool(router) as pool:
        callee = await pool.raw("rs-msgpack", shard=0)
        await callee.register(proc)
        caller = await pool.raw("ws-json", shard=1)
        req = caller.request_id()
        await caller.send([rw.CALL, req, {}, proc, []])
        inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        assert not inv[3].get("receive_progress")
        await callee.send([rw.YIELD, inv[1], {"progress": True}, ["partial"]])
        await callee.send([rw.YIELD, inv[1], {}, ["final"]])
        m = await caller.recv()
        assert m[0] == rw.RESULT and m[1] == req and m[3] == ["final"] and not m[2].get("progress"), m


async def test_cancel_from_autobahn_interrupts_the_callee(router):
    # Goal: cancelling a call in Autobahn sends CANCEL; the caller's call fails at once and
    # the callee's running invocation is interrupted (INTERRUPT cancels its coroutine).
    # Method: callee awaits forever and records its cancellation; caller cancels the future.
    proc = f"test.rpc.cancel.{uid()}"
    async with Pool(router) as pool:
        callee = await pool.connect("ws-json", shard=0)
        started = asyncio.get_running_loop().create_future()
        interrupted = asyncio.get_running_loop().create_future()

        async def slow():
            started.set_result(True)
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                interrupted.set_result(True)
                raise

        await callee.register(slow, proc)
        caller = await pool.connect("rs-msgpack", shard=1)
        call = caller.call(proc)
        await asyncio.wait_for(started, 10)
        call.cancel()
        with pytest.raises((asyncio.CancelledError, ApplicationError)):
            await asyncio.wait_for(call, 10)
        await asyncio.wait_for(interrupted, 10)
        # Both sessions are still fine.
        await callee.register(lambda: "ok", proc + ".after")
        assert await caller.call(proc + ".after") == "ok"


async def _raw_pair(pool, proc):
    callee = await pool.raw("rs-cbor", shard=0)
    await callee.register(proc)
    caller = await pool.raw("ws-json", shard=1)
    return callee, caller


async def _fence(caller, callee, proc):
    """Call `proc` (on `callee`) and return every message the caller got before its RESULT."""
    req = caller.request_id()
    await caller.send([rw.CALL, req, {}, proc, ["fence"]])
    inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION and m[4] == ["fence"])
    await callee.send([rw.YIELD, inv[1], {}, ["fence"]])
    _, before = await caller.recv_until(lambda m: m[0] == rw.RESULT and m[1] == req)
    return before


@pytest.mark.parametrize("mode", ["skip", "kill", "killnowait", None])
async def test_cancel_modes(router, mode):
    # Goal: CANCEL modes behave as the spec says:
    #   skip       caller gets ERROR wamp.error.canceled at once; callee gets no INTERRUPT;
    #              the callee's late YIELD is dropped (not a protocol violation);
    #   kill       callee gets INTERRUPT{mode: kill}; the caller gets the callee's answer (its
    #              ERROR wamp.error.canceled with its args) and nothing before it;
    #   killnowait caller gets ERROR canceled at once; callee gets INTERRUPT{mode:
    #   (default)  killnowait}; the callee's late ERROR is dropped.
    # Method: raw caller (shard 1) and raw callee (shard 0); after each scenario a fence call
    # proves nothing else was sent to the caller and the callee's session is still healthy.
    proc = f"test.rpc.cancelmode.{uid()}"
    async with Pool(router) as pool:
        callee, caller = await _raw_pair(pool, proc)
        req = caller.request_id()
        await caller.send([rw.CALL, req, {}, proc, ["work"]])
        inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        await caller.send([rw.CANCEL, req, {"mode": mode} if mode else {}])
        if mode == "kill":
            intr, _ = await callee.recv_until(lambda m: m[0] == rw.INTERRUPT)
            assert intr[1] == inv[1] and intr[2].get("mode") == "kill", intr
            await callee.send([rw.ERROR, rw.INVOCATION, inv[1], {}, "wamp.error.canceled", ["by callee"]])
            err = await caller.recv()
            assert err[:5] == [rw.ERROR, rw.CALL, req, {}, "wamp.error.canceled"] and err[5] == ["by callee"], err
        else:
            err = await caller.recv()
            assert err[0] == rw.ERROR and err[1] == rw.CALL and err[2] == req, err
            assert err[4] == "wamp.error.canceled", err
            if mode == "skip":
                await callee.send([rw.YIELD, inv[1], {}, ["late"]])
            else:
                intr, _ = await callee.recv_until(lambda m: m[0] == rw.INTERRUPT)
                assert intr[1] == inv[1] and intr[2].get("mode") == "killnowait", intr
                await callee.send([rw.ERROR, rw.INVOCATION, inv[1], {}, "wamp.error.canceled"])
        # The fence: nothing else reached the caller; the callee never got an INTERRUPT in
        # skip mode (the fence INVOCATION is the next thing it sees) and was not aborted.
        before = await _fence(caller, callee, proc)
        assert before == [], before


async def test_call_rerouted_on_unavailable(router):
    # Goal: a callee answering wamp.error.unavailable makes the dealer try the next callee
    # of a shared registration; when every callee is unavailable the caller gets
    # wamp.error.no_available_callee.
    # Method: invoke=first with c0 (unavailable) then c1 (answers) on the other shard.
    proc, all_busy = f"test.rpc.reroute.{uid()}", f"test.rpc.reroute.{uid()}"
    async with Pool(router) as pool:
        c0 = await pool.connect("ws-json", shard=0)
        c1 = await pool.connect("rs-cbor", shard=1)
        calls = []

        def unavailable(*a):
            calls.append("c0")
            raise ApplicationError("wamp.error.unavailable")

        await c0.register(unavailable, proc, options=RegisterOptions(invoke="first"))
        await c1.register(lambda x: ["c1", x], proc, options=RegisterOptions(invoke="first"))
        caller = await pool.connect("ws-msgpack", shard=0)
        assert await caller.call(proc, 7) == ["c1", 7]
        assert calls == ["c0"]
        for c in (c0, c1):
            await c.register(unavailable, all_busy, options=RegisterOptions(invoke="roundrobin"))
        with pytest.raises(ApplicationError) as e:
            await caller.call(all_busy)
        assert e.value.error == "wamp.error.no_available_callee"


async def test_callee_leaving_mid_call_fails_the_call(router):
    # Goal: when a callee's session ends with an invocation in flight, the caller gets an
    # ERROR (wamp.error.canceled) instead of waiting forever, and the procedure is gone.
    # Method: raw callee receives the INVOCATION then closes its socket.
    proc = f"test.rpc.calleegone.{uid()}"
    async with Pool(router) as pool:
        callee = await pool.raw("rs-msgpack", shard=1)
        await callee.register(proc)
        caller = await pool.connect("ws-json", shard=0)
        fut = asyncio.ensure_future(caller.call(proc))
        await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        callee.close()
        with pytest.raises(ApplicationError) as e:
            await asyncio.wait_for(fut, 10)
        assert e.value.error == "wamp.error.canceled"
        with pytest.raises(ApplicationError) as e:
            await caller.call(proc)
        assert e.value.error == "wamp.error.no_such_procedure"


@pytest.mark.parametrize("ending", ["goodbye", "abort", "close"])
async def test_session_end_frees_registrations_and_subscriptions(router, ending):
    # Goal: however a session ends — GOODBYE (answered with goodbye_and_out, the transport
    # may then carry a new session), client ABORT, or the socket closing — its registrations
    # are freed: at once for GOODBYE/ABORT, within a bounded time after a close.
    # Method: raw session on shard 0 registers a procedure and subscribes; it ends; a session
    # on shard 1 registers the same procedure. After GOODBYE the same transport says HELLO
    # again, subscribes and receives an event.
    proc, topic = f"test.rpc.end.{uid()}", f"test.rpc.end.{uid()}"
    async with Pool(router) as pool:
        c = await pool.raw("rs-msgpack", shard=0)
        await c.register(proc)
        await c.subscribe(topic)
        if ending == "goodbye":
            await c.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
            m = await c.recv()
            assert m[0] == rw.GOODBYE and m[2] == "wamp.close.goodbye_and_out", m
        elif ending == "abort":
            await c.send([rw.ABORT, {"message": "bye"}, "wamp.close.goodbye_and_out"])
            got, _ = await c.recv_closed()
            assert got == [], "ABORT must not be answered"
        else:
            c.close()
        other_session = await pool.connect("ws-json", shard=1)
        if ending == "close":
            # Nothing orders the router's noticing our FIN before another connection's
            # REGISTER: allow a short, bounded delay.
            await register_within(other_session, proc, 2.0)
        else:
            # The GOODBYE echo / the EOF after our ABORT come after the session was ended.
            await other_session.register(lambda: "new", proc)
        assert await other_session.call(proc) == "new"
        if ending == "goodbye":
            await c.hello()
            sub_id = await c.subscribe(topic)
            pub = await pool.raw("rs-json", shard=1)
            m = await pub.call_expect([rw.PUBLISH, pub.request_id(), {"acknowledge": True}, topic, ["again"]],
                                      rw.PUBLISHED)
            assert m[0] == rw.PUBLISHED
            ev = await c.recv()
            assert ev[0] == rw.EVENT and ev[1] == sub_id and ev[4] == ["again"], ev


@pytest.mark.parametrize("callee_kind", ["ws-json", "raw"])
async def test_call_timeout_is_enforced_by_the_router(router, callee_kind):
    # Goal: CALL.Options.timeout (ms in this realm) ends the call with wamp.error.timeout at
    # the deadline, whether or not the callee can be interrupted: an Autobahn callee (which
    # announces call_canceling) has its coroutine cancelled by the INTERRUPT; a raw callee
    # that announced nothing gets no INTERRUPT and its late YIELD goes nowhere.
    proc = f"test.rpc.timeout.{uid()}"
    async with Pool(router) as pool:
        interrupted = asyncio.get_running_loop().create_future()
        if callee_kind == "raw":
            callee = await pool.raw("rs-msgpack", shard=0)
            await callee.register(proc)
        else:
            callee = await pool.connect(callee_kind, shard=0)

            async def slow():
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    interrupted.set_result(True)
                    raise

            await callee.register(slow, proc)
        caller = await pool.connect("rs-cbor", shard=1)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(ApplicationError) as e:
            await asyncio.wait_for(caller.call(proc, options=CallOptions(timeout=400)), 10)
        elapsed = asyncio.get_running_loop().time() - t0
        assert e.value.error == "wamp.error.timeout"
        assert 0.35 <= elapsed < 5, elapsed
        if callee_kind == "raw":
            inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
            assert inv[3].get("timeout") == 400
            await callee.send([rw.YIELD, inv[1], {}, ["late"]])
        else:
            await asyncio.wait_for(interrupted, 5)
        # The caller's session carries on.
        assert caller.is_attached()
        with pytest.raises(ApplicationError) as e:
            await caller.call(f"{proc}.none")
        assert e.value.error == "wamp.error.no_such_procedure"


def stream_roles() -> dict:
    """HELLO roles of a callee that takes streamed CALLs (progressive invocations need call
    canceling too)."""
    roles = {k: {"features": dict(v["features"])} for k, v in rw.CLIENT_ROLES.items()}
    roles["callee"]["features"]["progressive_call_invocations"] = True
    roles["callee"]["features"]["call_canceling"] = True
    return roles


async def streaming_callee(pool, router):
    """A raw RawSocket session on shard 0 that takes streamed CALLs."""
    roles = stream_roles()
    for _ in range(64):
        c = pool.track_raw(await rw.open_raw(router, "rs-msgpack"))
        await c.hello("realm1", {"roles": roles})
        if c.shard == 0:
            return c
        c.close()
    raise AssertionError("no callee on shard 0")


async def test_progressive_call_invocations_in_order_across_shards(router):
    # Goal: a caller's CALL chunks (progress=true) reach the callee of the first chunk as
    # INVOCATIONs of one request, in order, the last without progress; the callee's YIELD
    # ends the call. A callee that did not announce progressive_call_invocations is never
    # sent a stream: the caller gets wamp.error.feature_not_supported.
    # Method: raw sessions (Autobahn|Python cannot stream a CALL), callee and caller on
    # different shards, 20 chunks.
    proc = f"test.rpc.stream.{uid()}"
    async with Pool(router) as pool:
        callee = await streaming_callee(pool, router)
        await callee.register(proc)
        caller = await pool.raw("ws-json", shard=1)
        req = caller.request_id()
        for i in range(19):
            await caller.send([rw.CALL, req, {"progress": True}, proc, [i]])
        await caller.send([rw.CALL, req, {}, proc, [19]])
        got = []
        while len(got) < 20:
            inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
            got.append(inv)
        assert [m[4][0] for m in got] == list(range(20))
        assert len({m[1] for m in got}) == 1, "one INVOCATION request for the whole stream"
        assert all(m[3].get("progress") for m in got[:19]) and not got[19][3].get("progress")
        await callee.send([rw.YIELD, got[0][1], {}, ["summed", sum(range(20))]])
        res, _ = await caller.recv_until(lambda m: m[0] == rw.RESULT and m[1] == req)
        assert res[3] == ["summed", sum(range(20))]

        plain_proc = f"test.rpc.nostream.{uid()}"
        plain = await pool.raw("rs-msgpack", shard=0)
        await plain.register(plain_proc)
        req = caller.request_id()
        m = await caller.call_expect([rw.CALL, req, {"progress": True}, plain_proc, [0]], rw.RESULT)
        assert m[0] == rw.ERROR and m[4] == "wamp.error.feature_not_supported", m


async def test_progressive_call_invocation_canceled_mid_stream(router):
    # Goal: a CANCEL in the middle of a streamed CALL ends it at once: the caller gets ERROR
    # wamp.error.canceled, the callee (on the other shard) INTERRUPT for the stream's one
    # invocation after the chunks sent before the cancel; its late YIELD reaches nobody, and
    # the next call between the two works.
    proc = f"test.rpc.streamcancel.{uid()}"
    async with Pool(router) as pool:
        callee = await streaming_callee(pool, router)
        await callee.register(proc)
        caller = await pool.raw("ws-json", shard=1)
        req = caller.request_id()
        for i in range(3):
            await caller.send([rw.CALL, req, {"progress": True}, proc, [i]])
        got = []
        while len(got) < 3:
            inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
            got.append(inv)
        assert [m[4][0] for m in got] == [0, 1, 2]
        inv_id = got[0][1]
        await caller.send([rw.CANCEL, req, {}])
        err, _ = await caller.recv_until(lambda m: m[0] == rw.ERROR and m[2] == req)
        assert err[1] == rw.CALL and err[4] == "wamp.error.canceled", err
        interrupt, skipped = await callee.recv_until(lambda m: m[0] == rw.INTERRUPT)
        assert interrupt[1] == inv_id, interrupt
        assert not [m for m in skipped if m[0] == rw.INVOCATION], skipped
        # The late answer is dropped; a new call goes through and is the next thing the
        # caller hears about.
        await callee.send([rw.YIELD, inv_id, {}, ["too late"]])
        req2 = caller.request_id()
        await caller.send([rw.CALL, req2, {}, proc, ["again"]])
        inv2, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        assert inv2[4] == ["again"] and not inv2[3].get("progress"), inv2
        await callee.send([rw.YIELD, inv2[1], {}, ["ok"]])
        res = await caller.recv()
        assert res[0] == rw.RESULT and res[1] == req2 and res[3] == ["ok"], res
