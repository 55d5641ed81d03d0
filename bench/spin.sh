#!/usr/bin/env bash
# spin_before_park vs 1-caller RPC latency, with each run classified as same-shard or
# cross-shard from the router's own mesh counter (a cross-shard call sends 2 mesh messages).
#
#   bench/spin.sh [SPINS...]      default: 0 20 100 500 (µs); RUNS=8 runs of 2 s each
#
# Needs target/release/{shardbar,loadgen} (cargo build --release --bins). Loopback only;
# every router started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-8}
SPINS=("$@")
[ ${#SPINS[@]} -eq 0 ] && SPINS=(0 20 100 500)
SB=target/release/shardbar
LG=target/release/loadgen
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mesh() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^shardbar_mesh_messages_sent_total/ {s+=$2} END {print s+0}'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "spin_us placement p50_us p99_us calls"
for spin in "${SPINS[@]}"; do
  port=$(free_port)
  printf '[router]\nshards = 2\nspin_before_park_us = %s\nlog = "warn"\n[[listener]]\naddress = "127.0.0.1:%s"\n[metrics]\nhttp_endpoints_on_wamp_port = true\n' \
    "$spin" "$port" >"$tmp/router.toml"
  "$SB" --config "$tmp/router.toml" >"$tmp/router.log" 2>&1 &
  pid=$!
  "$LG" wait --url "rs://127.0.0.1:$port" >/dev/null 2>&1 || sleep 1
  for _ in $(seq "$RUNS"); do
    m0=$(mesh "$port")
    rm -f "$tmp/rpc.json"
    "$LG" rpc --callers 1 --callees 1 --window 1 --payload 64 --url "rs://127.0.0.1:$port" \
      --serializer msgpack --duration 2 --warmup 0.5 --no-progress --json "$tmp/rpc.json" >/dev/null 2>&1 || true
    m1=$(mesh "$port")
    [[ -s "$tmp/rpc.json" ]] || { echo "$spin loadgen failed" >&2; continue; }
    python3 - "$tmp/rpc.json" "$spin" "$((m1 - m0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); calls = r["received_total"]; mesh = int(sys.argv[3])
kind = "cross-shard" if mesh > calls else "same-shard"
print(f'{sys.argv[2]} {kind} {r["latency"]["p50_us"]:.1f} {r["latency"]["p99_us"]:.1f} {calls}')
PY
  done
  kill -TERM "$pid"
  wait "$pid" || true
done
