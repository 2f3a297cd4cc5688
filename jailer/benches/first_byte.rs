//! Times the jailed hello guest's first serial byte against the unjailed VMM's, in
//! alternating pairs (so that both see the same machine), median of >= 20 pairs,
//! with the real statically linked `caisson` and `caisson-jailer` (built as
//! tests/demo.sh builds them, tests/build-static.sh):
//! - unjailed: `caisson --no-api --config-file` start -> first byte;
//! - jailed: `caisson-jailer` (strict profile) start -> first byte, and -> exit
//!   (cleanup included);
//!
//! then the jail sequence's per-step profile (the opt-in timing log,
//! `CAISSON_JAILER_TIMING=1`), median time since the jailer's start per step, matched by name, over the same number of runs.
//!
//! Run as root: `cargo bench -p caisson-jailer --bench first_byte`
//! (`CAISSON_BENCH_RUNS=N` changes the count). Prints figures only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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

/// Spawns `cmd`, returns (start -> first stdout byte, start -> exit, stderr).
fn time_first_byte(mut cmd: Command) -> (Duration, Duration, String) {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    out.read_exact(&mut byte).unwrap();
    let first = t.elapsed();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "hello failed: {err}");
    (first, t.elapsed(), err)
}

fn jailer(id: &str, vmm: &Path, cfg: &Path, work: &Path) -> Command {
    let mut c = Command::new(common::static_jailer());
    c.args(["--id", id, "--exec-file"])
        .arg(vmm)
        .arg("--config-file")
        .arg(cfg)
        .arg("--resource-root")
        .arg(work)
        .arg("--chroot-base-dir")
        .arg(work.join("jails"));
    c
}

/// `caisson-jailer: timing: <us> us [<pid>] <step>` lines -> (step, us since the
/// jailer's start). The parent's and the child's lines interleave differently
/// from run to run, so steps are matched by name, not by position.
fn steps(stderr: &str) -> Vec<(String, u64)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("caisson-jailer: timing:"))
        .filter_map(|l| {
            let (us, rest) = l.trim_start().split_once(" us ")?;
            let us: u64 = us.trim().parse().ok()?;
            let step = rest.split_once("] ")?.1.to_string();
            Some((step, us))
        })
        .collect()
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
    common::static_jailer();
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(&hello, work.path().join("hello.elf")).unwrap();
    let cfg = work.path().join("vm.json");
    let json = serde_json::json!({
        "boot-source": {"kernel_image_path": work.path().join("hello.elf"), "boot_args": "console=ttyS0"},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}
    });
    std::fs::write(&cfg, json.to_string()).unwrap();
    let (mut bare, mut first, mut exit) = (Vec::new(), Vec::new(), Vec::new());
    // One untimed pair warms the page cache and the binaries.
    for i in 0..=runs {
        let mut c = Command::new(&vmm);
        c.arg("--no-api").arg("--config-file").arg(&cfg);
        let (b, _, _) = time_first_byte(c);
        let id = format!("fb{}-{i}", std::process::id());
        let (f, e, _) = time_first_byte(jailer(&id, &vmm, &cfg, work.path()));
        if i > 0 {
            bare.push(b);
            first.push(f);
            exit.push(e);
        }
    }
    // The per-step profile, in separate runs (the log costs a little).
    let mut profile: Vec<(String, Vec<u64>)> = Vec::new();
    for i in 0..runs {
        let id = format!("fp{}-{i}", std::process::id());
        let mut c = jailer(&id, &vmm, &cfg, work.path());
        c.env("CAISSON_JAILER_TIMING", "1");
        let (_, _, err) = time_first_byte(c);
        for (step, us) in steps(&err) {
            match profile.iter_mut().find(|(name, _)| *name == step) {
                Some((_, v)) => v.push(us),
                None => profile.push((step, vec![us])),
            }
        }
    }
    let (mb, mf) = (median(&mut bare), median(&mut first));
    println!(
        "hello guest, 1 vCPU, 128 MiB, static caisson and caisson-jailer, {runs} alternating pairs"
    );
    println!(
        "  unjailed caisson start -> first serial byte:       {:>7.2} ms",
        ms(mb)
    );
    println!(
        "  caisson-jailer (strict) start -> first serial byte: {:>7.2} ms",
        ms(mf)
    );
    println!(
        "  jail cost (jailed - unjailed medians):              {:>7.2} ms (target <= 2.00 ms)",
        ms(mf) - ms(mb)
    );
    println!(
        "  caisson-jailer start -> exit (cleanup included):    {:>7.2} ms",
        ms(median(&mut exit))
    );
    println!("jail sequence profile, median us since the jailer's start ({runs} runs):");
    profile.sort_by_key(|(_, v)| {
        let mut v = v.clone();
        v.sort_unstable();
        v[v.len() / 2]
    });
    for (step, mut v) in profile {
        v.sort_unstable();
        println!("  {:>6} us  {step}", v[v.len() / 2]);
    }
}
