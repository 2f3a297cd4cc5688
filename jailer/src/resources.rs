//! The files a VM config names: each path is resolved once (canonicalize), opened
//! once with `O_PATH|O_NOFOLLOW`, checked through the fd, and later bind-mounted into
//! the jail from `/proc/self/fd/<fd>`, so a path swapped after the check is never used.
//! The config written into the jail names the in-jail paths only.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use caisson::config::VmConfig;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode};
use serde::{Deserialize, Serialize};

/// Where resources live inside the jail.
pub const JAIL_RES_DIR: &str = "/res";
/// The rewritten config inside the jail.
pub const JAIL_CONFIG: &str = "/config.json";
/// The directory for vsock unix sockets inside the jail.
pub const JAIL_VSOCK_DIR: &str = "/vsock";
/// The directory for log and serial output files inside the jail.
pub const JAIL_OUT_DIR: &str = "/out";

/// A resource that failed validation.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error(transparent)]
    Config(#[from] caisson::config::ConfigError),
    #[error("{field}: {path}: {message}")]
    Path {
        field: String,
        path: PathBuf,
        message: String,
    },
    #[error("{field}: {value:?} is invalid: {reason}")]
    Value {
        field: String,
        value: String,
        reason: &'static str,
    },
    #[error("{field}: {reason}")]
    Field {
        field: &'static str,
        reason: &'static str,
    },
    #[error("cannot serialize the rewritten config: {0}")]
    Serialize(serde_json::Error),
}

/// What a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Kernel,
    Initrd,
    Drive,
    /// `logger.log_path`: an output file (or FIFO, in Firecracker's mode).
    Log,
    /// `metrics.metrics_path`: an output file (or FIFO).
    Metrics,
    /// `caisson.serial` naming a file: the serial output.
    Serial,
    /// Firecracker's mode: the VM config itself, read by the VMM in the jail.
    Config,
    /// `snapshot-load.snapshot_path`: the VM state a restore reads (read-only).
    Snapshot,
    /// `snapshot-load`'s memory file: guest RAM a restore maps private (read-only).
    SnapshotMemory,
}

/// One opened file of the VM.
#[derive(Debug)]
pub struct Resource {
    pub kind: Kind,
    pub field: String,
    /// Canonical host path (for labels, ownership and messages).
    pub host_path: PathBuf,
    /// The path inside the jail.
    pub jail_path: PathBuf,
    pub writable: bool,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// `O_PATH` fd of the file.
    pub fd: OwnedFd,
    /// A detached bind mount of exactly that file (`open_tree(OPEN_TREE_CLONE)`),
    /// attached inside the jail with `move_mount`: the file is never looked up again.
    /// `None` without CAP_SYS_ADMIN (rootless), where the child reopens the
    /// canonical path and checks it is still `dev_ino`.
    pub tree: Option<OwnedFd>,
    /// Device and inode of the opened file.
    pub dev_ino: (u64, u64),
}

impl Resource {
    /// `/proc/self/fd/<n>`: the mount source that names exactly the opened file.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Everything the jail needs from the config.
#[derive(Debug)]
pub struct Resources {
    pub files: Vec<Resource>,
    /// Tap device names (checked in the VM's network namespace).
    pub taps: Vec<String>,
    /// The vsock socket's file name inside [`JAIL_VSOCK_DIR`], if any.
    pub vsock_name: Option<String>,
    /// The config with in-jail paths, as JSON.
    pub jail_config: String,
    /// The guest's memory in MiB and vCPU count (for the cgroup limits).
    pub mem_size_mib: u64,
    pub vcpu_count: u64,
}

pub(crate) fn safe_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "file".into()
    } else {
        trimmed.chars().take(100).collect()
    }
}

/// True when `path` is one of `roots` or below one.
pub fn under_roots(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// Canonicalizes the resource roots (roots that do not exist are dropped).
pub fn canonical_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect()
}

