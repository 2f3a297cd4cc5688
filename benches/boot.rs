//! Boot benchmark: wall and CPU time from process start to the hello guest's first
//! serial byte and to VM exit (median of 25 runs), and the VMM's resident memory
//! beyond the guest memory it touched (1 vCPU, 128 MiB). Prints figures; asserts
//! nothing about speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 25;
#[path = "../tests/common/mod.rs"]
mod common;
use common::CAISSON;
mod measure;
use measure::{cpu_time_alive, median, rss_split};

/// Waits for `pid` and returns its user+system CPU time.
fn wait_cpu(pid: u32) -> (i32, Duration) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unreaped child; both pointers are valid for writes.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, pid as i32, "wait4 failed");
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    (status, tv(ru.ru_utime) + tv(ru.ru_stime))
}

fn boot_times(kernel: &Path) {
    let (mut w1, mut c1, mut w2, mut c2) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut child = Command::new(CAISSON)
            .args([
                "--kernel",
                kernel.to_str().unwrap(),
                "--vcpus",
                "1",
                "--mem-mib",
                "128",
                "--serial",
                "stdout",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut out = child.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        out.read_exact(&mut byte).unwrap();
        w1.push(start.elapsed());
        c1.push(cpu_time_alive(pid));
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).unwrap();
        let (status, cpu) = wait_cpu(pid);
        w2.push(start.elapsed());
        c2.push(cpu);
        assert_eq!(status, 0, "hello guest failed");
        std::mem::forget(child); // already reaped by wait4
    }
    println!("boot: hello guest, 1 vCPU, 128 MiB, median of {RUNS} runs");
    println!(
        "  start -> first serial byte: wall {:>8.2?}  cpu {:>8.2?}",
        median(&mut w1),
        median(&mut c1)
    );
    println!(
        "  start -> VM exit:           wall {:>8.2?}  cpu {:>8.2?}",
        median(&mut w2),
        median(&mut c2)
    );
}

fn memory_overhead() {
    let (mut child, mut reader) = common::waiting_demo(&[]);
    let (total, guest) = rss_split(child.id(), 128 * 1024);
    child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    println!("memory: demo guest, 1 vCPU, 128 MiB");
    println!("  VMM resident set: {total} KiB, of which guest RAM touched: {guest} KiB");
    println!(
        "  VMM overhead beyond guest memory: {} KiB ({:.2} MiB)",
        total - guest,
        (total - guest) as f64 / 1024.0
    );
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test` run passes nothing useful.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let kernel = Path::new(caisson::demo::GUEST_BUILD_DIR).join("hello.elf");
    boot_times(&kernel);
    memory_overhead();
    println!("reference: Firecracker on this machine, start -> exit for an equivalent guest: ~25 ms wall, ~5 ms CPU");
}
