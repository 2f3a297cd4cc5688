//! Restoring from a config file (`"snapshot-load"`, the jailer's way): the
//! file's devices are this process's and must be the snapshot's; a file that
//! describes another VM is refused, naming the difference, before any guest
//! code runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::snapshot::*;
use common::{tempdir, wait_output, CAISSON};

/// A config file restoring `snap` with `devices` merged in.
fn restore_file(dir: &Path, name: &str, snap: &Snapshot, devices: serde_json::Value) -> String {
    let mut cfg = serde_json::json!({"snapshot-load": {"snapshot_path": snap.state,
        "mem_backend": {"backend_type": "File", "backend_path": snap.mem}, "resume_vm": true}});
    for (k, v) in devices.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let p = dir.join(name);
    std::fs::write(&p, cfg.to_string()).unwrap();
    p.to_string_lossy().into_owned()
}

fn run(cfg: &str, limit: Duration) -> common::Output {
    let child = std::process::Command::new(CAISSON)
        .args(["--no-api", "--id", "cfg-restore", "--config-file", cfg])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, limit)
}

#[test]
fn a_config_file_restores_and_a_mismatched_one_is_refused_by_name() {
    let work = tempdir();
    let dir = work.path();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let snap = Snapshot::at(dir, "cfg");
    let mut v = boot_api(
        "snap-cfg",
        "snapcount",
        "snapcount.max=400",
        false,
        Some(&disk),
    );
    wait_count(&mut v, 100);
    pause(&v);
    create_ok(&v, "Full", &snap);
    let old = kill(v);
    let drive = |path: &Path, ro: bool| {
        serde_json::json!([{"drive_id": "disk", "path_on_host": path,
            "is_root_device": false, "is_read_only": ro}])
    };

    // The same devices at another path (a copy of the disk): the guest goes on
    // from its line and ends its count.
    let copy = dir.join("copy.img");
    std::fs::copy(&disk, &copy).unwrap();
    let ok = restore_file(
        dir,
        "ok.json",
        &snap,
        serde_json::json!({"drives": drive(&copy, false),
            "machine-config": {"vcpu_count": 1, "mem_size_mib": RAM_MIB}}),
    );
    let out = run(&ok, LINE_LIMIT);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_continues(&old, &out.stdout);
    assert!(out.stdout.contains("snapcount: done"), "{}", out.stdout);

    // Each of these describes another VM; the message names what differs.
    let cases = [
        (
            "vcpus.json",
            serde_json::json!({"drives": drive(&copy, false),
                "machine-config": {"vcpu_count": 2, "mem_size_mib": RAM_MIB}}),
            "vcpu_count is 2",
        ),
        (
            "mem.json",
            serde_json::json!({"drives": drive(&copy, false),
                "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}),
            "mem_size_mib is 128",
        ),
        ("nodrive.json", serde_json::json!({}), "drives"),
        (
            "ro.json",
            serde_json::json!({"drives": drive(&copy, true)}),
            "is_read_only",
        ),
        (
            "vsock.json",
            serde_json::json!({"drives": drive(&copy, false),
                "vsock": {"guest_cid": 3, "uds_path": dir.join("v.sock")}}),
            "vsock",
        ),
    ];
    for (name, devices, words) in cases {
        let cfg = restore_file(dir, name, &snap, devices);
        let out = run(&cfg, Duration::from_secs(20));
        assert_ne!(out.code, Some(0), "{name} was accepted");
        assert!(
            out.stderr.contains(words) && out.stderr.contains("Failed to restore"),
            "{name}: the error should name {words:?}: {}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("snapcount:"),
            "{name}: guest code ran: {}",
            out.stdout
        );
    }

    // A disk whose size changed since the snapshot is not the guest's disk.
    let grown = dir.join("grown.img");
    std::fs::write(&grown, vec![0u8; 2 << 20]).unwrap();
    let cfg = restore_file(
        dir,
        "grown.json",
        &snap,
        serde_json::json!({"drives": drive(&grown, false)}),
    );
    let out = run(&cfg, Duration::from_secs(20));
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("sectors") && out.stderr.contains("disk"),
        "{}",
        out.stderr
    );
}
