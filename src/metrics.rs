//! Firecracker-compatible metrics: counter groups with Firecracker's names,
//! written as one JSON object per line to `metrics_path` every 60 s
//! ([`PeriodicFlush`]), on `FlushMetrics`, and when the VM ends.
//!
//! Counters are per-interval, as Firecracker's are: each line holds what
//! happened since the previous line. The groups Caisson always has live in
//! [`METRICS`]; per-device groups (`block`, `block_<id>`, `net`, `net_<id>`,
//! `entropy`) come in as `extra` when a line is built.
//!
//! The sink is opened as Firecracker opens it (read-write, `O_NONBLOCK`,
//! created if absent), so a FIFO nobody reads never blocks or fails the VMM:
//! once the pipe is full, a line that does not fit waits, whole or in part, and
//! the lines after it are skipped (counted in `logger.missed_metrics_count`)
//! without consuming their counts, until the reader drains the pipe. Unlike
//! Firecracker, a regular file is appended to rather than overwritten from its
//! start.

pub mod counter;
pub mod groups;
pub mod periodic;

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

pub use counter::{SharedIncMetric, SharedStoreMetric};
pub use groups::*;
pub use periodic::PeriodicFlush;

/// A per-device group for [`line`]: its name and its serialised counters.
pub type ExtraGroup = (String, serde_json::Value);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Firecracker's message for a second `PUT /metrics`.
    #[error("Reinitialization of metrics not allowed.")]
    AlreadyInitialized,
    #[error("metrics_path: cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics: the group {0:?} is given twice")]
    DuplicateGroup(String),
    #[error("metrics: cannot serialise a line: {0}")]
    Serde(#[from] serde_json::Error),
    #[error("metrics: {path} is full (nobody reads it); {pending} bytes of the last line wait")]
    Full { path: PathBuf, pending: usize },
    #[error("metrics: cannot write to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every group Caisson always reports, in Firecracker's order.
#[derive(Debug, Default)]
pub struct CaissonMetrics {
    pub api_server: ApiServerMetrics,
    pub deprecated_api: DeprecatedApiMetrics,
    pub get_api_requests: GetRequestsMetrics,
    pub i8042: I8042DeviceMetrics,
    pub uart: SerialDeviceMetrics,
    pub latencies_us: PerformanceMetrics,
    pub logger: LoggerSystemMetrics,
    pub patch_api_requests: PatchRequestsMetrics,
    pub put_api_requests: PutRequestsMetrics,
    pub seccomp: SeccompMetrics,
    pub vcpu: VcpuMetrics,
    pub vmm: VmmMetrics,
    pub signals: SignalMetrics,
    pub vsock: VsockDeviceMetrics,
}

/// The names [`CaissonMetrics`] writes, after `utc_timestamp_ms`.
pub const GROUPS: [&str; 14] = [
    "api_server",
    "deprecated_api",
    "get_api_requests",
    "i8042",
    "uart",
    "latencies_us",
    "logger",
    "patch_api_requests",
    "put_api_requests",
    "seccomp",
    "vcpu",
    "vmm",
    "signals",
    "vsock",
];

impl CaissonMetrics {
    pub const fn new() -> Self {
        Self {
            api_server: ApiServerMetrics::new(),
            deprecated_api: DeprecatedApiMetrics::new(),
            get_api_requests: GetRequestsMetrics::new(),
            i8042: I8042DeviceMetrics::new(),
            uart: SerialDeviceMetrics::new(),
            latencies_us: PerformanceMetrics::new(),
            logger: LoggerSystemMetrics::new(),
            patch_api_requests: PatchRequestsMetrics::new(),
            put_api_requests: PutRequestsMetrics::new(),
            seccomp: SeccompMetrics::new(),
            vcpu: VcpuMetrics::new(),
            vmm: VmmMetrics::new(),
            signals: SignalMetrics::new(),
            vsock: VsockDeviceMetrics::new(),
        }
    }

    /// One line (without the newline): `utc_timestamp_ms`, every group, then
    /// `extra`. Consumes one interval of every counter.
    pub fn line(&self, extra: &[ExtraGroup]) -> Result<String, MetricsError> {
        for (i, (name, _)) in extra.iter().enumerate() {
            let taken = name == "utc_timestamp_ms"
                || GROUPS.contains(&name.as_str())
                || extra[..i].iter().any(|(n, _)| n == name);
            if taken {
                return Err(MetricsError::DuplicateGroup(name.clone()));
            }
        }
        Ok(serde_json::to_string(&Line {
            m: self,
            utc_timestamp_ms: utc_timestamp_ms(),
            extra,
        })?)
    }
}

struct Line<'a> {
    m: &'a CaissonMetrics,
    utc_timestamp_ms: u64,
    extra: &'a [ExtraGroup],
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.m;
        let mut map = s.serialize_map(Some(1 + GROUPS.len() + self.extra.len()))?;
        map.serialize_entry("utc_timestamp_ms", &self.utc_timestamp_ms)?;
        map.serialize_entry(GROUPS[0], &m.api_server)?;
        map.serialize_entry(GROUPS[1], &m.deprecated_api)?;
        map.serialize_entry(GROUPS[2], &m.get_api_requests)?;
        map.serialize_entry(GROUPS[3], &m.i8042)?;
        map.serialize_entry(GROUPS[4], &m.uart)?;
        map.serialize_entry(GROUPS[5], &m.latencies_us)?;
        map.serialize_entry(GROUPS[6], &m.logger)?;
        map.serialize_entry(GROUPS[7], &m.patch_api_requests)?;
        map.serialize_entry(GROUPS[8], &m.put_api_requests)?;
        map.serialize_entry(GROUPS[9], &m.seccomp)?;
        map.serialize_entry(GROUPS[10], &m.vcpu)?;
        map.serialize_entry(GROUPS[11], &m.vmm)?;
        map.serialize_entry(GROUPS[12], &m.signals)?;
        map.serialize_entry(GROUPS[13], &m.vsock)?;
        for (name, group) in self.extra {
            map.serialize_entry(name, group)?;
        }
        map.end()
    }
}

