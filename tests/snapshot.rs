//! Snapshots end to end, as Firecracker takes them: `PUT /snapshot/create` on a
//! paused VM, SIGKILL, `PUT /snapshot/load` in a fresh `caisson --api-sock`
//! process. The guests (tests/guests/snapcount.c, snapblk.c) print a numbered
//! stream, so the restored process's serial output must take up the stream at
//! the line after the pause: no gap, no repeat, no restart. snapcount also
//! verifies a pattern over 16 MiB of its RAM (the `verified` passes), snapblk
//! checks that no virtio-blk request is lost or completed twice.
//!
//! Bad inputs (files, requests, states) are in tests/snapshot_errors.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::http::Vmm;
use common::snapshot::*;
use common::*;

/// A Full snapshot at line ~300; the restored guest runs on to its last line
/// (`snapcount.max`), verifies its whole region once more and exits 0.
#[test]
fn snapcount_goes_on_in_a_new_process_after_a_full_snapshot() {
    let work = tempdir();
    let snap = Snapshot::at(work.path(), "full");
    let mut v = boot_api("snap-a", "snapcount", "snapcount.max=1000", false, None);
    wait_count(&mut v, 300);
    pause(&v);
    create_ok(&v, "Full", &snap);
    // The memory file is guest RAM; the state file is framed as documented.
    assert_eq!(fs::metadata(&snap.mem).unwrap().len(), RAM_MIB * MIB);
    let state = fs::read(&snap.state).unwrap();
    assert_eq!(&state[..8], b"CAISSNAP");
    assert_eq!(u16::from_le_bytes([state[8], state[9]]), 1);
    let old = kill(v);

    let mut r = restore("snap-a2", &snap, true);
    let status = r.wait_exit(LINE_LIMIT);
    let new = r.stdout();
    assert_eq!(status.code(), Some(0), "{new}\nstderr: {}", r.stderr());
    let ((cut, cut_k), (last, last_k)) = assert_continues(&old, &new);
    assert!(new.ends_with("snapcount: done\n"), "{new}");
    assert_eq!(last, 1000);
    assert!(
        last - cut >= 256,
        "only {} lines after the restore (paused at {cut})",
        last - cut
    );
    // A full pass over the region after the restore: its memory came back.
    assert!(
        last_k > cut_k,
        "no pass after the restore: {cut_k} -> {last_k}"
    );
}

/// snapblk, snapshotted mid-stream with requests in flight, finishes in the new
/// process; the disk then holds every write.
#[test]
fn snapblk_loses_and_repeats_no_request_across_a_restore() {
    snapblk_across_a_restore("snap-b", 65536, None, 4096);
}

/// The same on a drive whose rate limiter (2000 ops/s) keeps requests waiting in
/// the queue: those parked at the snapshot are served after the restore, whose
/// limiter (state restored or refilled) resumes the queue by itself.
#[test]
fn snapblk_requests_held_by_a_rate_limiter_complete_after_a_restore() {
    let limiter = serde_json::json!({"ops": {"size": 100, "refill_time": 50}});
    snapblk_across_a_restore("snap-b-rl", 2048, Some(limiter), 512);
}

/// Boots snapblk for `count` writes on a fresh disk of `count` sectors, takes a
/// Full snapshot after `snapblk: <pause_at> done`, SIGKILLs, restores in a new
/// process and checks the stream and the disk.
fn snapblk_across_a_restore(
    id: &str,
    count: u64,
    limiter: Option<serde_json::Value>,
    pause_at: u64,
) {
    let work = tempdir();
    let disk = work.path().join("disk.img");
    File::create(&disk).unwrap().set_len(count * 512).unwrap();
    let snap = Snapshot::at(work.path(), "blk");
    let args = format!("snapblk.count={count}");
    let mut v = boot_api_with(id, "snapblk", &args, false, Some(drive(&disk, limiter)));
    wait_text(&mut v, &format!("snapblk: {pause_at} done\n"));
    pause(&v);
    create_ok(&v, "Full", &snap);
    let old = kill(v);
    let (before, finished) = blk_lines(&old);
    assert_eq!(finished, None, "finished before the snapshot:\n{old}");
    let cut = *before.last().unwrap();
    assert!(cut <= count - 256, "paused too late, at {cut}");

    let mut r = restore(&format!("{id}-2"), &snap, true);
    let status = r.wait_exit(Duration::from_secs(180));
    let new = r.stdout();
    assert_eq!(status.code(), Some(0), "{new}\nstderr: {}", r.stderr());
    assert!(!new.contains("ready"), "the guest started over:\n{new}");
    let (done, finished) = blk_lines(&format!("{old}{new}"));
    assert_eq!(finished, Some(count), "{new}");
    assert_eq!(done.len() as u64, count / 64);

    let bytes = fs::read(&disk).unwrap();
    assert_eq!(bytes.len() as u64, count * 512);
    for k in 0..count {
        let s = &bytes[k as usize * 512..(k as usize + 1) * 512];
        assert!(
            s == snapblk_sector(k).as_slice(),
            "sector {k} does not hold write {k}: {:?}",
            &s[..16]
        );
    }
}

