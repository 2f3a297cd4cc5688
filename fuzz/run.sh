#!/usr/bin/env bash
# Builds every fuzz target and runs each from the committed seeds (seeds/<target>/);
# exits non-zero on any crash, and prints executions and coverage per target.
#   fuzz/run.sh               smoke run: RUNS (default 20000) inputs per target
#   fuzz/run.sh --long        long run: RUNS (default 1000000) inputs per target,
#                             or FUZZ_SECONDS (default 900) per target, whichever
#                             ends first
#   fuzz/run.sh [--long] T..  only targets T..
# A finding's reproducer lands in fuzz/artifacts/<target>/; once fixed, copy it
# into seeds/<target>/ so that every smoke run replays it.
set -euo pipefail
cd "$(dirname "$0")"

long=0
if [[ "${1:-}" == "--long" ]]; then long=1; shift; fi
if ((long)); then RUNS="${RUNS:-1000000}"; else RUNS="${RUNS:-20000}"; fi
SECONDS_LIMIT="${FUZZ_SECONDS:-900}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-+nightly}"

if ! cargo "$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi

if (($#)); then targets="$*"; else targets=$(cargo "$TOOLCHAIN" fuzz list); fi
cargo "$TOOLCHAIN" fuzz build

status=0
summary=()
for t in $targets; do
  echo "==> fuzzing $t for $RUNS runs$( ((long)) && echo " or ${SECONDS_LIMIT} s")"
  # New inputs go to a scratch corpus, so the committed seeds stay as they are.
  work="target/corpus/$t"
  log="target/fuzz-$t.log"
  mkdir -p "$work"
  limits=(-runs="$RUNS" -max_len=8192 -timeout=10 -print_final_stats=1)
  ((long)) && limits+=(-max_total_time="$SECONDS_LIMIT")
  result=ok
  if ! cargo "$TOOLCHAIN" fuzz run "$t" "$work" "seeds/$t" -- "${limits[@]}" 2>&1 | tee "$log" \
      | grep -E '^Done |DONE|^stat::|ERROR|SUMMARY'; then
    :
  fi
  if ! grep -q '^Done ' "$log"; then
    echo "!! $t crashed (reproducer in fuzz/artifacts/$t/)" >&2
    result=CRASH
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  summary+=("$(printf '%-16s %12s %8s %8s %8s  %s' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${secs:-?}" "$result")")
done
printf '\n%-16s %12s %8s %8s %8s  %s\n' target executions cov features seconds result
printf '%s\n' "${summary[@]}"
exit $status
