//! Snapshots: saving a paused VM to a state file and a memory file, and
//! reading them back for a restore in a new process.
//!
//! * [`format`]: the state file's framing (magic, version, length, CRC-64).
//! * [`state`]: what the state holds.
//! * [`kvm_state`]: KVM's VM and vCPU state, read and written in order.
//! * [`memory`]: the memory file (full, diff, private mapping, rebase).
//! * [`params`]: the API bodies.
//!
//! The restore itself is the builder's [`crate::builder::restore_vm`], the
//! counterpart of its boot.

pub mod format;
pub mod kvm_state;
pub mod memory;
pub mod params;
pub mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::VmConfig;
use crate::vm::Vm;
use params::{CreateSnapshotParams, LoadSnapshotParams, SnapshotType};
use state::MicrovmState;

/// Firecracker's refusal of a Diff snapshot without dirty page tracking.
pub const DIFF_NEEDS_TRACKING: &str =
    "Diff snapshots are not allowed on uVMs with dirty page tracking disabled.";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file {path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("snapshot file {path}: {source}")]
    Format {
        path: PathBuf,
        source: format::FormatError,
    },
    #[error(transparent)]
    Memory(#[from] memory::MemoryFileError),
    #[error("cannot read the VM's state: {0}")]
    KvmState(#[from] kvm_state::KvmStateError),
    #[error("{0}")]
    Vm(#[from] crate::vm::VmError),
    #[error("{DIFF_NEEDS_TRACKING}")]
    DiffNeedsTracking,
    #[error("snapshot file {path}: its configuration does not parse: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("the snapshot does not match {what}: {reason}")]
    Mismatch { what: String, reason: String },
    #[error("{what} names {id:?}, which the snapshot's VM does not have")]
    UnknownOverride { what: &'static str, id: String },
}

/// What a create wrote, for the log and the bench.
#[derive(Debug, Clone, Copy)]
pub struct CreateReport {
    pub state_bytes: u64,
    pub memory: memory::DumpStats,
    pub micros: u64,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Saves the paused `vm`, configured as `config`, to the files `params` names.
pub fn create(
    vm: &Vm,
    config: &VmConfig,
    params: &CreateSnapshotParams,
) -> Result<CreateReport, SnapshotError> {
    let start = Instant::now();
    let res = vm.resources();
    let diff = params.snapshot_type == SnapshotType::Diff;
    if diff && !res.track_dirty {
        return Err(SnapshotError::DiffNeedsTracking);
    }
    let vcpus = vm.save_vcpus()?;
    let devices = vm.save_devices()?;
    let config_json = serde_json::to_string(config).map_err(|e| SnapshotError::Config {
        path: params.snapshot_path.clone(),
        reason: e.to_string(),
    })?;
    let state = MicrovmState {
        vmm_version: env!("CARGO_PKG_VERSION").to_string(),
        config_json,
        memory: memory::layout(&res.memory),
        vm: kvm_state::save_vm(&res.vm)?,
        vcpus,
        devices,
    };
    let bytes = format::encode(&state).map_err(|source| SnapshotError::Format {
        path: params.snapshot_path.clone(),
        source,
    })?;
    write_state(&params.snapshot_path, &bytes)?;
    let mem = memory::dump(
        &res.vm,
        &res.memory,
        &params.mem_file_path,
        diff,
        res.track_dirty,
    )?;
    Ok(CreateReport {
        state_bytes: bytes.len() as u64,
        memory: mem,
        micros: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    })
}

fn write_state(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io(path, "create"))?;
    f.write_all(bytes).map_err(io(path, "write"))?;
    f.sync_all().map_err(io(path, "sync"))
}

/// Reads and verifies a state file.
pub fn read_state(path: &Path) -> Result<MicrovmState, SnapshotError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io(path, "open"))?;
    let meta = f.metadata().map_err(io(path, "stat"))?;
    if !meta.is_file() {
        return Err(SnapshotError::Io {
            path: path.to_path_buf(),
            what: "read it",
            source: std::io::Error::other("not a regular file"),
        });
    }
    if meta.len() > format::MAX_FILE_LEN {
        return Err(SnapshotError::Format {
            path: path.to_path_buf(),
            source: format::FormatError::TooLong {
                len: meta.len(),
                max: format::MAX_FILE_LEN,
            },
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(format::MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path, "read"))?;
    format::decode(&bytes).map_err(|source| SnapshotError::Format {
        path: path.to_path_buf(),
        source,
    })
}

fn mismatch(what: impl Into<String>, reason: String) -> SnapshotError {
    SnapshotError::Mismatch {
        what: what.into(),
        reason,
    }
}

/// The configuration a restore builds its devices from: the snapshot's own,
/// or (the config file's `snapshot-load`) the one given, which must describe
/// the same VM; then the load's overrides. `track_dirty_pages` is the load's.
pub fn restore_config(
    state: &MicrovmState,
    params: &LoadSnapshotParams,
    given: Option<VmConfig>,
) -> Result<VmConfig, SnapshotError> {
    let saved = VmConfig::from_json(&state.config_json).map_err(|e| SnapshotError::Config {
        path: params.snapshot_path.clone(),
        reason: e.to_string(),
    })?;
    let mut cfg = match given {
        None => saved.clone(),
        Some(g) => {
            check_same_vm(&saved, &g)?;
            g
        }
    };
    // A restore does not boot: no kernel is read, and the snapshot's machine
    // shape is the one that counts.
    cfg.boot_source = saved.boot_source.clone();
    cfg.machine_config.vcpu_count = saved.machine_config.vcpu_count;
    cfg.machine_config.mem_size_mib = saved.machine_config.mem_size_mib;
    cfg.machine_config.track_dirty_pages = params.track_dirty_pages;
    cfg.snapshot_load = None;
    for o in &params.network_overrides {
        let n = cfg
            .network_interfaces
            .iter_mut()
            .find(|n| n.iface_id == o.iface_id)
            .ok_or_else(|| SnapshotError::UnknownOverride {
                what: "network_overrides",
                id: o.iface_id.clone(),
            })?;
        n.host_dev_name = o.host_dev_name.clone();
        if let Some(mac) = &o.guest_mac {
            n.guest_mac = Some(mac.clone());
        }
    }
    if let Some(o) = &params.vsock_override {
        let v = cfg
            .vsock
            .as_mut()
            .ok_or_else(|| SnapshotError::UnknownOverride {
                what: "vsock_override",
                id: "vsock".into(),
            })?;
        v.uds_path = o.uds_path.clone();
        if let Some(cid) = o.guest_cid {
            v.guest_cid = cid;
        }
    }
    Ok(cfg)
}

/// A config given for a restore must have the snapshot's machine and devices
/// (the paths may differ: they are this process's).
fn check_same_vm(saved: &VmConfig, given: &VmConfig) -> Result<(), SnapshotError> {
    let (s, g) = (&saved.machine_config, &given.machine_config);
    let vcpus = |m: &crate::config::MachineConfig| m.vcpu_count.unwrap_or(1);
    let mib = |m: &crate::config::MachineConfig| m.mem_size_mib.unwrap_or(128);
    if given.machine_config.vcpu_count.is_some() && vcpus(s) != vcpus(g) {
        return Err(mismatch(
            "the configuration",
            format!(
                "machine-config.vcpu_count is {} but the snapshot has {}",
                vcpus(g),
                vcpus(s)
            ),
        ));
    }
    if given.machine_config.mem_size_mib.is_some() && mib(s) != mib(g) {
        return Err(mismatch(
            "the configuration",
            format!(
                "machine-config.mem_size_mib is {} but the snapshot has {}",
                mib(g),
                mib(s)
            ),
        ));
    }
    fn ids(mut v: Vec<String>) -> Vec<String> {
        v.sort_unstable();
        v
    }
    let drives = |c: &VmConfig| ids(c.drives.iter().map(|d| d.drive_id.clone()).collect());
    if drives(saved) != drives(given) {
        return Err(mismatch(
            "the configuration",
            format!(
                "drives {:?} but the snapshot has {:?}",
                drives(given),
                drives(saved)
            ),
        ));
    }
    let nets = |c: &VmConfig| {
        ids(c
            .network_interfaces
            .iter()
            .map(|n| n.iface_id.clone())
            .collect())
    };
    if nets(saved) != nets(given) {
        return Err(mismatch(
            "the configuration",
            format!(
                "network-interfaces {:?} but the snapshot has {:?}",
                nets(given),
                nets(saved)
            ),
        ));
    }
    for (what, a, b) in [
        ("vsock", saved.vsock.is_some(), given.vsock.is_some()),
        ("entropy", saved.entropy.is_some(), given.entropy.is_some()),
    ] {
        if a != b {
            return Err(mismatch(
                "the configuration",
                format!(
                    "{what} is {} but the snapshot's VM {} one",
                    if b { "configured" } else { "missing" },
                    if a { "has" } else { "has no" }
                ),
            ));
        }
    }
    for d in &saved.drives {
        if let Some(g) = given.drives.iter().find(|x| x.drive_id == d.drive_id) {
            if g.is_read_only != d.is_read_only || g.is_root_device != d.is_root_device {
                return Err(mismatch(
                    format!("drive {}", d.drive_id),
                    "is_read_only and is_root_device must be the snapshot's".into(),
                ));
            }
        }
    }
    Ok(())
}
