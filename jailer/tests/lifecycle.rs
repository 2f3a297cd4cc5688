//! The jailer's life cycle: concurrent VMs, audit, supervision, signals, exit codes,
//! cleanup after a killed jailer, and refusals that leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn hold(ms: u32) -> Vec<String> {
    vec!["--hold-ms".into(), ms.to_string()]
}

fn audit(id: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(JAILER)
        .args(["audit", "--id", id])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v)
}

fn pid_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_gone(pid: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_jails_at_once_are_distinct_and_audit_clean() {
    let a = Vm::new("conc-a");
    let b = Vm::new("conc-b");
    let ca = a.spawn(&[], &hold(4000));
    let sa = a.wait_running(Duration::from_secs(10));
    // B starts while A runs and tries A's disk by its host path and by A's jail path.
    let a_image = a.jail_dir().join("root/res/drive0-root.ext4");
    let mut args = hold(1500);
    args.extend(["--other-disk".into(), a_image.display().to_string()]);
    args.extend([
        "--host-file".into(),
        a.dir.join("img/root.ext4").display().to_string(),
    ]);
    let cb = b.spawn(&[], &args);
    let sb = b.wait_running(Duration::from_secs(10));

    assert_ne!(sa["categories"], sb["categories"]);
    assert_ne!(sa["uid"], sb["uid"]);
    assert_ne!(sa["gid"], sb["gid"]);
    assert_ne!(sa["cgroup_leaves"], sb["cgroup_leaves"]);
    // Each VM has a network namespace of its own (made ahead of the clone, on a
    // jailer thread), neither the host's nor the other VM's.
    let netns = |pid: &serde_json::Value| {
        std::fs::read_link(format!("/proc/{}/ns/net", pid.as_i64().unwrap())).unwrap()
    };
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let (na, nb) = (netns(&sa["vm_pid"]), netns(&sb["vm_pid"]));
    assert_ne!(na, nb);
    assert_ne!(na, host_net);
    assert_ne!(nb, host_net);
    let (ca_, cb_) = (&sa["categories"], &sb["categories"]);
    let derive = |c: &serde_json::Value| {
        100_000 + c["a"].as_u64().unwrap() * 1024 + c["b"].as_u64().unwrap()
    };
    assert_eq!(sa["uid"].as_u64().unwrap(), derive(ca_));
    assert_eq!(sb["uid"].as_u64().unwrap(), derive(cb_));
    assert!(ca_["a"].as_u64() < ca_["b"].as_u64());
    // Each jail's writable image belongs to its own VM only.
    assert_eq!(
        std::fs::metadata(a.dir.join("img/root.ext4"))
            .unwrap()
            .uid() as u64,
        sa["uid"].as_u64().unwrap()
    );

    // The probe installs no seccomp filter: with the strict profile's expectation
    // (2) the audit reports exactly the seccomp deviations and fails.
    let (code, report) = audit(&a.id, &[]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["ok"], false);
    let bad: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert!(
        !bad.is_empty() && bad.iter().all(|c| c["layer"] == "seccomp"),
        "{bad:?}"
    );
    // The jailer's baseline is there (1 filter, filter mode); the VMM's thread
    // filter, expected on top of it, is what is missing.
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["item"], "Seccomp_filters");
    assert_eq!(bad[0]["actual"], "1");
    assert!(
        bad[0]["expected"].as_str().unwrap().starts_with(">=2"),
        "{bad:?}"
    );
    // Expecting no seccomp (what the probe has), everything else matches.
    let (code, report) = audit(&a.id, &["--expect-seccomp", "0"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["pid"], sa["vm_pid"]);
    let items: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap())
        .collect();
    for want in [
        "attr/current",
        "Seccomp",
        "NoNewPrivs",
        "CapBnd",
        "CapAmb",
        "Uid",
        "mnt",
        "pid",
        "net",
        "cgroup",
        "Max open files",
        "root",
    ] {
        assert!(items.contains(&want), "audit lacks {want}: {items:?}");
    }
    let sel = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "attr/current")
        .unwrap();
    assert_eq!(sel["actual"], "unconfined/none");

    let out_b = cb.wait_with_output().unwrap();
    let att = probe_results(&out_b);
    denied_with(&att, "read-other-vm-disk", libc::ENOENT);
    denied_with(&att, "read-host-file", libc::ENOENT);
    let out_a = ca.wait_with_output().unwrap();
    assert_eq!(out_a.status.code(), Some(0));
    // Audit after the VM ended: it is gone.
    let (code, _) = audit(&a.id, &[]);
    assert_eq!(code, Some(1));
    a.assert_cleaned("caisson");
    b.assert_cleaned("caisson");
}

