//! Times `caisson-jailer` start -> exec of the jailed target, over >= 20 runs, and
//! prints the median (and the median of the whole run including cleanup).
//!
//! The target is caisson-probe with `--timestamp`: its first action is to print
//! CLOCK_REALTIME, which is compared with the time just before the jailer was
//! spawned. Run with `cargo bench -p caisson-jailer --bench start` (as root);
//! `CAISSON_BENCH_RUNS=N` changes the count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("CAISSON_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .max(20);
    let mut to_exec = Vec::with_capacity(runs);
    let mut total = Vec::with_capacity(runs);
    for i in 0..runs {
        let vm = common::Vm::new(&format!("bench{i}"));
        let start_wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let t = Instant::now();
        let out = vm.run(&[], &["--timestamp".to_string()]);
        let elapsed = t.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a = common::attempts(&out.stdout);
        let ns = a["timestamp"]["realtime_ns"]
            .as_u64()
            .expect("timestamp line");
        let exec_at = Duration::from_nanos(ns);
        to_exec.push(exec_at.saturating_sub(start_wall));
        total.push(elapsed);
        vm.assert_cleaned("caisson");
    }
    let m_exec = median(&mut to_exec);
    let m_total = median(&mut total);
    println!(
        "caisson-jailer start -> exec of target: median {:.2} ms over {runs} runs (min {:.2} ms, max {:.2} ms)",
        m_exec.as_secs_f64() * 1e3,
        to_exec[0].as_secs_f64() * 1e3,
        to_exec[runs - 1].as_secs_f64() * 1e3,
    );
    println!(
        "caisson-jailer whole run (start, exec, target exit, cleanup): median {:.2} ms",
        m_total.as_secs_f64() * 1e3
    );
}
