//! virtio-net over a tap: queue 0 receives (tap -> guest), queue 1 transmits.
//!
//! Since VERSION_1 every frame carries a 12-byte `virtio_net_hdr_v1`. No offload
//! is offered, so the device requires a header without flags or GSO on TX (else
//! the frame is dropped) and hands the tap a zeroed header; on RX it gives the
//! guest a zeroed header with `num_buffers = 1`. [`tx_frame`] and [`rx_header`]
//! are pure functions over byte slices (fuzzed).
//!
//! RX and TX each have a rate limiter (one op and the bytes with the header per
//! frame): a refused TX chain stays in the queue, a refused RX frame waits (and
//! the tap behind it) until the limiter's timerfd fires.
//!
//! Sandbox: the tap fd (opened through /dev/net/tun before confinement, or
//! inherited); needs read, write.

use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::chain::{gather, scatter};
use super::metrics::NetDeviceMetrics;
use super::tap::{Tap, TapError, VNET_HDR_LEN};
use super::{complete, device_type, notify, DeviceCtx, VirtioDevice, VirtioError};
use super::{DeviceState, DeviceUpdate, UpdateOutcome};
use super::{QUEUE_MAX_SIZE, VIRTIO_F_VERSION_1};
use crate::config::devices::{TapSource, ValidNet};
use crate::devices::{
    Access, DeviceNode, FdKind, FdNeed, FdOrigin, PathNeed, PathSource, SandboxNeeds, Syscall, VMM,
};
use crate::rate_limiter::{RateLimiter, RateLimiterError};

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "virtio-net",
    // TUNSETIFF, TUNGETIFF, TUNSETVNETHDRSZ and TUNSETOFFLOAD are made at build
    // time, before confinement, so no filter allows them.
    // /dev/net/tun only when the tap is opened by name, not with caisson.net_fds.
    paths: &[PathNeed::new(
        PathSource::Device(DeviceNode::NetTun),
        Access::ReadWrite,
    )],
    fds: &[
        FdNeed::new(FdKind::Tap, FdOrigin::Opened, "tap, opened by name"),
        FdNeed::new(FdKind::Tap, FdOrigin::Inherited, "tap of caisson.net_fds"),
        FdNeed::new(
            FdKind::TimerFd,
            FdOrigin::Created,
            "rx and tx rate limiter timerfds",
        ),
    ],
    syscalls: &[
        Syscall::new(
            "read",
            VMM,
            "frames from the tap, and the rate limiters' timerfds",
        ),
        Syscall::new("write", VMM, "frames to the tap"),
        Syscall::new("timerfd_settime", VMM, "arm a rate limiter's refill timer"),
    ],
};

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;

pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Largest Ethernet frame without offloads (with a VLAN tag), plus the header.
pub const MAX_FRAME: usize = VNET_HDR_LEN + 1518;
/// What one tap read may return (a frame of up to 64 KiB plus the header).
pub const MAX_TAP_READ: usize = VNET_HDR_LEN + 65535;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("TX chain of {len} bytes is shorter than the {VNET_HDR_LEN}-byte header")]
    Short { len: usize },
    #[error("TX frame of {len} bytes exceeds {MAX_FRAME}")]
    TooLong { len: usize },
    #[error("TX header asks for offloads that were not negotiated (flags {flags:#x}, gso_type {gso:#x})")]
    Offload { flags: u8, gso: u8 },
}

/// Checks a frame the guest sent (header + Ethernet frame) and returns the bytes
/// to write to the tap: a zeroed header and the frame.
pub fn tx_frame(bytes: &[u8]) -> Result<Vec<u8>, NetError> {
    if bytes.len() < VNET_HDR_LEN {
        return Err(NetError::Short { len: bytes.len() });
    }
    if bytes.len() > MAX_FRAME {
        return Err(NetError::TooLong { len: bytes.len() });
    }
    let (flags, gso) = (bytes[0], bytes[1]);
    if flags != 0 || gso != 0 {
        return Err(NetError::Offload { flags, gso });
    }
    let mut out = vec![0u8; VNET_HDR_LEN];
    out.extend_from_slice(&bytes[VNET_HDR_LEN..]);
    Ok(out)
}

