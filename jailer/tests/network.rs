//! Network resources: a joined --netns with a tap the VM can attach to (and that
//! is given back when it ends), the vsock socket directory, and refusals for a
//! missing tap or an unreadable image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn joined_netns_tap_and_vsock_work() {
    let vm = Vm::new("net");
    let ns = NetNs::new(&format!("cj{}", std::process::id()));
    ns.add_tap("ctap0", &[]);
    edit_config(&vm, |v| {
        v["network-interfaces"] =
            serde_json::json!([{"iface_id": "eth0", "host_dev_name": "ctap0"}]);
        v["vsock"] = serde_json::json!({"guest_cid": 3, "uds_path": "/tmp/somewhere/v.sock"});
    });
    let netns = ns.path();
    let mut child = vm.spawn(
        &["--netns", &netns],
        &[
            "--tap",
            "ctap0",
            "--unix-bind",
            "/vsock/v.sock",
            "--hold-ms",
            "3000",
        ]
        .map(String::from),
    );
    let lines = wait_holding(&mut child);
    let a = attempts(lines.join("").as_bytes());
    allowed(&a, "attach-tap");
    allowed(&a, "unix-bind-allowed");
    // The host reaches the VM's socket inside the jail.
    let st = vm.wait_running(Duration::from_secs(5));
    let sock = st["vsock_host_path"].as_str().unwrap().to_string();
    assert!(sock.ends_with("/root/vsock/v.sock"), "{sock}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&sock).unwrap().file_type().is_socket());
    // The audit sees the joined namespace.
    let out = Command::new(JAILER)
        .args(["audit", "--id", &vm.id, "--expect-seccomp", "0"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let net = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "net (joined --netns)")
        .unwrap();
    assert_eq!(net["ok"], true);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    vm.assert_cleaned("caisson");
}

#[test]
fn tap_owners_are_given_back_when_the_vm_ends() {
    let vm = Vm::new("tapown");
    let ns = NetNs::new(&format!("cjo{}", std::process::id()));
    ns.add_tap("otap0", &["user", "4321", "group", "4321"]);
    ns.add_tap("otap1", &[]);
    ns.add_tap("otap2", &["user", "4322"]);
    assert_eq!(ns.tap_ids("otap1"), (-1, -1));
    use_taps(&vm, &["otap0", "otap1", "otap2"]);
    let netns = ns.path();
    let mut child = vm.spawn(
        &["--netns", &netns],
        &["--tap", "otap0", "--hold-ms", "3000"].map(String::from),
    );
    let lines = wait_holding(&mut child);
    allowed(&attempts(lines.join("").as_bytes()), "attach-tap");
    let st = vm.wait_running(Duration::from_secs(5));
    let vm_ids = (st["uid"].as_i64().unwrap(), st["gid"].as_i64().unwrap());
    for tap in ["otap0", "otap1", "otap2"] {
        assert_eq!(ns.tap_ids(tap), vm_ids, "{tap} during the VM");
    }
    // The record holds what was there before the hand-over.
    let taps = st["taps"].as_array().unwrap();
    assert_eq!(taps.len(), 3, "{taps:?}");
    assert_eq!(taps[0]["owner"], 4321);
    assert!(taps[1]["owner"].is_null() && taps[1]["group"].is_null());
    assert_eq!(taps[0]["netns"], netns);
    assert_exit_0(&child.wait_with_output().unwrap());
    assert_eq!(ns.tap_ids("otap0"), (4321, 4321));
    // No owner cannot be set again: root's, not the VM's.
    assert_eq!(ns.tap_ids("otap1"), (0, 0));
    // An owner without a group gets its primary group (gid = uid without a passwd entry).
    assert_eq!(ns.tap_ids("otap2"), (4322, 4322));
    vm.assert_cleaned("caisson");
}

#[test]
fn missing_tap_fails_before_exec_and_cleans_up() {
    let vm = Vm::new("notap");
    edit_config(&vm, |v| {
        v["network-interfaces"] =
            serde_json::json!([{"iface_id": "eth0", "host_dev_name": "nosuchtap9"}]);
    });
    let out = vm.run(&[], &[]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuchtap9") && err.contains("does not exist"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "the probe must not have run");
    vm.assert_cleaned("caisson");
}

#[test]
fn image_unreadable_by_the_vm_is_refused() {
    let vm = Vm::new("unread");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        vm.dir.join("img/vmlinux"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = vm.run(&[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vmlinux") && err.contains("not readable by the VM's uid"),
        "{err}"
    );
    vm.assert_cleaned("caisson");
}

#[test]
fn output_files_are_writable_and_given_back() {
    let vm = Vm::new("out");
    let log = vm.dir.join("vmm.log");
    edit_config(&vm, |v| {
        v["logger"] = serde_json::json!({"log_path": log.display().to_string()});
    });
    let out = vm.run(&[], &["--rw-file", "/out/log-vmm.log"].map(String::from));
    let a = probe_results(&out);
    allowed(&a, "write-allowed");
    use std::os::unix::fs::MetadataExt;
    // Created by the jailer, handed to the VM, handed back.
    assert_eq!(std::fs::metadata(&log).unwrap().uid(), 0);
    vm.assert_cleaned("caisson");
}
