#!/usr/bin/env bash
# The main job: boots the demo guest embedded in caisson inside a jail made by
# caisson-jailer (strict profile), prints the jail's isolation audit while the VM
# runs, then lets the guest finish. Run as root on a machine with /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=install-deps.sh
source tests/install-deps.sh
caisson_install_deps build

# The jail has no shared libraries, so the jailed VMM is linked statically; the
# jailer is too, so that it starts without loading any (tests/build-static.sh).
echo "==> building a static caisson for the jail (release; about 1 minute the first time)" >&2
bash tests/build-static.sh vmm
echo "==> building a static caisson-jailer (release; about 1 minute the first time)" >&2
bash tests/build-static.sh jailer
jailer=target/static/release/caisson-jailer
echo "==> booting the demo guest in a jail (caisson-jailer, strict profile)" >&2
vmm=target/static/release/caisson
guest=$(ls target/static/release/build/caisson-*/out/guests/demo.elf | head -n 1)

work=$(mktemp -d /tmp/caisson-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
id="demo-$$"
cp "$guest" "$work/demo.elf"
cat > "$work/vm.json" <<EOF
{
  "boot-source": {"kernel_image_path": "$work/demo.elf", "boot_args": "console=ttyS0 caisson.demo_wait"},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}
}
EOF

coproc JAIL {
  exec "$jailer" --id "$id" --exec-file "$vmm" \
    --config-file "$work/vm.json" --resource-root "$work" --chroot-base-dir "$work/jails" 2>&1
}
jail_pid=$JAIL_PID
out=${JAIL[0]}
in=${JAIL[1]}
while IFS= read -r line <&"$out"; do
  printf '%s\n' "$line"
  [[ $line == *"demo: waiting for input"* ]] && break
done

echo "== isolation audit: caisson-jailer audit --id $id"
audit_rc=0
"$jailer" audit --id "$id" || audit_rc=$?

printf 'go\n' >&"$in"
cat <&"$out" || true
rc=0
wait "$jail_pid" || rc=$?
echo "== VM exit code $rc, audit exit code $audit_rc"
exit $(( rc != 0 ? rc : audit_rc ))
