//! The per-VM state file, `<runtime dir>/vms/<id>.json`: what the jailer applied,
//! so that `audit` can compare it with /proc and `cleanup` can undo it even when the
//! jailer itself was killed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::{CgroupVersion, Limits};
use crate::labels::LabelRecord;
use crate::landlock_rules::LandlockStatus;
use crate::mcs::Categories;
use crate::profile::{BaselineMode, SeccompMode};
use crate::rlimits::Rlimits;

/// The default runtime directory.
pub const RUNTIME_DIR: &str = "/run/caisson";

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} state file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {errno}")]
    Lock { path: PathBuf, errno: nix::Error },
    #[error("invalid state file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A file whose owner the jailer changed, with the owner to put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The permission bits to put back, when the jailer changed them too.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// Everything the jailer did for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailState {
    pub id: String,
    pub profile: String,
    pub jailer_pid: i32,
    /// The VMM's pid in the host's pid namespace (0 until started).
    pub vm_pid: i32,
    pub exec_file_name: String,
    /// `<chroot-base-dir>/<exec-file name>/<id>`.
    pub jail_dir: PathBuf,
    pub root: PathBuf,
    /// The VM's uid/gid (inside its user namespace in rootless mode).
    pub uid: u32,
    pub gid: u32,
    /// The same ids as the host sees them (the caller's ids in rootless mode).
    #[serde(default)]
    pub host_uid: u32,
    #[serde(default)]
    pub host_gid: u32,
    /// Supplementary groups the VM keeps (none, except the caller's in rootless mode).
    #[serde(default)]
    pub groups: Vec<u32>,
    pub categories: Categories,
    /// The process label (set when SELinux was applied).
    pub selinux_label: Option<String>,
    pub cgroup_version: CgroupVersion,
    pub cgroup_leaves: Vec<PathBuf>,
    /// The parent cgroup (`caisson`, `machine/caisson`): its directories are
    /// removed when the last VM under them ends (absent in older state files).
    #[serde(default)]
    pub cgroup_parent: String,
    pub cgroup_limits: Limits,
    pub rlimits: Rlimits,
    /// Namespaces created for the VM (names as in /proc/<pid>/ns).
    pub new_namespaces: Vec<String>,
    /// The network namespace joined, if `--netns` was given.
    pub netns: Option<PathBuf>,
    /// The taps handed to the VM, each with its namespace and the owner and
    /// group to give back (absent in older state files).
    #[serde(default)]
    pub taps: Vec<crate::tap::TapRecord>,
    pub seccomp: SeccompMode,
    /// The jailer's seccomp baseline (absent, i.e. off, in older state files).
    #[serde(default)]
    pub seccomp_baseline: BaselineMode,
    pub landlock: Option<LandlockStatus>,
    pub image_labels: Vec<LabelRecord>,
    pub owners: Vec<OwnerRecord>,
    /// The vsock socket's host path (inside the jail), if any.
    pub vsock_host_path: Option<PathBuf>,
    /// Firecracker's mode: the jail root is the orchestrator's and is kept.
    #[serde(default)]
    pub firecracker_mode: bool,
    /// Firecracker's mode: what the jailer created in the jail root (removed in
    /// reverse order when the VM ends).
    #[serde(default)]
    pub created_in_jail: Vec<PathBuf>,
    /// The process label computed for the VM's pair, also when it is not applied
    /// (SELinux off); `selinux_label` is the one applied.
    #[serde(default)]
    pub computed_label: Option<String>,
    /// The VM's files as the jail has them, each with the label it was given (or,
    /// with SELinux off, would have been given).
    #[serde(default)]
    pub vm_files: Vec<crate::labels::FileRecord>,
    /// Caisson's mode with `--api`: the API socket and the snapshot directory.
    #[serde(default)]
    pub api: Option<crate::api_jail::ApiRecord>,
}

/// The state file of `id`.
pub fn path_for(runtime_dir: &Path, id: &str) -> PathBuf {
    runtime_dir.join("vms").join(format!("{id}.json"))
}

/// `<runtime dir>/lock`, held exclusively by a start while it sweeps stale records
/// and creates its cgroup, and by an end while it removes empty parent cgroups, so
/// that an end never removes a parent a start is creating its leaf under.
pub struct RuntimeLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl RuntimeLock {
    /// The lock for a step that must run under it: None when the caller
    /// already `held` it, else taken here; a failure to take it is pushed to
    /// `problems` and None returned (so `held.is_some() || taken.is_some()`
    /// says whether the step may run).
    pub fn unless_held(
        held: Option<&RuntimeLock>,
        runtime_dir: &Path,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        if held.is_some() {
            return None;
        }
        match Self::take(runtime_dir) {
            Ok(l) => Some(l),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        }
    }

