//! Network resources: a joined --netns with a tap the VM can attach to, the vsock
//! socket directory, and refusals for a missing tap or an unreadable image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A network namespace made with `ip netns`, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> Self {
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Self(name.to_string())
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn edit_config(vm: &Vm, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vm.config).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&vm.config, v.to_string()).unwrap();
}

#[test]
fn joined_netns_tap_and_vsock_work() {
    let vm = Vm::new("net");
    let ns = NetNs::new(&format!("cj{}", std::process::id()));
    let st = Command::new("ip")
        .args(["-n", &ns.0, "tuntap", "add", "dev", "ctap0", "mode", "tap"])
        .status()
        .unwrap();
    assert!(st.success());
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
