//! The periodic flush: a timerfd on the main thread's event loop that writes a
//! metrics line every period (Firecracker: 60 s), plus one when it is added, as
//! Firecracker's PeriodicMetrics::start does.

use std::time::Duration;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::timerfd::TimerFd;

use super::{ExtraGroup, MetricsError};

/// Firecracker's metrics period.
pub const PERIOD: Duration = Duration::from_secs(60);

/// The per-device groups, asked for at each flush.
pub type ExtraGroups = Box<dyn Fn() -> Vec<ExtraGroup> + Send>;

/// What a flush does; [`super::flush`] for the VMM, another sink in tests.
pub type FlushFn = Box<dyn Fn(&dyn Fn() -> Vec<ExtraGroup>) -> Result<bool, MetricsError> + Send>;

pub struct PeriodicFlush {
    timer: TimerFd,
    extra: ExtraGroups,
    flush: FlushFn,
}

impl std::fmt::Debug for PeriodicFlush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodicFlush").finish_non_exhaustive()
    }
}

impl PeriodicFlush {
    /// Flushes the global metrics every `period`. The timer is created and armed
    /// here, so create this before the main thread's seccomp filter is
    /// installed (the filter allows neither timerfd_create nor timerfd_settime);
    /// the event loop then only reads it.
    pub fn new(period: Duration, extra: ExtraGroups) -> Result<Self, std::io::Error> {
        Self::with_flush(
            period,
            extra,
            Box::new(|e: &dyn Fn() -> Vec<ExtraGroup>| super::flush(e)),
        )
    }

    /// As [`PeriodicFlush::new`], writing with `flush` instead.
    pub fn with_flush(
        period: Duration,
        extra: ExtraGroups,
        flush: FlushFn,
    ) -> Result<Self, std::io::Error> {
        let mut timer = TimerFd::new()?;
        timer.reset(period, Some(period))?;
        Ok(Self {
            timer,
            extra,
            flush,
        })
    }

    fn write(&self) {
        match (self.flush)(&*self.extra) {
            Ok(_) => {}
            // Counted in logger.missed_metrics_count; a FIFO nobody reads is not
            // worth a warning a minute.
            Err(e @ MetricsError::Full { .. }) => log::debug!("{e}"),
            Err(e) => log::warn!("{e}"),
        }
    }
}

impl MutEventSubscriber for PeriodicFlush {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.timer, EventSet::IN)) {
            log::error!("cannot watch the metrics timer: {e:?}");
        }
        self.write();
    }

    fn process(&mut self, _: Events, _: &mut EventOps) {
        // The expirations since the last read; one line covers them all.
        if let Err(e) = self.timer.wait() {
            log::warn!("cannot read the metrics timer: {e}");
            return;
        }
        self.write();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use event_manager::{EventManager, SubscriberOps};

    use super::*;
    use crate::metrics::{CaissonMetrics, ExtraGroup, Sink};

    #[test]
    fn writes_once_when_added_and_once_per_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.json");
        let sink = Arc::new(Sink::new());
        sink.init(&path).expect("init");
        let metrics = Arc::new(CaissonMetrics::new());
        let (s, m) = (sink.clone(), metrics.clone());
        let flush: FlushFn =
            Box::new(move |extra: &dyn Fn() -> Vec<ExtraGroup>| s.flush(&m, extra));
        let extra: ExtraGroups = Box::new(|| {
            vec![(
                "entropy".to_string(),
                serde_json::json!({"activate_fails": 0}),
            )]
        });
        let periodic = PeriodicFlush::with_flush(Duration::from_millis(20), extra, flush)
            .expect("periodic flush");
        let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new()
            .expect("event manager");
        events.add_subscriber(Arc::new(Mutex::new(periodic)));
        let lines = || {
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count()
        };
        assert_eq!(lines(), 1, "a line as soon as it is added");
        for _ in 0..3 {
            metrics.uart.write_count.inc();
            // Blocks until the timer fires (or 10 s pass, which fails below).
            events.run_with_timeout(10_000).expect("event loop");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(parsed.len(), 4);
        for (i, v) in parsed.iter().enumerate() {
            assert_eq!(v["entropy"]["activate_fails"], 0);
            assert_eq!(v["uart"]["write_count"], u64::from(i > 0), "line {i}");
        }
    }
}
