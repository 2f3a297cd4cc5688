//! Hot-plugging a disk onto a placeholder drive, as Kata does with Firecracker:
//! the VM boots with a small placeholder file on `drive_0`, then
//! `PATCH /drives/drive_0 {drive_id, path_on_host}` swaps in the real file.
//! The blk_hotplug guest (tests/guests/blk_hotplug.c) polls the capacity in
//! virtio-blk config space and ConfigGeneration, and reads the new disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::Vmm;
use common::*;

const NOT_BEFORE_BOOT: &str =
    "The requested operation is not supported before starting the microVM.";
const MIB: usize = 1 << 20;
/// From spawn to the guest's first line; the guest's own wait is 20 s.
const BOOT_LIMIT: Duration = Duration::from_secs(20);

/// A file of `size` bytes whose first bytes are `head`.
fn image(dir: &Path, name: &str, size: usize, head: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut bytes = vec![0u8; size];
    bytes[..head.len()].copy_from_slice(head);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn drive_body(id: &str, path: &Path) -> String {
    drive_body_ro(id, path, false)
}

fn drive_body_ro(id: &str, path: &Path, read_only: bool) -> String {
    serde_json::json!({"drive_id": id, "path_on_host": path,
        "is_root_device": false, "is_read_only": read_only})
    .to_string()
}

fn patch_body(id: &str, path: &Path) -> String {
    serde_json::json!({"drive_id": id, "path_on_host": path}).to_string()
}

/// Configures and starts the blk_hotplug guest on `v` with `placeholder` as
/// drive_0; returns the generation of its first line (capacity 2048 sectors).
fn boot_with_placeholder(v: &mut Vmm, placeholder: &Path) -> u32 {
    boot_guest(v, placeholder, "console=ttyS0", false)
}

fn boot_guest(v: &mut Vmm, placeholder: &Path, boot_args: &str, read_only: bool) -> u32 {
    require_kvm();
    let mut c = v.client();
    c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 64}"#,
    )
    .assert_no_content();
    let boot = serde_json::json!({"kernel_image_path": guest("blk_hotplug"),
        "boot_args": boot_args});
    c.put("/boot-source", &boot.to_string()).assert_no_content();
    c.put(
        "/drives/drive_0",
        &drive_body_ro("drive_0", placeholder, read_only),
    )
    .assert_no_content();
    c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
        .assert_no_content();
    let first = "hotplug: capacity 2048 sectors generation ";
    let out = v.wait_for_text(&v.path("stdout"), first, BOOT_LIMIT);
    let line = out.lines().find(|l| l.starts_with(first)).unwrap();
    line[first.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad generation in {line:?}: {e}"))
}

/// The guest's `hotplug:` lines.
fn hotplug_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("hotplug:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn patch_drive_swaps_in_a_bigger_file_and_the_guest_sees_it() {
    let mut v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let disk = image(v.dir.path(), "disk.img", 2 * MIB, b"HOTPLUG!");
    let g0 = boot_with_placeholder(&mut v, &placeholder);

    let mut c = v.client();
    c.patch("/drives/drive_0", &patch_body("drive_0", &disk))
        .assert_no_content();
    let status = v.wait_exit(Duration::from_secs(30));
    let out = v.stdout();
    assert_eq!(status.code(), Some(0), "{out}\nstderr: {}", v.stderr());
    assert_eq!(
        hotplug_lines(&out),
        [
            format!("hotplug: capacity 2048 sectors generation {g0}"),
            format!("hotplug: capacity 4096 sectors generation {}", g0 + 1),
            // InterruptStatus bit 1: the configuration-change interrupt.
            "hotplug: interrupt status 2".to_string(),
            "hotplug: sector 0 HOTPLUG!".to_string(),
            "hotplug: last sector 4095 status 0".to_string(),
        ],
        "{out}"
    );
}

