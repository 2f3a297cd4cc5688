//! The jail's Landlock rules, bind mounts and device nodes held to the VMM's
//! sandbox declarations in both directions, for each kind of jail: every
//! declaration whose value the config (or the mode) gives yields the places
//! listed here, each rule granting at least the declared access; and every rule
//! and mount the child makes is one of those places.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use caisson::devices::{Access, DeviceNode, PathSource};
use landlock::{AccessFs, BitFlags};

use super::*;
use crate::landlock_rules::access_for;
use crate::resources::open_all;

/// A mount, as the tables name it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    /// A resource bound there, writable or not.
    File(PathBuf, bool),
    Dir(PathBuf),
    Dev(PathBuf),
}

/// One place: its rule (path, grant) and its mount.
type Want = (Option<(PathBuf, Grant)>, Option<M>);

/// A place with a rule.
fn at(path: &str, grant: Grant, mount: Option<M>) -> Vec<Want> {
    vec![(Some((path.into(), grant)), mount)]
}

fn file(path: &str, writable: bool) -> Option<M> {
    Some(M::File(path.into(), writable))
}

/// Every source, so that a table cannot want places for one nobody declares.
const SOURCES: [PathSource; 19] = [
    PathSource::Device(DeviceNode::Kvm),
    PathSource::Device(DeviceNode::NetTun),
    PathSource::Executable,
    PathSource::ConfigFile,
    PathSource::SeccompFilter,
    PathSource::ApiSocket,
    PathSource::Kernel,
    PathSource::Initrd,
    PathSource::ReadOnlyDrive,
    PathSource::WritableDrive,
    PathSource::DriveUpdate,
    PathSource::VsockSocket,
    PathSource::VsockPeer,
    PathSource::LogFile,
    PathSource::MetricsFile,
    PathSource::SerialFile,
    PathSource::SnapshotState,
    PathSource::SnapshotMemory,
    PathSource::SnapshotCreate,
];

/// Fails to compile when a source is added, until [`SOURCES`] lists it.
#[allow(dead_code)]
fn listed(s: PathSource) {
    match s {
        PathSource::Device(DeviceNode::Kvm | DeviceNode::NetTun)
        | PathSource::Executable
        | PathSource::ConfigFile
        | PathSource::SeccompFilter
        | PathSource::ApiSocket
        | PathSource::Kernel
        | PathSource::Initrd
        | PathSource::ReadOnlyDrive
        | PathSource::WritableDrive
        | PathSource::DriveUpdate
        | PathSource::VsockSocket
        | PathSource::VsockPeer
        | PathSource::LogFile
        | PathSource::MetricsFile
        | PathSource::SerialFile
        | PathSource::SnapshotState
        | PathSource::SnapshotMemory
        | PathSource::SnapshotCreate => {}
    }
}

/// The Landlock access `access` takes at least.
fn needed(need: PathNeed) -> BitFlags<AccessFs> {
    let base = match need.access {
        Access::Read => AccessFs::ReadFile.into(),
        Access::ReadWrite => AccessFs::ReadFile | AccessFs::WriteFile,
        Access::Write => AccessFs::WriteFile.into(),
        Access::Exec => AccessFs::Execute.into(),
        Access::Bind => AccessFs::MakeSock.into(),
        Access::Create => AccessFs::MakeReg | AccessFs::WriteFile,
        Access::Connect => BitFlags::empty(),
    };
    match need.source {
        // KVM and the tap are driven by ioctls.
        PathSource::Device(_) => base | AccessFs::IoctlDev,
        _ => base,
    }
}

fn as_want(res: &Resources, (rule, mount): (Option<Rule>, Option<Mount>)) -> Want {
    let mount = mount.map(|m| match m {
        Mount::File {
            index,
            path,
            writable,
        } => {
            // The index names the resource at that path, with its writability.
            assert_eq!(res.files[index].jail_path, path);
            assert!(!writable || res.files[index].writable, "{path:?}");
            M::File(path, writable)
        }
        Mount::WritableDir(d) => M::Dir(d),
        Mount::Device { path, .. } => M::Dev(path),
    });
    (rule.map(|r| (r.path, r.grant)), mount)
}

