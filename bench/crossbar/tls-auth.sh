#!/usr/bin/env bash
# Crossbar.io with TLS and authentication, for loadgen's encrypted and authenticated runs.
#
#   bench/crossbar/tls-auth.sh setup DIR   a throw-away PKI (openssl: CA, server certificate for
#                                          127.0.0.1/localhost, client certificate), credentials
#                                          and a Crossbar node directory (DIR/.crossbar) from
#                                          tls-auth.json.in; writes DIR/env to source
#   bench/crossbar/tls-auth.sh start DIR   start Crossbar on it (PID in DIR/crossbar.pid) and
#                                          wait until a TLS + ticket session opens
#   bench/crossbar/tls-auth.sh stop DIR    stop that Crossbar by its PID
#   bench/crossbar/tls-auth.sh smoke [DIR] setup, start, a short loadgen run of every mode
#                                          (pub/sub, RPC, fan-out, login storms, a refused
#                                          login), stop; reports in DIR (default: a temp dir)
#
# The node listens on 127.0.0.1 only, on three free ports:
#   wss       WebSocket over TLS       auth: anonymous, ticket, wampcra (plain and salted), cryptosign
#   rss       RawSocket over TLS       the same
#   rss_mtls  RawSocket over TLS, client certificate required; auth: tls (certificate SHA-1)
# Principals (all role "user", everything allowed on realm1): ticket joe / $TICKET; wampcra
# cra and cra-salted / $CRA_SECRET (salt $CRA_SALT, 1000 iterations, 32 bytes); cryptosign
# dev1 / seed $CRYPTOSIGN_SEED; tls client_0 / client.crt. DIR/env holds the ports, URLs,
# file names and secrets; `loadgen_auth_args METHOD` (defined there) prints loadgen's flags
# for one method, e.g. `loadgen logins --url "$RSS_URL" $(loadgen_auth_args cryptosign)`.
#
# Environment: LOADGEN (default target/release/loadgen, else target/debug/loadgen),
# VENV (bench/.venv, where bench/compare.sh installs Crossbar).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-$ROOT/bench/.venv}
if [[ -z "${LOADGEN:-}" ]]; then
    LOADGEN=$ROOT/target/release/loadgen
    [[ -x "$LOADGEN" ]] || LOADGEN=$ROOT/target/debug/loadgen
fi

