#!/usr/bin/env bash
# Idle sessions up to the open-file limit: router RSS per session, connect rate, the figure
# projected to 100 000 sessions, and what the router does past its descriptor limit —
# shardbar next to Crossbar.io, with loadgen.
#
# Each case starts a router afresh on a free 127.0.0.1 port (shardbar: SHARDS shards and a
# metrics listener; Crossbar: bench/crossbar/config.json.in, one router worker) with
# RLIMIT_NOFILE at the hard limit (`ulimit -n $(ulimit -Hn)`, 20 000 on these machines), and
# holds SESSIONS idle sessions with PROCS loadgen `connections` processes of SESSIONS/PROCS
# sessions each, process k binding its sockets to 127.0.0.(k+2) (`--source`; every loadgen
# process has its own descriptor limit). The holders hold until the script stops them
# (SIGTERM ends a loadgen hold early and it still writes its report). Once every holder
# says it holds (its progress line), the script waits SETTLE s and reads the router's RSS
# (the whole process tree, `loadgen rss`); the RSS before is read on the fresh router.
#   per session = (RSS with − RSS before) / sessions held
#   projection  = RSS before + per session × 100 000 (a projection: not measured)
#   connect rate = sessions held / the slowest holder's setup time (they start together);
#   connect→WELCOME p50/p99: the highest of the holders' own percentiles (an upper bound of
#   the merged one).
# KINDS: rs = RawSocket + MessagePack, ws = WebSocket + JSON.
#
# Past the limit (shardbar, EXHAUST_KIND, with SESSIONS held): one more loadgen process
# (from 127.0.0.(PROCS+2)) opens EXCESS sessions with --hold-partial (it holds what opened
# and reports the refused ones and those not open within EXCESS_TIMEOUT s). The router's CPU
# (from /proc/PID/stat) is read over CPU_WINDOW s before that (SESSIONS held, below the
# limit), while the excess tries, and over CPU_WINDOW s at the limit (does it spin?); its
# descriptors, one login over rs:// and one over ws:// (what a new client hears), then the
# excess process is stopped and /metrics scraped (`shardbar_connections_refused_total
# {reason="fd_limit"}` and `shardbar_accept_errors_total{reason="fd_limit"}`, before and
# after). After the holders leave, a new session must open (`loadgen wait`). The router must
# be alive throughout, with no panic in its log.
#
# Target: shardbar ≤ TARGET_KIB KiB RSS per idle session (RawSocket and WebSocket).
# Writes the section "Scale: idle sessions up to the descriptor limit" of bench/RESULTS.md
# (that section only) and keeps reports, configs and logs in bench/work/<stamp>-scale/.
#
# Environment:
#   SESSIONS=19000 PROCS=4     sessions held, and over how many loadgen processes
#   CONCURRENCY=128            openings in progress at once per process
#   EXCESS=1500 EXCESS_TIMEOUT=60   the exhaustion case (SESSIONS + EXCESS attempted)
#   EXHAUST_KIND=rs            the kind the exhaustion case runs on (none: skip it)
#   KINDS="rs ws" ROUTERS="shardbar crossbar" SHARDS=2
#   SETUP_TIMEOUT=300          seconds a holder may take to open its sessions
#   SETTLE=3 CPU_WINDOW=5      seconds
#   TARGET_KIB=4
#   PROFILE=release            release | debug (the optimised dev profile of `cargo build`)
#   NO_BUILD=1                 use target/$PROFILE as it is (default: cargo build --bins)
#   VENV=bench/.venv           Crossbar's venv, as compare.sh makes it (without it, Crossbar
#                              is left out and the section says so)
#   RESULTS=bench/RESULTS.md
#   REPORT_FROM=bench/work/STAMP-scale   rewrite the section from an earlier run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SESSIONS=${SESSIONS:-19000}
PROCS=${PROCS:-4}
CONCURRENCY=${CONCURRENCY:-128}
EXCESS=${EXCESS:-1500}
EXCESS_TIMEOUT=${EXCESS_TIMEOUT:-60}
EXHAUST_KIND=${EXHAUST_KIND:-rs}
KINDS=${KINDS:-rs ws}
ROUTERS=${ROUTERS:-shardbar crossbar}
SHARDS=${SHARDS:-2}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300}
SETTLE=${SETTLE:-3}
CPU_WINDOW=${CPU_WINDOW:-5}
TARGET_KIB=${TARGET_KIB:-4}
PROFILE=${PROFILE:-release}
VENV=${VENV:-$ROOT/bench/.venv}
RESULTS=${RESULTS:-bench/RESULTS.md}
case $PROFILE in
release) BUILD=(cargo build --release --bins) ;;
debug) BUILD=(cargo build --bins) ;;
*) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
LOADGEN=$ROOT/target/$PROFILE/loadgen
SHARDBAR=$ROOT/target/$PROFILE/shardbar
STAMP=$(date -u +%Y%m%d-%H%M%S)-scale
WORK=$ROOT/bench/work/$STAMP
if [[ -n "${REPORT_FROM:-}" ]]; then
    WORK=$(cd "$REPORT_FROM" && pwd)
    STAMP=$(basename "$WORK")
