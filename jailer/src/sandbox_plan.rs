//! The jail, derived from the VMM's sandbox declarations
//! ([`caisson::sandbox::all`]): each declared path, resolved against the jail's
//! resources by [`resolve`], becomes the Landlock rule that lets the VMM use it
//! as declared and the way it gets into the jail (a bound file, a directory bound
//! writable, a device node; or nothing, when the jailer wrote it or it is in the
//! orchestrator's root). The child mounts, makes and grants exactly the
//! [`Plan`]'s, and the tests hold the plan to the declarations in both
//! directions, as src/sandbox/tests.rs holds the seccomp filters.

use std::path::{Path, PathBuf};

use caisson::devices::{Access, DeviceNode, PathNeed, PathSource};

use crate::api_jail::{JAIL_API_DIR, JAIL_SNAPSHOT_DIR};
use crate::jail::{Mode, Settings};
use crate::landlock_rules::{Grant, Rule};
use crate::resources::{Kind, Resource, Resources, JAIL_CONFIG, JAIL_VSOCK_DIR};

/// Which jail the plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailMode {
    /// Caisson's own: the config's files bound into a read-only root; `api`
    /// with `--api` (an API socket, and snapshots written to `/snapshots`).
    Caisson { api: bool },
    /// Firecracker's: the orchestrator's root, whose files the API (or the
    /// arguments after `--`) may name at any time.
    Firecracker,
}

impl JailMode {
    pub fn of(s: &Settings) -> Self {
        match s.mode {
            Mode::Caisson { .. } => Self::Caisson { api: s.api },
            Mode::Firecracker { .. } => Self::Firecracker,
        }
    }
}

/// What a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct JailView<'a> {
    pub mode: JailMode,
    /// The VMM's file name, at the jail's `/`.
    pub exec_name: &'a str,
    pub res: &'a Resources,
}

/// How a place gets into the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// `res.files[index]` bound at `path`, read-only unless `writable`.
    File {
        index: usize,
        path: PathBuf,
        writable: bool,
    },
    /// A directory of the jail bound writable over the read-only root.
    WritableDir(PathBuf),
    /// A character device node (in rootless mode the host's, bound).
    Device {
        path: PathBuf,
        major: u64,
        minor: u64,
    },
}

/// One declared path as the jail provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub owner: &'static str,
    pub need: PathNeed,
    /// `None` when Landlock restricts nothing the need does (connecting to a
    /// Unix socket).
    pub rule: Option<Rule>,
    /// `None` when it needs no mount: the jailer wrote it into the root, or it
    /// is in the orchestrator's root already.
    pub mount: Option<Mount>,
}

/// The declaration a resource of the config answers.
pub fn source_of(r: &Resource) -> PathSource {
    match r.kind {
        Kind::Kernel => PathSource::Kernel,
        Kind::Initrd => PathSource::Initrd,
        Kind::Drive if r.writable => PathSource::WritableDrive,
        Kind::Drive => PathSource::ReadOnlyDrive,
        Kind::Log => PathSource::LogFile,
        Kind::Metrics => PathSource::MetricsFile,
        Kind::Serial => PathSource::SerialFile,
        Kind::Config => PathSource::ConfigFile,
        Kind::Snapshot => PathSource::SnapshotState,
        Kind::SnapshotMemory => PathSource::SnapshotMemory,
    }
}

/// A device node's numbers.
fn device_numbers(d: DeviceNode) -> (u64, u64) {
    match d {
        DeviceNode::Kvm => (10, 232),
        DeviceNode::NetTun => (10, 200),
    }
}

/// The grant for an access, on the path itself or (to create a socket or a
/// file there) on its directory; `None` for what Landlock does not restrict.
pub fn grant_for(access: Access) -> Option<Grant> {
    match access {
        Access::Read => Some(Grant::Read),
        Access::ReadWrite => Some(Grant::ReadWrite),
        Access::Write => Some(Grant::Write),
        Access::Exec => Some(Grant::Exec),
        Access::Bind => Some(Grant::SocketDir),
        Access::Create => Some(Grant::SnapshotDir),
        // (Landlock's filesystem rights up to ABI 6 do not cover connect(2).)
        Access::Connect => None,
    }
}

