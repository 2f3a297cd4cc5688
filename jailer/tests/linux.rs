//! The Linux test guest jailed (issue 8, part 3, item 8): caisson-jailer with the
//! strict profile runs the statically linked caisson, which boots the kernel and
//! initramfs of tests/linux/ (under the jail's resource root); the guest's init
//! starts, its virtio-rng check passes (getrandom(2) feeds it; the jail has no
//! /dev/urandom), and
//! caisson exits 0 after the guest's reboot. Wall times are printed, not asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../tests/common/linux.rs"]
mod linux;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use linux::*;

#[test]
fn jailed_linux_reaches_init_and_exits_cleanly() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "this test boots a jailed Linux guest through KVM and needs /dev/kvm"
    );
    let vmm = static_caisson();
    // The kernel and initramfs go under the VM's resource root (its directory).
    let vm = Vm::new("linux");
    let img = vm.dir.join("img");
    for (from, to) in [(kernel(), "vmlinux"), (initramfs(), "initrd.cpio")] {
        std::fs::copy(&from, img.join(to))
            .unwrap_or_else(|e| panic!("copy {} into the resource root: {e}", from.display()));
        std::fs::set_permissions(img.join(to), std::fs::Permissions::from_mode(0o644))
            .expect("chmod the boot files");
    }
    let cfg = serde_json::json!({
        "boot-source": {
            "kernel_image_path": img.join("vmlinux"),
            "initrd_path": img.join("initrd.cpio"),
            "boot_args": format!("{} caisson.checks=rng", boot_args()),
        },
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
        "entropy": {},
    });
    std::fs::write(&vm.config, cfg.to_string()).expect("write the VM config");

    let mut cmd = Command::new(JAILER);
    cmd.arg("--id")
        .arg(&vm.id)
        .arg("--exec-file")
        .arg(&vmm)
        .arg("--config-file")
        .arg(&vm.config)
        .arg("--chroot-base-dir")
        .arg(&vm.base)
        .arg("--resource-root")
        .arg(&vm.dir)
        .args(["--profile", "strict"]);
    // Dropped before `vm`, whose Drop cleans the jail up.
    let mut g = Guest::spawn("linux-jailed", cmd);
    let status = g.finish();
    g.assert_init_and_checks(&["rng"]);
    assert_rng(&g);
    if !g
        .transcript
        .iter()
        .any(|l| l.contains("CAISSON-DONE ok=1 fail=0"))
    {
        g.fail("the init did not finish its checks");
    }
    if status.code() != Some(0) {
        g.fail(&format!("jailer exit status {status}, want 0"));
    }
    drop(g);
    vm.assert_cleaned("caisson");
}
