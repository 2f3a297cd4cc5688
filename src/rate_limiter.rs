//! Firecracker's rate limiter: two token buckets (bandwidth in bytes, ops in
//! requests) and a timerfd that wakes the owning device when it may go on.
//!
//! Semantics follow Firecracker's `rate_limiter` crate: a bucket starts full,
//! refills `size` tokens every `refill_time` ms (continuously, with the
//! fractional remainder carried over), and spends its `one_time_burst` before
//! its budget. A request bigger than the whole bucket is let through and blocks
//! the limiter for as long as the overdraft takes to refill. When a consume
//! fails the limiter blocks and arms its timer for [`REFILL_INTERVAL`]; every
//! consume fails while blocked. The device leaves the request in its queue and
//! resumes when the timer fires on the event loop: nothing ever spins.
//!
//! Time is a parameter of every bucket operation (`*_at`), so tests run on a
//! virtual clock.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vmm_sys_util::timerfd::TimerFd;

/// How long a limiter that ran dry waits before it looks again (Firecracker's
/// `REFILL_TIMER_INTERVAL_MS`).
pub const REFILL_INTERVAL: Duration = Duration::from_millis(100);
/// Largest `size` and `one_time_burst`: 2^53, the largest integer JSON numbers
/// carry exactly.
pub const MAX_TOKENS: u64 = 1 << 53;
/// Largest `refill_time`: one day, in ms.
pub const MAX_REFILL_TIME_MS: u64 = 24 * 3600 * 1000;

const NS_PER_MS: u128 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum RateLimiterError {
    #[error("{field}: {value} {reason}")]
    Invalid {
        field: String,
        value: u64,
        reason: &'static str,
    },
    #[error("cannot create the rate limiter's timerfd: {0}")]
    Timer(std::io::Error),
    #[error("this rate limiter has no timer (built unlimited), so it cannot take buckets")]
    NoTimer,
}

/// `{size, one_time_burst?, refill_time}`: `refill_time` in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucketConfig {
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_burst: Option<u64>,
    pub refill_time: u64,
}

/// `{bandwidth?, ops?}`; `{}` or a zero `size` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiterConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<TokenBucketConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<TokenBucketConfig>,
}

impl TokenBucketConfig {
    /// Checks the values; `field` (e.g. `drives[0].rate_limiter.bandwidth`)
    /// prefixes the name of the bad one.
    pub fn validate(&self, field: &str) -> Result<(), RateLimiterError> {
        let bad = |name: &str, value, reason| RateLimiterError::Invalid {
            field: format!("{field}.{name}"),
            value,
            reason,
        };
        if self.size > MAX_TOKENS {
            return Err(bad("size", self.size, "exceeds 2^53"));
        }
        if let Some(b) = self.one_time_burst {
            if b > MAX_TOKENS {
                return Err(bad("one_time_burst", b, "exceeds 2^53"));
            }
        }
        if self.refill_time > MAX_REFILL_TIME_MS {
            return Err(bad(
                "refill_time",
                self.refill_time,
                "exceeds one day (86400000 ms)",
            ));
        }
        if self.size != 0 && self.refill_time == 0 {
            return Err(bad("refill_time", 0, "must be positive when size is not 0"));
        }
        Ok(())
    }

    /// Whether this bucket limits anything (a zero size does not).
    pub fn is_limited(&self) -> bool {
        self.size != 0
    }
}

impl RateLimiterConfig {
    pub fn validate(&self, field: &str) -> Result<(), RateLimiterError> {
        if let Some(b) = &self.bandwidth {
            b.validate(&format!("{field}.bandwidth"))?;
        }
        if let Some(o) = &self.ops {
            o.validate(&format!("{field}.ops"))?;
        }
        Ok(())
    }

    /// Whether any bucket limits anything.
    pub fn is_limited(&self) -> bool {
        self.bandwidth.is_some_and(|b| b.is_limited()) || self.ops.is_some_and(|b| b.is_limited())
    }
}

