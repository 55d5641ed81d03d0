#!/usr/bin/env bash
# tuning/test.sh: self-test of tuning/ for CI. Writes only under a temporary directory,
# talks only to 127.0.0.1, and never changes this host's settings.
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'EOF'
Usage: tuning/test.sh [-h|--help]

Self-test of tuning/:
  1. shellcheck on every script in tuning/ and on the unit's health-check command
     (installs shellcheck with apt-get when root; otherwise prints "shellcheck not
     available" and fails only if SHARDBAR_REQUIRE_SHELLCHECK=1)
  2. check.sh on this host (non-strict; must exit 0 = required floors met), shown in full
  3. check.sh against fake roots (required floor missed, advisories, --strict, missing files)
  4. apply.sh against a fake root (SHARDBAR_TUNING_ROOT): a dry run changes nothing;
     --yes writes the expected drop-ins and values; a second --yes changes nothing;
     values already higher are never lowered; --yes without root fails
  5. shardbar.service: required directives, systemd-analyze verify (if present), and its
     health-check command against a fake HTTP server on 127.0.0.1 (if python3 is present)

Ends with "tuning: N passed, N failed"; exits 1 if anything failed.
EOF
}
case ${1:-} in
-h | --help)
	usage
	exit 0
	;;
"") ;;
*)
	printf 'test.sh: unknown argument %s\n' "$1" >&2
	exit 2
	;;
esac

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/shardbar-tuning-test.XXXXXX")
SERVER_PID=''
cleanup() {
	if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
	rm -rf -- "$TMP"
}
trap cleanup EXIT

passed=0 failed=0
ok() {
	passed=$((passed + 1))
	printf 'ok    %s\n' "$1"
}
bad() {
	failed=$((failed + 1))
	printf 'FAIL  %s\n' "$1"
	if [[ -n ${2:-} ]]; then
		while IFS= read -r l; do printf '      | %s\n' "$l"; done <<<"$2"
	fi
}
# expect NAME EXPECTED_RC ACTUAL_RC [OUTPUT]
expect_rc() {
	if [[ $3 == "$2" ]]; then ok "$1"; else bad "$1 (exit $3, expected $2)" "${4:-}"; fi
}
contains() { [[ $1 == *"$2"* ]]; }
section() { printf '\n== %s\n' "$1"; }

