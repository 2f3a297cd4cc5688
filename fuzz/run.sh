#!/usr/bin/env bash
# Builds every fuzz target and runs each for a fixed number of runs from the
# committed seeds (seeds/<target>/); exits non-zero on any crash.
#   RUNS=<n> fuzz/run.sh        (default 20000 runs per target)
set -euo pipefail
cd "$(dirname "$0")"

RUNS="${RUNS:-20000}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-+nightly}"

if ! cargo "$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi

targets=$(cargo "$TOOLCHAIN" fuzz list)
cargo "$TOOLCHAIN" fuzz build

status=0
for t in $targets; do
  echo "==> fuzzing $t for $RUNS runs"
  # New inputs go to a scratch corpus, so the committed seeds stay as they are.
  work="target/corpus/$t"
  mkdir -p "$work"
  if ! cargo "$TOOLCHAIN" fuzz run "$t" "$work" "seeds/$t" -- \
      -runs="$RUNS" -max_len=8192 -timeout=10; then
    echo "!! $t crashed (reproducer in fuzz/artifacts/$t/)" >&2
    status=1
  fi
done
exit $status
