//! virtio-net over a tap: queue 0 receives (tap -> guest), queue 1 transmits.
//!
//! Since VERSION_1 every frame carries a 12-byte `virtio_net_hdr_v1`. No offload
//! is offered, so the device requires a header without flags or GSO on TX (else
//! the frame is dropped) and hands the tap a zeroed header; on RX it gives the
//! guest a zeroed header with `num_buffers = 1`. [`tx_frame`] and [`rx_header`]
//! are pure functions over byte slices (fuzzed).
//!
//! Sandbox: the tap fd (opened through /dev/net/tun before confinement, or
//! inherited); needs read, write.

use std::io::ErrorKind;
use std::os::fd::RawFd;

use super::chain::{gather, scatter};
use super::tap::{Tap, TapError, VNET_HDR_LEN};
use super::{complete, device_type, notify, DeviceCtx, VirtioDevice, VirtioError};
use super::{QUEUE_MAX_SIZE, VIRTIO_F_VERSION_1};
use crate::config::devices::{TapSource, ValidNet};
use crate::devices::SandboxNeeds;

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    paths: &["/dev/net/tun (only when the tap is opened by name)"],
    fds: &["tap", "queue ioeventfds", "irqfd"],
    syscalls: &[
        "read",
        "write",
        "ioctl(TUNSETIFF, TUNGETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD)",
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

pub struct Net {
    tap: Tap,
    config: [u8; 6],
    has_mac: bool,
    /// A frame read from the tap that found no RX buffer yet (header excluded).
    pending: Option<Vec<u8>>,
    buf: Vec<u8>,
}

pub fn from_config(n: &ValidNet) -> Result<Box<dyn VirtioDevice>, TapError> {
    let tap = match &n.tap {
        TapSource::Name(name) => Tap::open(name)?,
        TapSource::Fd(fd) => Tap::from_fd(*fd)?,
    };
    Ok(Box::new(Net::new(tap, n.mac)))
}

impl Net {
    pub fn new(tap: Tap, mac: Option<[u8; 6]>) -> Self {
        Self {
            tap,
            config: mac.unwrap_or_default(),
            has_mac: mac.is_some(),
            pending: None,
            buf: vec![0u8; MAX_TAP_READ],
        }
    }

    fn process_tx(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        let mut any = false;
        let mut bytes = Vec::new();
        while let Some(chain) = ctx.next_chain(TX_QUEUE)? {
            any = true;
            if !chain.writable.is_empty() {
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
                    }
                }
                Err(e) => {
                    ctx.warn
                        .warn(&format_args!("TX chain {} dropped: {e}", chain.head));
                }
            }
            complete(ctx, TX_QUEUE, chain.head, 0)?;
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
        Ok(true)
    }

    /// Moves frames from the tap to the guest until either runs out.
    fn pump_rx(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        let mut any = false;
        loop {
            let frame = match self.pending.take() {
                Some(f) => f,
                None => match self.tap.read_frame(&mut self.buf) {
                    Ok(n) if n >= VNET_HDR_LEN => self.buf[VNET_HDR_LEN..n].to_vec(),
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if e.kind() != ErrorKind::WouldBlock {
                            log::debug!("virtio-net {}: tap read failed: {e}", self.tap.name());
                        }
                        break;
                    }
                },
            };
            if !self.deliver(ctx, &frame)? {
                self.pending = Some(frame);
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
        match queue {
            TX_QUEUE => self.process_tx(ctx),
            _ => self.pump_rx(ctx),
        }
    }
    fn host_fds(&self) -> Vec<RawFd> {
        vec![self.tap.fd()]
    }
    fn process_fd(&mut self, ctx: Option<&mut DeviceCtx>, _fd: RawFd) -> Result<(), VirtioError> {
        match ctx {
            Some(ctx) => self.pump_rx(ctx),
            // Not running yet: frames wait in the tap until DRIVER_OK.
            None => Ok(()),
        }
    }
    fn reset(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
