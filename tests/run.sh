#!/usr/bin/env bash
# Runs every test shardbar has, installing what they need, and prints one summary.
#
#   tests/run.sh            everything
#   tests/run.sh SUITE...   only some: rust tuning python js wstest fuzz
#
# Suites:
#   rust    cargo test: unit tests, golden vectors, the multi-shard simulation
#   tuning  tuning/test.sh (shellcheck, check.sh, apply.sh against a fake root)
#   python  interop tests: the real binary driven by Autobahn|Python (tests/interop)
#   js      smoke tests with Autobahn|JS and wampy (tests/js)
#   wstest  the Autobahn WebSocket testsuite, cases 1-10, against the testee listener
#   fuzz    every cargo-fuzz target (tests/fuzz) for SHARDBAR_FUZZ_SECONDS (default 5) each,
#           over its seed corpus and past crash inputs; needs the nightly toolchain (SKIP
#           without it) and installs cargo-fuzz into ~/.cargo/bin if missing
#
# Python packages go to tests/.venv, npm packages to tests/js/node_modules. A suite that
# cannot run on this machine reports SKIP with the reason; only FAIL fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=never

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(rust tuning python js wstest fuzz)

declare -a summary=()
failed=0
record() { # suite status detail
  summary+=("$(printf '%-8s %-5s %s' "$1" "$2" "$3")")
  case "$2" in PASS | SKIP) ;; *) failed=1 ;; esac
}
banner() { printf '\n==== %s ====\n' "$*"; }

build_router() {
  if [ -z "${SHARDBAR_BIN:-}" ]; then
    banner "build"
    cargo build --bins 2>&1 | tail -n 3 || return 1
    export SHARDBAR_BIN="$ROOT/target/debug/shardbar"
    export LOADGEN_BIN="$ROOT/target/debug/loadgen"
  fi
}

