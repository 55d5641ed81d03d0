#!/usr/bin/env bash
# A/B two shardbar binaries under the same loadgen: fan-out 1->N (RawSocket+MessagePack,
# 64 B) and RPC with 64 callers, routers alternating A, B, A, B, ... so drift on a shared
# machine hits both alike. Prints each run and the medians.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY            (REPEATS=3 DURATION=5 SUBSCRIBERS=1000,
#                                                 CASES="fanout rpc64")
#   LOADGEN=target/release/loadgen bench/ab.sh /tmp/old/shardbar target/release/shardbar
#
# Loopback only; every run is bounded by --duration and `timeout`; routers are stopped by
# PID. The figure is loadgen's received_per_s: events delivered/s (fanout), results/s (rpc).
# Results go to stdout (and the JSON reports to $WORK, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
B=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
LOADGEN=${LOADGEN:-target/release/loadgen}
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-5}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
WORK=${WORK:-$(mktemp -d /tmp/shardbar-ab.XXXXXX)}
ROUTER_PID=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop_router() {
    [[ -z "$ROUTER_PID" ]] && return
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$ROUTER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
    ROUTER_PID=""
}
trap stop_router EXIT

# run LABEL BINARY CASE loadgen-args...: prints the figure (events/s or calls/s).
run() {
    local label=$1 bin=$2 case=$3
    shift 3
    local port
    port=$(free_port)
    "$bin" --listen "127.0.0.1:$port" >"$WORK/$label-$case.log" 2>&1 &
    ROUTER_PID=$!
    "$LOADGEN" wait --url "ws://127.0.0.1:$port/ws" --timeout 30s >/dev/null
    local out=$WORK/$label-$case-$RANDOM.json
    timeout 300 "$LOADGEN" "$1" --url "rs://127.0.0.1:$port" --serializer msgpack --warmup 1 \
        --duration "$DURATION" --no-progress --quiet --json "$out" "${@:2}" >/dev/null 2>&1 || true
    stop_router
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["received_per_s"]))' "$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "A=$A"
echo "B=$B"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
for case in ${CASES:-fanout rpc64}; do
    case $case in
    fanout) args=(fanout --subscribers "$SUBSCRIBERS" --payload 64 --window 256) ;;
    rpc64) args=(rpc --callers 64 --callees 1 --window 8 --payload 64) ;;
    esac
    : >"$WORK/$case-A.txt"
    : >"$WORK/$case-B.txt"
    for i in $(seq "$REPEATS"); do
        a=$(run A "$A" "$case" "${args[@]}")
        b=$(run B "$B" "$case" "${args[@]}")
        echo "$a" >>"$WORK/$case-A.txt"
        echo "$b" >>"$WORK/$case-B.txt"
        echo "$case run $i: A $a  B $b"
    done
    ma=$(median <"$WORK/$case-A.txt")
    mb=$(median <"$WORK/$case-B.txt")
    python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'$case median: A {a:.0f}  B {b:.0f}  B/A {b/a if a else 0:.3f}')" "$ma" "$mb"
done
