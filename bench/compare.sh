#!/usr/bin/env bash
# shardbar vs Crossbar.io, side by side, with loadgen.
#
# On a fresh machine: builds shardbar and loadgen (release), installs Crossbar.io from PyPI
# into bench/.venv, then runs the same loadgen scenarios against both routers alternately
# (shardbar, Crossbar, shardbar, Crossbar, ...; REPEATS times each), plus loadgen's raw TCP
# baselines, and writes bench/RESULTS.md (medians of the repeats, ratios, targets) with the
# latency plots in bench/results/. Raw JSON reports stay in bench/work/<stamp>/ (ignored).
#
# Every run is bounded in time; both routers are started on free loopback ports and stopped
# by PID. Run it when the machine is quiet: the load averages at start and end go into the
# results.
#
# Environment:
#   REPEATS=3            runs per scenario and router (medians are reported)
#   DURATION=5 WARMUP=1  seconds per measured run
#   SESSIONS=10000       idle sessions for the memory row
#   QUICK=1              smoke run: REPEATS=1, DURATION=1, SESSIONS=1000, 200 subscribers
#   CROSSBAR_VERSION=26.10.1   the PyPI release to install (installs on Python 3.11)
#   PYTHON=python3.11    interpreter for the venv
#   RESULTS=bench/RESULTS.md   where to write the summary
#   REPORT_FROM=bench/work/STAMP   rewrite RESULTS.md (and plots) from an earlier run's
#                        reports without running anything
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SESSIONS=${SESSIONS:-10000}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
FANOUT_WINDOW=${FANOUT_WINDOW:-256}
RPC_WINDOW=${RPC_WINDOW:-8}
CROSSBAR_VERSION=${CROSSBAR_VERSION:-26.10.1}
RESULTS=${RESULTS:-bench/RESULTS.md}
if [[ "${QUICK:-0}" == 1 ]]; then
    REPEATS=1 DURATION=1 WARMUP=0.5 SESSIONS=1000 SUBSCRIBERS=200
fi
STAMP=$(date -u +%Y%m%d-%H%M%S)
WORK=$ROOT/bench/work/$STAMP
if [[ -n "${REPORT_FROM:-}" ]]; then
    WORK=$(cd "$REPORT_FROM" && pwd)
    STAMP=$(basename "$WORK")
fi
PLOTS=$ROOT/bench/results
mkdir -p "$WORK" "$PLOTS"
LOG=$WORK/compare.log
LOADGEN=$ROOT/target/release/loadgen
SHARDBAR=$ROOT/target/release/shardbar
VENV=$ROOT/bench/.venv

