//! Firecracker's endpoints: a method, a path and a JSON body become one typed
//! [`VmmAction`], or a fault message in Firecracker's words. Parsing only: what
//! an action may do, and when, is the controller's business.

use serde::de::DeserializeOwned;

use crate::config::{
    BootSourceConfig, DriveConfig, EntropyConfig, LoggerConfig, MachineConfig, NetConfig,
    VsockConfig,
};
use crate::controller::{DriveUpdate, MachineConfigUpdate, NetUpdate, VmmAction};
use crate::snapshot::params::{CreateSnapshotParams, LoadSnapshotConfig, ParamsError};

/// `PUT /actions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action_type: ActionType,
}

#[derive(Debug, serde::Deserialize)]
enum ActionType {
    InstanceStart,
    SendCtrlAltDel,
    FlushMetrics,
}

/// `PATCH /vm`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VmStateBody {
    state: VmState,
}

#[derive(Debug, serde::Deserialize)]
enum VmState {
    Paused,
    Resumed,
}

/// `PUT /metrics`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    metrics_path: std::path::PathBuf,
}

/// `PUT /serial`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SerialBody {
    serial_out_path: Option<std::path::PathBuf>,
    #[serde(default)]
    rate_limiter: Option<crate::rate_limiter::TokenBucketConfig>,
}

/// Firecracker's rule for ids in a path: alphanumerics and `_`.
fn checked_id(id: &str) -> Result<&str, String> {
    if id.is_empty() {
        return Err("The ID cannot be empty.".into());
    }
    if !id.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
        return Err(
            "API Resource IDs can only contain alphanumeric characters and underscores.".into(),
        );
    }
    Ok(id)
}

fn body<T: DeserializeOwned>(method: &str, raw: &[u8]) -> Result<T, String> {
    if raw.is_empty() {
        return Err(format!("Empty {method} request."));
    }
    serde_json::from_slice(raw).map_err(|e| {
        format!("An error occurred when deserializing the json body of a request: {e}.")
    })
}

fn same_id(path_id: &str, body_id: &str) -> Result<(), String> {
    if path_id == body_id {
        Ok(())
    } else {
        Err("The id from the path does not match the id from the body!".into())
    }
}

/// The endpoints Caisson does not have yet, by path prefix.
const NOT_YET: [(&str, &str); 5] = [
    ("mmds", "MMDS"),
    ("balloon", "The balloon device"),
    ("cpu-config", "Custom CPU templates"),
    ("hotplug", "Memory hot-plug"),
    ("pmem", "virtio-pmem"),
];

/// A parsed request: its action and, when it used a field Firecracker has
/// deprecated, Firecracker's message for it (logged, counted in
/// `deprecated_api.deprecated_http_api_calls`, and answered with a
/// `Deprecation: true` header).
#[derive(Debug)]
pub struct Routed {
    pub action: VmmAction,
    pub deprecation: Option<&'static str>,
}

/// Firecracker's deprecation messages.
pub const VSOCK_ID_DEPRECATED: &str = "PUT /vsock: vsock_id field is deprecated.";
pub const MEM_FILE_PATH_DEPRECATED: &str = "PUT /snapshot/load: mem_file_path field is deprecated.";

