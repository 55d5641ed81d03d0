#!/usr/bin/env bash
# Meta API and event history: what they cost, shardbar vs Crossbar.io, side by side, with loadgen.
#
# Both routers serve the same realms to anonymous sessions (allow-all), on one port (RawSocket
# and WebSocket; JSON/MessagePack/CBOR):
#   nometa   shardbar only: `meta_api = false` (no wamp.session.* procedures or events).
#            Crossbar has no such switch: its meta API is always on.
#   meta     the meta API on (shardbar's default; Crossbar always).
#   plain    the fan-out realm without event history.
#   history  the fan-out realm with event history on the fan-out topic TOPIC (exact match,
#            HISTORY_LIMIT events kept). shardbar: `[[realm.history]]`; Crossbar: the realm's
#            `store` (type memory) with `event-history`.
# TOPIC is loadgen.fanout.topic0: loadgen names its topics loadgen.<scenario>.topic<i> and
# the fan-out publishes to topic 0 (there is no flag for it; change TOPIC if loadgen does).
#
# Cases, each against both routers:
#   1. Connection storm: SESSIONS sessions (loadgen `logins`, anonymous, over STORM_TRANSPORT,
#      CONCURRENCY openings at once, each closed at its WELCOME without GOODBYE): sessions/s
#      and connect→WELCOME latency, in three setups —
#        off        shardbar in `nometa`;
#        on         `meta`, nobody subscribed to the meta events;
#        listener   `meta`, with bench/metalistener.py (a separate Autobahn|Python process,
#                   RawSocket + MessagePack) subscribed to wamp.session.on_join and on_leave.
#      The listener counts the events it gets; after the storm the script waits (at most
#      LISTENER_WAIT s) until it has SESSIONS joins and SESSIONS leaves, stops it by PID and
#      reports the counts and how long after the storm's end the last event arrived.
#      The interesting figure: shardbar listener / off.
#   2. Fan-out 1 → SUBSCRIBERS (RawSocket + MessagePack, 64-byte payloads, closed loop,
#      window FANOUT_WINDOW) in `plain` and `history`. Target: shardbar history ≥ 0.9× its
#      no-history delivered events/s. After each history run the script asks the router for
#      the stored events (SUBSCRIBE + wamp.subscription.get_events) to show
#      the history was kept.
# CASES picks them ("storm fanout"; CASES=storm leaves the history realm out of both configs,
# for a shardbar without `[[realm.history]]`).
#
# Each storm, and each repetition's fan-outs, start a router afresh on a free 127.0.0.1 port
# (see the loop for why), and stop it (and the listener) by PID; the routers take turns going first,
# and so do the storm setups and history/no history. Every loadgen run is bounded by
# `timeout`, the listener by --max-seconds. shardbar's /metrics is kept after each run.
#
# Writes the section "Meta API and event history" of bench/RESULTS.md (that section only;
# the rest of the file is kept) and the raw reports, configs and logs in
# bench/work/<stamp>-meta/.
#
# Environment:
#   REPEATS=5              runs per case and router (medians are reported)
#   CASES="storm fanout"   which cases run
#   SESSIONS=10000 CONCURRENCY=64        the storms
#   STORM_TRANSPORT=rs     rs (RawSocket + MessagePack) | ws (WebSocket + JSON)
#   STORM_TIMEOUT=300      seconds a storm may take (loadgen's --connect-timeout)
#   LISTENER_WAIT=60       seconds to wait after a storm for the listener's counts
#   DURATION=5 WARMUP=1    seconds per measured fan-out run
#   SUBSCRIBERS=1000 FANOUT_WINDOW=256   the fan-out's shape
#   TOPIC=loadgen.fanout.topic0 HISTORY_LIMIT=1000   the history configuration. Crossbar 26.10.1's
#                          memory store appends a publication to the ring once per receiver and
#                          its purge then fails (KeyError in realmstore.store_event_history) on
#                          every publish once the ring is full — after limit/SUBSCRIBERS
#                          publications — and those events are lost. Its history column shows
#                          that failure, at any limit.
#   QUICK=1                smoke run: REPEATS=1 DURATION=2 WARMUP=0.5 SESSIONS=1000
#   NO_BUILD=1             use target/release as it is (default: cargo build --release --bins)
#   CROSSBAR_VERSION=26.10.1 PYTHON=python3.11   as in compare.sh (Crossbar in bench/.venv)
#   RESULTS=bench/RESULTS.md
#   REPORT_FROM=bench/work/STAMP-meta   rewrite the section from an earlier run's reports
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-5}
CASES=${CASES:-storm fanout}
SESSIONS=${SESSIONS:-10000}
CONCURRENCY=${CONCURRENCY:-64}
STORM_TRANSPORT=${STORM_TRANSPORT:-rs}
STORM_TIMEOUT=${STORM_TIMEOUT:-300}
LISTENER_WAIT=${LISTENER_WAIT:-60}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
FANOUT_WINDOW=${FANOUT_WINDOW:-256}
TOPIC=${TOPIC:-loadgen.fanout.topic0}
HISTORY_LIMIT=${HISTORY_LIMIT:-1000}
CROSSBAR_VERSION=${CROSSBAR_VERSION:-26.10.1}
RESULTS=${RESULTS:-bench/RESULTS.md}
QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    REPEATS=1 DURATION=2 WARMUP=0.5 SESSIONS=1000
fi
case $STORM_TRANSPORT in
rs | ws) ;;
*) echo "STORM_TRANSPORT must be rs or ws" >&2; exit 2 ;;
esac
has_case() { [[ " $CASES " == *" $1 "* ]]; }
has_case storm || has_case fanout || { echo "CASES must name storm and/or fanout" >&2; exit 2; }
STAMP=$(date -u +%Y%m%d-%H%M%S)-meta
WORK=$ROOT/bench/work/$STAMP
if [[ -n "${REPORT_FROM:-}" ]]; then
    WORK=$(cd "$REPORT_FROM" && pwd)
    STAMP=$(basename "$WORK")
