//! Jailed restore (issue 10): the files a VM config's `snapshot-load` names.
//!
//! A config with `snapshot-load` (the body of `PUT /snapshot/load`) restores
//! instead of booting; the rest of it describes this process's devices. The
//! snapshot file and the memory file are resources of the VM exactly as a
//! read-only disk is ([`resources::open_file`]): resolved once under the resource
//! roots, opened `O_PATH|O_NOFOLLOW` and checked through that fd (a regular file,
//! no set-user-ID or set-group-ID bit, readable by the VM's uid), bound read-only
//! into `/res`, readable (only) under Landlock, and labelled with the shared
//! read-only image label, without the VM's categories: the VMM only ever reads
//! them (it maps the memory file private, copy on write), so clones restored from
//! one snapshot at once all read the same two files. The paths are rewritten to
//! the jail's in the config written into the jail, as are `vsock_override`'s
//! socket (into `/vsock`) and `network_overrides`' taps (checked and handed to
//! the VM like the interfaces').

use std::path::{Path, PathBuf};

use crate::resources::JAIL_VSOCK_DIR;
use crate::resources::{check_ifname, open_file, safe_name, Kind, Resource, ResourceError};

pub use caisson::snapshot::params::{LoadSnapshotConfig, MemBackendType};

/// The memory file's field and path: `mem_backend.backend_path` (a `File`
/// backend) or the deprecated `mem_file_path`, exactly one of them, as
/// Firecracker requires. Errors are (field, reason).
pub fn memory_file(
    load: &LoadSnapshotConfig,
) -> Result<(&'static str, &Path), (&'static str, &'static str)> {
    match (&load.mem_backend, &load.mem_file_path) {
        (Some(_), Some(_)) => Err((
            "snapshot-load",
            "either mem_backend or mem_file_path exclusively is required, not both",
        )),
        (None, None) => Err((
            "snapshot-load",
            "either mem_backend or mem_file_path is required",
        )),
        (Some(b), None) if b.backend_type == MemBackendType::File => Ok((
            "snapshot-load.mem_backend.backend_path",
            b.backend_path.as_path(),
        )),
        (Some(_), None) => Err((
            "snapshot-load.mem_backend.backend_type",
            "only a File backend can be jailed (Uffd is not supported)",
        )),
        (None, Some(p)) => Ok(("snapshot-load.mem_file_path", p.as_path())),
    }
}

fn set_memory_file(load: &mut LoadSnapshotConfig, jail_path: PathBuf) {
    match (&mut load.mem_backend, &mut load.mem_file_path) {
        (Some(b), _) => b.backend_path = jail_path,
        (None, p) => *p = Some(jail_path),
    }
}

fn field_error((field, reason): (&'static str, &'static str)) -> ResourceError {
    ResourceError::Field { field, reason }
}

/// Opens the snapshot file and the memory file as read-only resources of the VM,
/// appends them to `files` and rewrites their paths in `load` to the jail's; the
/// `vsock_override` socket goes into `/vsock`, whose file name is returned.
///
/// The memory file must hold exactly `mem_size_mib` MiB (the machine config of
/// the restoring VM must be the snapshot's), the snapshot file must not be
/// empty, and neither may be a file the VM writes.
pub fn open_restore(
    load: &mut LoadSnapshotConfig,
    mem_size_mib: u64,
    roots: &[PathBuf],
    files: &mut Vec<Resource>,
) -> Result<Option<String>, ResourceError> {
    let (mem_field, mem_path) = memory_file(load).map_err(field_error)?;
    let snap = open_file(
        Kind::Snapshot,
        "snapshot-load.snapshot_path".into(),
        &load.snapshot_path,
        false,
        format!("snapshot-{}", safe_name(&load.snapshot_path)),
        false,
        roots,
    )?;
    let mem = open_file(
        Kind::SnapshotMemory,
        mem_field.into(),
        mem_path,
        false,
        format!("memory-{}", safe_name(mem_path)),
        false,
        roots,
    )?;
    let bad = |r: &Resource, message: String| ResourceError::Path {
        field: r.field.clone(),
        path: r.host_path.clone(),
        message,
    };
    if snap.dev_ino == mem.dev_ino {
        return Err(bad(
            &mem,
            "is the snapshot file itself; the state and the memory are two files".into(),
        ));
    }
    for r in [&snap, &mem] {
        if let Some(w) = files.iter().find(|f| f.writable && f.dev_ino == r.dev_ino) {
            return Err(bad(
                r,
                format!(
                    "is also {}, which the VM writes; a snapshot is restored read-only",
                    w.field
                ),
            ));
        }
    }
    if snap.size == 0 {
        return Err(bad(&snap, "is empty: not a snapshot".into()));
    }
    let want = mem_size_mib.saturating_mul(1 << 20);
    if mem.size != want {
        return Err(bad(
            &mem,
            format!(
                "is {} bytes, but machine-config.mem_size_mib {mem_size_mib} is {want} bytes (the restoring VM's machine config must be the snapshot's)",
                mem.size
            ),
        ));
    }
    load.snapshot_path = snap.jail_path.clone();
    set_memory_file(load, mem.jail_path.clone());
    files.push(snap);
    files.push(mem);
    Ok(load.vsock_override.as_mut().map(|v| {
        let name = safe_name(&v.uds_path);
        v.uds_path = Path::new(JAIL_VSOCK_DIR).join(&name);
        name
    }))
}

/// The taps `network_overrides` names, checked as the interfaces' are and added
/// to `taps` (handed to the VM's uid in its network namespace).
pub fn add_override_taps(
    load: &LoadSnapshotConfig,
    taps: &mut Vec<String>,
) -> Result<(), ResourceError> {
    for (i, n) in load.network_overrides.iter().enumerate() {
        if !check_ifname(&n.host_dev_name) {
            return Err(ResourceError::Value {
                field: format!("snapshot-load.network_overrides[{i}].host_dev_name"),
                value: n.host_dev_name.clone(),
                reason: "must be 1 to 15 characters of [A-Za-z0-9_.-]",
            });
        }
        if !taps.contains(&n.host_dev_name) {
            taps.push(n.host_dev_name.clone());
        }
    }
    Ok(())
}

/// One file a `snapshot-load` names: (kind, field, path).
pub type NamedFile = (Kind, String, PathBuf);

/// Firecracker's mode: the files a `snapshot-load` in the VMM's own config names
/// (jail-relative, opened beneath the root by the caller).
pub fn fc_files(load: &LoadSnapshotConfig) -> Result<Vec<NamedFile>, (&'static str, &'static str)> {
    let (mem_field, mem_path) = memory_file(load)?;
    Ok(vec![
        (
            Kind::Snapshot,
            "snapshot-load.snapshot_path".into(),
            load.snapshot_path.clone(),
        ),
        (
            Kind::SnapshotMemory,
            mem_field.into(),
            mem_path.to_path_buf(),
        ),
    ])
}

#[cfg(test)]
#[path = "snapshot_files_tests.rs"]
mod tests;