/// Milliseconds since the Unix epoch (Firecracker's `utc_timestamp_ms`).
fn utc_timestamp_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The metrics every part of Caisson counts into.
pub static METRICS: CaissonMetrics = CaissonMetrics::new();

/// Builds a line of [`METRICS`] plus `extra`, consuming one interval.
pub fn line(extra: Vec<ExtraGroup>) -> Result<String, MetricsError> {
    METRICS.line(&extra)
}

/// Opens `path` as Firecracker opens `metrics_path`: read-write (so a FIFO
/// opens without a reader), non-blocking, created when absent; appended to.
pub fn open_nonblock(path: &Path) -> Result<File, MetricsError> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| MetricsError::Open {
            path: path.to_path_buf(),
            source,
        })
}

struct Out {
    file: File,
    path: PathBuf,
    /// The part of a line the sink has not taken yet.
    pending: Vec<u8>,
}

impl Out {
    /// Writes what is pending without blocking; Ok(true) when all of it went.
    fn drain(&mut self) -> Result<bool, std::io::Error> {
        while !self.pending.is_empty() {
            match self.file.write(&self.pending) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Where lines go: set once.
#[derive(Default)]
pub struct Sink {
    out: OnceLock<Mutex<Out>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("initialized", &self.out.get().is_some())
            .finish()
    }
}

impl Sink {
    pub const fn new() -> Self {
        Self {
            out: OnceLock::new(),
        }
    }

    /// Opens `path` (see [`open_nonblock`]); only once, as in Firecracker.
    pub fn init(&self, path: &Path) -> Result<(), MetricsError> {
        if self.out.get().is_some() {
            return Err(MetricsError::AlreadyInitialized);
        }
        let file = open_nonblock(path)?;
        self.out
            .set(Mutex::new(Out {
                file,
                path: path.to_path_buf(),
                pending: Vec::new(),
            }))
            .map_err(|_| MetricsError::AlreadyInitialized)
    }

    /// Writes one line of `m` plus `extra()`, never blocking. Ok(false) without
    /// a sink (nothing is consumed). A line the sink cannot take whole waits for
    /// the next flush, which writes no new line until it is gone; misses and
    /// failures are counted in `m.logger`.
    pub fn flush(
        &self,
        m: &CaissonMetrics,
        extra: impl FnOnce() -> Vec<ExtraGroup>,
    ) -> Result<bool, MetricsError> {
        let Some(out) = self.out.get() else {
            return Ok(false);
        };
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let fail = |out: &mut Out, source: std::io::Error| {
            m.logger.metrics_fails.inc();
            out.pending.clear();
            MetricsError::Write {
                path: out.path.clone(),
                source,
            }
        };
        let full = |out: &Out| MetricsError::Full {
            path: out.path.clone(),
            pending: out.pending.len(),
        };
        match out.drain() {
            Ok(true) => {}
            Ok(false) => {
                // The counts stay for the next line that is written.
                m.logger.missed_metrics_count.inc();
                return Err(full(&out));
            }
            Err(e) => return Err(fail(&mut out, e)),
        }
        let mut text = m.line(&extra())?;
        text.push('\n');
        out.pending = text.into_bytes();
        match out.drain() {
            // Written, or waiting in part for the reader: either way the line
            // will be read whole.
            Ok(_) => Ok(true),
            Err(e) => Err(fail(&mut out, e)),
        }
    }
}

static SINK: Sink = Sink::new();

/// Opens the global metrics sink at `metrics_path` (once only).
pub fn init(path: &Path) -> Result<(), MetricsError> {
    SINK.init(path)
}

/// Writes one line of [`METRICS`] plus `extra()` to the global sink; Ok(false)
/// when metrics are not configured. `extra` is called only when a line is
/// built, so per-device intervals are not consumed by a skipped line.
pub fn flush(extra: impl FnOnce() -> Vec<ExtraGroup>) -> Result<bool, MetricsError> {
    SINK.flush(&METRICS, extra)
}

/// For the handler of a deadly signal (SIGSYS): writes a last line of the
/// groups in [`METRICS`] if the sink is free and has nothing pending. The
/// per-device groups are left out (building them allocates). Async-signal-safe:
/// no allocation (the line is serialised into a stack buffer), no blocking
/// lock, one write(2); a line of zeros is under 2 KiB, so it fits a pipe
/// atomically (PIPE_BUF) and the buffer with room to spare.
pub fn flush_in_signal_handler() {
    let Some(out) = SINK.out.get() else {
        return;
    };
    let Ok(mut out) = out.try_lock() else {
        return;
    };
    if !out.pending.is_empty() {
        return;
    }
    let mut buf = [0u8; 8192];
    let mut w: &mut [u8] = &mut buf;
    let line = Line {
        m: &METRICS,
        utc_timestamp_ms: utc_timestamp_ms(),
        extra: &[],
    };
    // Only a line longer than the buffer fails, and only that path allocates.
    if serde_json::to_writer(&mut w, &line).is_err() || w.is_empty() {
        return;
    }
    let room = w.len();
    let len = buf.len() - room;
    buf[len] = b'\n';
    let _ = out.file.write(&buf[..=len]);
}

/// Microseconds on `clock` (CLOCK_MONOTONIC or CLOCK_PROCESS_CPUTIME_ID).
fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid struct given.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

/// Stores `api_server.process_startup_time_us` / `_cpu_us` from the jailer's
/// `--start-time-us`, `--start-time-cpu-us` and `--parent-cpu-time-us`, as
/// Firecracker's ProcessTimeReporter does (nothing without a start time).
pub fn report_start_time(
    start_time_us: Option<u64>,
    start_time_cpu_us: Option<u64>,
    parent_cpu_time_us: Option<u64>,
) {
    if let Some(start) = start_time_us {
        let now = clock_us(libc::CLOCK_MONOTONIC);
        METRICS
            .api_server
            .process_startup_time_us
            .store(now.saturating_sub(start));
    }
    if let Some(start) = start_time_cpu_us {
        let now = clock_us(libc::CLOCK_PROCESS_CPUTIME_ID);
        METRICS.api_server.process_startup_time_cpu_us.store(
            now.saturating_sub(start)
                .saturating_add(parent_cpu_time_us.unwrap_or(0)),
        );
    }
}

#[cfg(test)]
mod tests;
