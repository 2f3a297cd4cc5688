#!/usr/bin/env bash
# The one place that installs what Caisson's commands need on a fresh Debian
# machine of this kind (root). Sourced or run with the groups to install:
#   build   the Rust build (gcc for the test guests, selinux-sys's headers and libclang)
#   test    the unit and integration tests (iproute2 for the network tests, iasl
#           from acpica-tools for the ACPI table test)
#   linux   the test guest kernel's build and its initramfs, and ACPI table checks
# Packages already installed are skipped; apt runs only when something is missing.
set -euo pipefail

declare -A caisson_pkgs=(
  [build]="make gcc binutils libc6-dev libselinux1-dev libclang-dev pkg-config"
  [test]="iproute2 python3 acpica-tools"
  [linux]="linux-source-6.12 xz-utils flex bison bc libelf-dev libssl-dev busybox-static cpio acpica-tools"
)

caisson_install_deps() {
  local group p missing=()
  for group in "$@"; do
    [[ -n "${caisson_pkgs[$group]+x}" ]] || { echo "install-deps: unknown group '$group'" >&2; return 2; }
    for p in ${caisson_pkgs[$group]}; do
      dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
  done
  ((${#missing[@]})) || return 0
  echo "==> installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  local log; log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "install-deps: apt-get failed for: ${missing[*]}" >&2
    return 1
  fi
  rm -f "$log"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  if (($#)); then caisson_install_deps "$@"; else caisson_install_deps build test; fi
fi