/// Turns one request into an action, or the fault message of a 400.
pub fn parse(method: &str, path: &str, raw: &[u8]) -> Result<Routed, String> {
    let mut deprecation = None;
    let path = path.split('?').next().unwrap_or("");
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = trimmed.split('/').collect();
    // Firecracker names the method and the path's first segment.
    let first = segments.first().copied().unwrap_or("");
    let invalid = || format!("Invalid request method and/or path: {method} {first}.");
    if method == "GET" && !raw.is_empty() {
        return Err("GET request cannot have a body.".into());
    }
    let action = match (method, segments.as_slice()) {
        ("GET", [""]) => VmmAction::GetInstanceInfo,
        ("GET", ["version"]) => VmmAction::GetVersion,
        ("GET", ["machine-config"]) => VmmAction::GetMachineConfig,
        ("PUT", ["machine-config"]) => {
            VmmAction::SetMachineConfig(body::<MachineConfig>(method, raw)?)
        }
        ("PATCH", ["machine-config"]) => {
            VmmAction::UpdateMachineConfig(body::<MachineConfigUpdate>(method, raw)?)
        }
        ("GET", ["vm", "config"]) => VmmAction::GetFullVmConfig,
        ("PUT", ["boot-source"]) => {
            VmmAction::ConfigureBootSource(body::<BootSourceConfig>(method, raw)?)
        }
        ("PUT", ["logger"]) => VmmAction::ConfigureLogger(body::<LoggerConfig>(method, raw)?),
        ("PUT", ["metrics"]) => {
            VmmAction::ConfigureMetrics(body::<MetricsBody>(method, raw)?.metrics_path)
        }
        ("PUT", ["serial"]) => {
            let b = body::<SerialBody>(method, raw)?;
            match b.serial_out_path {
                Some(path) => VmmAction::ConfigureSerial {
                    path,
                    rate_limiter: b.rate_limiter,
                },
                None => return Err("serial_out_path is required.".into()),
            }
        }
        ("PUT", ["vsock"]) => {
            let v = body::<VsockConfig>(method, raw)?;
            if v.vsock_id.is_some() {
                deprecation = Some(VSOCK_ID_DEPRECATED);
            }
            VmmAction::SetVsockDevice(v)
        }
        ("PUT", ["entropy"]) => VmmAction::SetEntropyDevice(body::<EntropyConfig>(method, raw)?),
        ("PUT", ["drives", id]) => {
            let id = checked_id(id)?;
            let d = body::<DriveConfig>(method, raw)?;
            same_id(id, &d.drive_id)?;
            VmmAction::InsertBlockDevice(d)
        }
        ("PATCH", ["drives", id]) => {
            let id = checked_id(id)?;
            let d = body::<DriveUpdate>(method, raw)?;
            same_id(id, &d.drive_id)?;
            VmmAction::UpdateBlockDevice(d)
        }
        ("PUT", ["network-interfaces", id]) => {
            let id = checked_id(id)?;
            let n = body::<NetConfig>(method, raw)?;
            same_id(id, &n.iface_id)?;
            VmmAction::InsertNetworkDevice(n)
        }
        ("PATCH", ["network-interfaces", id]) => {
            let id = checked_id(id)?;
            let n = body::<NetUpdate>(method, raw)?;
            same_id(id, &n.iface_id)?;
            VmmAction::UpdateNetworkInterface(n)
        }
        ("PUT", ["actions"]) => match body::<ActionBody>(method, raw)?.action_type {
            ActionType::InstanceStart => VmmAction::StartMicroVm,
            ActionType::SendCtrlAltDel => VmmAction::SendCtrlAltDel,
            ActionType::FlushMetrics => VmmAction::FlushMetrics,
        },
        ("PUT", ["snapshot", "create"]) => {
            VmmAction::CreateSnapshot(body::<CreateSnapshotParams>(method, raw)?)
        }
        ("PUT", ["snapshot", "load"]) => {
            let (params, deprecated) = body::<LoadSnapshotConfig>(method, raw)?
                .into_params()
                .map_err(|e| match e {
                    // Firecracker reports these two as body errors.
                    ParamsError::MissingMem | ParamsError::TooManyMem => format!(
                        "An error occurred when deserializing the json body of a request: {e}."
                    ),
                    other => other.to_string(),
                })?;
            if deprecated {
                deprecation = Some(MEM_FILE_PATH_DEPRECATED);
            }
            VmmAction::LoadSnapshot(params)
        }
        ("PUT", ["snapshot"]) => return Err("Missing snapshot operation type.".into()),
        ("PUT", ["snapshot", other]) => {
            return Err(format!(
                "Invalid request method and/or path: {method} /snapshot/{other}."
            ))
        }
        ("PATCH", ["vm"]) => match body::<VmStateBody>(method, raw)?.state {
            VmState::Paused => VmmAction::Pause,
            VmState::Resumed => VmmAction::Resume,
        },
        (_, [first, ..]) => match NOT_YET.iter().find(|(p, _)| p == first) {
            Some((_, what)) if matches!(method, "GET" | "PUT" | "PATCH") => {
                VmmAction::NotSupported(what)
            }
            _ => return Err(invalid()),
        },
        _ => return Err(invalid()),
    };
    Ok(Routed {
        action,
        deprecation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(method: &str, path: &str, body: &str) -> Routed {
        parse(method, path, body.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn ok(method: &str, path: &str, body: &str) -> VmmAction {
        let r = routed(method, path, body);
        assert_eq!(r.deprecation, None, "{method} {path}");
        r.action
    }

    fn fault(method: &str, path: &str, body: &str) -> String {
        match parse(method, path, body.as_bytes()) {
            Err(e) => e,
            Ok(a) => panic!("{method} {path} parsed as {a:?}"),
        }
    }

    #[test]
    fn every_endpoint_parses_firecracker_bodies() {
        assert_eq!(ok("GET", "/", ""), VmmAction::GetInstanceInfo);
        assert_eq!(ok("GET", "/version", ""), VmmAction::GetVersion);
        assert_eq!(ok("GET", "/vm/config", ""), VmmAction::GetFullVmConfig);
        assert_eq!(
            ok("GET", "/machine-config", ""),
            VmmAction::GetMachineConfig
        );
        assert!(matches!(
            ok("PUT", "/machine-config", r#"{"vcpu_count": 2, "mem_size_mib": 256, "smt": false}"#),
            VmmAction::SetMachineConfig(m) if m.vcpu_count == Some(2)
        ));
        assert!(matches!(
            ok("PATCH", "/machine-config", r#"{"mem_size_mib": 64}"#),
            VmmAction::UpdateMachineConfig(m) if m.mem_size_mib == Some(64) && m.vcpu_count.is_none()
        ));
        assert!(matches!(
            ok(
                "PUT",
                "/boot-source",
                r#"{"kernel_image_path": "/k", "boot_args": "console=ttyS0"}"#
            ),
            VmmAction::ConfigureBootSource(_)
        ));
        assert!(matches!(
            ok(
                "PUT",
                "/logger",
                r#"{"log_path": "/l", "level": "Info", "show_level": true}"#
            ),
            VmmAction::ConfigureLogger(_)
        ));
        assert_eq!(
            ok("PUT", "/metrics", r#"{"metrics_path": "/m"}"#),
            VmmAction::ConfigureMetrics("/m".into())
        );
        assert_eq!(
            ok("PUT", "/serial", r#"{"serial_out_path": "/s"}"#),
            VmmAction::ConfigureSerial {
                path: "/s".into(),
                rate_limiter: None
            }
        );
        assert!(matches!(
            ok("PUT", "/serial", r#"{"serial_out_path": "/s", "rate_limiter": {"size": 10, "refill_time": 100}}"#),
            VmmAction::ConfigureSerial { rate_limiter: Some(b), .. } if b.size == 10
        ));
        assert!(matches!(
            ok(
                "PUT",
                "/vsock",
                r#"{"guest_cid": 3, "uds_path": "/v.sock"}"#
            ),
            VmmAction::SetVsockDevice(_)
        ));
        assert!(matches!(
            ok("PUT", "/entropy", "{}"),
            VmmAction::SetEntropyDevice(_)
        ));
        assert!(matches!(
            ok(
                "PUT",
                "/drives/rootfs",
                r#"{"drive_id": "rootfs", "path_on_host": "/r", "is_root_device": true, "is_read_only": false}"#
            ),
            VmmAction::InsertBlockDevice(_)
        ));
        assert!(matches!(
            ok(
                "PATCH",
                "/drives/drive_0",
                r#"{"drive_id": "drive_0", "path_on_host": "/d"}"#
            ),
            VmmAction::UpdateBlockDevice(_)
        ));
        assert!(matches!(
            ok(
                "PUT",
                "/network-interfaces/eth0",
                r#"{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {}, "tx_rate_limiter": {}}"#
            ),
            VmmAction::InsertNetworkDevice(_)
        ));
        assert!(matches!(
            ok(
                "PATCH",
                "/network-interfaces/eth0",
                r#"{"iface_id": "eth0", "rx_rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1}}}"#
            ),
            VmmAction::UpdateNetworkInterface(_)
        ));
        for (t, a) in [
            ("InstanceStart", VmmAction::StartMicroVm),
            ("SendCtrlAltDel", VmmAction::SendCtrlAltDel),
            ("FlushMetrics", VmmAction::FlushMetrics),
        ] {
            assert_eq!(
                ok("PUT", "/actions", &format!(r#"{{"action_type": "{t}"}}"#)),
                a
            );
        }
        assert_eq!(
            ok("PATCH", "/vm", r#"{"state": "Paused"}"#),
            VmmAction::Pause
        );
        assert_eq!(
            ok("PATCH", "/vm", r#"{"state": "Resumed"}"#),
            VmmAction::Resume
        );
        assert!(matches!(
            ok("PUT", "/snapshot/create", r#"{"snapshot_type": "Diff", "snapshot_path": "s", "mem_file_path": "m"}"#),
            VmmAction::CreateSnapshot(c) if c.snapshot_type == crate::snapshot::params::SnapshotType::Diff
        ));
        assert!(matches!(
            ok("PUT", "/snapshot/load", r#"{"snapshot_path": "s", "mem_backend": {"backend_type": "File", "backend_path": "m"}}"#),
            VmmAction::LoadSnapshot(l) if !l.resume_vm && l.mem_file_path.as_os_str() == "m"
        ));
        assert_eq!(
            fault("PUT", "/snapshot/load", r#"{"snapshot_path": "s"}"#),
            "An error occurred when deserializing the json body of a request: \
             missing field: either `mem_backend` or `mem_file_path` is required."
        );
        assert_eq!(
            fault("PUT", "/snapshot", "{}"),
            "Missing snapshot operation type."
        );
        assert!(fault("PUT", "/snapshot/merge", "{}").contains("/snapshot/merge"));
        for p in ["/mmds", "/mmds/config", "/balloon"] {
            assert!(
                matches!(ok("PUT", p, "{}"), VmmAction::NotSupported(_)),
                "{p}"
            );
        }
    }

    #[test]
    fn bad_requests_get_firecracker_messages() {
        assert_eq!(
            fault("PUT", "/vm", r#"{"state": "Paused"}"#),
            "Invalid request method and/or path: PUT vm."
        );
        assert_eq!(
            fault("DELETE", "/drives/x", ""),
            "Invalid request method and/or path: DELETE drives."
        );
        assert_eq!(
            fault("GET", "/vm/nothing", ""),
            "Invalid request method and/or path: GET vm."
        );
        assert_eq!(fault("GET", "/", "{}"), "GET request cannot have a body.");
        assert_eq!(
            fault("GET", "/nothing", ""),
            "Invalid request method and/or path: GET nothing."
        );
        assert_eq!(fault("PUT", "/boot-source", ""), "Empty PUT request.");
        assert_eq!(fault("PATCH", "/vm", ""), "Empty PATCH request.");
        assert_eq!(fault("PUT", "/drives/", "{}"), "The ID cannot be empty.");
        assert!(fault("PUT", "/drives/a-b", "{}").contains("alphanumeric"));
        assert_eq!(
            fault(
                "PUT",
                "/drives/a",
                r#"{"drive_id": "b", "path_on_host": "/r", "is_root_device": false}"#
            ),
            "The id from the path does not match the id from the body!"
        );
        let unknown = fault("PUT", "/machine-config", r#"{"vcpus": 2}"#);
        assert!(unknown.contains("unknown field `vcpus`"), "{unknown}");
        let wrong_type = fault(
            "PUT",
            "/machine-config",
            r#"{"vcpu_count": "two", "mem_size_mib": 1}"#,
        );
        assert!(wrong_type.contains("invalid type"), "{wrong_type}");
        assert!(fault("PUT", "/actions", r#"{"action_type": "Explode"}"#).contains("Explode"));
        assert!(fault("PATCH", "/vm", r#"{"state": "Running"}"#).contains("Running"));
        assert!(fault("PUT", "/boot-source", "{not json").contains("key must be a string"));
    }

    #[test]
    fn deprecated_fields_are_accepted_and_named_as_firecracker_does() {
        let r = routed(
            "PUT",
            "/vsock",
            r#"{"guest_cid": 3, "uds_path": "/v.sock", "vsock_id": "vsock0"}"#,
        );
        assert!(matches!(r.action, VmmAction::SetVsockDevice(_)));
        assert_eq!(r.deprecation, Some(VSOCK_ID_DEPRECATED));
        let r = routed(
            "PUT",
            "/snapshot/load",
            r#"{"snapshot_path": "s", "mem_file_path": "m", "resume_vm": true}"#,
        );
        assert!(matches!(
            r.action,
            VmmAction::LoadSnapshot(ref l) if l.resume_vm && l.mem_file_path.as_os_str() == "m"
        ));
        assert_eq!(r.deprecation, Some(MEM_FILE_PATH_DEPRECATED));
    }
}
