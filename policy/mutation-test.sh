#!/usr/bin/env bash
# Mutation test for check.sh: apply one deliberate break at a time to a copy
# of policy/, run check.sh on the copy, and require that it fails, listing
# the checks that caught the break.  Not part of the normal test run (it
# takes ~30 runs of check.sh); run it after changing check.sh:
#
#   bash policy/mutation-test.sh            all mutations
#   bash policy/mutation-test.sh M03 M07    some of them
set -euo pipefail
export LC_ALL=C
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T="$(mktemp -d /tmp/caisson-mutation.XXXXXX)"
trap 'rm -rf "$T"' EXIT

# Build the Debian base store once and reuse it for every mutation.
if [[ -z "${CAISSON_POLICY_BASE_ROOT:-}" ]]; then
    echo "building base store once (unmodified policy must pass)..."
    out="$(KEEP=1 bash "$HERE/check.sh" 2>&1)" || { echo "$out"; echo "unmodified policy fails"; exit 1; }
    kept="$(sed -n 's/^(work directory kept: \(.*\))$/\1/p' <<<"$out")"
    mv "$kept/root" "$T/base"; rm -rf "$kept"
    # check.sh's last step installed its interface test module, whose rules
    # (e.g. caisson_vm_stream_connect_to) would show in every mutation's VM rules.
    semodule -p "$T/base" -s default -n -X 400 -r caissontest >/dev/null 2>&1
    export CAISSON_POLICY_BASE_ROOT="$T/base"
fi

