//! The two kinds of metric Firecracker reports, shared by every group.
//!
//! Counters are per-interval, as Firecracker's are: each flush writes what
//! happened since the previous flush. They are plain atomics, so a device, a
//! vCPU or a signal handler can count without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer};

/// A counter that only grows; serialised as its increase since the last flush
/// (Firecracker's `SharedIncMetric`).
#[derive(Debug, Default)]
pub struct SharedIncMetric {
    total: AtomicU64,
    flushed: AtomicU64,
}

impl SharedIncMetric {
    pub const fn new() -> Self {
        Self {
            total: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        }
    }

    /// Adds one. Async-signal-safe.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`. Async-signal-safe.
    pub fn add(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Everything counted since the process started (tests and logs).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The increase since the last call, which becomes the new base.
    pub fn take_interval(&self) -> u64 {
        let now = self.total.load(Ordering::Relaxed);
        let before = self.flushed.swap(now, Ordering::Relaxed);
        now.wrapping_sub(before)
    }
}

impl Serialize for SharedIncMetric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.take_interval())
    }
}

/// A value that is set, not accumulated (Firecracker's `SharedStoreMetric`),
/// such as a latency or a start-up time; serialised as it stands.
#[derive(Debug, Default)]
pub struct SharedStoreMetric(AtomicU64);

impl SharedStoreMetric {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn store(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn fetch(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Serialize for SharedStoreMetric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.fetch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inc_metrics_report_the_interval_and_store_metrics_the_value() {
        let m = SharedIncMetric::new();
        m.inc();
        m.add(4);
        assert_eq!(serde_json::to_string(&m).ok().as_deref(), Some("5"));
        assert_eq!(serde_json::to_string(&m).ok().as_deref(), Some("0"));
        m.inc();
        assert_eq!(m.take_interval(), 1);
        assert_eq!(m.total(), 6);
        let s = SharedStoreMetric::new();
        s.store(42);
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some("42"));
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some("42"));
    }
}
