//! Unit tests of the jailed restore's resources: the checks, the rewritten config,
//! the labels planned, Firecracker's mode, and the room made for snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::mcs::Categories;
use crate::profile::Profile;
use crate::resources::open_all;

const MIB: usize = 1 << 20;

/// A scratch directory with a 2 MiB memory file, a snapshot file, a disk and a
/// config restoring them (`extra` merged into its `snapshot-load`).
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let dir = crate::mcs::tests::tempdir(tag);
        std::fs::write(dir.join("vm.snap"), b"CAISSNAP state").unwrap();
        std::fs::write(dir.join("vm.mem"), vec![0u8; 2 * MIB]).unwrap();
        std::fs::write(dir.join("root.ext4"), vec![0u8; 4096]).unwrap();
        Self { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes a config whose `snapshot-load` is `load` and returns its path.
    fn config(&self, load: serde_json::Value) -> PathBuf {
        let cfg = serde_json::json!({
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 2},
            "drives": [{"drive_id": "root", "path_on_host": self.p("root.ext4"), "is_root_device": true}],
            "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap-a"}],
            "vsock": {"guest_cid": 3, "uds_path": "/somewhere/a.sock"},
            "snapshot-load": load,
        });
        let path = self.dir.join("vm.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        path
    }

    fn load(&self) -> serde_json::Value {
        serde_json::json!({
            "snapshot_path": self.p("vm.snap"),
            "mem_backend": {"backend_type": "File", "backend_path": self.p("vm.mem")},
            "resume_vm": true,
        })
    }

    fn open(&self, load: serde_json::Value) -> Result<crate::resources::Resources, String> {
        open_all(&self.config(load), std::slice::from_ref(&self.dir)).map_err(|e| e.to_string())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn snapshot_files_are_read_only_resources_and_the_config_names_the_jails() {
    let f = Fixture::new("snap-rewrite");
    let mut load = f.load();
    load["network_overrides"] = serde_json::json!([{"iface_id": "eth0", "host_dev_name": "tap-b"}]);
    load["vsock_override"] = serde_json::json!({"uds_path": "/run/clone-2/v2.sock"});
    let res = f.open(load).unwrap();
    // No kernel: a restore's kernel is in the snapshot's memory.
    let kinds: Vec<Kind> = res.files.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [Kind::Drive, Kind::Snapshot, Kind::SnapshotMemory]);
    let snap = &res.files[1];
    let mem = &res.files[2];
    assert_eq!(snap.jail_path, Path::new("/res/snapshot-vm.snap"));
    assert_eq!(mem.jail_path, Path::new("/res/memory-vm.mem"));
    assert!(!snap.writable && !mem.writable);
    assert_eq!(snap.field, "snapshot-load.snapshot_path");
    assert_eq!(mem.field, "snapshot-load.mem_backend.backend_path");
    assert_eq!(mem.size, 2 * MIB as u64);
    // The fds name the files checked.
    assert_eq!(
        crate::resources::dev_ino(&mem.fd_path()),
        crate::resources::dev_ino(&f.dir.join("vm.mem"))
    );
    // The rewritten config: jail paths only, the rest of the body unchanged.
    let v: serde_json::Value = serde_json::from_str(&res.jail_config).unwrap();
    let l = &v["snapshot-load"];
    assert_eq!(l["snapshot_path"], "/res/snapshot-vm.snap");
    assert_eq!(l["mem_backend"]["backend_path"], "/res/memory-vm.mem");
    assert_eq!(l["mem_backend"]["backend_type"], "File");
    assert_eq!(l["resume_vm"], true);
    assert_eq!(l["vsock_override"]["uds_path"], "/vsock/v2.sock");
    assert_eq!(l["network_overrides"][0]["host_dev_name"], "tap-b");
    assert_eq!(v["vsock"]["uds_path"], "/vsock/a.sock");
    assert!(
        !res.jail_config.contains(&f.dir.display().to_string()),
        "{}",
        res.jail_config
    );
    // The socket the VMM binds is the override's; both taps go to the VM.
    assert_eq!(res.vsock_name.as_deref(), Some("v2.sock"));
    assert_eq!(res.taps, ["tap-a", "tap-b"]);
    // The VMM's parser takes the rewritten config back, and its own rules pass.
    let cfg = caisson::config::VmConfig::from_json(&res.jail_config).unwrap();
    assert_eq!(
        cfg.drives[0].path_on_host,
        Path::new("/res/drive0-root.ext4")
    );
    let (p, deprecated) = cfg.snapshot_load.unwrap().into_params().unwrap();
    assert_eq!(p.snapshot_path, Path::new("/res/snapshot-vm.snap"));
    assert_eq!(p.mem_file_path, Path::new("/res/memory-vm.mem"));
    assert!(!deprecated && p.resume_vm);
}