say() { echo "[tls-auth $(date +%H:%M:%S)] $*" >&2; }
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A CA, and a certificate signed by it: cert NAME CN EXTENSIONS
cert() {
    local dir=$1 name=$2 cn=$3 ext=$4
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    printf '%b' "$ext" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 7 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

setup() {
    local dir=$1
    mkdir -p "$dir/.crossbar"
    dir=$(cd "$dir" && pwd)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj "/CN=loadgen test CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    cert "$dir" server localhost \
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    cert "$dir" client client_0 \
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    local client_sha1 ticket cra_secret cra_salt seed pubkey
    client_sha1=$(openssl x509 -in "$dir/client.crt" -noout -fingerprint -sha1 | cut -d= -f2)
    ticket=$(openssl rand -hex 16)
    cra_secret=$(openssl rand -hex 16)
    cra_salt=$(openssl rand -hex 8)
    seed=$(openssl rand -hex 32)
    # The Ed25519 public key of the seed: wrap it as a PKCS#8 key, take the last 32 bytes of
    # the public key's DER.
    pubkey=$(echo "302e020100300506032b657004220420$seed" | xxd -r -p |
        openssl pkey -inform DER -pubout -outform DER | tail -c 32 | xxd -p -c 64)
    local wss rss mtls
    wss=$(free_port) rss=$(free_port) mtls=$(free_port)
    sed -e "s|@DIR@|$dir|g" -e "s|@WSS_PORT@|$wss|" -e "s|@RSS_PORT@|$rss|" -e "s|@MTLS_PORT@|$mtls|" \
        -e "s|@TICKET@|$ticket|" -e "s|@CRA_SECRET@|$cra_secret|g" -e "s|@CRA_SALT@|$cra_salt|" \
        -e "s|@CRYPTOSIGN_PUBKEY@|$pubkey|" -e "s|@CLIENT_SHA1@|$client_sha1|" \
        "$HERE/tls-auth.json.in" >"$dir/.crossbar/config.json"
    cat >"$dir/env" <<EOF
# Written by bench/crossbar/tls-auth.sh setup: source it.
TLS_DIR=$dir
WSS_URL=wss://127.0.0.1:$wss/ws
RSS_URL=rss://127.0.0.1:$rss
MTLS_URL=rss://127.0.0.1:$mtls
TLS_CA=$dir/ca.crt
TLS_CLIENT_CERT=$dir/client.crt
TLS_CLIENT_KEY=$dir/client.key
TICKET=$ticket
CRA_SECRET=$cra_secret
CRA_SALT=$cra_salt
CRYPTOSIGN_SEED=$seed
CRYPTOSIGN_PUBKEY=$pubkey
CLIENT_SHA1=$client_sha1
# loadgen's TLS and authentication flags for one method (and the CA).
loadgen_auth_args() {
    case \$1 in
    anonymous) echo --tls-ca "\$TLS_CA" --authmethod anonymous ;;
    ticket) echo --tls-ca "\$TLS_CA" --authmethod ticket --authid joe --ticket "\$TICKET" ;;
    wampcra) echo --tls-ca "\$TLS_CA" --authmethod wampcra --authid cra --secret "\$CRA_SECRET" ;;
    wampcra-salted) echo --tls-ca "\$TLS_CA" --authmethod wampcra --authid cra-salted --secret "\$CRA_SECRET" ;;
    cryptosign) echo --tls-ca "\$TLS_CA" --authmethod cryptosign --authid dev1 --cryptosign-seed "\$CRYPTOSIGN_SEED" ;;
    tls) echo --tls-ca "\$TLS_CA" --tls-cert "\$TLS_CLIENT_CERT" --tls-key "\$TLS_CLIENT_KEY" --authmethod tls ;;
    esac
}
EOF
    say "set up $dir (ports wss $wss, rss $rss, rss_mtls $mtls)"
}

start() {
    local dir
    dir=$(cd "$1" && pwd)
    # shellcheck disable=SC1091
    source "$dir/env"
    "$VENV/bin/crossbar" start --cbdir "$dir/.crossbar" --loglevel warn >"$dir/crossbar.log" 2>&1 &
    echo $! >"$dir/crossbar.pid"
    local pid t0=$SECONDS
    pid=$(cat "$dir/crossbar.pid")
    # shellcheck disable=SC2046
    until "$LOADGEN" wait --url "$WSS_URL" $(loadgen_auth_args ticket) --timeout 2s >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS - t0 > 90)); then
            say "Crossbar did not come up; see $dir/crossbar.log"
            stop "$dir"
            return 2
        fi
    done
    say "Crossbar up (pid $(cat "$dir/crossbar.pid"))"
}

stop() {
    local pidfile=$1/crossbar.pid pid
    [[ -f "$pidfile" ]] || return 0
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$pidfile"
}

# One bounded loadgen run; its report goes to DIR/NAME.json. run DIR NAME EXPECTED_EXIT ARGS...
run() {
    local dir=$1 name=$2 expect=$3 rc=0
    shift 3
    say "$name: loadgen $*"
    timeout 300 "$LOADGEN" "$@" --no-progress --quiet --json "$dir/$name.json" >"$dir/$name.out" 2>&1 || rc=$?
    if [[ $rc -ne $expect ]]; then
        say "  exit $rc, expected $expect:"
        cat "$dir/$name.out" >&2
        FAILED=1
    fi
}

