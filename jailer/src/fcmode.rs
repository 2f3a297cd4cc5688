//! Firecracker's own mode: without `--config-file` the jailer behaves as
//! Firecracker's jailer (src/jailer/src/env.rs, docs/jailer.md). The orchestrator
//! (Kata, firecracker-go-sdk) has put the VM's files in the jail root
//! `<chroot-base-dir>/<exec-file name>/<id>/root`, by hard link or bind mount; the
//! arguments after `--` go to the VMM unchanged; the VMM serves its API on
//! `/run/firecracker.socket` inside the jail; the jailer writes
//! `/<exec-file name>.pid` there.
//!
//! What the jailer adds to Firecracker's: every confinement layer of Caisson's own
//! mode. A `--config-file` among the VMM's arguments is read in the jail root, so
//! the files it names get their labels, owners and read-only mounts as in
//! Caisson's mode; without one (an API-driven launch) the jail root's regular
//! files are the VM's, writable where the VM's uid may write them.
//!
//! The jail root is the orchestrator's: the jailer removes only what it created
//! (the exec file copy, the pid file, the devices, the directories it made, the
//! API socket) and puts back the owners it changed. Regular files the VMM made
//! there (snapshots) stay, as Firecracker's jailer leaves them.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode};

use crate::jailfs::JailPaths;
use crate::resources::{check_ifname, Kind, Resource, Resources};
use crate::sandbox_plan::{JailMode, JailView, Plan};
use crate::state::OwnerRecord;

/// The directory of the VMM's default API socket, inside the jail.
pub const RUN_DIR: &str = "run";
/// The VMM's default API socket, inside the jail (Firecracker's `DEFAULT_API_SOCK_PATH`).
pub const API_SOCKET: &str = "/run/firecracker.socket";
/// Firecracker's pid file extension: `/<exec-file name>.pid`.
pub const PID_EXTENSION: &str = ".pid";
/// At most this many files are taken from a jail root without a config.
pub const MAX_SCANNED_FILES: usize = 1024;
/// Directories below the jail root are scanned at most this deep.
const MAX_SCAN_DEPTH: usize = 8;
/// Firecracker's mode for the jail's own directories (`FOLDER_PERMISSIONS`).
const DIR_MODE: u32 = 0o700;