/// Resolves and opens one existing regular file under `roots`.
pub(crate) fn open_file(
    kind: Kind,
    field: String,
    path: &Path,
    writable: bool,
    jail_name: String,
    create: bool,
    roots: &[PathBuf],
) -> Result<Resource, ResourceError> {
    let err = |message: String| ResourceError::Path {
        field: field.clone(),
        path: path.to_path_buf(),
        message,
    };
    let outside = || {
        err(format!(
            "outside the allowed resource roots {roots:?} (profile resources.roots or --resource-root)"
        ))
    };
    if create && !path.exists() {
        let parent = path
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .ok_or_else(|| err("its directory does not exist".into()))?;
        if !under_roots(&parent, roots) {
            return Err(outside());
        }
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(|e| err(format!("cannot create: {e}")))?;
    }
    let canon = std::fs::canonicalize(path).map_err(|e| err(e.to_string()))?;
    let fd = open(
        &canon,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format!("cannot open {}: {e}", canon.display())))?;
    // What was opened, not what the path said: the check holds for the fd used.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| err(format!("cannot resolve the opened file: {e}")))?;
    if !under_roots(&real, roots) {
        return Err(outside());
    }
    let st = fstat(&fd).map_err(|e| err(e.to_string()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(err("not a regular file".into()));
    }
    if writable && st.st_nlink != 1 {
        return Err(err(format!(
            "a writable file must have exactly one link (it has {})",
            st.st_nlink
        )));
    }
    if st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        return Err(err("set-user-ID or set-group-ID files are refused".into()));
    }
    let tree = match open_tree_clone(&fd) {
        Ok(t) => Some(t),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => None,
        Err(e) => return Err(err(format!("open_tree: {e}"))),
    };
    Ok(Resource {
        tree,
        dev_ino: (st.st_dev, st.st_ino),
        kind,
        field,
        host_path: canon,
        jail_path: Path::new(JAIL_RES_DIR).join(jail_name),
        writable,
        size: st.st_size as u64,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        fd,
    })
}

/// `open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)`.
fn open_tree_clone(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let empty = c"";
    // SAFETY: fd is a valid open descriptor and `empty` a NUL-terminated string; the
    // call returns a new descriptor or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw =
        i32::try_from(r).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    // SAFETY: raw is a new descriptor owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// A Linux interface name: 1..=15 bytes of [A-Za-z0-9_.-].
pub fn check_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Parses the config, opens every file it names and builds the in-jail config.
///
/// Every file must resolve (as opened) under one of `roots`, so that an untrusted
/// config cannot hand the VM a host file such as /etc/shadow.
pub fn open_all(config_path: &Path, roots: &[PathBuf]) -> Result<Resources, ResourceError> {
    let roots = canonical_roots(roots);
    let mut cfg = VmConfig::from_file(config_path)?;
    let mut files: Vec<Resource> = Vec::new();

    // A restore needs no kernel (it is in the snapshot's memory); one given is bound.
    match cfg.boot_source.kernel_image_path.clone() {
        Some(kernel) => {
            let r = open_file(
                Kind::Kernel,
                "boot-source.kernel_image_path".into(),
                &kernel,
                false,
                format!("kernel-{}", safe_name(&kernel)),
                false,
                &roots,
            )?;
            cfg.boot_source.kernel_image_path = Some(r.jail_path.clone());
            files.push(r);
        }
        None if cfg.snapshot_load.is_some() => {}
        None => return Err(caisson::config::ConfigError::MissingKernel.into()),
    }

    if let Some(initrd) = cfg.boot_source.initrd_path.clone() {
        let r = open_file(
            Kind::Initrd,
            "boot-source.initrd_path".into(),
            &initrd,
            false,
            format!("initrd-{}", safe_name(&initrd)),
            false,
            &roots,
        )?;
        cfg.boot_source.initrd_path = Some(r.jail_path.clone());
        files.push(r);
    }

    for (i, d) in cfg.drives.iter_mut().enumerate() {
        let field = format!("drives[{i}].path_on_host");
        if d.socket.is_some() {
            return Err(ResourceError::Value {
                field: format!("drives[{i}].socket"),
                value: format!("{:?}", d.socket),
                reason: "vhost-user drives are not supported by the jailer",
            });
        }
        let r = open_file(
            Kind::Drive,
            field.clone(),
            &d.path_on_host,
            !d.is_read_only,
            format!("drive{i}-{}", safe_name(&d.path_on_host)),
            false,
            &roots,
        )?;
        if let Some(prev) = files.iter().find(|f| f.host_path == r.host_path) {
            if r.writable || prev.writable {
                return Err(ResourceError::Path {
                    field,
                    path: r.host_path.clone(),
                    message: format!(
                        "already used by {}; a writable image may be used only once",
                        prev.field
                    ),
                });
            }
        }
        d.path_on_host = r.jail_path.clone();
        files.push(r);
    }

    let mut taps = Vec::new();
    for (i, n) in cfg.network_interfaces.iter().enumerate() {
        if !check_ifname(&n.host_dev_name) {
            return Err(ResourceError::Value {
                field: format!("network-interfaces[{i}].host_dev_name"),
                value: n.host_dev_name.clone(),
                reason: "must be 1 to 15 characters of [A-Za-z0-9_.-]",
            });
        }
        taps.push(n.host_dev_name.clone());
    }

    let mut vsock_name = None;
    if let Some(v) = cfg.vsock.as_mut() {
        let name = safe_name(&v.uds_path);
        v.uds_path = Path::new(JAIL_VSOCK_DIR).join(&name);
        vsock_name = Some(name);
    }
    let mem_size_mib = cfg.machine_config.mem_size_mib.unwrap_or(128);
    if let Some(l) = cfg.snapshot_load.as_mut() {
        let over = crate::snapshot_files::open_restore(l, mem_size_mib, &roots, &mut files)?;
        crate::snapshot_files::add_override_taps(l, &mut taps)?;
        vsock_name = over.or(vsock_name);
    }

    if let Some(l) = cfg.logger.as_mut() {
        if let Some(p) = l.log_path.clone() {
            let mut r = open_file(
                Kind::Log,
                "logger.log_path".into(),
                &p,
                true,
                format!("log-{}", safe_name(&p)),
                true,
                &roots,
            )?;
            r.jail_path = Path::new(JAIL_OUT_DIR).join(format!("log-{}", safe_name(&p)));
            l.log_path = Some(r.jail_path.clone());
            files.push(r);
        }
    }
    if let Some(m) = cfg.metrics.as_mut() {
        let p = m.metrics_path.clone();
        let mut r = open_file(
            Kind::Metrics,
            "metrics.metrics_path".into(),
            &p,
            true,
            format!("metrics-{}", safe_name(&p)),
            true,
            &roots,
        )?;
        r.jail_path = Path::new(JAIL_OUT_DIR).join(format!("metrics-{}", safe_name(&p)));
        m.metrics_path = r.jail_path.clone();
        files.push(r);
    }
    if let Some(serial) = cfg.caisson.serial.clone() {
        if serial != "stdout" && serial != "none" && !serial.is_empty() {
            let p = PathBuf::from(&serial);
            let mut r = open_file(
                Kind::Serial,
                "caisson.serial".into(),
                &p,
                true,
                String::new(),
                true,
                &roots,
            )?;
            r.jail_path = Path::new(JAIL_OUT_DIR).join(format!("serial-{}", safe_name(&p)));
            cfg.caisson.serial = Some(r.jail_path.to_string_lossy().into_owned());
            files.push(r);
        }
    }

    let jail_config = serde_json::to_string_pretty(&cfg).map_err(ResourceError::Serialize)?;
    Ok(Resources {
        files,
        taps,
        vsock_name,
        jail_config,
        mem_size_mib,
        vcpu_count: cfg.machine_config.vcpu_count.unwrap_or(1),
    })
}

impl Resources {
    /// The size of the largest writable disk (for `fsize = "auto"`).
    pub fn largest_writable_disk(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.kind == Kind::Drive && f.writable)
            .map(|f| f.size)
            .max()
            .unwrap_or(0)
    }
}

