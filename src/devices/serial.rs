//! The 8250 UART at 0x3f8 (vm-superio), raising IRQ 4 through an irqfd.
//!
//! Sandbox: writes to its output (stdout or a file opened before confinement),
//! reads stdin when the output is stdout.

use std::io::Write;
use std::time::Instant;

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::{SandboxNeeds, Syscall, VMM, VMM_VCPU};
use crate::rate_limiter::{Reduction, TokenBucket, TokenBucketConfig};

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "serial",
    paths: &[],
    fds: &["serial output (stdout or file)", "stdin", "irqfd (IRQ 4)"],
    syscalls: &[
        Syscall::new("read", VMM, "stdin input for the guest"),
        Syscall::new(
            "write",
            VMM_VCPU,
            "guest output (vcpu), raising the IRQ through the irqfd",
        ),
        Syscall::ioctl("TCGETS", VMM, "read the terminal state when restoring it"),
        Syscall::ioctl("TCSETS", VMM, "restore the terminal after raw-mode input"),
    ],
};

/// An eventfd that raises an interrupt when written (registered as an irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

pub type SerialOut = Box<dyn Write + Send>;

/// The serial output under a byte budget (Firecracker's `PUT /serial`
/// `rate_limiter`): what the guest writes beyond it is dropped and counted in
/// `uart.rate_limiter_dropped_bytes`, never queued, so a chatty guest can
/// neither fill the host's disk nor stall on its console.
pub struct LimitedOut {
    inner: SerialOut,
    bucket: TokenBucket,
}

impl LimitedOut {
    /// `None` when `cfg` limits nothing.
    pub fn new(inner: SerialOut, cfg: &TokenBucketConfig) -> Option<Self> {
        TokenBucket::new(cfg, Instant::now()).map(|bucket| Self { inner, bucket })
    }
}

impl Write for LimitedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        match self.bucket.reduce_at(len, Instant::now()) {
            Reduction::Success => self.inner.write_all(buf)?,
            Reduction::Failure | Reduction::OverConsumption(_) => {
                crate::metrics::METRICS
                    .uart
                    .rate_limiter_dropped_bytes
                    .add(len);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts into the `uart` metrics, as Firecracker's SerialEventsWrapper does.
#[derive(Debug)]
pub struct UartMetricsEvents;

impl SerialEvents for UartMetricsEvents {
    fn buffer_read(&self) {
        crate::metrics::METRICS.uart.read_count.inc();
    }
    fn out_byte(&self) {
        crate::metrics::METRICS.uart.write_count.inc();
    }
    fn tx_lost_byte(&self) {
        crate::metrics::METRICS.uart.missed_write_count.inc();
    }
    fn in_buffer_empty(&self) {}
}

pub struct SerialDevice {
    serial: Serial<EventFdTrigger, UartMetricsEvents, SerialOut>,
    write_errors: u64,
}

impl SerialDevice {
    pub fn new(irq: EventFd, out: SerialOut) -> Self {
        Self {
            serial: Serial::with_events(EventFdTrigger(irq), UartMetricsEvents, out),
            write_errors: 0,
        }
    }

    /// Feeds host input to the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.serial.fifo_capacity().min(bytes.len());
        match self.serial.enqueue_raw_bytes(&bytes[..room]) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: cannot queue input: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialDevice {
    /// Registers are one byte wide; wider accesses are ignored and counted, as
    /// in Firecracker.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (data, u8::try_from(offset)) {
            ([b], Ok(off)) => *b = self.serial.read(off),
            _ => crate::metrics::METRICS.uart.missed_read_count.inc(),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (&[b], Ok(off)) = (data, u8::try_from(offset)) else {
            crate::metrics::METRICS.uart.missed_write_count.inc();
            return;
        };
        if let Err(e) = self.serial.write(off, b) {
            // A closed output must not stop the guest; say so once.
            crate::metrics::METRICS.uart.error_count.inc();
            self.write_errors += 1;
            if self.write_errors == 1 {
                log::warn!("serial: output failed, further errors are not logged: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_beyond_the_budget_are_dropped_and_counted() {
        let sink = Shared::default();
        let cfg = TokenBucketConfig {
            size: 5,
            one_time_burst: None,
            refill_time: 3_600_000,
        };
        let mut out = LimitedOut::new(Box::new(sink.clone()), &cfg).expect("limited");
        let dropped = crate::metrics::METRICS
            .uart
            .rate_limiter_dropped_bytes
            .total();
        for b in b"Hello, world" {
            assert_eq!(
                out.write(&[*b]).ok(),
                Some(1),
                "the guest never sees a failure"
            );
        }
        assert_eq!(
            sink.0.lock().ok().map(|v| v.clone()),
            Some(b"Hello".to_vec())
        );
        let now = crate::metrics::METRICS
            .uart
            .rate_limiter_dropped_bytes
            .total();
        assert!(now - dropped >= 7, "7 bytes dropped: {}", now - dropped);
        let unlimited = TokenBucketConfig { size: 0, ..cfg };
        assert!(LimitedOut::new(Box::new(sink), &unlimited).is_none());
    }
}