say() { echo "[compare $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

# ---- build and install ------------------------------------------------------------------
if [[ -z "${REPORT_FROM:-}" ]]; then

say "building shardbar and loadgen (release)"
cargo build --release --bins >>"$LOG" 2>&1
# The round-trip floor (bench/echo_floor.rs): built here so the loop only runs it.
cargo bench --bench echo_floor --no-run >>"$LOG" 2>&1

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    for p in python3.11 python3.10 python3.12 python3; do
        if command -v "$p" >/dev/null 2>&1; then echo "$p"; return; fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        local v
        v=$(pyenv versions --bare | grep -E '^3\.(11|10)\.' | tail -1)
        [[ -n "$v" ]] && { echo "$(pyenv root)/versions/$v/bin/python"; return; }
    fi
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
PY_VERSION=$("$VENV/bin/python" --version 2>&1)
say "crossbar $CB_VERSION ($PY_VERSION)"

# ---- routers ------------------------------------------------------------------------------

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

ROUTER_PID=""
ROUTER_PORT=""
STARTS=$WORK/starts.tsv   # router, start_ms, idle_rss_kib
: >"$STARTS"

start_router() { # name
    local name=$1 t0
    ROUTER_PORT=$(free_port)
    t0=$(now_ms)
    case $name in
    shardbar)
        # The defaults plus /metrics on the WAMP port (mesh_sent scrapes it there).
        printf '[metrics]\nhttp_endpoints_on_wamp_port = true\n' >"$WORK/shardbar.toml"
        "$SHARDBAR" --config "$WORK/shardbar.toml" --listen "127.0.0.1:$ROUTER_PORT" >"$WORK/shardbar-$ROUTER_PORT.log" 2>&1 &
        ROUTER_PID=$!
        ;;
    crossbar)
        local dir=$WORK/crossbar-$ROUTER_PORT/.crossbar
        mkdir -p "$dir"
        sed "s/@PORT@/$ROUTER_PORT/" bench/crossbar/config.json.in >"$dir/config.json"
        "$VENV/bin/crossbar" start --cbdir "$dir" --loglevel warn >"$WORK/crossbar-$ROUTER_PORT.log" 2>&1 &
        ROUTER_PID=$!
        ;;
    esac
    if ! "$LOADGEN" wait --url "ws://127.0.0.1:$ROUTER_PORT/ws" --timeout 90s >/dev/null; then
        say "$name did not come up; see $WORK"
        exit 2
    fi
    local ready=$(( $(now_ms) - t0 ))
    sleep 1
    local rss
    rss=$("$LOADGEN" rss --pid "$ROUTER_PID")
    printf '%s\t%s\t%s\n' "$name" "$ready" "$rss" >>"$STARTS"
    say "$name up on port $ROUTER_PORT (pid $ROUTER_PID) in $ready ms, idle RSS $rss KiB"
}

stop_router() {
    [[ -z "$ROUTER_PID" ]] && return
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$ROUTER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$ROUTER_PID" 2>/dev/null; then
        say "pid $ROUTER_PID ignored SIGTERM for 10 s; SIGKILL"
        kill -KILL "$ROUTER_PID" 2>/dev/null || true
    fi
    wait "$ROUTER_PID" 2>/dev/null || true
    ROUTER_PID=""
}
trap stop_router EXIT

# ---- scenarios ----------------------------------------------------------------------------

COMMON=(--warmup "$WARMUP" --duration "$DURATION" --drain 5 --no-progress --quiet --connect-timeout 180s)

# Mesh messages the running shardbar has sent (all shards), from its /metrics.
mesh_sent() {
    curl -s "http://127.0.0.1:$ROUTER_PORT/metrics" | awk '/^shardbar_mesh_messages_sent_total/ {s+=$2} END {print s+0}'
}

# run CASE ROUTER I loadgen-args... ; the URL's port is the running router's.
run() {
    local case=$1 router=$2 i=$3
    shift 3
    local out=$WORK/$case-$router-$i.json
    local args=("$@")
    args=("${args[@]//@PORT@/$ROUTER_PORT}")
    local pid_args=()
    [[ "$router" != raw ]] && pid_args=(--pid "$ROUTER_PID")
    say "$case [$router #$i]: loadgen ${args[*]}"
    local rc=0
    # Scenario flags come after the common ones, so a scenario can override them.
    timeout 600 "$LOADGEN" "${args[0]}" "${COMMON[@]}" "${args[@]:1}" "${pid_args[@]}" --label "$router" --json "$out" \
        >>"$LOG" 2>&1 || rc=$?
    [[ $rc -ne 0 ]] && say "  exit $rc (kept in the report)"
    echo "$case $router $i $rc" >>"$WORK/runs.txt"
}

FANOUT=(fanout --subscribers "$SUBSCRIBERS" --payload 64 --window "$FANOUT_WINDOW")
CASES_RS=(fanout-rs "${FANOUT[@]}" --url "rs://127.0.0.1:@PORT@" --serializer msgpack)
RPC64=(rpc --callers 64 --callees 1 --window "$RPC_WINDOW" --payload 64 --url "rs://127.0.0.1:@PORT@" --serializer msgpack)
RPC1=(rpc --callers 1 --callees 1 --window 1 --payload 64 --url "rs://127.0.0.1:@PORT@" --serializer msgpack)

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $LOAD_START (REPEATS=$REPEATS DURATION=$DURATION)"
: >"$WORK/runs.txt"