fi
mkdir -p "$WORK"
LOG=$WORK/meta.log
LOADGEN=$ROOT/target/release/loadgen
SHARDBAR=$ROOT/target/release/shardbar
VENV=$ROOT/bench/.venv

say() { echo "[meta $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [[ -z "${REPORT_FROM:-}" ]]; then
T_START=$SECONDS

# ---- build and install ------------------------------------------------------------------

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    say "building shardbar and loadgen (release)"
    cargo build --release --bins >>"$LOG" 2>&1
fi
[[ -x "$SHARDBAR" && -x "$LOADGEN" ]] || { say "no $SHARDBAR or $LOADGEN"; exit 2; }

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    for p in python3.11 python3.10 python3.12 python3; do
        if command -v "$p" >/dev/null 2>&1; then echo "$p"; return; fi
    done
    echo "no Python 3 found" >&2
    exit 2
}
if ! "$VENV/bin/crossbar" version >/dev/null 2>&1; then
    PY=$(pick_python)
    say "installing crossbar==$CROSSBAR_VERSION into bench/.venv with $PY"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip wheel setuptools >>"$LOG" 2>&1
    timeout 1800 "$VENV/bin/pip" install -q "crossbar==$CROSSBAR_VERSION" >>"$LOG" 2>&1
fi
CB_VERSION=$("$VENV/bin/pip" show crossbar 2>/dev/null | awk '/^Version/ {print $2}')
AB_VERSION=$("$VENV/bin/pip" show autobahn 2>/dev/null | awk '/^Version/ {print $2}')
PY_VERSION=$("$VENV/bin/python" --version 2>&1)
say "crossbar $CB_VERSION, autobahn $AB_VERSION ($PY_VERSION); work dir $WORK"

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

HISTORY=0
has_case fanout && HISTORY=1

shardbar_config() { # PORT
    cat <<EOF
# Written by bench/meta.sh for one run.
[metrics]
http_endpoints_on_wamp_port = true

[[listener]]
address = "127.0.0.1:$1"

[[realm]]
name = "nometa"
meta_api = false

[[realm]]
name = "meta"

[[realm]]
name = "plain"
EOF
    if [[ $HISTORY == 1 ]]; then
        cat <<EOF

[[realm]]
name = "history"
[[realm.history]]
uri = "$TOPIC"
match = "exact"
limit = $HISTORY_LIMIT
EOF
    fi
}

# Crossbar: compare.sh's node (bench/crossbar/config.json.in: one universal transport,
# realm1 with an allow-all anonymous role), its realm copied into meta, plain and history.
crossbar_config() { # PORT
    "$VENV/bin/python" - bench/crossbar/config.json.in "$1" "$HISTORY" "$TOPIC" "$HISTORY_LIMIT" <<'PYEOF'
import copy, json, sys
src, port, history, topic, limit = sys.argv[1:]
cfg = json.loads(open(src).read().replace("@PORT@", port))
w = cfg["workers"][0]
base = w["realms"][0]
realms = []
for name in ("meta", "plain") + (("history",) if history == "1" else ()):
    r = copy.deepcopy(base)
    r["name"] = name
    if name == "history":
        r["store"] = {"type": "memory", "limit": int(limit),
                      "event-history": [{"uri": topic, "match": "exact", "limit": int(limit)}]}
    realms.append(r)
w["realms"] = realms
json.dump(cfg, sys.stdout, indent=2)
PYEOF
}