/// Holds `view`'s plan to `want` (the places of each declared source) both ways.
fn check(view: &JailView<'_>, want: impl Fn(PathSource) -> Vec<Want>) {
    let mut wanted_rules = Vec::new();
    let mut wanted_mounts = Vec::new();
    for needs in caisson::sandbox::all() {
        for need in needs.paths {
            let got: Vec<_> = resolve(*need, view)
                .into_iter()
                .map(|p| as_want(view.res, p))
                .collect();
            let w = want(need.source);
            assert_eq!(got, w, "{}: {}", needs.owner, need.source.name());
            for (rule, mount) in w {
                if let Some((path, grant)) = rule {
                    assert!(
                        access_for(grant).contains(needed(*need)),
                        "{}: {} needs {:?}, {grant:?} at {path:?} gives {:?}",
                        needs.owner,
                        need.source.name(),
                        needed(*need),
                        access_for(grant)
                    );
                    wanted_rules.push(Rule { path, grant });
                }
                wanted_mounts.extend(mount);
            }
        }
    }
    // Every file of the config, and every place wanted, answers a declaration.
    let declared = caisson::sandbox::all_paths();
    for source in SOURCES {
        assert!(
            want(source).is_empty() || declared.iter().any(|(_, p)| p.source == source),
            "{} is wanted but declared by nobody",
            source.name()
        );
    }
    for f in &view.res.files {
        let source = source_of(f);
        assert!(
            declared.iter().any(|(_, p)| p.source == source),
            "{} ({}) is declared by nobody",
            f.field,
            source.name()
        );
    }
    let plan = Plan::new(view);
    // Every rule the child applies is a wanted one, and every wanted one is applied.
    let rules = plan.rules();
    for r in &rules {
        assert!(wanted_rules.contains(r), "{r:?} is declared by nobody");
    }
    for r in &wanted_rules {
        assert!(rules.contains(r), "{r:?} is declared but not applied");
    }
    // The same for the mounts and device nodes.
    let mounts: Vec<M> = plan
        .mounts()
        .into_iter()
        .map(|m| as_want(view.res, (None, Some(m))).1.unwrap())
        .collect();
    for m in &mounts {
        assert!(wanted_mounts.contains(m), "{m:?} is declared by nobody");
    }
    for m in &wanted_mounts {
        assert!(mounts.contains(m), "{m:?} is declared but not made");
    }
    for (i, m) in mounts.iter().enumerate() {
        assert!(!mounts[i + 1..].contains(m), "{m:?} twice");
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A booting config naming every kind of file, a tap and a vsock.
fn boot_config(dir: &Path) -> PathBuf {
    write(dir, "vmlinux", b"k");
    write(dir, "initrd.cpio", b"i");
    write(dir, "rw.img", &[0; 512]);
    write(dir, "ro.img", b"r");
    let cfg = dir.join("vm.json");
    let body = serde_json::json!({
        "boot-source": {"kernel_image_path": dir.join("vmlinux"), "initrd_path": dir.join("initrd.cpio")},
        "drives": [
            {"drive_id": "root", "path_on_host": dir.join("rw.img"), "is_root_device": true},
            {"drive_id": "data", "path_on_host": dir.join("ro.img"), "is_root_device": false, "is_read_only": true}
        ],
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}],
        "vsock": {"guest_cid": 3, "uds_path": "/tmp/x/v.sock"},
        "logger": {"log_path": dir.join("vm.log")},
        "metrics": {"metrics_path": dir.join("vm.metrics")},
        "caisson": {"serial": dir.join("serial.txt")}
    });
    std::fs::write(&cfg, body.to_string()).unwrap();
    cfg
}

/// The places Caisson's mode gives the boot config's declarations.
fn caisson_boot(api: bool) -> impl Fn(PathSource) -> Vec<Want> {
    move |source| {
        let bound = |path, grant, writable| at(path, grant, file(path, writable));
        let dir = |path, grant| match api {
            true => at(path, grant, Some(M::Dir(path.into()))),
            false => Vec::new(),
        };
        match source {
            PathSource::Device(d) => at(d.path(), Grant::ReadWrite, Some(M::Dev(d.path().into()))),
            PathSource::Executable => at("/caisson", Grant::Exec, None),
            PathSource::ConfigFile => at("/config.json", Grant::Read, None),
            PathSource::Kernel => bound("/res/kernel-vmlinux", Grant::Read, false),
            PathSource::Initrd => bound("/res/initrd-initrd.cpio", Grant::Read, false),
            PathSource::WritableDrive => bound("/res/drive0-rw.img", Grant::ReadWrite, true),
            PathSource::ReadOnlyDrive => bound("/res/drive1-ro.img", Grant::Read, false),
            PathSource::LogFile => bound("/out/log-vm.log", Grant::ReadWrite, true),
            PathSource::MetricsFile => bound("/out/metrics-vm.metrics", Grant::ReadWrite, true),
            PathSource::SerialFile => bound("/out/serial-serial.txt", Grant::Write, true),
            PathSource::VsockSocket => {
                at("/vsock", Grant::SocketDir, Some(M::Dir("/vsock".into())))
            }
            // Connecting needs no Landlock right; the listeners are in /vsock.
            PathSource::VsockPeer => vec![(None, None)],
            PathSource::ApiSocket => dir("/run", Grant::SocketDir),
            PathSource::SnapshotCreate => dir("/snapshots", Grant::SnapshotDir),
            // A PATCH may name only the jail's files; nothing restores; the
            // jailer never passes --seccomp-filter.
            PathSource::DriveUpdate
            | PathSource::SnapshotState
            | PathSource::SnapshotMemory
            | PathSource::SeccompFilter => Vec::new(),
        }
    }
}