for i in $(seq "$REPEATS"); do
    # Raw baselines first: no router running.
    run raw-fanout raw "$i" raw --shape fanout --subscribers "$SUBSCRIBERS" --payload 64 --window "$FANOUT_WINDOW"
    run raw-echo raw "$i" raw --shape echo --callers 1 --window 1 --payload 64
    # One loopback round trip through a blocking thread vs a glommio executor, echo and
    # two-hop relay, no WAMP: the floor under the 1-caller RPC figure.
    say "echo-floor [#$i]: cargo bench --bench echo_floor"
    ECHO_FLOOR_SECS=3 timeout 120 cargo bench --bench echo_floor >"$WORK/echo-floor-$i.txt" 2>>"$LOG" || say "  echo_floor failed"
    for router in shardbar crossbar; do
        start_router "$router"
        run fanout-rs "$router" "$i" "${FANOUT[@]}" --url "rs://127.0.0.1:@PORT@" --serializer msgpack
        run fanout-ws "$router" "$i" "${FANOUT[@]}" --url "ws://127.0.0.1:@PORT@/ws" --serializer json
        run rpc64 "$router" "$i" "${RPC64[@]}"
        # Caller and callee land on shards by the kernel's SO_REUSEPORT hash: same shard or
        # not is a coin toss per run. shardbar's mesh counter says which (a cross-shard
        # call sends 2 mesh messages), so the report can give each case its own median.
        [[ "$router" == shardbar ]] && mesh_before=$(mesh_sent)
        run rpc1 "$router" "$i" "${RPC1[@]}"
        [[ "$router" == shardbar ]] && echo $(($(mesh_sent) - mesh_before)) >"$WORK/rpc1-shardbar-$i.mesh"
        # Open loop at half this router's maximum fan-out rate (from this repetition's
        # closed-loop run), for the p99 target.
        half=$("$VENV/bin/python" -c "import json,sys; r=json.load(open(sys.argv[1])); print(max(1,int(r['sent_per_s']/2)))" \
            "$WORK/fanout-rs-$router-$i.json" 2>/dev/null || echo 1)
        run fanout-half "$router" "$i" fanout --subscribers "$SUBSCRIBERS" --payload 64 --rate "$half" \
            --url "rs://127.0.0.1:@PORT@" --serializer msgpack
        stop_router
        if [[ "$router" == shardbar ]]; then
            # The raw TCP fan-out at shardbar's half rate: what the machine gives at that rate
            # with no WAMP (bounds the p99 target).
            run raw-half raw "$i" raw --shape fanout --subscribers "$SUBSCRIBERS" --payload 64 --rate "$half"
        fi
    done
done

# Idle sessions' memory on freshly started routers; then slow consumers: 10 of 50
# subscribers never read while 2000 publications/s of 1 KiB go out (open loop).
for router in shardbar crossbar; do
    start_router "$router"
    run connections "$router" 1 connections --sessions "$SESSIONS" --url "rs://127.0.0.1:@PORT@" --serializer msgpack \
        --warmup 2
    stop_router
    start_router "$router"
    run slow "$router" 1 fanout --subscribers 50 --stall 10 --payload 1024 --rate 2000 --duration 10 \
        --url "rs://127.0.0.1:@PORT@" --serializer msgpack
    stop_router
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at end: $LOAD_END"
{
    echo "REPEATS=$REPEATS DURATION=$DURATION WARMUP=$WARMUP SESSIONS=$SESSIONS"
    echo "FANOUT_WINDOW=$FANOUT_WINDOW RPC_WINDOW=$RPC_WINDOW"
    echo "LOAD_START='$LOAD_START' LOAD_END='$LOAD_END' DATE='$(date -u '+%Y-%m-%d %H:%M UTC')'"
    echo "CB_VERSION='$CB_VERSION' PY_VERSION='$PY_VERSION'"
    echo "SB_VERSION='$("$SHARDBAR" --version) ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench/*.md' ':!bench/results' || echo '+dirty'))'"
} >"$WORK/meta.env"
stop_router
fi # not REPORT_FROM
# shellcheck disable=SC1091
source "$WORK/meta.env"

