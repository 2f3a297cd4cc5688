//! The probe, run as the jailed exec file, tries to break each layer; every attempt
//! must be denied, by the layer expected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn probe_args(vm: &Vm, sleep_pid: u32, port: u16, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--host-file",
        "/etc/hostname",
        "--proc-file",
        "/proc/1/root/etc/hostname",
        "--read-ok",
        "/res/kernel-vmlinux",
        "--rw-file",
        "/res/drive0-root.ext4",
        "--ro-file",
        "/res/drive1-ro.img",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend([
        "--other-disk".into(),
        vm.dir.join("img/root.ext4").display().to_string(),
    ]);
    v.extend(["--tcp-port".into(), port.to_string()]);
    v.extend(["--kill-pid".into(), sleep_pid.to_string()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Gives the VM a vsock device: the jail's `/vsock` is then writable (only then,
/// as the sandbox declarations say), so that the probe's mknod there meets
/// Landlock rather than the read-only root.
fn with_vsock(vm: &Vm) {
    let text = std::fs::read_to_string(&vm.config).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["vsock"] = serde_json::json!({"guest_cid": 3, "uds_path": "/tmp/probe/v.sock"});
    std::fs::write(&vm.config, v.to_string()).unwrap();
}

#[test]
fn every_layer_denies_the_probe() {
    let mut vm = Vm::new("attack");
    with_vsock(&vm);
    // The cgroup's pids limit (32) is below RLIMIT_NPROC (1000) here, so EAGAIN comes from the cgroup.
    let profile = profile_with(
        &vm.dir,
        "p",
        &[
            ("pids_max = 64", "pids_max = 32"),
            ("nproc = 64", "nproc = 1000"),
        ],
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sleep = sleeper();
    vm.extra_pids.push(sleep.id());
    let out = vm.run(
        &["--profile", profile.to_str().unwrap()],
        &probe_args(&vm, sleep.id(), port, &["--mem-mib", "400", "--pids"]),
    );
    let a = probe_results(&out);

    // Who the probe is: the derived uid, no capabilities, no new privileges, pid 1
    // of its own pid namespace, its own hostname, no /proc.
    let me = &a["identity"];
    let uid = me["uid"].as_u64().unwrap();
    assert!(uid > 100_000 && uid < 100_000 + 1024 * 1024, "{me}");
    assert_eq!(me["gid"], me["uid"]);
    assert_eq!(me["capeff"], 0);
    assert_eq!(me["no_new_privs"], 1);
    assert_eq!(me["pid"], 1);
    assert_eq!(me["hostname"], vm.id.as_str());
    assert_eq!(me["proc_visible"], false);
    // Filter mode: the jailer's seccomp baseline (the probe installs nothing).
    assert_eq!(me["seccomp"], 2);

    // Positive controls: the VMM's own files work, and threads start under the
    // baseline (std tries clone3, gets ENOSYS, and falls back to clone).
    allowed(&a, "read-allowed");
    allowed(&a, "write-allowed");
    allowed(&a, "open-kvm");
    allowed(&a, "thread-spawn");

    // Filesystem: the host is not in the mount namespace at all.
    denied_with(&a, "read-host-file", libc::ENOENT);
    denied_with(&a, "read-via-proc1-root", libc::ENOENT);
    denied_with(&a, "read-other-vm-disk", libc::ENOENT);
    denied_with(&a, "exec-host-shell", libc::ENOENT);
    // Read-only bind mount and read-only root.
    denied_with(&a, "write-readonly-resource", libc::EROFS);
    denied_with(&a, "create-file-in-root", libc::EROFS);
    // The seccomp baseline (the mount family); no CAP_SYS_ADMIN under it.
    denied_with(&a, "mount-tmpfs", libc::EPERM);
    // Landlock (MakeChar not granted) answers before the capability check.
    denied_with(&a, "mknod", libc::EACCES);
    // The seccomp baseline: no AF_INET socket at all (inet = false), so Landlock's
    // TCP rules (shown below with inet = true) are not even reached.
    denied_with(&a, "tcp-connect", libc::EPERM);
    denied_with(&a, "tcp-bind", libc::EPERM);
    denied_with(&a, "raw-socket", libc::EPERM);
    // The seccomp baseline: netlink, a user namespace, the keyring, ptrace;
    // clone3 gets ENOSYS so that libc falls back to clone.
    denied_with(&a, "netlink-socket", libc::EPERM);
    denied_with(&a, "unshare-user", libc::EPERM);
    denied_with(&a, "keyctl", libc::EPERM);
    denied_with(&a, "clone3", libc::ENOSYS);
    denied_with(&a, "ptrace-outside", libc::EPERM);
    // The pid namespace hides the sleep.
    denied_with(&a, "kill-outside", libc::ESRCH);
    // No CAP_SETUID, no CAP_SYS_RESOURCE.
    denied_with(&a, "setuid-0", libc::EPERM);
    denied_with(&a, "raise-rlimit", libc::EPERM);
    // The seccomp baseline, before the kernel's CAP_SYS_MODULE check (or its
    // ENOSYS on kernels built without module support).
    denied_with(&a, "init-module", libc::EPERM);
    denied_with(&a, "finit-module", libc::EPERM);
    // cgroup memory limit (16 + 128 MiB): the 400 MiB child is OOM-killed.
    assert_eq!(a["memory-limit"]["denied"], true, "{}", a["memory-limit"]);
    // cgroup pids limit 32: the probe itself + 31 children.
    denied_with(&a, "pids-limit", libc::EAGAIN);
    assert!(
        a["pids-limit"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("31 children"),
        "{}",
        a["pids-limit"]
    );

    // The sleep outside survived.
    assert!(
        sleep.try_wait().unwrap().is_none(),
        "the probe killed a host process"
    );
    let _ = sleep.kill();
    // Everything was undone.
    vm.assert_cleaned("caisson");
    // The writable disk got its owner back.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(vm.dir.join("img/root.ext4"))
            .unwrap()
            .uid(),
        0
    );
}

/// With the seccomp baseline off, the layers underneath answer: netlink, a user
/// namespace and the keyring are open to the probe (what the baseline closes),
/// Landlock answers the TCP attempts, the missing capabilities the raw socket and
/// the mount, the pid namespace the ptrace.
#[test]
fn the_seccomp_baseline_is_the_layer_that_denies_netlink_userns_and_keyring() {
    let mut vm = Vm::new("nobl");
    let profile = profile_with(
        &vm.dir,
        "nobaseline",
        &[("baseline = \"default\"", "baseline = \"off\"")],
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sleep = sleeper();
    vm.extra_pids.push(sleep.id());
    let out = vm.run(
        &["--profile", profile.to_str().unwrap()],
        &probe_args(&vm, sleep.id(), port, &[]),
    );
    let _ = sleep.kill();
    let _ = sleep.wait();
    let a = probe_results(&out);
    assert_eq!(a["identity"]["seccomp"], 0);
    allowed(&a, "netlink-socket");
    allowed(&a, "unshare-user");
    allowed(&a, "keyctl");
    allowed(&a, "thread-spawn");
    denied_with(&a, "clone3", libc::EINVAL);
    denied_with(&a, "tcp-connect", libc::EACCES);
    denied_with(&a, "tcp-bind", libc::EACCES);
    denied_with(&a, "raw-socket", libc::EPERM);
    denied_with(&a, "mount-tmpfs", libc::EPERM);
    denied_with(&a, "ptrace-outside", libc::ESRCH);
    vm.assert_cleaned("caisson");
}

/// With Landlock off (and the baseline letting AF_INET through, inet = true), the
/// same attempts fail differently: the EACCES came from Landlock, and the layers
/// underneath still hold.
#[test]
fn landlock_is_the_layer_that_said_eacces() {
    let mut vm = Vm::new("noll");
    with_vsock(&vm);
    let profile = profile_with(&vm.dir, "inet", &[("inet = false", "inet = true")]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sleep = sleeper();
    vm.extra_pids.push(sleep.id());
    let out = vm.run(
        &["--profile", profile.to_str().unwrap(), "--landlock", "off"],
        &probe_args(&vm, sleep.id(), port, &[]),
    );
    let _ = sleep.kill();
    let _ = sleep.wait();
    let a = probe_results(&out);
    // The new network namespace has only a down loopback.
    denied_with(&a, "tcp-connect", libc::ENETUNREACH);
    // mknod now meets the capability check.
    denied_with(&a, "mknod", libc::EPERM);
    denied_with(&a, "write-readonly-resource", libc::EROFS);
    vm.assert_cleaned("caisson");
}

/// Without a pid namespace (dev profile), the host's processes are visible but the
/// uid change and the capability drop still stop ptrace and kill.
#[test]
fn without_pid_namespace_uid_and_caps_stop_ptrace_and_kill() {
    let mut vm = Vm::new("dev");
    let mut sleep = sleeper();
    vm.extra_pids.push(sleep.id());
    let out = vm.run(
        &["--profile", "dev", "--landlock", "off"],
        &probe_args(&vm, sleep.id(), 9, &[]),
    );
    let a = probe_results(&out);
    assert_ne!(a["identity"]["pid"], 1);
    denied_with(&a, "ptrace-outside", libc::EPERM);
    denied_with(&a, "kill-outside", libc::EPERM);
    assert!(sleep.try_wait().unwrap().is_none());
    let _ = sleep.kill();
    vm.assert_cleaned("caisson-dev");
}

/// Landlock's scope denies signals and ptrace to processes outside the jail even
/// with the same uid and no pid namespace; the control without Landlock shows the
/// same target is otherwise reachable.
#[test]
fn landlock_scope_denies_signals_outside() {
    use std::os::unix::process::CommandExt;
    let same_uid = 4_242_424u32;
    let spawn_target = || {
        std::process::Command::new("sleep")
            .arg("120")
            .uid(same_uid)
            .gid(same_uid)
            .spawn()
            .unwrap()
    };
    let ids = same_uid.to_string();
    let flags = [
        "--profile",
        "dev",
        "--uid",
        ids.as_str(),
        "--gid",
        ids.as_str(),
    ];

    let mut vm = Vm::new("scope");
    let mut target = spawn_target();
    vm.extra_pids.push(target.id());
    let out = vm.run(&flags, &probe_args(&vm, target.id(), 9, &[]));
    let a = probe_results(&out);
    assert_eq!(a["identity"]["uid"], same_uid);
    denied_with(&a, "kill-outside", libc::EPERM);
    denied_with(&a, "ptrace-outside", libc::EPERM);
    assert!(target.try_wait().unwrap().is_none());
    drop(vm);

    let mut vm = Vm::new("noscope");
    let mut target2 = spawn_target();
    vm.extra_pids.push(target2.id());
    let mut f = flags.to_vec();
    f.extend(["--landlock", "off"]);
    let out = vm.run(&f, &probe_args(&vm, target2.id(), 9, &[]));
    let a = probe_results(&out);
    allowed(&a, "kill-outside");
    let status = target2.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let _ = target.kill();
    let _ = target.wait();
}

/// RLIMIT_NPROC below the cgroup's pids limit: fork fails at the rlimit.
#[test]
fn nproc_rlimit_stops_forks() {
    let vm = Vm::new("nproc");
    let out = vm.run(&["--resource-limit", "nproc=8"], &["--pids".to_string()]);
    let a = probe_results(&out);
    denied_with(&a, "pids-limit", libc::EAGAIN);
    let n: u32 = a["pids-limit"]["detail"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n < 8, "{}", a["pids-limit"]);
}

#[test]
fn probe_refuses_to_run_unconfined() {
    let out = std::process::Command::new(probe()).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
    assert!(out.stdout.is_empty());
}

/// Joined to the test's own network namespace, the listener and an abstract unix
/// socket are reachable; with the baseline letting AF_INET through (inet = true),
/// Landlock's TCP rules and abstract-socket scope are what deny them (the control
/// with Landlock off connects to both). inet = true opens only AF_INET/AF_INET6:
/// netlink stays denied.
#[test]
fn landlock_denies_tcp_and_abstract_sockets_in_a_shared_netns() {
    use std::os::linux::net::SocketAddrExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let name = format!("caisson-jailer-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _unix = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let netns = format!("/proc/{}/ns/net", std::process::id());
    let args: Vec<String> = ["--tcp-port", &port, "--abstract", &name]
        .map(String::from)
        .to_vec();

    let vm = Vm::new("sharednet");
    let profile = profile_with(&vm.dir, "inet", &[("inet = false", "inet = true")]);
    let p = profile.to_str().unwrap();
    let out = vm.run(&["--netns", &netns, "--profile", p], &args);
    let a = probe_results(&out);
    denied_with(&a, "tcp-connect", libc::EACCES);
    denied_with(&a, "abstract-unix-connect", libc::EPERM);
    denied_with(&a, "netlink-socket", libc::EPERM);
    drop(vm);

    let vm = Vm::new("sharednet-off");
    let profile = profile_with(&vm.dir, "inet", &[("inet = false", "inet = true")]);
    let p = profile.to_str().unwrap();
    let out = vm.run(
        &["--netns", &netns, "--profile", p, "--landlock", "off"],
        &args,
    );
    let a = probe_results(&out);
    allowed(&a, "tcp-connect");
    allowed(&a, "abstract-unix-connect");
}
