//! The 8250 UART at 0x3f8 (vm-superio), raising IRQ 4 through an irqfd.
//!
//! Host input is read unbuffered ([`FdInput`]) and only as fast as the guest drains the 64-byte receive
//! FIFO: [`SerialDevice::feed_input`] reads no more than the FIFO has room for,
//! and when it is full the reader waits for [`SerialDevice::input_drained`],
//! which the UART signals when the guest reads the FIFO's last byte (as
//! Firecracker's serial does). Input is never read and then dropped.
//!
//! Sandbox: writes to its output (stdout or a file opened before confinement),
//! reads stdin when the output is stdout.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::{
    Access, FdKind, FdNeed, FdOrigin, PathNeed, PathSource, SandboxNeeds, Syscall, VMM, VMM_VCPU,
};
use crate::rate_limiter::{Reduction, TokenBucket, TokenBucketConfig};

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "serial",
    paths: &[PathNeed::new(PathSource::SerialFile, Access::Write)],
    fds: &[
        FdNeed::new(FdKind::Stdio, FdOrigin::Inherited, "stdout for the output, stdin"),
        FdNeed::new(FdKind::File, FdOrigin::Opened, "the output file"),
        FdNeed::new(FdKind::EventFd, FdOrigin::Created, "irqfd (IRQ 4)"),
        FdNeed::new(FdKind::EventFd, FdOrigin::Created, "input-drained eventfd"),
    ],
    syscalls: &[
        Syscall::new(
            "read",
            VMM,
            "stdin input for the guest; drain the input-drained eventfd",
        ),
        Syscall::new(
            "write",
            VMM_VCPU,
            "guest output (vcpu), raising the IRQ through the irqfd; the guest emptied the receive FIFO (vcpu)",
        ),
        Syscall::new(
            "epoll_ctl",
            VMM,
            "stop watching stdin while the receive FIFO is full, watch it again once drained",
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

/// Counts into the `uart` metrics, as Firecracker's SerialEventsWrapper does,
/// and signals `drained` when the guest has read the receive FIFO empty.
#[derive(Debug, Clone)]
pub struct UartMetricsEvents {
    drained: Arc<EventFd>,
}

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
    fn in_buffer_empty(&self) {
        if let Err(e) = self.drained.write(1) {
            log::warn!("serial: cannot signal that the input FIFO is empty: {e}");
        }
    }
}

/// Unbuffered reads of an fd (stdin): what the event loop polls must be
/// where the unread bytes are. `std::io::Stdin` reads ahead into its own
/// 8 KiB buffer, so after a short read the rest of a line sits in user space
/// while epoll sees an empty pipe or terminal, and the guest gets it only
/// when the next keystroke wakes the loop.
#[derive(Debug)]
pub struct FdInput<F: AsFd>(pub F);

impl<F: AsFd> Read for FdInput<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        nix::unistd::read(self.0.as_fd(), buf).map_err(std::io::Error::from)
    }
}

/// What one [`SerialDevice::feed_input`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// This many bytes were read and queued for the guest.
    Queued(usize),
    /// The receive FIFO is full: nothing was read; wait for
    /// [`SerialDevice::input_drained`].
    Full,
    /// The input is at its end (or failed): stop reading it.
    End,
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
    /// The serial's events (and its input-drained eventfd), likewise.
    events: UartMetricsEvents,
    write_errors: u64,
}

impl SerialDevice {
    /// `irq` is registered as the irqfd; `drained` is written (by the vCPU
    /// that reads the last byte) whenever the guest empties the receive FIFO.
    pub fn new(irq: EventFd, drained: EventFd, out: SerialOut) -> Self {
        let trigger = EventFdTrigger::new(irq);
        let events = UartMetricsEvents {
            drained: Arc::new(drained),
        };
        Self {
            serial: Serial::with_events(trigger.clone(), events.clone(), out),
            trigger,
            events,
            write_errors: 0,
        }
    }

    /// The eventfd written when the guest has read the receive FIFO empty:
    /// host input paused on a full FIFO resumes then.
    pub fn input_drained(&self) -> Arc<EventFd> {
        self.events.drained.clone()
    }

