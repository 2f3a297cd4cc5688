//! Helpers for the snapshot tests (tests/snapshot.rs, tests/snapshot_errors.rs):
//! boot the snapcount and snapblk guests (tests/guests/snap*.c) through the API,
//! pause and snapshot them, restore a snapshot in a fresh process, and check that
//! the guest's serial output runs on across the cut.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::http::{once, Response, Vmm};
use super::{guest, require_kvm};

/// Guest RAM of every snapshot test VM.
pub const RAM_MIB: u64 = 64;
pub const MIB: u64 = 1 << 20;
/// From a spawn or a load to a guest line the test waits for.
pub const LINE_LIMIT: Duration = Duration::from_secs(60);

/// The two files of one snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: PathBuf,
    pub mem: PathBuf,
}

impl Snapshot {
    /// `<dir>/<name>.snap` and `<dir>/<name>.mem`.
    pub fn at(dir: &Path, name: &str) -> Self {
        Self {
            state: dir.join(format!("{name}.snap")),
            mem: dir.join(format!("{name}.mem")),
        }
    }
}

/// Configures and starts `guest_name` on a fresh API VMM: 1 vCPU, [`RAM_MIB`],
/// `console=ttyS0 <args>`, optionally a read-write drive.
pub fn boot_api(
    id: &str,
    guest_name: &str,
    args: &str,
    track_dirty: bool,
    disk: Option<&Path>,
) -> Vmm {
    boot_api_with(
        id,
        guest_name,
        args,
        track_dirty,
        disk.map(|d| drive(d, None)),
    )
}

/// The `PUT /drives/disk` body of a read-write drive, with an optional rate limiter.
pub fn drive(path: &Path, rate_limiter: Option<serde_json::Value>) -> serde_json::Value {
    let mut d = serde_json::json!({"drive_id": "disk", "path_on_host": path,
        "is_root_device": false, "is_read_only": false});
    if let Some(l) = rate_limiter {
        d["rate_limiter"] = l;
    }
    d
}

/// As [`boot_api`] with a drive given as its `PUT /drives/disk` body.
pub fn boot_api_with(
    id: &str,
    guest_name: &str,
    args: &str,
    track_dirty: bool,
    drive: Option<serde_json::Value>,
) -> Vmm {
    require_kvm();
    let v = Vmm::spawn(id, &[]);
    let mut c = v.client();
    let mc = serde_json::json!({"vcpu_count": 1, "mem_size_mib": RAM_MIB,
        "track_dirty_pages": track_dirty});
    c.put("/machine-config", &mc.to_string())
        .assert_no_content();
    let boot = serde_json::json!({"kernel_image_path": guest(guest_name),
        "boot_args": format!("console=ttyS0 {args}")});
    c.put("/boot-source", &boot.to_string()).assert_no_content();
    if let Some(d) = drive {
        c.put("/drives/disk", &d.to_string()).assert_no_content();
    }
    c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
        .assert_no_content();
    v
}