/// What a PATCH does to one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketPatch {
    /// Omitted: unchanged.
    Keep,
    /// Size 0: limiting removed.
    Remove,
    /// Given: replaces the old bucket (which starts full).
    Set(TokenBucketConfig),
}

/// A PATCH of a rate limiter, with Firecracker's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimiterPatch {
    pub bandwidth: BucketPatch,
    pub ops: BucketPatch,
}

impl RateLimiterPatch {
    /// Validates a PATCH body (the same JSON as the config) and reads it as a patch.
    pub fn from_config(cfg: &RateLimiterConfig, field: &str) -> Result<Self, RateLimiterError> {
        cfg.validate(field)?;
        let one = |b: &Option<TokenBucketConfig>| match b {
            None => BucketPatch::Keep,
            Some(b) if !b.is_limited() => BucketPatch::Remove,
            Some(b) => BucketPatch::Set(*b),
        };
        Ok(Self {
            bandwidth: one(&cfg.bandwidth),
            ops: one(&cfg.ops),
        })
    }
}

/// What a bucket said to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Not enough tokens: nothing was taken.
    Failure,
    Success,
    /// More than the whole bucket was asked for: it was emptied, and refilling
    /// the rest takes this long.
    OverConsumption(Duration),
}

/// One token bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    size: u64,
    initial_burst: u64,
    refill_ms: u64,
    burst: u64,
    budget: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; None when `cfg` limits nothing. `cfg` must be validated.
    pub fn new(cfg: &TokenBucketConfig, now: Instant) -> Option<Self> {
        if cfg.size == 0 || cfg.refill_time == 0 {
            return None;
        }
        let burst = cfg.one_time_burst.unwrap_or(0);
        Some(Self {
            size: cfg.size,
            initial_burst: burst,
            refill_ms: cfg.refill_time,
            burst,
            budget: cfg.size,
            last: now,
        })
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn one_time_burst(&self) -> u64 {
        self.burst
    }

    pub fn config(&self) -> TokenBucketConfig {
        TokenBucketConfig {
            size: self.size,
            one_time_burst: (self.initial_burst != 0).then_some(self.initial_burst),
            refill_time: self.refill_ms,
        }
    }

    fn refill_ns(&self) -> u128 {
        u128::from(self.refill_ms) * NS_PER_MS
    }

    /// Adds what the time since the last update earned; the fraction of a token
    /// not yet earned stays in the clock.
    fn replenish(&mut self, now: Instant) {
        let delta = now.saturating_duration_since(self.last).as_nanos();
        let refill = self.refill_ns();
        if delta >= refill {
            self.budget = self.size;
            self.last = now;
            return;
        }
        // delta < refill <= 8.64e13 and size <= 2^53: no u128 overflow.
        let size = u128::from(self.size);
        let tokens = delta * size / refill;
        let used_ns = (tokens * refill).div_ceil(size);
        self.last += Duration::from_nanos(u64::try_from(used_ns).unwrap_or(u64::MAX));
        let tokens = u64::try_from(tokens).unwrap_or(u64::MAX);
        self.budget = self.budget.saturating_add(tokens).min(self.size);
    }

    /// Takes `tokens` at time `now`.
    pub fn reduce_at(&mut self, mut tokens: u64, now: Instant) -> Reduction {
        if self.burst > 0 {
            if self.burst >= tokens {
                self.burst -= tokens;
                self.last = now;
                return Reduction::Success;
            }
            tokens -= self.burst;
            self.burst = 0;
        }
        if tokens > self.budget {
            self.replenish(now);
            if tokens > self.size {
                let over = tokens - self.budget;
                self.budget = 0;
                let ms = u128::from(over) * u128::from(self.refill_ms) / u128::from(self.size);
                let ms = u64::try_from(ms).unwrap_or(u64::MAX).max(1);
                return Reduction::OverConsumption(Duration::from_millis(ms));
            }
            if tokens > self.budget {
                return Reduction::Failure;
            }
        }
        self.budget -= tokens;
        Reduction::Success
    }

    /// Gives `tokens` back (undoing a reduce).
    pub fn force_replenish(&mut self, tokens: u64) {
        if self.burst > 0 {
            self.burst = self.burst.saturating_add(tokens).min(self.initial_burst);
            return;
        }
        self.budget = self.budget.saturating_add(tokens).min(self.size);
    }
}