#[test]
fn caisson_jails_follow_the_declarations() {
    let dir = crate::mcs::tests::tempdir("plan-boot");
    let res = open_all(&boot_config(&dir), std::slice::from_ref(&dir)).unwrap();
    for api in [false, true] {
        let view = JailView {
            mode: JailMode::Caisson { api },
            exec_name: "caisson",
            res: &res,
        };
        check(&view, caisson_boot(api));
        // Every resource of the config is bound, once.
        let bound = Plan::new(&view)
            .mounts()
            .iter()
            .filter(|m| matches!(m, Mount::File { .. }))
            .count();
        assert_eq!(bound, res.files.len());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_restore_jail_binds_its_snapshot_read_only_and_nothing_it_lacks() {
    let dir = crate::mcs::tests::tempdir("plan-restore");
    write(&dir, "vm.snap", b"state");
    write(&dir, "vm.mem", &vec![0; 1 << 20]);
    let cfg = dir.join("vm.json");
    let body = serde_json::json!({
        "machine-config": {"mem_size_mib": 1},
        "snapshot-load": {"snapshot_path": dir.join("vm.snap"), "mem_file_path": dir.join("vm.mem")}
    });
    std::fs::write(&cfg, body.to_string()).unwrap();
    let res = open_all(&cfg, std::slice::from_ref(&dir)).unwrap();
    let view = JailView {
        mode: JailMode::Caisson { api: false },
        exec_name: "caisson",
        res: &res,
    };
    // No tap, no vsock, no output files: no /dev/net/tun, no writable /vsock.
    check(&view, |source| {
        let ro = |path| at(path, Grant::Read, file(path, false));
        match source {
            PathSource::SnapshotState => ro("/res/snapshot-vm.snap"),
            PathSource::SnapshotMemory => ro("/res/memory-vm.mem"),
            PathSource::Device(DeviceNode::Kvm)
            | PathSource::Executable
            | PathSource::ConfigFile => caisson_boot(false)(source),
            _ => Vec::new(),
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Firecracker-mode jail root as Kata fills it, with the config the VMM reads.
fn fc_root(tag: &str) -> (PathBuf, Resources) {
    let base = crate::mcs::tests::tempdir(tag);
    let root = base.join("firecracker/vm1/root");
    std::fs::create_dir_all(&root).unwrap();
    write(&root, "vmlinux", b"k");
    write(&root, "rootfs", b"r");
    write(&root, "drive_0", b"");
    write(&root, "logs.fifo", b"");
    let body = serde_json::json!({
        "boot-source": {"kernel_image_path": "/vmlinux"},
        "drives": [
            {"drive_id": "rootfs", "path_on_host": "/rootfs", "is_root_device": false, "is_read_only": true},
            {"drive_id": "drive_0", "path_on_host": "/drive_0", "is_root_device": false}
        ],
        "vsock": {"guest_cid": 3, "uds_path": "/kata.hvsock"},
        "logger": {"log_path": "/logs.fifo"}
    });
    std::fs::write(root.join("vm.json"), body.to_string()).unwrap();
    let res = crate::fcmode::open_config(&root, "/vm.json").unwrap();
    (base, res)
}

#[test]
fn firecracker_jails_follow_the_declarations() {
    let (base, res) = fc_root("plan-fc");
    let view = JailView {
        mode: JailMode::Firecracker,
        exec_name: "firecracker",
        res: &res,
    };
    check(&view, |source| {
        let ro = |path| at("/", Grant::JailRoot, file(path, false));
        match source {
            // The API may add a net device: the tun device is always there.
            PathSource::Device(d) => at(d.path(), Grant::ReadWrite, Some(M::Dev(d.path().into()))),
            PathSource::Executable => at("/firecracker", Grant::Exec, None),
            // Read-only files are bound over themselves, writable ones left to
            // the orchestrator (it may mount a drive over them later).
            PathSource::ConfigFile => ro("/vm.json"),
            PathSource::Kernel => ro("/vmlinux"),
            PathSource::ReadOnlyDrive => ro("/rootfs"),
            PathSource::VsockPeer => vec![(None, None)],
            // Named by the API (or the arguments) at any time, in the root.
            _ => at("/", Grant::JailRoot, None),
        }
    });
    let rules = Plan::new(&view).rules();
    assert_eq!(rules.len(), 4, "{rules:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn only_declared_devices_are_made() {
    let dir = crate::mcs::tests::tempdir("plan-devices");
    let res = open_all(&boot_config(&dir), std::slice::from_ref(&dir)).unwrap();
    fn devices(mode: JailMode, res: &Resources) -> Vec<PathBuf> {
        let view = JailView {
            mode,
            exec_name: "caisson",
            res,
        };
        Plan::new(&view).device_paths()
    }
    let with_tap = devices(JailMode::Caisson { api: false }, &res);
    assert_eq!(with_tap, [Path::new("/dev/kvm"), Path::new("/dev/net/tun")]);
    let no_tap = Resources {
        files: Vec::new(),
        taps: Vec::new(),
        ..res
    };
    let kvm_only = devices(JailMode::Caisson { api: true }, &no_tap);
    assert_eq!(kvm_only, [Path::new("/dev/kvm")]);
    assert_eq!(devices(JailMode::Firecracker, &no_tap), with_tap);
    std::fs::remove_dir_all(&dir).unwrap();
}
