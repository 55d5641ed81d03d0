#!/usr/bin/env bash
# Soak: a long run of mixed load against one shardbar (2 shards, 127.0.0.1 only), watching the
# router's memory, open files and CPU once a second, then checking that nothing was lost or
# reordered for healthy sessions and that nothing is left over in /metrics. Not for CI.
#
# The load, all on loopback and bounded in rate (the router should stay well under one core;
# the machine has two and runs the load generators too):
#   fanout    `loadgen fanout` 1 → FANOUT_SUBS at FANOUT_RATE publications/s, runs of LOADGEN_RUN
#             seconds back to back, alternating RawSocket/WebSocket and MessagePack/JSON/CBOR,
#             in realm `fanout`; each run reports its deliveries, loss and reordering (JSON).
#   rpc       `loadgen rpc` RPC_CALLERS callers → 1 callee at RPC_RATE calls/s each, the same way,
#             in realm `rpc`.
#   soak.py load (realm `realm1`), see bench/soak.py:
#     healthy HEALTHY Autobahn|Python sessions (both shards, WebSocket and RawSocket, all three
#             serializers) for the whole run, publishing sequenced acknowledged events to each
#             other (HEALTHY_RATE/s each) and calling each other (the same rate, 4 outstanding);
#             every event, result and invocation must arrive once and in order.
#     churn   CHURN_RATE sessions/s that join, subscribe, register, publish, (call,) and leave.
#     slow    SLOW subscribers at a time that stop reading a topic flooded with 8 KiB events
#             (50/s); the router's slow-consumer policy (realm default: disconnect, after
#             `write_deadline_ms` without write progress or `pending_bytes_max` queued) closes
#             them. Counted, not loss.
#     hostile HOSTILE_RATE misbehaving peers/s (tests/interop/rawwamp.py): bad RawSocket
#             handshakes, garbage frames, oversized HELLO, violations after WELCOME, unmasked
#             WebSocket frames, garbage HTTP, silent connections, sessions dropped without GOODBYE.
#   sampler   /proc/PID every second: VmRSS, entries of /proc/PID/fd, threads, utime+stime, and
#             the threads' schedstat run-queue wait (time runnable but without a CPU: how much
#             the shared machine held the router back) (samples.csv).
# The first WARMUP seconds are warm-up (allocator pools, buffers and route tables reach their
# working size). At the end the load stops by itself; the script waits for /metrics to show
# nothing left over (at most SETTLE s), keeps that scrape, samples 10 s more of idle, stops the
# router by PID (SIGTERM, exit status recorded) and reports (bench/soak.py report):
#   RSS drift = (max RSS after warm-up − RSS at the end of warm-up) / RSS at the end of warm-up,
#   target < 5 %; also the last minute's median vs the warm-up's last minute's median (for
#   reference); open files, CPU, healthy loss/reordering (target 0), loadgen totals (target 0
#   lost / reordered), slow consumers closed, hostile peers, left-over counts in /metrics
#   (target 0), panics in the router log. Exit status 1 on FAIL.
#
# Usage:
#   bench/soak.sh                 # 30 minutes, 5 of them warm-up
#   bench/soak.sh 3               # 3 minutes (warm-up scaled: a sixth of the run, at least 20 s)
#   SOAK_MINUTES=2 bench/soak.sh  # the same as an argument
#   bench/soak.sh --minutes 10 --warmup-minutes 2
#
# A run of 30 minutes or more writes the "Soak" section of RESULTS and the plot
# bench/results/soak-rss.svg; shorter runs only write their work dir (WRITE_RESULTS=1 forces).
# Everything else stays in bench/work/<stamp>-soak/: the config, router log, samples.csv,
# loadgen reports (loadgen/), load.json, metrics-end.txt, report.md, plot.svg.
#
# Environment (defaults in brackets):
#   SOAK_MINUTES [30]  SOAK_WARMUP_MINUTES [5 for ≥ 30 min runs, else a sixth of the run]
#   SHARDBAR [target/debug/shardbar]  LOADGEN [target/debug/loadgen]   (BUILD=1: cargo build first)
#   PYTHON [tests/.venv/bin/python: Autobahn|Python, as the interop tests use]
#   FANOUT_SUBS [50] FANOUT_RATE [200] RPC_CALLERS [4] RPC_RATE [150] LOADGEN_RUN [60]
#   HEALTHY [4] HEALTHY_RATE [20] CHURN_RATE [3] SLOW [2] SLOW_HOLD [40] HOSTILE_RATE [2]
#   SETTLE [15]  RESULTS [bench/RESULTS.md]  WRITE_RESULTS [auto]
# shellcheck disable=SC2317 # stop_loop and cleanup run from the EXIT trap
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MINUTES=${SOAK_MINUTES:-30}
WARMUP_MINUTES=${SOAK_WARMUP_MINUTES:-}
while (($#)); do
    case $1 in
    --minutes | --duration) MINUTES=$2; shift 2 ;;
    --warmup-minutes) WARMUP_MINUTES=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    [0-9]*) MINUTES=$1; shift ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
