//! virtio-rng (entropy device): fills each device-writable buffer from the host's
//! getrandom(2).
//!
//! A rate limiter charges one op and the bytes served per request; a refused
//! request stays in the queue until the limiter's timerfd fires.
//!
//! Sandbox: no paths or fds beyond its eventfds; needs getrandom.

use std::os::fd::RawFd;
use std::sync::Arc;

use super::chain::scatter;
use super::metrics::EntropyDeviceMetrics;
use super::{complete, device_type, notify, DeviceCtx, DeviceState, VirtioDevice, VirtioError};
use super::{QUEUE_MAX_SIZE, VIRTIO_F_VERSION_1};
use crate::devices::{FdKind, FdNeed, FdOrigin, SandboxNeeds, Syscall, VMM};
use crate::rate_limiter::RateLimiter;

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "virtio-rng",
    paths: &[],
    fds: &[FdNeed::new(
        FdKind::TimerFd,
        FdOrigin::Created,
        "rate limiter timerfd",
    )],
    syscalls: &[
        Syscall::new("getrandom", VMM, "the entropy served to the guest"),
        Syscall::new("read", VMM, "the rate limiter's timerfd"),
        Syscall::new(
            "timerfd_settime",
            VMM,
            "arm the rate limiter's refill timer",
        ),
    ],
};

/// Bytes served per request at most; the rest of a bigger buffer is left alone.
pub const MAX_FILL: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error("getrandom of {len} bytes failed: {source}")]
    GetRandom { len: usize, source: std::io::Error },
}

