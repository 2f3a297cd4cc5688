//! Rate limiters end to end: the real `caisson` boots tests/guests/virtio_rate.c,
//! which reads a limited drive as fast as it can, and the measured rate must be
//! the configured one (the one rate assertion the issue asks for: the runs are
//! several seconds long and the limits far below what the guest reaches
//! unlimited, so the limiter, not the machine, sets the pace).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// The host TSC's rate in ticks per second; the guest's TSC runs at it.
fn tsc_hz() -> f64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    let t = || unsafe { core::arch::x86_64::_rdtsc() };
    let (c0, i0) = (t(), Instant::now());
    std::thread::sleep(Duration::from_millis(300));
    let (c1, i1) = (t(), Instant::now());
    (c1 - c0) as f64 / (i1 - i0).as_secs_f64()
}

/// Boots virtio_rate on a 4 MiB drive limited by `limiter`; returns the
/// guest's measured (requests, bytes, seconds).
fn measure(dir: &Path, limiter: serde_json::Value, len: u64, warm: u64, n: u64) -> (u64, u64, f64) {
    require_kvm();
    let img = dir.join("disk.img");
    std::fs::write(&img, vec![0x5au8; 4 << 20]).unwrap();
    let cmdline = format!("console=ttyS0 rate.len={len} rate.warm={warm} rate.n={n}");
    let cfg = serde_json::json!({
        "boot-source": {"kernel_image_path": guest("virtio_rate"), "boot_args": cmdline},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
        "drives": [{"drive_id": "limited", "path_on_host": img, "is_root_device": false,
                    "is_read_only": true, "rate_limiter": limiter}],
    });
    let path = dir.join("rate.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let hz = tsc_hz();
    let start = Instant::now();
    let out = caisson(&[
        "--no-api",
        "--config-file",
        path.to_str().unwrap(),
        "--serial",
        "stdout",
    ]);
    let wall = start.elapsed();
    assert_eq!(out.code, Some(0), "{out:?}");
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("rate: reqs "))
        .unwrap_or_else(|| panic!("no rate line: {out:?}"))
        .to_string();
    // "rate: reqs <n> bytes <n> ticks <n>"
    let w: Vec<&str> = line.split_whitespace().collect();
    let (reqs, bytes, ticks): (u64, u64, u64) = (
        w[2].parse().unwrap(),
        w[4].parse().unwrap(),
        w[6].parse().unwrap(),
    );
    let secs = ticks as f64 / hz;
    eprintln!(
        "{line}: {secs:.3} s at {:.0} MHz, VM run {wall:?}",
        hz / 1e6
    );
    (reqs, bytes, secs)
}

fn within_10_percent(what: &str, measured: f64, configured: f64) {
    let err = (measured - configured).abs() / configured;
    eprintln!(
        "{what}: measured {measured:.0}/s, configured {configured:.0}/s ({:.1}% off)",
        err * 100.0
    );
    assert!(
        err <= 0.10,
        "{what}: measured {measured:.0}/s, configured {configured:.0}/s"
    );
}

#[test]
fn limited_drive_reads_at_the_configured_bandwidth() {
    let dir = tempdir();
    // 1 MiB per second in a 1 MiB bucket: the 20 warm-up requests (1.25 MiB)
    // empty it; 64 more of 64 KiB then take 4 s at the configured rate.
    let limiter = serde_json::json!({"bandwidth": {"size": 1 << 20, "refill_time": 1000}});
    let (_, bytes, secs) = measure(dir.path(), limiter, 64 << 10, 20, 64);
    assert_eq!(bytes, 64 << 16);
    within_10_percent("bandwidth", bytes as f64 / secs, (1 << 20) as f64);
}

#[test]
fn limited_drive_serves_the_configured_ops() {
    let dir = tempdir();
    // 50 requests per second in a bucket of 50: 60 warm-up requests empty it;
    // 150 more then take 3 s.
    let limiter = serde_json::json!({"ops": {"size": 50, "refill_time": 1000}});
    let (reqs, _, secs) = measure(dir.path(), limiter, 512, 60, 150);
    within_10_percent("ops", reqs as f64 / secs, 50.0);
}

/// A bad bucket in the config file: exit 2 before boot, one line naming the
/// field and the value. `{}` and size 0 boot and limit nothing.
#[test]
fn bad_buckets_are_rejected_and_empty_ones_are_unlimited() {
    let dir = tempdir();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let run = |limiter: serde_json::Value, cmdline: &str| {
        let cfg = serde_json::json!({
            "boot-source": {"kernel_image_path": guest("virtio_rate"), "boot_args": cmdline},
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
            "drives": [{"drive_id": "d", "path_on_host": img, "is_root_device": false,
                        "is_read_only": true, "rate_limiter": limiter}],
        });
        let path = dir.path().join("vm.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        caisson(&[
            "--no-api",
            "--config-file",
            path.to_str().unwrap(),
            "--serial",
            "stdout",
        ])
    };
    let out = run(
        serde_json::json!({"ops": {"size": 10, "refill_time": 0}}),
        "console=ttyS0",
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(
        lines[0].contains("drives[0].rate_limiter.ops.refill_time") && lines[0].contains('0'),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // `{}` and zero sizes limit nothing: 16 MiB go through (a zero-size bucket
    // that counted could never serve a request).
    require_kvm();
    for limiter in [
        serde_json::json!({}),
        serde_json::json!({"bandwidth": {"size": 0, "refill_time": 86400000},
                           "ops": {"size": 0, "refill_time": 0}}),
    ] {
        let out = run(limiter, "console=ttyS0 rate.len=65536 rate.n=256");
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            out.lines()
                .iter()
                .any(|l| l.starts_with("rate: reqs 256 bytes 16777216 ")),
            "{out:?}"
        );
    }
}

/// Under the VMM thread's seccomp filter, what a PATCH does works: open a new
/// backing file (openat without O_CREAT, statx), and a throttled limiter arms
/// and reads its timer (timerfd_settime, read). A missing rule kills this test
/// process with SIGSYS.
#[test]
fn patch_and_limiter_syscalls_pass_the_vmm_filter() {
    use caisson::devices::virtio::block::Disk;
    use caisson::rate_limiter::{RateLimiter, RateLimiterConfig, TokenBucketConfig, TokenType};
    use caisson::seccomp::{Filters, ThreadKind};

    let dir = tempdir();
    let img = dir.path().join("new.img");
    std::fs::write(&img, vec![0u8; 8 * 512]).unwrap();
    let filters = Filters::embedded().unwrap();
    let cfg = RateLimiterConfig {
        bandwidth: None,
        ops: Some(TokenBucketConfig {
            size: 1,
            one_time_burst: None,
            refill_time: 1000,
        }),
    };
    // Created at build time, before confinement.
    let mut limiter = RateLimiter::new(&cfg).unwrap();
    let r = std::thread::spawn(move || {
        filters.install(ThreadKind::Vmm).unwrap();
        let disk = Disk::open(&img, false, "d").unwrap();
        assert!(limiter.consume(1, TokenType::Ops));
        assert!(
            !limiter.consume(1, TokenType::Ops),
            "throttled: timer armed"
        );
        assert!(
            !limiter.event_handler(),
            "not expired yet: a non-blocking read"
        );
        (disk.capacity(), limiter.is_blocked())
    })
    .join()
    .unwrap();
    assert_eq!(r, (8, true));
}