# snapshot DIR: content hash of every file under DIR (bash + coreutils only).
snapshot() {
	local f
	shopt -s globstar nullglob dotglob
	for f in "$1"/**; do
		[[ -f $f ]] && printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "${f#"$1"}"
	done
	shopt -u globstar nullglob dotglob
}

# setkv ROOT key=value...: write fake /proc/sys entries (key with dots) or paths (/...).
setkv() {
	local root=$1 kv k v p
	shift
	for kv in "$@"; do
		k=${kv%%=*} v=${kv#*=}
		if [[ $k == /* ]]; then p=$root$k; else p=$root/proc/sys/${k//.//}; fi
		mkdir -p -- "${p%/*}"
		printf '%s\n' "$v" >"$p"
	done
}

# mkroot DIR [key=value...]: a fake root with stock kernel defaults, then overrides.
mkroot() {
	local root=$1
	shift
	mkdir -p "$root/etc/sysctl.d" "$root/etc/security/limits.d" "$root/proc/self"
	: >"$root/etc/security/limits.conf"
	setkv "$root" \
		kernel.osrelease=6.1.0-test kernel.io_uring_disabled=0 \
		fs.nr_open=1048576 fs.file-max=9223372036854775807 \
		net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=512 net.ipv4.tcp_syncookies=1 \
		net.core.rmem_max=212992 net.core.wmem_max=212992 \
		"net.ipv4.tcp_rmem=4096	131072	6291456" "net.ipv4.tcp_wmem=4096	16384	4194304" \
		"net.ipv4.ip_local_port_range=32768	60999" net.ipv4.ip_local_reserved_ports= \
		net.ipv4.tcp_tw_reuse=2 \
		/sys/devices/system/cpu/online=0-1 \
		"/sys/kernel/mm/transparent_hugepage/enabled=always [madvise] never" \
		"/sys/kernel/mm/transparent_hugepage/defrag=always defer defer+madvise [madvise] never"
	fakelimits "$root" 8388608 1048576
	(($# == 0)) || setkv "$root" "$@"
}

# fakelimits ROOT MEMLOCK_BYTES NOFILE: a fake /proc/self/limits.
fakelimits() {
	cat >"$1/proc/self/limits" <<EOF
Limit                     Soft Limit           Hard Limit           Units
Max open files            $3                 $3                 files
Max locked memory         $2              $2              bytes
EOF
}

procval() { tr -s '\t ' '  ' <"$1/proc/sys/${2//.//}"; }

run() { # run CMD...: sets RC and OUT (stdout+stderr)
	set +e
	OUT=$("$@" 2>&1)
	RC=$?
	set -e
}

SCRIPTS=("$HERE/check.sh" "$HERE/apply.sh" "$HERE/test.sh")
UNIT=$HERE/shardbar.service

# The unit's ExecStartPost as bash sees it: systemd turns "$$" into "$" and "%%" into "%".
probe_script() {
	local line
	while IFS= read -r line; do
		if [[ $line == ExecStartPost=/bin/bash\ -c\ \'* ]]; then
			line=${line#ExecStartPost=/bin/bash -c \'}
			line=${line%\'}
			line=${line//\$\$/\$}
			line=${line//%%/%}
			printf '%s\n' "$line"
			return 0
		fi
	done <"$UNIT"
	return 1
}

# ------------------------------------------------------------ shellcheck
section "shellcheck"
if ! command -v shellcheck >/dev/null 2>&1 && ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
	printf 'installing shellcheck with apt-get...\n'
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >"$TMP/apt.log" 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$TMP/apt.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >>"$TMP/apt.log" 2>&1 || true
	fi
fi
if command -v shellcheck >/dev/null 2>&1; then
	printf '%s\n' "$(shellcheck --version | head -n 2 | tail -n 1)"
	for s in "${SCRIPTS[@]}"; do
		run shellcheck -x "$s"
		expect_rc "shellcheck ${s##*/}" 0 "$RC" "$OUT"
	done
	if probe_script >"$TMP/probe.body"; then
		{
			printf '#!/bin/bash\n'
			cat "$TMP/probe.body"
		} >"$TMP/health-probe.sh"
		run shellcheck "$TMP/health-probe.sh"
		expect_rc "shellcheck shardbar.service ExecStartPost command" 0 "$RC" "$OUT"
	else
		bad "shardbar.service has no ExecStartPost=/bin/bash -c '...' line"
	fi
else
	printf 'shellcheck not available\n'
	if [[ ${SHARDBAR_REQUIRE_SHELLCHECK:-0} == 1 ]]; then
		bad "shellcheck required (SHARDBAR_REQUIRE_SHELLCHECK=1) but not installed"
	fi
fi
for s in "${SCRIPTS[@]}"; do
	run bash -n "$s"
	expect_rc "bash -n ${s##*/}" 0 "$RC" "$OUT"
done

# ----------------------------------------------------------- check.sh, this host
section "check.sh on this host (non-strict)"
run "$HERE/check.sh"
printf '%s\n' "$OUT"
expect_rc "check.sh on this host: required floors met" 0 "$RC"
run "$HERE/check.sh" --strict
if [[ $RC == 0 || $RC == 1 ]] && contains "$OUT" "RESULT:"; then ok "check.sh --strict runs (exit $RC)"; else bad "check.sh --strict (exit $RC)" "$OUT"; fi
if ((EUID == 0)) && command -v setpriv >/dev/null 2>&1; then
	install -m 0755 "$HERE/check.sh" "$TMP/check-copy.sh"
	chmod 0755 "$TMP"
	run setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all bash "$TMP/check-copy.sh"
	if [[ $RC == 0 || $RC == 1 ]] && contains "$OUT" "RESULT:"; then ok "check.sh runs unprivileged (exit $RC)"; else bad "check.sh unprivileged (exit $RC)" "$OUT"; fi