/// Fills `buf` from getrandom(2).
pub fn fill_random(buf: &mut [u8]) -> Result<(), RngError> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe the live, writable slice `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let source = std::io::Error::last_os_error();
            if source.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(RngError::GetRandom {
                len: buf.len(),
                source,
            });
        }
        done += n as usize;
    }
    Ok(())
}

/// An entropy device has no state worth keeping; its rate limiter is rebuilt
/// from the config with full budgets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RngState {}

pub struct Rng {
    buf: Vec<u8>,
    limiter: RateLimiter,
    metrics: Arc<EntropyDeviceMetrics>,
}

impl Rng {
    /// An unlimited device whose metrics belong to no group (tests).
    pub fn new() -> Self {
        Self::with_limiter(RateLimiter::unlimited(), Arc::default())
    }

    pub fn with_limiter(limiter: RateLimiter, metrics: Arc<EntropyDeviceMetrics>) -> Self {
        Self {
            buf: Vec::new(),
            limiter,
            metrics,
        }
    }

    /// Serves the queue until it is empty or the limiter runs dry.
    fn run_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError> {
        let mut any = false;
        while let Some(chain) = ctx.next_chain(queue)? {
            let len = usize::try_from(chain.writable_len())
                .unwrap_or(MAX_FILL)
                .min(MAX_FILL);
            // Charged for what it gets: one op and the bytes served.
            if chain.readable.is_empty() && len > 0 && !self.limiter.consume_request(len as u64) {
                ctx.undo_pop(queue);
                self.metrics.entropy_rate_limiter_throttled.inc();
                break;
            }
            any = true;
            self.metrics.entropy_event_count.inc();
            if !chain.readable.is_empty() {
                ctx.warn.warn(&format_args!(
                    "request {} carries device-readable buffers; dropped",
                    chain.head
                ));
                complete(ctx, queue, chain.head, 0)?;
                continue;
            }
            self.buf.resize(len, 0);
            let written = match fill_random(&mut self.buf) {
                Ok(()) => scatter(ctx.mem, &chain.writable, 0, &self.buf),
                Err(e) => {
                    self.metrics.host_rng_fails.inc();
                    ctx.warn.warn(&e);
                    0
                }
            };
            self.metrics.entropy_bytes.add(written as u64);
            complete(ctx, queue, chain.head, u32::try_from(written).unwrap_or(0))?;
        }
        if any {
            notify(ctx, queue);
        }
        Ok(())
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE]
    }
    fn config(&self) -> &[u8] {
        &[]
    }

    fn process_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError> {
        let r = self.run_queue(ctx, queue);
        if r.is_err() {
            self.metrics.entropy_event_fails.inc();
        }
        r
    }

    fn host_fds(&self) -> Vec<RawFd> {
        self.limiter.timer_fd().into_iter().collect()
    }

    fn save(&self) -> DeviceState {
        DeviceState::Rng(RngState {})
    }

    fn restore(&mut self, s: &DeviceState) -> Result<(), VirtioError> {
        match s {
            DeviceState::Rng(RngState {}) => Ok(()),
            _ => Err(s.mismatch(device_type::RNG)),
        }
    }

    fn process_fd(&mut self, ctx: Option<&mut DeviceCtx>, _fd: RawFd) -> Result<(), VirtioError> {
        if !self.limiter.event_handler() {
            return Ok(());
        }
        self.metrics.rate_limiter_event_count.inc();
        match ctx {
            Some(ctx) => self.process_queue(ctx, 0),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::testing as ct;
    use crate::devices::virtio::mmio::testing::*;
    use crate::devices::virtio::mmio::MmioDevice;
    use crate::devices::virtio::registers as r;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn fills_writable_buffers() {
        let mem = ct::memory();
        let mut d = MmioDevice::new("rng".into(), Box::new(Rng::new()), mem.clone()).unwrap();
        bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
        ct::write_chain(
            &mem,
            0,
            &[(ct::DATA, 2048, true), (ct::DATA + 4096, 2048, true)],
        );
        ct::publish(&mem, &[0]);
        wr(&mut d, r::QUEUE_NOTIFY, 0);
        run_notified(&mut d);
        assert_eq!(ct::used(&mem, 0), (1, 0, 4096));
        let mut a = vec![0u8; 2048];
        mem.read_slice(&mut a, GuestAddress(ct::DATA)).unwrap();
        let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct > 100, "{distinct} distinct byte values");
        mem.read_slice(&mut a, GuestAddress(ct::DATA + 4096))
            .unwrap();
        assert!(a.iter().any(|b| *b != 0));
        assert_eq!(rd(&mut d, r::INTERRUPT_STATUS) & 1, 1);
    }

    #[test]
    fn throttled_request_waits_for_the_timer() {
        use crate::rate_limiter::{RateLimiterConfig, TokenBucketConfig};
        let cfg = RateLimiterConfig {
            bandwidth: Some(TokenBucketConfig {
                size: 1024,
                one_time_burst: None,
                refill_time: 100,
            }),
            ops: None,
        };
        let m: Arc<EntropyDeviceMetrics> = Arc::default();
        let rng = Rng::with_limiter(RateLimiter::new(&cfg).unwrap(), m.clone());
        let mem = ct::memory();
        let mut d = MmioDevice::new("rng".into(), Box::new(rng), mem.clone()).unwrap();
        bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
        ct::write_chain(&mem, 0, &[(ct::DATA, 1024, true)]);
        ct::write_chain(&mem, 1, &[(ct::DATA + 4096, 1024, true)]);
        ct::publish(&mem, &[0, 1]);
        wr(&mut d, r::QUEUE_NOTIFY, 0);
        run_notified(&mut d);
        assert_eq!(ct::used(&mem, 0).0, 1, "the second 1 KiB waits");
        assert_eq!(m.entropy_rate_limiter_throttled.total(), 1);
        let fd = d.device().host_fds()[0];
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a count of 1.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
        host_fd(&mut d, fd);
        assert_eq!(ct::used(&mem, 1), (2, 1, 1024));
        assert_eq!(m.entropy_bytes.total(), 2048);
        assert_eq!(m.rate_limiter_event_count.total(), 1);
    }

    #[test]
    fn readable_buffer_is_dropped_not_written() {
        let mem = ct::memory();
        let mut d = MmioDevice::new("rng".into(), Box::new(Rng::new()), mem.clone()).unwrap();
        bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
        ct::write_chain(&mem, 0, &[(ct::DATA, 64, false)]);
        ct::publish(&mem, &[0]);
        wr(&mut d, r::QUEUE_NOTIFY, 0);
        run_notified(&mut d);
        assert_eq!(ct::used(&mem, 0), (1, 0, 0));
        let mut a = [1u8; 64];
        mem.read_slice(&mut a, GuestAddress(ct::DATA)).unwrap();
        assert_eq!(a, [0u8; 64], "the device did not write the readable buffer");
        assert_eq!(
            rd(&mut d, r::STATUS),
            0xf,
            "a dropped request is not a fault"
        );
    }
}
