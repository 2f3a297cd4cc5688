#!/usr/bin/env bash
# Builds the test guest's initramfs: Debian's busybox-static (with the applet
# links a shell session needs) and our static test init (tests/linux/init/*.c,
# gcc -static). An uncompressed newc cpio: the guest kernel unpacks it with
# no decompressor (on hosts without VMX/SVM, every instruction of that would
# be emulated). Cached outside the work tree, keyed by a hash of the sources,
# this script, the busybox package version and the gcc version. Prints the
# cpio's path as its last line; progress goes to stderr.
#
#   CAISSON_CACHE   cache root (default /var/cache/caisson)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../install-deps.sh
source "$here/../install-deps.sh"
caisson_install_deps build linux

busybox=/bin/busybox
bb_version=$(dpkg-query -W -f='${Version}' busybox-static)
key=$( { cat "$here"/init/*.c "$here"/init/*.h "$0"; echo "$bb_version"; gcc --version | head -n 1; } \
  | sha256sum | cut -c1-16)
root="${CAISSON_CACHE:-/var/cache/caisson}"
out="$root/initramfs/$key/initramfs.cpio"
if [[ -s "$out" ]]; then
  echo "build-initramfs: cached ($key)" >&2
  echo "$out"
  exit 0
fi

mkdir -p "$root/initramfs"
work=$(mktemp -d "$root/initramfs/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The jail of a guest has no shared libraries either: everything static.
if readelf -l "$busybox" | grep -q 'program interpreter'; then
  echo "build-initramfs: $busybox is not statically linked" >&2
  exit 1
fi
gcc -static -O2 -Wall -Wextra -Werror -o "$work/init" "$here"/init/*.c

tree="$work/tree"
mkdir -p "$tree"/{bin,sbin,dev,proc,sys,tmp,root}
install -m 0755 "$work/init" "$tree/init"
install -m 0755 "$busybox" "$tree/bin/busybox"
# The applets a debugging session (or the serial check's shell) uses.
for applet in sh ash cat dd echo ls mkdir mount umount sleep sync uname dmesg ps \
  hexdump sha256sum ip ifconfig reboot poweroff halt; do
  ln -s busybox "$tree/bin/$applet"
done
# Linux opens /dev/console for init before init mounts devtmpfs on /dev.
mknod -m 0600 "$tree/dev/console" c 5 1

(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$work/initramfs.cpio"
mkdir -p "$(dirname "$out")"
mv "$work/initramfs.cpio" "$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: built $(stat -c %s "$out") bytes ($key)" >&2
echo "$out"
