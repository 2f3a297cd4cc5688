//! Snapshot requests that must be refused: each gets a 400 whose fault_message
//! names the problem, and the VMM stays up and answers `GET /`.
//!
//! Firecracker makes any failed `PUT /snapshot/load` fatal for its process.
//! Caisson checks the files and the request before it builds anything, so a
//! load refused for a bad file, a bad memory file or a bad request leaves a
//! fresh process: these tests assert that it still says "Not started" and that
//! a good snapshot then loads in the same process.
//!
//! The snapshot file format (what the corruptions below aim at): 8 bytes
//! `CAISSNAP`, a little-endian u16 version (1), the payload, and a
//! little-endian CRC-64/ECMA-182 of everything before it in the last 8 bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::http::Vmm;
use common::snapshot::*;
use common::*;

/// A Full snapshot of snapcount at about line 50, taken in a process that is
/// then killed; returns it with that process's serial output.
fn good_snapshot(dir: &Path, id: &str) -> (Snapshot, String) {
    let snap = Snapshot::at(dir, "good");
    let mut v = boot_api(id, "snapcount", "", false, None);
    wait_count(&mut v, 50);
    pause(&v);
    create_ok(&v, "Full", &snap);
    (snap, kill(v))
}

fn write_variant(dir: &Path, name: &str, bytes: &[u8]) -> Snapshot {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    Snapshot {
        state: p,
        mem: dir.join("good.mem"),
    }
}

#[test]
fn create_is_refused_before_boot_while_running_and_into_bad_paths() {
    require_kvm();
    let work = tempdir();
    let snap = Snapshot::at(work.path(), "s");

    // Before boot: nothing configured, then configured but not started.
    let mut v = Vmm::spawn("snap-e1", &[]);
    let not_booted = ["before", "not started", "boot"];
    assert_fault_any(&create(&v, "Full", &snap), &not_booted);
    v.assert_serving("Not started");
    v.client()
        .put(
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 64}"#,
        )
        .assert_no_content();
    assert_fault_any(&create(&v, "Full", &snap), &not_booted);
    v.assert_serving("Not started");
    assert!(!snap.state.exists() && !snap.mem.exists());
    drop(v);

    let mut v = boot_api("snap-e1b", "snapcount", "", false, None);
    wait_count(&mut v, 20);
    // Running: refused, and the guest runs on.
    assert_fault_any(&create(&v, "Full", &snap), &["paused", "running"]);
    assert!(
        !snap.state.exists(),
        "a refused create wrote the snapshot file"
    );
    v.assert_serving("Running");
    let n = last_count(&v.stdout()).0;
    wait_count(&mut v, n + 20);

    pause(&v);
    // Diff without dirty page tracking.
    assert_fault_any(&create(&v, "Diff", &snap), &["dirty", "track"]);
    assert!(
        !snap.state.exists(),
        "a refused Diff wrote the snapshot file"
    );
    v.assert_serving("Paused");
    // Paths in a directory that is not there: the fault names the path.
    let gone = work.path().join("no-such-dir");
    for bad in [
        Snapshot {
            state: gone.join("s.snap"),
            mem: snap.mem.clone(),
        },
        Snapshot {
            state: snap.state.clone(),
            mem: gone.join("s.mem"),
        },
    ] {
        let r = create(&v, "Full", &bad);
        let path = if bad.state.starts_with(&gone) {
            &bad.state
        } else {
            &bad.mem
        };
        r.assert_fault_contains(path.to_str().unwrap());
        v.assert_serving("Paused");
    }
    let r = once_put(&v, "/snapshot/create", r#"{"snapshot_type": "Full"}"#);
    assert_eq!(r.status, 400, "{r:?}");
    v.assert_serving("Paused");

    // After all that the VM still snapshots and runs on.
    create_ok(&v, "Full", &snap);
    let n = last_count(&v.stdout()).0;
    resume(&v);
    wait_count(&mut v, n + 20);
}

fn once_put(v: &Vmm, path: &str, body: &str) -> common::http::Response {
    common::http::once(&v.sock, "PUT", path, Some(body))
}

