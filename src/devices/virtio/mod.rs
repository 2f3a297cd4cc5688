//! Virtio devices over the virtio-mmio transport (virtio 1.x, register layout
//! version 2).
//!
//! * [`mmio`]: the transport's register file and the per-device wrapper that is
//!   both a [`crate::devices::bus::BusDevice`] (vCPU MMIO exits) and an
//!   event-manager subscriber (queue notifications arrive on ioeventfds).
//! * [`chain`]: descriptor chains read through virtio-queue and checked against
//!   guest memory before any device looks at them.
//! * [`block`], [`rng`], [`net`], [`vsock`]: the devices.
//!
//! Everything in guest memory is hostile. A malformed ring or chain (a loop, an
//! address outside guest RAM, an oversize chain, a bad queue size) puts the device
//! in DEVICE_NEEDS_RESET and raises a configuration-change interrupt; a well-formed
//! chain carrying a bad request is completed with an error status or dropped. The
//! VMM logs a rate-limited warning and keeps running.

pub mod block;
pub mod chain;
pub mod interrupt;
pub mod metrics;
pub mod mmio;
pub mod net;
pub mod registers;
pub mod rng;
pub mod tap;
pub mod vsock;
pub mod warn;

use std::os::fd::RawFd;

use crate::memory::GuestMemoryMmap;
use virtio_queue::Queue;

use self::interrupt::Interrupt;
use self::warn::WarnLimiter;
use crate::rate_limiter::RateLimiterPatch;

/// `VIRTIO_F_VERSION_1`: the only transport feature every device offers.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Device type ids (virtio 1.2, 5).
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const RNG: u32 = 4;
    pub const VSOCK: u32 = 19;
}

/// A device type's name, for messages.
pub fn device_kind(device_type: u32) -> &'static str {
    match device_type {
        device_type::NET => "virtio-net",
        device_type::BLOCK => "virtio-blk",
        device_type::RNG => "virtio-rng",
        device_type::VSOCK => "virtio-vsock",
        _ => "unknown virtio",
    }
}

/// Largest queue any device offers.
pub const QUEUE_MAX_SIZE: u16 = 256;

/// A fault that leaves the device unusable until the driver resets it.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    #[error("queue {queue}: {source}")]
    Chain {
        queue: usize,
        source: chain::ChainError,
    },
    #[error("queue {queue}: cannot update the used ring: {source}")]
    UsedRing {
        queue: usize,
        source: virtio_queue::Error,
    },
    #[error("queue {queue}: the ring is invalid (size {size}, desc {desc:#x}, avail {avail:#x}, used {used:#x})")]
    InvalidQueue {
        queue: usize,
        size: u16,
        desc: u64,
        avail: u64,
        used: u64,
    },
    #[error("{0}")]
    Device(String),
    #[error("the snapshot holds {saved} device state for a {device} device")]
    WrongState {
        device: &'static str,
        saved: &'static str,
    },
    #[error("drive {drive}: the disk has {now} sectors, the snapshot's guest saw {saved}")]
    Capacity { drive: String, saved: u64, now: u64 },
    #[error("drive {drive}: the disk is {now}, the snapshot's guest saw it {saved}")]
    ReadOnly {
        drive: String,
        saved: &'static str,
        now: &'static str,
    },
}

/// A device's own part of a snapshot (the transport's is [`mmio::MmioState`]).
/// Each device's state is defined next to its code; identities a restore may
/// override (vsock CID and socket path, net tap and MAC) and rate limiter
/// budgets are not in it: they come from the config the device was rebuilt
/// from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DeviceState {
    Block(block::BlockState),
    Net(net::NetState),
    Rng(rng::RngState),
    Vsock(vsock::VsockState),
}

impl DeviceState {
    /// The device kind, for error messages.
    pub fn kind(&self) -> &'static str {
        device_kind(self.device_type())
    }

    /// The error for a device of type `device_type` handed this state.
    pub fn mismatch(&self, device_type: u32) -> VirtioError {
        VirtioError::WrongState {
            device: device_kind(device_type),
            saved: self.kind(),
        }
    }

    /// The device type id ([`device_type`]) this state belongs to.
    pub fn device_type(&self) -> u32 {
        match self {
            Self::Block(_) => device_type::BLOCK,
            Self::Net(_) => device_type::NET,
            Self::Rng(_) => device_type::RNG,
            Self::Vsock(_) => device_type::VSOCK,
        }
    }
}

/// What a device may touch while it works: guest memory, its queues, its interrupt,
/// the negotiated features, and the fds it wants watched.
pub struct DeviceCtx<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub queues: &'a mut [Queue],
    pub interrupt: &'a Interrupt,
    pub warn: &'a mut WarnLimiter,
    pub driver_features: u64,
}

