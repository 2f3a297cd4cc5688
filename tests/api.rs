//! The Firecracker REST API over the Unix socket, against the real `caisson`
//! binary: the request orders firecracker-go-sdk and Kata use, Firecracker's
//! pre-/post-boot rules and messages, pause/resume, hostile HTTP clients, and
//! the socket's own rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The hostile-client tests, kept in their own file for size.
#[path = "api/clients.rs"]
mod clients;
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::{cpu_ticks, once, thread_names, Client, Response, Vmm};
use common::*;

const NOT_AFTER_BOOT: &str = "The requested operation is not supported after starting the microVM.";
const NOT_BEFORE_BOOT: &str =
    "The requested operation is not supported before starting the microVM.";
const DEMO_WAIT_ARGS: &str = "console=ttyS0 caisson.demo_wait";
const WAITING: &str = "demo: waiting for input";
const BOOT_LIMIT: Duration = Duration::from_secs(20);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn boot_source_body(guest_name: &str, args: &str) -> String {
    serde_json::json!({"kernel_image_path": guest(guest_name), "boot_args": args}).to_string()
}

/// Boots the waiting demo guest through the API on `v` (serial to stdout, which
/// is `v`'s stdout file) and waits until it waits for input.
fn api_boot_demo(v: &mut Vmm) {
    require_kvm();
    let mut c = v.client();
    c.put("/boot-source", &boot_source_body("demo", DEMO_WAIT_ARGS))
        .assert_no_content();
    c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 64}"#,
    )
    .assert_no_content();
    c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
        .assert_no_content();
    let out = v.path("stdout");
    v.wait_for_text(&out, WAITING, BOOT_LIMIT);
}

