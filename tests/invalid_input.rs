//! Every rejected input exits 2 with one line that names the field and the value,
//! before any KVM call; none makes `caisson` panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;

/// Runs caisson and checks the one-line error.
fn rejected(args: &[&str], wants: &[&str]) {
    // Firecracker-style launches without the API: these inputs must fail alone.
    let args: Vec<&str> = std::iter::once("--no-api")
        .chain(args.iter().copied())
        .collect();
    let args = args.as_slice();
    let out = caisson(args);
    assert_eq!(out.code, Some(2), "args {args:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one line expected for {args:?}: {:?}",
        out.stderr
    );
    for w in wants {
        assert!(lines[0].contains(w), "{:?} should mention {w:?}", lines[0]);
    }
    assert!(out.stdout.is_empty(), "no guest output expected: {out:?}");
}

fn config(dir: &Path, json: serde_json::Value) -> String {
    let p = dir.join("vm.json");
    std::fs::write(&p, json.to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

fn with_kernel(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"boot-source": {"kernel_image_path": guest("hello")}});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

fn hello() -> String {
    guest("hello").to_str().unwrap().to_string()
}

#[test]
fn vcpu_count_out_of_range() {
    rejected(
        &["--kernel", &hello(), "--vcpus", "0"],
        &["machine-config.vcpu_count", "0"],
    );
    rejected(
        &["--kernel", &hello(), "--vcpus", "255"],
        &["machine-config.vcpu_count", "255"],
    );
    let d = tempdir();
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"machine-config": {"vcpu_count": 100000}})),
    );
    rejected(
        &["--config-file", &c],
        &["machine-config.vcpu_count", "100000"],
    );
}

#[test]
fn memory_out_of_range() {
    rejected(
        &["--kernel", &hello(), "--mem-mib", "15"],
        &["machine-config.mem_size_mib", "15"],
    );
    rejected(
        &["--kernel", &hello(), "--mem-mib", "262145"],
        &["machine-config.mem_size_mib", "262145"],
    );
}

#[test]
fn kernel_missing_or_not_a_file() {
    rejected(
        &["--kernel", "/nonexistent/vmlinux"],
        &["boot-source.kernel_image_path", "/nonexistent/vmlinux"],
    );
    rejected(
        &["--kernel", "/tmp"],
        &[
            "boot-source.kernel_image_path",
            "/tmp",
            "not a regular file",
        ],
    );
    let d = tempdir();
    let c = config(
        d.path(),
        serde_json::json!({"machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}),
    );
    rejected(
        &["--config-file", &c],
        &["boot-source.kernel_image_path", "missing"],
    );
    rejected(&[], &["--config-file", "--kernel"]);
}

#[test]
fn kernel_not_elf64_x86_64_nor_bzimage() {
    let d = tempdir();
    let text = d.path().join("notes.txt");
    std::fs::write(&text, "just some text, not a kernel\n").unwrap();
    rejected(
        &["--kernel", text.to_str().unwrap()],
        &["boot-source.kernel_image_path", "notes.txt", "bzImage"],
    );
    let empty = d.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    rejected(
        &["--kernel", empty.to_str().unwrap()],
        &["boot-source.kernel_image_path", "empty"],
    );
    let mut elf32 = vec![0u8; 64];
    elf32[..4].copy_from_slice(b"\x7fELF");
    elf32[4] = 1;
    elf32[5] = 1;
    elf32[18] = 3;
    let p = d.path().join("elf32");
    std::fs::write(&p, &elf32).unwrap();
    rejected(
        &["--kernel", p.to_str().unwrap()],
        &["boot-source.kernel_image_path", "ELF class 1"],
    );
    let mut arm = elf32.clone();
    arm[4] = 2;
    arm[18] = 183;
    let p = d.path().join("aarch64");
    std::fs::write(&p, &arm).unwrap();
    rejected(
        &["--kernel", p.to_str().unwrap()],
        &["boot-source.kernel_image_path", "machine 183"],
    );
}

#[test]
fn initrd_missing() {
    rejected(
        &["--kernel", &hello(), "--initrd", "/nonexistent/initrd"],
        &["boot-source.initrd_path", "/nonexistent/initrd"],
    );
}

#[test]
fn config_file_problems() {
    rejected(
        &["--config-file", "/nonexistent/vm.json"],
        &["config file", "/nonexistent/vm.json"],
    );
    let d = tempdir();
    let p = d.path().join("bad.json");
    std::fs::write(&p, "{ \"boot-source\": ").unwrap();
    rejected(
        &["--config-file", p.to_str().unwrap()],
        &["bad.json", "EOF"],
    );
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"machine-config": {"vcpus": 2}})),
    );
    rejected(&["--config-file", &c], &["unknown field `vcpus`"]);
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"machine_config": {}})),
    );
    rejected(&["--config-file", &c], &["unknown field `machine_config`"]);
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"machine-config": {"vcpu_count": "two"}})),
    );
    rejected(&["--config-file", &c], &["invalid type", "two"]);
}

#[test]
fn unsupported_settings_are_named() {
    let d = tempdir();
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"machine-config": {"smt": true}})),
    );
    rejected(&["--config-file", &c], &["machine-config.smt", "true"]);
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"machine-config": {"huge_pages": "2M"}})),
    );
    rejected(&["--config-file", &c], &["machine-config.huge_pages", "2M"]);
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"balloon": {"amount_mib": 1}})),
    );
    rejected(&["--config-file", &c], &["balloon", "not supported"]);
}

#[test]
fn command_line_problems() {
    rejected(
        &["--kernel", &hello(), "--cmdline", &"x".repeat(3000)],
        &["boot-source.boot_args", "3000 bytes"],
    );
    rejected(
        &["--kernel", &hello(), "--cmdline", "a\nb"],
        &["boot-source.boot_args", "'\\n'"],
    );
}

#[test]
fn flag_problems() {
    rejected(
        &["--kernel", &hello(), "--id", "bad/id"],
        &["--id", "bad/id"],
    );
    rejected(
        &["--kernel", &hello(), "--level", "loud"],
        &["--level", "loud"],
    );
    rejected(
        &[
            "--kernel",
            &hello(),
            "--serial",
            "/nonexistent/dir/serial.log",
        ],
        &["caisson.serial", "/nonexistent/dir/serial.log"],
    );
    let out = caisson(&["--kernel", &hello(), "--no-such-flag"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--no-such-flag"), "{out:?}");
    let out = caisson(&["--kernel", &hello(), "--vcpus", "many"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("many"), "{out:?}");
}

#[test]
fn caisson_settings_are_named() {
    let d = tempdir();
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"caisson": {"virtio_cmdline": "no"}})),
    );
    rejected(
        &["--config-file", &c],
        &["caisson.virtio_cmdline", "\"no\"", "true or false"],
    );
    let c = config(
        d.path(),
        with_kernel(serde_json::json!({"caisson": {"virtio_cmdlines": false}})),
    );
    rejected(&["--config-file", &c], &["unknown field `virtio_cmdlines`"]);
}