fi
mkdir -p "$WORK"
LOG=$WORK/scale.log

say() { echo "[scale $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [[ -z "${REPORT_FROM:-}" ]]; then
T_START=$SECONDS

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    say "building shardbar and loadgen ($PROFILE)"
    "${BUILD[@]}" >>"$LOG" 2>&1
fi
[[ -x "$SHARDBAR" && -x "$LOADGEN" ]] || { say "no $SHARDBAR or $LOADGEN"; exit 2; }
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
if [[ " $ROUTERS " == *" crossbar "* ]] && ! "$VENV/bin/crossbar" version >/dev/null 2>&1; then
    say "no Crossbar in $VENV (bench/compare.sh installs it there): Crossbar is left out"
    ROUTERS=${ROUTERS//crossbar/}
fi
CB_VERSION=$("$VENV/bin/pip" show crossbar 2>/dev/null | awk '/^Version/ {print $2}' || true)
PY_VERSION=$("$VENV/bin/python" --version 2>&1 || true)
say "RLIMIT_NOFILE $NOFILE; $SESSIONS sessions over $PROCS processes; routers: $ROUTERS; kinds: $KINDS; work dir $WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_over SECONDS | cpu_over COMMAND...: the router's CPU (cores) over a sleep, or while the
# command runs (its output goes to stderr).
cpu_over() {
    local c0 t0 c1 t1
    c0=$(cpu_ticks "$ROUTER_PID")
    t0=$(date +%s%N)
    if [[ $1 =~ ^[0-9.]+$ ]]; then sleep "$1"; else "$@" >&2 || true; fi
    c1=$(cpu_ticks "$ROUTER_PID")
    t1=$(date +%s%N)
    awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v ns=$((t1 - t0)) 'BEGIN {printf "%.3f", c / hz / (ns / 1e9)}'
}
# Sum of a labelled counter over the shards, from a /metrics text file.
metric_sum() { awk -v m="$2" -v r="$3" 'index($0, m "{") == 1 && index($0, "reason=\"" r "\"") {s += $2} END {print s + 0}' "$1"; }

# ---- processes: everything started is stopped by PID --------------------------------------

ROUTER_PID=""
HOLDERS=()
EXCESS_PID=""

# stop_pids PID...: SIGTERM, up to 15 s for all of them to go, then SIGKILL what is left.
stop_pids() {
    (($# > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    local p left
    for _ in $(seq 150); do
        left=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null; then
            say "pid $p ignored SIGTERM for 15 s; SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
}
stop_all() {
    stop_pids ${EXCESS_PID:+"$EXCESS_PID"} "${HOLDERS[@]}"
    EXCESS_PID=""
    HOLDERS=()
    stop_pids ${ROUTER_PID:+"$ROUTER_PID"}
    ROUTER_PID=""
}
trap stop_all EXIT

# start_router NAME: sets ROUTER_PID, PORT, METRICS (shardbar's /metrics URL), ROUTER_LOG.
start_router() {
    local name=$1
    PORT=$(free_port)
    METRICS=""
    case $name in
    shardbar)
        local mport
        mport=$(free_port)
        METRICS="http://127.0.0.1:$mport/metrics"
        cat >"$WORK/shardbar-$PORT.toml" <<EOF
# Written by bench/scale.sh for one case.
[router]
shards = $SHARDS

[[listener]]
address = "127.0.0.1:$PORT"

[metrics]
address = "127.0.0.1:$mport"
EOF
        ROUTER_LOG=$WORK/shardbar-$PORT.log
        "$SHARDBAR" --config "$WORK/shardbar-$PORT.toml" >"$ROUTER_LOG" 2>&1 &
        ROUTER_PID=$!
        ;;
    crossbar)
        local dir=$WORK/crossbar-$PORT/.crossbar
        mkdir -p "$dir"
        sed "s/@PORT@/$PORT/" bench/crossbar/config.json.in >"$dir/config.json"
        ROUTER_LOG=$WORK/crossbar-$PORT.log
        "$VENV/bin/crossbar" start --cbdir "$dir" --loglevel warn >"$ROUTER_LOG" 2>&1 &
        ROUTER_PID=$!
        ;;
    esac
    if ! "$LOADGEN" wait --url "rs://127.0.0.1:$PORT" --timeout 90s >/dev/null 2>>"$LOG"; then
        say "$name did not come up; see $ROUTER_LOG"
        exit 2
    fi
    sleep 1
    say "$name up on port $PORT (pid $ROUTER_PID)"
}

url() { # KIND
    case $1 in
    rs) echo "rs://127.0.0.1:$PORT" ;;
    ws) echo "ws://127.0.0.1:$PORT/ws" ;;
    esac
}
serializer() { [[ $1 == rs ]] && echo msgpack || echo json; }

