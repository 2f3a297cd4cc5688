//! What the benchmarks measure a VMM process with: medians, CPU time from
//! schedstat, and the resident set split into guest RAM and the rest.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

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