fi
run "$HERE/check.sh" --help
expect_rc "check.sh --help" 0 "$RC" "$OUT"
run "$HERE/check.sh" --no-such-option
expect_rc "check.sh rejects an unknown option" 2 "$RC" "$OUT"
run "$HERE/check.sh" --shards many
expect_rc "check.sh rejects --shards many" 2 "$RC" "$OUT"

# ----------------------------------------------------------- check.sh, fake roots
section "check.sh against fake roots"
mkdir -p "$TMP/empty"
SHARDBAR_TUNING_ROOT=$TMP/empty run "$HERE/check.sh"
if [[ $RC == 0 ]] && contains "$OUT" "net.core.somaxconn                n/a"; then
	ok "missing /proc and /sys files are n/a, not failures"
else
	bad "empty root (exit $RC)" "$OUT"
fi

mkroot "$TMP/low" net.core.somaxconn=128 kernel.io_uring_disabled=2
fakelimits "$TMP/low" 65536 1024
SHARDBAR_TUNING_ROOT=$TMP/low run "$HERE/check.sh"
n_req=0
while IFS= read -r l; do
	case $l in
	"RLIMIT_MEMLOCK"*"<< REQUIRED" | "RLIMIT_NOFILE"*"<< REQUIRED" | "net.core.somaxconn"*"<< REQUIRED" | "kernel.io_uring_disabled"*"<< REQUIRED") n_req=$((n_req + 1)) ;;
	esac
done <<<"$OUT"
if [[ $RC == 1 && $n_req == 4 ]]; then
	ok "required floors missed (memlock 64 KiB, nofile 1024, somaxconn 128, io_uring off) -> exit 1"
else
	bad "required floors missed: exit $RC, $n_req/4 rows flagged" "$OUT"
fi

mkroot "$TMP/memlock" net.core.somaxconn=65535
fakelimits "$TMP/memlock" 524288 1048576
SHARDBAR_TUNING_ROOT=$TMP/memlock run "$HERE/check.sh"
if [[ $RC == 0 ]] && contains "$OUT" "RLIMIT_MEMLOCK (soft)             512 KiB"; then
	ok "memlock exactly 512 KiB passes the floor (LOW vs 8 MiB, advisory)"
else
	bad "memlock 512 KiB (exit $RC)" "$OUT"
fi

SHARDBAR_TUNING_ROOT=$TMP/memlock run "$HERE/check.sh" --sessions 2000000
if [[ $RC == 1 ]] && contains "$OUT" "RLIMIT_NOFILE"; then ok "--sessions raises the nofile floor"; else bad "--sessions 2000000 (exit $RC)" "$OUT"; fi

# ----------------------------------------------------------------- apply.sh
section "apply.sh against a fake root"
run "$HERE/apply.sh" --help
expect_rc "apply.sh --help" 0 "$RC" "$OUT"
run "$HERE/apply.sh" --bogus
expect_rc "apply.sh rejects an unknown option" 2 "$RC" "$OUT"

R=$TMP/root
mkroot "$R"
before=$(snapshot "$R")
SHARDBAR_TUNING_ROOT=$R run "$HERE/apply.sh"
after=$(snapshot "$R")
if [[ $RC == 0 && $before == "$after" ]] && contains "$OUT" "4096 -> 65535  (would set)"; then
	ok "dry run: exit 0, plan shown, nothing changed"
else
	bad "dry run (exit $RC, changed: $([[ $before == "$after" ]] && echo no || echo yes))" "$OUT"