# ---- routers and the listener -------------------------------------------------------------

ROUTER_PID=""
LISTENER_PID=""
declare -A URL
start_router() { # name
    local name=$1 port dir
    port=$(free_port)
    URL=([rs]="rs://127.0.0.1:$port" [ws]="ws://127.0.0.1:$port/ws")
    case $name in
    shardbar)
        METRICS_URL="http://127.0.0.1:$port/metrics"
        shardbar_config "$port" >"$WORK/shardbar-$port.toml"
        "$SHARDBAR" --config "$WORK/shardbar-$port.toml" >"$WORK/shardbar-$port.log" 2>&1 &
        ROUTER_PID=$!
        ROUTER_LOG=$WORK/shardbar-$port.log
        ;;
    crossbar)
        METRICS_URL=""
        dir=$WORK/crossbar-$port/.crossbar
        mkdir -p "$dir"
        crossbar_config "$port" >"$dir/config.json"
        "$VENV/bin/crossbar" start --cbdir "$dir" --loglevel warn >"$WORK/crossbar-$port.log" 2>&1 &
        ROUTER_PID=$!
        ROUTER_LOG=$WORK/crossbar-$port.log
        ;;
    esac
    # Up when a session opens in `plain` (not `meta`: no meta event of this probe may reach
    # a listener started later).
    local t0=$SECONDS
    until "$LOADGEN" wait --url "${URL[rs]}" --realm plain --timeout 2s >/dev/null 2>&1; do
        if ! kill -0 "$ROUTER_PID" 2>/dev/null || ((SECONDS - t0 > 90)); then
            say "$name did not come up; see $ROUTER_LOG"
            stop_router
            exit 2
        fi
        sleep 0.2
    done
    say "$name up (pid $ROUTER_PID): ${URL[rs]}"
}