# wait_holding OUT_PREFIX PID...: until each process's progress says it holds its sessions
# (or it exits); returns 1 if one exited first or SETUP_TIMEOUT + 30 s passed.
wait_holding() {
    local prefix=$1 t0=$SECONDS k p
    shift
    while :; do
        local holding=0 k=0
        for p in "$@"; do
            if grep -q '\[hold\]' "$prefix-$k.err" 2>/dev/null; then
                holding=$((holding + 1))
            elif ! kill -0 "$p" 2>/dev/null; then
                say "  loadgen $prefix-$k exited before holding: $(tail -c 400 "$prefix-$k.err" | tr '\r\n' '  ')"
                return 1
            fi
            k=$((k + 1))
        done
        ((holding == $#)) && return 0
        if ((SECONDS - t0 > SETUP_TIMEOUT + 30)); then
            say "  only $holding of $# loadgen processes hold after $((SECONDS - t0)) s"
            return 1
        fi
        sleep 0.2
    done
}

# ---- one case ----------------------------------------------------------------------------

# hold ROUTER KIND: SESSIONS idle sessions over PROCS processes; RSS before and with; the
# exhaustion case when asked; results in $WORK/ROUTER-KIND.env and the holders' reports.
run_case() {
    local router=$1 kind=$2 name=$1-$2
    local env=$WORK/$name.env k n
    : >"$env"
    start_router "$router"
    local rss_before fds_before
    rss_before=$("$LOADGEN" rss --pid "$ROUTER_PID")
    fds_before=$(fds "$ROUTER_PID")
    say "$name: RSS before $rss_before KiB; opening $SESSIONS sessions over $PROCS processes"
    HOLDERS=()
    for ((k = 0; k < PROCS; k++)); do
        n=$((SESSIONS / PROCS + (k < SESSIONS % PROCS ? 1 : 0)))
        "$LOADGEN" connections --url "$(url "$kind")" --serializer "$(serializer "$kind")" --realm realm1 \
            --sessions "$n" --concurrency "$CONCURRENCY" --source "127.0.0.$((k + 2))" --warmup 0 --duration 3600 \
            --connect-timeout "${SETUP_TIMEOUT}s" --progress --quiet --label "$router" --json "$WORK/$name-hold-$k.json" \
            >"$WORK/$name-hold-$k.out" 2>"$WORK/$name-hold-$k.err" &
        HOLDERS+=($!)
    done
    local holding=1
    wait_holding "$WORK/$name-hold" "${HOLDERS[@]}" || holding=0
    printf 'holding=%s\nrss_before_kib=%s\nfds_before=%s\n' "$holding" "$rss_before" "$fds_before" >>"$env"
    if ((holding)); then
        sleep "$SETTLE"
        local rss_with fds_with
        rss_with=$("$LOADGEN" rss --pid "$ROUTER_PID")
        fds_with=$(fds "$ROUTER_PID")
        printf 'rss_with_kib=%s\nfds_with=%s\n' "$rss_with" "$fds_with" >>"$env"
        say "$name: all holding; RSS $rss_with KiB, $fds_with descriptors"
        if [[ $router == shardbar && $kind == "$EXHAUST_KIND" ]]; then
            exhaust "$name" "$env"
        fi
    fi
    stop_pids "${HOLDERS[@]}"
    HOLDERS=()
    if kill -0 "$ROUTER_PID" 2>/dev/null; then
        local t0 ms rc=0
        t0=$(date +%s%3N)
        "$LOADGEN" wait --url "$(url "$kind")" --timeout 30s >/dev/null 2>>"$LOG" || rc=$?
        ms=$(($(date +%s%3N) - t0))
        printf 'after_rc=%s\nafter_ms=%s\n' "$rc" "$ms" >>"$env"
        say "$name: after the sessions left, a new session: exit $rc in $ms ms"
    fi
    kill -0 "$ROUTER_PID" 2>/dev/null && echo "alive=1" >>"$env" || echo "alive=0" >>"$env"
    echo "panics=$(grep -ci 'panic' "$ROUTER_LOG" || true)" >>"$env"
    stop_pids "$ROUTER_PID"
    ROUTER_PID=""
}

# exhaust NAME ENV: EXCESS more sessions while SESSIONS are held (see the header).
exhaust() {
    local name=$1 env=$2 t0 t1
    curl -s --max-time 10 "$METRICS" >"$WORK/$name-metrics-before.txt" || true
    # The baseline: SESSIONS held, below the limit, nobody connecting.
    echo "idle_held_cpu_cores=$(cpu_over "$CPU_WINDOW")" >>"$env"
    say "$name: $EXCESS more sessions past the limit"
    t0=$(date +%s%N)
    "$LOADGEN" connections --url "$(url "$EXHAUST_KIND")" --serializer "$(serializer "$EXHAUST_KIND")" \
        --realm realm1 --sessions "$EXCESS" --concurrency "$CONCURRENCY" --source "127.0.0.$((PROCS + 2))" \
        --hold-partial --warmup 0 --duration 3600 --connect-timeout "${EXCESS_TIMEOUT}s" --progress \
        --label excess --json "$WORK/$name-excess.json" >"$WORK/$name-excess-0.out" 2>"$WORK/$name-excess-0.err" &
    EXCESS_PID=$!
    echo "excess_cpu_cores=$(cpu_over wait_holding "$WORK/$name-excess" "$EXCESS_PID")" >>"$env"
    t1=$(date +%s%N)
    # At the limit, nobody connecting: the router should sleep.
    {
        echo "excess_s=$(awk -v ns=$((t1 - t0)) 'BEGIN {printf "%.1f", ns / 1e9}')"
        echo "fds_full=$(fds "$ROUTER_PID")"
        echo "idle_full_cpu_cores=$(cpu_over "$CPU_WINDOW")"
    } >>"$env"
    # One new client per transport while full.
    local kind
    for kind in rs ws; do
        timeout 60 "$LOADGEN" logins --url "$(url "$kind")" --serializer "$(serializer "$kind")" --sessions 1 \
            --connect-timeout 10s --no-progress --quiet --json "$WORK/$name-probe-$kind.json" >>"$LOG" 2>&1 || true
    done
    kill -0 "$ROUTER_PID" 2>/dev/null && echo "alive_full=1" >>"$env" || echo "alive_full=0" >>"$env"
    stop_pids "$EXCESS_PID"
    EXCESS_PID=""
    sleep 1
    curl -s --max-time 10 "$METRICS" >"$WORK/$name-metrics-after.txt" || true
    local f
    for f in before after; do
        echo "refused_fd_$f=$(metric_sum "$WORK/$name-metrics-$f.txt" shardbar_connections_refused_total fd_limit)"
        echo "accept_err_fd_$f=$(metric_sum "$WORK/$name-metrics-$f.txt" shardbar_accept_errors_total fd_limit)"
    done >>"$env"
    say "$name: excess done; $(tr '\n' ' ' <"$env")"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for router in $ROUTERS; do
    for kind in $KINDS; do
        run_case "$router" "$kind"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "SESSIONS=$SESSIONS PROCS=$PROCS CONCURRENCY=$CONCURRENCY EXCESS=$EXCESS EXCESS_TIMEOUT=$EXCESS_TIMEOUT"
    echo "EXHAUST_KIND=$EXHAUST_KIND KINDS='$KINDS' ROUTERS='$ROUTERS' SHARDS=$SHARDS SETTLE=$SETTLE CPU_WINDOW=$CPU_WINDOW"
    echo "TARGET_KIB=$TARGET_KIB PROFILE=$PROFILE NOFILE=$NOFILE"
    echo "LOAD_START='$LOAD_START' LOAD_END='$LOAD_END' DATE='$(date -u '+%Y-%m-%d %H:%M UTC')' ELAPSED_S=$((SECONDS - T_START))"
    echo "CB_VERSION='$CB_VERSION' PY_VERSION='$PY_VERSION' RUSTC='$(rustc --version)'"
    echo "SB_VERSION='$("$SHARDBAR" --version) ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench/*.md' || echo '+dirty'))'"
    echo "MACHINE='$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem/ {print $2}') GiB, kernel $(uname -r)'"
} >"$WORK/scale.env"
fi # not REPORT_FROM
# shellcheck disable=SC1091
source "$WORK/scale.env"
export SESSIONS PROCS CONCURRENCY EXCESS EXCESS_TIMEOUT EXHAUST_KIND KINDS ROUTERS SHARDS SETTLE CPU_WINDOW \
    TARGET_KIB PROFILE NOFILE LOAD_START LOAD_END DATE ELAPSED_S CB_VERSION PY_VERSION RUSTC SB_VERSION MACHINE STAMP

# ---- the report ------------------------------------------------------------------------------

python3 - "$WORK" "$RESULTS" <<'PYEOF'
import glob, json, os, re, sys
work, results = sys.argv[1], sys.argv[2]
E = os.environ
HEADING = "## Scale: idle sessions up to the descriptor limit"
KIND = {"rs": "RawSocket + MessagePack", "ws": "WebSocket + JSON"}

def env(name):
    d = {}
    try:
        for line in open(f"{work}/{name}.env"):
            k, _, v = line.strip().partition("=")
            d[k] = v
    except FileNotFoundError:
        pass
    return d

def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None

def case(router, kind):
    e = env(f"{router}-{kind}")
    holders = [r for r in (load(p) for p in sorted(glob.glob(f"{work}/{router}-{kind}-hold-*.json"))) if r]
    c = {"env": e, "holders": holders}
    if not e or not holders:
        return c
    held = sum(r["sessions"] - r.get("sessions_failed", 0) - r.get("sessions_unfinished", 0) for r in holders)
    c["held"] = held
    c["clean"] = all(r.get("ok") for r in holders) and e.get("holding") == "1"
    if "rss_with_kib" in e and held:
        before, with_ = int(e["rss_before_kib"]), int(e["rss_with_kib"])
        c["before"], c["with"] = before, with_
        c["per"] = (with_ - before) / held
        c["proj"] = before + c["per"] * 100_000
    c["rate"] = held / max(r["setup_s"] for r in holders)
    c["p50"] = max(r["setup_latency"]["p50_us"] for r in holders)
    c["p99"] = max(r["setup_latency"]["p99_us"] for r in holders)
    c["setup_s"] = max(r["setup_s"] for r in holders)
    return c

def kib(v):
    return f"{v / 1024:.1f} MiB" if v >= 10240 else f"{v:.0f} KiB"

def ms(us):
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.0f} µs"

routers, kinds = E["ROUTERS"].split(), E["KINDS"].split()
target = float(E["TARGET_KIB"])
lines = []
add = lines.append
add(f"{HEADING}\n")
add("Generated by `bench/scale.sh`. Do not edit by hand: rerun it (it replaces this section only).\n")
add(f"- **Date:** {E['DATE']}; **elapsed:** {int(E['ELAPSED_S']) // 60} min {int(E['ELAPSED_S']) % 60} s")
cmd = "bench/scale.sh" if E["PROFILE"] == "release" else f"PROFILE={E['PROFILE']} bench/scale.sh"
add(f"- **Command:** `{cmd}` (SESSIONS={E['SESSIONS']} over PROCS={E['PROCS']} loadgen processes from "
    f"127.0.0.2…, CONCURRENCY={E['CONCURRENCY']} openings per process, EXCESS={E['EXCESS']}, "
    f"RLIMIT_NOFILE {E['NOFILE']} for every process)")
add(f"- **Machine:** {E['MACHINE']}, shared with other work; the routers and loadgen share the cores.")
add(f"- **Load average** (1/5/15 min): {E['LOAD_START']} at start, {E['LOAD_END']} at end. Memory figures do not "
    "depend on the machine's load; the connect rates and latencies do (CPU contention).")
prof = "release build" if E["PROFILE"] == "release" else "the dev profile (`cargo build`: optimised, debug assertions on)"
cb = f"; Crossbar.io {E['CB_VERSION']} on {E['PY_VERSION']} (one router worker)" if "crossbar" in routers else \
    "; Crossbar.io: not run (no bench/.venv)"
add(f"- **Versions:** {E['SB_VERSION']}, {prof}, {E['SHARDS']} shards{cb}; loadgen from the same commit; {E['RUSTC']}")
add("- **Method:** a fresh router per row on a free 127.0.0.1 port; the sessions are anonymous, idle, held by "
    "several loadgen `connections` processes at once. RSS is the router's process tree (`VmRSS`), read on the "
    f"fresh router and {E['SETTLE']} s after every session is open. Per session = (with − before) / sessions; "
    "the 100 000 figure is **a projection** (before + per session × 100 000), not a measurement: 100 000 "
    "descriptors cannot be had here. Connect rate = sessions / the slowest process's setup time; "
    "connect→WELCOME percentiles are the highest of the processes' own (an upper bound).")
add(f"- **Raw reports, configs, logs:** bench/work/{E['STAMP']}/ (not committed).\n")

add("| router | transport | sessions held | RSS before | RSS with sessions | **per session** | "
    "projected at 100 000 | sessions/s | connect→WELCOME p50 / p99 | target ≤ "
    f"{E['TARGET_KIB']} KiB |")
add("|---|---|---|---|---|---|---|---|---|---|")
verdicts = []
for router in routers:
    for kind in kinds:
        c = case(router, kind)
        if "per" not in c:
            add(f"| {router} | {KIND[kind]} | did not hold (see the work directory) | | | | | | | |")
            if router == "shardbar":
                verdicts.append(False)
            continue
        met = ""
        if router == "shardbar":
            ok = c["per"] <= target
            verdicts.append(ok)
            met = "PASS" if ok else "**FAIL**"
        note = "" if c["clean"] else " (not clean)"
        add(f"| {router} | {KIND[kind]} | {c['held']}{note} | {kib(c['before'])} | {kib(c['with'])} | "
            f"**{c['per']:.2f} KiB** | {c['proj'] / 1024:.0f} MiB | {c['rate']:.0f} ({c['setup_s']:.1f} s) | "
            f"{ms(c['p50'])} / {ms(c['p99'])} | {met} |")
add("")
if verdicts:
    add(f"**Target ≤ {E['TARGET_KIB']} KiB per idle session (shardbar, every transport): "
        f"{'PASS' if all(verdicts) else 'FAIL'}.**\n")

ek = E["EXHAUST_KIND"]
e = env(f"shardbar-{ek}")
if "shardbar" in routers and ek in kinds and "refused_fd_after" in e:
    add(f"### Past the limit: {E['SESSIONS']} held + {E['EXCESS']} more ({KIND[ek]}), shardbar at RLIMIT_NOFILE "
        f"{E['NOFILE']}\n")
    x = load(f"{work}/shardbar-{ek}-excess.json") or {}
    att = x.get("sessions", int(E["EXCESS"]))
    failed, unfin = x.get("sessions_failed", 0), x.get("sessions_unfinished", 0)
    opened = att - failed - unfin
    errs = "; ".join(str(s)[:140] for s in (x.get("errors") or [])[:2]) or "none"
    def probe(kind):
        """(refused at once?, what a new client of this kind saw while the router was full)"""
        r = load(f"{work}/shardbar-{ek}-probe-{kind}.json")
        if not r or not r.get("logins"):
            return False, "no report"
        l = r["logins"]
        if l["succeeded"]:
            return False, "opened (a descriptor was free)"
        if l["failed"]:
            took = ms(r["setup_s"] * 1e6)
            return True, f"refused in {took}: " + "; ".join(str(s)[:120] for s in r.get("errors", [])[:1])
        return False, "**no answer within 10 s** (it waited in the listen backlog)"
    ref = int(e["refused_fd_after"]) - int(e["refused_fd_before"])
    acc = int(e["accept_err_fd_after"]) - int(e["accept_err_fd_before"])
    add("| figure | value |")
    add("|---|---|")
    add(f"| router descriptors: fresh / {E['SESSIONS']} sessions / full | {e.get('fds_before')} / "
        f"{e.get('fds_with')} / {e.get('fds_full')} |")
    add(f"| the {att} more sessions (`connections --hold-partial`, {E['EXCESS_TIMEOUT']} s to open) | "
        f"{opened} opened, **{failed} refused**, **{unfin} without an answer** after {E['EXCESS_TIMEOUT']} s |")
    add(f"| what loadgen said | {errs.replace('|', '/')} |")
    slowest = ms(x["setup_latency"]["max_us"]) if x.get("setup_latency", {}).get("count") else "n/a"
    add(f"| when the last of them had its answer (open or refused) | {x.get('setup_s', float('nan')):.1f} s after "
        f"they started ({x.get('params', {}).get('concurrency') or E['CONCURRENCY']} at once); the slowest that "
        f"opened: {slowest} |")
    if failed and x.get("setup_s"):
        add(f"| refusals per second in that burst | {failed / x['setup_s']:.0f} (a lone client is refused at once: "
            "see below) |")
    add(f"| router CPU with {E['SESSIONS']} held, below the limit, nobody connecting ({E['CPU_WINDOW']} s) | "
        f"{float(e.get('idle_held_cpu_cores', 'nan')):.3f} cores |")
    add(f"| router CPU while they tried ({e.get('excess_s')} s) | {float(e.get('excess_cpu_cores', 'nan')):.2f} cores |")
    add(f"| router CPU at the limit, nobody connecting ({E['CPU_WINDOW']} s) | "
        f"{float(e.get('idle_full_cpu_cores', 'nan')):.3f} cores |")
    probes = {k: probe(k) for k in ("rs", "ws")}
    add(f"| a new RawSocket client while full | {probes['rs'][1]} |")
    add(f"| a new WebSocket client while full | {probes['ws'][1]} |")
    add(f"| `shardbar_connections_refused_total{{reason=\"fd_limit\"}}` (increase) | {ref} |")
    add(f"| `shardbar_accept_errors_total{{reason=\"fd_limit\"}}` (increase: failed accepts, retried) | {acc} |")
    add(f"| router alive at the limit / at the end; panics in its log | "
        f"{'yes' if e.get('alive_full') == '1' else '**NO**'} / {'yes' if e.get('alive') == '1' else '**NO**'}; "
        f"{e.get('panics', '?')} |")
    after = "opened" if e.get("after_rc") == "0" else f"**failed (exit {e.get('after_rc')})**"
    add(f"| a new session after the sessions left | {after} in {e.get('after_ms')} ms |")
    add("")
    clean = failed > 0 and unfin == 0 and all(p[0] for p in probes.values()) and ref >= failed \
        and e.get("alive") == "1" and float(e.get("idle_full_cpu_cores", "1")) < 0.1 and e.get("after_rc") == "0"
    add(f"**Past the limit: {'clean' if clean else 'NOT clean'}** (clean = every session past the limit answered and "
        "counted, both lone new clients refused at once, under 0.1 core at the limit, alive, serving again afterwards).\n")

section = "\n".join(lines).rstrip() + "\n"
open(f"{work}/section.md", "w").write(section)
text = open(results).read() if os.path.exists(results) else ""
start = text.find(HEADING + "\n")
if start < 0:
    text = text.rstrip("\n") + "\n\n" + section
else:
    nxt = re.compile(r"^## ", re.M).search(text, start + len(HEADING))
    text = text[:start] + section + ("\n" + text[nxt.start():] if nxt else "")
open(results, "w").write(text)
print(section)
PYEOF
say "wrote the \"Scale\" section of $RESULTS"
