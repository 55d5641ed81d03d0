#!/usr/bin/env bash
# tuning/check.sh: read-only check of a host for shardbar. See tuning/README.md.
#
# Prints each setting's current value next to the recommended one, with a status:
#   OK    meets the recommendation
#   LOW   below the recommendation
#   WARN  set in a way that hurts shardbar (not a plain "too low")
#   n/a   cannot be read here (file missing: container, VM, older kernel, other netns)
# A row marked "<< REQUIRED" is below a hard floor: shardbar cannot run properly.
#
# Exit status: 0 = every required floor met (advisories never fail without --strict),
#              1 = a required floor missed (or, with --strict, any LOW/WARN),
#              2 = usage error.
# Needs only bash and coreutils; reads /proc and /sys directly (no sysctl, no grep/awk).
set -euo pipefail
export LC_ALL=C

usage() {
	cat <<'EOF'
Usage: tuning/check.sh [options]

Read-only check of this host's kernel and limit settings for shardbar. Changes nothing.

Options:
  --strict               advisory items (LOW/WARN) fail too (exit 1)
  --shards N             shards the router will run ([router] shards; default: online CPUs).
                         Shard i is pinned to CPU i, so the shard cores are 0..N-1.
  --sessions N           sessions you plan to hold on this host (default: 10000); sets the
                         required RLIMIT_NOFILE floor: N + 16 per shard + 64
  --pending-bytes-max B  the router's [limits] pending_bytes_max in bytes (default: 8388608)
  --port P               a TCP port of a [[listener]] address (repeatable; default: 8080)
  --pid PID              read resource limits of a running process (e.g. shardbar) instead
                         of this shell's own
  -h, --help             this text

Environment:
  SHARDBAR_TUNING_ROOT   prefix for every path read (/proc, /sys, /etc); for tests only

Exit status: 0 required floors met, 1 a required floor missed (or any advisory with
--strict), 2 usage error.
EOF
}

die_usage() {
	printf 'check.sh: %s\n' "$1" >&2
	printf "Try 'tuning/check.sh --help'.\n" >&2
	exit 2
}

is_uint() { [[ ${1:-} =~ ^[0-9]+$ ]]; }

ROOT=${SHARDBAR_TUNING_ROOT:-}
while [[ $ROOT == */ ]]; do ROOT=${ROOT%/}; done

strict=0
shards=
sessions=10000
pending_max=8388608
pid=self
ports=()

while (($# > 0)); do
	case $1 in
	--strict) strict=1 ;;
	--shards | --sessions | --pending-bytes-max | --port | --pid)
		(($# >= 2)) || die_usage "$1 needs a value"
		is_uint "$2" || die_usage "$1 needs a non-negative integer, got '$2'"
		case $1 in
		--shards) shards=$2 ;;
		--sessions) sessions=$2 ;;
		--pending-bytes-max) pending_max=$2 ;;
		--port) ports+=("$2") ;;
		--pid) pid=$2 ;;
		esac
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*) die_usage "unknown option '$1'" ;;
	esac
	shift
