//! An opt-in timing log of the jail sequence: with `CAISSON_JAILER_TIMING=1` in
//! the jailer's environment (read before step 1 clears it), each step prints
//! `caisson-jailer: timing: <µs since start> <step>` to stderr, the child's steps
//! too (their pid tells them apart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that turns the log on.
pub const ENV: &str = "CAISSON_JAILER_TIMING";

static ON: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();

/// Reads [`ENV`] and starts the clock; call first.
pub fn init() {
    START.get_or_init(Instant::now);
    if std::env::var_os(ENV).is_some_and(|v| v == "1") {
        ON.store(true, Ordering::Relaxed);
    }
}

/// Logs that `step` is done, when the log is on.
pub fn mark(step: &str) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let us = START.get().map_or(0, |s| s.elapsed().as_micros());
    // One write per line: the parent's and the child's lines share stderr, and
    // `eprintln!` writes a line in pieces, which interleave.
    let line = format!(
        "caisson-jailer: timing: {us:>7} us [{}] {step}\n",
        std::process::id()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}