# ---- plots and RESULTS.md -----------------------------------------------------------------

for case in fanout-rs fanout-ws rpc64 fanout-half slow; do
    "$LOADGEN" plot "$WORK/$case-shardbar-1.json" "$WORK/$case-crossbar-1.json" --out "$PLOTS/$case.svg" \
        --title "$case: shardbar vs Crossbar.io (run 1)" >>"$LOG" 2>&1 || true
done
"$LOADGEN" plot "$WORK/rpc1-shardbar-1.json" "$WORK/raw-echo-raw-1.json" "$WORK/rpc1-crossbar-1.json" \
    --out "$PLOTS/rpc1.svg" --title "1-caller round trip: shardbar, raw TCP echo, Crossbar.io (run 1)" >>"$LOG" 2>&1 || true

if [[ -z "${SB_VERSION:-}" ]]; then
    # Our own outputs (RESULTS.md, plots) do not make the tree "dirty".
    SB_VERSION="$("$SHARDBAR" --version) ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench/*.md' ':!bench/results' || echo '+dirty'))"
fi
"$VENV/bin/python" - "$WORK" "$RESULTS" <<'PYEOF'
import json, os, statistics, sys, glob
work, out = sys.argv[1], sys.argv[2]

def reports(case, router):
    rs = []
    for p in sorted(glob.glob(f"{work}/{case}-{router}-*.json")):
        try:
            rs.append(json.load(open(p)))
        except Exception:
            pass
    return rs

def med(case, router, f):
    vals = [f(r) for r in reports(case, router)]
    vals = [v for v in vals if v is not None]
    return (statistics.median(vals), vals) if vals else (float("nan"), [])

def fmt(v, unit=""):
    if v != v:
        return "n/a"
    if unit == "us":
        return f"{v/1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"
    if unit == "kib":
        return f"{v/1024:.1f} MiB" if v >= 10240 else f"{v:.0f} KiB"
    if v >= 1e6:
        return f"{v/1e6:.2f} M"
    if v >= 1e3:
        return f"{v/1e3:.1f} k"
    return f"{v:.1f}"

def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")

def fails(case, router):
    bad = [r for r in reports(case, router) if not r.get("ok")]
    return f" ({len(bad)} run(s) not clean)" if bad else ""

def rssnote(case):
    rs = reports(case, "crossbar")
    grew = [r for r in rs if (r.get("rss") or {}).get("grew_under_load")]
    mx = max(((r.get("rss") or {}).get("max_kib", 0) for r in rs), default=0)
    rd = min(((r.get("rss") or {}).get("ready_kib", 0) for r in rs), default=0)
    if grew:
        return f"**Crossbar RSS grew from {fmt(rd,'kib')} to {fmt(mx,'kib')} during the run: it buffers instead of pushing back.**"
    return f"Crossbar RSS {fmt(rd,'kib')} → max {fmt(mx,'kib')} (bounded here: loadgen's closed loop keeps at most the window in flight)."

rows = []
def table(title, lines, note=""):
    rows.append(f"\n### {title}\n")
    rows.append("| figure | shardbar | Crossbar.io | shardbar / Crossbar | target | met |")
    rows.append("|---|---|---|---|---|---|")
    rows.extend(lines)
    if note:
        rows.append(f"\n{note}")

def vals(v):
    return ", ".join(fmt(x) for x in v)

