//! Caisson's mode with `--api` (issue 10): the VMM serves Firecracker's API on a
//! socket in its jail, so that an orchestrator can pause the VM and have it write
//! a snapshot, and writes snapshot files in one directory of the jail.
//!
//! - `/run` (0700, the VM's) holds the socket `/run/caisson.socket`; the VMM runs
//!   with `--api-sock /run/caisson.socket` instead of `--no-api`. Landlock lets it
//!   make and remove sockets there, nothing else.
//! - `/snapshots` (0700, the VM's, labelled as a jail directory with the VM's
//!   categories, `<jail_type>:<level>:cA,cB`) is where `PUT /snapshot/create` may
//!   name its two files. Files the VMM creates there get the policy's VM file
//!   type (`caisson_vm_file_t`, by type transition) at the VM's level, as its logs
//!   do: the policy needs no rule for them, and no other VM may use them.
//!   Landlock lets the VMM create regular files there and read, write and
//!   truncate them; nothing is removed, renamed, linked or executed.
//! - Both are bound writable over the read-only jail root, as `/vsock` is.
//! - `fsize = "auto"` makes room for a memory file (guest memory) as it does for
//!   the largest writable disk.
//!
//! Both go with the jail when the VM ends: an orchestrator takes the snapshot
//! files out (a hard link or a rename on the same filesystem) before it stops the
//! VM.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

/// The directory of the API socket, inside the jail.
pub const JAIL_API_DIR: &str = "/run";
/// The VMM's API socket, inside the jail.
pub const JAIL_API_SOCKET: &str = "/run/caisson.socket";
/// Where the VMM may write snapshot files, inside the jail.
pub const JAIL_SNAPSHOT_DIR: &str = "/snapshots";
const DIR_MODE: u32 = 0o700;

/// A step of the API jail that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiJailError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot chown {path} to the VM: {errno}")]
    Chown { path: PathBuf, errno: nix::Error },
}

/// What the state file and the audit say of the API jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRecord {
    /// `<root>/run/caisson.socket`: where an orchestrator connects.
    pub socket_host_path: PathBuf,
    /// `<root>/snapshots`: where the snapshot files appear on the host.
    pub snapshot_dir_host_path: PathBuf,
    /// The label planned for the snapshot directory (a jail directory's, with the
    /// VM's categories).
    pub snapshot_dir_label: String,
    /// Whether it was applied (false with SELinux off or rootless).
    pub label_applied: bool,
}

impl ApiRecord {
    /// The host paths under the jail `root`.
    pub fn new(root: &Path, snapshot_dir_label: String, label_applied: bool) -> Self {
        Self {
            socket_host_path: host(root, JAIL_API_SOCKET),
            snapshot_dir_host_path: host(root, JAIL_SNAPSHOT_DIR),
            snapshot_dir_label,
            label_applied,
        }
    }
}

fn host(root: &Path, jail_path: &str) -> PathBuf {
    root.join(jail_path.trim_start_matches('/'))
}

/// The VMM's API flags: `--api-sock /run/caisson.socket` with `--api`, else `--no-api`.
pub fn vmm_flags(api: bool) -> Vec<String> {
    if api {
        vec!["--api-sock".into(), JAIL_API_SOCKET.into()]
    } else {
        vec!["--no-api".into()]
    }
}

/// What `fsize = "auto"` must leave room for: the largest writable disk, and
/// with `--api` a memory file of the guest's whole memory.
pub fn fsize_basis(api: bool, res: &Resources) -> u64 {
    let disk = res.largest_writable_disk();
    if api {
        disk.max(res.mem_size_mib.saturating_mul(1 << 20))
    } else {
        disk
    }
}

/// On the host, in the jail root [`crate::jailfs::prepare`] made: `/run` and
/// `/snapshots`, mode 0700, given to `vm_owner` (`None` when rootless, where
/// the caller is the VM).
pub fn prepare(root: &Path, vm_owner: Option<(u32, u32)>) -> Result<(), ApiJailError> {
    for rel in [JAIL_API_DIR, JAIL_SNAPSHOT_DIR] {
        let p = host(root, rel);
        let io = |action| {
            let path = p.clone();
            move |source| ApiJailError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(&p)
            .map_err(io("create"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(io("chmod"))?;
        if let Some((uid, gid)) = vm_owner {
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|errno| ApiJailError::Chown {
                path: p.clone(),
                errno,
            })?;
        }
    }
    Ok(())
}

/// Says where an orchestrator finds the VM's API and snapshots (stderr; the
/// state file has the same, for `--daemonize`).
pub fn announce(id: &str, rec: &ApiRecord) {
    log::info!(
        "VM {id}: API socket {}, snapshot directory {} (/snapshots in the jail; take files out before the VM ends, the directory goes with the jail)",
        rec.socket_host_path.display(),
        rec.snapshot_dir_host_path.display()
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn flags_follow_the_opt_in() {
        assert_eq!(vmm_flags(false), ["--no-api"]);
        assert_eq!(vmm_flags(true), ["--api-sock", "/run/caisson.socket"]);
        let rec = ApiRecord::new(Path::new("/j/root"), "l".into(), false);
        assert_eq!(
            rec.socket_host_path,
            Path::new("/j/root/run/caisson.socket")
        );
        assert_eq!(rec.snapshot_dir_host_path, Path::new("/j/root/snapshots"));
    }

    #[test]
    fn prepare_gives_both_directories_to_the_vm() {
        let root = crate::mcs::tests::tempdir("api-jail");
        prepare(&root, Some((4242, 4343))).unwrap();
        for d in ["run", "snapshots"] {
            let m = std::fs::metadata(root.join(d)).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o7777),
                (4242, 4343, 0o700),
                "{d}"
            );
        }
        // A second VM never shares them: an existing directory is refused.
        assert!(prepare(&root, None).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