/// True when `uid`/`gid` may read a file with this owner and mode (no ACLs).
pub fn readable_by(r: &Resource, uid: u32, gid: u32) -> bool {
    (r.uid == uid && r.mode & 0o400 != 0)
        || (r.gid == gid && r.mode & 0o040 != 0)
        || r.mode & 0o004 != 0
}

/// The file's device and inode (for tests comparing two opens).
pub fn dev_ino(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Gives the writable files to the VM's uid/gid (through the opened fd), returning
/// the previous owners so that they can be restored when the VM ends.
pub fn give_writable_to(
    files: &[Resource],
    uid: u32,
    gid: u32,
) -> Result<Vec<crate::state::OwnerRecord>, ResourceError> {
    let mut done = Vec::new();
    for r in files.iter().filter(|r| r.writable) {
        let res = nix::unistd::fchownat(
            &r.fd,
            "",
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        );
        if let Err(e) = res {
            restore_owners(&done);
            return Err(ResourceError::Path {
                field: r.field.clone(),
                path: r.host_path.clone(),
                message: format!("cannot chown to {uid}:{gid}: {e}"),
            });
        }
        done.push(crate::state::OwnerRecord {
            path: r.host_path.clone(),
            uid: r.uid,
            gid: r.gid,
            mode: None,
        });
    }
    Ok(done)
}

/// chmod of `path` itself, never of what a symlink there points to.
pub fn chmod_nofollow(path: &Path, mode: u32) -> std::io::Result<()> {
    let fd = open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        std::fs::Permissions::from_mode(mode),
    )
}