/// The header the guest gets in front of a received frame.
pub fn rx_header() -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    // num_buffers = 1 (no VIRTIO_NET_F_MRG_RXBUF).
    h[10] = 1;
    h
}

/// Nothing of an interface must survive a snapshot: the tap (and the MAC
/// the guest reads) come from the config the device is rebuilt from, and the
/// rate limiters are rebuilt with full budgets. A frame read from the tap that
/// was waiting for an RX buffer is dropped, as a network may drop any frame.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetState {}

pub struct Net {
    tap: Tap,
    config: [u8; 6],
    has_mac: bool,
    /// A frame read from the tap that found no RX buffer yet (header
    /// excluded), and whether the RX limiter has been charged for it.
    pending: Option<(Vec<u8>, bool)>,
    buf: Vec<u8>,
    rx_limiter: RateLimiter,
    tx_limiter: RateLimiter,
    metrics: Arc<NetDeviceMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetSetupError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    RateLimiter(#[from] RateLimiterError),
}

pub fn from_config(n: &ValidNet) -> Result<Box<dyn VirtioDevice>, NetSetupError> {
    let tap = match &n.tap {
        TapSource::Name(name) => Tap::open(name)?,
        TapSource::Fd(fd) => Tap::from_fd(*fd)?,
    };
    let rx = RateLimiter::new(&n.rx_rate_limiter.unwrap_or_default())?;
    let tx = RateLimiter::new(&n.tx_rate_limiter.unwrap_or_default())?;
    let metrics = super::metrics::net(&n.id);
    Ok(Box::new(Net::with_limiters(tap, n.mac, rx, tx, metrics)))
}

impl Net {
    /// An unlimited interface whose metrics belong to no group.
    pub fn new(tap: Tap, mac: Option<[u8; 6]>) -> Self {
        let (rx, tx) = (RateLimiter::unlimited(), RateLimiter::unlimited());
        Self::with_limiters(tap, mac, rx, tx, Arc::default())
    }

    pub fn with_limiters(
        tap: Tap,
        mac: Option<[u8; 6]>,
        rx_limiter: RateLimiter,
        tx_limiter: RateLimiter,
        metrics: Arc<NetDeviceMetrics>,
    ) -> Self {
        Self {
            tap,
            config: mac.unwrap_or_default(),
            has_mac: mac.is_some(),
            pending: None,
            buf: vec![0u8; MAX_TAP_READ],
            rx_limiter,
            tx_limiter,
            metrics,
        }
    }

    pub fn limiters(&self) -> (&RateLimiter, &RateLimiter) {
        (&self.rx_limiter, &self.tx_limiter)
    }

    fn process_tx(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        let mut any = false;
        let mut popped = false;
        let mut bytes = Vec::new();
        while let Some(chain) = ctx.next_chain(TX_QUEUE)? {
            popped = true;
            // One op and the whole chain's bytes, header included (Firecracker's cost).
            if !self.tx_limiter.consume_request(chain.readable_len()) {
                ctx.undo_pop(TX_QUEUE);
                self.metrics.tx_rate_limiter_throttled.inc();
                break;
            }
            any = true;
            if !chain.writable.is_empty() {
                self.metrics.tx_malformed_frames.inc();
                ctx.warn.warn(&format_args!(
                    "TX chain {} has device-writable buffers; dropped",
                    chain.head
                ));
                complete(ctx, TX_QUEUE, chain.head, 0)?;
                continue;
            }
            let len = usize::try_from(chain.readable_len()).unwrap_or(usize::MAX);
            bytes.resize(len.min(MAX_FRAME + 1), 0);
            let got = gather(ctx.mem, &chain.readable, 0, &mut bytes);
            bytes.truncate(got);
            let checked = if len > MAX_FRAME {
                Err(NetError::TooLong { len })
            } else {
                tx_frame(&bytes)
            };
            match checked {
                Ok(frame) => {
                    if let Err(e) = self.tap.write_frame(&frame) {
                        // A full or downed tap drops the frame, like a wire.
                        log::debug!("virtio-net {}: tap write failed: {e}", self.tap.name());
                        self.metrics.tap_write_fails.inc();
                    } else {
                        let m = &self.metrics;
                        m.tx_bytes_count.add(frame.len() as u64);
                        m.tx_packets_count.inc();
                        m.tx_count.inc();
                    }
                }
                Err(e) => {
                    self.metrics.tx_malformed_frames.inc();
                    ctx.warn
                        .warn(&format_args!("TX chain {} dropped: {e}", chain.head));
                }
            }
            complete(ctx, TX_QUEUE, chain.head, 0)?;
        }
        if !popped {
            self.metrics.no_tx_avail_buffer.inc();
        }
        if any {
            notify(ctx, TX_QUEUE);
        }
        Ok(())
    }

