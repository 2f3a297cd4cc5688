#!/usr/bin/env bash
# Builds Caisson's test guest kernel from Debian's linux-source package:
# tinyconfig + tests/linux/guest.config + tests/linux/*.patch, with the
# machine's gcc. The vmlinux is cached outside the work tree, keyed by the
# source package's version and a hash of the config fragment, the patches and
# the recipe number below, so later runs on the same machine reuse it. Prints
# the vmlinux path as its last line; progress goes to stderr.
#
#   CAISSON_CACHE   cache root (default /var/cache/caisson)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../install-deps.sh
source "$here/../install-deps.sh"
caisson_install_deps linux

pkg=linux-source-6.12
version=$(dpkg-query -W -f='${Version}' "$pkg")
# Bump when the build steps below change what they produce.
recipe=1
key=$( { echo "recipe $recipe"; cat "$here/guest.config" "$here"/*.patch; } | sha256sum | cut -c1-16)
root="${CAISSON_CACHE:-/var/cache/caisson}"
cache="$root/linux/${version}-${key}"
if [[ -s "$cache/vmlinux" ]]; then
  echo "build-kernel: cached ($pkg $version, config $key)" >&2
  echo "$cache/vmlinux"
  exit 0
fi

# One build per key at a time: a second caller waits, then finds the cache.
mkdir -p "$root/linux"
exec 9>"$root/linux/.lock-${key}"
flock 9
if [[ -s "$cache/vmlinux" ]]; then
  echo "$cache/vmlinux"
  exit 0
fi
# Build trees left by a killed run of another key (each is ~1.5 GB) go too,
# unless that build still holds its lock.
for stale in "$root"/linux/build-*; do
  [[ -d "$stale" && "$stale" != "$root/linux/build-${key}" ]] || continue
  ( flock -n 8 && rm -rf "$stale" ) 8>"$root/linux/.lock-${stale##*/build-}" || true
done
start=$(date +%s)
work="$root/linux/build-${key}"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
echo "build-kernel: building $pkg $version (config $key) in $work; about 6 minutes on 2 idle cores" >&2
tar -C "$work" -xf /usr/src/linux-source-6.12.tar.xz
src="$work/linux-source-6.12"
for p in "$here"/*.patch; do
  echo "build-kernel: applying $(basename "$p")" >&2
  patch -d "$src" -p1 -s < "$p"
done

make -C "$src" -s tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$here/guest.config" >/dev/null
make -C "$src" -s olddefconfig >/dev/null
# A requested option that Kconfig dropped (a missing dependency) is an error here,
# not a kernel that silently lacks a driver.
bad=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF "$line" "$src/.config" || { echo "build-kernel: $line did not stick" >&2; bad=1; } ;;
    "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}
      grep -q "^$opt=" "$src/.config" && { echo "build-kernel: $opt is set but must not be" >&2; bad=1; } ;;
  esac
done < "$here/guest.config"
((bad == 0)) || exit 1

log="$work/build.log"
if ! make -C "$src" -j"$(nproc)" vmlinux >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "build-kernel: make vmlinux failed (log above)" >&2
  exit 1
fi
mkdir -p "$cache"
cp "$src/.config" "$cache/config"
cp "$src/vmlinux" "$cache/vmlinux.tmp"
mv "$cache/vmlinux.tmp" "$cache/vmlinux"
echo "build-kernel: built in $(( $(date +%s) - start )) s" >&2
echo "$cache/vmlinux"