# Fan-out
raw_evs, raw_v = med("raw-fanout", "raw", lambda r: r["received_per_s"])
for case, name in [("fanout-rs", "Fan-out 1 → %s, 64 B, RawSocket + MessagePack"), ("fanout-ws", "Fan-out 1 → %s, 64 B, WebSocket + JSON")]:
    sb, sbv = med(case, "shardbar", lambda r: r["received_per_s"])
    cb, cbv = med(case, "crossbar", lambda r: r["received_per_s"])
    r = ratio(sb, cb)
    rr = ratio(sb, raw_evs)
    sbl, _ = med(case, "shardbar", lambda r: r["latency"]["p99_us"])
    cbl, _ = med(case, "crossbar", lambda r: r["latency"]["p99_us"])
    sbp, _ = med(case, "shardbar", lambda r: r["sent_per_s"])
    cbp, _ = med(case, "crossbar", lambda r: r["sent_per_s"])
    subs = (reports(case, "shardbar") or [{}])[0].get("params", {}).get("subscribers", "?")
    table(name % subs, [
        f"| delivered events/s (median; runs) | **{fmt(sb)}** ({vals(sbv)}){fails(case,'shardbar')} | **{fmt(cb)}** ({vals(cbv)}){fails(case,'crossbar')} | **{r:.0f}×** | ≥ 100× | {'yes' if r >= 100 else 'NO'} |",
        f"| vs raw TCP fan-out baseline ({fmt(raw_evs)} ev/s; runs {vals(raw_v)}) | {rr:.2f}× raw | {ratio(cb, raw_evs):.3f}× raw | | shardbar ≥ 0.5× raw | {'yes' if rr >= 0.5 else 'NO'} |",
        f"| publications/s | {fmt(sbp)} | {fmt(cbp)} | {ratio(sbp,cbp):.0f}× | | |",
        f"| p99 publish→deliver (closed loop, window in flight) | {fmt(sbl,'us')} | {fmt(cbl,'us')} | | | |",
    ], rssnote(case))

# Half-rate latency
sb, sbv = med("fanout-half", "shardbar", lambda r: r["latency"]["p99_us"])
cb, cbv = med("fanout-half", "crossbar", lambda r: r["latency"]["p99_us"])
sbr, _ = med("fanout-half", "shardbar", lambda r: r["params"]["rate_per_source"])
cbr, _ = med("fanout-half", "crossbar", lambda r: r["params"]["rate_per_source"])
sb50, _ = med("fanout-half", "shardbar", lambda r: r["latency"]["p50_us"])
cb50, _ = med("fanout-half", "crossbar", lambda r: r["latency"]["p50_us"])
sbmax, _ = med("fanout-half", "shardbar", lambda r: r["latency"]["max_us"])
cbmax, _ = med("fanout-half", "crossbar", lambda r: r["latency"]["max_us"])
rh99, rhv = med("raw-half", "raw", lambda r: r["latency"]["p99_us"])
rh50, _ = med("raw-half", "raw", lambda r: r["latency"]["p50_us"])
table("Fan-out latency at half the maximum rate (open loop, RawSocket + MessagePack)", [
    f"| publications/s (half of each router's own max) | {fmt(sbr)} | {fmt(cbr)} | | | |",
    f"| p50 publish→deliver | {fmt(sb50,'us')} | {fmt(cb50,'us')} | | | |",
    f"| p99 publish→deliver (median; runs) | **{fmt(sb,'us')}** ({', '.join(fmt(x,'us') for x in sbv)}){fails('fanout-half','shardbar')} | {fmt(cb,'us')} ({', '.join(fmt(x,'us') for x in cbv)}) | | shardbar ≤ 1 ms | {'yes' if sb <= 1000 else 'NO'} |",
    f"| max | {fmt(sbmax,'us')} | {fmt(cbmax,'us')} | | | |",
    f"| raw TCP fan-out at shardbar's half rate: p50 / p99 (runs) | {fmt(rh50,'us')} / {fmt(rh99,'us')} ({', '.join(fmt(x,'us') for x in rhv)}) | | | machine bound | |",
], "Latency is measured from each message's intended send time (coordinated omission corrected). " + rssnote("fanout-half"))