    /// Delivers `frame` (without header) into the next RX buffer; false when
    /// the guest has none.
    fn deliver(&mut self, ctx: &mut DeviceCtx, frame: &[u8]) -> Result<bool, VirtioError> {
        let Some(chain) = ctx.next_chain(RX_QUEUE)? else {
            return Ok(false);
        };
        let need = (VNET_HDR_LEN + frame.len()) as u64;
        if !chain.readable.is_empty() {
            ctx.warn.warn(&format_args!(
                "RX buffer {} has device-readable parts; returned unused",
                chain.head
            ));
            complete(ctx, RX_QUEUE, chain.head, 0)?;
            return Ok(true);
        }
        if chain.writable_len() < need {
            // The frame is too big for the guest's buffers: drop it, keep the buffer.
            log::debug!(
                "virtio-net {}: {need}-byte frame does not fit RX buffer {} ({} bytes); dropped",
                self.tap.name(),
                chain.head,
                chain.writable_len()
            );
            if let Some(q) = ctx.queues.get_mut(RX_QUEUE) {
                use virtio_queue::QueueT;
                let n = q.next_avail();
                q.set_next_avail(n.wrapping_sub(1));
            }
            return Ok(true);
        }
        scatter(ctx.mem, &chain.writable, 0, &rx_header());
        scatter(ctx.mem, &chain.writable, VNET_HDR_LEN as u64, frame);
        complete(ctx, RX_QUEUE, chain.head, need as u32)?;
        let m = &self.metrics;
        m.rx_bytes_count.add(need);
        m.rx_packets_count.inc();
        m.rx_count.inc();
        Ok(true)
    }