DURATION_S=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
if [[ -n "$WARMUP_MINUTES" ]]; then
    WARMUP_S=$(awk -v m="$WARMUP_MINUTES" 'BEGIN { printf "%d", m * 60 }')
elif ((DURATION_S >= 1800)); then
    WARMUP_S=300
else
    WARMUP_S=$((DURATION_S / 6 > 20 ? DURATION_S / 6 : 20))
fi
((DURATION_S >= 60 && WARMUP_S + 30 <= DURATION_S)) || {
    echo "the run must last at least a minute and 30 s more than the warm-up" >&2
    exit 2
}

SHARDBAR=${SHARDBAR:-$ROOT/target/debug/shardbar}
LOADGEN=${LOADGEN:-$ROOT/target/debug/loadgen}
PYTHON=${PYTHON:-$ROOT/tests/.venv/bin/python}
FANOUT_SUBS=${FANOUT_SUBS:-50}
FANOUT_RATE=${FANOUT_RATE:-200}
RPC_CALLERS=${RPC_CALLERS:-4}
RPC_RATE=${RPC_RATE:-150}
LOADGEN_RUN=${LOADGEN_RUN:-60}
HEALTHY=${HEALTHY:-4}
HEALTHY_RATE=${HEALTHY_RATE:-20}
CHURN_RATE=${CHURN_RATE:-3}
SLOW=${SLOW:-2}
SLOW_HOLD=${SLOW_HOLD:-40}
HOSTILE_RATE=${HOSTILE_RATE:-2}
SETTLE=${SETTLE:-15}
RESULTS=${RESULTS:-bench/RESULTS.md}
WRITE_RESULTS=${WRITE_RESULTS:-auto}
if [[ $WRITE_RESULTS == auto ]]; then
    WRITE_RESULTS=0
    ((DURATION_S >= 1800)) && WRITE_RESULTS=1
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)-soak
WORK=$ROOT/bench/work/$STAMP
mkdir -p "$WORK/loadgen"
LOG=$WORK/soak.log
say() { echo "[soak $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [[ "${BUILD:-0}" == 1 ]]; then
    say "building shardbar and loadgen"
    cargo build --bins >>"$LOG" 2>&1
fi
[[ -x "$SHARDBAR" && -x "$LOADGEN" ]] || { say "no $SHARDBAR or $LOADGEN (BUILD=1 builds them)"; exit 2; }
"$PYTHON" -c 'import autobahn, msgpack, cbor2' 2>/dev/null || {
    say "$PYTHON has no Autobahn|Python (make tests/.venv as tests/run.sh does, or set PYTHON)"
    exit 2
}

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
METRICS_PORT=$(free_port)
while [[ $METRICS_PORT == "$PORT" ]]; do METRICS_PORT=$(free_port); done
METRICS_URL=http://127.0.0.1:$METRICS_PORT/metrics

cat >"$WORK/shardbar.toml" <<EOF
# Written by bench/soak.sh for one run.
[router]
shards = 2
log = "info"

[[listener]]
address = "127.0.0.1:$PORT"

[limits]
# A slow consumer's queue is held until the router closes it: at the default 8 MiB, two of them
# swing the RSS curve by ~16 MiB on a ~50 MiB router and drown any drift. 1 MiB keeps the
# policy (and its counters) exercised with a small footprint.
pending_bytes_max = 1048576

[metrics]
address = "127.0.0.1:$METRICS_PORT"
summary_interval_s = 60

[[realm]]
name = "realm1"

[[realm]]
name = "fanout"

[[realm]]
name = "rpc"
EOF

# ---- everything started is stopped by PID ------------------------------------------------

ROUTER_PID=""
SAMPLER_PID=""
DRIVER_PID=""
LOOP_PIDS=()
stop_pid() { # PID WHAT [SECONDS]: SIGTERM, then SIGKILL if it is still there after SECONDS (10)
    [[ -n "$1" ]] && kill -TERM "$1" 2>/dev/null || return 0
    if ! timeout "${3:-10}" tail --pid="$1" -s 0.1 -f /dev/null; then
        say "$2 (pid $1) ignored SIGTERM; SIGKILL"
        kill -KILL "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
}
stop_loop() { # LOOP_PID NAME: the loop, then the loadgen it is waiting for
    local child
    stop_pid "$1" "$2 loop" 2
    child=$(cat "$WORK/loadgen/$2.child" 2>/dev/null || true)
    stop_pid "$child" "$2 loadgen" 5
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$DRIVER_PID" ]] && stop_pid "$DRIVER_PID" "load driver" 5
    if ((${#LOOP_PIDS[@]})); then
        stop_loop "${LOOP_PIDS[0]}" fanout
        stop_loop "${LOOP_PIDS[1]:-}" rpc
    fi
    [[ -n "$SAMPLER_PID" ]] && stop_pid "$SAMPLER_PID" sampler 2
    [[ -n "$ROUTER_PID" ]] && stop_pid "$ROUTER_PID" shardbar 10
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---- the router and the sampler ----------------------------------------------------------

"$SHARDBAR" --config "$WORK/shardbar.toml" >"$WORK/shardbar.log" 2>&1 &
ROUTER_PID=$!
t0=$SECONDS
until "$LOADGEN" wait --url "rs://127.0.0.1:$PORT" --timeout 2s >/dev/null 2>&1 \
    && curl -sf --max-time 5 "$METRICS_URL" >/dev/null; do
    if ! kill -0 "$ROUTER_PID" 2>/dev/null || ((SECONDS - t0 > 60)); then
        say "shardbar did not come up; see $WORK/shardbar.log"
        exit 2
    fi
    sleep 0.2
done
"$PYTHON" bench/soak.py sample --pid "$ROUTER_PID" --out "$WORK/samples.csv" &
SAMPLER_PID=$!
say "shardbar up (pid $ROUTER_PID) on 127.0.0.1:$PORT, metrics :$METRICS_PORT; $((DURATION_S / 60)) min" \
    "$((DURATION_S % 60)) s of load, $WARMUP_S s warm-up; work dir $WORK"

# ---- the load ----------------------------------------------------------------------------

END=$(($(date +%s) + DURATION_S))
# One loadgen scenario back to back until END (each run's duration is what is left, at most
# LOADGEN_RUN s; none starts with less than 10 s left). Exit status per run in NAME.rc.
loadgen_loop() { # NAME REALM ARGS...
    local name=$1 realm=$2 i=0 left d rc url ser
    shift 2
    local -a shapes=("rs msgpack" "ws json" "rs cbor" "ws msgpack" "rs json" "ws cbor")
    while :; do
        left=$((END - $(date +%s)))
        ((left >= 10)) || break
        d=$((left < LOADGEN_RUN ? left : LOADGEN_RUN))
        read -r url ser <<<"${shapes[i % ${#shapes[@]}]}"
        [[ $url == rs ]] && url=rs://127.0.0.1:$PORT || url=ws://127.0.0.1:$PORT/ws
        timeout $((d + 90)) "$LOADGEN" "$@" --url "$url" --serializer "$ser" --realm "$realm" \
            --threads 1 --warmup 0 --duration "${d}s" --drain 3s --no-progress \
            --label "$name $ser" --json "$WORK/loadgen/$name-$i.json" >"$WORK/loadgen/$name-$i.txt" 2>&1 &
        echo $! >"$WORK/loadgen/$name.child"
        rc=0
        wait $! || rc=$?
        echo "$i $rc" >>"$WORK/loadgen/$name.rc"
        i=$((i + 1))
    done
}
loadgen_loop fanout fanout fanout --subscribers "$FANOUT_SUBS" --rate "$FANOUT_RATE" &
LOOP_PIDS+=($!)
loadgen_loop rpc rpc rpc --callers "$RPC_CALLERS" --rate "$RPC_RATE" &
LOOP_PIDS+=($!)
"$PYTHON" bench/soak.py load --port "$PORT" --seconds "$DURATION_S" --out "$WORK/load.json" \
    --healthy "$HEALTHY" --healthy-rate "$HEALTHY_RATE" --churn-rate "$CHURN_RATE" --slow "$SLOW" \
    --slow-hold "$SLOW_HOLD" --hostile-rate "$HOSTILE_RATE" >"$WORK/load.log" 2>&1 &
DRIVER_PID=$!

ROUTER_DIED=0
NEXT_NOTE=$(($(date +%s) + 60))
while (($(date +%s) < END)); do
    if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
        say "shardbar died during the run; see $WORK/shardbar.log"
        ROUTER_DIED=1
        break
    fi
    if ! kill -0 "$DRIVER_PID" 2>/dev/null; then
        say "the load driver stopped early; see $WORK/load.log"
        break
    fi
    if (($(date +%s) >= NEXT_NOTE)); then
        say "$(tail -1 "$WORK/samples.csv" | awk -F, '{ printf "t=%ss RSS %.1f MiB, %s open files, CPU %s %%", $1, $2 / 1024, $3, $5 }')"
        NEXT_NOTE=$((NEXT_NOTE + 60))
    fi
    sleep 1
done
say "load time over; waiting for the load to finish"
DRIVER_RC=0
wait "$DRIVER_PID" || DRIVER_RC=$?
DRIVER_PID=""
((DRIVER_RC == 0)) || say "load driver exit status $DRIVER_RC; see $WORK/load.log"
for pid in "${LOOP_PIDS[@]}"; do wait "$pid" || true; done
LOOP_PIDS=()

# ---- the end: left-overs, idle, stop -----------------------------------------------------

"$PYTHON" bench/soak.py settle --metrics "$METRICS_URL" --out "$WORK/metrics-end.txt" --timeout "$SETTLE" || true
sleep 10
stop_pid "$SAMPLER_PID" sampler 2
SAMPLER_PID=""
ROUTER_EXIT=null
if kill -0 "$ROUTER_PID" 2>/dev/null; then
    kill -TERM "$ROUTER_PID"
    ROUTER_EXIT=0
    wait "$ROUTER_PID" || ROUTER_EXIT=$?
else
    ROUTER_DIED=1
fi
ROUTER_PID=""
say "shardbar stopped (exit status $ROUTER_EXIT)"

cat >"$WORK/run.json" <<EOF
{"stamp": "$STAMP", "date": "$(date -u +%Y-%m-%d) $(date -u -d @$((END - DURATION_S)) +%H:%M)–$(date -u -d @$END +%H:%M) UTC",
 "machine": "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load generators on the same machine",
 "shardbar": "${SHARDBAR#"$ROOT"/}", "router_exit": $ROUTER_EXIT, "router_died": $ROUTER_DIED,
 "load": {"fanout_subs": $FANOUT_SUBS, "fanout_rate": $FANOUT_RATE, "rpc_callers": $RPC_CALLERS, "rpc_rate": $RPC_RATE,
          "loadgen_run": $LOADGEN_RUN, "healthy": $HEALTHY, "healthy_rate": $HEALTHY_RATE, "churn_rate": $CHURN_RATE,
          "slow": $SLOW, "slow_hold": $SLOW_HOLD, "hostile_rate": $HOSTILE_RATE}}
EOF
REPORT_ARGS=(--work "$WORK" --warmup "$WARMUP_S" --seconds "$DURATION_S" --command "bench/soak.sh $MINUTES")
if [[ $WRITE_RESULTS == 1 ]]; then
    REPORT_ARGS+=(--results "$RESULTS" --svg bench/results/soak-rss.svg)
fi
RC=0
"$PYTHON" bench/soak.py report "${REPORT_ARGS[@]}" | tee -a "$LOG" || RC=$?
say "report: $WORK/report.md, plot: $WORK/plot.svg$([[ $WRITE_RESULTS == 1 ]] && echo "; section Soak of $RESULTS")"
exit "$RC"