impl DeviceCtx<'_> {
    /// Pops and checks the next available chain of `queue`: `None` when the queue
    /// is not ready or has nothing available; an error names the queue.
    pub fn next_chain(&mut self, queue: usize) -> Result<Option<chain::Chain>, VirtioError> {
        self.queues
            .get_mut(queue)
            .and_then(|q| chain::pop_chain(self.mem, q))
            .transpose()
            .map_err(|source| VirtioError::Chain { queue, source })
    }

    /// Puts the last popped chain of `queue` back (a throttled request is
    /// served later, not lost).
    pub fn undo_pop(&mut self, queue: usize) {
        use virtio_queue::QueueT;
        if let Some(q) = self.queues.get_mut(queue) {
            let n = q.next_avail();
            q.set_next_avail(n.wrapping_sub(1));
        }
    }
}

/// A post-boot update from the API.
pub enum DeviceUpdate {
    /// PATCH /drives/{id}: a new backing file (path_on_host, opened by the
    /// caller with the drive's original mode) and/or a rate limiter change.
    Drive {
        disk: Option<block::Disk>,
        rate_limiter: Option<RateLimiterPatch>,
    },
    /// PATCH /network-interfaces/{id}.
    Net {
        rx: Option<RateLimiterPatch>,
        tx: Option<RateLimiterPatch>,
    },
}

impl std::fmt::Debug for DeviceUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Drive { disk, rate_limiter } => f
                .debug_struct("Drive")
                .field("disk", &disk.as_ref().map(|d| d.capacity()))
                .field("rate_limiter", rate_limiter)
                .finish(),
            Self::Net { rx, tx } => f
                .debug_struct("Net")
                .field("rx", rx)
                .field("tx", tx)
                .finish(),
        }
    }
}

/// What an update changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// The configuration space changed: the driver gets a config interrupt.
    pub config_changed: bool,
}

/// One virtio device behind the MMIO transport.
pub trait VirtioDevice: Send {
    /// Device type id ([`device_type`]).
    fn device_type(&self) -> u32;
    /// Feature bits the device offers (including [`VIRTIO_F_VERSION_1`]).
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The device-specific configuration space.
    fn config(&self) -> &[u8];
    /// A driver write into the configuration space (bounds already checked).
    fn write_config(&mut self, _offset: usize, _data: &[u8]) {}
    /// The driver set DRIVER_OK: queues are valid from now on. Runs on a vCPU
    /// thread (whose sandbox is narrower); every queue is then run once on the
    /// event loop.
    fn activate(&mut self, _ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        Ok(())
    }
    /// The driver notified queue `queue`.
    fn process_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError>;
    /// Host fds the event loop watches, edge-triggered, for the device's lifetime
    /// (a tap, or an epoll fd of the device's own for sockets that come and go).
    fn host_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// A watched host fd is ready; `ctx` is only given once the device is active.
    fn process_fd(&mut self, _ctx: Option<&mut DeviceCtx>, _fd: RawFd) -> Result<(), VirtioError> {
        Ok(())
    }
    /// The driver reset the device (status 0): drop all in-flight state. Runs on
    /// a vCPU thread: no syscall beyond read, write and close.
    fn reset(&mut self) {}
    /// A post-boot update from the API (PATCH /drives/{id}, PATCH /network-interfaces/{id}).
    fn update(&mut self, _update: DeviceUpdate) -> Result<UpdateOutcome, VirtioError> {
        Err(VirtioError::Device("this device takes no updates".into()))
    }
    /// The device's part of a snapshot of the paused VM (no request is in
    /// flight then: every device serves its queues synchronously).
    fn save(&self) -> DeviceState;
    /// Applies a saved state to this device, freshly built from the config:
    /// checks all of `s` first and changes nothing when it fails (a state of
    /// another kind is an error naming both). Touches neither guest memory
    /// nor the interrupt.
    fn restore(&mut self, s: &DeviceState) -> Result<(), VirtioError>;
    /// The transport was restored with the driver running and the device is
    /// about to serve its queues again: work owed to the driver because of the
    /// restore (vsock's transport reset) is done here.
    fn restored(&mut self, _ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        Ok(())
    }
}

/// Completes `head` on queue `queue` with `len` bytes written, and interrupts the
/// driver if it asked for it.
pub fn complete(ctx: &mut DeviceCtx, queue: usize, head: u16, len: u32) -> Result<(), VirtioError> {
    use virtio_queue::QueueT;
    let q = ctx
        .queues
        .get_mut(queue)
        .ok_or_else(|| VirtioError::Device(format!("queue {queue} does not exist")))?;
    q.add_used(ctx.mem, head, len)
        .map_err(|source| VirtioError::UsedRing { queue, source })?;
    Ok(())
}

/// Interrupts the driver for `queue` if it wants to be interrupted.
pub fn notify(ctx: &mut DeviceCtx, queue: usize) {
    use virtio_queue::QueueT;
    let wants = ctx
        .queues
        .get_mut(queue)
        .map(|q| q.needs_notification(ctx.mem).unwrap_or(true))
        .unwrap_or(false);
    if wants {
        ctx.interrupt.signal_used();
    }
}