/// Puts owners (and changed modes) back, by path (the VM is gone by then).
/// Returns the failures as text.
pub fn restore_owners(records: &[crate::state::OwnerRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    for o in records {
        if let Err(e) = nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &o.path,
            Some(nix::unistd::Uid::from_raw(o.uid)),
            Some(nix::unistd::Gid::from_raw(o.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            problems.push(format!(
                "cannot restore owner {}:{} of {}: {e}",
                o.uid,
                o.gid,
                o.path.display()
            ));
        }
        if let Some(mode) = o.mode {
            if let Err(e) = chmod_nofollow(&o.path, mode) {
                problems.push(format!(
                    "cannot restore mode {mode:o} of {}: {e}",
                    o.path.display()
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("vm.json");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn config_is_rewritten_with_jail_paths() {
        let dir = crate::mcs::tests::tempdir("res-rewrite");
        std::fs::write(dir.join("vmlinux"), b"k").unwrap();
        std::fs::write(dir.join("root fs.ext4"), vec![0u8; 4096]).unwrap();
        std::fs::write(dir.join("ro.img"), b"r").unwrap();
        std::os::unix::fs::symlink(dir.join("ro.img"), dir.join("link.img")).unwrap();
        let cfg = write_config(
            &dir,
            &format!(
                r#"{{"boot-source": {{"kernel_image_path": "{d}/vmlinux"}},
                   "drives": [
                     {{"drive_id": "root", "path_on_host": "{d}/root fs.ext4", "is_root_device": true}},
                     {{"drive_id": "data", "path_on_host": "{d}/link.img", "is_root_device": false, "is_read_only": true}}
                   ],
                   "network-interfaces": [{{"iface_id": "eth0", "host_dev_name": "tap0"}}],
                   "vsock": {{"guest_cid": 3, "uds_path": "/tmp/x/v.sock"}}}}"#,
                d = dir.display()
            ),
        );
        let res = open_all(&cfg, std::slice::from_ref(&dir)).unwrap();
        assert_eq!(res.files.len(), 3);
        assert_eq!(res.files[0].jail_path, Path::new("/res/kernel-vmlinux"));
        assert_eq!(
            res.files[1].jail_path,
            Path::new("/res/drive0-root_fs.ext4")
        );
        assert!(res.files[1].writable);
        // The symlink was resolved once, to the real file.
        assert_eq!(res.files[2].host_path, dir.join("ro.img"));
        assert!(!res.files[2].writable);
        assert_eq!(res.largest_writable_disk(), 4096);
        assert_eq!(res.taps, vec!["tap0".to_string()]);
        assert_eq!(res.vsock_name.as_deref(), Some("v.sock"));
        let v: serde_json::Value = serde_json::from_str(&res.jail_config).unwrap();
        assert_eq!(v["boot-source"]["kernel_image_path"], "/res/kernel-vmlinux");
        assert_eq!(v["drives"][1]["path_on_host"], "/res/drive1-link.img");
        assert_eq!(v["vsock"]["uds_path"], "/vsock/v.sock");
        assert!(!res.jail_config.contains(&dir.display().to_string()));
        // The fd names the opened file.
        assert_eq!(
            dev_ino(&res.files[1].fd_path()),
            dev_ino(&dir.join("root fs.ext4"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_resources_are_named() {
        let dir = crate::mcs::tests::tempdir("res-bad");
        std::fs::write(dir.join("vmlinux"), b"k").unwrap();
        let d = dir.display();
        let cases = [
            (
                format!(r#"{{"boot-source": {{"kernel_image_path": "{d}/nope"}}}}"#),
                "nope",
            ),
            (
                format!(r#"{{"boot-source": {{"kernel_image_path": "{d}"}}}}"#),
                "not a regular file",
            ),
            (
                format!(
                    r#"{{"boot-source": {{"kernel_image_path": "{d}/vmlinux"}}, "network-interfaces": [{{"iface_id": "e", "host_dev_name": "../../x"}}]}}"#
                ),
                "host_dev_name",
            ),
            (
                format!(
                    r#"{{"boot-source": {{"kernel_image_path": "{d}/vmlinux"}}, "drives": [{{"drive_id": "a", "path_on_host": "{d}/vmlinux", "is_root_device": true}}]}}"#
                ),
                "a writable image may be used only once",
            ),
            (r#"{"boot-source": {}}"#.to_string(), "kernel_image_path"),
            (r#"{"bogus": 1}"#.to_string(), "bogus"),
        ];
        for (body, want) in cases {
            let cfg = write_config(&dir, &body);
            let err = open_all(&cfg, std::slice::from_ref(&dir))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} does not contain {want}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
