//! The jail's filesystem, `<chroot-base-dir>/<exec-file name>/<id>/root` as in
//! Firecracker: prepared on the host by the jailer ([`prepare`]), then mounted and
//! pivoted into by the child in its own mount namespace ([`enter_root`]).
//!
//! Layout inside the jail:
//! `/<exec-file name>` (the VMM, 0755 root), `/config.json` (0444), `/res/*` (bind
//! mounts of kernel, initrd and disks; ro ones read-only), `/out/*` (log and serial
//! files, rw), `/vsock/` (a dir owned by the VM for its unix socket, rw with a
//! vsock device), `/dev/kvm` and `/dev/net/tun` (only with a net device), owned
//! by the VM's uid, mode 0600. `/` itself is remounted read-only and nosuid.
//! What is bound, made and left writable is [`crate::sandbox_plan`]'s.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, pivot_root, Gid, Uid};

use crate::resources::{Resource, JAIL_CONFIG, JAIL_OUT_DIR, JAIL_RES_DIR, JAIL_VSOCK_DIR};
use crate::sandbox_plan::Mount;

/// A filesystem step that failed.
#[derive(Debug, thiserror::Error)]
pub enum JailFsError {
    #[error("jail directory {path} already exists (another VM with this id, or run `caisson-jailer cleanup --id {id}`)")]
    Exists { path: PathBuf, id: String },
    #[error("invalid --exec-file {path}: {reason}")]
    ExecFile { path: PathBuf, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {errno}")]
    Sys {
        action: &'static str,
        path: PathBuf,
        errno: nix::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JailFsError {
    let path = path.to_path_buf();
    move |source| JailFsError::Io {
        action,
        path,
        source,
    }
}

fn sys(action: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> JailFsError {
    let path = path.to_path_buf();
    move |errno| JailFsError::Sys {
        action,
        path,
        errno,
    }
}

/// Where a VM's jail lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPaths {
    /// `<base>/<exec name>/<id>`
    pub jail_dir: PathBuf,
    /// `<jail_dir>/root`
    pub root: PathBuf,
    pub exec_name: String,
}

/// Firecracker's layout.
pub fn jail_paths(base: &Path, exec_file: &Path, id: &str) -> Result<JailPaths, JailFsError> {
    let exec_name = exec_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !n.starts_with('.')
        })
        .ok_or_else(|| JailFsError::ExecFile {
            path: exec_file.to_path_buf(),
            reason: "its file name must be [A-Za-z0-9._-] and not start with '.'".into(),
        })?;
    // Absolute, so that the state record names the same directory whatever the
    // cleaning process's working directory (a relative base was left behind:
    // `remove_jail_dir` refuses relative paths).
    let base = if base.as_os_str().is_empty() {
        std::env::current_dir().map_err(io("find the working directory for", base))?
    } else {
        std::path::absolute(base).map_err(io("make absolute", base))?
    };
    let jail_dir = base.join(&exec_name).join(id);
    Ok(JailPaths {
        root: jail_dir.join("root"),
        jail_dir,
        exec_name,
    })
}

fn placeholder(path: &Path) -> Result<(), JailFsError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(io("create", path))
}

/// The jail's optional directories a VM's devices need (each directory costs
/// its mkdir and rmdir on every start, ~0.1 ms each on ext4 here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Optional {
    /// `/dev/net` (a net device's `/dev/net/tun`).
    pub net: bool,
    /// `/vsock` (the vsock device's unix socket).
    pub vsock: bool,
}