/// A config file for the waiting demo guest with `caisson.serial` = `serial`.
fn demo_config(dir: &Path, serial: &str) -> PathBuf {
    let cfg = serde_json::json!({
        "boot-source": {"kernel_image_path": guest("demo"), "boot_args": DEMO_WAIT_ARGS},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
        "caisson": {"serial": serial},
    });
    let p = dir.join("vm.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

/// `caisson --config-file` booting the waiting demo guest (serial on stdout)
/// with the API on; returns once the guest waits for input.
fn running_demo(id: &str, extra: &[&str]) -> Vmm {
    require_kvm();
    let dir = tempdir();
    let cfg = demo_config(dir.path(), "stdout");
    let sock = dir.path().join("api.sock");
    let mut args = vec!["--config-file", s(&cfg)];
    args.extend_from_slice(extra);
    let mut v = Vmm::spawn_in(dir, sock, id, &args);
    v.wait_for_socket();
    let out = v.path("stdout");
    v.wait_for_text(&out, WAITING, BOOT_LIMIT);
    v
}

// ---------------------------------------------------------------------------
// Orchestrators' request orders.

#[test]
fn firecracker_go_sdk_order_boots_the_guest() {
    require_kvm();
    let mut v = Vmm::spawn("go-sdk", &[]);
    let mut c = v.client();
    let (log, metrics, serial) = (v.path("fc.log"), v.path("metrics"), v.path("serial.out"));
    let (rootfs, vsock) = (v.path("rootfs.ext4"), v.path("v.sock"));
    std::fs::write(&rootfs, vec![0u8; 1 << 20]).unwrap();

    c.put(
        "/logger",
        &serde_json::json!({"log_path": log, "level": "Info", "show_level": true, "show_log_origin": false})
            .to_string(),
    )
    .assert_no_content();
    c.put(
        "/metrics",
        &serde_json::json!({"metrics_path": metrics}).to_string(),
    )
    .assert_no_content();
    c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 96, "smt": false, "track_dirty_pages": false}"#,
    )
    .assert_no_content();
    let m = c.get("/machine-config");
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(
        m.json(),
        serde_json::json!({"vcpu_count": 1, "mem_size_mib": 96, "smt": false,
            "track_dirty_pages": false, "huge_pages": "None"}),
        "{m:?}"
    );
    c.put("/boot-source", &boot_source_body("demo", DEMO_WAIT_ARGS))
        .assert_no_content();
    c.put(
        "/drives/rootfs",
        &serde_json::json!({"drive_id": "rootfs", "path_on_host": rootfs,
            "is_root_device": true, "is_read_only": false})
        .to_string(),
    )
    .assert_no_content();
    // The go SDK still sends the deprecated `vsock_id`: accepted, with
    // Firecracker's `Deprecation: true` header (and counter, checked below).
    let r = c.put(
        "/vsock",
        &serde_json::json!({"vsock_id": "vsock0", "guest_cid": 3, "uds_path": vsock}).to_string(),
    );
    assert_eq!(r.header("Deprecation"), Some("true"), "{r:?}");
    r.assert_no_content();
    let r = c.put(
        "/serial",
        &serde_json::json!({"serial_out_path": serial}).to_string(),
    );
    assert_eq!(r.header("Deprecation"), None, "{r:?}");
    r.assert_no_content();
    assert_eq!(c.get("/").json()["state"], "Not started");
    c.put(
        "/metrics",
        &serde_json::json!({"metrics_path": v.path("m2")}).to_string(),
    )
    .assert_fault("Reinitialization of metrics not allowed.");
    c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
        .assert_no_content();

    let info = c.get("/");
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.json()["state"], "Running", "{info:?}");
    assert_eq!(info.json()["id"], "go-sdk", "{info:?}");
    let out = v.wait_for_text(&serial, WAITING, BOOT_LIMIT);
    assert!(out.contains("demo: 1 vcpus"), "{out}");
    assert!(
        !v.stdout().contains(WAITING),
        "serial went to stdout despite PUT /serial: {}",
        v.stdout()
    );
    // The logger now writes to the file, and the vsock's socket exists.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("starting VM go-sdk"), "log: {logged:?}");
    assert!(vsock.exists(), "the vsock's uds_path was not created");
    // FlushMetrics writes one JSON line to the metrics file.
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = lines(&metrics);
    c.put("/actions", r#"{"action_type": "FlushMetrics"}"#)
        .assert_no_content();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(lines(&metrics), before + 1, "{text}");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["utc_timestamp_ms"].is_u64(), "{last}");
    // Counters are per interval: the first line (at boot) or this one has it.
    let deprecated: u64 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m["deprecated_api"]["deprecated_http_api_calls"].as_u64())
        .sum();
    assert_eq!(deprecated, 1, "{text}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("PUT /vsock: vsock_id field is deprecated."),
        "log: {logged:?}"
    );
    v.assert_serving("Running");
}