    /// Moves frames from the tap to the guest until either runs out.
    fn pump_rx(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        let mut any = false;
        loop {
            let (frame, charged) = match self.pending.take() {
                Some(p) => p,
                None => match self.tap.read_frame(&mut self.buf) {
                    Ok(n) if n >= VNET_HDR_LEN => (self.buf[VNET_HDR_LEN..n].to_vec(), false),
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if e.kind() != ErrorKind::WouldBlock {
                            log::debug!("virtio-net {}: tap read failed: {e}", self.tap.name());
                            self.metrics.tap_read_fails.inc();
                        }
                        break;
                    }
                },
            };
            // Charged once per frame: header and frame, what the guest gets.
            let cost = (VNET_HDR_LEN + frame.len()) as u64;
            if !charged && !self.rx_limiter.consume_request(cost) {
                // The frame waits (and the tap with it) for the limiter's timer.
                self.pending = Some((frame, false));
                self.metrics.rx_rate_limiter_throttled.inc();
                break;
            }
            if !self.deliver(ctx, &frame)? {
                self.pending = Some((frame, true));
                self.metrics.no_rx_avail_buffer.inc();
                break;
            }
            any = true;
        }
        if any {
            notify(ctx, RX_QUEUE);
        }
        Ok(())
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | if self.has_mac { VIRTIO_NET_F_MAC } else { 0 }
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE; 2]
    }
    fn config(&self) -> &[u8] {
        &self.config
    }
    fn process_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError> {
        let r = match queue {
            TX_QUEUE => {
                self.metrics.tx_queue_event_count.inc();
                self.process_tx(ctx)
            }
            _ => {
                self.metrics.rx_queue_event_count.inc();
                self.pump_rx(ctx)
            }
        };
        if r.is_err() {
            self.metrics.event_fails.inc();
        }
        r
    }
    fn host_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.tap.fd()];
        fds.extend(self.rx_limiter.timer_fd());
        fds.extend(self.tx_limiter.timer_fd());
        fds
    }
    fn process_fd(&mut self, ctx: Option<&mut DeviceCtx>, fd: RawFd) -> Result<(), VirtioError> {
        let tx = if Some(fd) == self.tx_limiter.timer_fd() {
            if !self.tx_limiter.event_handler() {
                return Ok(());
            }
            self.metrics.tx_rate_limiter_event_count.inc();
            true
        } else if Some(fd) == self.rx_limiter.timer_fd() {
            if !self.rx_limiter.event_handler() {
                return Ok(());
            }
            self.metrics.rx_event_rate_limiter_count.inc();
            false
        } else {
            self.metrics.rx_tap_event_count.inc();
            false
        };
        // Not running yet: frames wait in the tap, requests in the queue.
        let Some(ctx) = ctx else {
            return Ok(());
        };
        let r = if tx {
            self.process_tx(ctx)
        } else {
            self.pump_rx(ctx)
        };
        if r.is_err() {
            self.metrics.event_fails.inc();
        }
        r
    }
    fn reset(&mut self) {
        self.pending = None;
    }
    fn save(&self) -> DeviceState {
        DeviceState::Net(NetState {})
    }
    fn restore(&mut self, s: &DeviceState) -> Result<(), VirtioError> {
        let DeviceState::Net(NetState {}) = s else {
            return Err(s.mismatch(device_type::NET));
        };
        self.pending = None;
        Ok(())
    }
    fn update(&mut self, update: DeviceUpdate) -> Result<UpdateOutcome, VirtioError> {
        let DeviceUpdate::Net { rx, tx } = update else {
            return Err(VirtioError::Device(
                "an interface takes interface updates only".into(),
            ));
        };
        let e = |e: RateLimiterError| VirtioError::Device(e.to_string());
        // Both are checked before either changes.
        let has_timer = |l: &RateLimiter| l.timer_fd().is_some();
        if (rx.is_some() && !has_timer(&self.rx_limiter))
            || (tx.is_some() && !has_timer(&self.tx_limiter))
        {
            return Err(e(RateLimiterError::NoTimer));
        }
        if let Some(p) = &rx {
            self.rx_limiter.update(p).map_err(e)?;
        }
        if let Some(p) = &tx {
            self.tx_limiter.update(p).map_err(e)?;
        }
        Ok(UpdateOutcome::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::testing as ct;
    use crate::devices::virtio::mmio::testing::*;
    use crate::devices::virtio::mmio::MmioDevice;
    use crate::devices::virtio::registers as r;
    use crate::devices::virtio::DeviceState;
    use crate::memory::GuestMemoryMmap;
    use crate::rate_limiter::{RateLimiterConfig, RateLimiterPatch, TokenBucketConfig};
    use std::fs::File;
    use std::io::{Read, Write};
    use vm_memory::{Bytes, GuestAddress};

    /// Queue 1's rings (see `bring_up`).
    const TXQ: u64 = 0x10000;

    struct Rig {
        mem: GuestMemoryMmap,
        dev: MmioDevice,
        peer: File,
        m: Arc<NetDeviceMetrics>,
    }

    fn one_op_per_ever() -> RateLimiterConfig {
        RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig {
                size: 1,
                one_time_burst: None,
                refill_time: 1_000_000,
            }),
        }
    }

    /// An unlimited interface on `mem` whose driver has not started it.
    fn unstarted(mem: GuestMemoryMmap) -> Rig {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK,
        )
        .unwrap();
        let m: Arc<NetDeviceMetrics> = Arc::default();
        let (rx, tx) = (RateLimiter::unlimited(), RateLimiter::unlimited());
        let net = Net::with_limiters(
            Tap::from_file(File::from(a), "test"),
            None,
            rx,
            tx,
            m.clone(),
        );
        let dev = MmioDevice::new("net".into(), Box::new(net), mem.clone()).unwrap();
        Rig {
            mem,
            dev,
            peer: File::from(b),
            m,
        }
    }

    fn rig(rx: RateLimiterConfig, tx: RateLimiterConfig) -> Rig {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK,
        )
        .unwrap();
        let tap = Tap::from_file(File::from(a), "test");
        let m: Arc<NetDeviceMetrics> = Arc::default();
        let rx = RateLimiter::new(&rx).unwrap();
        let tx = RateLimiter::new(&tx).unwrap();
        let net = Net::with_limiters(tap, None, rx, tx, m.clone());
        let mem = ct::memory();
        let mut dev = MmioDevice::new("net".into(), Box::new(net), mem.clone()).unwrap();
        bring_up(&mut dev, VIRTIO_F_VERSION_1, 16);
        run_notified(&mut dev);
        Rig {
            mem,
            dev,
            peer: File::from(b),
            m,
        }
    }

    impl Rig {
        /// Posts TX frame `i` (descriptor i of queue 1) and runs the device.
        fn send(&mut self, i: u16) {
            let addr = 0x40000 + u64::from(i) * 0x1000;
            self.mem
                .write_slice(&[0u8; 12], GuestAddress(addr))
                .unwrap();
            self.mem
                .write_slice(&[i as u8; 60], GuestAddress(addr + 12))
                .unwrap();
            let d = TXQ + ct::DESC_TABLE + 16 * u64::from(i);
            self.mem.write_obj(addr, GuestAddress(d)).unwrap();
            self.mem.write_obj(72u32, GuestAddress(d + 8)).unwrap();
            self.mem.write_obj(0u32, GuestAddress(d + 12)).unwrap();
            let avail = TXQ + ct::AVAIL_RING;
            self.mem
                .write_obj(i, GuestAddress(avail + 4 + 2 * u64::from(i)))
                .unwrap();
            self.mem.write_obj(i + 1, GuestAddress(avail + 2)).unwrap();
            wr(&mut self.dev, r::QUEUE_NOTIFY, 1);
            run_notified(&mut self.dev);
        }

        fn tx_used(&self) -> u16 {
            self.mem
                .read_obj(GuestAddress(TXQ + ct::USED_RING + 2))
                .unwrap()
        }

        /// Frames the "tap" peer received.
        fn received(&mut self) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok(n) = self.peer.read(&mut buf) {
                out.push(buf[..n].to_vec());
            }
            out
        }

        /// Waits for host fd `i` of the device and delivers it.
        fn fd_ready(&mut self, i: usize) {
            let fd = self.dev.device().host_fds()[i];
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a count of 1.
            assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1, "fd {i} ready");
            host_fd(&mut self.dev, fd);
        }
    }

    fn patch(cfg: &str) -> Option<RateLimiterPatch> {
        let cfg: RateLimiterConfig = serde_json::from_str(cfg).unwrap();
        Some(RateLimiterPatch::from_config(&cfg, "x").unwrap())
    }

    #[test]
    fn tx_limit_holds_frames_and_patch_releases_them() {
        let mut r = rig(RateLimiterConfig::default(), one_op_per_ever());
        r.send(0);
        r.send(1);
        assert_eq!(r.tx_used(), 1);
        let got = r.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0][12..], [0u8; 60]);
        assert_eq!(r.m.tx_rate_limiter_throttled.total(), 1);
        r.dev
            .update(DeviceUpdate::Net {
                rx: None,
                tx: patch(r#"{"ops": {"size": 0, "refill_time": 0}}"#),
            })
            .unwrap();
        // host fds: tap, rx timer, tx timer.
        r.fd_ready(2);
        assert_eq!(r.tx_used(), 2);
        let got = r.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0][12..], [1u8; 60]);
        assert_eq!(r.m.tx_packets_count.total(), 2);
        assert_eq!(r.m.tx_bytes_count.total(), 144);
        assert_eq!(r.m.tx_rate_limiter_event_count.total(), 1);
    }

    #[test]
    fn rx_limit_added_by_patch_holds_frames_in_the_tap() {
        let mut r = rig(RateLimiterConfig::default(), RateLimiterConfig::default());
        r.dev
            .update(DeviceUpdate::Net {
                rx: patch(r#"{"ops": {"size": 1, "refill_time": 1000000}}"#),
                tx: None,
            })
            .unwrap();
        for i in 0..2u16 {
            ct::write_chain(&r.mem, i, &[(0x60000 + u64::from(i) * 0x1000, 2048, true)]);
        }
        ct::publish(&r.mem, &[0, 1]);
        for i in 0..2u8 {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[i; 60]);
            r.peer.write_all(&f).unwrap();
        }
        r.fd_ready(0);
        assert_eq!(ct::used(&r.mem, 0).0, 1, "one frame in, one held back");
        assert_eq!(r.m.rx_rate_limiter_throttled.total(), 1);
        assert_eq!(r.m.rx_packets_count.total(), 1);
        assert_eq!(r.m.rx_bytes_count.total(), 72);
        assert!(r
            .dev
            .update(DeviceUpdate::Drive {
                disk: None,
                rate_limiter: None
            })
            .is_err());
    }

    #[test]
    fn restore_drops_the_waiting_frame_and_keeps_working() {
        let mut r = rig(RateLimiterConfig::default(), RateLimiterConfig::default());
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[9u8; 60]);
        r.peer.write_all(&f).unwrap();
        r.fd_ready(0);
        assert_eq!(r.m.no_rx_avail_buffer.total(), 1, "the frame waits");
        let saved = r.dev.save_state();
        assert_eq!(saved.device, DeviceState::Net(NetState {}));

        // The new process: another tap, a copy of memory, nothing started.
        let mut n = unstarted(copy_memory(&r.mem));
        n.dev.restore_state(&saved).unwrap();
        n.dev.kick_after_restore();
        run_notified(&mut n.dev);
        ct::write_chain(&n.mem, 0, &[(0x60000, 2048, true)]);
        ct::publish(&n.mem, &[0]);
        wr(&mut n.dev, r::QUEUE_NOTIFY, 0);
        run_notified(&mut n.dev);
        assert_eq!(ct::used(&n.mem, 0).0, 0, "the old frame was dropped");
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[4u8; 60]);
        n.peer.write_all(&f).unwrap();
        n.fd_ready(0);
        assert_eq!(ct::used(&n.mem, 0), (1, 0, 72));

        let mut wrong = saved.clone();
        wrong.device = DeviceState::Rng(crate::devices::virtio::rng::RngState {});
        let err = n.dev.restore_state(&wrong).unwrap_err().to_string();
        assert!(
            err.ends_with("the snapshot holds virtio-rng device state for a virtio-net device"),
            "{err}"
        );
    }

    #[test]
    fn tx_header_checks() {
        let mut f = vec![0u8; VNET_HDR_LEN + 60];
        f[VNET_HDR_LEN] = 0xff;
        f[10] = 7; // num_buffers is ignored on TX
        let out = tx_frame(&f).unwrap();
        assert_eq!(
            &out[..VNET_HDR_LEN],
            &[0u8; VNET_HDR_LEN],
            "header zeroed for the tap"
        );
        assert_eq!(&out[VNET_HDR_LEN..], &f[VNET_HDR_LEN..]);
        assert_eq!(tx_frame(&f[..11]), Err(NetError::Short { len: 11 }));
        f[0] = 1; // NEEDS_CSUM
        assert_eq!(tx_frame(&f), Err(NetError::Offload { flags: 1, gso: 0 }));
        f[0] = 0;
        f[1] = 1; // GSO_TCPV4
        assert_eq!(tx_frame(&f), Err(NetError::Offload { flags: 0, gso: 1 }));
        let big = vec![0u8; MAX_FRAME + 1];
        assert_eq!(
            tx_frame(&big),
            Err(NetError::TooLong { len: MAX_FRAME + 1 })
        );
    }

    #[test]
    fn rx_header_says_one_buffer() {
        let h = rx_header();
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 1);
        assert!(h[..10].iter().all(|b| *b == 0));
    }
}