/// Which bucket a consume draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Bytes,
    Ops,
}

/// A bandwidth and an ops bucket behind one timerfd.
#[derive(Debug)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    /// Created even without buckets, so that a PATCH can add one later without
    /// timerfd_create (which the running VMM's sandbox does not allow).
    timer: Option<TimerFd>,
    blocked: bool,
}

impl RateLimiter {
    /// A limiter for a validated `cfg`, with its timerfd (non-blocking).
    pub fn new(cfg: &RateLimiterConfig) -> Result<Self, RateLimiterError> {
        let timer = TimerFd::new().map_err(|e| RateLimiterError::Timer(e.into()))?;
        // The event loop only reads it when epoll said so, but a spurious
        // wake-up must not block the loop.
        let flags = nix::fcntl::OFlag::O_NONBLOCK;
        // SAFETY: `timer` owns the fd and outlives this borrow.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(timer.as_raw_fd()) };
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(|e| RateLimiterError::Timer(e.into()))?;
        let now = Instant::now();
        Ok(Self {
            bandwidth: cfg.bandwidth.and_then(|b| TokenBucket::new(&b, now)),
            ops: cfg.ops.and_then(|b| TokenBucket::new(&b, now)),
            timer: Some(timer),
            blocked: false,
        })
    }

    /// A limiter that never limits and has no timer (devices built outside the
    /// builder, e.g. by the fuzzers).
    pub fn unlimited() -> Self {
        Self {
            bandwidth: None,
            ops: None,
            timer: None,
            blocked: false,
        }
    }