#[test]
fn bad_snapshot_files_are_refused_and_a_good_one_loads_afterwards() {
    let work = tempdir();
    let dir = work.path();
    let (good, old) = good_snapshot(dir, "snap-e2");
    let bytes = fs::read(&good.state).unwrap();
    assert!(bytes.len() > 64, "{} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"CAISSNAP");

    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x04;
    let mut version = bytes.clone();
    version[8..10].copy_from_slice(&99u16.to_le_bytes());
    let mut magic = bytes.clone();
    magic[0] = b'X';
    let short = [
        "truncated",
        "too short",
        "short",
        "end of file",
        "eof",
        "empty",
    ];
    let half_words = ["truncated", "too short", "short", "checksum", "crc"];
    let cases: Vec<(&str, Snapshot, &[&str])> = vec![
        ("empty", write_variant(dir, "empty.snap", b""), &short),
        (
            "12 bytes",
            write_variant(dir, "short.snap", &bytes[..12]),
            &short,
        ),
        (
            "half",
            write_variant(dir, "half.snap", &bytes[..bytes.len() / 2]),
            &half_words,
        ),
        (
            "flipped bit",
            write_variant(dir, "flipped.snap", &flipped),
            &["checksum", "crc"],
        ),
        (
            "version 99",
            write_variant(dir, "version.snap", &version),
            &["version"],
        ),
        (
            "bad magic",
            write_variant(dir, "magic.snap", &magic),
            &["magic", "not a"],
        ),
    ];

    let mut v = Vmm::spawn("snap-e2-load", &[]);
    // A snapshot file that is not there: the fault names it.
    let missing = Snapshot {
        state: dir.join("no-such.snap"),
        mem: good.mem.clone(),
    };
    load(&v, &load_body(&missing, true)).assert_fault_contains(missing.state.to_str().unwrap());
    v.assert_serving("Not started");
    for (what, snap, words) in &cases {
        let r = load(&v, &load_body(snap, true));
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_fault_any(&r, words);
        v.assert_serving("Not started");
    }

    // Memory files: too small, missing.
    let small = dir.join("small.mem");
    fs::copy(&good.mem, &small).unwrap();
    fs::File::options()
        .write(true)
        .open(&small)
        .unwrap()
        .set_len(RAM_MIB * MIB / 2)
        .unwrap();
    let r = load(
        &v,
        &load_body(
            &Snapshot {
                state: good.state.clone(),
                mem: small.clone(),
            },
            true,
        ),
    );
    assert_fault_any(&r, &["size", small.to_str().unwrap()]);
    v.assert_serving("Not started");
    let no_mem = dir.join("no-such.mem");
    let r = load(
        &v,
        &load_body(
            &Snapshot {
                state: good.state.clone(),
                mem: no_mem.clone(),
            },
            true,
        ),
    );
    r.assert_fault_contains(no_mem.to_str().unwrap());
    v.assert_serving("Not started");

    // Requests: Uffd, both memory fields, neither, an unknown backend.
    let st = &good.state;
    let m = &good.mem;
    let bodies: Vec<(serde_json::Value, Vec<&str>)> = vec![
        (
            serde_json::json!({"snapshot_path": st,
                "mem_backend": {"backend_type": "Uffd", "backend_path": dir.join("uffd.sock")}}),
            vec!["uffd"],
        ),
        (
            serde_json::json!({"snapshot_path": st, "mem_file_path": m,
                "mem_backend": {"backend_type": "File", "backend_path": m}}),
            vec!["mem_backend", "mem_file_path"],
        ),
        (
            serde_json::json!({"snapshot_path": st}),
            vec!["mem_backend", "mem_file_path"],
        ),
        (
            serde_json::json!({"snapshot_path": st,
                "mem_backend": {"backend_type": "Nope", "backend_path": m}}),
            vec!["backend_type", "nope", "variant"],
        ),
    ];
    for (body, words) in &bodies {
        let r = load(&v, &body.to_string());
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_fault_any(&r, words);
        v.assert_serving("Not started");
    }
    let r = load(&v, &bodies[1].0.to_string());
    r.assert_fault_contains("mem_backend");
    r.assert_fault_contains("mem_file_path");

    // Now the good one, paused: no output until resumed, then the stream goes on.
    load(&v, &load_body(&good, false)).assert_no_content();
    v.assert_serving("Paused");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(v.stdout(), "", "a paused restored VM printed");
    resume(&v);
    let cut = last_count(&old).0;
    let new = wait_count(&mut v, cut + 50);
    assert_continues(&old, &new);

    // A second load into a process that runs a VM.
    let r = load(&v, &load_body(&good, true));
    assert_eq!(r.status, 400, "{r:?}");
    v.assert_serving("Running");
}

#[test]
fn load_is_refused_after_anything_was_configured() {
    let work = tempdir();
    let (good, old) = good_snapshot(work.path(), "snap-e3");
    let mut v = Vmm::spawn("snap-e3-load", &[]);
    v.client()
        .put(
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 64}"#,
        )
        .assert_no_content();
    let r = load(&v, &load_body(&good, true));
    assert_fault_any(&r, &["config", "fresh", "before"]);
    v.assert_serving("Not started");
    // The configuration it had stays, and it can still boot normally.
    let cfg = v.client().get("/vm/config").json();
    assert_eq!(cfg["machine-config"]["mem_size_mib"], 64, "{cfg}");
    drop(v);

    // The same snapshot loads in a fresh process.
    let mut r = restore("snap-e3-ok", &good, true);
    let cut = last_count(&old).0;
    let new = wait_count(&mut r, cut + 20);
    assert_continues(&old, &new);
}