stop_pid() { # PID WHAT
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$2 (pid $pid) ignored SIGTERM for 10 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_listener() {
    if [[ -n "$LISTENER_PID" ]]; then
        stop_pid "$LISTENER_PID" listener
        LISTENER_PID=""
    fi
}

stop_router() {
    stop_listener
    if [[ -n "$ROUTER_PID" ]]; then
        stop_pid "$ROUTER_PID" router
        ROUTER_PID=""
    fi
}
trap stop_router EXIT

# start_listener NAME: the on_join/on_leave subscriber in `meta`; counts in $WORK/NAME.counts.
start_listener() {
    LISTENER_LOG=$WORK/$1.listener.log
    LISTENER_COUNTS=$WORK/$1.counts
    rm -f "$LISTENER_COUNTS"
    "$VENV/bin/python" bench/metalistener.py --url "${URL[rs]}" --realm meta --counts "$LISTENER_COUNTS" \
        --max-seconds $((STORM_TIMEOUT + LISTENER_WAIT + 300)) >"$LISTENER_LOG" 2>&1 &
    LISTENER_PID=$!
    local t0=$SECONDS
    until grep -q '^ready$' "$LISTENER_LOG"; do
        if ! kill -0 "$LISTENER_PID" 2>/dev/null || ((SECONDS - t0 > 60)); then
            say "the listener did not subscribe; see $LISTENER_LOG"
            stop_router
            exit 2
        fi
        sleep 0.2
    done
    say "listener up (pid $LISTENER_PID)"
}

# ---- runs -----------------------------------------------------------------------------------

# run CASE ROUTER I BOUND_S loadgen-args...
run() {
    local case=$1 router=$2 i=$3 bound=$4
    shift 4
    local out=$WORK/$case-$router-$i.json rc=0
    say "$case [$router #$i]: loadgen $*"
    timeout "$bound" "$LOADGEN" "$@" --no-progress --quiet --pid "$ROUTER_PID" --label "$router" --json "$out" \
        >"$WORK/$case-$router-$i.out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        say "  exit $rc (kept in the report): $(tail -c 600 "$WORK/$case-$router-$i.out" | tr '\n' ' ')"
    fi
    echo "$case $router $i $rc" >>"$WORK/runs.txt"
    if [[ -n "$METRICS_URL" ]]; then
        curl -s --max-time 10 "$METRICS_URL" >"$WORK/$case-$router-$i.metrics" || true
    fi
}

storm() { # SETUP(off|on|listener) ROUTER I
    local setup=$1 router=$2 i=$3 realm=meta name
    name=storm-$setup-$router-$i
    [[ $setup == off ]] && realm=nometa
    [[ $setup == listener ]] && start_listener "$name"
    run "storm-$setup" "$router" "$i" $((STORM_TIMEOUT + 60)) logins --url "${URL[$STORM_TRANSPORT]}" --realm "$realm" \
        --sessions "$SESSIONS" --concurrency "$CONCURRENCY" --connect-timeout "${STORM_TIMEOUT}s"
    [[ $setup == listener ]] || return 0
    # Wait for every join and leave to reach the listener (bounded), then stop it.
    local end joins=0 leaves=0 last=0 t0=$SECONDS
    end=$(date +%s.%N)
    while ((SECONDS - t0 < LISTENER_WAIT)); do
        if [[ -s "$LISTENER_COUNTS" ]]; then
            read -r _ joins _ leaves _ last <"$LISTENER_COUNTS" || true
        fi
        ((joins >= SESSIONS && leaves >= SESSIONS)) && break
        kill -0 "$LISTENER_PID" 2>/dev/null || break
        sleep 0.2
    done
    stop_listener
    [[ -s "$LISTENER_COUNTS" ]] && read -r _ joins _ leaves _ last <"$LISTENER_COUNTS"
    local lag lost=0
    lag=$(awk -v a="$last" -v b="$end" 'BEGIN {d = a - b; printf "%.3f", (a > 0 ? d : 0)}')
    grep -q '^metalistener: ' "$LISTENER_LOG" && lost=1
    echo "storm-listener $router $i $joins $leaves $lag $lost" >>"$WORK/listener.txt"
    if ((joins != SESSIONS || leaves != SESSIONS)); then
        say "  the listener counted $joins joins and $leaves leaves, not $SESSIONS each (see $LISTENER_LOG)"
    else
        say "  the listener counted $joins joins and $leaves leaves; the last $lag s after the storm ended"
    fi
}

# history_check ROUTER I: how many events the router returns for TOPIC's subscription in
# `history` (subscribe, then wamp.subscription.get_events(id, HISTORY_LIMIT)).
history_check() {
    local out=$WORK/history-check-$1-$2.txt
    timeout 60 "$VENV/bin/python" - "${URL[rs]}" "$TOPIC" "$HISTORY_LIMIT" >"$out" 2>&1 <<'PYEOF' || true
import asyncio, sys
import txaio
txaio.use_asyncio()
from autobahn.asyncio.component import Component

async def main():
    url, topic, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    done = asyncio.Event()
    c = Component(transports=[{"type": "rawsocket", "url": url, "serializer": "msgpack", "max_retries": 0}],
                  realm="history")

    async def joined(session, details):
        try:
            # The run's subscribers are gone: subscribe to get a subscription to ask about.
            sub = await session.subscribe(lambda *a, **k: None, topic)
            events = await session.call("wamp.subscription.get_events", sub.id, limit)
            print(f"history: {len(events or [])} events", flush=True)
        except Exception as e:
            print(f"history: error {getattr(e, 'error', type(e).__name__)}", flush=True)
        done.set()

    c.on("join", joined)
    asyncio.ensure_future(c.start(asyncio.get_running_loop()))
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    except asyncio.TimeoutError:
        print("history: no answer in 30 s", flush=True)
    asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
    try:
        await asyncio.wait_for(c.stop(), timeout=2)
    except Exception:
        pass

asyncio.run(main())
PYEOF
    say "  $(grep -m1 '^history:' "$out" || echo "history: no answer (see $out)")"
}

fanout() { # HISTORY(plain|history) ROUTER I
    run "fanout-$1" "$2" "$3" 300 fanout --url "${URL[rs]}" --realm "$1" --serializer msgpack \
        --subscribers "$SUBSCRIBERS" --payload 64 --window "$FANOUT_WINDOW" \
        --warmup "$WARMUP" --duration "$DURATION" --drain 5 --connect-timeout 180s
    [[ $1 == history ]] && history_check "$2" "$3"
    return 0
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $LOAD_START (REPEATS=$REPEATS CASES='$CASES' SESSIONS=$SESSIONS DURATION=$DURATION QUICK=$QUICK)"
: >"$WORK/runs.txt"
: >"$WORK/listener.txt"

for i in $(seq "$REPEATS"); do
    # Take turns: which router goes first, the storm setups' order, history or not first.
    routers=(shardbar crossbar) setups=(off on listener) fan=(plain history)
    if ((i % 2 == 0)); then routers=(crossbar shardbar) setups=(listener on off) fan=(history plain); fi
    for router in "${routers[@]}"; do
        if has_case storm; then
            # Each storm gets a fresh router on a fresh port: a storm leaves SESSIONS client
            # sockets in TIME_WAIT towards its port for 60 s, which slows the next storm's
            # connects to that port (measured: p99 10 -> 76 ms on the same router, 8 ms again
            # once TIME_WAIT had expired), whatever the router does.
            for s in "${setups[@]}"; do
                [[ $router == crossbar && $s == off ]] && continue
                start_router "$router"
                storm "$s" "$router" "$i"
                stop_router
            done
        fi
        if has_case fanout; then
            start_router "$router"
            for h in "${fan[@]}"; do fanout "$h" "$router" "$i"; done
            stop_router
        fi
    done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at end: $LOAD_END"
{
    echo "REPEATS=$REPEATS CASES='$CASES' SESSIONS=$SESSIONS CONCURRENCY=$CONCURRENCY STORM_TRANSPORT=$STORM_TRANSPORT"
    echo "DURATION=$DURATION WARMUP=$WARMUP SUBSCRIBERS=$SUBSCRIBERS FANOUT_WINDOW=$FANOUT_WINDOW"
    echo "TOPIC='$TOPIC' HISTORY_LIMIT=$HISTORY_LIMIT LISTENER_WAIT=$LISTENER_WAIT QUICK=$QUICK"
    echo "LOAD_START='$LOAD_START' LOAD_END='$LOAD_END' DATE='$(date -u '+%Y-%m-%d %H:%M UTC')' ELAPSED_S=$((SECONDS - T_START))"
    echo "CB_VERSION='$CB_VERSION' AB_VERSION='$AB_VERSION' PY_VERSION='$PY_VERSION' RUSTC='$(rustc --version)'"
    echo "SB_VERSION='$("$SHARDBAR" --version) ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench/*.md' ':!bench/results' || echo '+dirty'))'"
    echo "MACHINE='$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem/ {print $2}') GiB, kernel $(uname -r)'"
} >"$WORK/meta.env"
fi # not REPORT_FROM
# shellcheck disable=SC1091
source "$WORK/meta.env"

# ---- the RESULTS.md section -------------------------------------------------------------------

COMMAND="bench/meta.sh"
[[ "$CASES" != "storm fanout" ]] && COMMAND=$(printf 'CASES=%q %s' "$CASES" "$COMMAND")
[[ "$QUICK" == 1 ]] && COMMAND="QUICK=1 $COMMAND"
export REPEATS CASES SESSIONS CONCURRENCY STORM_TRANSPORT DURATION WARMUP SUBSCRIBERS FANOUT_WINDOW TOPIC \
    HISTORY_LIMIT LISTENER_WAIT QUICK LOAD_START LOAD_END DATE ELAPSED_S CB_VERSION AB_VERSION PY_VERSION RUSTC \
    SB_VERSION MACHINE STAMP COMMAND
"$VENV/bin/python" - "$WORK" "$RESULTS" <<'PYEOF'
import glob, json, os, re, statistics, sys
work, out = sys.argv[1], sys.argv[2]
E = os.environ
quick = E["QUICK"] == "1"
cases = E["CASES"].split()
HEADING = "## Meta API and event history"

def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None

def by_run(case, router, f):
    """{repetition: f(report)} for the reports that have the figure."""
    vals = {}
    for p in glob.glob(f"{work}/{case}-{router}-*.json"):
        try:
            vals[int(p.rsplit("-", 1)[1][:-5])] = f(load(p))
        except (KeyError, TypeError, ValueError):
            pass
    return vals

def med(case, router, f):
    v = by_run(case, router, f)
    vals = [v[i] for i in sorted(v)]
    return (statistics.median(vals), vals) if vals else (float("nan"), [])

def fmt(v, unit=""):
    if v != v:
        return "n/a"
    if unit == "us":
        if v >= 1e6:
            return f"{v/1e6:.2f} s"
        return f"{v/1000:.1f} ms" if v >= 1000 else f"{v:.0f} µs"
    if v >= 1e6:
        return f"{v/1e6:.2f} M"
    if v >= 1e4:
        return f"{v/1e3:.1f} k"
    return f"{v:.0f}"

def runs(v, unit=""):
    return ", ".join(fmt(x, unit) for x in v)

def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")

def fr(v):
    return "n/a" if v != v else f"{v:.2f}×"

def fx(v):
    return "n/a" if v != v else f"{v:.0f}×"

def unclean(case, router):
    rs = [load(p) for p in glob.glob(f"{work}/{case}-{router}-*.json")]
    bad = [r for r in rs if not (r or {}).get("ok")]
    return f" ({len(bad)} run(s) not clean)" if bad else ""

def met(ok):
    return "yes" if ok else "**NO**"

def per_rep(case, base, router, f):
    a, b = by_run(case, router, f), by_run(base, router, f)
    return ", ".join(f"{a[i]/b[i]:.2f}" for i in sorted(a) if b.get(i))

n = int(E["REPEATS"])
lines = []
add = lines.append
add(f"{HEADING}\n")
if quick:
    add(f"> **Smoke run (`QUICK=1`): 1 repetition, {E['SESSIONS']}-session storms, {E['DURATION']} s fan-outs, on a "
        "shared, busy 2-vCPU machine.** It shows that every case runs end to end against both routers; its figures "
        "are single runs, not benchmark results, and the target is not judged by it. The full run is `bench/meta.sh` "
        "on a quiet machine.\n")
add("Generated by `bench/meta.sh`. Do not edit by hand: rerun it (it replaces this section only).\n")
add(f"- **Date:** {E['DATE']}; **elapsed:** {int(E['ELAPSED_S'])//60} min {int(E['ELAPSED_S'])%60} s")
add(f"- **Command:** `{E['COMMAND']}` (REPEATS={n}, SESSIONS={E['SESSIONS']}, CONCURRENCY={E['CONCURRENCY']}, "
    f"STORM_TRANSPORT={E['STORM_TRANSPORT']}, DURATION={E['DURATION']}s, WARMUP={E['WARMUP']}s, "
    f"SUBSCRIBERS={E['SUBSCRIBERS']}, FANOUT_WINDOW={E['FANOUT_WINDOW']}, HISTORY_LIMIT={E['HISTORY_LIMIT']})")
add(f"- **Machine:** {E['MACHINE']}, shared with other work; the routers, loadgen and the listener share the cores.")
add(f"- **Load average** (1/5/15 min): {E['LOAD_START']} at start, {E['LOAD_END']} at end.")
add(f"- **Versions:** {E['SB_VERSION']} (default: one shard per core); Crossbar.io {E['CB_VERSION']} on "
    f"{E['PY_VERSION']} (one router worker); the listener on Autobahn|Python {E['AB_VERSION']} (asyncio); "
    f"loadgen from the same commit; {E['RUSTC']}")
add("- **Setup:** both routers on 127.0.0.1, one port for RawSocket and WebSocket, anonymous sessions, allow-all "
    "(Crossbar: `bench/crossbar/config.json.in`'s realm copied per realm). shardbar realms `nometa` "
    "(`meta_api = false`), `meta` (the meta API on, its default), `plain`, `history` (`[[realm.history]]` on "
    f"`{E['TOPIC']}`, exact, limit {E['HISTORY_LIMIT']}); Crossbar the same without `nometa` (its meta API is "
    "always on), `history` with a memory `store` and `event-history` for the same URI. Every storm runs against a "
    "router started for it on a fresh port (a storm leaves its sessions' client sockets in TIME_WAIT towards that "
    "port for 60 s, which slows the next storm's connects there: p99 10 → 76 ms on one router, measured), and each "
    "repetition's fan-outs against another; the routers alternate which goes first, and so do the storm setups and history/no history. "
    "Crossbar 26.10.1's memory store appends a publication to its ring once per receiver, and once the ring is full "
    "(after limit / subscribers publications) its purge raises `KeyError` in `realmstore.store_event_history` on "
    "every publish, whose event is then lost: its history runs fail at any limit, and are reported as they are.")
add(f"- **Raw JSON reports, configs, logs:** bench/work/{E['STAMP']}/ (not committed).\n")

if "storm" in cases:
    tr = E["STORM_TRANSPORT"]
    ser = "MessagePack" if tr == "rs" else "JSON"
    add(f"### Connection storm: {E['SESSIONS']} anonymous sessions over {tr}:// ({ser}), {E['CONCURRENCY']} openings at once\n")
    add("Each session is closed at its WELCOME (the socket is closed, no GOODBYE), so every session also leaves. "
        "**off**: shardbar realm with `meta_api = false`; **on**: the meta API on, nobody subscribed to its events; "
        "**listener**: the meta API on and one Autobahn|Python session (`bench/metalistener.py`) subscribed to "
        "`wamp.session.on_join` and `wamp.session.on_leave`, counting the events.\n")
    add("| figure | shardbar | Crossbar.io | shardbar / Crossbar |")
    add("|---|---|---|---|")
    rate = lambda r: r["logins"]["per_s"]
    p99 = lambda r: r["latency"]["p99_us"]
    labels = {"off": "meta API off", "on": "meta API on, no subscriber", "listener": "meta API on, on_join/on_leave listener"}
    for s in ("off", "on", "listener"):
        c = f"storm-{s}"
        sv, svs = med(c, "shardbar", rate)
        kv, kvs = med(c, "crossbar", rate)
        kcell = "n/a (always on)" if s == "off" else f"**{fmt(kv)}** ({runs(kvs)}){unclean(c,'crossbar')}"
        add(f"| {labels[s]}: sessions/s (median; runs) | **{fmt(sv)}** ({runs(svs)}){unclean(c,'shardbar')} | "
            f"{kcell} | {'' if s == 'off' else fr(ratio(sv, kv))} |")
        sp, sps = med(c, "shardbar", p99)
        kp, kps = med(c, "crossbar", p99)
        kcell = "n/a" if s == "off" else f"{fmt(kp,'us')} ({runs(kps,'us')})"
        add(f"| {labels[s]}: connect→WELCOME p99 (median; runs) | {fmt(sp,'us')} ({runs(sps,'us')}) | {kcell} | "
            f"{'' if s == 'off' else (fr(ratio(kp, sp)) + ' lower')} |")
    s_on_off = ratio(med("storm-listener", "shardbar", rate)[0], med("storm-off", "shardbar", rate)[0])
    add(f"| **listener / off**, sessions/s (medians; per repetition) | **{fr(s_on_off)}** "
        f"({per_rep('storm-listener','storm-off','shardbar',rate)}) | | |")
    s_nosub = ratio(med("storm-on", "shardbar", rate)[0], med("storm-off", "shardbar", rate)[0])
    add(f"| on, no subscriber / off, sessions/s (medians; per repetition) | {fr(s_nosub)} "
        f"({per_rep('storm-on','storm-off','shardbar',rate)}) | | |")
    s_l = ratio(med("storm-listener", "shardbar", rate)[0], med("storm-on", "shardbar", rate)[0])
    k_l = ratio(med("storm-listener", "crossbar", rate)[0], med("storm-on", "crossbar", rate)[0])
    add(f"| listener / no subscriber, sessions/s (medians; per repetition) | {fr(s_l)} "
        f"({per_rep('storm-listener','storm-on','shardbar',rate)}) | {fr(k_l)} "
        f"({per_rep('storm-listener','storm-on','crossbar',rate)}) | |")
    # What the listener got, per repetition.
    got = {}
    try:
        for line in open(f"{work}/listener.txt"):
            _, router, i, joins, leaves, lag, lost = line.split()
            got.setdefault(router, []).append((int(i), int(joins), int(leaves), float(lag), lost == "1"))
    except FileNotFoundError:
        pass
    want = int(E["SESSIONS"])
    def got_cell(router):
        v = sorted(got.get(router, []))
        if not v:
            return "n/a"
        parts = []
        for i, j, l, lag, lost in v:
            ok = j == want and l == want
            parts.append(("" if ok else "**") + f"{j} joins, {l} leaves" + ("" if ok else "**")
                         + f" (last {lag:.2f} s after the storm)" + (", session lost" if lost else ""))
        return "; ".join(parts)
    add(f"| events the listener counted (of {want} each; per repetition) | {got_cell('shardbar')} | {got_cell('crossbar')} | |")
    def outcome(router):
        rs = [load(p) for p in glob.glob(f"{work}/storm-*-{router}-*.json")]
        rs = [r for r in rs if r and r.get("logins")]
        if not rs:
            return "no report"
        a = sum(r["logins"]["attempted"] for r in rs)
        ok = sum(r["logins"]["succeeded"] for r in rs)
        fl = sum(r["logins"]["failed"] for r in rs)
        un = sum(r["logins"]["unfinished"] for r in rs)
        return f"{ok}/{a} ({fl} failed, {un} unfinished)"
    add(f"| sessions opened, all storms | {outcome('shardbar')} | {outcome('crossbar')} | |")
    add("")
    add("Latency is from the TCP connect to the WELCOME. The listener's counts are read after the storm; \"last … "
        "after the storm\" is when its last event arrived, counted from loadgen's exit. The listener runs on the same "
        "two cores as the router and loadgen. No target was set for the storms.\n")

if "fanout" in cases:
    subs = E["SUBSCRIBERS"]
    add(f"### Fan-out 1 → {subs}, 64 B, RawSocket + MessagePack: event history (limit {E['HISTORY_LIMIT']}) vs none\n")
    add("| figure | shardbar | Crossbar.io | shardbar / Crossbar | target | met |")
    add("|---|---|---|---|---|---|")
    rate = lambda r: r["received_per_s"]
    p99 = lambda r: r["latency"]["p99_us"]
    m = {(c, r): med(f"fanout-{c}", r, rate) for c in ("plain", "history") for r in ("shardbar", "crossbar")}
    for c, label in (("plain", "no history"), ("history", "history on the topic")):
        s, sv = m[(c, "shardbar")]
        k, kv = m[(c, "crossbar")]
        add(f"| {label}: delivered events/s (median; runs) | **{fmt(s)}** ({runs(sv)}){unclean('fanout-'+c,'shardbar')} | "
            f"**{fmt(k)}** ({runs(kv)}){unclean('fanout-'+c,'crossbar')} | {fx(ratio(s,k))} | | |")
    sr = ratio(m[("history", "shardbar")][0], m[("plain", "shardbar")][0])
    cr = ratio(m[("history", "crossbar")][0], m[("plain", "crossbar")][0])
    judge = "not judged (smoke run)" if quick else met(sr >= 0.9)
    add(f"| history / none (medians; per repetition) | **{fr(sr)}** ({per_rep('fanout-history','fanout-plain','shardbar',rate)}) | "
        f"{fr(cr)} ({per_rep('fanout-history','fanout-plain','crossbar',rate)}) | | shardbar ≥ 0.9× | {judge} |")
    add(f"| p99 publish→deliver, none / history (closed loop, window in flight) | "
        f"{fmt(med('fanout-plain','shardbar',p99)[0],'us')} / {fmt(med('fanout-history','shardbar',p99)[0],'us')} | "
        f"{fmt(med('fanout-plain','crossbar',p99)[0],'us')} / {fmt(med('fanout-history','crossbar',p99)[0],'us')} | | | |")
    def stored(router):
        parts = []
        for p in sorted(glob.glob(f"{work}/history-check-{router}-*.txt")):
            i = p.rsplit("-", 1)[1][:-4]
            ans = next((l.strip()[len("history: "):] for l in open(p) if l.startswith("history:")), "no answer")
            parts.append(f"#{i}: {ans}")
        return "; ".join(parts) or "n/a"
    add(f"| events returned by `wamp.subscription.get_events` after the run (limit {E['HISTORY_LIMIT']}) | "
        f"{stored('shardbar')} | {stored('crossbar')} | | | |")
    add("")

rows = [l.split() for l in open(f"{work}/runs.txt").read().splitlines() if l.split()[3:4] != ["0"]]
if rows:
    add("Runs that were not clean (exit status; the report and loadgen's output are in the work directory):\n")
    add("| case | router | run | exit | what loadgen saw |")
    add("|---|---|---|---|---|")
    for c, r, i, rc in rows:
        rep = load(f"{work}/{c}-{r}-{i}.json") or {}
        g = rep.get("integrity") or {}
        why = [f"{k.replace('_', ' ')} {v}" for k, v in g.items() if v]
        for k in ("sessions_dropped", "protocol_errors"):
            if rep.get(k):
                why.append(f"{k.replace('_', ' ')} {rep[k]}")
        if rep.get("aborts"):
            why.append(f"aborts {rep['aborts']}")
        why += [str(e)[:160].replace("|", "\\|") for e in (rep.get("errors") or [])[:2]]
        add(f"| {c} | {r} | {i} | {rc} | {'; '.join(why) if rep else 'no report'} |")
else:
    add("Every run exited 0 (storms: every session opened; fan-outs: no loss, no reordering, no dropped session).")

section = "\n".join(lines).rstrip() + "\n"
text = open(out).read() if os.path.exists(out) else ""
# Replace the section (from its heading to the next level-2 heading or the end), or append it.
m = re.search(r"^" + re.escape(HEADING) + r"\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[:m.start()] + section + ("\n" + text[m.end():] if text[m.end():] else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
open(os.path.join(work, "section.md"), "w").write(section)
PYEOF
say "wrote the \"Meta API and event history\" section of $RESULTS"
