#!/usr/bin/env bash
# Build the caisson SELinux policy module and verify it offline.
#
#   bash policy/check.sh            build + analyse, exit non-zero on any failure
#   bash policy/check.sh --update   also rewrite policy/expected-vm-access.txt
#                                   from the current policy (review the diff!)
#   KEEP=1 bash policy/check.sh     keep the work directory (printed at the end)
#
# Needs root only to install missing Debian packages (apt-get). No SELinux
# kernel support is needed: the module is built with selinux-policy-dev,
# installed into a private, temporary copy of Debian's reference policy store
# (semodule -p <tmp root>, neverallow checking on), and the resulting kernel
# policy is queried with setools (sesearch, seinfo, sedta) and evaluated with
# libsepol (python3 selinux.audit2why: TE + RBAC + MLS/MCS constraints).
set -euo pipefail
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EXPECTED="$HERE/expected-vm-access.txt"
UPDATE=0
[[ "${1:-}" == "--update" ]] && UPDATE=1
PY=/usr/bin/python3

# ---------------------------------------------------------------- packages
PKGS=(checkpolicy semodule-utils selinux-policy-dev selinux-policy-default
      policycoreutils setools python3-setools python3-selinux make m4 gawk)
missing=()
for p in "${PKGS[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]]; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "check.sh: installing ${missing[*]}"
    if [[ $EUID -ne 0 ]]; then
        echo "check.sh: missing packages and not root; install them first" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    aptlog="$(mktemp /tmp/caisson-policy-apt.XXXXXX)"
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1; then
        tail -n 30 "$aptlog" >&2; rm -f "$aptlog"
        echo "check.sh: package installation failed" >&2
        exit 2
    fi
    rm -f "$aptlog"
fi

