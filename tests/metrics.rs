//! Firecracker-compatible metrics end to end: guests booted from config files
//! with `"metrics": {"metrics_path": ...}`; the lines written are JSON with
//! every group, and the counters moved with what the guest did.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use caisson::metrics::GROUPS;
use common::*;
use serde_json::{json, Value};

const HELLO: &str = "Hello from the Caisson hello guest\n";

/// Writes a config file booting `name` with metrics to `metrics` and the
/// sections in `extra`.
fn config(dir: &Path, name: &str, boot_args: &str, metrics: &Path, extra: Value) -> String {
    let mut cfg = json!({
        "boot-source": {"kernel_image_path": guest(name), "boot_args": boot_args},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
        "metrics": {"metrics_path": metrics},
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Every line of the metrics file, each checked to be a JSON object with the
/// timestamp and every group Caisson writes.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "whole lines: {text:?}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "no metrics line");
    for v in &lines {
        assert!(
            v["utc_timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000,
            "{v}"
        );
        for g in GROUPS {
            assert!(v[g].is_object(), "group {g} missing: {v}");
        }
    }
    lines
}

/// A counter summed over every line (counters are per interval).
fn total(lines: &[Value], group: &str, counter: &str) -> u64 {
    lines
        .iter()
        .map(|v| {
            v[group][counter]
                .as_u64()
                .unwrap_or_else(|| panic!("{group}.{counter} missing: {v}"))
        })
        .sum()
}

/// A stored value (not per interval) as the last line has it.
fn last(lines: &[Value], group: &str, value: &str) -> u64 {
    lines.last().unwrap()[group][value].as_u64().unwrap()
}

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[test]
fn hello_counters_follow_what_the_guest_did() {
    require_kvm();
    let dir = tempdir();
    let m = dir.path().join("metrics.json");
    let cfg = config(dir.path(), "hello", "console=ttyS0", &m, json!({}));
    // As if the jailer had started 2 s ago.
    let start = (monotonic_us() - 2_000_000).to_string();
    let out = caisson(&[
        "--no-api",
        "--config-file",
        &cfg,
        "--serial",
        "stdout",
        "--start-time-us",
        &start,
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(HELLO), "{out:?}");
    let l = lines(&m);
    // Each byte printed is one OUT to the UART, after polling its LSR.
    let printed = total(&l, "uart", "write_count");
    assert_eq!(printed, HELLO.len() as u64, "uart.write_count");
    assert!(total(&l, "vcpu", "exit_io_in") >= printed);
    // The guest writes only the UART's data register and the i8042's command
    // register: every OUT exit is one of those writes.
    assert_eq!(
        total(&l, "vcpu", "exit_io_out"),
        printed + total(&l, "i8042", "write_count")
    );
    let agg = &l.last().unwrap()["vcpu"]["exit_io_out_agg"];
    assert!(agg["max_us"].as_u64() >= agg["min_us"].as_u64(), "{agg}");
    assert_eq!(total(&l, "uart", "error_count"), 0);
    // The guest ends with 0xFE to port 0x64.
    assert_eq!(total(&l, "i8042", "reset_count"), 1);
    assert!(total(&l, "i8042", "write_count") >= 1);
    assert_eq!(total(&l, "vcpu", "failures"), 0);
    // (vmm.device_events may be 0 here: the guest can end before the event
    // loop's first wait, and the loop then stops without dispatching.)
    assert_eq!(total(&l, "logger", "missed_metrics_count"), 0);
    assert_eq!(last(&l, "seccomp", "num_faults"), 0);
    assert_eq!(last(&l, "signals", "sighup"), 0);
    assert!(last(&l, "api_server", "process_startup_time_us") >= 2_000_000);
    // No vsock device: its group is there, all zero.
    assert_eq!(total(&l, "vsock", "conns_added"), 0);
}

/// Host side of the vsock guest (as in tests/virtio.rs): an echo on
/// `<uds>_5000` for the guest's connections, then a host-initiated connection
/// to guest port 6000 echoing `len` bytes.
fn drive_vsock_guest(dir: &Path, uds: &Path, len: usize) {
    let l5000 = UnixListener::bind(dir.join("v.sock_5000")).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l5000.accept().unwrap();
        // The guest's last connection, dropped by its device reset.
        let second = std::thread::spawn(move || {
            let (mut s, _) = l5000.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.read(&mut [0u8; 16]);
        });
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 256];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
        second
    });
    let second = echo.join().unwrap();
    let start = std::time::Instant::now();
    while !uds.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "no {uds:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut s = UnixStream::connect(uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"CONNECT 6000\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    assert!(reply.starts_with("OK "), "{reply:?}");
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let d = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&d).unwrap());
    let mut echoed = vec![0u8; len];
    s.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    assert!(echoed == data);
    drop(s);
    second.join().unwrap();
}