/// On the host: creates the jail directory (refusing an existing one), writes
/// the rewritten config and creates the mount points: `/dev`, `/res` and `/out`
/// when a file is bound there, and what `optional` names. The vsock directory is
/// given to `vm_owner` (`None` in rootless mode, where the caller is the VM).
pub fn prepare(
    paths: &JailPaths,
    id: &str,
    exec_file: &Path,
    files: &[Resource],
    config_json: &str,
    optional: Optional,
    vm_owner: Option<(u32, u32)>,
) -> Result<(), JailFsError> {
    // `<base>/<exec name>` is made only when missing.
    let parent = paths.jail_dir.parent().unwrap_or(&paths.jail_dir);
    let made = crate::state::in_dir(parent, || {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&paths.jail_dir)
    });
    match made {
        Ok(()) => {}
        Err(crate::state::InDirError::Dir(e)) => return Err(io("create", parent)(e)),
        Err(crate::state::InDirError::Op(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(JailFsError::Exists {
                path: paths.jail_dir.clone(),
                id: id.to_string(),
            })
        }
        Err(crate::state::InDirError::Op(e)) => return Err(io("create", &paths.jail_dir)(e)),
    }
    let mkdir = |rel: &str, mode: u32| -> Result<PathBuf, JailFsError> {
        let p = paths.root.join(rel.trim_start_matches('/'));
        std::fs::DirBuilder::new()
            .mode(mode)
            .recursive(true)
            .create(&p)
            .map_err(io("create", &p))?;
        if crate::process::needs_chmod(mode, crate::process::umask()) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(io("chmod", &p))?;
        }
        Ok(p)
    };
    mkdir("", 0o755)?;
    let under = |dir: &str| files.iter().any(|f| f.jail_path.starts_with(dir));
    for dir in [JAIL_RES_DIR, JAIL_OUT_DIR] {
        if under(dir) {
            mkdir(dir, 0o755)?;
        }
    }
    mkdir(if optional.net { "dev/net" } else { "dev" }, 0o755)?;
    if optional.vsock {
        let vsock = mkdir(JAIL_VSOCK_DIR, 0o700)?;
        if let Some((uid, gid)) = vm_owner {
            chown(&vsock, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(sys("chown", &vsock))?;
        }
    }

    crate::timing::mark("6 jail directories made");
    check_exec_file(exec_file).map_err(|reason| JailFsError::ExecFile {
        path: exec_file.to_path_buf(),
        reason,
    })?;
    // (The exec file's copy is linked in by `ExecCopy::place`.)

    let cfg = paths.root.join(JAIL_CONFIG.trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&cfg)
        .map_err(io("create", &cfg))?;
    f.write_all(config_json.as_bytes())
        .map_err(io("write", &cfg))?;

    for r in files {
        placeholder(
            &paths
                .root
                .join(r.jail_path.strip_prefix("/").unwrap_or(&r.jail_path)),
        )?;
    }
    Ok(())
}

