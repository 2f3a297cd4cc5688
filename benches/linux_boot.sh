#!/usr/bin/env bash
# Linux boot benchmark: wall time from `caisson` start to the test kernel's init
# (its `CAISSON-INIT` line) and to VM exit (init's reboot -f), median of N runs.
# Prints figures; asserts nothing about time.
#
#   bash benches/linux_boot.sh [runs]     (default 3: each boot takes minutes here)
#   CAISSON_VCPUS=2 ...                   vCPUs (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
vcpus="${CAISSON_VCPUS:-1}"
kernel=$(bash tests/linux/build-kernel.sh | tail -n 1)
initrd=$(bash tests/linux/build-initramfs.sh | tail -n 1)
cargo build -q --release --bin caisson
vmm=target/release/caisson
# The command line every Linux test uses on this host (tests/linux/README.md).
args=$(tr -d '\n' < tests/linux/cmdline.txt)

work=$(mktemp -d /tmp/caisson-linux-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/vm.json" <<JSON
{
  "boot-source": {"kernel_image_path": "$kernel", "initrd_path": "$initrd",
                  "boot_args": "$args caisson.checks="},
  "machine-config": {"vcpu_count": $vcpus, "mem_size_mib": 256}
}
JSON

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
: > "$work/init"; : > "$work/exit"
for i in $(seq 1 "$runs"); do
  start=$(date +%s.%N)
  init_at=""; rc=""
  while IFS= read -r line; do
    if [[ -z "$init_at" && $line == *CAISSON-INIT* ]]; then init_at=$(date +%s.%N); fi
    if [[ $line == "CAISSON-BENCH-EXIT "* ]]; then rc=${line#CAISSON-BENCH-EXIT }; fi
  done < <("$vmm" --no-api --config-file "$work/vm.json" --serial stdout 2>"$work/stderr" </dev/null
           echo "CAISSON-BENCH-EXIT $?")
  end=$(date +%s.%N)
  if [[ -z "$init_at" || "$rc" != 0 ]]; then
    echo "run $i: init line ${init_at:+seen}${init_at:-missing}, caisson exit ${rc:-?}; its log:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  t_init=$(echo "$init_at - $start" | bc); t_exit=$(echo "$end - $start" | bc)
  printf 'run %d: init %.1f s, exit %.1f s\n' "$i" "$t_init" "$t_exit"
  echo "$t_init" >> "$work/init"; echo "$t_exit" >> "$work/exit"
done
printf 'linux boot (%d vCPU, %d runs, this host: guest kernel code emulated): median to init %s s, to exit %s s\n' \
  "$vcpus" "$runs" "$(median < "$work/init")" "$(median < "$work/exit")"