    /// Blocks until the lock of `runtime_dir` is held.
    pub fn take(runtime_dir: &Path) -> Result<Self, StateError> {
        let path = runtime_dir.join("lock");
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        let file = match open_lock_file(runtime_dir, &path) {
            Ok(f) => f,
            Err(InDirError::Dir(e)) => return Err(io("create", runtime_dir)(e)),
            Err(InDirError::Op(e)) => return Err(io("open", &path)(e)),
        };
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| StateError::Lock { path, errno })?;
        Ok(Self { _lock: lock })
    }
}

/// Why [`in_dir`] failed: making the directory, or the operation in it.
pub(crate) enum InDirError {
    Dir(std::io::Error),
    Op(std::io::Error),
}

/// Runs `op`, which works in `dir`, and only when `dir` is missing (`op` gives
/// `NotFound`) makes it and runs `op` again: a `create_dir_all` first costs two
/// syscalls on every start.
pub(crate) fn in_dir<T>(dir: &Path, op: impl Fn() -> std::io::Result<T>) -> Result<T, InDirError> {
    match op() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(InDirError::Dir)?;
            op().map_err(InDirError::Op)
        }
        other => other.map_err(InDirError::Op),
    }
}

/// Opens (creating) the lock file `path` in `dir`, made if missing.
pub(crate) fn open_lock_file(dir: &Path, path: &Path) -> Result<std::fs::File, InDirError> {
    in_dir(dir, || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    })
}

/// The ids of every state file in `runtime_dir`.
pub fn list_ids(runtime_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(runtime_dir.join("vms")) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json")?;
            (!id.starts_with('.')).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    ids
}

/// Puts `tmp` in `path`'s place atomically. Over an existing file, the two are
/// exchanged and the old one (now `tmp`) unlinked: ext4's replace-by-rename
/// heuristic (`auto_da_alloc`) starts a writeback of the new file on a rename
/// over an old one, which cost 0.2-0.3 ms per state write here (and up to 60 ms
/// under I/O load), several times per start. A state file is not meant to
/// survive a host crash (`/run` is a tmpfs on most hosts), so nothing is lost.
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => std::fs::remove_file(tmp),
        // No file to exchange with (the first write), or a filesystem without
        // RENAME_EXCHANGE: a plain rename.
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
            std::fs::rename(tmp, path)
        }
        Err(e) => Err(e.into()),
    }
}

impl JailState {
    /// Writes atomically (temp file + exchange or rename).
    pub fn save(&self, runtime_dir: &Path) -> Result<(), StateError> {
        let path = path_for(runtime_dir, &self.id);
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io {
                action,
                path: p,
                source,
            }
        };
        let dir = runtime_dir.join("vms");
        let text = serde_json::to_string_pretty(self).map_err(|source| StateError::Parse {
            path: path.clone(),
            source,
        })?;
        let tmp = dir.join(format!(".{}.tmp", self.id));
        match in_dir(&dir, || std::fs::write(&tmp, &text)) {
            Ok(()) => {}
            Err(InDirError::Dir(e)) => return Err(io("create", &dir)(e)),
            Err(InDirError::Op(e)) => return Err(io("write", &tmp)(e)),
        }
        replace(&tmp, &path).map_err(io("rename", &tmp))
    }

    /// Reads the state of `id`.
    pub fn load(runtime_dir: &Path, id: &str) -> Result<Self, StateError> {
        let path = path_for(runtime_dir, id);
        let text = std::fs::read_to_string(&path).map_err(|source| StateError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })
    }

    /// Deletes the state file (a missing one is fine).
    pub fn remove(runtime_dir: &Path, id: &str) -> Result<(), StateError> {
        let path = path_for(runtime_dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// A state file as a jailer writes it, with only the required fields.
    pub const MINIMAL: &str = r#"{
        "id": "vm", "profile": "strict", "jailer_pid": 1, "vm_pid": 0,
        "exec_file_name": "caisson", "jail_dir": "/srv/jailer/caisson/vm",
        "root": "/srv/jailer/caisson/vm/root", "uid": 100001, "gid": 100001,
        "categories": {"a": 0, "b": 1}, "selinux_label": null,
        "cgroup_version": "V1", "cgroup_leaves": [],
        "cgroup_limits": {"memory_bytes": 1, "cpu_quota_us": 1000, "cpu_period_us": 1000, "pids_max": 1, "extra": []},
        "rlimits": {"nofile": 16, "fsize": null, "nproc": 1, "core": 0},
        "new_namespaces": [], "netns": null, "seccomp": "on", "landlock": null,
        "image_labels": [], "owners": [], "vsock_host_path": null
    }"#;

    #[test]
    fn an_older_state_file_still_loads() {
        let st: super::JailState = serde_json::from_str(MINIMAL).unwrap();
        assert!(st.vm_files.is_empty() && st.api.is_none() && st.computed_label.is_none());
        assert!(st.taps.is_empty());
    }
}
