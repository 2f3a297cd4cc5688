//! Times `caisson-jailer` start -> the jailed hello guest's first serial byte (and
//! -> exit, cleanup included), median of >= 20 runs, with the real statically
//! linked `caisson` (built as tests/demo.sh builds it). Run as root:
//! `cargo bench -p caisson-jailer --bench first_byte`. Prints figures only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[path = "../tests/common/mod.rs"]
mod common;

/// The static VMM (built as tests/demo.sh builds it) and the hello guest of
/// that build.
fn static_vmm() -> (PathBuf, PathBuf) {
    let vmm = common::static_caisson();
    let release = vmm.parent().expect("target/static/release").to_path_buf();
    let guest = std::fs::read_dir(release.join("build"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("out/guests/hello.elf"))
        .find(|p| p.exists())
        .expect("hello.elf in the static build");
    (vmm, guest)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("CAISSON_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .max(20);
    let (vmm, hello) = static_vmm();
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(&hello, work.path().join("hello.elf")).unwrap();
    let cfg = work.path().join("vm.json");
    let json = serde_json::json!({
        "boot-source": {"kernel_image_path": work.path().join("hello.elf"), "boot_args": "console=ttyS0"},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}
    });
    std::fs::write(&cfg, json.to_string()).unwrap();
    let (mut first, mut exit) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let id = format!("fb{}-{i}", std::process::id());
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_caisson-jailer"))
            .args(["--id", &id, "--exec-file"])
            .arg(&vmm)
            .arg("--config-file")
            .arg(&cfg)
            .arg("--resource-root")
            .arg(work.path())
            .arg("--chroot-base-dir")
            .arg(work.path().join("jails"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        out.read_exact(&mut byte).unwrap();
        first.push(t.elapsed());
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "jailed hello failed");
        exit.push(t.elapsed());
    }
    println!("jailed hello guest, 1 vCPU, 128 MiB, median of {runs} runs");
    println!(
        "  caisson-jailer start -> first serial byte: {:>8.2?}",
        median(&mut first)
    );
    println!(
        "  caisson-jailer start -> exit (cleanup included): {:>8.2?}",
        median(&mut exit)
    );
}