fi

SHARDBAR_TUNING_ROOT=$R run "$HERE/apply.sh" --yes
printf '%s\n' "$OUT" | head -n 16
expect_rc "apply --yes exits 0" 0 "$RC" "$OUT"
want_sysctl=(
	"net.core.somaxconn = 65535"
	"net.ipv4.tcp_max_syn_backlog = 65535"
	"net.core.rmem_max = 16777216"
	"net.core.wmem_max = 16777216"
	"net.ipv4.ip_local_port_range = 10000 65535"
	"net.ipv4.tcp_tw_reuse = 1"
)
dropin=$(cat "$R/etc/sysctl.d/60-shardbar.conf" 2>/dev/null || true)
missing=()
for w in "${want_sysctl[@]}"; do contains "$dropin" "$w" || missing+=("$w"); done
if ((${#missing[@]} == 0)); then ok "sysctl drop-in has the raised settings"; else bad "sysctl drop-in lacks: ${missing[*]}" "$dropin"; fi
if ! contains "$dropin" "fs.file-max" && ! contains "$dropin" "net.ipv4.tcp_rmem"; then
	ok "sysctl drop-in leaves out settings the host already meets (fs.file-max, tcp_rmem)"
else
	bad "sysctl drop-in pins settings it did not need to raise" "$dropin"
fi
limits=$(cat "$R/etc/security/limits.d/60-shardbar.conf" 2>/dev/null || true)
n=0
for w in "soft  memlock  unlimited" "hard  memlock  unlimited" "soft  nofile   1048576" "hard  nofile   1048576"; do
	contains "$limits" "@shardbar    $w" && n=$((n + 1))
done
if ((n == 4)); then ok "limits drop-in has memlock unlimited and nofile 1048576 for @shardbar"; else bad "limits drop-in ($n/4 lines)" "$limits"; fi
vals="$(procval "$R" net.core.somaxconn)|$(procval "$R" net.core.rmem_max)|$(procval "$R" net.ipv4.ip_local_port_range)|$(procval "$R" net.ipv4.tcp_tw_reuse)|$(procval "$R" fs.file-max)"
if [[ $vals == "65535|16777216|10000 65535|1|9223372036854775807" ]]; then
	ok "running values written through /proc/sys (file-max kept at its higher value)"
else
	bad "running values: $vals"
fi
if contains "$OUT" "net.core.somaxconn                 4096 -> 65535  (set)"; then ok "apply reports old -> new"; else bad "apply does not report old -> new" "$OUT"; fi

before=$(snapshot "$R")
SHARDBAR_TUNING_ROOT=$R run "$HERE/apply.sh" --yes
after=$(snapshot "$R")
if [[ $RC == 0 && $before == "$after" ]] && contains "$OUT" "apply: 0 change(s) made."; then
	ok "second --yes changes nothing"
else
	bad "second --yes (exit $RC)" "$OUT"
fi

SHARDBAR_TUNING_ROOT=$R run "$HERE/check.sh"
lows=()
while IFS= read -r l; do
	case $l in
	fs.* | net.*)
		case $l in *" LOW"* | *" WARN"*) lows+=("${l%% *}") ;; esac
		;;
	esac
done <<<"$OUT"
if [[ $RC == 0 ]] && ((${#lows[@]} == 0)); then
	ok "check.sh agrees with apply.sh: every sysctl OK after apply"
else
	bad "check.sh after apply (exit $RC): ${lows[*]:-}" "$OUT"
fi

H=$TMP/higher
mkroot "$H" net.core.somaxconn=262144 "net.ipv4.tcp_rmem=8192 262144 67108864" net.core.rmem_max=33554432 \
	"net.ipv4.ip_local_port_range=1024 65535" net.ipv4.ip_local_reserved_ports=9000-9010 \
	net.ipv4.tcp_tw_reuse=1 net.ipv4.tcp_syncookies=2 net.ipv4.tcp_max_syn_backlog=8192
printf '@shardbar hard nofile 4194304\n@shardbar - memlock 65536\n' >"$H/etc/security/limits.conf"
printf 'net.ipv4.tcp_max_syn_backlog = 131072\n' >"$H/etc/sysctl.d/60-shardbar.conf"
SHARDBAR_TUNING_ROOT=$H run "$HERE/apply.sh" --yes
vals="$(procval "$H" net.core.somaxconn)|$(procval "$H" net.ipv4.tcp_rmem)|$(procval "$H" net.core.rmem_max)|$(procval "$H" net.ipv4.ip_local_port_range)|$(procval "$H" net.ipv4.tcp_syncookies)|$(procval "$H" net.ipv4.tcp_max_syn_backlog)"
if [[ $RC == 0 && $vals == "262144|8192 262144 67108864|33554432|1024 65535|2|131072" ]]; then
	ok "values already higher are not lowered (runtime and existing drop-in)"
else
	bad "already-higher values: exit $RC, got $vals" "$OUT"
fi
dropin=$(cat "$H/etc/sysctl.d/60-shardbar.conf")
if ! contains "$dropin" "net.core.somaxconn" && contains "$dropin" "net.ipv4.tcp_max_syn_backlog = 131072"; then
	ok "drop-in keeps its own higher value and does not pin higher host values"
else
	bad "drop-in with higher values" "$dropin"
fi
if [[ $(procval "$H" net.ipv4.ip_local_reserved_ports) == "9000-9010,8080" ]]; then
	ok "listener port 8080 inside the ephemeral range is added to ip_local_reserved_ports"
else
	bad "ip_local_reserved_ports = $(procval "$H" net.ipv4.ip_local_reserved_ports)"
fi
limits=$(cat "$H/etc/security/limits.d/60-shardbar.conf")
if contains "$limits" "hard  nofile   4194304" && contains "$limits" "soft  nofile   1048576" && contains "$limits" "hard  memlock  unlimited"; then
	ok "limits: an existing higher nofile is kept, lower memlock raised"
else
	bad "limits with existing entries" "$limits"
fi

L=$TMP/later
mkroot "$L"
printf 'net.core.somaxconn = 1024\n' >"$L/etc/sysctl.d/99-local.conf"
SHARDBAR_TUNING_ROOT=$L run "$HERE/apply.sh"
if [[ $RC == 0 ]] && contains "$OUT" "warning: /etc/sysctl.d/99-local.conf sets net.core.somaxconn = 1024"; then
	ok "warns about a later sysctl file that would win at boot"
else
	bad "later-file warning (exit $RC)" "$OUT"
fi

if ((EUID == 0)) && command -v setpriv >/dev/null 2>&1; then
	install -m 0755 "$HERE/apply.sh" "$TMP/apply-copy.sh"
	run env -u SHARDBAR_TUNING_ROOT setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all bash "$TMP/apply-copy.sh" --yes
	noroot_rc=$RC
elif ((EUID != 0)); then
	run env -u SHARDBAR_TUNING_ROOT "$HERE/apply.sh" --yes
	noroot_rc=$RC
else
	noroot_rc=skip
fi
if [[ $noroot_rc == skip ]]; then
	printf 'skip  apply --yes without root (setpriv not available)\n'
elif [[ $noroot_rc == 1 ]] && contains "$OUT" "--yes needs root"; then
	ok "apply --yes without root fails clearly"
else
	bad "apply --yes without root (exit $noroot_rc)" "$OUT"
fi

# -------------------------------------------------------------------- unit
section "shardbar.service"
unit=$(cat "$UNIT")
missing=()
for w in "ExecStart=/usr/local/bin/shardbar --config /etc/shardbar/shardbar.toml" \
	"LimitMEMLOCK=infinity" "LimitNOFILE=1048576" "Restart=on-failure" "RestartSec=" \
	"KillSignal=SIGTERM" "TimeoutStopSec=" "ExecStartPost=" "MemoryDenyWriteExecute=yes" \
	"SystemCallFilter=@system-service io_uring_setup io_uring_enter io_uring_register" \
	"CapabilityBoundingSet=" "NoNewPrivileges=yes"; do
	contains "$unit" $'\n'"$w" || missing+=("$w")
done
if ((${#missing[@]} == 0)); then ok "unit has the required directives"; else bad "unit lacks: ${missing[*]}"; fi
if contains "$unit" $'\nAmbientCapabilities=CAP'; then bad "unit grants ambient capabilities"; else ok "unit grants no capabilities"; fi
if command -v systemd-analyze >/dev/null 2>&1; then
	# The binary is not installed here: verify a copy whose ExecStart points at /bin/true.
	u=$TMP/unit/shardbar.service
	mkdir -p "${u%/*}"
	while IFS= read -r line; do
		[[ $line == ExecStart=* ]] && line="ExecStart=/bin/true --config /etc/shardbar/shardbar.toml"
		printf '%s\n' "$line"
	done <"$UNIT" >"$u"
	run systemd-analyze verify "$u"
	expect_rc "systemd-analyze verify" 0 "$RC" "$OUT"
else
	printf 'skip  systemd-analyze verify (not installed)\n'
fi

if command -v python3 >/dev/null 2>&1 && probe_script >"$TMP/probe.body"; then
	cat >"$TMP/fake_health.py" <<'EOF'
import os, socket, sys, time
code, portfile, logfile = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
s.settimeout(1.0)
deadline = time.time() + 30
while time.time() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        with open(logfile, "ab") as f:
            f.write(data)
        reason = "OK" if code == "200" else "Service Unavailable"
        c.sendall(("HTTP/1.1 %s %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (code, reason)).encode())
    except OSError:
        pass
    c.close()
EOF
	# start_server CODE: fake /health on 127.0.0.1 (ephemeral port) -> sets PORT.
	start_server() {
		rm -f "$TMP/port" "$TMP/requests"
		python3 "$TMP/fake_health.py" "$1" "$TMP/port" "$TMP/requests" &
		SERVER_PID=$!
		for _ in $(seq 1 50); do
			[[ -s $TMP/port ]] && break
			sleep 0.1
		done
		PORT=$(cat "$TMP/port")
	}
	stop_server() {
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=''
	}
	start_server 200
	SECONDS=0
	SHARDBAR_HEALTH_PORT=$PORT SHARDBAR_HEALTH_WAIT_S=5 run bash -c "$(cat "$TMP/probe.body")"
	req=$(tr -d '\r' <"$TMP/requests" 2>/dev/null || true)
	if [[ $RC == 0 ]] && contains "$req" "GET /health HTTP/1.0" && contains "$req" "Host: 127.0.0.1:$PORT"; then
		ok "health check: 200 from /health -> exit 0 (${SECONDS}s)"
	else
		bad "health check against 200 (exit $RC)" "$OUT"$'\n'"$req"
	fi
	stop_server
	start_server 503
	SHARDBAR_HEALTH_PORT=$PORT SHARDBAR_HEALTH_WAIT_S=2 run bash -c "$(cat "$TMP/probe.body")"
	if [[ $RC == 1 ]] && contains "$OUT" "did not return 200 within 2s"; then
		ok "health check: 503 -> exit 1 after the wait"
	else
		bad "health check against 503 (exit $RC)" "$OUT"
	fi
	stop_server
	SHARDBAR_HEALTH_PORT=$PORT SHARDBAR_HEALTH_WAIT_S=1 run bash -c "$(cat "$TMP/probe.body")"
	expect_rc "health check: nothing listening -> exit 1" 1 "$RC" "$OUT"
else
	printf 'skip  health-check tests (python3 not available)\n'
fi

printf '\ntuning: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
