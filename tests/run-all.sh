#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian machine of this kind, as root:
# installs what the tests need, then format, lint, unit and integration tests,
# the SELinux policy analysis and a short fuzzing pass. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the build and the tests need (tests/install-deps.sh is the one
# place that installs them; nothing happens when they are already there).
# shellcheck source=install-deps.sh
source tests/install-deps.sh
step "Debian packages (tests/install-deps.sh build test linux)"
caisson_install_deps build test linux

step "rust components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build (all binaries, used by the integration tests)"
cargo build --workspace --all-targets

step "guest kernel for the Linux tests (tests/linux/build-kernel.sh; cached, ~6 min cold)"
CAISSON_LINUX_KERNEL="$(bash tests/linux/build-kernel.sh | tail -n 1)"
export CAISSON_LINUX_KERNEL
echo "$CAISSON_LINUX_KERNEL"

step "cargo test"
cargo test --workspace -- --test-threads=2

step "SELinux policy module: build and analysis (policy/check.sh)"
bash policy/check.sh

step "fuzzing: every target for a fixed number of runs (fuzz/run.sh)"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
RUNS="${FUZZ_RUNS:-20000}" bash fuzz/run.sh