#[test]
fn refused_patches_change_nothing_in_the_guest() {
    let mut v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let disk = image(v.dir.path(), "disk.img", 2 * MIB, b"HOTPLUG!");
    let g0 = boot_with_placeholder(&mut v, &placeholder);
    let mut c = v.client();

    // A file that is not there: 400 naming it, and the drive keeps its file.
    let missing = v.path("no-such.img");
    let r = c.patch("/drives/drive_0", &patch_body("drive_0", &missing));
    r.assert_fault_contains(missing.to_str().unwrap());
    r.assert_fault_contains("drive_0");
    // An unknown drive: 400 naming it.
    c.patch("/drives/nosuch", &patch_body("nosuch", &disk))
        .assert_fault_contains("nosuch");
    let cfg = c.get("/vm/config");
    assert_eq!(cfg.status, 200, "{cfg:?}");
    let j = cfg.json();
    assert_eq!(j["drives"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(
        j["drives"][0]["path_on_host"],
        placeholder.to_str().unwrap(),
        "{j}"
    );
    v.assert_serving("Running");

    // Then a good one: the guest's next change is this one, one generation on
    // (had a refused PATCH bumped the generation, the guest would have printed
    // "capacity unchanged" or a later generation).
    c.patch("/drives/drive_0", &patch_body("drive_0", &disk))
        .assert_no_content();
    let status = v.wait_exit(Duration::from_secs(30));
    let out = v.stdout();
    assert_eq!(status.code(), Some(0), "{out}\nstderr: {}", v.stderr());
    let lines = hotplug_lines(&out);
    assert_eq!(
        lines[..2],
        [
            format!("hotplug: capacity 2048 sectors generation {g0}"),
            format!("hotplug: capacity 4096 sectors generation {}", g0 + 1),
        ],
        "{out}"
    );
    assert!(
        lines.contains(&"hotplug: sector 0 HOTPLUG!".to_string()),
        "{out}"
    );
}

#[test]
fn patch_drive_before_boot_is_refused() {
    let v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let disk = image(v.dir.path(), "disk.img", 2 * MIB, b"HOTPLUG!");
    let mut c = v.client();
    // Before the drive exists, and after it does.
    c.patch("/drives/drive_0", &patch_body("drive_0", &disk))
        .assert_fault(NOT_BEFORE_BOOT);
    c.put("/drives/drive_0", &drive_body("drive_0", &placeholder))
        .assert_no_content();
    c.patch("/drives/drive_0", &patch_body("drive_0", &disk))
        .assert_fault(NOT_BEFORE_BOOT);
    let j = c.get("/vm/config").json();
    assert_eq!(
        j["drives"][0]["path_on_host"],
        placeholder.to_str().unwrap(),
        "{j}"
    );
}

#[test]
fn a_same_size_file_bumps_the_generation_only() {
    let mut v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let same = image(v.dir.path(), "same.img", MIB, b"SAMESIZE");
    let disk = image(v.dir.path(), "disk.img", 2 * MIB, b"HOTPLUG!");
    let g0 = boot_with_placeholder(&mut v, &placeholder);
    let mut c = v.client();
    c.patch("/drives/drive_0", &patch_body("drive_0", &same))
        .assert_no_content();
    let unchanged = format!("hotplug: generation {}, capacity unchanged", g0 + 1);
    v.wait_for_text(&v.path("stdout"), &unchanged, BOOT_LIMIT);
    c.patch("/drives/drive_0", &patch_body("drive_0", &disk))
        .assert_no_content();
    let status = v.wait_exit(Duration::from_secs(30));
    let out = v.stdout();
    assert_eq!(status.code(), Some(0), "{out}\nstderr: {}", v.stderr());
    assert_eq!(
        hotplug_lines(&out)[..4],
        [
            format!("hotplug: capacity 2048 sectors generation {g0}"),
            unchanged,
            format!("hotplug: capacity 4096 sectors generation {}", g0 + 2),
            "hotplug: interrupt status 2".to_string(),
        ],
        "{out}"
    );
}

/// Without a PATCH the guest gives up: what the tests above see is the PATCH.
#[test]
fn without_a_patch_the_guest_times_out() {
    let mut v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let g0 = boot_guest(
        &mut v,
        &placeholder,
        "console=ttyS0 hotplug.wait_s=1",
        false,
    );
    let status = v.wait_exit(Duration::from_secs(30));
    let out = v.stdout();
    assert_eq!(
        hotplug_lines(&out),
        [
            format!("hotplug: capacity 2048 sectors generation {g0}"),
            "hotplug: timeout".to_string(),
        ],
        "{out}"
    );
    // The guest's status 1 on the exit port.
    assert_eq!(status.code(), Some(65), "{out}\nstderr: {}", v.stderr());
}

/// Boots the guest on a placeholder drive (read-only or not), PATCHes drive_0
/// to `target` and expects a 400 naming it, within the client's read timeout,
/// with the drive keeping its file; then checks the VMM still serves.
fn patch_is_refused(read_only: bool, target: impl FnOnce(&Path) -> PathBuf) {
    let mut v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let target = target(v.dir.path());
    boot_guest(&mut v, &placeholder, "console=ttyS0", read_only);
    let mut c = v.client();
    let r = c
        .request(
            "PATCH",
            "/drives/drive_0",
            Some(&patch_body("drive_0", &target)),
        )
        .unwrap_or_else(|e| {
            panic!(
                "PATCH onto {} got no answer ({e}): the VMM thread is stuck; threads: {:?}",
                target.display(),
                common::http::thread_names(v.pid())
            )
        });
    r.assert_fault_contains(target.to_str().unwrap());
    v.assert_serving("Running");
    let j = c.get("/vm/config").json();
    assert_eq!(
        j["drives"][0]["path_on_host"],
        placeholder.to_str().unwrap(),
        "{j}"
    );
}

fn fifo(dir: &Path) -> PathBuf {
    let p = dir.join("disk.fifo");
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    p
}

/// As `PUT /drives` refuses it ("not a regular file"): a FIFO is no disk.
#[test]
fn patch_drive_onto_a_fifo_is_refused() {
    patch_is_refused(false, fifo);
}

/// Opening a FIFO read-only blocks until a writer comes: the VMM thread must
/// not wait for one.
#[test]
fn patch_read_only_drive_onto_a_fifo_is_refused_without_hanging() {
    patch_is_refused(true, fifo);
}

/// A directory opens read-only; it is no disk either.
#[test]
fn patch_read_only_drive_onto_a_directory_is_refused() {
    patch_is_refused(true, |d| {
        let p = d.join("dir");
        std::fs::create_dir(&p).unwrap();
        p
    });
}

/// Before boot, `PUT /drives` checks the file on the VMM thread: a read-only
/// FIFO must get its "not a regular file" 400, not block the thread in open().
#[test]
fn put_read_only_drive_onto_a_fifo_is_refused_without_hanging() {
    let v = Vmm::spawn("hp", &[]);
    let f = fifo(v.dir.path());
    let mut c = v.client();
    let r = c
        .request(
            "PUT",
            "/drives/drive_0",
            Some(&drive_body_ro("drive_0", &f, true)),
        )
        .unwrap_or_else(|e| {
            panic!("PUT /drives onto a FIFO got no answer ({e}): the VMM thread is stuck")
        });
    r.assert_fault_contains(f.to_str().unwrap());
    r.assert_fault_contains("not a regular file");
}

/// A loop device over an image, detached when dropped.
struct Loop(String);

impl Loop {
    fn over(image: &Path) -> Self {
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .expect("run losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.0])
            .status();
    }
}

/// Kata hot-plugs host block devices, not files: a loop device as the new
/// backing is sized by its end offset (its metadata length is 0).
#[test]
fn patch_drive_onto_a_block_device_and_the_guest_sees_its_size() {
    let mut v = Vmm::spawn("hp", &[]);
    let placeholder = image(v.dir.path(), "placeholder.img", MIB, b"");
    let backing = image(v.dir.path(), "loop.img", 3 * MIB, b"LOOPDEV!");
    let dev = Loop::over(&backing);
    let g0 = boot_with_placeholder(&mut v, &placeholder);
    let mut c = v.client();
    c.patch("/drives/drive_0", &patch_body("drive_0", Path::new(&dev.0)))
        .assert_no_content();
    let status = v.wait_exit(Duration::from_secs(30));
    let out = v.stdout();
    assert_eq!(status.code(), Some(0), "{out}\nstderr: {}", v.stderr());
    let lines = hotplug_lines(&out);
    assert_eq!(
        lines[1],
        format!("hotplug: capacity 6144 sectors generation {}", g0 + 1),
        "{out}"
    );
    assert!(
        lines.contains(&"hotplug: sector 0 LOOPDEV!".to_string()),
        "{out}"
    );
}
