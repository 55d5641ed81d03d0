#!/usr/bin/env bash
# tuning/apply.sh: apply shardbar's sysctl and login-limit settings. See tuning/README.md.
#
# Without --yes it only prints what it would do (and exits 0). With --yes (root only) it
#   1. writes each sysctl to the running kernel through /proc/sys, reporting old -> new,
#   2. writes /etc/sysctl.d/60-shardbar.conf so the values survive a reboot,
#   3. writes /etc/security/limits.d/60-shardbar.conf (memlock, nofile for login sessions).
# It never lowers anything: every target is the larger of the current value, the value
# already in its drop-in, and the recommendation. A second run changes nothing.
# SHARDBAR_TUNING_ROOT=/some/dir prefixes every path read or written (for tests); with it,
# --yes does not need root because nothing outside that directory is touched.
set -euo pipefail
export LC_ALL=C

SYSCTL_DROPIN=/etc/sysctl.d/60-shardbar.conf
LIMITS_DROPIN=/etc/security/limits.d/60-shardbar.conf

usage() {
	cat <<'EOF'
Usage: tuning/apply.sh [--yes] [options]

Applies shardbar's recommended sysctl and login-limit settings. Without --yes: prints
the plan and changes nothing. Never lowers a value that is already higher.

Options:
  --yes                 apply: write /proc/sys, /etc/sysctl.d/60-shardbar.conf and
                        /etc/security/limits.d/60-shardbar.conf (needs root)
  --port P              a TCP port of a [[listener]] address (repeatable; default 8080).
                        Listener ports inside the ephemeral range are added to
                        net.ipv4.ip_local_reserved_ports so no outgoing connection takes them.
  --limits-domain D     limits.conf domain for memlock/nofile (default: @shardbar, i.e. members
                        of group shardbar; use a user name, or '*' for every login)
  -h, --help            this text

Environment:
  SHARDBAR_TUNING_ROOT  prefix for every path read and written (for tests). With it, --yes
                        works unprivileged and touches nothing outside that directory.

Exit status: 0 done (or dry run), 1 an error (not root, a write failed), 2 usage error.
EOF
}

die_usage() {
	printf 'apply.sh: %s\n' "$1" >&2
	printf "Try 'tuning/apply.sh --help'.\n" >&2
	exit 2
}

ROOT=${SHARDBAR_TUNING_ROOT:-}
while [[ $ROOT == */ ]]; do ROOT=${ROOT%/}; done

yes=0
ports=()
domain=@shardbar
while (($# > 0)); do
	case $1 in
	--yes) yes=1 ;;
	--port)
		(($# >= 2)) || die_usage "--port needs a value"
		if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
			die_usage "--port needs 1..65535, got '$2'"
		fi
		ports+=("$2")
		shift
		;;
	--limits-domain)
		(($# >= 2)) || die_usage "--limits-domain needs a value"
		[[ $2 =~ ^[@%]?[A-Za-z0-9_.*-]+$ || $2 == '*' ]] || die_usage "bad limits domain '$2'"
		domain=$2
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

if ((yes)); then
	if [[ -z $ROOT ]]; then
		if ((EUID != 0)); then
			printf 'apply.sh: --yes needs root: it writes /proc/sys, %s and %s.\n' "$SYSCTL_DROPIN" "$LIMITS_DROPIN" >&2
			printf 'apply.sh: run it with sudo, or without --yes to see what it would change.\n' >&2
			exit 1
		fi
	elif [[ ! -d $ROOT ]]; then
		printf 'apply.sh: SHARDBAR_TUNING_ROOT=%s is not a directory\n' "$ROOT" >&2
		exit 1
	fi
fi

# ---------------------------------------------------------------- helpers

is_uint() { [[ ${1:-} =~ ^[0-9]+$ ]]; }

norm() {
	local -a w
	read -ra w <<<"$1" || true
	printf '%s' "${w[*]}"
}

# ge A B: A >= B for integers of any length or "unlimited".
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

max() { if ge "$1" "$2"; then printf '%s' "$1"; else printf '%s' "$2"; fi; }
min() { if ge "$1" "$2"; then printf '%s' "$2"; else printf '%s' "$1"; fi; }

# ports_expand "8080,9000-9002" -> "8080 9000 9001 9002"
ports_expand() {
	local part a b i
	local -a parts out=()
	IFS=, read -ra parts <<<"${1// /}"
	for part in "${parts[@]}"; do
		if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
			a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
			for ((i = a; i <= b && i <= 65535; i++)); do out+=("$i"); done
		elif is_uint "$part"; then
			out+=("$part")
		fi
	done
	printf '%s' "${out[*]}"
}

# merge KIND CURRENT OTHER: the value that is at least as high as both, for that kind.
#   max     integers
#   vec     "min default max" triples, element-wise maximum
#   range   "low high": the union (lower low, higher high)
#   ports   comma list: OTHER's entries added when not already covered
#   twreuse tcp_tw_reuse, ordered by what it allows: 0 (off) < 2 (loopback only) < 1 (all)
merge() {
	local kind=$1 a=$2 b=$3
	local -a x y out
	local i p
	case $kind in
	max) max "$a" "$b" ;;
	vec)
		read -ra x <<<"$a" || true
		read -ra y <<<"$b" || true
		out=()
		for i in 0 1 2; do out+=("$(max "${x[i]:-0}" "${y[i]:-0}")"); done
		printf '%s' "${out[*]}"
		;;
	range)
		read -ra x <<<"$a" || true
		read -ra y <<<"$b" || true
		printf '%s %s' "$(min "${x[0]}" "${y[0]}")" "$(max "${x[1]}" "${y[1]}")"
		;;
	ports)
		local have res=$a
		have=" $(ports_expand "$a") "
		for p in $(ports_expand "$b"); do
			if [[ $have != *" $p "* ]]; then
				res=${res:+$res,}$p
				have="$have$p "
			fi
		done
		printf '%s' "$res"
		;;
	twreuse)
		local ra=0 rb=0
		case $a in 1) ra=2 ;; 2) ra=1 ;; esac
		case $b in 1) rb=2 ;; 2) rb=1 ;; esac
		if ((rb > ra)); then printf '%s' "$b"; else printf '%s' "$a"; fi
		;;
	esac
}