#[test]
fn vsock_counters_follow_the_connections_and_bytes() {
    require_kvm();
    let dir = tempdir();
    let m = dir.path().join("metrics.json");
    let uds = dir.path().join("v.sock");
    let vsock = json!({"vsock": {"vsock_id": "vsock0", "guest_cid": 7, "uds_path": uds}});
    let cfg = config(dir.path(), "virtio_vsock", "console=ttyS0", &m, vsock);
    let child = Command::new(CAISSON)
        .args(["--no-api", "--config-file", &cfg, "--serial", "stdout"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    const LEN: usize = 64 * 1024;
    drive_vsock_guest(dir.path(), &uds, LEN);
    let out = wait_output(child, Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{out:?}");
    let l = lines(&m);
    // Two guest connections to port 5000 and the host's to 6000.
    assert!(total(&l, "vsock", "conns_added") >= 3);
    assert!(total(&l, "vsock", "conns_removed") >= 1);
    // The host's bytes went to the guest and came back, plus the guest's message.
    assert!(total(&l, "vsock", "rx_bytes_count") >= LEN as u64);
    assert!(total(&l, "vsock", "tx_bytes_count") >= LEN as u64);
    let rx_packets = total(&l, "vsock", "rx_packets_count");
    assert!(rx_packets >= (LEN / 4096) as u64, "{rx_packets}");
    assert!(total(&l, "vsock", "tx_packets_count") >= 3);
    assert!(total(&l, "vsock", "tx_queue_event_count") >= 1);
    assert_eq!(total(&l, "vsock", "tx_queue_event_fails"), 0);
    assert_eq!(total(&l, "vsock", "rx_read_fails"), 0);
    assert!(total(&l, "vcpu", "exit_mmio_write") >= 1);
    assert!(total(&l, "vcpu", "exit_mmio_read") >= 1);
}

#[test]
fn a_fifo_nobody_reads_neither_blocks_nor_fails_the_vm() {
    require_kvm();
    let dir = tempdir();
    let fifo = dir.path().join("metrics.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cfg = config(dir.path(), "hello", "console=ttyS0", &fifo, json!({}));
    let out = caisson(&["--no-api", "--config-file", &cfg, "--serial", "stdout"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(HELLO), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_fifo_reader_gets_the_line() {
    require_kvm();
    let dir = tempdir();
    let fifo = dir.path().join("metrics.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cfg = config(dir.path(), "hello", "console=ttyS0", &fifo, json!({}));
    let f = fifo.clone();
    // Blocks until caisson opens the FIFO, then reads to its end.
    let reader = std::thread::spawn(move || std::fs::read_to_string(f).unwrap());
    let out = caisson(&["--no-api", "--config-file", &cfg, "--serial", "stdout"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = reader.join().unwrap();
    let copy = dir.path().join("copy.json");
    std::fs::write(&copy, &text).unwrap();
    let l = lines(&copy);
    assert_eq!(total(&l, "i8042", "reset_count"), 1);
}

#[test]
fn a_forbidden_syscall_leaves_a_line_with_the_fault() {
    require_kvm();
    let dir = tempdir();
    // The built-in filters without epoll_wait in the main thread's.
    let mut filters: Value = serde_json::from_str(caisson::seccomp::VMM_JSON).unwrap();
    let vcpu: Value = serde_json::from_str(caisson::seccomp::VCPU_JSON).unwrap();
    let api: Value = serde_json::from_str(caisson::seccomp::API_JSON).unwrap();
    filters["vcpu"] = vcpu["vcpu"].clone();
    filters["api"] = api["api"].clone();
    let rules = filters["vmm"]["filter"].as_array_mut().unwrap();
    rules.retain(|r| r["syscall"] != "epoll_wait");
    let filter = dir.path().join("filter.json");
    std::fs::write(&filter, filters.to_string()).unwrap();
    let m = dir.path().join("metrics.json");
    let cfg = config(dir.path(), "hello", "console=ttyS0", &m, json!({}));
    let out = caisson(&[
        "--no-api",
        "--config-file",
        &cfg,
        "--seccomp-filter",
        filter.to_str().unwrap(),
    ]);
    assert_eq!(out.code, None, "killed by SIGSYS: {out:?}");
    let l = lines(&m);
    assert_eq!(last(&l, "seccomp", "num_faults"), 1);
}

#[test]
fn sighup_is_counted() {
    require_kvm();
    let dir = tempdir();
    let m = dir.path().join("metrics.json");
    let cfg = config(
        dir.path(),
        "demo",
        "console=ttyS0 caisson.demo_wait",
        &m,
        json!({}),
    );
    let mut child = Command::new(CAISSON)
        .args(["--no-api", "--config-file", &cfg, "--serial", "stdout"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("demo: waiting for input") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the demo ended");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop");
    let l = lines(&m);
    assert_eq!(last(&l, "signals", "sighup"), 1);
    // The demo prints with the UART too.
    assert!(total(&l, "uart", "write_count") > 0);
}

#[test]
fn a_bad_metrics_path_is_rejected_by_name() {
    let dir = tempdir();
    let missing = dir.path().join("no-such-dir/metrics.json");
    let cfg = config(dir.path(), "hello", "console=ttyS0", &missing, json!({}));
    let out = caisson(&["--no-api", "--config-file", &cfg]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("metrics.metrics_path") && out.stderr.contains("no-such-dir"),
        "{out:?}"
    );
    // Firecracker's schema: only metrics_path.
    let bad = dir.path().join("bad.json");
    let text = json!({
        "boot-source": {"kernel_image_path": guest("hello")},
        "metrics": {"metrics_path": dir.path().join("m"), "flush_secs": 1},
    });
    std::fs::write(&bad, text.to_string()).unwrap();
    let out = caisson(&["--no-api", "--config-file", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("flush_secs"), "{out:?}");
}

#[test]
fn an_emulation_failure_is_a_vcpu_failure() {
    require_kvm();
    let dir = tempdir();
    let m = dir.path().join("metrics.json");
    let cfg = config(dir.path(), "emufail", "console=ttyS0", &m, json!({}));
    let out = caisson(&["--no-api", "--config-file", &cfg]);
    assert_eq!(out.code, Some(4), "{out:?}");
    let l = lines(&m);
    assert_eq!(total(&l, "vcpu", "failures"), 1);
}

/// The per-device groups: `block_<id>` and the `block` aggregate follow what the
/// virtio_blk guest did (it writes a pattern, flushes and reads it back), and
/// `entropy` what the virtio_rng guest took.
#[test]
fn device_counters_follow_the_guests_io() {
    require_kvm();
    let dir = tempdir();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0u8; 128 * 512]).unwrap();
    let m = dir.path().join("blk-metrics.json");
    let drives = json!({"drives": [{"drive_id": "rootfs", "path_on_host": img,
        "is_root_device": true, "is_read_only": false}]});
    let cfg = config(dir.path(), "virtio_blk", "console=ttyS0", &m, drives);
    let out = caisson(&["--no-api", "--config-file", &cfg, "--serial", "stdout"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("blk: pattern ok"), "{out:?}");
    let l = lines(&m);
    for group in ["block_rootfs", "block"] {
        assert!(total(&l, group, "read_count") >= 2, "{group}: {l:?}");
        assert!(total(&l, group, "write_count") >= 1, "{group}: {l:?}");
        assert!(total(&l, group, "flush_count") >= 1, "{group}: {l:?}");
        // The guest reads 8 sectors, then the 64-sector pattern back.
        assert!(total(&l, group, "read_bytes") >= (8 + 64) * 512, "{group}");
        assert!(total(&l, group, "write_bytes") >= 64 * 512, "{group}");
    }
    assert_eq!(
        total(&l, "block", "read_bytes"),
        total(&l, "block_rootfs", "read_bytes"),
        "one drive: the aggregate is its counters"
    );

    let m = dir.path().join("rng-metrics.json");
    let cfg = config(
        dir.path(),
        "virtio_rng",
        "console=ttyS0",
        &m,
        json!({"entropy": {}}),
    );
    let out = caisson(&["--no-api", "--config-file", &cfg, "--serial", "stdout"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let l = lines(&m);
    assert!(total(&l, "entropy", "entropy_bytes") >= 4096, "{l:?}");
    assert!(total(&l, "entropy", "entropy_event_count") >= 1, "{l:?}");
}
