#!/usr/bin/env bash
# Authorization: what roles cost, shardbar vs Crossbar.io, side by side, with loadgen.
#
# Both routers get the same realms, roles and ticket principals (all sessions log in with
# ticket authentication, authid `joe`, role `user`; the realm decides what `user` may do):
#   open     allow-all. shardbar: no roles (its default); Crossbar: role `user` with one
#            rule, prefix "" allowing everything (Crossbar always needs a role).
#   rules    role `user` with RULES (100) static rules: RULES/2 prefix rules
#            `loadgen.p<i>.` and RULES/2 - 1 wildcard rules `loadgen.w<i>..status` that do
#            not match loadgen's URIs, and one wildcard rule `loadgen..` that does (every
#            action allowed): the lookup walks the exact, prefix and wildcard indexes. The
#            wildcard rules have distinct parts before their `..` because Crossbar keys
#            wildcard rules by that part (two with the same one would replace each other).
#   dynamic  role `user` → authorizer `bench.authorize`, answered by bench/authorizer.py
#            (a separate Autobahn|Python process logged in as `authorizer`, role
#            `authorizer`, which may register that procedure; Crossbar reserves the role name
#            `trusted`), answering `{allow, cache: false}`.
#   cached   the same, answered with `{allow, cache: true}`.
# Every static rule carries `cache = true` (Crossbar's key: Crossbar then caches the
# decision per realm, role, URI and action; shardbar accepts the key and needs no cache).
#
# Cases, each against both routers (RawSocket + MessagePack, 64-byte payloads):
#   1. Fan-out 1 → SUBSCRIBERS (closed loop, window FANOUT_WINDOW) in `open` and `rules`.
#      Target: shardbar rules ≥ 0.95× its allow-all delivered events/s.
#   2. RPC, 64 callers → 1 callee (window RPC_WINDOW) in `open` and `rules`.
#      Target: shardbar rules ≥ 0.9× its allow-all calls/s.
#   3. The same RPC in `dynamic` and `cached` (the authorizer asked per call, or once).
#
# Each repetition starts each router afresh on a free 127.0.0.1 port (and the authorizer
# against it), runs every case, and stops both by PID; the routers take turns going first,
# and so do allow-all/rules and uncached/cached. Every loadgen run is bounded by `timeout`,
# the authorizer by --max-seconds. shardbar's /metrics is scraped around each run: denials
# (`shardbar_authorization_denied_total`) must stay 0.
#
# Writes the section "Authorization" of bench/RESULTS.md (that section only; the rest of the
# file is kept) and the raw reports, configs and logs in bench/work/<stamp>-authz/.
#
# Environment:
#   REPEATS=5              runs per case and router (medians are reported)
#   DURATION=5 WARMUP=1    seconds per measured run
#   SUBSCRIBERS=1000 FANOUT_WINDOW=256 RPC_CALLERS=64 RPC_WINDOW=8
#   RULES=100              static rules in the `rules` role (even)
#   QUICK=1                smoke run: REPEATS=1 DURATION=2 WARMUP=0.5
#   NO_BUILD=1             use target/release as it is (default: cargo build --release --bins)
#   CROSSBAR_VERSION=26.10.1 PYTHON=python3.11   as in compare.sh (Crossbar in bench/.venv)
#   RESULTS=bench/RESULTS.md
#   REPORT_FROM=bench/work/STAMP-authz   rewrite the section from an earlier run's reports
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REPEATS=${REPEATS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
FANOUT_WINDOW=${FANOUT_WINDOW:-256}
RPC_CALLERS=${RPC_CALLERS:-64}
RPC_WINDOW=${RPC_WINDOW:-8}
RULES=${RULES:-100}
CROSSBAR_VERSION=${CROSSBAR_VERSION:-26.10.1}
RESULTS=${RESULTS:-bench/RESULTS.md}
QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    REPEATS=1 DURATION=2 WARMUP=0.5
fi
STAMP=$(date -u +%Y%m%d-%H%M%S)-authz
WORK=$ROOT/bench/work/$STAMP
if [[ -n "${REPORT_FROM:-}" ]]; then
    WORK=$(cd "$REPORT_FROM" && pwd)
    STAMP=$(basename "$WORK")
fi
mkdir -p "$WORK"
LOG=$WORK/authz.log
LOADGEN=$ROOT/target/release/loadgen
SHARDBAR=$ROOT/target/release/shardbar
VENV=$ROOT/bench/.venv
PROCEDURE=bench.authorize

say() { echo "[authz $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

if [[ -z "${REPORT_FROM:-}" ]]; then
T_START=$SECONDS

# ---- build and install ------------------------------------------------------------------

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    say "building shardbar and loadgen (release)"
    cargo build --release --bins >>"$LOG" 2>&1
fi
[[ -x "$SHARDBAR" && -x "$LOADGEN" ]] || { say "no $SHARDBAR or $LOADGEN"; exit 2; }
command -v openssl >/dev/null || { say "needs the openssl command"; exit 2; }

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

# ---- roles and principals ---------------------------------------------------------------
# Throw-away tickets (the configs live in the work directory, ignored by git); loadgen and
# the authorizer get theirs through the environment.
TICKET=$(openssl rand -hex 16)
AUTHORIZER_TICKET=$(openssl rand -hex 16)
export LOADGEN_TICKET=$TICKET AUTHORIZER_TICKET

# The static rules, once, in Crossbar's JSON form; shardbar's TOML is made from the same list.
"$VENV/bin/python" - "$RULES" >"$WORK/rules.json" <<'PYEOF'
import json, sys
n = int(sys.argv[1])
every = {"call": True, "register": True, "publish": True, "subscribe": True}
rules = [{"uri": f"loadgen.p{i}.", "match": "prefix", "allow": every, "cache": True} for i in range(n // 2)]
rules += [{"uri": f"loadgen.w{i}..status", "match": "wildcard", "allow": every, "cache": True} for i in range(n - n // 2 - 1)]
rules.append({"uri": "loadgen..", "match": "wildcard", "allow": every, "cache": True})
json.dump(rules, sys.stdout, indent=1)
PYEOF

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

shardbar_config() { # PORT
    "$VENV/bin/python" - "$WORK/rules.json" "$1" "$TICKET" "$AUTHORIZER_TICKET" "$PROCEDURE" <<'PYEOF'
import json, sys
rules, port, ticket, aticket, proc = sys.argv[1:]
def toml_rule(r):
    allow = ", ".join(f"{k} = {str(v).lower()}" for k, v in r["allow"].items())
    return f'  {{ uri = "{r["uri"]}", match = "{r["match"]}", allow = {{ {allow} }}, cache = true }},'
print(f"""# Written by bench/authz.sh for one run.
[metrics]
http_endpoints_on_wamp_port = true

[[listener]]
address = "127.0.0.1:{port}"
[listener.auth.ticket]
principals = [{{ authid = "joe", ticket = "{ticket}", role = "user" }}, {{ authid = "authorizer", ticket = "{aticket}", role = "authorizer" }}]

[[realm]]
name = "open"

[[realm]]
name = "rules"
[[realm.role]]
name = "user"
permissions = [""")
for r in json.load(open(rules)):
    print(toml_rule(r))
print("]")
for realm in ("dynamic", "cached"):
    print(f"""
[[realm]]
name = "{realm}"
[[realm.role]]
name = "user"
authorizer = "{proc}"
[[realm.role]]
name = "authorizer"
permissions = [{{ uri = "{proc}", allow = {{ register = true }} }}]""")
PYEOF
}

crossbar_config() { # PORT
    "$VENV/bin/python" - "$WORK/rules.json" "$1" "$TICKET" "$AUTHORIZER_TICKET" "$PROCEDURE" <<'PYEOF'
import json, sys
rules, port, ticket, aticket, proc = sys.argv[1:]
every = {"call": True, "register": True, "publish": True, "subscribe": True}
dynamic = [{"name": "user", "authorizer": proc},
           {"name": "authorizer", "permissions": [{"uri": proc, "match": "exact", "allow": {"register": True}}]}]
cfg = {
    "version": 2,
    "controller": {},
    "workers": [{
        "type": "router",
        "realms": [
            {"name": "open", "roles": [{"name": "user", "permissions": [
                {"uri": "", "match": "prefix", "allow": every, "cache": True}]}]},
            {"name": "rules", "roles": [{"name": "user", "permissions": json.load(open(rules))}]},
            {"name": "dynamic", "roles": dynamic},
            {"name": "cached", "roles": dynamic},
        ],
        "transports": [{
            "type": "rawsocket",
            "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": int(port), "backlog": 4096},
            "serializers": ["msgpack", "json", "cbor"],
            "options": {"max_message_size": 16777216},
            "auth": {"ticket": {"type": "static", "principals": {
                "joe": {"ticket": ticket, "role": "user"},
                "authorizer": {"ticket": aticket, "role": "authorizer"},
            }}},
        }],
    }],
}
json.dump(cfg, sys.stdout, indent=2)
PYEOF
}

# ---- routers and the authorizer ---------------------------------------------------------

ROUTER_PID=""
AUTHORIZER_PID=""
start_router() { # name
    local name=$1 port dir
    port=$(free_port)
    URL="rs://127.0.0.1:$port"
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
    local t0=$SECONDS
    until "$LOADGEN" wait --url "$URL" --realm open --authmethod ticket --authid joe --timeout 2s >/dev/null 2>&1; do
        if ! kill -0 "$ROUTER_PID" 2>/dev/null || ((SECONDS - t0 > 90)); then
            say "$name did not come up; see $ROUTER_LOG"
            stop_router
            exit 2
        fi
        sleep 0.2
    done
    say "$name up (pid $ROUTER_PID): $URL"
    # The authorizer: registered in `dynamic` (no cache) and `cached` before any case runs.
    AUTHORIZER_LOG=$WORK/authorizer-$name-$port.log
    "$VENV/bin/python" bench/authorizer.py --url "$URL" --authid authorizer --procedure "$PROCEDURE" \
        --realm dynamic --cached-realm cached --max-seconds 1800 >"$AUTHORIZER_LOG" 2>&1 &
    AUTHORIZER_PID=$!
    t0=$SECONDS
    until grep -q '^ready$' "$AUTHORIZER_LOG"; do
        if ! kill -0 "$AUTHORIZER_PID" 2>/dev/null || ((SECONDS - t0 > 60)); then
            say "the authorizer did not register against $name; see $AUTHORIZER_LOG"
            stop_router
            exit 2
        fi
        sleep 0.2
    done
    say "authorizer up (pid $AUTHORIZER_PID)"
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

stop_router() {
    if [[ -n "$AUTHORIZER_PID" ]]; then
        stop_pid "$AUTHORIZER_PID" authorizer
        AUTHORIZER_PID=""
    fi
    if [[ -n "$ROUTER_PID" ]]; then
        stop_pid "$ROUTER_PID" router
        ROUTER_PID=""
    fi
}
trap stop_router EXIT

# ---- runs -----------------------------------------------------------------------------------

denials() { # shardbar's denial counter, all shards, realms, roles and actions
    curl -s --max-time 10 "$METRICS_URL" | awk '/^shardbar_authorization_denied_total/ {s += $2} END {print s + 0}'
}

# run CASE REALM ROUTER I loadgen-args...
run() {
    local case=$1 realm=$2 router=$3 i=$4
    shift 4
    local out=$WORK/$case-$router-$i.json rc=0 before=""
    [[ -n "$METRICS_URL" ]] && before=$(denials)
    say "$case [$router #$i]: loadgen $* --realm $realm"
    timeout 300 "$LOADGEN" "$@" --url "$URL" --realm "$realm" --serializer msgpack --authmethod ticket --authid joe \
        --payload 64 --warmup "$WARMUP" --duration "$DURATION" --drain 5 --connect-timeout 180s \
        --no-progress --quiet --pid "$ROUTER_PID" --label "$router" --json "$out" \
        >"$WORK/$case-$router-$i.out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        say "  exit $rc (kept in the report): $(tail -c 600 "$WORK/$case-$router-$i.out" | tr '\n' ' ')"
    fi
    if [[ -n "$METRICS_URL" ]]; then
        curl -s --max-time 10 "$METRICS_URL" >"$WORK/$case-$router-$i.metrics" || true
        local d
        d=$(($(awk '/^shardbar_authorization_denied_total/ {s += $2} END {print s + 0}' "$WORK/$case-$router-$i.metrics") - before))
        echo "$d" >"$WORK/$case-$router-$i.denied"
        ((d == 0)) || say "  shardbar denied $d requests during $case"
    fi
    echo "$case $router $i $rc" >>"$WORK/runs.txt"
}

fanout() { run "fanout-$1" "$1" "$2" "$3" fanout --subscribers "$SUBSCRIBERS" --window "$FANOUT_WINDOW"; }
rpc() { run "rpc-$1" "$1" "$2" "$3" rpc --callers "$RPC_CALLERS" --callees 1 --window "$RPC_WINDOW"; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $LOAD_START (REPEATS=$REPEATS DURATION=$DURATION RULES=$RULES QUICK=$QUICK)"
: >"$WORK/runs.txt"

for i in $(seq "$REPEATS"); do
    # Take turns: which router goes first, allow-all or rules first, uncached or cached first.
    routers=(shardbar crossbar) static=(open rules) dyn=(dynamic cached)
    if ((i % 2 == 0)); then routers=(crossbar shardbar) static=(rules open) dyn=(cached dynamic); fi
    for router in "${routers[@]}"; do
        start_router "$router"
        for realm in "${static[@]}"; do fanout "$realm" "$router" "$i"; done
        for realm in "${static[@]}" "${dyn[@]}"; do rpc "$realm" "$router" "$i"; done
        authorizer_log=$AUTHORIZER_LOG
        stop_router
        # How many calls the authorizer answered in each realm (it prints them on SIGTERM).
        awk -v r="$router" -v i="$i" '/^answered / {print "rpc-" $2, r, i, $3, $5}' "$authorizer_log" >>"$WORK/authorizer.txt"
    done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at end: $LOAD_END"
{
    echo "REPEATS=$REPEATS DURATION=$DURATION WARMUP=$WARMUP SUBSCRIBERS=$SUBSCRIBERS FANOUT_WINDOW=$FANOUT_WINDOW"
    echo "RPC_CALLERS=$RPC_CALLERS RPC_WINDOW=$RPC_WINDOW RULES=$RULES QUICK=$QUICK"
    echo "LOAD_START='$LOAD_START' LOAD_END='$LOAD_END' DATE='$(date -u '+%Y-%m-%d %H:%M UTC')' ELAPSED_S=$((SECONDS - T_START))"
    echo "CB_VERSION='$CB_VERSION' AB_VERSION='$AB_VERSION' PY_VERSION='$PY_VERSION' RUSTC='$(rustc --version)'"
    echo "SB_VERSION='$("$SHARDBAR" --version) ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench/*.md' ':!bench/results' || echo '+dirty'))'"
    echo "MACHINE='$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem/ {print $2}') GiB, kernel $(uname -r)'"
} >"$WORK/meta.env"
fi # not REPORT_FROM
# shellcheck disable=SC1091
source "$WORK/meta.env"

# ---- the RESULTS.md section -------------------------------------------------------------------

COMMAND="bench/authz.sh"
[[ "$QUICK" == 1 ]] && COMMAND="QUICK=1 bench/authz.sh"
export REPEATS DURATION WARMUP SUBSCRIBERS FANOUT_WINDOW RPC_CALLERS RPC_WINDOW RULES QUICK \
    LOAD_START LOAD_END DATE ELAPSED_S CB_VERSION AB_VERSION PY_VERSION RUSTC SB_VERSION MACHINE STAMP COMMAND
"$VENV/bin/python" - "$WORK" "$RESULTS" <<'PYEOF'
import glob, json, os, re, statistics, sys
work, out = sys.argv[1], sys.argv[2]
E = os.environ
quick = E["QUICK"] == "1"
ROUTERS = ("shardbar", "crossbar")

def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None

def by_run(case, router, f):
    """{repetition: f(report)} for the reports that have the figure."""
    vals = {}
    for p in glob.glob(f"{work}/{case}-{router}-*.json"):
        r = load(p)
        try:
            vals[int(p.rsplit("-", 1)[1][:-5])] = f(r)
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

def unclean(case, router):
    rs = [load(p) for p in glob.glob(f"{work}/{case}-{router}-*.json")]
    bad = [r for r in rs if not (r or {}).get("ok")]
    return f" ({len(bad)} run(s) not clean)" if bad else ""

def met(ok):
    return "yes" if ok else "**NO**"

def per_rep(case, base, router, f):
    a, b = by_run(case, router, f), by_run(base, router, f)
    return ", ".join(f"{a[i]/b[i]:.2f}" for i in sorted(a) if b.get(i))

rate = lambda r: r["received_per_s"]
p99 = lambda r: r["latency"]["p99_us"]
p50 = lambda r: r["latency"]["p50_us"]
n = int(E["REPEATS"])
lines = []
add = lines.append
add("## Authorization\n")
if quick:
    add(f"> **Smoke run (`QUICK=1`): 1 repetition, {E['DURATION']} s runs, on a shared, busy 2-vCPU machine.** "
        "It shows that every case runs end to end against both routers with the roles in force; its figures "
        "are single runs, not benchmark results, and the targets are not judged by it. The full run is "
        "`bench/authz.sh` on a quiet machine.\n")
add("Generated by `bench/authz.sh`. Do not edit by hand: rerun it (it replaces this section only).\n")
add(f"- **Date:** {E['DATE']}; **elapsed:** {int(E['ELAPSED_S'])//60} min {int(E['ELAPSED_S'])%60} s")
add(f"- **Command:** `{E['COMMAND']}` (REPEATS={n}, DURATION={E['DURATION']}s, WARMUP={E['WARMUP']}s, "
    f"SUBSCRIBERS={E['SUBSCRIBERS']}, FANOUT_WINDOW={E['FANOUT_WINDOW']}, RPC_CALLERS={E['RPC_CALLERS']}, "
    f"RPC_WINDOW={E['RPC_WINDOW']}, RULES={E['RULES']})")
add(f"- **Machine:** {E['MACHINE']}, shared with other work; the routers, loadgen and the authorizer share the cores.")
add(f"- **Load average** (1/5/15 min): {E['LOAD_START']} at start, {E['LOAD_END']} at end.")
add(f"- **Versions:** {E['SB_VERSION']} (default: one shard per core); Crossbar.io {E['CB_VERSION']} on "
    f"{E['PY_VERSION']} (one router worker); the authorizer on Autobahn|Python {E['AB_VERSION']} (asyncio); "
    f"loadgen from the same commit; {E['RUSTC']}")
R = int(E["RULES"])
add(f"- **Setup:** both routers on 127.0.0.1, RawSocket + MessagePack, 64-byte payloads; every session logs in "
    f"with a ticket (authid `joe`, role `user`) and the realm decides what `user` may do. `open`: allow-all "
    f"(shardbar: no roles, its default; Crossbar: one prefix rule \"\" allowing everything). `rules`: {R} static "
    f"rules — {R//2} prefix `loadgen.p<i>.`, {R - R//2 - 1} wildcard `loadgen.w<i>..status`, none matching, and "
    f"the wildcard `loadgen..` that matches every loadgen URI (so the lookup goes through exact, prefix and "
    f"wildcard). `dynamic` / `cached`: role `user` → authorizer `bench.authorize`, a separate Autobahn|Python "
    f"process (`bench/authorizer.py`, role `authorizer`, allowed to register it) answering `{{allow, cache: false}}` / `{{allow, cache: true}}`. "
    f"Static rules carry `cache: true` on both (Crossbar caches such decisions per realm, role, URI and action; "
    f"shardbar's static lookup has no cache). Each repetition restarts each router; the routers alternate which "
    f"goes first, and so do allow-all/rules and uncached/cached.")
add(f"- **Raw JSON reports, configs, logs:** bench/work/{E['STAMP']}/ (not committed).\n")

# Fan-out
subs = E["SUBSCRIBERS"]
add(f"### Fan-out 1 → {subs}, 64 B: {R} rules vs allow-all\n")
add("| figure | shardbar | Crossbar.io | shardbar / Crossbar | target | met |")
add("|---|---|---|---|---|---|")
m = {(c, r): med(f"fanout-{c}", r, rate) for c in ("open", "rules") for r in ROUTERS}
for c, label in (("open", "allow-all"), ("rules", f"{R} rules")):
    s, sv = m[(c, "shardbar")]
    k, kv = m[(c, "crossbar")]
    add(f"| {label}: delivered events/s (median; runs) | **{fmt(s)}** ({runs(sv)}){unclean('fanout-'+c,'shardbar')} | "
        f"**{fmt(k)}** ({runs(kv)}){unclean('fanout-'+c,'crossbar')} | {ratio(s,k):.0f}× | | |")
sr = ratio(m[("rules", "shardbar")][0], m[("open", "shardbar")][0])
cr = ratio(m[("rules", "crossbar")][0], m[("open", "crossbar")][0])
judge = "not judged (smoke run)" if quick else met(sr >= 0.95)
add(f"| rules / allow-all (medians; per repetition) | **{sr:.2f}×** ({per_rep('fanout-rules','fanout-open','shardbar',rate)}) | "
    f"{cr:.2f}× ({per_rep('fanout-rules','fanout-open','crossbar',rate)}) | | shardbar ≥ 0.95× | {judge} |")
add(f"| p99 publish→deliver, allow-all / rules (closed loop, window in flight) | "
    f"{fmt(med('fanout-open','shardbar',p99)[0],'us')} / {fmt(med('fanout-rules','shardbar',p99)[0],'us')} | "
    f"{fmt(med('fanout-open','crossbar',p99)[0],'us')} / {fmt(med('fanout-rules','crossbar',p99)[0],'us')} | | | |")
add("")

# RPC
add(f"### RPC, {E['RPC_CALLERS']} callers → 1 callee (window {E['RPC_WINDOW']}): rules, dynamic authorizer vs allow-all\n")
add("| figure | shardbar | Crossbar.io | shardbar / Crossbar | target | met |")
add("|---|---|---|---|---|---|")
rpc = {(c, r): med(f"rpc-{c}", r, rate) for c in ("open", "rules", "dynamic", "cached") for r in ROUTERS}
labels = {"open": "allow-all", "rules": f"{R} rules", "dynamic": "authorizer, `cache: false`",
          "cached": "authorizer, `cache: true`"}
for c in ("open", "rules", "dynamic", "cached"):
    s, sv = rpc[(c, "shardbar")]
    k, kv = rpc[(c, "crossbar")]
    add(f"| {labels[c]}: calls/s (median; runs) | **{fmt(s)}** ({runs(sv)}){unclean('rpc-'+c,'shardbar')} | "
        f"**{fmt(k)}** ({runs(kv)}){unclean('rpc-'+c,'crossbar')} | {ratio(s,k):.0f}× | | |")
for c in ("rules", "dynamic", "cached"):
    s = ratio(rpc[(c, "shardbar")][0], rpc[("open", "shardbar")][0])
    k = ratio(rpc[(c, "crossbar")][0], rpc[("open", "crossbar")][0])
    target, judge = ("", "")
    if c == "rules":
        target, judge = "shardbar ≥ 0.9×", ("not judged (smoke run)" if quick else met(s >= 0.9))
    add(f"| {labels[c]} / allow-all (medians; per repetition) | **{s:.2f}×** ({per_rep('rpc-'+c,'rpc-open','shardbar',rate)}) | "
        f"{k:.2f}× ({per_rep('rpc-'+c,'rpc-open','crossbar',rate)}) | | {target} | {judge} |")
for c in ("open", "rules", "dynamic", "cached"):
    add(f"| {labels[c]}: p50 / p99 call→result | {fmt(med('rpc-'+c,'shardbar',p50)[0],'us')} / "
        f"{fmt(med('rpc-'+c,'shardbar',p99)[0],'us')} | {fmt(med('rpc-'+c,'crossbar',p50)[0],'us')} / "
        f"{fmt(med('rpc-'+c,'crossbar',p99)[0],'us')} | | | |")
# How often the authorizer was asked (it counts its answers), and over how many calls.
asked = {}
try:
    for line in open(f"{work}/authorizer.txt"):
        case, router, i, count, denied = line.split()
        asked.setdefault((case, router), []).append((int(i), int(count), int(denied)))
except FileNotFoundError:
    pass
def asked_cell(c, router):
    v = sorted(asked.get((f"rpc-{c}", router), []))
    calls = by_run(f"rpc-{c}", router, lambda r: r["received_total"])
    parts = [f"{cnt} for {fmt(calls.get(i, float('nan')))} calls" + (f", {d} denied" if d else "") for i, cnt, d in v]
    return "; ".join(parts) or "n/a"
for c in ("dynamic", "cached"):
    add(f"| {labels[c]}: authorizer calls answered (per repetition; over the measured calls plus warm-up) | "
        f"{asked_cell(c, 'shardbar')} | {asked_cell(c, 'crossbar')} | | | |")
add("")

# Denials
den = {}
for p in glob.glob(f"{work}/*-shardbar-*.denied"):
    try:
        den[os.path.basename(p)[:-7]] = int(open(p).read())
    except ValueError:
        pass
bad = {k: v for k, v in den.items() if v}
if bad:
    add("**shardbar denied requests that every role allows** (`shardbar_authorization_denied_total` deltas): "
        + ", ".join(f"{k}: {v}" for k, v in sorted(bad.items())) + ". See the router logs in the work directory.\n")
elif den:
    add(f"shardbar denied nothing in any run (`shardbar_authorization_denied_total` unchanged across all {len(den)} runs).\n")

add("With `cache: true`, Crossbar keeps a decision per realm, role, URI and action (shared by the role's "
    "sessions), shardbar per session, URI and action. Both ask again for every request that arrives before the "
    "first answer is in (the callers' whole first window, and the callee's REGISTER), hence the counts above. "
    "No target was set for the dynamic authorizer: without a cache every call waits for one Python process.\n")

rows = [l.split() for l in open(f"{work}/runs.txt").read().splitlines() if l.split()[3:4] != ["0"]]
if rows:
    add("Runs that were not clean (exit status; the report and loadgen's output are in the work directory):\n")
    add("| case | router | run | exit | what loadgen saw |")
    add("|---|---|---|---|---|")
    for c, r, i, rc in rows:
        rep = load(f"{work}/{c}-{r}-{i}.json") or {}
        g = rep.get("integrity") or {}
        why = [f"{k.replace('_', ' ')} {v}" for k, v in g.items() if v]
        for k in ("calls_unanswered", "sessions_dropped", "protocol_errors"):
            if rep.get(k):
                why.append(f"{k.replace('_', ' ')} {rep[k]}")
        why += [str(e)[:160].replace("|", "\\|") for e in (rep.get("errors") or [])[:2]]
        add(f"| {c} | {r} | {i} | {rc} | {'; '.join(why) if rep else 'no report'} |")
    reordered = sorted({f"{r} {c}" for c, r, i, rc in rows
                        if c in ("rpc-dynamic", "rpc-cached")
                        and ((load(f"{work}/{c}-{r}-{i}.json") or {}).get("integrity") or {}).get("reordered")})
    if reordered:
        add(f"\nReordered invocations behind the dynamic authorizer ({', '.join(reordered)}): a request that a cached "
            "decision allows is dispatched at once, while earlier requests of the same session still wait for the "
            "authorizer's answer, so later calls overtake them (WAMP keeps one caller's invocations to one callee "
            "in order). See bench/README.md, \"authz.sh\".")
else:
    add("Every run exited 0 (closed loop: no loss, no reordering, no dropped session, no error).")

section = "\n".join(lines).rstrip() + "\n"
text = open(out).read() if os.path.exists(out) else ""
# Replace the section (from its heading to the next level-2 heading or the end), or append it.
m = re.search(r"^## Authorization\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[:m.start()] + section + ("\n" + text[m.end():] if text[m.end():] else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
open(os.path.join(work, "section.md"), "w").write(section)
PYEOF
say "wrote the \"Authorization\" section of $RESULTS"