python_env() {
  if [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv || return 1
  fi
  tests/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt || return 1
}

run_rust() {
  banner "rust: cargo test"
  local out
  out=$(cargo test 2>&1); local rc=$?
  echo "$out" | grep -E '^(test result|running|error|failures:|---- )' | sed 's/^/  /'
  local passed failed_n
  passed=$(echo "$out" | grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' | awk '{s+=$4} END {print s+0}')
  failed_n=$(echo "$out" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
  if [ $rc -eq 0 ]; then record rust PASS "$passed passed"; else echo "$out" | tail -n 40; record rust FAIL "$passed passed, $failed_n failed"; fi
}

run_tuning() {
  banner "tuning: tuning/test.sh"
  local out; out=$(bash tuning/test.sh 2>&1); local rc=$?
  # The whole output: it includes tuning/check.sh's table for this host.
  echo "$out"
  local line; line=$(echo "$out" | grep -E '^tuning: ' | tail -n 1)
  if [ $rc -eq 0 ]; then record tuning PASS "${line#tuning: }"; else record tuning FAIL "${line#tuning: }"; fi
}

run_python() {
  banner "python: Autobahn|Python interop (tests/interop)"
  build_router || { record python FAIL "router build failed"; return; }
  python_env || { record python FAIL "pip install failed"; return; }
  local out; out=$(tests/.venv/bin/python -m pytest -q -p no:cacheprovider tests/interop 2>&1); local rc=$?
  echo "$out" | tail -n 60
  local line; line=$(echo "$out" | grep -E '(passed|failed|error)' | tail -n 1)
  if [ $rc -eq 0 ]; then record python PASS "$line"; else record python FAIL "$line"; fi
}

run_js() {
  banner "js: Autobahn|JS and wampy smoke tests (tests/js)"
  build_router || { record js FAIL "router build failed"; return; }
  if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error) || { record js FAIL "npm ci failed"; return; }
  fi
  # The files by name (node --test on a directory behaves differently across Node
  # versions, and on an empty one exits 0): no test files or no passing test is a failure.
  local files=(tests/js/*.test.mjs)
  [ -e "${files[0]}" ] || { record js FAIL "no tests/js/*.test.mjs"; return; }
  local out; out=$(node --test "${files[@]}" 2>&1); local rc=$?
  echo "$out" | tail -n 40
  local pass fail
  pass=$(echo "$out" | grep -E '^# pass' | awk '{print $3}')
  fail=$(echo "$out" | grep -E '^# fail' | awk '{print $3}')
  if [ $rc -eq 0 ] && [ "${pass:-0}" -gt 0 ]; then record js PASS "${pass} passed"
  else record js FAIL "${pass:-0} passed, ${fail:-?} failed (exit $rc)"; fi
}

run_wstest() {
  banner "wstest: Autobahn WebSocket testsuite (cases 1-10)"
  build_router || { record wstest FAIL "router build failed"; return; }
  local out; out=$(bash tests/wstest/run.sh 2>&1); local rc=$?
  echo "$out" | tail -n 30
  local line; line=$(echo "$out" | grep -E '^wstest: ' | tail -n 1)
  if [ $rc -eq 0 ]; then record wstest PASS "${line#wstest: }"; else record wstest FAIL "${line#wstest: }"; fi
}

# The fuzz targets: the [[bin]] names in tests/fuzz/Cargo.toml.
fuzz_targets() {
  sed -n '/^\[\[bin\]\]/,/^path/ s/^name = "\(.*\)"/\1/p' tests/fuzz/Cargo.toml
}

run_fuzz() {
  local secs=${SHARDBAR_FUZZ_SECONDS:-5}
  banner "fuzz: cargo fuzz targets (tests/fuzz), ${secs}s each"
  # Asked for by name only: `cargo +nightly` could otherwise try to download a toolchain.
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "  no nightly toolchain (cargo fuzz needs it: rustup toolchain install nightly)"
    record fuzz SKIP "no nightly toolchain"
    return
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "  installing cargo-fuzz into ~/.cargo/bin"
    cargo install --locked cargo-fuzz 2>&1 | tail -n 2
    cargo fuzz --version >/dev/null 2>&1 || { record fuzz FAIL "cargo install cargo-fuzz failed"; return; }
  fi
  local build; build=$(cargo +nightly fuzz build --fuzz-dir tests/fuzz 2>&1) || {
    echo "$build" | tail -n 30
    record fuzz FAIL "build failed"
    return
  }
  echo "$build" | tail -n 1 | sed 's/^ */  /'
  local t out rc runs speed n=0 bad=()
  for t in $(fuzz_targets); do
    # New inputs go to a scratch directory, so the committed corpus stays as it is.
    local scratch; scratch=$(mktemp -d)
    local dirs=("$scratch") d
    for d in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
      [ -d "$d" ] && dirs+=("$d")
    done
    out=$(cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "${dirs[@]}" -- -max_total_time="$secs" 2>&1)
    rc=$?
    rm -rf "$scratch"
    runs=$(echo "$out" | grep -oE '^Done [0-9]+ runs' | awk '{print $2}')
    speed=$(echo "$out" | grep -oE 'exec/s: [0-9]+' | tail -n 1 | awk '{print $2}')
    n=$((n + 1))
    if [ $rc -eq 0 ] && [ -n "$runs" ]; then
      printf '  %-16s PASS  %s runs, %s exec/s\n' "$t" "$runs" "${speed:-?}"
    else
      printf '  %-16s FAIL  (exit %s)\n' "$t" "$rc"
      echo "$out" | grep -E 'panicked at|ERROR: |SUMMARY|Test unit written|^thread' | head -n 8 | sed 's/^/    /'
      bad+=("$t")
    fi
  done
  if [ ${#bad[@]} -eq 0 ]; then record fuzz PASS "$n targets, ${secs}s each, no crash"
  else record fuzz FAIL "crash in ${bad[*]} (inputs in tests/fuzz/artifacts/)"; fi
}

for s in "${suites[@]}"; do
  case "$s" in
    rust) run_rust ;;
    tuning) run_tuning ;;
    python) run_python ;;
    js) run_js ;;
    wstest) run_wstest ;;
    fuzz) run_fuzz ;;
    *) echo "unknown suite: $s"; record "$s" FAIL "unknown suite" ;;
  esac
done

banner "SUMMARY"
for line in "${summary[@]}"; do echo "  $line"; done
if [ $failed -eq 0 ]; then echo "ALL SUITES PASSED"; else echo "SOME SUITES FAILED"; fi
exit $failed
