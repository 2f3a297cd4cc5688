//! The VMM's per-thread seccomp filters: installed in every thread before guest
//! code runs, and a forbidden syscall kills the VMM with a line naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::*;

/// A filter file equal to the built-in one, minus `syscall` in `kind`'s filter.
fn filter_without(dir: &std::path::Path, kind: &str, syscall: &str) -> String {
    let mut vmm: serde_json::Value = serde_json::from_str(caisson::seccomp::VMM_JSON).unwrap();
    let vcpu: serde_json::Value = serde_json::from_str(caisson::seccomp::VCPU_JSON).unwrap();
    let api: serde_json::Value = serde_json::from_str(caisson::seccomp::API_JSON).unwrap();
    vmm["vcpu"] = vcpu["vcpu"].clone();
    vmm["api"] = api["api"].clone();
    let rules = vmm[kind]["filter"].as_array_mut().unwrap();
    let before = rules.len();
    // "ioctl:KVM_GET_REGS" removes only that ioctl's rule (its argument's comment
    // names the request).
    let (name, request) = syscall.split_once(':').unwrap_or((syscall, ""));
    rules.retain(|r| {
        r["syscall"] != name || (!request.is_empty() && r["args"][0]["comment"] != request)
    });
    assert!(
        rules.len() < before,
        "{syscall} was not in the {kind} filter"
    );
    let p = dir.join(format!("no-{}.json", syscall.replace(':', "-")));
    std::fs::write(&p, vmm.to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

fn killed_by_sigsys(guest_name: &str, kind: &str, rule: &str, syscall: &str, thread: &str) {
    require_kvm();
    let d = tempdir();
    let f = filter_without(d.path(), kind, rule);
    let log = d.path().join("caisson.log");
    let g = guest(guest_name);
    let child = Command::new(CAISSON)
        .args([
            "--kernel",
            g.to_str().unwrap(),
            "--seccomp-filter",
            &f,
            "--log-path",
            log.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, std::time::Duration::from_secs(30));
    assert_eq!(out.code, None, "killed by a signal, not an exit: {out:?}");
    let want = format!("thread {thread} made the forbidden syscall {syscall} (");
    assert!(
        out.stderr.contains(&want),
        "stderr should name {syscall}: {out:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&want),
        "the log file should name {syscall}: {logged}"
    );
}

#[test]
fn forbidden_syscall_in_a_vcpu_thread_kills_the_vmm() {
    // After a triple fault the vCPU thread reads the RIP with KVM_GET_REGS.
    killed_by_sigsys("fault", "vcpu", "ioctl:KVM_GET_REGS", "ioctl", "fc_vcpu 0");
}

#[test]
fn forbidden_syscall_in_the_vmm_thread_kills_the_vmm() {
    killed_by_sigsys("hello", "vmm", "epoll_wait", "epoll_wait", "caisson");
}

#[test]
fn forbidden_syscall_exit_status_is_sigsys() {
    require_kvm();
    let d = tempdir();
    let f = filter_without(d.path(), "vcpu", "write");
    let g = guest("hello");
    let status = Command::new(CAISSON)
        .args(["--kernel", g.to_str().unwrap(), "--seccomp-filter", &f])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Runs the demo guest waiting for input and returns, per thread, (name, Seccomp, NoNewPrivs).
fn thread_confinement(extra: &[&str]) -> (Vec<(String, String, String)>, String) {
    let mut args = vec!["--vcpus", "2"];
    args.extend_from_slice(extra);
    let (mut child, _reader) = waiting_demo(&args);
    let mut threads = vec![];
    for t in std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap() {
        let s = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        threads.push((
            status_field(&s, "Name"),
            status_field(&s, "Seccomp"),
            status_field(&s, "NoNewPrivs"),
        ));
    }
    child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let out = wait_output(child, std::time::Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{out:?}");
    threads.sort();
    (threads, out.stderr)
}

#[test]
fn every_thread_is_filtered_before_the_guest_runs() {
    let (threads, _) = thread_confinement(&[]);
    // KVM may attach kernel workers (kvm-nx-lpage-recovery) to the process.
    let names: Vec<&str> = threads
        .iter()
        .map(|t| t.0.as_str())
        .filter(|n| !n.starts_with("kvm-"))
        .collect();
    assert_eq!(names, ["caisson", "fc_vcpu 0", "fc_vcpu 1"], "{threads:?}");
    for (name, seccomp, nnp) in &threads {
        assert_eq!(seccomp, "2", "thread {name} is not in seccomp filter mode");
        assert_eq!(nnp, "1", "thread {name} lacks no_new_privs");
    }
}

#[test]
fn bad_filter_file_is_rejected() {
    let d = tempdir();
    let p = d.path().join("bad.json");
    std::fs::write(&p, r#"{"vmm": {"default_action": "trap", "filter_action": "allow", "filter": [{"syscall": "no_such_call"}]}}"#).unwrap();
    let out = caisson(&[
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--seccomp-filter",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--seccomp-filter") && out.stderr.contains("bad.json"),
        "{out:?}"
    );
    let out = caisson(&[
        "--kernel",
        guest("hello").to_str().unwrap(),
        "--seccomp-filter",
        "/nonexistent.json",
    ]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("/nonexistent.json"), "{out:?}");
}

#[test]
fn no_seccomp_warns_and_leaves_threads_unfiltered() {
    let (threads, stderr) = thread_confinement(&["--no-seccomp"]);
    assert!(
        stderr.contains("--no-seccomp"),
        "a warning is expected: {stderr}"
    );
    for (name, seccomp, _) in threads.iter().filter(|t| !t.0.starts_with("kvm-")) {
        assert_eq!(seccomp, "0", "thread {name}");
    }
}

/// Per thread of process `pid`: (name, Seccomp, NoNewPrivs).
fn confinement_of(pid: i32) -> Vec<(String, String, String)> {
    let mut threads = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let s = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        threads.push((
            status_field(&s, "Name"),
            status_field(&s, "Seccomp"),
            status_field(&s, "NoNewPrivs"),
        ));
    }
    threads.sort();
    threads
}

#[test]
fn api_thread_is_filtered_before_any_guest_runs() {
    let v = common::http::Vmm::spawn("sc", &[]);
    // An answer means the API thread is serving, so past its filter's install.
    let r = common::http::once(&v.sock, "GET", "/", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "Not started", "{r:?}");
    let threads = confinement_of(v.pid());
    let names: Vec<&str> = threads
        .iter()
        .map(|t| t.0.as_str())
        .filter(|n| !n.starts_with("kvm-"))
        .collect();
    assert_eq!(names, ["caisson", "fc_api"], "{threads:?}");
    // The VMM thread installs its filter at InstanceStart, as Firecracker's
    // does while building the VM; the API thread serves confined from the start.
    let (_, seccomp, nnp) = threads.iter().find(|t| t.0 == "fc_api").unwrap();
    assert_eq!(
        seccomp, "2",
        "fc_api is not in seccomp filter mode: {threads:?}"
    );
    assert_eq!(nnp, "1", "fc_api lacks no_new_privs: {threads:?}");
}

#[test]
fn forbidden_syscall_in_the_api_thread_kills_the_vmm() {
    let d = tempdir();
    let f = filter_without(d.path(), "api", "accept4");
    let log = d.path().join("caisson.log");
    let mut v = common::http::Vmm::spawn_nowait(
        "sc",
        &["--seccomp-filter", &f, "--log-path", log.to_str().unwrap()],
    );
    // The listener is bound before the API thread runs, so the connection is
    // queued; the thread's accept4 is the forbidden call.
    let start = std::time::Instant::now();
    let _conn = loop {
        match std::os::unix::net::UnixStream::connect(&v.sock) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(3),
                    "connect {}: {e}; stderr: {}",
                    v.sock.display(),
                    v.stderr()
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    };
    let status = v.wait_exit(std::time::Duration::from_secs(30));
    assert_eq!(
        status.signal(),
        Some(libc::SIGSYS),
        "{status:?}; stderr: {}",
        v.stderr()
    );
    let want = "thread fc_api made the forbidden syscall accept4 (";
    let stderr = v.stderr();
    assert!(
        stderr.contains(want),
        "stderr should name accept4: {stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(want),
        "the log file should name accept4: {logged}"
    );
}
