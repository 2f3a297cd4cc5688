//! Firecracker's endpoints with structured input: the first byte picks a
//! method and path, the rest is the JSON body. The router must not panic, ids
//! in the body must match the path's, and a fault must be a non-empty message
//! that survives the JSON error body unchanged.
#![no_main]

use caisson::api::http::Response;
use caisson::api::routes;
use caisson::controller::VmmAction;
use libfuzzer_sys::fuzz_target;

const ENDPOINTS: [(&str, &str); 24] = [
    ("GET", "/"),
    ("GET", "/version"),
    ("GET", "/machine-config"),
    ("GET", "/vm/config"),
    ("PUT", "/machine-config"),
    ("PATCH", "/machine-config"),
    ("PUT", "/boot-source"),
    ("PUT", "/logger"),
    ("PUT", "/metrics"),
    ("PUT", "/serial"),
    ("PUT", "/vsock"),
    ("PUT", "/entropy"),
    ("PUT", "/drives/rootfs"),
    ("PATCH", "/drives/rootfs"),
    ("PUT", "/network-interfaces/eth0"),
    ("PATCH", "/network-interfaces/eth0"),
    ("PUT", "/actions"),
    ("PATCH", "/vm"),
    ("PUT", "/snapshot/create"),
    ("PUT", "/mmds"),
    ("PUT", "/balloon"),
    ("PUT", "/drives/bad-id"),
    ("PUT", "/vm"),
    ("DELETE", "/drives/rootfs"),
];

fuzz_target!(|data: &[u8]| {
    let [pick, body @ ..] = data else {
        return;
    };
    let (method, path) = ENDPOINTS[usize::from(*pick) % ENDPOINTS.len()];
    match routes::parse(method, path, body) {
        Ok(routed) => match routed.action {
            VmmAction::InsertBlockDevice(d) => assert_eq!(d.drive_id, "rootfs"),
            VmmAction::UpdateBlockDevice(d) => assert_eq!(d.drive_id, "rootfs"),
            VmmAction::InsertNetworkDevice(n) => assert_eq!(n.iface_id, "eth0"),
            VmmAction::UpdateNetworkInterface(n) => assert_eq!(n.iface_id, "eth0"),
            _ => {}
        },
        Err(fault) => {
            assert!(!fault.is_empty(), "{method} {path}: empty fault");
            let r = Response::fault(400, &fault);
            let json: serde_json::Value =
                serde_json::from_str(r.body.as_deref().unwrap_or("")).expect("fault body is JSON");
            assert_eq!(json["fault_message"].as_str(), Some(fault.as_str()));
        }
    }
});