RQ="$(cat <<'END'
gen_require(`
	type kernel_t, bin_t, unconfined_t, policy_config_t;
')
END
)"
# id | what | kind | argument
#   kind te+ : append argument to caisson.te
#   kind te- : delete lines of caisson.te matching the (ERE) argument
#   kind te~ : sed -E expression applied to caisson.te
#   kind if~ : sed -E expression applied to caisson.if
#   kind fc  : sed -E expression applied to caisson.fc
#   kind exp : delete lines of expected-vm-access.txt matching the argument
MUTATIONS=(
"M01|drop mcs_constrained(caisson_vm_t)|te-|^mcs_constrained\(caisson_vm_t\)"
"M02|VM may create TCP sockets|te+|allow caisson_vm_t self:tcp_socket create_socket_perms;"
"M03|VM gets CAP_NET_ADMIN|te+|allow caisson_vm_t self:capability net_admin;"
"M04|VM may ptrace|te+|allow caisson_vm_t self:process ptrace;"
"M05|VM may request kernel modules|te+|$RQ
allow caisson_vm_t kernel_t:system module_request;"
"M06|VM may execute /usr/bin programs|te+|$RQ
allow caisson_vm_t bin_t:file { execute execute_no_trans };"
"M07|no jailer -> VM domain transition|te-|^domtrans_pattern\(caisson_jailer_t, caisson_exec_t, caisson_vm_t\)"
"M08|VM may execute files it writes|te+|allow caisson_vm_t caisson_vm_file_t:file execute;"
"M09|VM may use netlink|te+|allow caisson_vm_t self:netlink_route_socket create_netlink_socket_perms;"
"M10|VM may write read-only images|te+|allow caisson_vm_t caisson_image_ro_t:file write;"
"M11|wrong label for /usr/bin/caisson|fc|s#^(/usr/bin/caisson[[:space:]]+--[[:space:]]+gen_context\(system_u:object_r:)caisson_exec_t#\1caisson_jail_t#"
"M12|caisson_vm_t not in system_r|te-|^role system_r types caisson_vm_t;"
"M13|no nnp_transition|te-|nnp_transition nosuid_transition"
"M14|VM domain permissive|te+|permissive caisson_vm_t;"
"M15|VM may signal other domains|te+|$RQ
allow caisson_vm_t unconfined_t:process signal;"
"M16|syntax error|te+|allow caisson_vm_t self:process {"
"M17|neverallow violation|te+|$RQ
allow caisson_vm_t policy_config_t:file relabelto;"
"M18|expected list edited|exp|kvm_device_t"
"M19|VM loses /dev/kvm|te-|^allow caisson_vm_t kvm_device_t:chr_file"
"M20|VM may create/unlink images|te+|allow caisson_vm_t caisson_image_t:file { create unlink };"
"M21|VM may relabel jail files|te+|allow caisson_vm_t caisson_jail_t:file relabelfrom;"
"M22|jailer cannot change to system_u|te-|^domain_system_change_exemption\(caisson_jailer_t\)"
"M23|unconfined_t cannot run the jailer|te~|s/unconfined_run_to\(caisson_jailer_t, caisson_jailer_exec_t\)/unconfined_use_fds(caisson_jailer_t)/"
"M24|VM may execmem|te+|allow caisson_vm_t self:process execmem;"
"M25|VM may exec the jailer domain|te+|domtrans_pattern(caisson_vm_t, caisson_exec_t, caisson_jailer_t)"
"M26|jailer may setcon into the VM|te+|allow caisson_jailer_t caisson_vm_t:process dyntransition;"
"M27|another domain may enter caisson_vm_t|te+|$RQ
allow unconfined_t caisson_vm_t:process transition;"
"M28|VM gets an extra entrypoint|te+|$RQ
allow caisson_vm_t bin_t:file entrypoint;"
"M29|jailer loses setexec|te-|^allow caisson_jailer_t self:process"
"M30|VM loses tap/urandom/fd use|te-|^allow caisson_vm_t (urandom_device_t|tun_tap_device_t):chr_file"
"M31|interface loses its rule|if~|/allow caisson_vm_t \\\$1:unix_stream_socket connectto;/d"
"M32|apostrophe in an interface body (m4 quoting)|if~|s/^(interface\\(.caisson_vm_stream_connect_to.,.)\$/\\1\\n\\t# it's broken/"
"M33|a restore cannot map its memory file|te~|s/(caisson_image_ro_t:file \\{ getattr open read lock ioctl) map \\}/\\1 }/"
"M34|new VM files in jail dirs keep caisson_jail_t|te-|^type_transition caisson_vm_t caisson_jail_t:file caisson_vm_file_t;"
"M35|the /firecracker copy is not caisson_exec_t|te-|caisson_exec_t, file, \"firecracker\"\\)"
)

missed=0
for m in "${MUTATIONS[@]}"; do
    id="${m%%|*}"; r="${m#*|}"; what="${r%%|*}"; r="${r#*|}"; kind="${r%%|*}"; arg="${r#*|}"
    if (($#)) && ! printf '%s\n' "$@" | grep -qx "$id"; then continue; fi
    rm -rf "$T/policy"; cp -r "$HERE" "$T/policy"
    P="$T/policy"
    case "$kind" in
        te+) printf '\n%s\n' "$arg" >>"$P/caisson.te" ;;
        te-) grep -Ev "$arg" "$HERE/caisson.te" >"$P/caisson.te" ;;
        te~) sed -E -e "$arg" "$HERE/caisson.te" >"$P/caisson.te" ;;
        if~) sed -E -e "$arg" "$HERE/caisson.if" >"$P/caisson.if" ;;
        fc)  sed -E -e "$arg" "$HERE/caisson.fc" >"$P/caisson.fc" ;;
        exp) grep -v -- "$arg" "$HERE/expected-vm-access.txt" >"$P/expected-vm-access.txt" ;;
    esac
    if cmp -s "$P/caisson.te" "$HERE/caisson.te" && cmp -s "$P/caisson.fc" "$HERE/caisson.fc" \
       && cmp -s "$P/caisson.if" "$HERE/caisson.if" \
       && cmp -s "$P/expected-vm-access.txt" "$HERE/expected-vm-access.txt"; then
        echo "$id $what: mutation did not apply"; missed=$((missed + 1)); continue
    fi
    if out="$(bash "$P/check.sh" 2>&1)"; then
        echo "$id MISSED  $what"; missed=$((missed + 1))
    else
        echo "$id caught  $what  [$(grep '^policy: ' <<<"$out")]"
        grep '^  FAIL' <<<"$out" | sed 's/^  FAIL  /          - /' | cut -c1-150
    fi
done
echo
if ((missed)); then echo "mutation-test: $missed mutation(s) NOT caught"; exit 1; fi
echo "mutation-test: every mutation caught"