#[test]
fn cleanup_after_the_jailer_was_killed() {
    let vm = Vm::new("killed");
    // A runtime directory of its own: any other test's start would sweep the
    // record this test wants `cleanup --id` to find.
    let rt = vm.dir.join("run");
    let rt_s = rt.display().to_string();
    let state_path = rt.join("vms").join(format!("{}.json", vm.id));
    let mut child = vm.spawn(&["--runtime-dir", &rt_s], &hold(60_000));
    wait_holding(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let vm_pid = loop {
        let st: serde_json::Value = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if let Some(p) = st["vm_pid"].as_i64().filter(|p| *p > 0) {
            break p;
        }
        assert!(Instant::now() < deadline, "VM did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(vm.jail_dir().exists());
    assert!(vm.cgroup_leaves("caisson").iter().all(|l| l.exists()));
    child.kill().unwrap();
    child.wait().unwrap();
    // The VMM dies with its supervisor (parent-death signal)...
    wait_gone(vm_pid);
    // ...but the jailer could not clean up.
    assert!(state_path.exists());
    assert!(vm.jail_dir().exists());
    let cleanup = || {
        Command::new(JAILER)
            .args(["cleanup", "--id", &vm.id, "--runtime-dir", &rt_s])
            .output()
            .unwrap()
    };
    let out = cleanup();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!state_path.exists(), "state file left");
    assert!(!rt.join("mcs").join(&vm.id).exists(), "MCS record left");
    assert!(!vm.jail_dir().exists(), "jail dir left");
    for leaf in vm.cgroup_leaves("caisson") {
        assert!(!leaf.exists(), "cgroup {} left", leaf.display());
    }
    assert_eq!(
        std::fs::metadata(vm.dir.join("img/root.ext4"))
            .unwrap()
            .uid(),
        0
    );
    // A second cleanup has nothing to clean.
    assert_eq!(cleanup().status.code(), Some(1));
}

#[test]
fn cleanup_of_a_live_vm_stops_it_through_its_jailer() {
    let vm = Vm::new("live");
    let mut child = vm.spawn(&["--profile", "dev"], &hold(60_000));
    wait_holding(&mut child);
    let out = Command::new(JAILER)
        .args(["cleanup", "--id", &vm.id])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    vm.assert_cleaned("caisson-dev");
}

#[test]
fn sigterm_is_forwarded_and_the_exit_code_is_128_plus_signal() {
    let vm = Vm::new("term");
    let mut child = vm.spawn(&["--profile", "dev"], &hold(60_000));
    wait_holding(&mut child);
    // SAFETY: signalling the jailer this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    vm.assert_cleaned("caisson-dev");
}

#[test]
fn pid_one_ignoring_sigterm_is_killed_after_the_grace_period() {
    let vm = Vm::new("grace");
    let mut child = vm.spawn(&[], &hold(60_000));
    wait_holding(&mut child);
    let t = Instant::now();
    // SAFETY: signalling the jailer this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL));
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    vm.assert_cleaned("caisson");
}

#[test]
fn exit_code_and_arguments_reach_the_vmm() {
    let vm = Vm::new("exit");
    let out = vm.run(&["--seccomp", "off"], &["--exit-code".into(), "65".into()]);
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-seccomp"));
    let a = attempts(&out.stdout);
    let argv: Vec<String> = a["identity"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], "/caisson-probe");
    let pos = |f: &str| {
        argv.iter()
            .position(|x| x == f)
            .unwrap_or_else(|| panic!("{f} not in {argv:?}"))
    };
    assert_eq!(argv[pos("--config-file") + 1], "/config.json");
    assert_eq!(argv[pos("--id") + 1], vm.id);
    pos("--no-api");
    pos("--no-seccomp");
    pos("--start-time-us");
    pos("--start-time-cpu-us");
    pos("--parent-cpu-time-us");
    assert_eq!(argv[argv.len() - 2..], ["--exit-code", "65"]);
    vm.assert_cleaned("caisson");
}

#[test]
fn daemonize_detaches_and_still_cleans_up() {
    let vm = Vm::new("daemon");
    let t = Instant::now();
    let out = vm.run(&["--daemonize"], &hold(1000));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "did not detach: {:?}",
        t.elapsed()
    );
    let st = vm.wait_running(Duration::from_secs(10));
    let jailer = st["jailer_pid"].as_i64().unwrap();
    // The daemon is a session leader.
    let stat = std::fs::read_to_string(format!("/proc/{jailer}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        jailer.to_string(),
        "session id = its pid: {stat}"
    );
    wait_gone(jailer);
    vm.assert_cleaned("caisson");
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let vm = Vm::new("refuse");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--id".into(), "a/b".into()], "a/b"),
        (vec!["--id".into(), "x".repeat(65)], "64"),
        (
            vec!["--profile".into(), "/nonexistent.toml".into()],
            "/nonexistent.toml",
        ),
        (vec!["--resource-limit".into(), "stack=1".into()], "stack"),
        (vec!["--cgroup".into(), "nonsense".into()], "nonsense"),
        (
            vec!["--parent-cgroup".into(), "../escape".into()],
            "../escape",
        ),
        (vec!["--cgroup-version".into(), "3".into()], "\"3\""),
        (vec!["--mcs-range".into(), "c9.c2".into()], "c9.c2"),
        (
            vec!["--selinux".into(), "require".into()],
            "SELinux is not enabled",
        ),
    ];
    for (flags, want) in cases {
        let mut c = Command::new(JAILER);
        if flags[0] != "--id" {
            c.args(["--id", &vm.id]);
        }
        c.arg("--exec-file")
            .arg(probe())
            .arg("--config-file")
            .arg(&vm.config)
            .arg("--chroot-base-dir")
            .arg(&vm.base)
            .arg("--resource-root")
            .arg(&vm.dir);
        c.args(&flags);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: {err} lacks {want}");
        assert!(out.stdout.is_empty());
        vm.assert_cleaned("caisson");
    }
    let bad_profile = profile_with(&vm.dir, "bad", &[("pids_max = 64", "pids_max = 0")]);
    let out = vm.run(&["--profile", bad_profile.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cgroup.pids_max = 0"));
    let out = Command::new(JAILER)
        .args(["--id", &vm.id, "--exec-file"])
        .arg(probe())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config-file"));
}

#[test]
fn a_relative_chroot_base_is_cleaned_up_too() {
    let vm = Vm::new("relbase");
    let out = Command::new(JAILER)
        .current_dir(&vm.dir)
        .args(["--id", &vm.id, "--exec-file"])
        .arg(probe())
        .arg("--config-file")
        .arg(&vm.config)
        .args(["--chroot-base-dir", "jails", "--resource-root"])
        .arg(&vm.dir)
        .output()
        .unwrap();
    common::assert_exit_0(&out);
    // The jail was made under <cwd>/jails and removed with the rest.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cleanup"));
    vm.assert_cleaned("caisson");
}

#[test]
fn an_existing_jail_is_neither_reused_nor_removed() {
    let vm = Vm::new("exists");
    std::fs::create_dir_all(vm.jail_dir().join("root")).unwrap();
    std::fs::write(vm.jail_dir().join("root/keep"), "x").unwrap();
    let out = vm.run(&[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert!(vm.jail_dir().join("root/keep").exists());
    assert!(!vm.state_path().exists() && !vm.mcs_path().exists());
}

#[test]
fn non_root_is_refused() {
    use std::os::unix::process::CommandExt;
    let out = Command::new(JAILER)
        .args([
            "--id",
            "x",
            "--exec-file",
            "/bin/true",
            "--config-file",
            "/dev/null",
        ])
        .uid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must run as root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cgroup_flags_reach_the_hierarchy() {
    let vm = Vm::new("cgflags");
    let mut child = vm.spawn(
        &[
            "--parent-cgroup",
            "caisson-test",
            "--cgroup",
            "cpuset.cpus=0",
            "--cgroup",
            "memory.swappiness=0",
            "--resource-limit",
            "no-file=300",
            "--resource-limit",
            "fsize=1048576",
        ],
        &hold(3000),
    );
    wait_holding(&mut child);
    let st = vm.wait_running(Duration::from_secs(5));
    let pid = st["vm_pid"].as_i64().unwrap().to_string();
    let cpuset = std::path::Path::new("/sys/fs/cgroup/cpuset/caisson-test").join(&vm.id);
    assert_eq!(
        std::fs::read_to_string(cpuset.join("cpuset.cpus"))
            .unwrap()
            .trim(),
        "0"
    );
    assert!(std::fs::read_to_string(cpuset.join("cgroup.procs"))
        .unwrap()
        .lines()
        .any(|l| l == pid));
    let mem = std::path::Path::new("/sys/fs/cgroup/memory/caisson-test").join(&vm.id);
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.swappiness"))
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        ((16u64 + 128) << 20).to_string()
    );
    let cpu = std::path::Path::new("/sys/fs/cgroup/cpu/caisson-test").join(&vm.id);
    assert_eq!(
        std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "100000"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("300")),
        "{limits}"
    );
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max file size")
                && l.split_whitespace().nth(3) == Some("1048576")),
        "{limits}"
    );
    assert!(
        limits.lines().any(
            |l| l.starts_with("Max core file size") && l.split_whitespace().nth(4) == Some("0")
        ),
        "{limits}"
    );
    let (code, report) = audit(&vm.id, &["--expect-seccomp", "0"]);
    assert_eq!(code, Some(0), "{report:#}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    vm.assert_cleaned("caisson-test");
    assert!(!cpuset.exists());
}

/// An untrusted config cannot hand the VM a host file: everything must resolve
/// under the resource roots, and a writable file must not be a hard link.
#[test]
fn config_cannot_name_host_files() {
    let vm = Vm::new("hostfile");
    let before = std::fs::metadata("/etc/hostname").unwrap();
    let cfg = |drive: &str| {
        let d = vm.dir.display();
        std::fs::write(
            &vm.config,
            format!(
                r#"{{"boot-source": {{"kernel_image_path": "{d}/img/vmlinux"}},
                    "drives": [{{"drive_id": "x", "path_on_host": "{drive}", "is_root_device": true}}]}}"#
            ),
        )
        .unwrap();
    };
    // A host path, and a symlink inside the root pointing out of it.
    std::os::unix::fs::symlink("/etc/hostname", vm.dir.join("img/link")).unwrap();
    for drive in [
        "/etc/hostname".to_string(),
        vm.dir.join("img/link").display().to_string(),
    ] {
        cfg(&drive);
        let out = vm.run(&[], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("outside the allowed resource roots"), "{err}");
    }
    // A hard link inside the root to another file.
    std::fs::hard_link(vm.dir.join("img/root.ext4"), vm.dir.join("img/hard.ext4")).unwrap();
    cfg(&vm.dir.join("img/hard.ext4").display().to_string());
    let out = vm.run(&[], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exactly one link"), "{err}");
    // Without --resource-root the strict profile's roots apply, which do not hold the test dir.
    let out = Command::new(JAILER)
        .args(["--id", &vm.id, "--exec-file"])
        .arg(probe())
        .arg("--config-file")
        .arg(&vm.config)
        .arg("--chroot-base-dir")
        .arg(&vm.base)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the allowed resource roots"));
    let after = std::fs::metadata("/etc/hostname").unwrap();
    assert_eq!(
        (before.uid(), before.gid(), before.mode()),
        (after.uid(), after.gid(), after.mode())
    );
    vm.assert_cleaned("caisson");
}

#[test]
fn the_timing_log_is_opt_in_and_names_each_step() {
    let vm = Vm::new("timing");
    let out = vm
        .command(&[], &hold(0))
        .env("CAISSON_JAILER_TIMING", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    for step in [
        "1 sanitized",
        "4 cgroup directories made and written",
        "exec file copied, cloning",
        "child: 6 mounted and pivoted",
        "child: 10 seccomp baseline, exec",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("caisson-jailer: timing:") && l.ends_with(step)),
            "no timing line for {step:?}: {err}"
        );
    }
    let vm = Vm::new("notiming");
    let out = vm.run(&[], &hold(0));
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("timing:"));
}