#[test]
fn the_deprecated_mem_file_path_is_rewritten_too() {
    let f = Fixture::new("snap-deprecated");
    let load = serde_json::json!({"snapshot_path": f.p("vm.snap"), "mem_file_path": f.p("vm.mem")});
    let res = f.open(load).unwrap();
    let v: serde_json::Value = serde_json::from_str(&res.jail_config).unwrap();
    assert_eq!(v["snapshot-load"]["mem_file_path"], "/res/memory-vm.mem");
    assert!(v["snapshot-load"].get("mem_backend").is_none());
    assert_eq!(res.files[2].field, "snapshot-load.mem_file_path");
}

#[test]
fn a_symlink_is_resolved_once_and_must_stay_under_the_roots() {
    let f = Fixture::new("snap-symlink");
    std::os::unix::fs::symlink(f.dir.join("vm.snap"), f.dir.join("latest.snap")).unwrap();
    let mut load = f.load();
    load["snapshot_path"] = f.p("latest.snap").into();
    let res = f.open(load).unwrap();
    assert_eq!(res.files[1].host_path, f.dir.join("vm.snap"));
    // A link out of the roots is refused, naming the field.
    std::os::unix::fs::symlink("/etc/passwd", f.dir.join("evil.snap")).unwrap();
    let mut load = f.load();
    load["snapshot_path"] = f.p("evil.snap").into();
    let err = f.open(load).unwrap_err();
    assert!(
        err.contains("snapshot-load.snapshot_path")
            && err.contains("outside the allowed resource roots"),
        "{err}"
    );
}