# ---------------------------------------------------------------- harness
PASS=0
FAIL=0
ok()   { PASS=$((PASS + 1)); printf '  ok    %s\n' "$1"; }
bad()  {
    FAIL=$((FAIL + 1)); printf '  FAIL  %s\n' "$1"; shift
    local l; for l in "$@"; do printf '          %s\n' "$l"; done
}
# check NAME OFFENDING-LINES...: pass if no offending lines
none() { local name="$1"; shift; if (($#)); then bad "$name" "$@"; else ok "$name"; fi; }
summary() {
    echo
    echo "policy: $PASS passed, $FAIL failed"
    if [[ "${KEEP:-0}" == 1 ]]; then echo "(work directory kept: $WORK)"; fi
}
# grep -q in a pipeline can SIGPIPE the producer (fatal with pipefail)
qgrep() { grep "$@" >/dev/null; }
lines() { local f="$1"; [[ -s "$f" ]] && mapfile -t L <"$f" || L=(); }

WORK="$(mktemp -d /tmp/caisson-policy.XXXXXX)"
cleanup() { [[ "${KEEP:-0}" == 1 ]] || rm -rf "$WORK"; }
trap cleanup EXIT

# ---------------------------------------------------------------- build
echo "== build"
mkdir -p "$WORK/src"
cp "$HERE/caisson.te" "$HERE/caisson.fc" "$HERE/caisson.if" "$WORK/src/"
if (cd "$WORK/src" && make -f /usr/share/selinux/devel/Makefile caisson.pp) >"$WORK/build.log" 2>&1 \
   && [[ -s "$WORK/src/caisson.pp" ]]; then
    ok "caisson.pp builds with /usr/share/selinux/devel/Makefile"
else
    bad "caisson.pp builds with /usr/share/selinux/devel/Makefile" "$(tail -n 20 "$WORK/build.log")"
    summary; exit 1
fi

# A private policy store holding Debian's reference policy (the modules
# shipped by selinux-policy-default, enabled as its postinst enables them)
# plus caisson.pp, compiled with expand-check=1 so that every neverallow of
# the reference policy is asserted against the module.
echo "== link into Debian's reference policy (private store, neverallow checks on)"
ROOT="$WORK/root"
mkdir -p "$ROOT/etc/selinux" "$ROOT/var/lib/selinux"
sed -e 's/^expand-check *=.*/expand-check=1/' /etc/selinux/semanage.conf >"$ROOT/etc/selinux/semanage.conf"
grep -q '^expand-check=1' "$ROOT/etc/selinux/semanage.conf" || echo 'expand-check=1' >>"$ROOT/etc/selinux/semanage.conf"
SHARE=/usr/share/selinux/default
args=()
while read -r m; do [[ -n "$m" ]] && args+=(-i "$SHARE/$m.pp.bz2"); done <"$SHARE/.modules"
# modules Debian's postinst disables by default
for m in amtu bugzilla cobbler condor cyphesis git ksmtuned likewise livecd nessus numad \
         oddjob openca soundserver thunderbird updfstab usernetctl; do
    [[ -e "$SHARE/$m.pp.bz2" ]] && args+=(-d "$m")
done
if [[ -n "${CAISSON_POLICY_BASE_ROOT:-}" && -d "$CAISSON_POLICY_BASE_ROOT/var/lib/selinux/default" ]]; then
    # testing hook: reuse a base store built by an earlier run (KEEP=1 .../root)
    cp -a "$CAISSON_POLICY_BASE_ROOT/var/lib/selinux/default" "$ROOT/var/lib/selinux/"
elif semodule -p "$ROOT" -s default -n -X 100 "${args[@]}" >"$WORK/base.log" 2>&1; then
    :
else
    bad "Debian reference policy store builds" "$(grep -v 'not in password file' "$WORK/base.log" | tail -n 20)"
    summary; exit 1
fi
if semodule -p "$ROOT" -s default -n -X 400 -i "$WORK/src/caisson.pp" >"$WORK/install.log" 2>&1; then
    ok "semodule -i caisson.pp into the reference policy (all neverallow rules hold)"
else
    bad "semodule -i caisson.pp into the reference policy (all neverallow rules hold)" \
        "$(grep -v 'not in password file' "$WORK/install.log" | tail -n 20)"
    summary; exit 1
fi
POL="$(ls "$ROOT"/etc/selinux/default/policy/policy.* | head -n 1)"
FC="$ROOT/etc/selinux/default/contexts/files/file_contexts"
echo "   kernel policy: ${POL#"$WORK"/}  ($(seinfo "$POL" | sed -n 's/^Policy Version: *//p'))"

# ---------------------------------------------------------------- types
echo "== types and file contexts"
m=()
seinfo "$POL" -t >"$WORK/types.txt"
for t in caisson_jailer_t caisson_jailer_exec_t caisson_vm_t caisson_exec_t caisson_image_t \
         caisson_image_ro_t caisson_jail_t caisson_vm_file_t caisson_vm_sock_t caisson_runtime_t; do
    grep -qx "   $t" "$WORK/types.txt" || m+=("type $t not declared")
done
seinfo -a domain -x "$POL" >"$WORK/domain.txt"
seinfo -a file_type -x "$POL" >"$WORK/file_type.txt"
grep -qw caisson_vm_t "$WORK/domain.txt" || m+=("caisson_vm_t is not a domain")
grep -qw caisson_jailer_t "$WORK/domain.txt" || m+=("caisson_jailer_t is not a domain")
for t in caisson_exec_t caisson_jailer_exec_t caisson_image_t caisson_image_ro_t caisson_jail_t \
         caisson_vm_file_t caisson_vm_sock_t caisson_runtime_t; do
    grep -qw "$t" "$WORK/file_type.txt" || m+=("$t is not a file_type")
done
seinfo "$POL" --permissive | qgrep caisson && m+=("a caisson domain is permissive")
none "all caisson types declared; domains are domains, files are file_types, none permissive" "${m[@]}"

m=()
while read -r path mode want; do
    got="$(matchpathcon -f "$FC" -m "$mode" "$path" 2>&1 | awk '{print $2}')"
    [[ "$got" == "$want" ]] || m+=("$path ($mode): got '$got', want '$want'")
done <<'EOF'
/usr/bin/caisson                       file system_u:object_r:caisson_exec_t:s0
/usr/local/bin/caisson                 file system_u:object_r:caisson_exec_t:s0
/usr/bin/caisson-jailer                file system_u:object_r:caisson_jailer_exec_t:s0
/usr/local/bin/caisson-jailer          file system_u:object_r:caisson_jailer_exec_t:s0
/srv/jailer/caisson                    dir  system_u:object_r:caisson_jail_t:s0
/srv/jailer/caisson/vm1/root           dir  system_u:object_r:caisson_jail_t:s0
/srv/jailer/caisson/vm1/root/disk.img  file system_u:object_r:caisson_jail_t:s0
/srv/jailer/caisson/vm1/root/caisson   file system_u:object_r:caisson_exec_t:s0
/srv/jailer/firecracker                dir  system_u:object_r:caisson_jail_t:s0
/srv/jailer/firecracker/vm1/root       dir  system_u:object_r:caisson_jail_t:s0
/srv/jailer/firecracker/vm1/root/run   dir  system_u:object_r:caisson_jail_t:s0
/srv/jailer/firecracker/vm1/root/firecracker file system_u:object_r:caisson_exec_t:s0
/run/caisson                           dir  system_u:object_r:caisson_runtime_t:s0
/run/caisson/mcs/vm1                   file system_u:object_r:caisson_runtime_t:s0
/var/lib/caisson/images/vmlinux        file system_u:object_r:caisson_image_ro_t:s0
EOF
none "file contexts (matchpathcon against the compiled file_contexts)" "${m[@]}"

# ---------------------------------------------------------------- VM access
# every TE rule that applies to caisson_vm_t as source, including rules
# written for attributes it belongs to (e.g. Debian's rules for `domain`)
sesearch -A -s caisson_vm_t "$POL" | sort >"$WORK/vm-allow.txt"
{ cat "$WORK/vm-allow.txt"; sesearch -T --allowxperm -s caisson_vm_t "$POL"; } | sort >"$WORK/vm-rules.txt"
# one line per permission: SRC TGT CLASS PERM (conditional suffix dropped)
sed -E 's/;.*$//' "$WORK/vm-allow.txt" |
    awk '{ split($3, a, ":"); for (i = 4; i <= NF; i++) if ($i != "{" && $i != "}") print $2, a[1], a[2], $i }' \
    >"$WORK/vm-perms.txt"
# q CLASS-REGEX PERM-REGEX [TARGET-REGEX]: permission tuples matching
q() { awk -v c="^($1)\$" -v p="^($2)\$" -v t="^(${3:-.*})\$" '$3 ~ c && $4 ~ p && $2 ~ t' "$WORK/vm-perms.txt"; }

echo "== caisson_vm_t access"
if ((UPDATE)); then
    {
        echo "# Every allow/type_transition rule whose source is caisson_vm_t (directly or"
        echo "# through an attribute such as Debian's 'domain'), as printed by sesearch"
        echo "# against Debian's reference policy + caisson.pp. Regenerate with"
        echo "# 'bash policy/check.sh --update' and review the diff."
        cat "$WORK/vm-rules.txt"
    } >"$EXPECTED"
    echo "   (rewrote ${EXPECTED#"$HERE"/})"
fi
if diff -u <(grep -v '^#' "$EXPECTED" | sed '/^$/d' | sort) "$WORK/vm-rules.txt" >"$WORK/vm.diff"; then
    ok "exact rule set for caisson_vm_t == expected-vm-access.txt ($(wc -l <"$WORK/vm-rules.txt") rules)"
else
    mapfile -t L <"$WORK/vm.diff"
    bad "exact rule set for caisson_vm_t == expected-vm-access.txt (- expected, + actual)" "${L[@]}"
fi

q 'capability|capability2|cap_userns|cap2_userns' '.*' >"$WORK/x"; lines "$WORK/x"
none "no capability of any kind (capability, capability2, cap_userns, cap2_userns)" "${L[@]}"

q '.*socket' 'create' | awk '$3 != "unix_stream_socket"' >"$WORK/x"; lines "$WORK/x"
none "creates no socket but unix_stream_socket (no tcp/udp/rawip/sctp/icmp/packet/netlink...)" "${L[@]}"

q 'tcp_socket|udp_socket|rawip_socket|sctp_socket|icmp_socket|dccp_socket|packet_socket|key_socket|.*netlink.*|node|netif|port|packet' '.*' |
    awk '!($3 == "tcp_socket" && $4 == "recvfrom")' >"$WORK/x"; lines "$WORK/x"
none "no permission on network socket classes, netlink, node, netif, port, packet" "${L[@]}"
q 'tcp_socket' 'recvfrom' | awk '{print "   note: " $1 " " $2 ":" $3 " " $4 " (labelled-networking peer check from the domain attribute; needs a tcp socket the VM cannot create)"}' | sort -u

q 'process' 'ptrace' >"$WORK/x"; lines "$WORK/x"
none "no process ptrace" "${L[@]}"

q 'process|process2' 'transition|dyntransition|setexec|setcurrent|setfscreate|setsockcreate|setkeycreate|execmem|execstack|execheap|nnp_transition|nosuid_transition' >"$WORK/x"; lines "$WORK/x"
none "no transition/dyntransition/setexec/setcurrent/setfscreate, no execmem/execstack/execheap" "${L[@]}"

q 'process' 'signal|sigkill|sigstop' | awk '$2 != "caisson_vm_t"' >"$WORK/x"; lines "$WORK/x"
none "signals (signal/sigkill/sigstop) only to itself" "${L[@]}"

q 'system|security|kernel_service|bpf|perf_event|key' '.*' >"$WORK/x"; lines "$WORK/x"
none "no system (module_load, module_request, syslog...), security, kernel_service, bpf, perf_event, key" "${L[@]}"

q '.*' 'execute_no_trans' >"$WORK/x"; lines "$WORK/x"
none "no execute_no_trans on anything (cannot exec any program)" "${L[@]}"

q '.*' 'entrypoint' | awk '$2 != "caisson_exec_t" || $3 != "file"' >"$WORK/x"; lines "$WORK/x"
none "entrypoint only caisson_exec_t:file" "${L[@]}"

# execute = mmap PROT_EXEC. caisson_exec_t: the ELF loader maps the VMM's own
# binary after the transition. ld_so_t/lib_t/textrel_shlib_t: granted to every
# domain by Debian's base policy (domain attribute); the module cannot remove
# them; nothing in the jail carries these types.
got="$(q '.*' 'execute' | awk '{print $2}' | sort -u | tr '\n' ' ')"
want="caisson_exec_t ld_so_t lib_t textrel_shlib_t "
if [[ "$got" == "$want" ]]; then
    ok "execute only on {$want} (own binary + Debian's domain-wide shared libraries)"
else
    bad "execute only on {$want}" "got: {$got}" "$(q '.*' 'execute' | grep -v -E ' (caisson_exec_t|ld_so_t|lib_t|textrel_shlib_t) ' || true)"
fi

# W^X: nothing the VM can write, create or rename can be mapped executable
q '.*' 'write|append|create|rename|setattr' | awk '{print $2}' | sort -u >"$WORK/writable"
q '.*' 'execute|execmod' | awk '{print $2}' | sort -u >"$WORK/exec"
comm -12 "$WORK/writable" "$WORK/exec" | sed 's/^/writable and executable: /' >"$WORK/x"; lines "$WORK/x"
none "W^X: no type both writable and executable by the VM" "${L[@]}"

q '.*' 'relabelfrom|relabelto' | awk '$3 != "tun_socket"' >"$WORK/x"; lines "$WORK/x"
none "cannot relabel any file (relabelfrom/relabelto only on tun_socket for TUNSETIFF)" "${L[@]}"

q '.*' 'write|append|create|setattr|unlink|rename|link|relabelto|relabelfrom|mounton' 'caisson_image_ro_t|caisson_exec_t|caisson_jailer_exec_t' >"$WORK/x"; lines "$WORK/x"
none "read-only images and binaries are read-only" "${L[@]}"

got="$(q 'file|blk_file' '.*' 'caisson_image_t' | awk '{print $3 ":" $4}' | sort -u | tr '\n' ' ')"
want="blk_file:getattr blk_file:ioctl blk_file:lock blk_file:open blk_file:read blk_file:write file:append file:getattr file:ioctl file:lock file:open file:read file:write "
if [[ "$got" == "$want" ]]; then
    ok "caisson_image_t: exactly open/read/write/append/getattr/lock/ioctl (no create/unlink/setattr)"
else
    bad "caisson_image_t: exactly open/read/write/append/getattr/lock/ioctl" "got:  $got" "want: $want"
fi

m=()
for need in 'kvm_device_t chr_file (getattr|open|read|write|ioctl)' 'urandom_device_t chr_file (getattr|open|read)' \
            'tun_tap_device_t chr_file (getattr|open|read|write|ioctl)' 'caisson_jailer_t fd use' \
            'caisson_vm_t unix_stream_socket (create|bind|listen|accept)'; do
    read -r t c p <<<"$need"
    n="$(q "$c" "$p" "$t" | wc -l)"
    w="$(tr -cd '|' <<<"$p" | wc -c)"; w=$((w + 1))
    ((n >= w)) || m+=("missing: caisson_vm_t $t:$c $p")
done
none "has what a VMM needs: /dev/kvm, /dev/urandom, /dev/net/tun, jailer fds, its unix sockets" "${m[@]}"

# ---------------------------------------------------------------- transitions
echo "== domain transitions"
got="$(sesearch -T -s caisson_jailer_t -t caisson_exec_t -c process "$POL")"
if [[ "$got" == "type_transition caisson_jailer_t caisson_exec_t:process caisson_vm_t;" ]]; then
    ok "type_transition caisson_jailer_t caisson_exec_t:process caisson_vm_t"
else
    bad "type_transition caisson_jailer_t caisson_exec_t:process caisson_vm_t" "got: ${got:-<none>}"
fi

sedta -p "$POL" -s caisson_jailer_t --full >"$WORK/dta.txt" 2>&1 || true
m=()
grep -q '^Transition [0-9]*: caisson_jailer_t -> caisson_vm_t$' "$WORK/dta.txt" || m+=("sedta: no transition caisson_jailer_t -> caisson_vm_t")
grep -q '^Entrypoint caisson_exec_t:' "$WORK/dta.txt" || m+=("sedta: caisson_exec_t is not the entrypoint")
grep -A1 '^Set execution context rule' "$WORK/dta.txt" | qgrep 'caisson_jailer_t caisson_jailer_t:process .*setexec' \
    || m+=("sedta: jailer lacks process setexec (setexeccon)")
sesearch -A -s caisson_jailer_t -t caisson_vm_t -c process2 -p nnp_transition "$POL" | qgrep . \
    || m+=("no process2 nnp_transition (jailer sets no_new_privs before exec)")
none "sedta: caisson_jailer_t -> caisson_vm_t via entrypoint caisson_exec_t, setexeccon allowed, nnp_transition" "${m[@]}"

got="$(sesearch -A -t caisson_vm_t -c process -p transition "$POL" | awk '{print $2}' | sort -u | tr '\n' ' ')"
if [[ "$got" == "caisson_jailer_t " ]]; then
    ok "only caisson_jailer_t may transition into caisson_vm_t"
else
    bad "only caisson_jailer_t may transition into caisson_vm_t" "sources: $got"
fi
got="$(sesearch -A -t caisson_vm_t -c process -p dyntransition "$POL")"
none "nobody may dyntransition (setcon) into caisson_vm_t" ${got:+"$got"}

sedta -p "$POL" -s caisson_vm_t >"$WORK/dta-vm.txt" 2>&1 || true
if grep -q '^0 domain transition(s) found' "$WORK/dta-vm.txt"; then
    ok "sedta: caisson_vm_t is a dead end (0 transitions out)"
else
    mapfile -t L <"$WORK/dta-vm.txt"; bad "sedta: caisson_vm_t is a dead end (0 transitions out)" "${L[@]}"
fi

# Files made in jail directories: the VM's own get caisson_vm_file_t (logs,
# snapshot files in /snapshots or a Firecracker-mode root), the jailer's copy
# of the VMM caisson_exec_t under either name it gives it.
m=()
got="$(sesearch -T -s caisson_vm_t -t caisson_jail_t -c file "$POL")"
[[ "$got" == "type_transition caisson_vm_t caisson_jail_t:file caisson_vm_file_t;" ]] \
    || m+=("VM file in a jail dir: got '${got:-<none>}'")
sesearch -T -s caisson_jailer_t -t caisson_jail_t -c file "$POL" >"$WORK/x"
for name in caisson firecracker; do
    qgrep -E "caisson_jail_t:file caisson_exec_t \"?$name\"?;" "$WORK/x" \
        || m+=("no type_transition caisson_jailer_t caisson_jail_t:file caisson_exec_t \"$name\"")
done
none "new files in jail dirs: the VM's get caisson_vm_file_t; the VMM copies /caisson, /firecracker get caisson_exec_t" "${m[@]}"

m=()
for src in unconfined_t sysadm_t init_t; do
    sesearch -T -s "$src" -t caisson_jailer_exec_t -c process "$POL" | qgrep "process caisson_jailer_t;" \
        || m+=("no type_transition $src caisson_jailer_exec_t:process caisson_jailer_t")
done
none "unconfined_t, sysadm_t and init_t enter caisson_jailer_t by executing caisson_jailer_exec_t" "${m[@]}"

# ---------------------------------------------------------------- MCS
echo "== MCS (sVirt) isolation"
seinfo -a mcs_constrained_type -x "$POL" >"$WORK/mcs.txt"
if grep -qw caisson_vm_t "$WORK/mcs.txt"; then
    ok "caisson_vm_t is in attribute mcs_constrained_type"
else
    bad "caisson_vm_t is in attribute mcs_constrained_type" "$(cat "$WORK/mcs.txt")"
fi
m=()
seinfo "$POL" -x --constrain >"$WORK/constrain.txt"
for c in file blk_file chr_file dir sock_file unix_stream_socket process; do
    qgrep "^ *mlsconstrain $c .*read\|^ *mlsconstrain $c .*connectto\|^ *mlsconstrain $c .*signal" "$WORK/constrain.txt" \
        || { m+=("no mlsconstrain on $c"); continue; }
    grep "^ *mlsconstrain $c " "$WORK/constrain.txt" | qgrep 'h1 dom h2 or ( t1 != mcs_constrained_type )' \
        || m+=("mlsconstrain $c does not use mcs_constrained_type")
done
none "policy has the MCS constraints (h1 dom h2 or t1 != mcs_constrained_type) for file, blk_file, chr_file, dir, sock_file, unix_stream_socket, process" "${m[@]}"

# Evaluate concrete accesses with libsepol's access computation (TE, RBAC,
# constraints and MLS constraints), the same code path as audit2why.
cat >"$WORK/mcs_eval.py" <<'PYEOF'
import sys
import selinux.audit2why as a2w

a2w.init(sys.argv[1])
names = {getattr(a2w, k): k for k in dir(a2w) if k.isupper()}
VM = "system_u:system_r:caisson_vm_t:s0:"
J_UNC = "unconfined_u:unconfined_r:caisson_jailer_t:s0-s0:c0.c1023"
J_SYS = "system_u:system_r:caisson_jailer_t:s0-s0:c0.c1023"
J_ADM = "sysadm_u:sysadm_r:caisson_jailer_t:s0-s0:c0.c1023"
O = "system_u:object_r:"
# (expected, source, target, class, perms); expected: ALLOW, or the reason
# it must be refused: CONSTRAINT (MCS/constraint), TERULE (no allow rule)
cases = [
    ("ALLOW",      VM + "c1,c2", O + "caisson_image_t:s0:c1,c2", "file", "open read write lock getattr"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_image_t:s0:c3,c4", "file", "read"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_image_t:s0:c3,c4", "file", "write"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_image_t:s0:c1,c3", "file", "open"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_image_t:s0:c3,c4", "blk_file", "read"),
    ("ALLOW",      VM + "c1,c2", O + "caisson_image_ro_t:s0", "file", "open read getattr"),
    ("TERULE",     VM + "c1,c2", O + "caisson_image_ro_t:s0", "file", "write"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_image_ro_t:s0:c3,c4", "file", "read"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_vm_file_t:s0:c3,c4", "file", "write"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_vm_sock_t:s0:c3,c4", "sock_file", "write"),
    ("ALLOW",      VM + "c1,c2", O + "caisson_vm_file_t:s0:c1,c2", "file", "create write"),
    ("ALLOW",      VM + "c1,c2", O + "caisson_vm_sock_t:s0:c1,c2", "sock_file", "create"),
    ("ALLOW",      VM + "c1,c2", O + "caisson_jail_t:s0", "dir", "search add_name"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_jail_t:s0:c3,c4", "dir", "search"),
    ("ALLOW",      VM + "c1,c2", O + "kvm_device_t:s0", "chr_file", "open read write ioctl"),
    ("ALLOW",      VM + "c1,c2", O + "tun_tap_device_t:s0", "chr_file", "open read write ioctl"),
    ("ALLOW",      VM + "c1,c2", O + "urandom_device_t:s0", "chr_file", "open read"),
    ("ALLOW",      VM + "c1,c2", VM + "c1,c2", "process", "signal"),
    ("CONSTRAINT", VM + "c1,c2", VM + "c3,c4", "process", "signal"),
    ("TERULE",     VM + "c1,c2", VM + "c3,c4", "process", "ptrace"),
    ("CONSTRAINT", VM + "c1,c2", VM + "c3,c4", "unix_stream_socket", "write"),
    ("ALLOW",      VM + "c1,c2", J_SYS, "fd", "use"),
    ("TERULE",     VM + "c1,c2", O + "caisson_exec_t:s0", "file", "execute_no_trans"),
    ("TERULE",     VM + "c1,c2", "unconfined_u:unconfined_r:unconfined_t:s0", "process", "transition"),
    ("ALLOW",      J_UNC, VM + "c1,c2", "process", "transition"),
    ("ALLOW",      J_UNC, VM + "c1,c2", "process2", "nnp_transition"),
    ("ALLOW",      J_SYS, VM + "c1,c2", "process", "transition"),
    ("ALLOW",      J_ADM, VM + "c1,c2", "process", "transition"),
    ("ALLOW",      J_UNC, O + "caisson_image_t:s0:c1,c2", "file", "relabelfrom relabelto"),
    # snapshots: a restore maps the shared memory file private; the --api jail's
    # /snapshots is caisson_jail_t at the VM's pair, and what the VM creates
    # there (or in a Firecracker-mode root) is caisson_vm_file_t at its level
    ("ALLOW",      VM + "c1,c2", O + "caisson_image_ro_t:s0", "file", "map"),
    ("ALLOW",      VM + "c1,c2", O + "caisson_jail_t:s0:c1,c2", "dir", "getattr search add_name write"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_jail_t:s0:c3,c4", "dir", "add_name write"),
    ("ALLOW",      VM + "c1,c2", O + "caisson_vm_file_t:s0:c1,c2", "file", "create open write getattr"),
    ("CONSTRAINT", VM + "c1,c2", O + "caisson_vm_file_t:s0:c3,c4", "file", "read"),
    ("TERULE",     VM + "c1,c2", O + "caisson_image_t:s0:c1,c2", "file", "create"),
    ("TERULE",     VM + "c1,c2", O + "caisson_jail_t:s0:c1,c2", "dir", "create rmdir"),
    ("ALLOW",      J_UNC, O + "caisson_jail_t:s0", "dir", "relabelfrom relabelto"),
    ("ALLOW",      J_SYS, O + "caisson_jail_t:s0:c1,c2", "dir", "relabelfrom relabelto search read write remove_name rmdir"),
    ("ALLOW",      J_SYS, O + "caisson_vm_file_t:s0:c1,c2", "file", "getattr unlink relabelfrom"),
    ("ALLOW",      "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", J_UNC, "process", "transition"),
    ("ALLOW",      "sysadm_u:sysadm_r:sysadm_t:s0-s0:c0.c1023", J_ADM, "process", "transition"),
    ("ALLOW",      "system_u:system_r:init_t:s0-s0:c0.c1023", J_SYS, "process", "transition"),
]
failed = 0
for want, s, t, c, perms in cases:
    r = a2w.analyze(s, t, c, perms.split())
    got = names.get(r[0], str(r[0]))
    st = "ok|" if got == want else "FAIL|"
    failed += got != want
    short = lambda x: ":".join(x.split(":")[2:]) if x.startswith("system_u:object_r:") else x
    print(f"{st}{short(s)} -> {short(t)} {c} {{ {perms} }}: {got}" + ("" if got == want else f" (want {want})"))
    if got != want and len(r) > 1 and r[1]:
        print("        " + str(r[1]).strip().replace("\n", "\n        "))
a2w.finish()
PYEOF
"$PY" "$WORK/mcs_eval.py" "$POL" >"$WORK/mcs-eval.txt" 2>&1 || true
while IFS= read -r line; do
    case "$line" in
        "ok|"*) ok "${line#ok|}" ;;
        "FAIL|"*) bad "${line#FAIL|}" ;;
        *) printf '          %s\n' "$line" ;;
    esac
done <"$WORK/mcs-eval.txt"
grep -q '^\(ok\|FAIL\)|' "$WORK/mcs-eval.txt" || bad "libsepol evaluation ran" "$(cat "$WORK/mcs-eval.txt")"

# ---------------------------------------------------------------- interfaces
# Last, because it adds rules to the policy: a second module that uses every
# interface of caisson.if must build, link (neverallows on) and grant.
echo "== interfaces (caisson.if)"
cat >"$WORK/src/caissontest.te" <<'TEEOF'
policy_module(caissontest, 1.0.0)
gen_require(`
	type sysadm_t, unconfined_t;
	role sysadm_r;
')
caisson_admin(sysadm_t, sysadm_r)
caisson_run_jailer(sysadm_t, sysadm_r)
caisson_domtrans_jailer(unconfined_t)
caisson_exec(sysadm_t)
caisson_read_images(sysadm_t)
caisson_stream_connect_vm(unconfined_t)
caisson_vm_stream_connect_to(unconfined_t)
TEEOF
: >"$WORK/src/caissontest.fc"
if (cd "$WORK/src" && make -f /usr/share/selinux/devel/Makefile caissontest.pp) >"$WORK/iftest.log" 2>&1 \
   && semodule -p "$ROOT" -s default -n -X 400 -i "$WORK/src/caissontest.pp" >>"$WORK/iftest.log" 2>&1; then
    m=()
    for rule in 'caisson_vm_t unconfined_t unix_stream_socket connectto' 'unconfined_t caisson_vm_t unix_stream_socket connectto' \
                'sysadm_t caisson_image_t file read' 'sysadm_t caisson_exec_t file execute_no_trans' \
                'unconfined_t caisson_jailer_t process transition' 'sysadm_t caisson_vm_t process sigkill'; do
        read -r s t c p <<<"$rule"
        sesearch -A -s "$s" -t "$t" -c "$c" -p "$p" "$POL" | qgrep . || m+=("missing: allow $s $t:$c $p")
    done
    none "a module using every caisson.if interface builds, links and grants what they promise" "${m[@]}"
else
    bad "a module using every caisson.if interface builds and links" "$(grep -v 'not in password file' "$WORK/iftest.log" | tail -n 20)"
fi

summary
((FAIL == 0))
