//! Snapshot benchmark (issue 10's targets), for a 128 MiB snapcount guest:
//! - process start -> a restored guest's first serial byte, median of 25
//!   runs (target < 10 ms): through a config file's `snapshot-load` (one exec,
//!   no API round trip), and through the API (exec, socket, `PUT
//!   /snapshot/load` with `resume_vm`);
//! - the time to create a Full snapshot of the 128 MiB guest (median of 9),
//!   and a Diff of the pages dirtied in between.
//!
//! Prints figures; asserts nothing about speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod measure;
use measure::{median, request, static_caisson, stop, wait_accepting};

const RUNS: usize = 25;
const CREATES: usize = 9;
const CAISSON: &str = env!("CARGO_BIN_EXE_caisson");

fn ok(sock: &Path, method: &str, path: &str, body: &str) {
    let (code, resp) = request(sock, method, path, body);
    assert!(code == 204 || code == 200, "{method} {path}: {resp}");
}

/// Boots snapcount printing back to back, and makes the snapshot files
/// (timing the creates); returns (state, memory) paths.
fn make_snapshot(vmm: &Path, dir: &Path, kernel: &Path) -> (PathBuf, PathBuf) {
    let sock = dir.join("make.sock");
    let _ = std::fs::remove_file(&sock);
    let mut child = Command::new(vmm)
        .args(["--api-sock", sock.to_str().unwrap(), "--id", "snapbench"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_accepting(&sock);
    ok(
        &sock,
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 128, "track_dirty_pages": true}"#,
    );
    let boot = serde_json::json!({"kernel_image_path": kernel,
        "boot_args": "console=ttyS0 snapcount.period_us=0 snapcount.mib=16"});
    ok(&sock, "PUT", "/boot-source", &boot.to_string());
    ok(
        &sock,
        "PUT",
        "/actions",
        r#"{"action_type": "InstanceStart"}"#,
    );
    // Drain the serial output in the background (a full pipe would stall the guest).
    let out = child.stdout.take().unwrap();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if !sent && line.starts_with("snapcount: 100 ") {
                let _ = seen_tx.send(());
                sent = true;
            }
        }
    });
    seen.recv_timeout(Duration::from_secs(60))
        .expect("snapcount printed its 100th line");
    let state = dir.join("vm.state");
    let mem = dir.join("vm.mem");
    let (mut full, mut diff) = (vec![], vec![]);
    for i in 0..CREATES {
        ok(&sock, "PATCH", "/vm", r#"{"state": "Paused"}"#);
        let body = serde_json::json!({"snapshot_type": "Full", "snapshot_path": state,
            "mem_file_path": mem});
        let t = Instant::now();
        ok(&sock, "PUT", "/snapshot/create", &body.to_string());
        full.push(t.elapsed());
        ok(&sock, "PATCH", "/vm", r#"{"state": "Resumed"}"#);
        std::thread::sleep(Duration::from_millis(20));
        ok(&sock, "PATCH", "/vm", r#"{"state": "Paused"}"#);
        let d = dir.join(format!("diff{i}.mem"));
        let body = serde_json::json!({"snapshot_type": "Diff",
            "snapshot_path": dir.join("diff.state"), "mem_file_path": d});
        let t = Instant::now();
        ok(&sock, "PUT", "/snapshot/create", &body.to_string());
        diff.push(t.elapsed());
        let _ = std::fs::remove_file(&d);
        ok(&sock, "PATCH", "/vm", r#"{"state": "Resumed"}"#);
    }
    // The files the restores use: the last Full, taken paused mid-print.
    ok(&sock, "PATCH", "/vm", r#"{"state": "Paused"}"#);
    let body =
        serde_json::json!({"snapshot_type": "Full", "snapshot_path": state, "mem_file_path": mem});
    ok(&sock, "PUT", "/snapshot/create", &body.to_string());
    stop(child);
    println!(
        "snapshot: {}: PUT /snapshot/create of the 128 MiB guest (16 MiB touched), median of {CREATES}",
        vmm.display()
    );
    println!(
        "  Full {:>8.2?}   Diff after 20 ms of running {:>8.2?}",
        median(&mut full),
        median(&mut diff)
    );
    (state, mem)
}

fn first_byte(mut child: Child, start: Instant) -> Duration {
    let mut out = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    out.read_exact(&mut byte).unwrap();
    let t = start.elapsed();
    stop(child);
    t
}

fn restore_from_file(vmm: &Path, dir: &Path, state: &Path, mem: &Path) {
    let cfg = dir.join("restore.json");
    let body = serde_json::json!({"snapshot-load": {"snapshot_path": state,
        "mem_backend": {"backend_type": "File", "backend_path": mem}, "resume_vm": true}});
    std::fs::write(&cfg, body.to_string()).unwrap();
    let mut times = vec![];
    for _ in 0..RUNS {
        let start = Instant::now();
        let child = Command::new(vmm)
            .args(["--no-api", "--id", "restore", "--config-file"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        times.push(first_byte(child, start));
    }
    println!(
        "snapshot: {}: exec with a snapshot-load config file -> restored guest's first serial byte, median of {RUNS}",
        vmm.display()
    );
    println!("  wall {:>8.2?} (target < 10 ms)", median(&mut times));
}

fn restore_over_api(vmm: &Path, dir: &Path, state: &Path, mem: &Path) {
    let sock = dir.join("restore.sock");
    let body = serde_json::json!({"snapshot_path": state,
        "mem_backend": {"backend_type": "File", "backend_path": mem}, "resume_vm": true})
    .to_string();
    let mut times = vec![];
    for _ in 0..RUNS {
        let _ = std::fs::remove_file(&sock);
        let start = Instant::now();
        let child = Command::new(vmm)
            .args(["--api-sock", sock.to_str().unwrap(), "--id", "restore"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_accepting(&sock);
        ok(&sock, "PUT", "/snapshot/load", &body);
        times.push(first_byte(child, start));
    }
    println!(
        "snapshot: {}: exec -> API -> PUT /snapshot/load (resume_vm) -> restored guest's first serial byte, median of {RUNS}",
        vmm.display()
    );
    println!("  wall {:>8.2?} (target < 10 ms)", median(&mut times));
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let kernel = PathBuf::from(caisson::demo::GUEST_BUILD_DIR).join("snapcount.elf");
    let dir = std::env::temp_dir().join(format!("caisson-snap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for vmm in [static_caisson(), PathBuf::from(CAISSON)] {
        let (state, mem) = make_snapshot(&vmm, &dir, &kernel);
        restore_from_file(&vmm, &dir, &state, &mem);
        restore_over_api(&vmm, &dir, &state, &mem);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
