//! The 8250 UART at 0x3f8 (vm-superio), raising IRQ 4 through an irqfd.
//!
//! Sandbox: writes to its output (stdout or a file opened before confinement),
//! reads stdin when the output is stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
/// Clones share the eventfd and can be muted together: vm-superio's
/// `from_state` re-raises a pending interrupt, which a restore must not do
/// (the guest's interrupt controller state already says whether it is pending).
#[derive(Debug, Clone)]
pub struct EventFdTrigger {
    evt: Arc<EventFd>,
    muted: Arc<AtomicBool>,
}

impl EventFdTrigger {
    pub fn new(evt: EventFd) -> Self {
        Self {
            evt: Arc::new(evt),
            muted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The eventfd (registered with KVM as the irqfd).
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        if self.muted.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.evt.write(1)
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

/// The depth of vm-superio's receive FIFO (its `FIFO_SIZE`, not exported).
pub const FIFO_SIZE: usize = 64;
/// Interrupt Enable bits a 16550 has (vm-superio masks the rest away).
const IER_BITS: u8 = 0x0f;
/// Interrupt Identification values vm-superio holds: none, THR empty, data
/// available, or both.
const IIR_VALUES: [u8; 4] = [0x01, 0x02, 0x04, 0x06];
/// Line Status bits vm-superio sets: data ready, THR empty, idle.
const LSR_BITS: u8 = 0x61;

/// The UART's registers and receive FIFO, as vm-superio's `SerialState`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SerialState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    /// Host input the guest has not read yet (at most [`FIFO_SIZE`] bytes).
    pub in_buffer: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("serial snapshot: the receive FIFO holds {len} bytes, more than {FIFO_SIZE}")]
    FifoTooLong { len: usize },
    #[error("serial snapshot: {register} {value:#04x} {reason}")]
    Register {
        register: &'static str,
        value: u8,
        reason: &'static str,
    },
    #[error("serial snapshot: {0}")]
    Rejected(String),
}

type Uart = Serial<EventFdTrigger, UartMetricsEvents, SerialOut>;

pub struct SerialDevice {
    serial: Uart,
    /// The serial's trigger, to build a restored one around it.
    trigger: EventFdTrigger,
    write_errors: u64,
}

impl SerialDevice {
    pub fn new(irq: EventFd, out: SerialOut) -> Self {
        let trigger = EventFdTrigger::new(irq);
        Self {
            serial: Serial::with_events(trigger.clone(), UartMetricsEvents, out),
            trigger,
            write_errors: 0,
        }
    }

