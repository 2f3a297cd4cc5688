//! Boots each in-tree guest through the real `caisson` binary on /dev/kvm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn hello_prints_and_resets_with_exit_0() {
    let out = boot("hello", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.lines().contains(&"Hello from the Caisson hello guest"),
        "{out:?}"
    );
}

#[test]
fn hello_boots_as_a_bzimage() {
    require_kvm();
    let bz = std::path::Path::new(caisson::demo::GUEST_BUILD_DIR).join("hello.bzImage");
    let out = caisson(&["--kernel", bz.to_str().unwrap(), "--vcpus", "2"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.lines().contains(&"Hello from the Caisson hello guest"),
        "{out:?}"
    );
}

#[test]
fn pvh_note_boots_through_the_pvh_entry() {
    let dir = tempdir();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, b"initrd").unwrap();
    let out = boot(
        "pvh",
        &[
            "--cmdline",
            "console=ttyS0 pvh=yes",
            "--initrd",
            initrd.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.lines(),
        [
            "pvh: start_info ok",
            "pvh: cmdline console=ttyS0 pvh=yes",
            "pvh: memmap 3 modules 1"
        ],
        "{out:?}"
    );
    // Base RAM, the ACPI tables' area (reserved), RAM from 1 MiB; above the
    // MMIO gap a fourth entry. No initrd, no module.
    let out = boot("pvh", &["--mem-mib", "4096"]);
    assert!(out.lines().contains(&"pvh: memmap 4 modules 0"), "{out:?}");
}

#[test]
fn hello_boots_from_a_firecracker_config_file() {
    require_kvm();
    let dir = tempdir();
    let cfg = dir.path().join("vm.json");
    let text = serde_json::json!({
        "boot-source": {"kernel_image_path": guest("hello"), "boot_args": "console=ttyS0", "initrd_path": null},
        "drives": [],
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "track_dirty_pages": false, "huge_pages": "None"},
        "cpu-config": null, "balloon": null, "network-interfaces": [], "vsock": null,
        "logger": null, "metrics": null, "mmds-config": null, "entropy": null
    });
    std::fs::write(&cfg, text.to_string()).unwrap();
    let out = caisson(&[
        "--id",
        "fc-compat-1",
        "--no-api",
        "--config-file",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("Hello from the Caisson hello guest"),
        "{out:?}"
    );
}

fn check_smp(n: usize) {
    let out = boot("smp", &["--vcpus", &n.to_string()]);
    assert_eq!(out.code, Some(0), "{n} vCPUs: {out:?}");
    for cpu in 0..n {
        let line = format!("smp: cpu {cpu} online");
        assert!(
            out.lines().contains(&line.as_str()),
            "missing {line:?}: {out:?}"
        );
    }
    assert!(
        out.lines()
            .contains(&format!("smp: {n} cpus online").as_str()),
        "{out:?}"
    );
}

#[test]
fn smp_one_vcpu() {
    check_smp(1);
}

#[test]
fn smp_every_vcpu_announces_itself() {
    check_smp(2);
    check_smp(4);
}

#[test]
fn memory_pattern_below_the_gap() {
    let out = boot("memory", &["--mem-mib", "128"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.lines().contains(&"memory: ok"), "{out:?}");
    assert!(
        out.lines().contains(&"memory: e820 100000 7f00000 1"),
        "{out:?}"
    );
}

#[test]
fn memory_pattern_above_the_mmio_gap() {
    let out = boot("memory", &["--mem-mib", "4096"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.lines().contains(&"memory: ok"), "{out:?}");
    // 4 GiB split around the gap: [1 MiB, 3.25 GiB) and [4 GiB, 4.75 GiB).
    assert!(
        out.lines().contains(&"memory: e820 100000 cff00000 1"),
        "{out:?}"
    );
    assert!(
        out.lines().contains(&"memory: e820 100000000 30000000 1"),
        "{out:?}"
    );
    let tested: u64 = out
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("memory: tested "))
        .and_then(|l| l.strip_suffix(" bytes"))
        .expect("a tested line")
        .parse()
        .unwrap();
    assert!(
        tested > (4 << 30) - (64 << 20),
        "tested only {tested} bytes"
    );
}

#[test]
fn triple_fault_has_its_own_exit_code() {
    let out = boot("fault", &[]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stdout.contains("fault: triple faulting now"), "{out:?}");
    assert!(out.stderr.contains("triple fault"), "{out:?}");
}

/// Whether the host has VMX or SVM, where KVM runs guest kernel code natively.
fn host_has_hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[test]
fn fwait_int3_and_int_n_at_cpl0_behave_as_on_hardware() {
    // The guest checks the return RIP each handler gets; without VMX/SVM, KVM's
    // emulator fails on these three and Caisson completes them.
    let out = boot("assist", &["--level", "Info"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    if host_has_hardware_virtualization() {
        assert!(
            !out.stderr.contains("emulation assists"),
            "assists must stay off on a VMX/SVM host: {out:?}"
        );
        eprintln!("host has VMX/SVM: the guest ran natively, nothing was assisted");
    } else {
        assert!(
            out.stderr
                .contains("vCPU 0: 3 instructions completed by emulation assists"),
            "{out:?}"
        );
    }
}

#[test]
fn emulation_failure_names_the_reason_and_rip() {
    let out = boot("emufail", &[]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stderr.contains("emulation failure"), "{out:?}");
    assert!(out.stderr.contains("RIP 0xd0000000"), "{out:?}");
}

#[test]
fn args_hashes_match_the_host() {
    let dir = tempdir();
    let initrd = dir.path().join("initrd.img");
    let data: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&initrd, &data).unwrap();
    let cmdline = "console=ttyS0 caisson.test=args quiet panic=1";
    let out = boot(
        "args",
        &["--cmdline", cmdline, "--initrd", initrd.to_str().unwrap()],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let want_cmdline = format!(
        "args: cmdline {:016x} len {}",
        fnv1a64(cmdline.as_bytes()),
        cmdline.len()
    );
    let want_initrd = format!("args: initrd {:016x} len {}", fnv1a64(&data), data.len());
    assert!(
        out.lines().contains(&want_cmdline.as_str()),
        "want {want_cmdline}: {out:?}"
    );
    assert!(
        out.lines().contains(&want_initrd.as_str()),
        "want {want_initrd}: {out:?}"
    );
}

#[test]
fn args_without_initrd() {
    let out = boot("args", &["--cmdline", "x"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.lines().contains(&"args: initrd none"), "{out:?}");
    let want = format!("args: cmdline {:016x} len 1", fnv1a64(b"x"));
    assert!(out.lines().contains(&want.as_str()), "{out:?}");
}

#[test]
fn demo_prints_its_banner() {
    require_kvm();
    let out = caisson(&["demo"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.lines()
            .contains(&"Caisson demo guest: hello from inside a microVM"),
        "{out:?}"
    );
    assert!(out.lines().contains(&"demo: 1 vcpus"), "{out:?}");
}

#[test]
fn serial_input_reaches_the_guest() {
    let (mut child, mut reader) = waiting_demo(&[]);
    child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(rest.contains("demo: got input"), "{rest}");
}

#[test]
fn sigterm_stops_the_vm_cleanly() {
    let (child, _reader) = waiting_demo(&[]);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// On a terminal the serial console is raw while the VM runs and restored after.
#[test]
fn terminal_is_raw_during_the_run_and_restored_after() {
    use nix::pty::{openpty, OpenptyResult};
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::os::fd::AsFd;
    require_kvm();
    let OpenptyResult { master, slave } = openpty(None, None).unwrap();
    let cooked = tcgetattr(slave.as_fd()).unwrap();
    assert!(cooked
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
    let mut child = Command::new(CAISSON)
        .args(["demo", "--cmdline", "caisson.demo_wait"])
        .stdin(std::fs::File::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("demo: waiting for input") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "demo ended early");
    }
    let raw = tcgetattr(slave.as_fd()).unwrap();
    assert!(
        !raw.local_flags.contains(LocalFlags::ICANON),
        "canonical mode still on"
    );
    assert!(!raw.local_flags.contains(LocalFlags::ECHO), "echo still on");
    assert!(
        raw.local_flags.contains(LocalFlags::ISIG),
        "Ctrl-C must still stop the VMM"
    );
    nix::unistd::write(&master, b"k").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let after = tcgetattr(slave.as_fd()).unwrap();
    assert_eq!(
        after.local_flags, cooked.local_flags,
        "terminal not restored"
    );
}