/// One request as Kata's Firecracker client sends it: a fresh connection,
/// retried up to 500 times 10 ms apart while the socket cannot take it.
/// Returns the response and how many attempts it took.
fn kata_put(sock: &Path, path: &str, body: &str) -> (Response, u32) {
    let mut last = String::new();
    for attempt in 1..=500 {
        match Client::connect(sock).and_then(|mut c| c.request("PUT", path, Some(body))) {
            Ok(r) => return (r, attempt),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("PUT {path} failed 500 times: {last}");
}

#[test]
fn kata_order_with_retries_boots_the_guest() {
    require_kvm();
    // Kata does not wait for the socket: its retries cover the start-up.
    let mut v = Vmm::spawn_nowait("kata", &[]);
    let rootfs = v.path("kata-containers.img");
    std::fs::write(&rootfs, vec![0u8; 1 << 20]).unwrap();
    let vsock = v.path("kata.hvsock");
    let requests = [
        ("/boot-source", boot_source_body("demo", DEMO_WAIT_ARGS)),
        (
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 64, "smt": false}"#.to_string(),
        ),
        (
            "/drives/rootfs",
            serde_json::json!({"drive_id": "rootfs", "path_on_host": rootfs,
                "is_root_device": false, "is_read_only": true})
            .to_string(),
        ),
        (
            "/vsock",
            serde_json::json!({"guest_cid": 3, "uds_path": vsock, "vsock_id": "root"}).to_string(),
        ),
        (
            "/actions",
            r#"{"action_type": "InstanceStart"}"#.to_string(),
        ),
    ];
    for (i, (path, body)) in requests.iter().enumerate() {
        let (r, attempts) = kata_put(&v.sock, path, body);
        r.assert_no_content();
        if i > 0 {
            assert_eq!(attempts, 1, "PUT {path} needed {attempts} attempts");
        } else {
            eprintln!("the first request took {attempts} attempt(s)");
        }
    }
    let out = v.path("stdout");
    v.wait_for_text(&out, WAITING, BOOT_LIMIT);
    v.assert_serving("Running");
}

// ---------------------------------------------------------------------------
// Firecracker's pre-/post-boot rules.

/// Requests accepted only before boot, with bodies that parse.
fn preboot_only(dir: &Path) -> Vec<(&'static str, &'static str, String)> {
    let j = |v: serde_json::Value| v.to_string();
    vec![
        (
            "PUT",
            "/boot-source",
            boot_source_body("hello", "console=ttyS0"),
        ),
        (
            "PUT",
            "/machine-config",
            r#"{"vcpu_count": 1, "mem_size_mib": 64}"#.into(),
        ),
        ("PATCH", "/machine-config", r#"{"mem_size_mib": 64}"#.into()),
        (
            "PUT",
            "/drives/late",
            j(
                serde_json::json!({"drive_id": "late", "path_on_host": dir.join("late.img"), "is_root_device": false}),
            ),
        ),
        (
            "PUT",
            "/network-interfaces/eth0",
            r#"{"iface_id": "eth0", "host_dev_name": "tap0"}"#.into(),
        ),
        (
            "PUT",
            "/vsock",
            j(serde_json::json!({"guest_cid": 3, "uds_path": dir.join("late.sock")})),
        ),
        ("PUT", "/entropy", "{}".into()),
        (
            "PUT",
            "/logger",
            j(serde_json::json!({"log_path": dir.join("late.log")})),
        ),
        (
            "PUT",
            "/metrics",
            j(serde_json::json!({"metrics_path": dir.join("late.metrics")})),
        ),
        (
            "PUT",
            "/serial",
            j(serde_json::json!({"serial_out_path": dir.join("late.serial")})),
        ),
        (
            "PUT",
            "/actions",
            r#"{"action_type": "InstanceStart"}"#.into(),
        ),
    ]
}

/// Requests accepted only after boot.
fn runtime_only() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("PUT", "/actions", r#"{"action_type": "FlushMetrics"}"#),
        ("PUT", "/actions", r#"{"action_type": "SendCtrlAltDel"}"#),
        ("PATCH", "/vm", r#"{"state": "Paused"}"#),
        ("PATCH", "/vm", r#"{"state": "Resumed"}"#),
        (
            "PATCH",
            "/drives/rootfs",
            r#"{"drive_id": "rootfs", "path_on_host": "/tmp/x"}"#,
        ),
        (
            "PATCH",
            "/network-interfaces/eth0",
            r#"{"iface_id": "eth0", "rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}"#,
        ),
    ]
}

#[test]
fn runtime_only_requests_are_refused_before_boot() {
    let v = Vmm::spawn("preboot", &[]);
    let mut c = v.client();
    for (method, path, body) in runtime_only() {
        let r = c.request(method, path, Some(body)).unwrap();
        assert_eq!(r.status, 400, "{method} {path}: {r:?}");
        assert_eq!(r.fault(), NOT_BEFORE_BOOT, "{method} {path}");
    }
    assert_eq!(c.get("/").json()["state"], "Not started");
}

#[test]
fn preboot_only_requests_are_refused_after_boot() {
    let mut v = Vmm::spawn("postboot", &[]);
    api_boot_demo(&mut v);
    let mut c = v.client();
    for (method, path, body) in preboot_only(v.dir.path()) {
        let r = c.request(method, path, Some(&body)).unwrap();
        assert_eq!(r.status, 400, "{method} {path}: {r:?}");
        assert_eq!(r.fault(), NOT_AFTER_BOOT, "{method} {path}");
    }
    // Nothing refused changed the VM or left files behind.
    for f in ["late.log", "late.metrics", "late.serial", "late.sock"] {
        assert!(!v.path(f).exists(), "{f} was created by a refused request");
    }
    // The getters work in both phases.
    let m = c.get("/machine-config");
    assert_eq!(m.json()["mem_size_mib"], 64, "{m:?}");
    assert_eq!(c.get("/version").status, 200);
    assert_eq!(c.get("/vm/config").status, 200);
    v.assert_serving("Running");
}

#[test]
fn version_and_instance_info_bodies() {
    let v = Vmm::spawn("info-1", &[]);
    let r = once(&v.sock, "GET", "/version", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{r:?}");
    assert_eq!(
        r.json(),
        serde_json::json!({"firecracker_version": env!("CARGO_PKG_VERSION")})
    );
    let r = once(&v.sock, "GET", "/", None);
    assert_eq!(
        r.json(),
        serde_json::json!({"app_name": "Caisson", "id": "info-1", "state": "Not started",
            "vmm_version": env!("CARGO_PKG_VERSION")})
    );
}

#[test]
fn vm_config_reflects_what_was_put() {
    let v = Vmm::spawn("vmconfig", &[]);
    let mut c = v.client();
    let rootfs = v.path("root.img");
    std::fs::write(&rootfs, vec![0u8; 4096]).unwrap();
    let vsock = v.path("v.sock");
    c.put(
        "/boot-source",
        &boot_source_body("hello", "console=ttyS0 quiet"),
    )
    .assert_no_content();
    c.put(
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 80}"#,
    )
    .assert_no_content();
    c.put(
        "/drives/root",
        &serde_json::json!({"drive_id": "root", "path_on_host": rootfs, "is_root_device": true, "is_read_only": true})
            .to_string(),
    )
    .assert_no_content();
    c.put(
        "/vsock",
        &serde_json::json!({"guest_cid": 9, "uds_path": vsock}).to_string(),
    )
    .assert_no_content();
    // A second PUT of the same drive id replaces it.
    c.put(
        "/drives/root",
        &serde_json::json!({"drive_id": "root", "path_on_host": rootfs, "is_root_device": true, "is_read_only": false})
            .to_string(),
    )
    .assert_no_content();
    let r = c.get("/vm/config");
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(
        j["boot-source"]["kernel_image_path"],
        s(&guest("hello")),
        "{j}"
    );
    assert_eq!(j["boot-source"]["boot_args"], "console=ttyS0 quiet", "{j}");
    assert_eq!(j["machine-config"]["vcpu_count"], 2, "{j}");
    assert_eq!(j["machine-config"]["mem_size_mib"], 80, "{j}");
    let drives = j["drives"].as_array().unwrap();
    assert_eq!(drives.len(), 1, "{j}");
    assert_eq!(drives[0]["drive_id"], "root", "{j}");
    assert_eq!(drives[0]["path_on_host"], s(&rootfs), "{j}");
    assert_eq!(drives[0]["is_read_only"], false, "{j}");
    assert_eq!(j["vsock"]["guest_cid"], 9, "{j}");
    assert_eq!(j["vsock"]["uds_path"], s(&vsock), "{j}");
    // PATCH changes one field and keeps the others.
    c.patch("/machine-config", r#"{"mem_size_mib": 72}"#)
        .assert_no_content();
    let m = c.get("/machine-config").json();
    assert_eq!(
        (m["vcpu_count"].clone(), m["mem_size_mib"].clone()),
        (2.into(), 72.into())
    );
}

#[test]
fn bad_requests_get_firecracker_messages() {
    let v = Vmm::spawn("badreq", &[]);
    let mut c = v.client();
    c.put(
        "/drives/a",
        r#"{"drive_id": "b", "path_on_host": "/tmp/x", "is_root_device": false}"#,
    )
    .assert_fault("The id from the path does not match the id from the body!");
    c.put(
        "/network-interfaces/eth0",
        r#"{"iface_id": "eth1", "host_dev_name": "tap0"}"#,
    )
    .assert_fault("The id from the path does not match the id from the body!");
    c.put("/boot-source", "").assert_fault("Empty PUT request.");
    c.patch("/vm", "").assert_fault("Empty PATCH request.");
    c.put(
        "/machine-config",
        r#"{"vcpu_count": 1, "mem_size_mib": 64, "vcpus": 2}"#,
    )
    .assert_fault_contains("unknown field `vcpus`");
    c.put(
        "/boot-source",
        r#"{"kernel_image_path": "/k", "bootargs": "x"}"#,
    )
    .assert_fault_contains("unknown field `bootargs`");
    c.put(
        "/machine-config",
        r#"{"vcpu_count": "two", "mem_size_mib": 64}"#,
    )
    .assert_fault_contains("invalid type");
    c.put("/boot-source", "{not json")
        .assert_fault_contains("key must be a string");
    c.put("/actions", r#"{"action_type": "Explode"}"#)
        .assert_fault_contains("Explode");
    c.put("/vm", r#"{"state": "Paused"}"#)
        .assert_fault("Invalid request method and/or path: PUT vm.");
    // Firecracker's HTTP layer has no DELETE at all; any 400 naming it will do.
    let r = c.request("DELETE", "/drives/x", None).unwrap();
    r.assert_fault_contains("DELETE");
    c.get("/nothing")
        .assert_fault("Invalid request method and/or path: GET nothing.");
    c.put("/drives/a-b", "{}")
        .assert_fault_contains("alphanumeric");
    // Snapshot bodies are parsed as Firecracker's: a missing field is named.
    c.put("/snapshot/create", "{}")
        .assert_fault_contains("snapshot_path");
    c.put("/snapshot/load", "{}")
        .assert_fault_contains("snapshot_path");
    for path in ["/mmds", "/mmds/config", "/balloon"] {
        let r = c.put(path, "{}");
        r.assert_fault_contains("not supported");
    }
    c.get("/balloon/statistics")
        .assert_fault_contains("not supported");
    // None of it changed anything.
    let m = c.get("/machine-config").json();
    assert_eq!(
        (m["vcpu_count"].clone(), m["mem_size_mib"].clone()),
        (1.into(), 128.into())
    );
    assert_eq!(c.get("/").json()["state"], "Not started");
}

#[test]
fn config_file_boots_then_serves_post_boot_requests() {
    require_kvm();
    let dir = tempdir();
    let serial = dir.path().join("serial.out");
    let cfg = demo_config(dir.path(), s(&serial));
    let sock = dir.path().join("api.sock");
    let mut v = Vmm::spawn_in(dir, sock, "cfgfile", &["--config-file", s(&cfg)]);
    v.wait_for_socket();
    // The first request, with no PUT at all, already sees a running VM.
    let r = once(&v.sock, "GET", "/", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "Running", "{r:?}");
    v.wait_for_text(&serial, WAITING, BOOT_LIMIT);
    once(
        &v.sock,
        "PUT",
        "/boot-source",
        Some(&boot_source_body("hello", "console=ttyS0")),
    )
    .assert_fault(NOT_AFTER_BOOT);
    let m = once(&v.sock, "GET", "/machine-config", None);
    assert_eq!(m.json()["mem_size_mib"], 64, "{m:?}");
    v.assert_serving("Running");
}

// ---------------------------------------------------------------------------
// Pause and resume.

#[test]
fn pause_stops_the_vcpus_and_resume_restarts_them() {
    let mut v = running_demo("pause", &[]);
    let pid = v.pid();
    let tick = Duration::from_secs(1);
    // The demo guest polls the serial port in a loop: it uses CPU while running.
    let before = cpu_ticks(pid);
    std::thread::sleep(tick);
    let running = cpu_ticks(pid) - before;

    let mut c = v.client();
    c.patch("/vm", r#"{"state": "Paused"}"#).assert_no_content();
    assert_eq!(c.get("/").json()["state"], "Paused");
    let before = cpu_ticks(pid);
    std::thread::sleep(tick);
    let paused = cpu_ticks(pid) - before;
    eprintln!("CPU ticks over 1 s: running {running}, paused {paused}");
    assert!(
        running >= 10,
        "the spinning guest used only {running} ticks in 1 s"
    );
    assert!(paused <= 5, "a paused VM used {paused} CPU ticks in 1 s");
    c.patch("/vm", r#"{"state": "Paused"}"#)
        .assert_fault("the VM is already paused");
    assert_eq!(c.get("/").json()["state"], "Paused");

    c.patch("/vm", r#"{"state": "Resumed"}"#)
        .assert_no_content();
    assert_eq!(c.get("/").json()["state"], "Running");
    c.patch("/vm", r#"{"state": "Resumed"}"#)
        .assert_fault("the VM is already running");
    // The guest still answers: a key makes it finish.
    let stdin = v.child.stdin.as_mut().unwrap();
    stdin.write_all(b"k").unwrap();
    stdin.flush().unwrap();
    let out = v.path("stdout");
    v.wait_for_text(&out, "demo: got input", BOOT_LIMIT);
    let status = v.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "stderr: {}", v.stderr());
}

// ---------------------------------------------------------------------------
// The socket path and the process.

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempdir();
    let sock = dir.path().join("api.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "the stale socket file is gone already");
    let mut v = Vmm::spawn_in(dir, sock, "stale", &[]);
    v.wait_for_socket();
    assert_eq!(v.state(), "Not started");
}

#[test]
fn a_live_socket_is_an_error_naming_the_path() {
    let mut first = Vmm::spawn("live-1", &[]);
    let out = caisson(&["--api-sock", s(&first.sock), "--id", "live-2"]);
    assert_eq!(out.code, Some(caisson::exit::code::BAD_INPUT), "{out:?}");
    assert!(out.stderr.contains(s(&first.sock)), "{out:?}");
    assert!(out.stderr.contains("another process"), "{out:?}");
    // The first one is untouched.
    first.assert_serving("Not started");
    assert_eq!(once(&first.sock, "GET", "/", None).json()["id"], "live-1");
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let dir = tempdir();
    let path = dir.path().join("api.sock");
    std::fs::write(&path, b"precious").unwrap();
    let out = caisson(&["--api-sock", s(&path), "--id", "file"]);
    assert_eq!(out.code, Some(caisson::exit::code::BAD_INPUT), "{out:?}");
    assert!(out.stderr.contains(s(&path)), "{out:?}");
    assert!(out.stderr.contains("not a socket"), "{out:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn version_flag_prints_semver() {
    let out = caisson(&["--version"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let first = out.stdout.lines().next().unwrap_or_default();
    let version = first.split_whitespace().nth(1).unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "{first:?}");
    for p in parts {
        assert!(
            !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()),
            "{first:?} is not major.minor.patch"
        );
    }
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn threads_carry_firecracker_names() {
    let mut v = running_demo("threads", &[]);
    let names = thread_names(v.pid());
    assert!(names.iter().any(|n| n == "fc_api"), "{names:?}");
    assert!(names.iter().any(|n| n == "fc_vcpu 0"), "{names:?}");
    v.assert_serving("Running");
}

// ---------------------------------------------------------------------------
// More of Firecracker's behaviour, and edge cases found while probing.

/// Firecracker's `GET /vm/config` always has a machine-config with numbers
/// (swagger: vcpu_count and mem_size_mib are required), as `GET /machine-config`.
#[test]
fn vm_config_has_machine_config_values_before_any_put() {
    let v = Vmm::spawn("vmconfig-defaults", &[]);
    let m = once(&v.sock, "GET", "/machine-config", None).json();
    let full = once(&v.sock, "GET", "/vm/config", None).json();
    assert_eq!(
        full["machine-config"]["vcpu_count"], m["vcpu_count"],
        "{full}"
    );
    assert_eq!(
        full["machine-config"]["mem_size_mib"], m["mem_size_mib"],
        "{full}"
    );
}

#[test]
fn a_failed_instance_start_can_be_retried() {
    require_kvm();
    let mut v = Vmm::spawn("retry-start", &[]);
    let mut c = v.client();
    c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
        .assert_fault_contains("kernel_image_path");
    c.put(
        "/drives/d",
        r#"{"drive_id": "d", "path_on_host": "/nonexistent/d.img", "is_root_device": false}"#,
    )
    .assert_fault_contains("/nonexistent/d.img");
    c.put(
        "/machine-config",
        r#"{"vcpu_count": 0, "mem_size_mib": 64}"#,
    )
    .assert_fault_contains("vcpu_count");
    c.put("/machine-config", r#"{"vcpu_count": 1, "mem_size_mib": 1}"#)
        .assert_fault_contains("mem_size_mib");
    assert_eq!(c.get("/").json()["state"], "Not started");
    api_boot_demo(&mut v);
    // Ctrl-Alt-Del reaches the i8042; the demo guest ignores it and runs on.
    once(
        &v.sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
    )
    .assert_no_content();
    v.assert_serving("Running");
}

/// Firecracker's own wording (src/firecracker/src/api_server/parsed_request.rs):
/// JSON errors are prefixed, an unknown path is named by its first segment, and
/// a GET may not carry a body.
#[test]
fn fault_messages_use_firecracker_wording() {
    let v = Vmm::spawn("wording", &[]);
    let mut c = v.client();
    let mut wrong = Vec::new();
    let mut check = |what: &str, r: Response, want: &str| {
        if r.status != 400 || !r.fault().starts_with(want) {
            wrong.push(format!(
                "{what}: got {} {:?}, want {want:?}",
                r.status,
                r.text()
            ));
        }
    };
    check(
        "unknown field",
        c.put("/machine-config", r#"{"vcpus": 2}"#),
        "An error occurred when deserializing the json body of a request: unknown field `vcpus`",
    );
    check(
        "bad JSON",
        c.put("/boot-source", "{not json"),
        "An error occurred when deserializing the json body of a request: key must be a string",
    );
    check(
        "unknown sub-path",
        c.get("/vm/nothing"),
        "Invalid request method and/or path: GET vm.",
    );
    check(
        "GET with a body",
        c.request("GET", "/machine-config", Some("{}")).unwrap(),
        "GET request cannot have a body.",
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn sigterm_stops_an_api_vmm_before_and_after_boot() {
    let mut v = Vmm::spawn("term-preboot", &[]);
    let term = |pid: i32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap()
    };
    term(v.pid());
    let status = v.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", v.stderr());

    let mut v = Vmm::spawn("term-running", &[]);
    api_boot_demo(&mut v);
    term(v.pid());
    let status = v.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", v.stderr());

    // Paused vCPUs do not hold up the exit.
    let mut v = Vmm::spawn("term-paused", &[]);
    api_boot_demo(&mut v);
    once(&v.sock, "PATCH", "/vm", Some(r#"{"state": "Paused"}"#)).assert_no_content();
    term(v.pid());
    let status = v.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", v.stderr());
}

/// Firecracker's PATCH /drives/{id}: a new backing file for a running VM.
#[test]
fn patch_drive_after_boot_swaps_the_backing_file() {
    require_kvm();
    let mut v = Vmm::spawn("patch-drive", &[]);
    let (old, new) = (v.path("old.img"), v.path("new.img"));
    std::fs::write(&old, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&new, vec![1u8; 2 << 20]).unwrap();
    once(
        &v.sock,
        "PUT",
        "/drives/rootfs",
        Some(
            &serde_json::json!({"drive_id": "rootfs", "path_on_host": old, "is_root_device": true})
                .to_string(),
        ),
    )
    .assert_no_content();
    api_boot_demo(&mut v);
    let mut c = v.client();
    let patch = |id: &str, path: &Path| {
        serde_json::json!({"drive_id": id, "path_on_host": path}).to_string()
    };
    c.patch("/drives/rootfs", &patch("rootfs", &new))
        .assert_no_content();
    c.patch("/drives/nope", &patch("nope", &new))
        .assert_fault_contains("nope");
    let missing = v.path("missing.img");
    c.patch("/drives/rootfs", &patch("rootfs", &missing))
        .assert_fault_contains(s(&missing));
    v.assert_serving("Running");
}

/// firecracker-go-sdk's network step in a namespace of the test's own, then
/// Firecracker's PATCH /network-interfaces/{id} (rate limiters) after boot.
#[test]
fn network_interface_put_before_boot_and_patch_after() {
    require_kvm();
    let ns = common::net::NetNs::new();
    let tap = format!("apitap{}", std::process::id() % 100_000);
    let tap2 = tap.clone();
    // Persistent: it outlives this fd, for the VMM to open by name.
    ns.run(move || drop(common::net::tap_host::create(&tap2, true)));
    let mut v = ns.run(|| Vmm::spawn("net-api", &[]));
    once(
        &v.sock,
        "PUT",
        "/network-interfaces/eth0",
        Some(
            &serde_json::json!({"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:10:00:02"})
                .to_string(),
        ),
    )
    .assert_no_content();
    api_boot_demo(&mut v);
    let mut c = v.client();
    let limiter = r#"{"bandwidth": {"size": 1000000, "refill_time": 100}}"#;
    c.patch(
        "/network-interfaces/eth0",
        &format!(r#"{{"iface_id": "eth0", "rx_rate_limiter": {limiter}}}"#),
    )
    .assert_no_content();
    c.patch(
        "/network-interfaces/eth9",
        &format!(r#"{{"iface_id": "eth9", "rx_rate_limiter": {limiter}}}"#),
    )
    .assert_fault_contains("eth9");
    c.patch(
        "/network-interfaces/eth0",
        r#"{"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": "big"}}}"#,
    )
    .assert_fault_contains("invalid type");
    let j = c.get("/vm/config").json();
    let n = &j["network-interfaces"][0];
    assert_eq!(n["host_dev_name"], tap.as_str(), "{j}");
    assert_eq!(n["rx_rate_limiter"]["bandwidth"]["size"], 1_000_000, "{j}");
    v.assert_serving("Running");
}

/// `PUT /serial` with Firecracker's `rate_limiter` (a token bucket of bytes):
/// the hello guest prints 35 bytes, the bucket holds 5 and refills in an hour,
/// so the file gets the first 5 and the VM still ends normally.
#[test]
fn serial_rate_limiter_drops_what_exceeds_the_budget() {
    require_kvm();
    let mut v = Vmm::spawn("serial-rl", &[]);
    let serial = v.path("serial.out");
    let mut c = v.client();
    c.put(
        "/boot-source",
        &serde_json::json!({"kernel_image_path": guest("hello"), "boot_args": "console=ttyS0"})
            .to_string(),
    )
    .assert_no_content();
    c.put(
        "/serial",
        &serde_json::json!({"serial_out_path": serial,
            "rate_limiter": {"size": 5, "refill_time": 3_600_000}})
        .to_string(),
    )
    .assert_no_content();
    c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
        .assert_no_content();
    let status = v.wait_exit(std::time::Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stderr: {}", v.stderr());
    assert_eq!(std::fs::read_to_string(&serial).unwrap(), "Hello");
    // A bad bucket is refused by name, before boot.
    let mut v = Vmm::spawn("serial-rl-bad", &[]);
    let mut c = v.client();
    let r = c.put(
        "/serial",
        &serde_json::json!({"serial_out_path": v.path("s"),
            "rate_limiter": {"size": 5, "refill_time": 0}})
        .to_string(),
    );
    r.assert_fault_contains("serial_rate_limiter");
    v.assert_serving("Not started");
}