# RPC 64
sb, sbv = med("rpc64", "shardbar", lambda r: r["received_per_s"])
cb, cbv = med("rpc64", "crossbar", lambda r: r["received_per_s"])
r = ratio(sb, cb)
sbl, _ = med("rpc64", "shardbar", lambda r: r["latency"]["p99_us"])
cbl, _ = med("rpc64", "crossbar", lambda r: r["latency"]["p99_us"])
table("RPC: 64 callers → 1 callee (RawSocket + MessagePack, window %s calls per caller)" % ((reports("rpc64","shardbar") or [{}])[0].get("params",{}).get("window","?")), [
    f"| calls/s (median; runs) | **{fmt(sb)}** ({vals(sbv)}){fails('rpc64','shardbar')} | **{fmt(cb)}** ({vals(cbv)}){fails('rpc64','crossbar')} | **{r:.0f}×** | ≥ 30× | {'yes' if r >= 30 else 'NO'} |",
    f"| p99 call→result | {fmt(sbl,'us')} | {fmt(cbl,'us')} | | | |",
], rssnote("rpc64"))

# RPC 1
raw50, rawv = med("raw-echo", "raw", lambda r: r["latency"]["p50_us"])
raw99, _ = med("raw-echo", "raw", lambda r: r["latency"]["p99_us"])
sb50, sbv = med("rpc1", "shardbar", lambda r: r["latency"]["p50_us"])
cb50, cbv = med("rpc1", "crossbar", lambda r: r["latency"]["p50_us"])
sb99, _ = med("rpc1", "shardbar", lambda r: r["latency"]["p99_us"])
cb99, _ = med("rpc1", "crossbar", lambda r: r["latency"]["p99_us"])
sbc, _ = med("rpc1", "shardbar", lambda r: r["received_per_s"])
cbc, _ = med("rpc1", "crossbar", lambda r: r["received_per_s"])
rr = ratio(sb50, raw50)
same, cross = [], []
for p in sorted(glob.glob(f"{work}/rpc1-shardbar-*.json")):
    try:
        r = json.load(open(p))
        mesh = int(open(p[:-5] + ".mesh").read())
    except Exception:
        continue
    (cross if mesh > r["received_total"] else same).append(r["latency"]["p50_us"])
def mode(v):
    return f"{fmt(statistics.median(v),'us')} ({', '.join(fmt(x,'us') for x in v)})" if v else "no run"
import re
floor = {}
for p in sorted(glob.glob(f"{work}/echo-floor-*.txt")):
    for line in open(p):
        m = re.match(r"^(.*?)\s+(echo|relay)\s+([\d.]+)\s+([\d.]+)\s+\d+\s*$", line)
        if m:
            floor.setdefault((m.group(1).strip(), m.group(2)), []).append(float(m.group(3)))
def floor_med(server, shape):
    v = floor.get((server, shape), [])
    return (statistics.median(v), v) if v else (float("nan"), [])
