//! Rate-limited warnings: a hostile guest must not be able to flood the log.

use std::time::{Duration, Instant};

/// Warnings allowed per window.
pub const WARN_BURST: u32 = 10;
/// Length of a window.
pub const WARN_WINDOW: Duration = Duration::from_secs(1);

/// Lets [`WARN_BURST`] warnings through per [`WARN_WINDOW`], and counts the rest.
#[derive(Debug)]
pub struct WarnLimiter {
    name: String,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
    total: u64,
}

impl WarnLimiter {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            window_start: None,
            in_window: 0,
            suppressed: 0,
            total: 0,
        }
    }

    /// Logs `msg` unless this window's budget is spent; returns whether it logged.
    pub fn warn(&mut self, msg: &dyn std::fmt::Display) -> bool {
        self.total += 1;
        let now = Instant::now();
        let fresh = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WARN_WINDOW);
        if fresh {
            if self.suppressed > 0 {
                log::warn!(
                    "{}: {} similar warnings were suppressed",
                    self.name,
                    self.suppressed
                );
                self.suppressed = 0;
            }
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < WARN_BURST {
            self.in_window += 1;
            log::warn!("{}: {msg}", self.name);
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Every warning raised so far, logged or not.
    pub fn total(&self) -> u64 {
        self.total
    }
}

impl Drop for WarnLimiter {
    /// What the last window suppressed is said when the device goes, so a
    /// flood at the end of a VM's life is not silent.
    fn drop(&mut self) {
        if self.suppressed > 0 {
            log::warn!(
                "{}: {} similar warnings were suppressed",
                self.name,
                self.suppressed
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_capped_and_counted() {
        let mut w = WarnLimiter::new("test");
        let logged = (0..100).filter(|i| w.warn(&format!("w{i}"))).count();
        assert_eq!(logged, WARN_BURST as usize);
        assert_eq!(w.total(), 100);
        // A new window lets warnings through again.
        w.window_start = Some(Instant::now() - WARN_WINDOW);
        assert!(w.warn(&"again"));
    }
}