/// A failure specific to Firecracker's mode.
#[derive(Debug, thiserror::Error)]
pub enum FcModeError {
    #[error("--config-file among the VMM's arguments (after --) has no value")]
    ConfigValue,
    #[error("{field}: {path:?} escapes the jail root {root}")]
    Escapes {
        field: String,
        path: String,
        root: PathBuf,
    },
    #[error("{field}: {path:?} in the jail root {root}: {reason}")]
    File {
        field: String,
        path: String,
        root: PathBuf,
        reason: String,
    },
    #[error("jail root {path}: {reason}; without --config-file the jailer works as Firecracker's and expects the orchestrator to have put the VM's files there")]
    Root { path: PathBuf, reason: String },
    #[error("invalid --exec-file {path}: {reason}")]
    ExecFile { path: PathBuf, reason: String },
    #[error(transparent)]
    JailFs(#[from] crate::jailfs::JailFsError),
    #[error("{path} already exists in the jail root (left by an earlier VM with this id?); remove it first")]
    Leftover { path: PathBuf },
    #[error("jail root {root}: more than {MAX_SCANNED_FILES} files; give the VMM a --config-file naming its files")]
    TooManyFiles { root: PathBuf },
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
    #[error("{field}: {reason}")]
    Field {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Config(#[from] caisson::config::ConfigError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FcModeError {
    let path = path.to_path_buf();
    move |source| FcModeError::Io {
        action,
        path,
        source,
    }
}

/// The value of `--config-file` among the VMM's arguments (`--config-file X` or
/// `--config-file=X`), as the VMM will read it.
pub fn config_arg(exec_args: &[String]) -> Result<Option<String>, FcModeError> {
    let mut it = exec_args.iter();
    while let Some(a) = it.next() {
        if a == "--config-file" {
            return match it.next() {
                Some(v) if !v.is_empty() && !v.starts_with("--") => Ok(Some(v.clone())),
                _ => Err(FcModeError::ConfigValue),
            };
        }
        if let Some(v) = a.strip_prefix("--config-file=") {
            return if v.is_empty() {
                Err(FcModeError::ConfigValue)
            } else {
                Ok(Some(v.to_string()))
            };
        }
    }
    Ok(None)
}

/// `path` as the VMM sees it (its cwd is the jail's `/`), relative to the jail
/// root: `.` dropped, `..` applied, refused when it would climb above the root.
pub fn jail_relative(field: &str, path: &Path, root: &Path) -> Result<PathBuf, FcModeError> {
    let escapes = || FcModeError::Escapes {
        field: field.to_string(),
        path: path.display().to_string(),
        root: root.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(escapes());
                }
            }
            Component::Prefix(_) => return Err(escapes()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(FcModeError::File {
            field: field.to_string(),
            path: path.display().to_string(),
            root: root.to_path_buf(),
            reason: "names the jail root itself, not a file".into(),
        });
    }
    Ok(out)
}

/// The jail root, opened as a directory (never through a symlink).
pub fn open_root(root: &Path) -> Result<OwnedFd, FcModeError> {
    let bad = |reason: String| FcModeError::Root {
        path: root.to_path_buf(),
        reason,
    };
    let meta = std::fs::symlink_metadata(root).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| bad(e.to_string()))
}

/// Opens `rel` below the jail root the way the VMM will see it, refusing any
/// resolution (`..`, an absolute or climbing symlink) that leaves the root.
fn open_beneath(
    root_fd: &OwnedFd,
    root: &Path,
    field: &str,
    rel: &Path,
    flags: OFlag,
) -> Result<OwnedFd, FcModeError> {
    let how = OpenHow::new()
        // A final symlink is followed, as the VMM will; staying beneath the root
        // is what matters.
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root_fd, rel, how).map_err(|errno| match errno {
        nix::errno::Errno::EXDEV => FcModeError::Escapes {
            field: field.to_string(),
            path: rel.display().to_string(),
            root: root.to_path_buf(),
        },
        e => FcModeError::File {
            field: field.to_string(),
            path: rel.display().to_string(),
            root: root.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// One file of the VM below the jail root, as a [`Resource`] whose host path is
/// the file's place in the jail root (the jail itself binds it over itself).
fn jail_file(
    root_fd: &OwnedFd,
    root: &Path,
    kind: Kind,
    field: String,
    path: &Path,
    writable: bool,
) -> Result<Resource, FcModeError> {
    let rel = jail_relative(&field, path, root)?;
    let fd = open_beneath(root_fd, root, &field, &rel, OFlag::O_PATH)?;
    let err = |reason: String| FcModeError::File {
        field: field.clone(),
        path: path.display().to_string(),
        root: root.to_path_buf(),
        reason,
    };
    let st = fstat(&fd).map_err(|e| err(e.to_string()))?;
    let fmt = st.st_mode & libc::S_IFMT;
    // Kata's logger and metrics outputs are FIFOs it reads from.
    let fifo_ok = matches!(kind, Kind::Log | Kind::Metrics | Kind::Serial) && fmt == libc::S_IFIFO;
    if fmt != libc::S_IFREG && !fifo_ok {
        return Err(err("not a regular file".into()));
    }
    if st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        return Err(err("set-user-ID or set-group-ID files are refused".into()));
    }
    // Where the resolution ended (a symlink inside the root may point elsewhere
    // inside it): that is the path bound and labelled.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| err(format!("cannot resolve the opened file: {e}")))?;
    let inside = real.strip_prefix(root).map_err(|_| {
        err(format!(
            "resolves to {}, outside the jail root",
            real.display()
        ))
    })?;
    Ok(Resource {
        tree: None,
        dev_ino: (st.st_dev, st.st_ino),
        kind,
        field,
        jail_path: Path::new("/").join(inside),
        host_path: real,
        writable,
        size: st.st_size as u64,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        fd,
    })
}

/// A config named among the VMM's arguments: read in the jail root (as the VMM
/// will read it) and every file it names opened there.
pub fn open_config(root: &Path, config: &str) -> Result<Resources, FcModeError> {
    let root_fd = open_root(root)?;
    let field = "--config-file (after --)";
    // Checked (a regular file beneath the root) before it is read, then read
    // through the same open file.
    let cfg_file = jail_file(
        &root_fd,
        root,
        Kind::Config,
        field.into(),
        Path::new(config),
        false,
    )?;
    let mut text = String::new();
    std::fs::File::open(cfg_file.fd_path())
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(io("read", &cfg_file.host_path))?;
    let cfg = caisson::config::VmConfig::from_json(&text).map_err(|source| {
        caisson::config::ConfigError::Parse {
            path: cfg_file.host_path.clone(),
            source,
        }
    })?;
    let mut files = vec![cfg_file];
    let mut add = |kind, field: String, path: &Path, writable| -> Result<(), FcModeError> {
        files.push(jail_file(&root_fd, root, kind, field, path, writable)?);
        Ok(())
    };
    // A restore (snapshot-load) needs no kernel; its two files are read-only.
    match (&cfg.boot_source.kernel_image_path, &cfg.snapshot_load) {
        (Some(k), _) => add(
            Kind::Kernel,
            "boot-source.kernel_image_path".into(),
            k,
            false,
        )?,
        (None, Some(_)) => {}
        (None, None) => return Err(caisson::config::ConfigError::MissingKernel.into()),
    }
    if let Some(l) = &cfg.snapshot_load {
        let named = crate::snapshot_files::fc_files(l)
            .map_err(|(field, reason)| FcModeError::Field { field, reason })?;
        for (kind, field, path) in named {
            add(kind, field, &path, false)?;
        }
    }
    if let Some(initrd) = &cfg.boot_source.initrd_path {
        add(
            Kind::Initrd,
            "boot-source.initrd_path".into(),
            initrd,
            false,
        )?;
    }
    for (i, d) in cfg.drives.iter().enumerate() {
        if d.socket.is_some() {
            return Err(FcModeError::File {
                field: format!("drives[{i}].socket"),
                path: format!("{:?}", d.socket),
                root: root.to_path_buf(),
                reason: "vhost-user drives are not supported by the jailer".into(),
            });
        }
        add(
            Kind::Drive,
            format!("drives[{i}].path_on_host"),
            &d.path_on_host,
            !d.is_read_only,
        )?;
    }
    if let Some(p) = cfg.logger.as_ref().and_then(|l| l.log_path.clone()) {
        add(Kind::Log, "logger.log_path".into(), &p, true)?;
    }
    if let Some(m) = &cfg.metrics {
        add(
            Kind::Metrics,
            "metrics.metrics_path".into(),
            &m.metrics_path,
            true,
        )?;
    }
    if let Some(serial) = &cfg.caisson.serial {
        if serial != "stdout" && serial != "none" && !serial.is_empty() {
            add(
                Kind::Serial,
                "caisson.serial".into(),
                Path::new(serial),
                true,
            )?;
        }
    }
    let mut taps = Vec::new();
    for (i, n) in cfg.network_interfaces.iter().enumerate() {
        if !check_ifname(&n.host_dev_name) {
            return Err(FcModeError::File {
                field: format!("network-interfaces[{i}].host_dev_name"),
                path: n.host_dev_name.clone(),
                root: root.to_path_buf(),
                reason: "must be 1 to 15 characters of [A-Za-z0-9_.-]".into(),
            });
        }
        taps.push(n.host_dev_name.clone());
    }
    let mut vsock_name = match &cfg.vsock {
        Some(v) => Some(jail_relative("vsock.uds_path", &v.uds_path, root)?),
        None => None,
    };
    if let Some(l) = &cfg.snapshot_load {
        for (i, n) in l.network_overrides.iter().enumerate() {
            if !check_ifname(&n.host_dev_name) {
                return Err(FcModeError::File {
                    field: format!("snapshot-load.network_overrides[{i}].host_dev_name"),
                    path: n.host_dev_name.clone(),
                    root: root.to_path_buf(),
                    reason: "must be 1 to 15 characters of [A-Za-z0-9_.-]".into(),
                });
            }
            taps.push(n.host_dev_name.clone());
        }
        if let Some(v) = &l.vsock_override {
            let field = "snapshot-load.vsock_override.uds_path";
            vsock_name = Some(jail_relative(field, &v.uds_path, root)?);
        }
    }
    Ok(Resources {
        files,
        taps,
        vsock_name: vsock_name.map(|p| p.to_string_lossy().into_owned()),
        jail_config: String::new(),
        mem_size_mib: cfg.machine_config.mem_size_mib.unwrap_or(128),
        vcpu_count: cfg.machine_config.vcpu_count.unwrap_or(1),
    })
}

/// Without a config (an API-driven launch, as firecracker-go-sdk's): the VM's
/// files are the regular files the orchestrator put below the jail root. Which of
/// them are writable is decided once the VM's uid is known ([`classify`]).
pub fn scan_root(root: &Path, skip: &[&str]) -> Result<Resources, FcModeError> {
    let root_fd = open_root(root)?;
    let mut files = Vec::new();
    let mut pending = vec![(PathBuf::new(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        let host_dir = root.join(&dir);
        let mut entries: Vec<_> = std::fs::read_dir(&host_dir)
            .map_err(io("read the directory", &host_dir))?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = dir.join(e.file_name());
            if depth == 0 && skip.iter().any(|s| e.file_name() == *s) {
                continue;
            }
            // Not followed: a symlink is not one of the VM's files.
            let Ok(meta) = std::fs::symlink_metadata(root.join(&rel)) else {
                continue;
            };
            if meta.is_dir() && depth + 1 < MAX_SCAN_DEPTH {
                pending.push((rel, depth + 1));
            } else if meta.is_file() {
                if files.len() == MAX_SCANNED_FILES {
                    return Err(FcModeError::TooManyFiles {
                        root: root.to_path_buf(),
                    });
                }
                let field = format!("jail root file {}", rel.display());
                files.push(jail_file(&root_fd, root, Kind::Drive, field, &rel, false)?);
            }
        }
    }
    Ok(Resources {
        files,
        taps: Vec::new(),
        vsock_name: None,
        jail_config: String::new(),
        mem_size_mib: 0,
        vcpu_count: 0,
    })
}

/// True when `uid`/`gid` may write a file with this owner and mode (no ACLs).
pub fn writable_by(r: &Resource, uid: u32, gid: u32) -> bool {
    (r.uid == uid && r.mode & 0o200 != 0)
        || (r.gid == gid && r.mode & 0o020 != 0)
        || r.mode & 0o002 != 0
}

/// Without a config: a file is writable by the VM exactly when the orchestrator
/// made it writable by the VM's uid (firecracker-go-sdk chowns the files it links
/// in to `--uid`/`--gid`); the others are read-only, and labelled so.
pub fn classify(files: &mut [Resource], uid: u32, gid: u32) {
    for f in files {
        f.writable = writable_by(f, uid, gid);
    }
}

/// The warning for `--uid 0`/`--gid 0` (what Kata passes): the VM never runs as
/// root in Caisson, it gets its own derived id instead.
pub fn root_id_warning(uid: Option<u32>, gid: Option<u32>) -> Option<String> {
    let which: Vec<&str> = [(uid, "--uid 0"), (gid, "--gid 0")]
        .iter()
        .filter(|(v, _)| *v == Some(0))
        .map(|(_, n)| *n)
        .collect();
    (!which.is_empty()).then(|| {
        format!(
            "{} accepted (as Kata passes it), but the VM never runs as root: it runs as its own uid/gid derived from its MCS pair",
            which.join(" ")
        )
    })
}

/// The uid or gid the VM runs as: the requested one, unless it is root.
pub fn vm_id(requested: Option<u32>, derived: u32) -> u32 {
    requested.filter(|&v| v != 0).unwrap_or(derived)
}

/// `<root>/<exec name>.pid`.
pub fn pid_file(paths: &JailPaths) -> PathBuf {
    paths
        .root
        .join(format!("{}{PID_EXTENSION}", paths.exec_name))
}

/// What a jail root must not hold yet: the jailer's own files from an earlier run.
pub fn check_leftovers(paths: &JailPaths) -> Result<(), FcModeError> {
    let api = paths.root.join(API_SOCKET.trim_start_matches('/'));
    for p in [
        paths.root.join(&paths.exec_name),
        pid_file(paths),
        paths.root.join("dev/kvm"),
        api,
    ] {
        if std::fs::symlink_metadata(&p).is_ok() {
            return Err(FcModeError::Leftover { path: p });
        }
    }
    Ok(())
}

/// What [`prepare`] did, for the state file.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Paths created by the jailer (or by the VMM in places the jailer made), in
    /// creation order; removed in reverse when the VM ends.
    pub created: Vec<PathBuf>,
    /// Directories that were there before and were given to the VM.
    pub owners: Vec<OwnerRecord>,
}

/// On the host, in the orchestrator's jail root: Firecracker's `/`, `/dev`,
/// `/dev/net` and `/run` (created if missing, given to the VM, mode 0700); the
/// exec file is checked here and copied in ([`crate::exec_copy`]).
/// `vm_owner` is `None` in rootless mode.
pub fn prepare(
    paths: &JailPaths,
    exec_file: &Path,
    res: &Resources,
    vm_owner: Option<(u32, u32)>,
) -> Result<Prepared, FcModeError> {
    let plan = Plan::new(&JailView {
        mode: JailMode::Firecracker,
        exec_name: &paths.exec_name,
        res,
    });
    let mut done = Prepared::default();
    for rel in ["", "dev", "dev/net", RUN_DIR] {
        let p = paths.root.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                if vm_owner.is_some() {
                    done.owners.push(OwnerRecord {
                        path: p.clone(),
                        uid: m.uid(),
                        gid: m.gid(),
                        mode: Some(m.mode() & 0o7777),
                    });
                }
            }
            Ok(_) => {
                return Err(FcModeError::Root {
                    path: p,
                    reason: "exists and is not a directory".into(),
                })
            }
            Err(_) => {
                std::fs::DirBuilder::new()
                    .mode(DIR_MODE)
                    .create(&p)
                    .map_err(io("create", &p))?;
                done.created.push(p.clone());
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(io("chmod", &p))?;
        if let Some((uid, gid)) = vm_owner {
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|errno| FcModeError::Sys {
                action: "chown",
                path: p.clone(),
                errno,
            })?;
        }
    }
    crate::jailfs::check_exec_file(exec_file).map_err(|reason| FcModeError::ExecFile {
        path: exec_file.to_path_buf(),
        reason,
    })?;
    // (The exec file's copy is linked in next, crate::exec_copy, and recorded
    // then: a file already there is the orchestrator's, never removed.)
    // Made by the child (devices) and by the VMM (its sockets), removed with the rest.
    for dev in plan.device_paths() {
        done.created
            .push(paths.root.join(dev.strip_prefix("/").unwrap_or(&dev)));
    }
    done.created
        .push(paths.root.join(API_SOCKET.trim_start_matches('/')));
    if let Some(v) = &res.vsock_name {
        done.created.push(paths.root.join(v));
    }
    done.created.push(pid_file(paths));
    Ok(done)
}

/// The VMM's pid (as the host sees it), in Firecracker's pid file, written before
/// the VMM is released: whoever reads the file finds the process already there.
pub fn write_pid_file(paths: &JailPaths, pid: i32) -> Result<(), FcModeError> {
    let p = pid_file(paths);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&p)
        .map_err(io("create", &p))?;
    write!(f, "{pid}").map_err(io("write", &p))
}

/// Makes the VM's files usable by its uid for the VM's lifetime, where the
/// orchestrator made them for a VMM running as root: the config when the VM
/// cannot read it (Kata writes it 0640 root:root) is given to the VM; a writable
/// file (already given to the VM) without owner read and write gets them (Kata's
/// log and metrics FIFOs are made with mode 0). Returns what to restore.
pub fn hand_over(files: &[Resource], uid: u32, gid: u32) -> Result<Vec<OwnerRecord>, FcModeError> {
    let mut done = Vec::new();
    for r in files {
        let (chown, need) = match (r.kind, r.writable) {
            (Kind::Config, _) if !crate::resources::readable_by(r, uid, gid) => (true, 0o400),
            (_, true) => (false, 0o600),
            _ => continue,
        };
        if chown {
            nix::unistd::fchownat(
                &r.fd,
                "",
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_EMPTY_PATH,
            )
            .map_err(|errno| FcModeError::Sys {
                action: "chown the VM config",
                path: r.host_path.clone(),
                errno,
            })?;
        }
        let chmod = r.mode & need != need;
        if chmod {
            std::fs::set_permissions(r.fd_path(), std::fs::Permissions::from_mode(r.mode | need))
                .map_err(io("chmod", &r.host_path))?;
        }
        if chown || chmod {
            done.push(OwnerRecord {
                path: r.host_path.clone(),
                uid: r.uid,
                gid: r.gid,
                mode: chmod.then_some(r.mode),
            });
        }
    }
    Ok(done)
}

/// Removes what the jailer created in an orchestrator's jail root, newest first.
/// A directory it made goes with the unix sockets the VMM left in it, and only
/// then if empty: regular files the VMM made there (a snapshot written to
/// `/run/x`) are the orchestrator's to take, as those in the root are, so their
/// directory stays (logged). What is missing is fine.
pub fn remove_created(created: &[PathBuf]) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut problems = Vec::new();
    for p in created.iter().rev() {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let r = if meta.is_dir() {
            let mut kept = 0usize;
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_socket() => {
                        let _ = std::fs::remove_file(e.path());
                    }
                    Ok(t) if t.is_file() => kept += 1,
                    _ => {}
                }
            }
            match std::fs::remove_dir(p) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && kept > 0 => {
                    log::info!(
                        "{} kept: it holds {kept} file(s) the VM made, for the orchestrator to take",
                        p.display()
                    );
                    Ok(())
                }
                r => r,
            }
        } else {
            std::fs::remove_file(p)
        };
        if let Err(e) = r {
            problems.push(format!("cannot remove {}: {e}", p.display()));
        }
    }
    problems
}

#[cfg(test)]
#[path = "fcmode_tests.rs"]
mod tests;