/// Why `exec_file` cannot be the VMM, if it cannot: checked before the jail is
/// built (the copy, [`crate::exec_copy`], is under way meanwhile).
pub fn check_exec_file(exec_file: &Path) -> Result<(), String> {
    match std::fs::metadata(exec_file) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err("not a regular file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// In the child's new mount namespace: make the plan's `mounts` (bind the
/// resources `files`, keep directories writable, create the devices) and
/// pivot_root into the jail; the returned [`OldRoot`]'s detach then takes the
/// old root off and makes `/` read-only.
///
/// `orchestrator` (Firecracker's mode): the jail root is the orchestrator's, as in
/// Firecracker's jailer (chroot.rs): mounts are slaves, so what the orchestrator
/// mounts into the root later (Kata's hot-plugged drives) reaches the jail but
/// nothing goes back; the root is bound with its submounts; the plan binds each
/// read-only file over itself; `/` stays writable, for the VMM's sockets, with
/// Landlock allowing no other new file. Otherwise the plan's writable directories
/// (`/vsock`, and with `--api` `/run` and `/snapshots`) stay writable when `/`
/// becomes read-only.
pub fn enter_root(
    root: &Path,
    files: &[Resource],
    mounts: &[Mount],
    (uid, gid): (u32, u32),
    rootless: bool,
    orchestrator: bool,
) -> Result<OldRoot, JailFsError> {
    let none: Option<&str> = None;
    if orchestrator {
        mount(none, "/", none, MsFlags::MS_SLAVE | MsFlags::MS_REC, none)
            .map_err(sys("make slave", Path::new("/")))?;
        mount(
            Some(root),
            root,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(sys("bind-mount", root))?;
    } else {
        // Nothing mounted in here propagates back to the host, nor the other way.
        mount(none, "/", none, MsFlags::MS_PRIVATE | MsFlags::MS_REC, none)
            .map_err(sys("make private", Path::new("/")))?;
        mount(Some(root), root, none, MsFlags::MS_BIND, none).map_err(sys("bind-mount", root))?;
    }

    for m in mounts {
        match m {
            Mount::File {
                index,
                path,
                writable,
            } => {
                let r = files.get(*index).ok_or_else(|| JailFsError::Io {
                    action: "bind (no such resource)",
                    path: path.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
                bind_file(r, &in_root(root, path), *writable)?;
            }
            Mount::WritableDir(dir) => writable_dir(&in_root(root, dir))?,
            Mount::Device { path, major, minor } => device(
                &in_root(root, path),
                path,
                (*major, *minor),
                (uid, gid),
                rootless,
            )?,
        }
    }
    crate::timing::mark("child: 6 bound and devices made");
    std::env::set_current_dir(root).map_err(io("chdir", root))?;
    // pivot_root(".", ".") stacks the old root on the new one, and the detach
    // takes it off again (pivot_root(2)): no `old_root` directory to make and
    // remove in the jail's (host) filesystem, which cost ~0.3 ms here.
    pivot_root(".", ".").map_err(sys("pivot_root into", root))?;
    crate::timing::mark("child: 6 pivoted");
    Ok(OldRoot {
        root: root.to_path_buf(),
        orchestrator,
    })
}

/// The old root, still stacked on the jail's after [`enter_root`]'s pivot:
/// [`OldRoot::detach`] takes it off. The detach waits out an RCU grace period,
/// which stretches (0.03 -> 0.25 ms here) while the jailer makes the cgroup on
/// the other CPU; the child therefore detaches after its release, when the
/// jailer is idle, and does what needs no filesystem in between (nothing in
/// between resolves a path: the cgroup is joined through fds opened before).
#[must_use = "the old root stays reachable until it is detached"]
#[derive(Debug)]
pub struct OldRoot {
    root: PathBuf,
    orchestrator: bool,
}

impl OldRoot {
    /// Detaches the old root, then makes `/` read-only (nosuid only in
    /// Firecracker's mode). The working directory must still be the jail's
    /// root, where [`enter_root`] left it.
    pub fn detach(self) -> Result<(), JailFsError> {
        let (root, orchestrator) = (&self.root, self.orchestrator);
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root from", root))?;
        std::env::set_current_dir("/").map_err(io("chdir", Path::new("/")))?;
        crate::timing::mark("child: 6 old root detached");
        remount_root(orchestrator)
    }
}

fn remount_root(orchestrator: bool) -> Result<(), JailFsError> {
    let none: Option<&str> = None;
    let read_only = if orchestrator {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(
        none,
        "/",
        none,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | read_only | MsFlags::MS_NOSUID,
        none,
    )
    .map_err(sys(
        if orchestrator {
            "remount nosuid"
        } else {
            "remount read-only"
        },
        Path::new("/"),
    ))?;
    Ok(())
}

fn in_root(root: &Path, jail_path: &Path) -> PathBuf {
    root.join(jail_path.strip_prefix("/").unwrap_or(jail_path))
}

/// Binds the resource `r` at `target` (read-only unless `writable`).
fn bind_file(r: &Resource, target: &Path, writable: bool) -> Result<(), JailFsError> {
    match &r.tree {
        Some(tree) => attach_tree(tree, target, !writable).map_err(|source| JailFsError::Io {
            action: "attach the bind mount of",
            path: r.host_path.clone(),
            source,
        }),
        None => bind_verified(r, target, writable),
    }
}

/// Binds a jail directory over itself, writable (nosuid, nodev, noexec) when `/`
/// becomes read-only.
fn writable_dir(d: &Path) -> Result<(), JailFsError> {
    let none: Option<&str> = None;
    mount(Some(d), d, none, MsFlags::MS_BIND, none).map_err(sys("bind-mount", d))?;
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(none, d, none, flags, none).map_err(sys("remount", d))
}

/// Makes the device node `jail_path` at `p`, the VM's, mode 0600; rootless (no
/// mknod in a user namespace), binds the host's node, whose owner and mode decide
/// whether the caller may use it.
fn device(
    p: &Path,
    jail_path: &Path,
    (major, minor): (u64, u64),
    (uid, gid): (u32, u32),
    rootless: bool,
) -> Result<(), JailFsError> {
    if rootless {
        placeholder(p)?;
        let none: Option<&str> = None;
        return mount(Some(jail_path), p, none, MsFlags::MS_BIND, none)
            .map_err(sys("bind-mount", jail_path));
    }
    mknod(
        p,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(major, minor),
    )
    .map_err(sys("mknod", p))?;
    chown(p, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(sys("chown", p))
}

/// Rootless: reopens the canonical path in this mount namespace, checks it is the
/// file opened before (device and inode), and bind-mounts that fd.
fn bind_verified(r: &Resource, target: &Path, writable: bool) -> Result<(), JailFsError> {
    use nix::fcntl::{open, OFlag};
    let fd = open(
        &r.host_path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("reopen", &r.host_path))?;
    let st = nix::sys::stat::fstat(&fd).map_err(sys("stat", &r.host_path))?;
    if (st.st_dev, st.st_ino) != r.dev_ino {
        return Err(JailFsError::Io {
            action: "bind (the file changed since it was checked)",
            path: r.host_path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        });
    }
    let none: Option<&str> = None;
    let src = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    mount(Some(&src), target, none, MsFlags::MS_BIND, none)
        .map_err(sys("bind-mount", &r.host_path))?;
    let mut flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(none, target, none, flags, none).map_err(sys("remount", target))?;
    Ok(())
}

/// Sets nosuid/nodev/noexec (and rdonly) on a detached mount and attaches it at `target`.
fn attach_tree(tree: &impl AsRawFd, target: &Path, read_only: bool) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | MOUNT_ATTR_NOEXEC
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: tree is an open_tree descriptor, `empty` a C string, attr a valid
    // mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let c_target = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: tree is a detached mount descriptor; both strings are valid C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Removes a jail directory after the VM is gone. Refuses paths that do not look
/// like `<base>/<exec name>/<id>`.
pub fn remove_jail_dir(jail_dir: &Path, id: &str) -> Result<(), JailFsError> {
    let looks_right = jail_dir.is_absolute()
        && jail_dir.file_name().map(|n| n == id).unwrap_or(false)
        && jail_dir.components().count() >= 4;
    if !looks_right {
        return Err(JailFsError::Io {
            action: "remove (not a jail directory)",
            path: jail_dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    match std::fs::remove_dir_all(jail_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", jail_dir)(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_firecrackers() {
        let p = jail_paths(
            Path::new("/srv/jailer"),
            Path::new("/usr/bin/caisson"),
            "vm1",
        )
        .unwrap();
        assert_eq!(p.jail_dir, Path::new("/srv/jailer/caisson/vm1"));
        assert_eq!(p.root, Path::new("/srv/jailer/caisson/vm1/root"));
        assert_eq!(p.exec_name, "caisson");
        assert!(jail_paths(Path::new("/srv"), Path::new("/"), "vm1").is_err());
        // A relative base is made absolute (against the working directory).
        let rel = jail_paths(Path::new("jails"), Path::new("/usr/bin/caisson"), "vm1").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(rel.jail_dir, cwd.join("jails/caisson/vm1"));
        assert!(rel.root.is_absolute());
        assert!(jail_paths(Path::new("/srv"), Path::new("/bin/.hidden"), "vm1").is_err());
    }

    #[test]
    fn remove_refuses_odd_paths() {
        assert!(remove_jail_dir(Path::new("/"), "vm1").is_err());
        assert!(remove_jail_dir(Path::new("/srv/vm1"), "vm1").is_err());
        assert!(remove_jail_dir(Path::new("/srv/jailer/caisson/other"), "vm1").is_err());
        assert!(remove_jail_dir(Path::new("/srv/jailer/caisson/vm1-none"), "vm1-none").is_ok());
    }

    #[test]
    fn prepare_builds_the_layout_and_refuses_reuse() {
        let base = crate::mcs::tests::tempdir("jailfs");
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let exe = base.join("bin/probe");
        std::fs::write(&exe, b"#!").unwrap();
        let p = jail_paths(&base, &exe, "vm1").unwrap();
        let all = Optional {
            net: true,
            vsock: true,
        };
        prepare(&p, "vm1", &exe, &[], "{}", all, Some((4242, 4343))).unwrap();
        let meta = |rel: &str| std::fs::metadata(p.root.join(rel)).unwrap();
        assert_eq!(meta("config.json").permissions().mode() & 0o7777, 0o444);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta("vsock").uid(), 4242);
        assert_eq!(meta("vsock").permissions().mode() & 0o777, 0o700);
        assert!(meta("dev/net").is_dir());
        // No file is bound under /res or /out: neither is made.
        assert!(!p.root.join("res").exists() && !p.root.join("out").exists());
        let err = prepare(&p, "vm1", &exe, &[], "{}", all, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already exists") && err.contains("vm1"),
            "{err}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn prepare_makes_only_the_directories_the_vm_needs() {
        let base = crate::mcs::tests::tempdir("jailfs-needs");
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let exe = base.join("bin/probe");
        std::fs::write(&exe, b"#!").unwrap();
        let p = jail_paths(&base, &exe, "vm2").unwrap();
        let kernel = Resource {
            kind: crate::resources::Kind::Kernel,
            field: "boot-source.kernel_image_path".into(),
            host_path: exe.clone(),
            jail_path: PathBuf::from("/res/vmlinux"),
            writable: false,
            size: 2,
            uid: 0,
            gid: 0,
            mode: 0o644,
            fd: std::fs::File::open(&exe).unwrap().into(),
            tree: None,
            dev_ino: (0, 0),
        };
        let none = Optional {
            net: false,
            vsock: false,
        };
        prepare(&p, "vm2", &exe, &[kernel], "{}", none, None).unwrap();
        let mut made: Vec<String> = std::fs::read_dir(&p.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        made.sort();
        assert_eq!(made, ["config.json", "dev", "res"]);
        assert!(p.root.join("res/vmlinux").is_file());
        assert_eq!(std::fs::read_dir(p.root.join("dev")).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