    /// Reads from `input` at most as many bytes as the receive FIFO has room
    /// for and queues them all, so that no byte read is ever dropped. With a
    /// full FIFO `input` is not read at all.
    pub fn feed_input(&mut self, input: &mut dyn Read) -> Feed {
        let mut buf = [0u8; FIFO_SIZE];
        let room = self.serial.fifo_capacity().min(buf.len());
        if room == 0 {
            return Feed::Full;
        }
        let n = loop {
            match input.read(&mut buf[..room]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("serial: cannot read input: {e}");
                    break 0;
                }
            }
        };
        if n == 0 {
            return Feed::End;
        }
        let queued = self.enqueue_input(&buf[..n]);
        if queued < n {
            log::warn!("serial: {} input bytes lost", n - queued);
        }
        Feed::Queued(queued)
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
            self.events.clone(),
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
        let drained = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (SerialDevice::new(irq, drained, Box::new(out.clone())), out)
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

    /// A shell line longer than the FIFO, typed at once (one write into the
    /// pipe or terminal): the bytes past the FIFO's 64 used to be read and
    /// dropped, so the line lost its end and newline and never ran.
    #[test]
    fn input_longer_than_the_fifo_waits_for_the_guest_and_loses_nothing() {
        let (mut d, _) = device();
        let line: &[u8] =
            b"dd if=/dev/vda of=/dev/null bs=4096 skip=300 count=1; echo pre-$((2+2))\n";
        assert!(line.len() > FIFO_SIZE);
        let mut stdin = std::io::Cursor::new(line);
        let drained = d.input_drained();
        assert_eq!(d.feed_input(&mut stdin), Feed::Queued(FIFO_SIZE));
        // The guest has not read yet: the rest stays unread in the input.
        assert_eq!(d.feed_input(&mut stdin), Feed::Full);
        assert_eq!(stdin.position(), FIFO_SIZE as u64);
        assert!(drained.read().is_err(), "nothing drained yet");
        let mut got: Vec<u8> = (0..FIFO_SIZE).map(|_| rd(&mut d, 0)).collect();
        assert_eq!(drained.read().ok(), Some(1), "the guest emptied the FIFO");
        assert_eq!(
            d.feed_input(&mut stdin),
            Feed::Queued(line.len() - FIFO_SIZE)
        );
        got.extend((FIFO_SIZE..line.len()).map(|_| rd(&mut d, 0)));
        assert_eq!(got, line);
        assert_eq!(drained.read().ok(), Some(1), "drained again");
        assert_eq!(d.feed_input(&mut stdin), Feed::End);
        // A restored device keeps signalling the same eventfd.
        d.enqueue_input(b"x");
        let st = d.save_state();
        d.restore_state(&st).unwrap();
        assert_eq!(rd(&mut d, 0), b'x');
        assert_eq!(drained.read().ok(), Some(1));
    }

    /// The same line through a pipe, as the event loop reads stdin: what the
    /// guest has not taken yet must stay in the pipe, where epoll sees it.
    #[test]
    fn unread_input_stays_in_the_pipe() {
        use std::os::fd::AsRawFd;
        use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
        // What the event loop's (level-triggered) epoll says about the pipe.
        let poll_in = |fd: &std::os::fd::OwnedFd| {
            let ep = Epoll::new().unwrap();
            ep.ctl(
                ControlOperation::Add,
                fd.as_raw_fd(),
                EpollEvent::new(EventSet::IN, 0),
            )
            .unwrap();
            let mut evs = [EpollEvent::default()];
            ep.wait(0, &mut evs).unwrap() == 1
        };
        let (mut d, _) = device();
        let (r, w) = nix::unistd::pipe().unwrap();
        let line = [b'a'; FIFO_SIZE + 8];
        assert_eq!(nix::unistd::write(&w, &line).unwrap(), line.len());
        let mut input = FdInput(&r);
        assert_eq!(d.feed_input(&mut input), Feed::Queued(FIFO_SIZE));
        assert!(poll_in(&r), "the last 8 bytes are still visible to epoll");
        for _ in 0..FIFO_SIZE {
            rd(&mut d, 0);
        }
        assert_eq!(d.feed_input(&mut input), Feed::Queued(8));
        assert!(!poll_in(&r));
        drop(w);
        assert!(poll_in(&r), "end of input is seen");
        for _ in 0..8 {
            rd(&mut d, 0);
        }
        assert_eq!(d.feed_input(&mut input), Feed::End);
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