te, tev = floor_med("blocking thread", "echo")
ge, gev = floor_med("glommio executor", "echo")
tr, trv = floor_med("blocking thread", "relay")
gr, grv = floor_med("glommio executor", "relay")
table("RPC round trip: 1 caller, 1 outstanding call (RawSocket + MessagePack) next to raw TCP echo", [
    f"| p50 call→result (median; runs) | **{fmt(sb50,'us')}** ({', '.join(fmt(x,'us') for x in sbv)}) | {fmt(cb50,'us')} ({', '.join(fmt(x,'us') for x in cbv)}) | {ratio(cb50, sb50):.1f}× faster | | |",
    f"| raw TCP echo p50 (runs) | {fmt(raw50,'us')} ({', '.join(fmt(x,'us') for x in rawv)}) | | | | |",
    f"| p50 / raw echo p50 | **{rr:.1f}×** | {ratio(cb50, raw50):.1f}× | | shardbar ≤ 2.5× | {'yes' if rr <= 2.5 else 'NO'} |",
    f"| p50, caller and callee on the same shard (runs; from the router's mesh counter) | {mode(same)} | | | | |",
    f"| p50, caller and callee on different shards (runs) | {mode(cross)} | | | | |",
    f"| p99 call→result (raw echo p99 {fmt(raw99,'us')}) | {fmt(sb99,'us')} | {fmt(cb99,'us')} | | | |",
    f"| calls/s | {fmt(sbc)} | {fmt(cbc)} | | | |",
    f"| floor, no WAMP (`cargo bench --bench echo_floor`, p50 of {len(grv)} runs): echo through a blocking thread / a glommio executor | {fmt(te,'us')} / {fmt(ge,'us')} | | | | |",
    f"| floor: two-hop relay (caller → server → callee → back) through a blocking thread / a glommio executor | {fmt(tr,'us')} / {fmt(gr,'us')} ({ratio(gr, te):.1f}× the echo) | | | | |",
    f"| shardbar p50 / glommio two-hop floor | **{ratio(sb50, gr):.1f}×** | | | | |",
])

# Connections
sbc = (reports("connections", "shardbar") or [{}])[0]
cbc = (reports("connections", "crossbar") or [{}])[0]
def rss(r, k):
    return (r.get("rss") or {}).get(k, float("nan"))
table(f"{sbc.get('sessions', '?')} idle sessions (RawSocket + MessagePack), freshly started routers", [
    f"| RSS before → with the sessions | {fmt(rss(sbc,'before_kib'),'kib')} → {fmt(rss(sbc,'ready_kib'),'kib')} | {fmt(rss(cbc,'before_kib'),'kib')} → {fmt(rss(cbc,'ready_kib'),'kib')} | | | |",
    f"| per session | **{rss(sbc,'per_session_kib'):.1f} KiB** | **{rss(cbc,'per_session_kib'):.1f} KiB** | {ratio(rss(sbc,'per_session_kib'), rss(cbc,'per_session_kib')):.2f}× | | |",
    f"| time to open them all | {sbc.get('setup_s', float('nan')):.2f} s | {cbc.get('setup_s', float('nan')):.2f} s | | | |",
    f"| connect→WELCOME p99 | {fmt(sbc.get('setup_latency',{}).get('p99_us',float('nan')),'us')} | {fmt(cbc.get('setup_latency',{}).get('p99_us',float('nan')),'us')} | | | |",
])

# Slow consumers
sbs = (reports("slow", "shardbar") or [{}])[0]
cbs = (reports("slow", "crossbar") or [{}])[0]
def growth(r):
    return (r.get("rss") or {}).get("growth_kib", float("nan"))
table("Slow consumers: 10 of 50 subscribers never read; 2000 publications/s of 1 KiB (open loop, RawSocket + MessagePack)", [
    f"| stalled subscribers disconnected by the router | {sbs.get('stalled_closed_by_router','?')} of {sbs.get('stalled','?')} | {cbs.get('stalled_closed_by_router','?')} of {cbs.get('stalled','?')} | | push back or disconnect | {'yes' if sbs.get('stalled_closed_by_router') == sbs.get('stalled') else 'NO'} |",
    f"| router RSS growth during the run | **{fmt(growth(sbs),'kib')}** | **{fmt(growth(cbs),'kib')}**{' — buffers without bound' if (cbs.get('rss') or {}).get('grew_under_load') else ''} | | | |",
    f"| p99 publish→deliver at the 40 healthy subscribers | {fmt(sbs.get('latency',{}).get('p99_us',float('nan')),'us')} | {fmt(cbs.get('latency',{}).get('p99_us',float('nan')),'us')} | | | |",
], "shardbar drops a connection more than `pending_bytes_max` (8 MiB) behind; Crossbar keeps queueing for it in memory, and its growth is the stalled subscribers' backlog (rate × size × time).")