/// Full snapshot, run on, Diff snapshot: the diff memory file is sparse and
/// small; rebased onto a copy of the full one, it restores the second pause.
#[test]
fn a_rebased_diff_snapshot_restores_the_second_pause_point() {
    let work = tempdir();
    let full = Snapshot::at(work.path(), "full");
    let diff = Snapshot::at(work.path(), "diff");
    let mut v = boot_api("snap-c", "snapcount", "", true, None);
    wait_count(&mut v, 100);
    pause(&v);
    create_ok(&v, "Full", &full);
    let at_full = last_count(&v.stdout()).0;
    resume(&v);
    wait_count(&mut v, at_full + 50);
    pause(&v);
    create_ok(&v, "Diff", &diff);
    let old = kill(v);

    let ram = RAM_MIB * MIB;
    let meta = fs::metadata(&diff.mem).unwrap();
    assert_eq!(meta.len(), ram, "the diff memory file is not RAM-sized");
    let extents = data_extents(&diff.mem);
    let data: u64 = extents.iter().map(|(s, e)| e - s).sum();
    eprintln!(
        "diff memory file: {data} bytes of data in {} extents, {} blocks",
        extents.len(),
        meta.blocks()
    );
    assert!(data > 0, "the diff holds no page at all");
    assert!(
        data <= ram / 16,
        "the diff holds {data} bytes of {ram}: {extents:?}"
    );
    assert!(meta.blocks() * 512 <= ram / 8, "{} blocks", meta.blocks());

    // Rebase onto a copy of the full memory file.
    let base = work.path().join("base.mem");
    fs::copy(&full.mem, &base).unwrap();
    rebase(&base, &diff.mem);
    // The rebased file: the diff's data where it has some, the full file elsewhere.
    let (b, f, d) = (
        fs::read(&base).unwrap(),
        fs::read(&full.mem).unwrap(),
        fs::read(&diff.mem).unwrap(),
    );
    assert_eq!(b.len() as u64, ram);
    let mut from = 0usize;
    for &(s, e) in &extents {
        let (s, e) = (s as usize, e as usize);
        assert!(
            b[from..s] == f[from..s],
            "rebase changed [{from:#x}, {s:#x})"
        );
        assert!(b[s..e] == d[s..e], "rebase left out [{s:#x}, {e:#x})");
        from = e;
    }
    assert!(b[from..] == f[from..], "rebase changed [{from:#x}, end)");

    let rebased = Snapshot {
        state: diff.state.clone(),
        mem: base,
    };
    let cut = last_count(&old).0;
    assert!(cut >= at_full + 50);
    let mut r = restore("snap-c2", &rebased, true);
    let new = wait_count(&mut r, cut + 300);
    let ((_, cut_k), (_, last_k)) = assert_continues(&old, &new);
    // 300 lines hold a full pass: the region (from the base file) is intact.
    assert!(
        last_k > cut_k,
        "no pass after the restore: {cut_k} -> {last_k}"
    );
}

