#!/usr/bin/env bash
# Builds the statically linked binaries into target/static/release:
#   caisson         the VMM (the jail holds no shared libraries);
#   caisson-jailer  the jailer, libselinux and libpcre2-8 linked in (Debian's
#                   libselinux1-dev and libpcre2-dev ship the .a files): it
#                   starts ~1 ms sooner than the dynamic one, which loads four
#                   shared libraries before main.
# Usage: tests/build-static.sh [vmm|jailer|all] (default all). Quiet, as cargo -q.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
if [[ $what == vmm || $what == all ]]; then
  cargo rustc -q --release -p caisson --bin caisson --target-dir target/static \
    -- -C target-feature=+crt-static
fi
if [[ $what == jailer || $what == all ]]; then
  SELINUX_STATIC=1 cargo rustc -q --release -p caisson-jailer --bin caisson-jailer \
    --target-dir target/static -- -C target-feature=+crt-static -l static=pcre2-8
fi