    pub fn save_state(&self) -> SerialState {
        let s = self.serial.state();
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// Restores `st` after checking it (on an error the device is unchanged).
    /// The output stays this device's; no interrupt is raised.
    pub fn restore_state(&mut self, st: &SerialState) -> Result<(), SerialError> {
        check(st)?;
        let vs = vm_superio::serial::SerialState {
            baud_divisor_low: st.baud_divisor_low,
            baud_divisor_high: st.baud_divisor_high,
            interrupt_enable: st.interrupt_enable,
            interrupt_identification: st.interrupt_identification,
            line_control: st.line_control,
            line_status: st.line_status,
            modem_control: st.modem_control,
            modem_status: st.modem_status,
            scratch: st.scratch,
            in_buffer: st.in_buffer.clone(),
        };
        // Built around a placeholder output first, so a refusal loses nothing.
        self.trigger.muted.store(true, Ordering::SeqCst);
        let built = Serial::from_state(
            &vs,
            self.trigger.clone(),
            UartMetricsEvents,
            Box::new(std::io::sink()) as SerialOut,
        );
        self.trigger.muted.store(false, Ordering::SeqCst);
        let restored = built.map_err(|e| SerialError::Rejected(format!("{e:?}")))?;
        let old = std::mem::replace(&mut self.serial, restored);
        *self.serial.writer_mut() = old.into_writer();
        Ok(())
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

/// Accepts exactly the register values vm-superio can reach.
fn check(st: &SerialState) -> Result<(), SerialError> {
    if st.in_buffer.len() > FIFO_SIZE {
        return Err(SerialError::FifoTooLong {
            len: st.in_buffer.len(),
        });
    }
    let bad = |register, value, reason| {
        Err(SerialError::Register {
            register,
            value,
            reason,
        })
    };
    if st.interrupt_enable & !IER_BITS != 0 {
        return bad(
            "interrupt enable",
            st.interrupt_enable,
            "has bits a 16550 does not have",
        );
    }
    if !IIR_VALUES.contains(&st.interrupt_identification) {
        return bad(
            "interrupt identification",
            st.interrupt_identification,
            "is not none, THR empty or data available",
        );
    }
    if st.line_status & !LSR_BITS != 0 {
        return bad(
            "line status",
            st.line_status,
            "has bits other than data ready, THR empty and idle",
        );
    }
    Ok(())
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

#[cfg(test)]
mod state_tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            crate::devices::lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn device() -> (SerialDevice, Shared) {
        let out = Shared::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (SerialDevice::new(irq, Box::new(out.clone())), out)
    }

    fn rd(d: &mut SerialDevice, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    /// Every register but the data port, read the same way on any device.
    fn registers(d: &mut SerialDevice) -> Vec<u8> {
        (1..8).map(|off| rd(d, off)).collect()
    }

    fn irq_count(d: &SerialDevice) -> u64 {
        d.trigger.eventfd().read().unwrap_or(0)
    }

    #[test]
    fn round_trip_keeps_registers_and_input_and_raises_nothing() {
        let (mut d, _) = device();
        assert_eq!(d.serial.fifo_capacity(), FIFO_SIZE);
        for (off, v) in [(3, 0x80), (0, 0x01), (1, 0x00), (3, 0x03), (7, 0x5a)] {
            d.write(off, &[v]);
        }
        d.write(4, &[0x0b]);
        d.write(1, &[0x01]);
        assert_eq!(d.enqueue_input(b"abc"), 3);
        assert!(irq_count(&d) > 0, "RDA raised");
        let saved = d.save_state();
        assert_eq!(saved.in_buffer, b"abc");
        let bytes = postcard::to_allocvec(&saved).unwrap();
        let decoded: SerialState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, saved);

        let (mut n, out) = device();
        n.restore_state(&decoded).unwrap();
        assert_eq!(irq_count(&n), 0, "restore raised no interrupt");
        assert_eq!(n.save_state(), saved);
        assert_eq!(registers(&mut n), registers(&mut d));
        assert_eq!([rd(&mut n, 0), rd(&mut n, 0), rd(&mut n, 0)], *b"abc");
        // The output is the restoring device's, and interrupts work again.
        n.write(1, &[0x02]);
        assert_eq!(irq_count(&n), 1, "THR empty raised");
        n.write(0, b"x");
        assert_eq!(*crate::devices::lock(&out.0), b"x");
        assert_eq!(n.enqueue_input(b"z"), 1);
    }

    #[test]
    fn hostile_states_are_refused_and_change_nothing() {
        let (mut d, out) = device();
        d.write(7, &[0x42]);
        let good = d.save_state();
        type Mutation = fn(&mut SerialState);
        let cases: [(&str, Mutation); 4] = [
            ("the receive FIFO holds 65 bytes, more than 64", |s| {
                s.in_buffer = vec![0; 65]
            }),
            (
                "interrupt enable 0x10 has bits a 16550 does not have",
                |s| s.interrupt_enable = 0x10,
            ),
            ("interrupt identification 0x08 is not", |s| {
                s.interrupt_identification = 0x08
            }),
            ("line status 0x80 has bits", |s| s.line_status = 0x80),
        ];
        for (want, mutate) in cases {
            let mut bad = good.clone();
            mutate(&mut bad);
            let err = d.restore_state(&bad).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should say {want:?}");
            assert_eq!(d.save_state(), good);
        }
        d.write(0, b"k");
        assert_eq!(*crate::devices::lock(&out.0), b"k");
        let mut full = good.clone();
        full.in_buffer = vec![7; FIFO_SIZE];
        d.restore_state(&full).unwrap();
        assert_eq!(d.enqueue_input(b"more"), 0, "a full FIFO takes nothing");
    }
}
