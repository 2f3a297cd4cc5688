//! The bodies of `PUT /snapshot/create` and `PUT /snapshot/load` (and of the
//! config file's `snapshot-load` key), in Firecracker's schema.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Firecracker's messages for a load body with both or neither memory field.
pub const MISSING_MEM_FIELD: &str =
    "missing field: either `mem_backend` or `mem_file_path` is required";
pub const TOO_MANY_MEM_FIELDS: &str =
    "too many fields: either `mem_backend` or `mem_file_path` exclusively is required";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotType {
    Diff,
    #[default]
    Full,
}

/// `PUT /snapshot/create`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotParams {
    #[serde(default)]
    pub snapshot_type: SnapshotType,
    pub snapshot_path: PathBuf,
    pub mem_file_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemBackendType {
    File,
    Uffd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemBackendConfig {
    pub backend_path: PathBuf,
    pub backend_type: MemBackendType,
}

/// A tap to use instead of the one the snapshot's interface had, and
/// (Caisson) a MAC to report instead of the snapshot's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<String>,
}

/// A host socket to use instead of the snapshot's, and (Caisson) a CID to
/// give the guest instead of the snapshot's; the guest re-reads its CID on
/// the transport reset every restore sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockOverride {
    pub uds_path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_cid: Option<u32>,
}

/// `PUT /snapshot/load` as sent (Firecracker's `LoadSnapshotConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSnapshotConfig {
    pub snapshot_path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_file_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_backend: Option<MemBackendConfig>,
    /// Deprecated name of `track_dirty_pages`.
    #[serde(default)]
    pub enable_diff_snapshots: bool,
    #[serde(default)]
    pub track_dirty_pages: bool,
    #[serde(default)]
    pub resume_vm: bool,
    #[serde(default)]
    pub network_overrides: Vec<NetworkOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_override: Option<VsockOverride>,
    #[serde(default)]
    pub clock_realtime: bool,
}

/// What a load does, once the body is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSnapshotParams {
    pub snapshot_path: PathBuf,
    pub mem_file_path: PathBuf,
    pub track_dirty_pages: bool,
    pub resume_vm: bool,
    pub network_overrides: Vec<NetworkOverride>,
    pub vsock_override: Option<VsockOverride>,
    /// The config file's devices for this process (`snapshot-load` in a
    /// config file); None from the API, where the snapshot's own are used.
    pub config: Option<Box<crate::config::VmConfig>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("{MISSING_MEM_FIELD}")]
    MissingMem,
    #[error("{TOO_MANY_MEM_FIELDS}")]
    TooManyMem,
    #[error("the Uffd memory backend is not supported by Caisson yet; use \"File\"")]
    Uffd,
    #[error("clock_realtime is not supported by Caisson yet")]
    ClockRealtime,
}

impl LoadSnapshotConfig {
    /// Firecracker's rules: exactly one of `mem_backend` and the deprecated
    /// `mem_file_path`. Whether the deprecated field was used is returned, for
    /// the deprecation header.
    pub fn into_params(self) -> Result<(LoadSnapshotParams, bool), ParamsError> {
        let (mem, deprecated) = match (self.mem_backend, self.mem_file_path) {
            (Some(_), Some(_)) => return Err(ParamsError::TooManyMem),
            (None, None) => return Err(ParamsError::MissingMem),
            (Some(b), None) => match b.backend_type {
                MemBackendType::File => (b.backend_path, false),
                MemBackendType::Uffd => return Err(ParamsError::Uffd),
            },
            (None, Some(p)) => (p, true),
        };
        if self.clock_realtime {
            return Err(ParamsError::ClockRealtime);
        }
        Ok((
            LoadSnapshotParams {
                snapshot_path: self.snapshot_path,
                mem_file_path: mem,
                track_dirty_pages: self.track_dirty_pages || self.enable_diff_snapshots,
                resume_vm: self.resume_vm,
                network_overrides: self.network_overrides,
                vsock_override: self.vsock_override,
                config: None,
            },
            deprecated,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(body: &str) -> Result<(LoadSnapshotParams, bool), String> {
        let c: LoadSnapshotConfig = serde_json::from_str(body).map_err(|e| e.to_string())?;
        c.into_params().map_err(|e| e.to_string())
    }

    #[test]
    fn load_bodies_follow_firecracker() {
        let (p, dep) = load(
            r#"{"snapshot_path": "s", "mem_backend": {"backend_path": "m", "backend_type": "File"},
                "resume_vm": true, "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap1"}],
                "vsock_override": {"uds_path": "/v.sock"}}"#,
        )
        .expect("valid");
        assert!(!dep);
        assert_eq!(p.mem_file_path, PathBuf::from("m"));
        assert!(p.resume_vm && !p.track_dirty_pages);
        assert_eq!(p.network_overrides[0].host_dev_name, "tap1");
        let (p, dep) =
            load(r#"{"snapshot_path": "s", "mem_file_path": "m", "enable_diff_snapshots": true}"#)
                .expect("deprecated form");
        assert!(dep && p.track_dirty_pages);
        assert_eq!(
            load(r#"{"snapshot_path": "s"}"#).unwrap_err(),
            MISSING_MEM_FIELD
        );
        assert_eq!(
            load(r#"{"snapshot_path": "s", "mem_file_path": "m", "mem_backend": {"backend_path": "m", "backend_type": "File"}}"#)
                .unwrap_err(),
            TOO_MANY_MEM_FIELDS
        );
        assert!(load(r#"{"snapshot_path": "s", "mem_backend": {"backend_path": "u", "backend_type": "Uffd"}}"#)
            .unwrap_err()
            .contains("Uffd"));
        assert!(
            load(r#"{"snapshot_path": "s", "mem_file_path": "m", "bogus": 1}"#)
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn create_bodies_default_to_full() {
        let c: CreateSnapshotParams =
            serde_json::from_str(r#"{"snapshot_path": "s", "mem_file_path": "m"}"#).expect("valid");
        assert_eq!(c.snapshot_type, SnapshotType::Full);
        assert!(serde_json::from_str::<CreateSnapshotParams>(
            r#"{"snapshot_type": "Partial", "snapshot_path": "s", "mem_file_path": "m"}"#
        )
        .is_err());
    }
}