pub fn pause(v: &Vmm) {
    once(&v.sock, "PATCH", "/vm", Some(r#"{"state": "Paused"}"#)).assert_no_content();
    assert_eq!(v.state(), "Paused");
}

pub fn resume(v: &Vmm) {
    once(&v.sock, "PATCH", "/vm", Some(r#"{"state": "Resumed"}"#)).assert_no_content();
    assert_eq!(v.state(), "Running");
}

pub fn create_body(kind: &str, snap: &Snapshot) -> String {
    serde_json::json!({"snapshot_type": kind, "snapshot_path": snap.state,
        "mem_file_path": snap.mem})
    .to_string()
}

/// `PUT /snapshot/create`.
/// A create writes and syncs the memory file, which may take seconds on a
/// disk that other tests load; the read timeout is long for it.
pub fn create(v: &Vmm, kind: &str, snap: &Snapshot) -> Response {
    slow_request(&v.sock, "PUT", "/snapshot/create", &create_body(kind, snap))
}

/// One request with a 120 s read timeout (creates and loads).
pub fn slow_request(sock: &Path, method: &str, path: &str, body: &str) -> Response {
    let stream = std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    super::http::Client::from_stream(stream)
        .request(method, path, Some(body))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A successful `PUT /snapshot/create` on a paused VM, which stays paused.
pub fn create_ok(v: &Vmm, kind: &str, snap: &Snapshot) {
    let r = create(v, kind, snap);
    assert_eq!(r.status, 204, "{r:?}; stderr: {}", v.stderr());
    assert_eq!(v.state(), "Paused");
    assert!(snap.state.is_file(), "{} not written", snap.state.display());
    assert!(snap.mem.is_file(), "{} not written", snap.mem.display());
}

/// A load request with a File memory backend.
pub fn load_body(snap: &Snapshot, resume_vm: bool) -> String {
    serde_json::json!({"snapshot_path": snap.state,
        "mem_backend": {"backend_type": "File", "backend_path": snap.mem},
        "track_dirty_pages": false, "resume_vm": resume_vm})
    .to_string()
}

pub fn load(v: &Vmm, body: &str) -> Response {
    once(&v.sock, "PUT", "/snapshot/load", Some(body))
}

/// A fresh VMM process that loads `snap` (and resumes it if `resume_vm`).
pub fn restore(id: &str, snap: &Snapshot, resume_vm: bool) -> Vmm {
    require_kvm();
    let v = Vmm::spawn(id, &[]);
    assert_eq!(v.state(), "Not started");
    let r = load(&v, &load_body(snap, resume_vm));
    assert_eq!(r.status, 204, "{r:?}; stderr: {}", v.stderr());
    assert_eq!(v.state(), if resume_vm { "Running" } else { "Paused" });
    v
}

/// SIGKILLs the process and returns everything it printed on the serial console.
pub fn kill(mut v: Vmm) -> String {
    let _ = v.child.kill();
    let _ = v.child.wait();
    v.stdout()
}

/// Waits until the process's serial output holds `text`.
pub fn wait_text(v: &mut Vmm, text: &str) -> String {
    let out = v.path("stdout");
    v.wait_for_text(&out, text, LINE_LIMIT)
}

/// Waits for snapcount's line `n`.
pub fn wait_count(v: &mut Vmm, n: u64) -> String {
    wait_text(v, &format!("snapcount: {n} verified "))
}

/// snapcount's output checked line by line: an optional `ready` line first, then
/// `snapcount: <n> verified <k>` with n = first, first + 1, ... and k never
/// decreasing, then an optional `done`. A last line without its newline (the
/// guest was stopped mid-line) is left out. Returns the (n, k) pairs and whether
/// the text had the `ready` line.
pub fn count_lines(text: &str) -> (Vec<(u64, u64)>, bool) {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut ready = false;
    let mut done = false;
    let mut lines: Vec<(u64, u64)> = Vec::new();
    for (i, l) in complete.lines().enumerate() {
        assert!(!done, "line {i} after `done`: {l:?}\n{text}");
        if l.starts_with("snapcount: ready ") {
            assert!(i == 0, "`ready` at line {i} (a restart?):\n{text}");
            assert!(l.ends_with(" MiB"), "{l:?}");
            ready = true;
            continue;
        }
        if l == "snapcount: done" {
            done = true;
            continue;
        }
        let parsed = l
            .strip_prefix("snapcount: ")
            .and_then(|r| r.split_once(" verified "))
            .and_then(|(n, k)| Some((n.parse::<u64>().ok()?, k.parse::<u64>().ok()?)));
        let Some((n, k)) = parsed else {
            panic!("line {i} is not snapcount's: {l:?}\n{text}");
        };
        if let Some(&(pn, pk)) = lines.last() {
            assert_eq!(n, pn + 1, "line {i}: {l:?} follows line {pn}\n{text}");
            assert!(
                k >= pk,
                "line {i}: {l:?}: passes went back from {pk}\n{text}"
            );
        }
        lines.push((n, k));
    }
    (lines, ready)
}

/// The last complete snapcount line (n, k) of `text`.
pub fn last_count(text: &str) -> (u64, u64) {
    *count_lines(text)
        .0
        .last()
        .unwrap_or_else(|| panic!("no snapcount line in {text:?}"))
}

/// Checks that `new`, the output of a process that restored a snapshot, takes up
/// snapcount where `old` (the snapshotted process's output up to the pause) left
/// off: joined they are one run from `ready` and line 1 without a gap, a repeat or
/// a second `ready` (a partial last line of `old` is finished by `new`), and `new`
/// holds lines after `old`'s last. Returns `old`'s last (n, k) and the joined
/// run's last.
pub fn assert_continues(old: &str, new: &str) -> ((u64, u64), (u64, u64)) {
    let (old_lines, old_ready) = count_lines(old);
    assert!(old_ready, "the snapshotted run lacks `ready`:\n{old}");
    let cut = *old_lines.last().expect("no line before the snapshot");
    assert!(
        !new.contains("ready"),
        "the restored guest started over:\n{new}"
    );
    let joined = format!("{old}{new}");
    let (lines, ready) = count_lines(&joined);
    assert!(ready);
    assert_eq!(lines[0].0, 1, "{joined}");
    let last = *lines.last().unwrap();
    assert!(
        last.0 > cut.0,
        "the restored guest printed nothing after line {}: {new:?}",
        cut.0
    );
    (cut, last)
}

/// snapcount's pattern word at guest physical `addr` (tests/guests/snapcount.c).
pub fn pattern(addr: u64, seed: u64) -> u64 {
    let mut x = addr.wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The data extents of a (sparse) file, from SEEK_DATA/SEEK_HOLE.
pub fn data_extents(path: &Path) -> Vec<(u64, u64)> {
    use nix::unistd::{lseek, Whence};
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut off = 0i64;
    while off < len {
        let Ok(start) = lseek(&f, off, Whence::SeekData) else {
            break; // ENXIO: no data past off
        };
        let end = lseek(&f, start, Whence::SeekHole).unwrap();
        out.push((start as u64, end as u64));
        off = end;
    }
    out
}

/// The bytes of snapblk's write k (tests/guests/snapblk.c).
pub fn snapblk_sector(k: u64) -> Vec<u8> {
    let mut s = Vec::with_capacity(512);
    s.extend_from_slice(b"snapblk\0");
    s.extend_from_slice(&k.to_le_bytes());
    for i in 16u64..512 {
        let x = (k + 1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(i.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        s.push((x >> 56) as u8);
    }
    s
}

/// snapblk's `snapblk: <k> done` counts in `text` (complete lines), checked to be
/// 64, 128, ... without a gap or a repeat, after one `ready` line. Returns them
/// and the final `finished` count if there is one.
pub fn blk_lines(text: &str) -> (Vec<u64>, Option<u64>) {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut done = Vec::new();
    let mut finished = None;
    for (i, l) in complete.lines().enumerate() {
        if i == 0 {
            assert!(l.starts_with("snapblk: ready capacity "), "{text}");
            continue;
        }
        assert!(
            finished.is_none(),
            "line {i} after `finished`: {l:?}\n{text}"
        );
        if let Some(n) = l.strip_prefix("snapblk: finished ") {
            finished = Some(n.parse::<u64>().unwrap());
            continue;
        }
        let k = l
            .strip_prefix("snapblk: ")
            .and_then(|r| r.strip_suffix(" done"))
            .and_then(|k| k.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("line {i} is not snapblk's: {l:?}\n{text}"));
        assert_eq!(k, 64 * (done.len() as u64 + 1), "line {i}: {l:?}\n{text}");
        done.push(k);
    }
    (done, finished)
}

/// Fault-message check: a 400 whose fault_message contains one of `words`
/// (ignoring case).
pub fn assert_fault_any(r: &Response, words: &[&str]) {
    assert_eq!(r.status, 400, "{r:?}");
    let f = r.fault().to_lowercase();
    eprintln!("fault: {f}");
    assert!(
        words.iter().any(|w| f.contains(&w.to_lowercase())),
        "fault {f:?} names none of {words:?}"
    );
}