/// `caisson snapshot rebase --base-file <base> --diff-file <diff>`, which must succeed.
fn rebase(base: &Path, diff: &Path) {
    let out = caisson(&[
        "snapshot",
        "rebase",
        "--base-file",
        base.to_str().unwrap(),
        "--diff-file",
        diff.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// Dirty tracking on a restored VM (`track_dirty_pages` in the load): a Diff
/// taken after the restore holds what changed since the load, and rebased
/// onto the memory file the VM was loaded from it restores the later point.
#[test]
fn a_diff_of_a_restored_vm_rebases_onto_the_file_it_was_loaded_from() {
    let work = tempdir();
    let full = Snapshot::at(work.path(), "full");
    let diff = Snapshot::at(work.path(), "diff");
    let mut v = boot_api("snap-g", "snapcount", "", false, None);
    wait_count(&mut v, 50);
    pause(&v);
    create_ok(&v, "Full", &full);
    let first = kill(v);

    let mut r = Vmm::spawn("snap-g2", &[]);
    let body = serde_json::json!({"snapshot_path": full.state,
        "mem_backend": {"backend_type": "File", "backend_path": full.mem},
        "track_dirty_pages": true, "resume_vm": true});
    load(&r, &body.to_string()).assert_no_content();
    let cut = last_count(&first).0;
    wait_count(&mut r, cut + 50);
    pause(&r);
    create_ok(&r, "Diff", &diff);
    let second = kill(r);
    let data: u64 = data_extents(&diff.mem).iter().map(|(s, e)| e - s).sum();
    assert!(data > 0 && data <= RAM_MIB * MIB / 16, "{data} bytes");

    let base = work.path().join("base.mem");
    fs::copy(&full.mem, &base).unwrap();
    rebase(&base, &diff.mem);
    let mut r = restore(
        "snap-g3",
        &Snapshot {
            state: diff.state.clone(),
            mem: base,
        },
        true,
    );
    let joined = format!("{first}{second}");
    let cut = last_count(&joined).0;
    let new = wait_count(&mut r, cut + 300);
    let ((_, cut_k), (_, last_k)) = assert_continues(&joined, &new);
    assert!(
        last_k > cut_k,
        "no pass after the restore: {cut_k} -> {last_k}"
    );
}

/// Two processes load the same snapshot files at the same time (one through
/// the deprecated `mem_file_path`); both take up the stream at the same line.
#[test]
fn two_processes_restore_the_same_snapshot_at_once() {
    let work = tempdir();
    let snap = Snapshot::at(work.path(), "full");
    let mut v = boot_api("snap-d", "snapcount", "", false, None);
    wait_count(&mut v, 100);
    pause(&v);
    create_ok(&v, "Full", &snap);
    let old = kill(v);
    let cut = last_count(&old).0;

    let mem_before = fs::read(&snap.mem).unwrap();
    let mut a = Vmm::spawn("clone-a", &[]);
    let mut b = Vmm::spawn("clone-b", &[]);
    load(&a, &load_body(&snap, true)).assert_no_content();
    let legacy = serde_json::json!({"snapshot_path": snap.state, "mem_file_path": snap.mem,
        "enable_diff_snapshots": false, "resume_vm": true});
    load(&b, &legacy.to_string()).assert_no_content();
    assert_eq!(a.state(), "Running");
    assert_eq!(b.state(), "Running");
    let out_a = wait_count(&mut a, cut + 300);
    let out_b = wait_count(&mut b, cut + 300);
    let (cut_a, _) = assert_continues(&old, &out_a);
    let (cut_b, _) = assert_continues(&old, &out_b);
    assert_eq!(cut_a, cut_b);
    a.assert_serving("Running");
    b.assert_serving("Running");
    // The clones' writes stay private: the memory file is as it was.
    assert!(
        fs::read(&snap.mem).unwrap() == mem_before,
        "a restored VM wrote to the snapshot's memory file"
    );
}

/// The memory file really is what the restored guest runs on: one flipped bit
/// inside snapcount's region is reported as a mismatch at its address.
#[test]
fn a_flipped_bit_in_the_memory_file_is_seen_by_the_restored_guest() {
    let work = tempdir();
    let snap = Snapshot::at(work.path(), "full");
    let mut v = boot_api("snap-f", "snapcount", "snapcount.seed=7", false, None);
    wait_count(&mut v, 50);
    pause(&v);
    create_ok(&v, "Full", &snap);
    kill(v);

    // snapcount's region starts at 2 MiB (its image ends below that) and spans
    // 16 MiB; RAM below the MMIO gap is at its guest physical offset in the file.
    let addr = 10 * MIB;
    let mut mem = fs::read(&snap.mem).unwrap();
    let at = addr as usize;
    let word = u64::from_le_bytes(mem[at..at + 8].try_into().unwrap());
    assert_eq!(word, pattern(addr, 7), "the memory file is not guest RAM");
    mem[at + 3] ^= 0x10;
    fs::write(&snap.mem, mem).unwrap();

    let mut r = restore("snap-f2", &snap, true);
    let status = r.wait_exit(LINE_LIMIT);
    let new = r.stdout();
    assert!(
        new.contains("snapcount: memory mismatch at 0xa00000\n"),
        "{new}"
    );
    assert_eq!(status.code(), Some(65), "{new}\nstderr: {}", r.stderr());
}

/// The stream checks themselves (no VM): a cut mid-line joins, while a gap, a
/// repeat, a restart or a doubled byte at the cut fails.
#[test]
fn the_stream_check_accepts_a_clean_cut_only() {
    let old = "snapcount: ready 16 MiB\nsnapcount: 1 verified 0\nsnapcount: 2 veri";
    assert_eq!(
        assert_continues(old, "fied 0\nsnapcount: 3 verified 1\n"),
        ((1, 0), (3, 1))
    );
    for bad in [
        "fied 0\nsnapcount: 4 verified 1\n",                  // gap
        "fied 0\nsnapcount: 2 verified 0\n",                  // repeat
        "ffied 0\nsnapcount: 3 verified 0\n",                 // a byte twice
        "snapcount: ready 16 MiB\nsnapcount: 1 verified 0\n", // restart
        "fied 0\nsnapcount: 3 verified 0\nsnapcount: 3 verified 0\n", // a line twice
    ] {
        let r = std::panic::catch_unwind(|| assert_continues(old, bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
    let blk = "snapblk: ready capacity 4096\nsnapblk: 64 done\nsnapblk: 12";
    assert_eq!(
        blk_lines(&format!("{blk}8 done\nsnapblk: finished 128\n")),
        (vec![64, 128], Some(128))
    );
    for bad in ["8 done\nsnapblk: 128 done\n", "8 done\nsnapblk: 256 done\n"] {
        let joined = format!("{blk}{bad}");
        assert!(
            std::panic::catch_unwind(|| blk_lines(&joined)).is_err(),
            "{bad:?}"
        );
    }
}