/// Where a declaration is in this jail, with its grant and mount: one entry per
/// file or directory the config's values give it, none when they give it none.
pub fn resolve(need: PathNeed, view: &JailView<'_>) -> Vec<(Option<Rule>, Option<Mount>)> {
    let rule = |path: &Path| {
        grant_for(need.access).map(|grant| Rule {
            path: path.to_path_buf(),
            grant,
        })
    };
    let fc = view.mode == JailMode::Firecracker;
    let api = view.mode == JailMode::Caisson { api: true };
    let vsock = view.res.vsock_name.is_some();
    let dir = |d: &str, present: bool| {
        let d = Path::new(d);
        if !present {
            return Vec::new();
        }
        vec![(rule(d), Some(Mount::WritableDir(d.to_path_buf())))]
    };
    match need.source {
        PathSource::Device(d) => {
            // Firecracker's mode: the API may add a net device at any time.
            if d == DeviceNode::NetTun && !fc && view.res.taps.is_empty() {
                return Vec::new();
            }
            let (major, minor) = device_numbers(d);
            let path = Path::new(d.path());
            let mount = Mount::Device {
                path: path.to_path_buf(),
                major,
                minor,
            };
            vec![(rule(path), Some(mount))]
        }
        PathSource::Executable => {
            let exe = Path::new("/").join(view.exec_name);
            vec![(rule(&exe), None)]
        }
        _ if fc => fc_resolve(need, view),
        PathSource::ConfigFile => vec![(rule(Path::new(JAIL_CONFIG)), None)],
        PathSource::ApiSocket => dir(JAIL_API_DIR, api),
        PathSource::SnapshotCreate => dir(JAIL_SNAPSHOT_DIR, api),
        PathSource::VsockSocket => dir(JAIL_VSOCK_DIR, vsock),
        // No rule (connect), no mount: the host's listeners are in the vsock
        // directory, which VsockSocket binds.
        PathSource::VsockPeer if vsock => vec![(None, None)],
        // A PATCH reaches only the files the config put in the jail; the jailer
        // never passes --seccomp-filter.
        PathSource::VsockPeer | PathSource::DriveUpdate | PathSource::SeccompFilter => Vec::new(),
        PathSource::Kernel
        | PathSource::Initrd
        | PathSource::ReadOnlyDrive
        | PathSource::WritableDrive
        | PathSource::LogFile
        | PathSource::MetricsFile
        | PathSource::SerialFile
        | PathSource::SnapshotState
        | PathSource::SnapshotMemory => files_of(need.source, view.res)
            .map(|(index, f)| {
                let mount = Mount::File {
                    index,
                    path: f.jail_path.clone(),
                    writable: f.writable,
                };
                (rule(&f.jail_path), Some(mount))
            })
            .collect(),
    }
}

/// Firecracker's mode: anything named by the config, a flag or the API is in the
/// orchestrator's root, which [`Grant::JailRoot`] covers; the read-only files the
/// config names are bound read-only over themselves (a writable one is not: a
/// mount there would hide the drive the orchestrator mounts later).
///
/// Firecracker's own jailer grants every access under the jail directory. Here
/// the VMM may only execute itself, use its devices, read, write and truncate the
/// jail root's files, and create regular files (snapshots: Firecracker's users
/// name `snapshot_path` and `mem_file_path` relative to the chroot, and
/// Firecracker creates them) and its unix sockets there; no directory, device
/// node, FIFO or symlink (Firecracker makes none). The root rule (rather than
/// one rule per known file, as in Caisson's mode) is needed because the
/// orchestrator adds files after the VMM started, which a per-file rule can
/// never cover: Kata hot-plugs a drive by mounting it over a placeholder
/// (Landlock skips the covered mount point and checks the directory above) and
/// an API-driven launch names its files only through the API. The jail root
/// holds only what the orchestrator put there, so this is the mount namespace's
/// own boundary, kept even if the VMM escapes it; read-only files stay read-only
/// through their read-only bind mounts, their sVirt label and the file owners,
/// since Landlock can only add access.
fn fc_resolve(need: PathNeed, view: &JailView<'_>) -> Vec<(Option<Rule>, Option<Mount>)> {
    let root = grant_for(need.access).map(|_| Rule {
        path: "/".into(),
        grant: Grant::JailRoot,
    });
    let mut out: Vec<_> = files_of(need.source, view.res)
        .map(|(index, f)| {
            let mount = (!f.writable).then(|| Mount::File {
                index,
                path: f.jail_path.clone(),
                writable: false,
            });
            (root.clone(), mount)
        })
        .collect();
    if out.is_empty() {
        out.push((root, None));
    }
    out
}

fn files_of(source: PathSource, res: &Resources) -> impl Iterator<Item = (usize, &Resource)> {
    res.files
        .iter()
        .enumerate()
        .filter(move |(_, f)| source_of(f) == source)
}

/// Every declaration's places in one jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub places: Vec<Place>,
}

impl Plan {
    pub fn new(view: &JailView<'_>) -> Self {
        let mut places = Vec::new();
        for needs in caisson::sandbox::all() {
            for need in needs.paths {
                for (rule, mount) in resolve(*need, view) {
                    places.push(Place {
                        owner: needs.owner,
                        need: *need,
                        rule,
                        mount,
                    });
                }
            }
        }
        Self { places }
    }

    /// The Landlock rules, each once.
    pub fn rules(&self) -> Vec<Rule> {
        dedup(self.places.iter().filter_map(|p| p.rule.clone()))
    }

    /// The mounts and device nodes, each once: files, then directories, then devices.
    pub fn mounts(&self) -> Vec<Mount> {
        let mut m = dedup(self.places.iter().filter_map(|p| p.mount.clone()));
        m.sort_by_key(|m| match m {
            Mount::File { .. } => 0,
            Mount::WritableDir(_) => 1,
            Mount::Device { .. } => 2,
        });
        m
    }

    /// The device nodes' jail paths.
    pub fn device_paths(&self) -> Vec<PathBuf> {
        self.mounts()
            .into_iter()
            .filter_map(|m| match m {
                Mount::Device { path, .. } => Some(path),
                _ => None,
            })
            .collect()
    }
}

fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
#[path = "sandbox_plan_tests.rs"]
mod tests;
