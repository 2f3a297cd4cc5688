//! Shared helpers for the integration tests: run the real `caisson` binary with a
//! deadline and capture what it printed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod http;
pub mod linux;
pub mod net;
pub mod snapshot;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CAISSON: &str = env!("CARGO_BIN_EXE_caisson");

/// Path of a guest built from tests/guests.
pub fn guest(name: &str) -> PathBuf {
    let p = Path::new(caisson::demo::GUEST_BUILD_DIR).join(format!("{name}.elf"));
    assert!(
        p.exists(),
        "guest {name} was not built: {} is missing",
        p.display()
    );
    p
}

/// Fails the test with a clear message where /dev/kvm is missing.
pub fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "this test boots a guest through KVM and needs /dev/kvm, which this machine lacks"
    );
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Waits for `child` for at most `limit`, killing it (and failing) past that.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            panic!("caisson did not finish within {limit:?}; stdout so far:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut stdout).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    Output {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Runs `caisson` with `args`, no stdin, a 60 s deadline.
pub fn caisson(args: &[&str]) -> Output {
    let child = Command::new(CAISSON)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(60))
}

/// Boots guest `name` with extra arguments.
pub fn boot(name: &str, extra: &[&str]) -> Output {
    require_kvm();
    let g = guest(name);
    let mut args = vec!["--kernel", g.to_str().unwrap(), "--serial", "stdout"];
    args.extend_from_slice(extra);
    caisson(&args)
}

/// FNV-1a 64, as the args guest computes it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A temporary directory removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Starts the demo guest with `caisson.demo_wait` (plus `extra` arguments) and
/// returns once it waits for serial input, with its stdout reader.
pub fn waiting_demo(
    extra: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    require_kvm();
    let mut child = Command::new(CAISSON)
        .args(["demo", "--cmdline", "caisson.demo_wait"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("demo: waiting for input") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the demo guest ended before waiting"
        );
    }
    (child, reader)
}