done
((${#ports[@]} > 0)) || ports=(8080)

# ---------------------------------------------------------------- helpers

# readf PATH: print the content of $ROOT/PATH (trailing newlines dropped); 1 if unreadable.
readf() {
	local f=$ROOT$1
	[[ -f $f && -r $f ]] || return 1
	cat -- "$f" 2>/dev/null || return 1
}

# norm "a<TAB>b  c": squeeze whitespace to single spaces.
norm() {
	local -a w
	read -ra w <<<"$1" || true
	printf '%s' "${w[*]}"
}

# ge A B: A >= B for non-negative integers of any length, or "unlimited".
ge() {
	local a=$1 b=$2
	[[ $a == unlimited ]] && return 0
	[[ $b == unlimited ]] && return 1
	a=${a#"${a%%[!0]*}"}
	b=${b#"${b%%[!0]*}"}
	if ((${#a} != ${#b})); then
		((${#a} > ${#b}))
		return
	fi
	[[ $a > $b || $a == "$b" ]]
}

# human BYTES: 8388608 -> "8 MiB".
human() {
	local v=$1
	if [[ $v == unlimited ]] || ! is_uint "$v" || ((${#v} > 18)); then
		printf '%s' "$v"
	elif ((v >= 1073741824 && v % 1073741824 == 0)); then
		printf '%d GiB' $((v / 1073741824))
	elif ((v >= 1048576 && v % 1048576 == 0)); then
		printf '%d MiB' $((v / 1048576))
	elif ((v >= 1024 && v % 1024 == 0)); then
		printf '%d KiB' $((v / 1024))
	else
		printf '%s B' "$v"
	fi
}

# cpulist "0-3,8" -> "0 1 2 3 8"
cpulist() {
	local list=$1 part a b i
	local -a parts out=()
	[[ -z $list || $list == "(null)" ]] && return 0
	IFS=, read -ra parts <<<"$list"
	for part in "${parts[@]}"; do
		part=${part%%:*}
		if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
			a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
			for ((i = a; i <= b; i++)); do out+=("$i"); done
		elif is_uint "$part"; then
			out+=("$part")
		fi
	done
	printf '%s' "${out[*]}"
}

# hexmask "00000000,0000000c" -> "2 3"
hexmask() {
	local m=${1//,/} i d bit cpu=0
	local -a out=()
	[[ $m =~ ^[0-9a-fA-F]+$ ]] || return 0
	for ((i = ${#m} - 1; i >= 0; i--)); do
		d=$((16#${m:i:1}))
		for bit in 0 1 2 3; do
			if (((d >> bit) & 1)); then out+=($((cpu + bit))); fi
		done
		cpu=$((cpu + 4))
	done
	printf '%s' "${out[*]}"
}

# on_shard "cpu list (space separated)": 0 if any of them is a shard core.
on_shard() {
	local c
	for c in $1; do
		if ((c < shards)); then return 0; fi
	done
	return 1
}

# short "text": clip to the column width.
short() {
	local s=$1 width=${2:-22}
	if ((${#s} > width)); then s="${s:0:width-3}..."; fi
	printf '%s' "$s"
}

# ------------------------------------------------------------------ rows

R_NAME=() R_CUR=() R_REC=() R_REQ=() R_ST=() R_FAIL=() R_NOTE=()

# row NAME CURRENT RECOMMENDED REQUIRED STATUS FAIL(0/1) NOTE
row() {
	R_NAME+=("$1") R_CUR+=("$2") R_REC+=("$3") R_REQ+=("$4") R_ST+=("$5") R_FAIL+=("$6") R_NOTE+=("$7")
}

# at_least NAME CUR REC FLOOR NOTE [human]: numeric "at least" item. FLOOR "" = advisory.
at_least() {
	local name=$1 cur=$2 rec=$3 floor=$4 note=$5 fmt=${6:-plain}
	local shown_cur=$cur shown_rec=">= $rec" shown_req=- st=OK fail=0
	if [[ $fmt == human ]]; then
		shown_cur=$(human "$cur")
		shown_rec=">= $(human "$rec")"
		[[ -n $floor ]] && shown_req=">= $(human "$floor")"
	else
		[[ -n $floor ]] && shown_req=">= $floor"
	fi
	if [[ -z $cur ]]; then
		row "$name" n/a "$shown_rec" "$shown_req" n/a 0 ""
		return 0
	fi
	if [[ -n $floor ]] && ! ge "$cur" "$floor"; then
		st=LOW fail=1
	elif ! ge "$cur" "$rec"; then
		st=LOW
	fi
	[[ $st == OK ]] && note=""
	row "$name" "$shown_cur" "$shown_rec" "$shown_req" "$st" "$fail" "$note"
}

sys() { readf "/proc/sys/$1" || true; }

# ------------------------------------------------------------- host facts

osrelease=$(readf /proc/sys/kernel/osrelease || true)
online=$(readf /sys/devices/system/cpu/online || true)
read -ra online_cpus <<<"$(cpulist "$online")" || true
ncpu=${#online_cpus[@]}
if ((ncpu == 0)); then ncpu=$(nproc 2>/dev/null || echo 1); fi
[[ -n $shards ]] || shards=$ncpu
nofile_floor=$((sessions + 16 * shards + 64))
nofile_rec=1048576
if ((nofile_floor > nofile_rec)); then nofile_rec=$nofile_floor; fi

in_vm=no
if [[ -r $ROOT/proc/cpuinfo ]]; then
	while IFS= read -r line; do
		if [[ $line == flags* ]]; then
			[[ " $line " == *" hypervisor "* ]] && in_vm=yes
			break
		fi
	done <"$ROOT/proc/cpuinfo"
fi

# ------------------------------------------------------------------ kernel

if [[ -n $osrelease ]]; then
	if [[ $osrelease =~ ^([0-9]+)\.([0-9]+) ]] &&
		((BASH_REMATCH[1] > 5 || (BASH_REMATCH[1] == 5 && BASH_REMATCH[2] >= 8))); then
		row "kernel" "$(short "$osrelease" 22)" ">= 5.8" ">= 5.8" OK 0 ""
	else
		row "kernel" "$(short "$osrelease" 22)" ">= 5.8" ">= 5.8" LOW 1 \
			"glommio 0.9 needs io_uring features of Linux 5.8 or newer"
	fi
else
	row "kernel" n/a ">= 5.8" ">= 5.8" n/a 0 ""
fi

v=$(sys kernel/io_uring_disabled)
case $v in
"") row "kernel.io_uring_disabled" n/a 0 "!= 2" n/a 0 "" ;;
0) row "kernel.io_uring_disabled" 0 0 "!= 2" OK 0 "" ;;
1) row "kernel.io_uring_disabled" 1 0 "!= 2" WARN 0 \
	"io_uring only for members of group kernel.io_uring_group ($(sys kernel/io_uring_group)) or CAP_SYS_ADMIN: put the shardbar user in it, or set 0" ;;
*) row "kernel.io_uring_disabled" "$v" 0 "!= 2" WARN 1 \
	"io_uring is disabled for everyone: no glommio executor can start; set kernel.io_uring_disabled=0" ;;
esac

# ------------------------------------------------------------ rlimits

limits_file=/proc/$pid/limits
if [[ $pid != self && ! -r $ROOT$limits_file ]]; then
	die_usage "--pid $pid: cannot read $limits_file (no such process?)"
fi
ml_soft='' nf_soft='' nf_hard=''
if [[ -r $ROOT$limits_file ]]; then
	while IFS= read -r line; do
		case $line in
		"Max locked memory"*)
			read -ra f <<<"${line#Max locked memory}"
			ml_soft=${f[0]:-}
			;;
		"Max open files"*)
			read -ra f <<<"${line#Max open files}"
			nf_soft=${f[0]:-} nf_hard=${f[1]:-}
			;;
		esac
	done <"$ROOT$limits_file"
fi
if [[ $pid == self ]]; then limits_of="this shell (pid $$)"; else limits_of="pid $pid"; fi

at_least "RLIMIT_MEMLOCK (soft)" "$ml_soft" 8388608 524288 \
	"glommio refuses to start an executor below 512 KiB; >= 8 MiB, or unlimited (LimitMEMLOCK=infinity) for many shards" human
at_least "RLIMIT_NOFILE (soft)" "$nf_soft" "$nofile_rec" "$nofile_floor" \
	"one fd per connection + a few per shard; floor = --sessions $sessions + 16*$shards + 64; unit sets LimitNOFILE=1048576"
if [[ -n $nf_hard ]] && [[ -n $nf_soft ]] && ! ge "$nf_soft" "$nofile_rec" && ge "$nf_hard" "$nofile_rec"; then
	R_NOTE[-1]="${R_NOTE[-1]} (hard limit $nf_hard allows 'ulimit -n $nofile_rec')"
fi

# ------------------------------------------------------------- fs.*

nr_open_floor=1048576
((nofile_floor > nr_open_floor)) && nr_open_floor=$nofile_floor
at_least "fs.nr_open" "$(sys fs/nr_open)" "$nr_open_floor" "$nr_open_floor" \
	"caps every RLIMIT_NOFILE: shardbar.service's LimitNOFILE=1048576 fails to apply (status 205/LIMITS) above it"
at_least "fs.file-max" "$(sys fs/file-max)" 2097152 "$nofile_floor" \
	"system-wide open files: must exceed what all shards hold together"

# ---------------------------------------------------------- accept path

at_least "net.core.somaxconn" "$(sys net/core/somaxconn)" 65535 1024 \
	"caps each shard's SO_REUSEPORT accept queue; reconnect storms after a restart overflow it"
at_least "net.ipv4.tcp_max_syn_backlog" "$(sys net/ipv4/tcp_max_syn_backlog)" 65535 "" \
	"half-open (SYN_RECV) queue per listener during reconnect storms"
v=$(sys net/ipv4/tcp_syncookies)
case $v in
"") row "net.ipv4.tcp_syncookies" n/a 1 - n/a 0 "" ;;
1) row "net.ipv4.tcp_syncookies" 1 1 - OK 0 "" ;;
0) row "net.ipv4.tcp_syncookies" 0 1 - LOW 0 "without cookies, SYNs beyond the SYN backlog are dropped and clients back off for 1s, 3s, 7s..." ;;
*) row "net.ipv4.tcp_syncookies" "$v" 1 - WARN 0 "2 sends cookies for every SYN, not only on overflow" ;;
esac

# ------------------------------------------------------- socket buffers

at_least "net.core.rmem_max" "$(sys net/core/rmem_max)" 16777216 "" \
	"cap for an explicit SO_RCVBUF (autotuned sockets use tcp_rmem)" human
at_least "net.core.wmem_max" "$(sys net/core/wmem_max)" 16777216 "" \
	"cap for an explicit SO_SNDBUF (autotuned sockets use tcp_wmem)" human

v=$(norm "$(sys net/ipv4/tcp_rmem)")
if [[ -z $v ]]; then
	row "net.ipv4.tcp_rmem" n/a "4096 131072 6291456" - n/a 0 ""
else
	read -ra t <<<"$v"
	if ge "${t[2]:-0}" 6291456; then
		row "net.ipv4.tcp_rmem" "$v" "max >= 6 MiB" - OK 0 ""
	else
		row "net.ipv4.tcp_rmem" "$v" "max >= 6 MiB" - LOW 0 \
			"receive autotuning ceiling: publishers over long/fast paths need their bandwidth-delay product"
	fi
fi

v=$(norm "$(sys net/ipv4/tcp_wmem)")
if [[ -z $v ]]; then
	row "net.ipv4.tcp_wmem" n/a "4096 16384 4194304" - n/a 0 ""
else
	read -ra t <<<"$v"
	wmax=${t[2]:-0}
	if ! ge "$wmax" 4194304; then
		row "net.ipv4.tcp_wmem" "$v" "max 4 MiB..$(human "$pending_max")" - LOW 0 \
			"send autotuning ceiling below 4 MiB: a subscriber's bandwidth-delay product may not fit, more short writes of the 256 KiB coalesced batches"
	elif ! ge "$pending_max" "$wmax"; then
		row "net.ipv4.tcp_wmem" "$v" "max 4 MiB..$(human "$pending_max")" - WARN 0 \
			"kernel may hold more per slow subscriber ($(human "$wmax")) than [limits] pending_bytes_max ($(human "$pending_max")): slow-consumer detection comes late"
	else
		row "net.ipv4.tcp_wmem" "$v" "max 4 MiB..$(human "$pending_max")" - OK 0 ""
	fi
fi

# ------------------------------------------------------ ephemeral ports

v=$(norm "$(sys net/ipv4/ip_local_port_range)")
if [[ -z $v ]]; then
	row "net.ipv4.ip_local_port_range" n/a "10000 65535" - n/a 0 ""
else
	read -ra t <<<"$v"
	lo=${t[0]:-0} hi=${t[1]:-0}
	if ((hi - lo + 1 >= 55536)); then
		row "net.ipv4.ip_local_port_range" "$v" "10000 65535" - OK 0 ""
	else
		row "net.ipv4.ip_local_port_range" "$v" "10000 65535" - LOW 0 \
			"$((hi - lo + 1)) ephemeral ports: a load generator gets at most that many connections per destination address:port"
	fi
	reserved=$(sys net/ipv4/ip_local_reserved_ports)
	read -ra rsv <<<"$(cpulist "$reserved")" || true
	unreserved=()
	for p in "${ports[@]}"; do
		if ((p >= lo && p <= hi)); then
			hit=0
			for r in "${rsv[@]}"; do
				if ((r == p)); then hit=1 && break; fi
			done
			((hit)) || unreserved+=("$p")
		fi
	done
	shown=${reserved:-none}
	if ((${#unreserved[@]} == 0)); then
		row "net.ipv4.ip_local_reserved_ports" "$(short "$shown" 22)" "listener ports" - OK 0 ""
	else
		row "net.ipv4.ip_local_reserved_ports" "$(short "$shown" 22)" "listener ports" - WARN 0 \
			"listener port(s) ${unreserved[*]} lie in the ephemeral range: an outgoing connection can take one and the router's bind fails (EADDRINUSE)"
	fi
fi

v=$(sys net/ipv4/tcp_tw_reuse)
case $v in
"") row "net.ipv4.tcp_tw_reuse" n/a 1 - n/a 0 "" ;;
1) row "net.ipv4.tcp_tw_reuse" 1 1 - OK 0 "" ;;
2) row "net.ipv4.tcp_tw_reuse" "2 (loopback)" 1 - LOW 0 "TIME_WAIT reuse for loopback only: a load generator on another host runs out of 4-tuples" ;;
*) row "net.ipv4.tcp_tw_reuse" "$v" 1 - LOW 0 "no TIME_WAIT reuse: closed connections hold their 4-tuple for 60 s" ;;
esac

# ----------------------------------------------------------------- CPU

if ((shards > ncpu || shards > 64 || shards == 0)); then
	row "[router] shards" "$shards" "1..$ncpu" - WARN 0 "shard i is pinned to CPU i: more shards than online CPUs ($ncpu) cannot be placed (router maximum 64)"
else
	row "[router] shards" "$shards (cpu 0-$((shards - 1)))" "<= $ncpu" - OK 0 ""
fi

govs=()
for d in "$ROOT"/sys/devices/system/cpu/cpu[0-9]*; do
	g=$(readf "${d#"$ROOT"}/cpufreq/scaling_governor" || true)
	[[ -n $g ]] || continue
	seen=0
	for x in "${govs[@]}"; do [[ $x == "$g" ]] && seen=1; done
	((seen)) || govs+=("$g")
done
if ((${#govs[@]} == 0)); then
	row "cpufreq governor" n/a performance - n/a 0 ""
elif [[ ${govs[*]} == performance ]]; then
	row "cpufreq governor" performance performance - OK 0 ""
else
	g=${govs[*]}
	row "cpufreq governor" "$(short "${g// /,}")" performance - LOW 0 \
		"frequency ramps add latency to bursty fan-out; set scaling_governor=performance"
fi

drv=$(readf /sys/devices/system/cpu/cpuidle/current_driver || true)
worst=-1 worst_name=
for s in "$ROOT"/sys/devices/system/cpu/cpu0/cpuidle/state[0-9]*; do
	[[ -d $s ]] || continue
	[[ $(readf "${s#"$ROOT"}/disable" || echo 0) == 0 ]] || continue
	lat=$(readf "${s#"$ROOT"}/latency" || echo 0)
	is_uint "$lat" || continue
	if ((lat > worst)); then
		worst=$lat worst_name=$(readf "${s#"$ROOT"}/name" || echo "?")
	fi
done
if ((worst < 0)); then
	row "C-states (cpu0)" "n/a (driver ${drv:-none})" "exit <= 10 us" - n/a 0 ""
elif ((worst <= 10)); then
	row "C-states (cpu0)" "$(short "$worst_name ${worst}us")" "exit <= 10 us" - OK 0 ""
else
	row "C-states (cpu0)" "$(short "$worst_name ${worst}us")" "exit <= 10 us" - WARN 0 \
		"deepest enabled C-state takes ${worst} us to wake: a parked shard pays it on every wake-up"
fi

smt=$(readf /sys/devices/system/cpu/smt/active || true)
clash=
for ((i = 0; i < shards && i < ncpu; i++)); do
	sib=$(readf "/sys/devices/system/cpu/cpu$i/topology/thread_siblings_list" || true)
	for c in $(cpulist "$sib"); do
		if ((c != i && c < shards)); then
			clash="cpu $i+$c"
			break 2
		fi
	done
done
if [[ -n $clash ]]; then
	row "SMT siblings among shards" "yes ($clash)" "1 shard per core" - WARN 0 \
		"two shards share one physical core ($clash): use fewer shards or disable SMT"
elif [[ -z $smt ]]; then
	row "SMT siblings among shards" n/a "1 shard per core" - n/a 0 ""
else
	row "SMT siblings among shards" "none (smt active=$smt)" "1 shard per core" - OK 0 ""
fi

iso=$(readf /sys/devices/system/cpu/isolated || true)
nohz=$(readf /sys/devices/system/cpu/nohz_full || true)
[[ $nohz == "(null)" ]] && nohz=
if [[ -z $iso && -z $nohz ]]; then
	row "isolcpus / nohz_full" none optional - OK 0 ""
else
	missing=()
	for ((i = 0; i < shards; i++)); do
		[[ " $(cpulist "$iso") " == *" $i "* ]] || missing+=("$i")
	done
	if ((${#missing[@]} == 0)); then
		row "isolcpus / nohz_full" "$(short "iso=${iso:-none} nohz=${nohz:-none}")" optional - OK 0 ""
	else
		row "isolcpus / nohz_full" "$(short "iso=${iso:-none} nohz=${nohz:-none}")" "covers shards" - WARN 0 \
			"isolation is set but shard core(s) ${missing[*]} are not isolated: isolate exactly 0..$((shards - 1)), or change --shards"
	fi
fi

# ------------------------------------------------------------ IRQ / RPS

nic_irqs=() nics=() rxq_min='' rps_union=''
for ifp in "$ROOT"/sys/class/net/*; do
	[[ -e $ifp ]] || continue
	ifn=${ifp##*/}
	[[ $ifn == lo ]] && continue
	[[ $(readlink "$ifp" 2>/dev/null || true) == */virtual/* ]] && continue
	[[ -e $ifp/device ]] || continue
	nics+=("$ifn")
	for d in "$ifp/device/msi_irqs" "$ifp/device/../msi_irqs"; do
		if [[ -d $d ]]; then
			for irq in "$d"/*; do
				[[ -e $irq ]] && nic_irqs+=("${irq##*/}")
			done
			break
		fi
	done
	n=0
	for q in "$ifp"/queues/rx-*; do
		[[ -d $q ]] || continue
		n=$((n + 1))
		m=$(readf "${q#"$ROOT"}/rps_cpus" || true)
		rps_union="$rps_union $(hexmask "$m")"
	done
	if [[ -z $rxq_min ]] || ((n < rxq_min)); then rxq_min=$n; fi
done

if ((${#nic_irqs[@]} == 0)); then
	row "NIC IRQs on shard cores" n/a "none or aligned" - n/a 0 ""
else
	total=0 hit=0
	for irq in "${nic_irqs[@]}"; do
		aff=$(readf "/proc/irq/$irq/effective_affinity_list" || readf "/proc/irq/$irq/smp_affinity_list" || true)
		[[ -n $aff ]] || continue
		total=$((total + 1))
		if on_shard "$(cpulist "$aff")"; then hit=$((hit + 1)); fi
	done
	if ((total == 0)); then
		row "NIC IRQs on shard cores" n/a "none or aligned" - n/a 0 ""
	elif ((hit == 0)); then
		row "NIC IRQs on shard cores" "0 of $total" "none or aligned" - OK 0 ""
	else
		row "NIC IRQs on shard cores" "$hit of $total" "none or aligned" - WARN 0 \
			"softirq work of $hit NIC IRQ(s) lands on shard cores: keep them on non-shard cores, or one queue per shard with queue i on core i"
	fi
fi

if ((${#nics[@]} == 0)) || [[ -z $rxq_min ]]; then
	row "NIC rx queues" n/a ">= shards ($shards)" - n/a 0 ""
elif ((rxq_min >= shards)); then
	row "NIC rx queues" "$rxq_min (${nics[*]})" ">= shards ($shards)" - OK 0 ""
else
	row "NIC rx queues" "$(short "$rxq_min (${nics[*]})")" ">= shards ($shards)" - LOW 0 \
		"fewer rx queues than shards: receive softirq work concentrates on $rxq_min core(s); spread with RPS to non-shard cores"
fi

if ((${#nics[@]} == 0)); then
	row "RPS" n/a "off or off-shard" - n/a 0 ""
elif [[ -z ${rps_union// /} ]]; then
	row "RPS" off "off or off-shard" - OK 0 ""
elif on_shard "$rps_union"; then
	row "RPS" "on shard cores" "off or off-shard" - WARN 0 \
		"rps_cpus steers receive processing onto shard cores"
else
	row "RPS" "off-shard cores" "off or off-shard" - OK 0 ""
fi

irqb=0
for c in "$ROOT"/proc/[0-9]*/comm; do
	[[ -r $c ]] || continue
	if [[ $(cat -- "$c" 2>/dev/null || true) == irqbalance ]]; then
		irqb=1
		break
	fi
done
if ((irqb == 0)); then
	row "irqbalance" "not running" "off or banned" - OK 0 ""
else
	banned=
	for cf in /etc/default/irqbalance /etc/sysconfig/irqbalance; do
		[[ -r $ROOT$cf ]] || continue
		while IFS= read -r line; do
			case $line in
			IRQBALANCE_BANNED_CPULIST=*)
				banned=${line#*=}
				banned=${banned//\"/}
				;;
			esac
		done <"$ROOT$cf"
	done
	missing=()
	for ((i = 0; i < shards; i++)); do
		[[ " $(cpulist "$banned") " == *" $i "* ]] || missing+=("$i")
	done
	if ((${#missing[@]} == 0)); then
		row "irqbalance" "running, banned $(short "$banned" 10)" "off or banned" - OK 0 ""
	else
		row "irqbalance" running "off or banned" - WARN 0 \
			"irqbalance may move NIC IRQs onto shard cores: set IRQBALANCE_BANNED_CPULIST=0-$((shards - 1)) or stop it"
	fi
fi

# ----------------------------------------------------------------- THP

bracketed() { # "always [madvise] never" -> madvise
	local s=$1
	[[ $s == *"["*"]"* ]] || return 1
	s=${s#*[}
	printf '%s' "${s%%]*}"
}
thp=$(bracketed "$(readf /sys/kernel/mm/transparent_hugepage/enabled || true)" || true)
case $thp in
"") row "THP enabled" n/a madvise - n/a 0 "" ;;
madvise) row "THP enabled" madvise madvise - OK 0 "" ;;
never) row "THP enabled" never madvise - LOW 0 "mimalloc's arenas (which it madvises) get no huge pages: more TLB misses on the fan-out path" ;;
*) row "THP enabled" "$thp" madvise - WARN 0 "'always' backs every process's memory with huge pages: RSS bloat and khugepaged work host-wide" ;;
esac
thpd=$(bracketed "$(readf /sys/kernel/mm/transparent_hugepage/defrag || true)" || true)
case $thpd in
"") row "THP defrag" n/a defer - n/a 0 "" ;;
defer | never) row "THP defrag" "$thpd" defer - OK 0 "" ;;
*) row "THP defrag" "$thpd" defer - WARN 0 "'$thpd' compacts memory synchronously inside a page fault of a madvised region (mimalloc's arenas): ms stalls on a shard" ;;
esac

# ---------------------------------------------------------------- output

printf 'shardbar host check (read-only)%s\n' "${ROOT:+  [SHARDBAR_TUNING_ROOT=$ROOT]}"
printf 'kernel %s, %s online CPU(s), VM: %s; assuming %s shard(s) on cpu 0-%s, %s sessions, pending_bytes_max %s\n' \
	"${osrelease:-?}" "$ncpu" "$in_vm" "$shards" "$((shards > 0 ? shards - 1 : 0))" "$sessions" "$(human "$pending_max")"
printf 'resource limits read from %s\n\n' "$limits_of"

fmt='%-33s %-22s %-22s %-11s %s\n'
# shellcheck disable=SC2059 # the format is a constant above
printf "$fmt" SETTING CURRENT RECOMMENDED REQUIRED STATUS
n_fail=0 n_adv=0
for i in "${!R_NAME[@]}"; do
	st=${R_ST[i]}
	if ((R_FAIL[i])); then
		st="$st  << REQUIRED"
		n_fail=$((n_fail + 1))
	elif [[ $st == LOW || $st == WARN ]]; then
		n_adv=$((n_adv + 1))
	fi
	# shellcheck disable=SC2059
	printf "$fmt" "${R_NAME[i]}" "${R_CUR[i]}" "${R_REC[i]}" "${R_REQ[i]}" "$st"
done

if ((n_fail + n_adv > 0)); then
	printf '\nNotes (see tuning/README.md; tuning/apply.sh fixes the sysctl and limits items):\n'
	for i in "${!R_NAME[@]}"; do
		[[ -n ${R_NOTE[i]} ]] || continue
		if ((R_FAIL[i])); then tag=REQUIRED; else tag=${R_ST[i]}; fi
		printf '  %-4s %s: %s\n' "$tag" "${R_NAME[i]}" "${R_NOTE[i]}"
	done
fi

printf '\n'
if ((n_fail > 0)); then
	printf 'RESULT: FAIL: %d required setting(s) below their floor; %d advisory item(s)\n' "$n_fail" "$n_adv"
	exit 1
fi
if ((strict && n_adv > 0)); then
	printf 'RESULT: FAIL (--strict): required floors met; %d advisory item(s) LOW/WARN\n' "$n_adv"
	exit 1
fi
hint=''
if ((n_adv > 0)); then hint=' (not failing; --strict makes them fail)'; fi
printf 'RESULT: OK: required floors met; %d advisory item(s) LOW/WARN%s\n' "$n_adv" "$hint"
exit 0