procsys() { printf '%s/proc/sys/%s' "$ROOT" "${1//.//}"; }

# ------------------------------------------------------------ sysctl plan

# key kind recommended; the order is the order of the drop-in.
SPEC=(
	"fs.nr_open max 1048576"
	"fs.file-max max 2097152"
	"net.core.somaxconn max 65535"
	"net.ipv4.tcp_max_syn_backlog max 65535"
	"net.ipv4.tcp_syncookies max 1"
	"net.core.rmem_max max 16777216"
	"net.core.wmem_max max 16777216"
	"net.ipv4.tcp_rmem vec 4096 131072 6291456"
	"net.ipv4.tcp_wmem vec 4096 16384 4194304"
	"net.ipv4.ip_local_port_range range 10000 65535"
	"net.ipv4.ip_local_reserved_ports ports -"
	"net.ipv4.tcp_tw_reuse twreuse 1"
)

# The drop-in's current content, so a value raised there by hand is kept.
declare -A DROPIN_OLD=()
if [[ -r $ROOT$SYSCTL_DROPIN ]]; then
	while IFS= read -r line || [[ -n $line ]]; do
		line=$(norm "$line")
		[[ -z $line || $line == \#* || $line == \;* || $line != *=* ]] && continue
		k=$(norm "${line%%=*}")
		k=${k#-}
		DROPIN_OLD[$k]=$(norm "${line#*=}")
	done <"$ROOT$SYSCTL_DROPIN"
fi

KEYS=()
declare -A CUR=() TARGET=() INFILE=()
skipped=()
final_range=''
for spec in "${SPEC[@]}"; do
	read -r key kind rec <<<"$spec"
	f=$(procsys "$key")
	if [[ ! -r $f ]]; then
		skipped+=("$key")
		continue
	fi
	cur=$(norm "$(cat -- "$f")")
	if [[ $kind == ports ]]; then
		# Reserve the listener ports that fall inside the (final) ephemeral range.
		rec=''
		if [[ -n $final_range ]]; then
			read -r lo hi <<<"$final_range"
			for p in "${ports[@]}"; do
				if ((p >= lo && p <= hi)); then rec=${rec:+$rec,}$p; fi
			done
		fi
	fi
	tgt=$(merge "$kind" "$cur" "$rec")
	# The drop-in lists what shardbar had to raise, and whatever it already lists. A key the
	# host already sets high enough stays out of it, so the file never pins (and on another
	# boot or more RAM, never lowers) a value that some other source sized.
	[[ $tgt != "$cur" ]] && INFILE[$key]=1
	if [[ -n ${DROPIN_OLD[$key]:-} ]]; then
		tgt=$(merge "$kind" "$tgt" "${DROPIN_OLD[$key]}")
		INFILE[$key]=1
	fi
	[[ $kind == range ]] && final_range=$tgt
	KEYS+=("$key")
	CUR[$key]=$cur
	TARGET[$key]=$tgt
done

sysctl_content() {
	local key
	printf '# %s: written by shardbar tuning/apply.sh; see tuning/README.md.\n' "$SYSCTL_DROPIN"
	printf '# Lists only the settings shardbar had to raise on this host. Each value is the larger\n'
	printf '# of the running value, the value already here, and the recommendation: this file never\n'
	printf '# lowers a setting. Edit freely; apply.sh keeps values that are higher.\n'
	for key in "${KEYS[@]}"; do
		[[ -n ${INFILE[$key]:-} && -n ${TARGET[$key]} ]] || continue
		printf '%s = %s\n' "$key" "${TARGET[$key]}"
	done
}

# ------------------------------------------------------------ limits plan

# memlock is in KiB in limits.conf; nofile is a count and cannot be "unlimited".
LIM_SPEC=("soft memlock unlimited" "hard memlock unlimited" "soft nofile 1048576" "hard nofile 1048576")

limval() { # normalise a limits.conf value
	case $1 in
	unlimited | infinity | -1) printf unlimited ;;
	*) printf '%s' "$1" ;;
	esac
}

declare -A LIM_OLD=() LIM_TGT=() LIM_SRC=()
lim_files=("$ROOT/etc/security/limits.conf")
for f in "$ROOT"/etc/security/limits.d/*.conf; do [[ -e $f ]] && lim_files+=("$f"); done
for f in "${lim_files[@]}"; do
	[[ -r $f ]] || continue
	while IFS= read -r line || [[ -n $line ]]; do
		read -ra w <<<"$line" || true
		((${#w[@]} >= 4)) || continue
		[[ ${w[0]} == "$domain" ]] || continue
		for t in soft hard; do
			[[ ${w[1]} == "$t" || ${w[1]} == - ]] || continue
			[[ ${w[2]} == memlock || ${w[2]} == nofile ]] || continue
			v=$(limval "${w[3]}")
			ge "$v" 0 || continue
			id="$t ${w[2]}"
			if [[ -z ${LIM_OLD[$id]:-} ]] || ge "$v" "${LIM_OLD[$id]}"; then
				LIM_OLD[$id]=$v
				LIM_SRC[$id]=${f#"$ROOT"}
			fi
		done
	done <"$f"
done
for spec in "${LIM_SPEC[@]}"; do
	read -r t item rec <<<"$spec"
	id="$t $item"
	LIM_TGT[$id]=$(max "${LIM_OLD[$id]:-0}" "$rec")
done

limits_content() {
	local spec t item
	printf '# %s: written by shardbar tuning/apply.sh; see tuning/README.md.\n' "$LIMITS_DROPIN"
	printf '# Applies to login sessions (PAM: ssh, su, login) of %s. A systemd service takes\n' "$domain"
	printf '# its limits from the unit instead (LimitMEMLOCK=, LimitNOFILE= in shardbar.service).\n'
	printf '# memlock: glommio needs >= 512 KiB per process; nofile: one fd per connection.\n'
	printf '# Never lower than what was already configured for this domain.\n'
	for spec in "${LIM_SPEC[@]}"; do
		read -r t item _ <<<"$spec"
		printf '%-12s %-5s %-8s %s\n' "$domain" "$t" "$item" "${LIM_TGT[$t $item]}"
	done
}

# ------------------------------------------------------------------ report

changes=0 errors=0
if ((yes)); then mode=apply; else mode=plan; fi

if ((yes)); then title=applying; else title='dry run (nothing is changed; add --yes to apply)'; fi
printf 'shardbar tuning: %s%s\n' "$title" "${ROOT:+  [SHARDBAR_TUNING_ROOT=$ROOT]}"
printf '\nsysctl, running kernel (/proc/sys):\n'
for key in "${KEYS[@]}"; do
	old=${CUR[$key]} new=${TARGET[$key]}
	if [[ $old == "$new" ]]; then
		printf '  %-34s %s  (unchanged)\n' "$key" "${old:-<empty>}"
		continue
	fi
	changes=$((changes + 1))
	if [[ $mode == plan ]]; then
		printf '  %-34s %s -> %s  (would set)\n' "$key" "${old:-<empty>}" "$new"
		continue
	fi
	f=$(procsys "$key")
	if printf '%s\n' "$new" 2>/dev/null >"$f"; then
		now=$(norm "$(cat -- "$f" 2>/dev/null || true)")
		if [[ $now == "$new" ]]; then
			printf '  %-34s %s -> %s  (set)\n' "$key" "${old:-<empty>}" "$new"
		else
			printf '  %-34s %s -> %s  (set; kernel reports %s)\n' "$key" "${old:-<empty>}" "$new" "$now"
		fi
	else
		errors=$((errors + 1))
		printf '  %-34s %s -> %s  FAILED: cannot write %s (read-only /proc/sys in a container? set it on the host)\n' \
			"$key" "${old:-<empty>}" "$new" "${f#"$ROOT"}" >&2
	fi
done
for key in "${skipped[@]}"; do
	printf '  %-34s not present in this kernel or network namespace: skipped\n' "$key"
done

# install_file PATH CONTENT LABEL: write PATH atomically when its content differs.
install_file() {
	local path=$1 content=$2 dst=$ROOT$1 old='' tmp
	if [[ -e $dst ]]; then old=$(cat -- "$dst" 2>/dev/null || true); fi
	if [[ -e $dst && $old == "$content" ]]; then
		printf '  %-44s unchanged\n' "$path"
		return 0
	fi
	changes=$((changes + 1))
	local verb=created
	[[ -e $dst ]] && verb=updated
	if [[ $mode == plan ]]; then
		printf '  %-44s would be %s with:\n' "$path" "$verb"
		printf '%s\n' "$content" | while IFS= read -r l; do printf '      | %s\n' "$l"; done
		return 0
	fi
	if ! mkdir -p -- "${dst%/*}" 2>/dev/null ||
		! tmp=$(mktemp "${dst%/*}/.60-shardbar.XXXXXX" 2>/dev/null); then
		errors=$((errors + 1))
		printf '  %-44s FAILED: cannot write in %s\n' "$path" "${path%/*}" >&2
		return 0
	fi
	if printf '%s\n' "$content" >"$tmp" && chmod 0644 "$tmp" && mv -f -- "$tmp" "$dst"; then
		printf '  %-44s %s\n' "$path" "$verb"
	else
		rm -f -- "$tmp"
		errors=$((errors + 1))
		printf '  %-44s FAILED to write\n' "$path" >&2
	fi
}

printf '\nlogin limits for %s (current entry -> target):\n' "$domain"
for spec in "${LIM_SPEC[@]}"; do
	read -r t item _ <<<"$spec"
	id="$t $item"
	old=${LIM_OLD[$id]:-}
	if [[ -n $old ]]; then
		printf '  %-5s %-8s %s (%s) -> %s\n' "$t" "$item" "$old" "${LIM_SRC[$id]}" "${LIM_TGT[$id]}"
	else
		printf '  %-5s %-8s (none) -> %s\n' "$t" "$item" "${LIM_TGT[$id]}"
	fi
done
nr_open_tgt=${TARGET[fs.nr_open]:-}
if [[ -n $nr_open_tgt ]] && ! ge "$nr_open_tgt" "${LIM_TGT[hard nofile]}"; then
	printf '  note: nofile %s exceeds fs.nr_open %s; logins would fail to set it\n' "${LIM_TGT[hard nofile]}" "$nr_open_tgt" >&2
fi

printf '\nfiles:\n'
if ((${#INFILE[@]} > 0)) || [[ -e $ROOT$SYSCTL_DROPIN ]]; then
	install_file "$SYSCTL_DROPIN" "$(sysctl_content)"
else
	printf '  %-44s not needed: every sysctl already meets the recommendation\n' "$SYSCTL_DROPIN"
fi
install_file "$LIMITS_DROPIN" "$(limits_content)"

# A sysctl file read after ours (later name, or /etc/sysctl.conf) that sets a lower value
# wins at boot. Say so; do not touch other files.
later=()
for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
	for f in "$ROOT$d"/*.conf; do
		[[ -e $f ]] || continue
		b=${f##*/}
		[[ $b > 60-shardbar.conf ]] && later+=("$f")
	done