#[test]
fn bad_snapshot_inputs_are_refused_naming_the_field() {
    let f = Fixture::new("snap-bad");
    std::fs::write(f.dir.join("empty.snap"), b"").unwrap();
    std::fs::write(f.dir.join("small.mem"), vec![0u8; MIB]).unwrap();
    std::fs::write(f.dir.join("suid.snap"), b"x").unwrap();
    std::fs::set_permissions(
        f.dir.join("suid.snap"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::create_dir(f.dir.join("dir.snap")).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut l = f.load();
        l[key] = value;
        l
    };
    let mem = |path: String| serde_json::json!({"backend_type": "File", "backend_path": path});
    let cases = [
        (
            with("mem_file_path", f.p("vm.mem").into()),
            "either mem_backend or mem_file_path exclusively",
        ),
        (
            serde_json::json!({"snapshot_path": f.p("vm.snap")}),
            "either mem_backend or mem_file_path is required",
        ),
        (
            with(
                "mem_backend",
                serde_json::json!({"backend_type": "Uffd", "backend_path": "/u.sock"}),
            ),
            "snapshot-load.mem_backend.backend_type",
        ),
        (
            with("mem_backend", mem(f.p("small.mem"))),
            "is 1048576 bytes, but machine-config.mem_size_mib 2",
        ),
        (with("snapshot_path", f.p("empty.snap").into()), "is empty"),
        (with("snapshot_path", f.p("nope.snap").into()), "nope.snap"),
        (
            with("snapshot_path", f.p("dir.snap").into()),
            "not a regular file",
        ),
        (
            with("snapshot_path", f.p("suid.snap").into()),
            "set-user-ID",
        ),
        (
            with("snapshot_path", f.p("vm.mem").into()),
            "is the snapshot file itself",
        ),
        (
            with("mem_backend", mem(f.p("root.ext4"))),
            "is also drives[0].path_on_host, which the VM writes",
        ),
        (
            with(
                "network_overrides",
                serde_json::json!([{"iface_id": "eth0", "host_dev_name": "../x"}]),
            ),
            "snapshot-load.network_overrides[0].host_dev_name",
        ),
        (with("bogus", 1.into()), "bogus"),
    ];
    for (load, want) in cases {
        let err = f.open(load.clone()).unwrap_err();
        assert!(
            err.contains(want),
            "{load}: {err} does not contain {want:?}"
        );
    }
    // Without snapshot-load the kernel is still required.
    let path = f.dir.join("boot.json");
    std::fs::write(&path, r#"{"machine-config": {"mem_size_mib": 2}}"#).unwrap();
    let err = open_all(&path, std::slice::from_ref(&f.dir))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernel_image_path"), "{err}");
}

/// The labels planned: the shared read-only label, without the VM's categories,
/// for both snapshot files (every clone reads them at once); the VM's own for
/// its writable disk. (Applied only where SELinux is enabled.)
#[test]
fn snapshot_files_get_the_shared_label_without_categories() {
    let f = Fixture::new("snap-labels");
    let res = f.open(f.load()).unwrap();
    let s = Profile::load("strict").unwrap().selinux;
    let recs = crate::labels::file_records(&s, Categories { a: 7, b: 9 }, &res.files, false);
    let by_kind = |k: Kind| recs.iter().find(|r| r.kind == k).unwrap();
    let shared = "system_u:object_r:caisson_image_ro_t:s0";
    assert_eq!(by_kind(Kind::Snapshot).label, shared);
    assert_eq!(by_kind(Kind::SnapshotMemory).label, shared);
    assert_eq!(
        by_kind(Kind::Drive).label,
        "system_u:object_r:caisson_image_t:s0:c7,c9"
    );
    // Another VM's pair plans the very same label for the snapshot files.
    let other = crate::labels::file_records(&s, Categories { a: 1, b: 2 }, &res.files, false);
    assert_eq!(other[1].label, recs[1].label);
    assert!(recs.iter().all(|r| !r.label_applied));
}

#[test]
fn fsize_makes_room_for_a_memory_file_only_with_the_api() {
    let f = Fixture::new("snap-fsize");
    let res = f.open(f.load()).unwrap();
    assert_eq!(crate::api_jail::fsize_basis(false, &res), 4096);
    assert_eq!(crate::api_jail::fsize_basis(true, &res), 2 * MIB as u64);
}

/// Firecracker's mode: a `snapshot-load` in the VMM's own config is read in the
/// jail root; its files are resolved there (never above it) and read-only.
#[test]
fn firecracker_mode_resolves_snapshot_files_in_the_jail_root() {
    let base = crate::mcs::tests::tempdir("snap-fc");
    let root = base.join("firecracker/vm1/root");
    std::fs::create_dir_all(root.join("snap")).unwrap();
    std::fs::write(root.join("snap/vm.snap"), b"s").unwrap();
    std::fs::write(root.join("snap/vm.mem"), vec![0u8; 4096]).unwrap();
    let write = |load: serde_json::Value| {
        let cfg = serde_json::json!({"machine-config": {"mem_size_mib": 2}, "snapshot-load": load});
        std::fs::write(root.join("fc.json"), cfg.to_string()).unwrap();
    };
    write(serde_json::json!({
        "snapshot_path": "/snap/vm.snap",
        "mem_backend": {"backend_type": "File", "backend_path": "snap/vm.mem"},
        "vsock_override": {"uds_path": "/v.sock"},
    }));
    let res = crate::fcmode::open_config(&root, "/fc.json").unwrap();
    let files: Vec<(Kind, &Path, bool)> = res
        .files
        .iter()
        .map(|r| (r.kind, r.jail_path.as_path(), r.writable))
        .collect();
    assert_eq!(
        files,
        [
            (Kind::Config, Path::new("/fc.json"), false),
            (Kind::Snapshot, Path::new("/snap/vm.snap"), false),
            (Kind::SnapshotMemory, Path::new("/snap/vm.mem"), false),
        ]
    );
    assert_eq!(res.vsock_name.as_deref(), Some("v.sock"));
    write(
        serde_json::json!({"snapshot_path": "/../../../../etc/passwd", "mem_file_path": "/snap/vm.mem"}),
    );
    let err = crate::fcmode::open_config(&root, "/fc.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("snapshot-load.snapshot_path") && err.contains("escapes the jail root"),
        "{err}"
    );
    write(serde_json::json!({"snapshot_path": "/snap/vm.snap"}));
    let err = crate::fcmode::open_config(&root, "/fc.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("either mem_backend or mem_file_path is required"),
        "{err}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}
