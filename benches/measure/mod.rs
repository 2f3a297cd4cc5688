//! What the benchmarks measure a VMM process with: medians, CPU time from
//! schedstat, and the resident set split into guest RAM and the rest.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One request with `Connection: close`: the status code and the whole answer.
pub fn request(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, resp)
}

/// The static caisson the jail runs (as tests/demo.sh and the jailer's tests build it).
pub fn static_caisson() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["rustc", "-q", "--release", "--bin", "caisson"])
        .args(["--target-dir", "target/static"])
        .args(["--", "-C", "target-feature=+crt-static"])
        .current_dir(root)
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the static caisson failed");
    root.join("target/static/release/caisson")
}

/// Connects as soon as the socket accepts (polling every 50 µs).
pub fn wait_accepting(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "the API socket never accepted");
        std::thread::sleep(Duration::from_micros(50));
    }
}

pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// CPU time consumed so far by every thread of `pid` (from schedstat, in ns).
pub fn cpu_time_alive(pid: u32) -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

/// Rss (kB) of the whole process and of the guest RAM mapping (the 128 MiB one).
pub fn rss_split(pid: u32, guest_kb: u64) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut total, mut guest) = (0, 0);
    let mut in_guest = false;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        match (f.next(), f.next()) {
            (Some("Size:"), Some(kb)) => in_guest = kb.parse::<u64>().ok() == Some(guest_kb),
            (Some("Rss:"), Some(kb)) => {
                let kb: u64 = kb.parse().unwrap();
                total += kb;
                if in_guest {
                    guest += kb;
                }
            }
            _ => {}
        }
    }
    (total, guest)
}
