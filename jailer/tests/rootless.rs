//! `--rootless`: an unprivileged user gets the same jail through a user namespace
//! (no cgroup without delegation, no SELinux relabelling, no chown).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;

const NOBODY: u32 = 65534;

fn chown_r(path: &std::path::Path) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A VM directory owned by nobody, with its own copy of the probe as exec file.
fn rootless_vm(tag: &str) -> (Vm, std::path::PathBuf) {
    let vm = Vm::new(tag);
    let exe = vm.dir.join("caisson-probe");
    std::fs::copy(probe(), &exe).unwrap();
    chown_r(&vm.dir);
    (vm, exe)
}

/// The jailer's runtime directory for `vm` (nobody cannot write /run/caisson).
fn runtime_dir(vm: &Vm) -> std::path::PathBuf {
    vm.dir.join("run")
}

/// `caisson-jailer --rootless` run as nobody on `vm`, with `exe` as the exec file.
fn rootless_jailer(vm: &Vm, exe: &std::path::Path) -> Command {
    let mut c = Command::new(JAILER);
    c.args(["--rootless", "--id", &vm.id, "--exec-file"])
        .arg(exe)
        .arg("--config-file")
        .arg(&vm.config)
        .arg("--chroot-base-dir")
        .arg(&vm.base)
        .arg("--resource-root")
        .arg(&vm.dir)
        .arg("--runtime-dir")
        .arg(runtime_dir(vm))
        .uid(NOBODY)
        .gid(NOBODY);
    c
}

/// The VM's user namespace allows no user namespace under it
/// (`user.max_user_namespaces = 0` inside it): with the seccomp baseline off, the
/// probe's `unshare(CLONE_NEWUSER)` meets that limit (ENOSPC) instead of EPERM.
#[test]
fn rootless_user_namespace_allows_no_nested_one() {
    let (vm, exe) = rootless_vm("rootless-userns");
    let profile = profile_with(
        &vm.dir,
        "nobaseline",
        &[("baseline = \"default\"", "baseline = \"off\"")],
    );
    let out = rootless_jailer(&vm, &exe)
        .arg("--profile")
        .arg(&profile)
        .output()
        .unwrap();
    let a = probe_results(&out);
    assert_eq!(a["identity"]["seccomp"], 0);
    denied_with(&a, "unshare-user", libc::ENOSPC);
    // What the baseline alone denied is otherwise open.
    allowed(&a, "netlink-socket");
}

#[test]
fn rootless_jail_confines_without_root() {
    let (vm, exe) = rootless_vm("rootless");
    let runtime = runtime_dir(&vm);
    let out = rootless_jailer(&vm, &exe)
        .args([
            "--",
            "--read-ok",
            "/res/kernel-vmlinux",
            "--rw-file",
            "/res/drive0-root.ext4",
            "--ro-file",
            "/res/drive1-ro.img",
            "--host-file",
            "/etc/hostname",
            "--tcp-port",
            "9",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("rootless: cgroup limits skipped"), "{err}");
    let a = attempts(&out.stdout);
    let me = &a["identity"];
    assert!(me["uid"].as_u64().unwrap() > 100_000, "{me}");
    assert_eq!(me["capeff"], 0);
    assert_eq!(me["no_new_privs"], 1);
    assert_eq!(me["pid"], 1);
    allowed(&a, "read-allowed");
    allowed(&a, "write-allowed");
    denied_with(&a, "read-host-file", libc::ENOENT);
    denied_with(&a, "write-readonly-resource", libc::EROFS);
    denied_with(&a, "create-file-in-root", libc::EROFS);
    // The seccomp baseline: no AF_INET socket, no mount, no user namespace.
    denied_with(&a, "tcp-connect", libc::EPERM);
    denied_with(&a, "mount-tmpfs", libc::EPERM);
    denied_with(&a, "unshare-user", libc::EPERM);
    denied_with(&a, "netlink-socket", libc::EPERM);
    allowed(&a, "thread-spawn");
    // uid 0 is not even mapped in the VM's user namespace.
    denied_with(&a, "setuid-0", libc::EINVAL);
    // Cleaned up in the rootless runtime dir too.
    assert!(!vm.jail_dir().exists());
    assert_eq!(std::fs::read_dir(runtime.join("vms")).unwrap().count(), 0);
    assert!(!runtime.join("mcs").join(&vm.id).exists());
}

#[test]
fn rootless_refuses_what_needs_root() {
    let vm = Vm::new("rootless-no");
    chown_r(&vm.dir);
    for (flags, want) in [
        (vec!["--selinux", "require"], "--selinux=require"),
        (vec!["--netns", "/var/run/netns/x"], "--netns"),
    ] {
        let out = rootless_jailer(&vm, &probe())
            .args(&flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn rootless_vm_audits_clean() {
    let (vm, exe) = rootless_vm("rootless-audit");
    let runtime = runtime_dir(&vm);
    let mut child = rootless_jailer(&vm, &exe)
        .args(["--", "--hold-ms", "3000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_holding(&mut child);
    let out = Command::new(JAILER)
        .args([
            "audit",
            "--id",
            &vm.id,
            "--expect-seccomp",
            "0",
            "--runtime-dir",
        ])
        .arg(&runtime)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    let uid = checks.iter().find(|c| c["item"] == "Uid").unwrap();
    assert_eq!(uid["actual"], "65534 65534 65534 65534");
    let user = checks.iter().find(|c| c["item"] == "user").unwrap();
    assert_eq!(user["ok"], true);
    assert!(
        user["expected"].as_str().unwrap().starts_with("not "),
        "{user}"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// `--api` without root: the socket directory and `/snapshots` are made by (and
/// so belong to) the caller, bound writable in the jail as `/vsock` is, and the
/// target creates and writes a snapshot file there.
#[test]
fn rootless_api_jail_has_its_snapshot_directory() {
    let (vm, exe) = rootless_vm("rootless-api");
    let out = rootless_jailer(&vm, &exe)
        .arg("--api")
        .args([
            "--",
            "--unix-bind",
            "/run/caisson.socket",
            "--try",
            "create:/snapshots/vm.snap",
            "--try",
            "write:/snapshots/vm.snap",
            "--try",
            "unlink:/snapshots/vm.snap",
        ])
        .output()
        .unwrap();
    let a = probe_results(&out);
    allowed(&a, "unix-bind-allowed");
    allowed(&a, "try-create /snapshots/vm.snap");
    allowed(&a, "try-write /snapshots/vm.snap");
    denied_with(&a, "try-unlink /snapshots/vm.snap", libc::EACCES);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/root/snapshots"), "{err}");
}