# Start time and idle RSS
starts = [l.split("\t") for l in open(f"{work}/starts.tsv").read().splitlines() if l]
def smed(name, col):
    v = [float(s[col]) for s in starts if s[0] == name]
    return statistics.median(v) if v else float("nan"), len(v)
sbs, n1 = smed("shardbar", 1); cbs, n2 = smed("crossbar", 1)
sbr, _ = smed("shardbar", 2); cbr, _ = smed("crossbar", 2)
table(f"Start and idle footprint (medians of {n1} and {n2} starts)", [
    f"| start → first WELCOME | **{sbs:.0f} ms** | **{cbs:.0f} ms** | {ratio(cbs,sbs):.0f}× faster | | |",
    f"| idle RSS (process tree, 1 s after ready) | {fmt(sbr,'kib')} | {fmt(cbr,'kib')} | {ratio(cbr,sbr):.1f}× less | | |",
])

open(os.path.join(work, "tables.md"), "w").write("\n".join(rows) + "\n")
PYEOF

# Other bench scripts (auth.sh, authz.sh, meta.sh, scale.sh, soak.sh) write their own "## "
# sections into the same file (this one writes "###" headings only): keep them all, in the
# order they are in.
AUTH_SECTION=""
if [[ -f "$RESULTS" ]]; then
    AUTH_SECTION=$(awk '/^## / {on = 1} on' "$RESULTS")
fi
{
    echo "# shardbar vs Crossbar.io — loadgen results"
    echo
    echo "Generated by \`bench/compare.sh\` (REPEATS=$REPEATS, DURATION=${DURATION}s, WARMUP=${WARMUP}s). Do not edit by hand: rerun it."
    echo
    echo "- **Date:** $DATE"
    echo "- **Machine:** $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), $(free -g | awk '/^Mem/ {print $2}') GiB"
    echo "- **Load average** (1/5/15 min): $LOAD_START at start, $LOAD_END at end. The machine is shared and small: every figure is the median of $REPEATS runs, routers alternating, and the individual runs are listed."
    echo "- **Command:** \`REPEATS=$REPEATS DURATION=$DURATION WARMUP=$WARMUP SESSIONS=$SESSIONS bench/compare.sh\`"
    echo "- **Versions:** $SB_VERSION (default config: one shard per core, $(nproc) shards); Crossbar.io $CB_VERSION on $PY_VERSION (config: \`bench/crossbar/config.json.in\`, one router worker); loadgen from the same commit with $(nproc) worker threads; $(rustc --version)"
    echo "- **Setup:** both routers on loopback, realm1, anonymous, WebSocket and RawSocket on one port, JSON/MessagePack/CBOR. loadgen runs on the same $(nproc) cores. Closed loop = at most the window in flight (fan-out: $FANOUT_WINDOW publications; RPC: $RPC_WINDOW calls per caller); open loop = fixed rate, latency from the intended send time."
    echo "- **Raw JSON reports:** bench/work/$STAMP/ (not committed); plots: bench/results/*.svg."
    cat "$WORK/tables.md"
    echo
    echo "What bounds the targets that are missed, and the router-side findings, with the measurements: [bench/README.md](README.md#what-bounds-the-results-measured-2026-11-22-see-resultsmd)."
    echo
    echo "### Plots (run 1)"
    echo
    for p in fanout-rs fanout-ws fanout-half rpc64 rpc1 slow; do
        echo "- [$p](results/$p.svg)"
    done
    echo
    echo "### Runs that were not clean"
    echo
    if awk '$4 != 0' "$WORK/runs.txt" | grep -q .; then
        echo '| case | router | run | exit |'
        echo '|---|---|---|---|'
        awk '$4 != 0 {printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}' "$WORK/runs.txt"
    else
        echo "None: every run exited 0 (closed loop: no loss, no reordering, no dropped session)."
    fi
    if [[ -n "$AUTH_SECTION" ]]; then
        echo
        echo "$AUTH_SECTION"
    fi
} >"$RESULTS"
say "wrote $RESULTS"