    /// The timerfd the event loop watches for the device.
    pub fn timer_fd(&self) -> Option<RawFd> {
        self.timer.as_ref().map(|t| t.as_raw_fd())
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    pub fn bandwidth(&self) -> Option<&TokenBucket> {
        self.bandwidth.as_ref()
    }

    pub fn ops(&self) -> Option<&TokenBucket> {
        self.ops.as_ref()
    }

    /// The current buckets, as config.
    pub fn config(&self) -> RateLimiterConfig {
        RateLimiterConfig {
            bandwidth: self.bandwidth.as_ref().map(TokenBucket::config),
            ops: self.ops.as_ref().map(TokenBucket::config),
        }
    }

    fn block_for(&mut self, d: Duration) -> bool {
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        match timer.reset(d, None) {
            Ok(()) => {
                self.blocked = true;
                true
            }
            Err(e) => {
                log::error!("rate limiter: cannot arm the timer for {d:?}: {e}; not limiting");
                false
            }
        }
    }

    pub fn consume(&mut self, tokens: u64, kind: TokenType) -> bool {
        self.consume_at(tokens, kind, Instant::now())
    }

    /// Takes `tokens` of `kind` at time `now`; false (and blocked, timer armed)
    /// when there are not enough.
    pub fn consume_at(&mut self, tokens: u64, kind: TokenType, now: Instant) -> bool {
        if self.blocked {
            return false;
        }
        let bucket = match kind {
            TokenType::Bytes => self.bandwidth.as_mut(),
            TokenType::Ops => self.ops.as_mut(),
        };
        let Some(bucket) = bucket else {
            return true;
        };
        match bucket.reduce_at(tokens, now) {
            Reduction::Success => true,
            // Without a timer nothing would ever wake the device: let it pass.
            Reduction::Failure => !self.block_for(REFILL_INTERVAL),
            Reduction::OverConsumption(d) => {
                self.block_for(d);
                true
            }
        }
    }

    pub fn consume_request(&mut self, bytes: u64) -> bool {
        self.consume_request_at(bytes, Instant::now())
    }

    /// One request of `bytes`: an op, then the bytes; the op is given back when
    /// the bytes are refused.
    pub fn consume_request_at(&mut self, bytes: u64, now: Instant) -> bool {
        if !self.consume_at(1, TokenType::Ops, now) {
            return false;
        }
        if bytes > 0 && !self.consume_at(bytes, TokenType::Bytes, now) {
            self.manual_replenish(1, TokenType::Ops);
            return false;
        }
        true
    }

    /// Gives tokens back (undoing a consume).
    pub fn manual_replenish(&mut self, tokens: u64, kind: TokenType) {
        let bucket = match kind {
            TokenType::Bytes => self.bandwidth.as_mut(),
            TokenType::Ops => self.ops.as_mut(),
        };
        if let Some(b) = bucket {
            b.force_replenish(tokens);
        }
    }

    /// The timerfd is readable: unblocks. False for a spurious wake-up (the
    /// timer had not expired).
    pub fn event_handler(&mut self) -> bool {
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        match timer.wait() {
            Ok(n) if n > 0 => {
                self.blocked = false;
                true
            }
            _ => false,
        }
    }

    /// Applies a PATCH: omitted buckets stay, given ones replace (full), size 0
    /// removes.
    pub fn update(&mut self, patch: &RateLimiterPatch) -> Result<(), RateLimiterError> {
        self.update_at(patch, Instant::now())
    }

    pub fn update_at(
        &mut self,
        patch: &RateLimiterPatch,
        now: Instant,
    ) -> Result<(), RateLimiterError> {
        let adds = [patch.bandwidth, patch.ops]
            .iter()
            .any(|p| matches!(p, BucketPatch::Set(_)));
        if adds && self.timer.is_none() {
            return Err(RateLimiterError::NoTimer);
        }
        let apply = |slot: &mut Option<TokenBucket>, p: BucketPatch| match p {
            BucketPatch::Keep => {}
            BucketPatch::Remove => *slot = None,
            BucketPatch::Set(cfg) => *slot = TokenBucket::new(&cfg, now),
        };
        apply(&mut self.bandwidth, patch.bandwidth);
        apply(&mut self.ops, patch.ops);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tb(size: u64, burst: Option<u64>, refill: u64) -> TokenBucketConfig {
        TokenBucketConfig {
            size,
            one_time_burst: burst,
            refill_time: refill,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_refills_proportionally_and_caps_at_size() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&tb(1000, None, 1000), t0).unwrap();
        assert_eq!(b.reduce_at(1000, t0), Reduction::Success);
        assert_eq!(b.budget(), 0);
        assert_eq!(b.reduce_at(1, t0), Reduction::Failure);
        // 250 ms earn 250 tokens.
        assert_eq!(b.reduce_at(251, t0 + ms(250)), Reduction::Failure);
        assert_eq!(b.budget(), 250);
        assert_eq!(b.reduce_at(250, t0 + ms(250)), Reduction::Success);
        // Long idle: full, never more.
        assert_eq!(
            b.reduce_at(1001, t0 + ms(10_000)),
            Reduction::OverConsumption(ms(1))
        );
        let mut b = TokenBucket::new(&tb(1000, None, 1000), t0).unwrap();
        assert_eq!(b.reduce_at(1, t0 + ms(5000)), Reduction::Success);
        assert_eq!(b.budget(), 999);
    }

    #[test]
    fn fractional_tokens_carry_over() {
        let t0 = Instant::now();
        // 3 tokens per 1000 ms: one per 333.33 ms.
        let mut b = TokenBucket::new(&tb(3, None, 1000), t0).unwrap();
        assert_eq!(b.reduce_at(3, t0), Reduction::Success);
        let mut t = t0;
        let mut got = 0;
        // 31 steps of 100 ms = 3.1 s earn 9 tokens, not 0 (each step alone earns 0.3).
        for _ in 0..31 {
            t += ms(100);
            if b.reduce_at(1, t) == Reduction::Success {
                got += 1;
            }
        }
        assert_eq!(got, 9);
    }

    #[test]
    fn one_time_burst_is_spent_first_and_not_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&tb(100, Some(500), 1000), t0).unwrap();
        assert_eq!(b.reduce_at(400, t0), Reduction::Success);
        assert_eq!((b.one_time_burst(), b.budget()), (100, 100));
        // 150: the last 100 of the burst, then 50 of the budget.
        assert_eq!(b.reduce_at(150, t0), Reduction::Success);
        assert_eq!((b.one_time_burst(), b.budget()), (0, 50));
        assert_eq!(b.reduce_at(60, t0), Reduction::Failure);
        assert_eq!(b.reduce_at(100, t0 + ms(60_000)), Reduction::Success);
        assert_eq!(b.one_time_burst(), 0, "the burst never comes back");
        b.force_replenish(1000);
        assert_eq!(b.budget(), 100, "replenish caps at size");
    }