smoke() {
    local dir=${1:-$(mktemp -d /tmp/loadgen-tls-auth.XXXXXX)}
    setup "$dir"
    dir=$(cd "$dir" && pwd)
    # shellcheck disable=SC1091
    source "$dir/env"
    start "$dir"
    trap 'stop "$dir"' EXIT
    FAILED=0
    local t=(--warmup 0.5s --duration 2s --drain 2s --connect-timeout 60s)
    # shellcheck disable=SC2046
    {
        run "$dir" pubsub-wss-ticket 0 pubsub --url "$WSS_URL" $(loadgen_auth_args ticket) \
            --publishers 2 --subscribers 20 --topics 4 "${t[@]}"
        run "$dir" rpc-rss-cryptosign 0 rpc --url "$RSS_URL" $(loadgen_auth_args cryptosign) \
            --callers 8 --callees 1 --window 4 "${t[@]}"
        run "$dir" fanout-rss-wampcra-salted 0 fanout --url "$RSS_URL" $(loadgen_auth_args wampcra-salted) \
            --subscribers 100 --window 64 "${t[@]}"
        run "$dir" rpc-wss-insecure-anonymous 0 rpc --url "$WSS_URL" --tls-insecure --authmethod anonymous \
            --serializer msgpack --callers 4 "${t[@]}"
        run "$dir" logins-wss-ticket 0 logins --url "$WSS_URL" $(loadgen_auth_args ticket) \
            --sessions 1000 --concurrency 32 "${t[@]}"
        run "$dir" logins-wss-wampcra 0 logins --url "$WSS_URL" $(loadgen_auth_args wampcra) \
            --sessions 1000 --concurrency 32 "${t[@]}"
        run "$dir" logins-rss-wampcra-salted 0 logins --url "$RSS_URL" $(loadgen_auth_args wampcra-salted) \
            --sessions 1000 --concurrency 32 "${t[@]}"
        run "$dir" logins-rss-cryptosign 0 logins --url "$RSS_URL" $(loadgen_auth_args cryptosign) \
            --sessions 1000 --concurrency 32 "${t[@]}"
        run "$dir" logins-mtls-tls 0 logins --url "$MTLS_URL" $(loadgen_auth_args tls) \
            --sessions 1000 --concurrency 32 "${t[@]}"
        # A wrong ticket: every login is refused, and the report names the ABORT reason.
        run "$dir" logins-wss-bad-ticket 1 logins --url "$WSS_URL" --tls-ca "$TLS_CA" --authmethod ticket \
            --authid joe --ticket wrong --sessions 50 --concurrency 8 "${t[@]}"
    }
    stop "$dir"
    trap - EXIT
    "$VENV/bin/python" - "$dir" <<'PYEOF'
import glob, json, os, sys
print(f"{'run':32} {'ok':5} {'sessions':>8} {'logins/s':>9} {'msg/s':>10} {'p50':>9} {'p99':>9} {'max':>9}  aborts")
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    r = json.load(open(p))
    l = r.get("logins") or {}
    lat = r["latency"]
    rate = f"{l['per_s']:.0f}" if l else ""
    msgs = "" if l or r["scenario"] == "connections" else f"{r['received_per_s']:.0f}"
    print(f"{os.path.basename(p)[:-5]:32} {str(r['ok']):5} {r['sessions']:>8} {rate:>9} {msgs:>10} "
          f"{lat['p50_us']/1e3:>7.2f}ms {lat['p99_us']/1e3:>7.2f}ms {lat['max_us']/1e3:>7.2f}ms  {r.get('aborts') or ''}")
PYEOF
    say "reports in $dir"
    return "$FAILED"
}

case "${1:-}" in
setup) setup "${2:?DIR}" ;;
start) start "${2:?DIR}" ;;
stop) stop "${2:?DIR}" ;;
smoke) smoke "${2:-}" ;;
*)
    sed -n '2,26p' "$0"
    exit 2
    ;;
esac
