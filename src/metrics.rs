//! Firecracker-compatible metrics: counter groups with Firecracker's names,
//! written as one JSON object per line to `metrics_path` every 60 s and on
//! `FlushMetrics`.
//!
//! Devices with an id (drives, interfaces) register their group here under
//! `block_<id>` / `net_<id>`; the aggregate groups (`block`, `net`) are summed
//! over them when a line is written.

pub mod counter;

pub use counter::{SharedIncMetric, SharedStoreMetric};