    #[test]
    fn over_consumption_blocks_for_the_overdraft() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&tb(1000, None, 100), t0).unwrap();
        // 3000 from a full bucket of 1000: 2000 over = 2 refills of 100 ms.
        assert_eq!(b.reduce_at(3000, t0), Reduction::OverConsumption(ms(200)));
        assert_eq!(b.budget(), 0);
    }

    #[test]
    fn limiter_blocks_until_its_timer_fires() {
        let cfg = RateLimiterConfig {
            bandwidth: Some(tb(1000, None, 1000)),
            ops: Some(tb(10, None, 1000)),
        };
        let mut l = RateLimiter::new(&cfg).unwrap();
        let t0 = Instant::now();
        assert!(l.consume_request_at(600, t0));
        assert!(!l.consume_request_at(600, t0), "bytes exhausted");
        assert!(l.is_blocked());
        assert_eq!(
            l.ops().unwrap().budget(),
            9,
            "the refused op was given back"
        );
        // While blocked even a free request fails.
        assert!(!l.consume_request_at(0, t0 + ms(50_000)));
        assert!(!l.event_handler() || !l.is_blocked());
        // The timer fires after REFILL_INTERVAL; wait for it like epoll would.
        let mut pfd = libc::pollfd {
            fd: l.timer_fd().unwrap(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a count of 1.
        let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_eq!(n, 1);
        assert!(l.event_handler());
        assert!(!l.is_blocked());
        assert!(!l.event_handler(), "a second read is spurious");
        assert!(l.consume_request_at(600, t0 + ms(50_000)));
    }

    #[test]
    fn ops_bucket_counts_requests() {
        let cfg = RateLimiterConfig {
            bandwidth: None,
            ops: Some(tb(2, None, 1000)),
        };
        let mut l = RateLimiter::new(&cfg).unwrap();
        let t0 = Instant::now();
        assert!(l.consume_request_at(1 << 30, t0));
        assert!(l.consume_request_at(1 << 30, t0));
        assert!(!l.consume_request_at(1, t0));
    }

    #[test]
    fn unlimited_limiters_never_block() {
        for cfg in [
            RateLimiterConfig::default(),
            RateLimiterConfig {
                bandwidth: Some(tb(0, None, 0)),
                ops: Some(tb(0, Some(5), 100)),
            },
        ] {
            cfg.validate("x").unwrap();
            assert!(!cfg.is_limited());
            let mut l = RateLimiter::new(&cfg).unwrap();
            for _ in 0..1000 {
                assert!(l.consume_request(u64::MAX));
            }
        }
        let mut l = RateLimiter::unlimited();
        assert!(l.consume_request(u64::MAX));
        assert!(l.timer_fd().is_none());
    }

    #[test]
    fn validation_names_the_field() {
        let e = |c: RateLimiterConfig| {
            c.validate("drives[0].rate_limiter")
                .unwrap_err()
                .to_string()
        };
        let m = e(RateLimiterConfig {
            bandwidth: Some(tb(10, None, 0)),
            ops: None,
        });
        assert!(
            m.starts_with("drives[0].rate_limiter.bandwidth.refill_time: 0"),
            "{m}"
        );
        let m = e(RateLimiterConfig {
            bandwidth: None,
            ops: Some(tb(MAX_TOKENS + 1, None, 10)),
        });
        assert!(
            m.starts_with("drives[0].rate_limiter.ops.size: 9007199254740993"),
            "{m}"
        );
        let m = e(RateLimiterConfig {
            bandwidth: Some(tb(1, Some(u64::MAX), 10)),
            ops: None,
        });
        assert!(m.contains("bandwidth.one_time_burst"), "{m}");
        let m = e(RateLimiterConfig {
            bandwidth: Some(tb(1, None, MAX_REFILL_TIME_MS + 1)),
            ops: None,
        });
        assert!(m.contains("bandwidth.refill_time: 86400001"), "{m}");
    }

    #[test]
    fn schema_has_firecrackers_names_and_no_others() {
        let c: RateLimiterConfig = serde_json::from_str(
            r#"{"bandwidth": {"size": 5, "one_time_burst": 7, "refill_time": 9}, "ops": {"size": 1, "refill_time": 2}}"#,
        )
        .unwrap();
        assert_eq!(c.bandwidth, Some(tb(5, Some(7), 9)));
        assert_eq!(c.ops, Some(tb(1, None, 2)));
        assert!(serde_json::from_str::<RateLimiterConfig>(r#"{"bw": {}}"#).is_err());
        assert!(serde_json::from_str::<RateLimiterConfig>(
            r#"{"ops": {"size": 1, "refill_time": 2, "extra": 1}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<RateLimiterConfig>(r#"{"ops": {"size": 1}}"#).is_err());
        assert_eq!(
            serde_json::from_str::<RateLimiterConfig>("{}").unwrap(),
            RateLimiterConfig::default()
        );
    }

    #[test]
    fn patch_keeps_replaces_and_removes() {
        let t0 = Instant::now();
        let cfg = RateLimiterConfig {
            bandwidth: Some(tb(1000, None, 1000)),
            ops: Some(tb(10, None, 1000)),
        };
        let mut l = RateLimiter::new(&cfg).unwrap();
        assert!(l.consume_at(900, TokenType::Bytes, t0));
        // Omitted ops: unchanged; given bandwidth: replaced, full.
        let p = RateLimiterPatch::from_config(
            &serde_json::from_str(r#"{"bandwidth": {"size": 50, "refill_time": 10}}"#).unwrap(),
            "rl",
        )
        .unwrap();
        assert_eq!(p.ops, BucketPatch::Keep);
        l.update_at(&p, t0).unwrap();
        assert_eq!(l.bandwidth().unwrap().budget(), 50);
        assert_eq!(l.ops().unwrap().config(), tb(10, None, 1000));
        // Size 0 removes.
        let p = RateLimiterPatch::from_config(
            &serde_json::from_str(r#"{"ops": {"size": 0, "refill_time": 0}}"#).unwrap(),
            "rl",
        )
        .unwrap();
        assert_eq!(p.ops, BucketPatch::Remove);
        l.update_at(&p, t0).unwrap();
        assert!(l.ops().is_none());
        assert!(l.bandwidth().is_some());
        assert_eq!(
            l.config(),
            RateLimiterConfig {
                bandwidth: Some(tb(50, None, 10)),
                ops: None
            }
        );
        // An invalid patch is an error naming the field.
        let bad = RateLimiterConfig {
            bandwidth: Some(tb(1, None, 0)),
            ops: None,
        };
        let m = RateLimiterPatch::from_config(&bad, "rx_rate_limiter")
            .unwrap_err()
            .to_string();
        assert!(m.contains("rx_rate_limiter.bandwidth.refill_time"), "{m}");
        // A timerless limiter refuses buckets.
        let p = RateLimiterPatch {
            bandwidth: BucketPatch::Set(tb(1, None, 1)),
            ops: BucketPatch::Keep,
        };
        assert!(matches!(
            RateLimiter::unlimited().update(&p),
            Err(RateLimiterError::NoTimer)
        ));
    }
}