done
[[ -e $ROOT/etc/sysctl.conf ]] && later+=("$ROOT/etc/sysctl.conf")
for f in "${later[@]}"; do
	[[ -r $f ]] || continue
	while IFS= read -r line || [[ -n $line ]]; do
		line=$(norm "$line")
		[[ -z $line || $line == \#* || $line == \;* || $line != *=* ]] && continue
		k=$(norm "${line%%=*}")
		k=${k#-}
		v=$(norm "${line#*=}")
		[[ -n ${TARGET[$k]:-} ]] || continue
		for spec in "${SPEC[@]}"; do
			read -r sk kind _ <<<"$spec"
			[[ $sk == "$k" ]] || continue
			if [[ $(merge "$kind" "$v" "${TARGET[$k]}") != "$v" ]]; then
				printf 'warning: %s sets %s = %s and is read after %s: at boot it wins.\n' \
					"${f#"$ROOT"}" "$k" "$v" "$SYSCTL_DROPIN" >&2
			fi
		done
	done <"$f"
done

printf '\n'
if [[ $mode == plan ]]; then
	printf 'dry run: %d change(s) planned; nothing was changed. Re-run with --yes (as root) to apply.\n' "$changes"
	exit 0
fi
if ((errors > 0)); then
	printf 'apply: %d change(s) attempted, %d FAILED (see above)\n' "$changes" "$errors" >&2
	exit 1
fi
printf 'apply: %d change(s) made.\n' "$changes"
if ((changes > 0)); then
	printf 'New login limits apply to new logins; restart shardbar for its own (set by the unit).\n'
fi
exit 0
