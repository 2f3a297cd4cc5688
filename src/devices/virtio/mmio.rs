//! The virtio-mmio transport: the register file a vCPU reaches through MMIO
//! exits, and the event-manager subscriber that runs the device when the driver
//! notifies a queue (an ioeventfd per queue, datamatch = queue index) or a host
//! fd of the device is ready.
//!
//! Nothing here needs KVM: the builder registers [`MmioDevice::queue_eventfds`] as
//! ioeventfds and [`MmioDevice::irqfd`] as an irqfd; tests drive the register file
//! and the eventfds directly.

use std::os::fd::{AsRawFd, RawFd};

use crate::memory::GuestMemoryMmap;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::interrupt::Interrupt;
use super::registers as r;
use super::status as s;
use super::warn::WarnLimiter;
use super::{DeviceCtx, DeviceUpdate, VirtioDevice, VirtioError, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;
use crate::devices::{FdKind, FdNeed, FdOrigin, SandboxNeeds, Syscall, VCPU, VMM};

mod state;
pub use state::{MmioState, QueueState};

/// The transport itself: eventfds only (the builder registers them with KVM
/// before confinement); reading and writing them.
pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "virtio-mmio",
    paths: &[],
    fds: &[
        FdNeed::new(
            FdKind::EventFd,
            FdOrigin::Created,
            "one ioeventfd per queue",
        ),
        FdNeed::new(FdKind::EventFd, FdOrigin::Created, "irqfd"),
    ],
    syscalls: &[
        Syscall::new(
            "write",
            VCPU,
            "a QueueNotify no ioeventfd matched goes to the queue's eventfd",
        ),
        Syscall::new("read", VMM, "drain a queue's ioeventfd"),
        Syscall::new(
            "write",
            VMM,
            "raise the device's interrupt through the irqfd; start a restored device's queues",
        ),
        Syscall::new(
            "epoll_ctl",
            VMM,
            "watch the queue eventfds once the driver is ready",
        ),
    ],
};

#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    #[error("cannot create an eventfd for {what} of {device}: {source}")]
    EventFd {
        device: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{device}: queue max size {size} is not a power of two in 1..=32768")]
    QueueSize { device: String, size: u16 },
    #[error("{device}: the snapshot has {saved} queues, the device has {expected}")]
    QueueCount {
        device: String,
        saved: usize,
        expected: usize,
    },
    #[error("{device}: snapshot queue {queue}: {reason}")]
    QueueState {
        device: String,
        queue: usize,
        reason: String,
    },
    #[error("{device}: snapshot status {status:#x}: {reason}")]
    Status {
        device: String,
        status: u32,
        reason: String,
    },
    #[error("{device}: snapshot driver features {features:#x}: {reason}")]
    DriverFeatures {
        device: String,
        features: u64,
        reason: String,
    },
    #[error("{device}: snapshot interrupt status {status:#x} has bits other than used buffer (1) and configuration change (2)")]
    InterruptStatus { device: String, status: u32 },
    #[error("{device}: snapshot device state: {source}")]
    DeviceState { device: String, source: VirtioError },
}

/// The status bits a driver may set; DEVICE_NEEDS_RESET is the device's, and
/// nothing else is defined (so a snapshot's status can be checked exactly).
const DRIVER_STATUS_BITS: u32 =
    s::ACKNOWLEDGE | s::DRIVER | s::FEATURES_OK | s::DRIVER_OK | s::FAILED;

/// Event data of the queue eventfds is the queue index; host fds use this bit.
const HOST_FD_DATA: u32 = 1 << 31;

pub struct MmioDevice {
    name: String,
    dev: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    interrupt: Interrupt,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
    warn: WarnLimiter,
}

impl MmioDevice {
    /// Wraps `dev`; `name` (e.g. `virtio-blk rootfs`) prefixes its log lines.
    pub fn new(
        name: String,
        dev: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
    ) -> Result<Self, MmioError> {
        let eventfd = |what| {
            EventFd::new(libc::EFD_NONBLOCK).map_err(|source| MmioError::EventFd {
                device: name.clone(),
                what,
                source,
            })
        };
        let mut queues = Vec::new();
        let mut queue_evts = Vec::new();
        for &size in dev.queue_max_sizes() {
            queues.push(Queue::new(size).map_err(|_| MmioError::QueueSize {
                device: name.clone(),
                size,
            })?);
            queue_evts.push(eventfd("a queue notification")?);
        }
        let interrupt = Interrupt::new(eventfd("the interrupt")?);
        Ok(Self {
            warn: WarnLimiter::new(name.clone()),
            name,
            dev,
            mem,
            queues,
            queue_evts,
            interrupt,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One eventfd per queue, to register as ioeventfds on QueueNotify with the
    /// queue index as datamatch.
    pub fn queue_eventfds(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The eventfd to register as the device's irqfd.
    pub fn irqfd(&self) -> &EventFd {
        self.interrupt.irqfd()
    }

    pub fn device_status(&self) -> u32 {
        self.status
    }

    pub fn device(&self) -> &dyn VirtioDevice {
        self.dev.as_ref()
    }

    /// Every hostile-guest warning raised so far.
    pub fn warnings(&self) -> u64 {
        self.warn.total()
    }

    /// Applies a post-boot update from the API (on the VMM thread); a changed
    /// configuration space bumps ConfigGeneration and, once the driver is
    /// running, raises the configuration-change interrupt.
    pub fn update(&mut self, u: DeviceUpdate) -> Result<(), VirtioError> {
        let out = self.dev.update(u)?;
        if out.config_changed {
            self.config_generation = self.config_generation.wrapping_add(1);
            if self.status & s::DRIVER_OK != 0 {
                self.interrupt.signal_config();
            }
        }
        Ok(())
    }

    /// The driver broke the device: DEVICE_NEEDS_RESET plus a config interrupt.
    fn fault(&mut self, what: &dyn std::fmt::Display) {
        self.warn.warn(&format_args!("{what}; device needs reset"));
        if self.status & s::DEVICE_NEEDS_RESET == 0 {
            self.status |= s::DEVICE_NEEDS_RESET;
            self.config_generation = self.config_generation.wrapping_add(1);
            self.interrupt.signal_config();
        }
    }

    /// Whether queue `q`'s rings lie in guest memory (virtio-queue's own check
    /// logs every failure, which a guest could use to flood the log).
    fn ring_valid(q: &Queue, mem: &GuestMemoryMmap) -> bool {
        use vm_memory::GuestMemoryBackend;
        let n = usize::from(q.size());
        let ok = |addr: u64, len: usize| mem.check_range(vm_memory::GuestAddress(addr), len);
        ok(q.desc_table(), 16 * n) && ok(q.avail_ring(), 6 + 2 * n) && ok(q.used_ring(), 6 + 8 * n)
    }

    fn is_live(&self) -> bool {
        self.status & s::DRIVER_OK != 0 && self.status & s::DEVICE_NEEDS_RESET == 0
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        let i = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(i)
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt.clear();
        self.dev.reset();
    }

    fn ctx(&mut self) -> (&mut dyn VirtioDevice, DeviceCtx<'_>) {
        (
            self.dev.as_mut(),
            DeviceCtx {
                mem: &self.mem,
                queues: &mut self.queues,
                interrupt: &self.interrupt,
                warn: &mut self.warn,
                driver_features: self.driver_features,
            },
        )
    }

    /// Runs the device for queue `queue` (the driver notified it).
    pub fn process_queue(&mut self, queue: usize) {
        if self.status & s::DRIVER_OK == 0 {
            self.warn.warn(&format_args!(
                "queue {queue} notified before DRIVER_OK (status {:#x}); ignored",
                self.status
            ));
            return;
        }
        if !self.is_live() || queue >= self.queues.len() {
            return;
        }
        let (dev, mut ctx) = self.ctx();
        if let Err(e) = dev.process_queue(&mut ctx, queue) {
            self.fault(&e);
        }
    }

    fn process_host_fd(&mut self, fd: RawFd) {
        let live = self.is_live();
        let (dev, mut ctx) = self.ctx();
        let r = if live {
            dev.process_fd(Some(&mut ctx), fd)
        } else {
            dev.process_fd(None, fd)
        };
        if let Err(e) = r {
            self.fault(&e);
        }
    }

    fn write_status(&mut self, new: u32) {
        if new == 0 {
            self.reset();
            return;
        }
        if self.status & s::DEVICE_NEEDS_RESET != 0 {
            self.warn.warn(&format_args!(
                "status write {new:#x} while the device needs reset; ignored"
            ));
            return;
        }
        if new & !DRIVER_STATUS_BITS != 0 {
            self.warn.warn(&format_args!(
                "status write {new:#x} has bits the driver may not set; they are dropped"
            ));
        }
        let new = new & DRIVER_STATUS_BITS;
        // The driver only ever adds bits (virtio 1.2, 3.1.1).
        if new & self.status != self.status {
            self.warn.warn(&format_args!(
                "status write {new:#x} clears bits of {:#x}; ignored",
                self.status
            ));
            return;
        }
        let added = new & !self.status;
        let mut next = new;
        if added & s::FEATURES_OK != 0 {
            let offered = self.dev.features();
            let unoffered = self.driver_features & !offered;
            if unoffered != 0 || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
                self.warn.warn(&format_args!(
                    "driver features {:#x} not acceptable (offered {offered:#x}); FEATURES_OK refused",
                    self.driver_features
                ));
                next &= !s::FEATURES_OK;
            }
        }
        if added & s::DRIVER_OK != 0 {
            if next & s::FEATURES_OK == 0 {
                self.warn
                    .warn(&format_args!("DRIVER_OK without FEATURES_OK; ignored"));
                return;
            }
            self.status = next;
            let bad = self
                .queues
                .iter()
                .enumerate()
                .find(|(_, q)| q.ready() && !Self::ring_valid(q, &self.mem));
            if let Some((i, q)) = bad {
                let e = VirtioError::InvalidQueue {
                    queue: i,
                    size: q.size(),
                    desc: q.desc_table(),
                    avail: q.avail_ring(),
                    used: q.used_ring(),
                };
                self.fault(&e);
                return;
            }
            let (dev, mut ctx) = self.ctx();
            if let Err(e) = dev.activate(&mut ctx) {
                self.fault(&e);
                return;
            }
            // The device's first pass (buffers posted before DRIVER_OK, host data
            // already waiting) runs on the event loop, not on this vCPU thread.
            for evt in &self.queue_evts {
                if let Err(e) = evt.write(1) {
                    log::warn!("{}: cannot start the queues: {e}", self.name);
                }
            }
            return;
        }
        self.status = next;
    }

    fn write_queue_reg(&mut self, offset: u64, v: u32) {
        // Queue layout may only change between FEATURES_OK and DRIVER_OK, on a
        // queue that is not ready.
        let configurable = self.status & s::FEATURES_OK != 0 && self.status & s::DRIVER_OK == 0;
        let sel = self.queue_sel;
        let Some(q) = usize::try_from(sel)
            .ok()
            .and_then(|i| self.queues.get_mut(i))
        else {
            self.warn.warn(&format_args!(
                "write {v:#x} at {offset:#x} for queue {sel}, which does not exist"
            ));
            return;
        };
        if offset == r::QUEUE_READY {
            if v == 0 {
                q.set_ready(false);
                return;
            }
            if !configurable {
                self.warn.warn(&format_args!(
                    "QueueReady for queue {sel} outside feature negotiation; ignored"
                ));
                return;
            }
            if !Self::ring_valid(q, &self.mem) {
                let e = VirtioError::InvalidQueue {
                    queue: sel as usize,
                    size: q.size(),
                    desc: q.desc_table(),
                    avail: q.avail_ring(),
                    used: q.used_ring(),
                };
                self.fault(&e);
                return;
            }
            q.set_ready(true);
            return;
        }
        if !configurable || q.ready() {
            self.warn.warn(&format_args!(
                "write {v:#x} at {offset:#x} for queue {sel} while it cannot change; ignored"
            ));
            return;
        }
        match offset {
            r::QUEUE_NUM => {
                let size = u16::try_from(v).unwrap_or(0);
                let max = q.max_size();
                if u32::from(size) != v || q.try_set_size(size).is_err() {
                    self.fault(&format_args!(
                        "queue {sel}: size {v} is not a power of two in 1..={max}"
                    ));
                }
            }
            _ => {
                let half = |old: u64, high: bool| {
                    let v = u64::from(v);
                    if high {
                        (old & 0xffff_ffff) | (v << 32)
                    } else {
                        (old & !0xffff_ffff) | v
                    }
                };
                use vm_memory::GuestAddress as A;
                let r = match offset {
                    r::QUEUE_DESC_LOW | r::QUEUE_DESC_HIGH => {
                        let a = half(q.desc_table(), offset == r::QUEUE_DESC_HIGH);
                        q.try_set_desc_table_address(A(a))
                            .map(|()| ("descriptor table", a))
                    }
                    r::QUEUE_DRIVER_LOW | r::QUEUE_DRIVER_HIGH => {
                        let a = half(q.avail_ring(), offset == r::QUEUE_DRIVER_HIGH);
                        q.try_set_avail_ring_address(A(a))
                            .map(|()| ("avail ring", a))
                    }
                    _ => {
                        let a = half(q.used_ring(), offset == r::QUEUE_DEVICE_HIGH);
                        q.try_set_used_ring_address(A(a)).map(|()| ("used ring", a))
                    }
                };
                if let Err(e) = r {
                    self.fault(&format_args!(
                        "queue {sel}: write {v:#x} at {offset:#x}: {e}"
                    ));
                }
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        let sel = |v: u64, sel: u32| match sel {
            0 => v as u32,
            1 => (v >> 32) as u32,
            _ => 0,
        };
        match offset {
            r::MAGIC_VALUE => r::MAGIC,
            r::VERSION => r::MMIO_VERSION,
            r::DEVICE_ID => self.dev.device_type(),
            r::VENDOR_ID => r::VENDOR,
            r::DEVICE_FEATURES => sel(self.dev.features(), self.device_features_sel),
            r::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            r::QUEUE_NUM => self.selected_queue().map_or(0, |q| u32::from(q.size())),
            r::QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            r::INTERRUPT_STATUS => self.interrupt.status(),
            r::STATUS => self.status,
            r::CONFIG_GENERATION => self.config_generation,
            _ => {
                self.warn.warn(&format_args!(
                    "read of write-only or unknown register {offset:#x}"
                ));
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            r::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            r::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            r::DRIVER_FEATURES => {
                if self.status & s::DRIVER == 0 || self.status & s::FEATURES_OK != 0 {
                    self.warn.warn(&format_args!(
                        "DriverFeatures write {v:#x} outside feature negotiation; ignored"
                    ));
                    return;
                }
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    other => {
                        self.warn.warn(&format_args!(
                            "DriverFeatures write with selector {other}; ignored"
                        ));
                    }
                }
            }
            r::QUEUE_SEL => self.queue_sel = v,
            r::QUEUE_NUM
            | r::QUEUE_READY
            | r::QUEUE_DESC_LOW
            | r::QUEUE_DESC_HIGH
            | r::QUEUE_DRIVER_LOW
            | r::QUEUE_DRIVER_HIGH
            | r::QUEUE_DEVICE_LOW
            | r::QUEUE_DEVICE_HIGH => self.write_queue_reg(offset, v),
            r::QUEUE_NOTIFY => {
                // Reached only when no ioeventfd matched (or in tests): hand the
                // work to the event loop like an ioeventfd would.
                if self.status & s::DRIVER_OK == 0 {
                    self.warn.warn(&format_args!(
                        "queue {v} notified before DRIVER_OK (status {:#x}); ignored",
                        self.status
                    ));
                    return;
                }
                match usize::try_from(v).ok().and_then(|i| self.queue_evts.get(i)) {
                    Some(evt) => {
                        if let Err(e) = evt.write(1) {
                            log::warn!("{}: cannot signal queue {v}: {e}", self.name);
                        }
                    }
                    None => {
                        self.warn
                            .warn(&format_args!("notify for queue {v}, which does not exist"));
                    }
                }
            }
            r::INTERRUPT_ACK => self.interrupt.ack(v),
            r::STATUS => self.write_status(v),
            _ => {
                self.warn.warn(&format_args!(
                    "write {v:#x} to read-only or unknown register {offset:#x}"
                ));
            }
        }
    }

    fn config_access(&mut self, offset: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(offset - r::CONFIG).ok()?;
        let size = self.dev.config().len();
        match start.checked_add(len) {
            Some(end) if end <= size && matches!(len, 1 | 2 | 4 | 8) => Some(start),
            _ => {
                self.warn.warn(&format_args!(
                    "config access of {len} bytes at {start:#x} outside the {size}-byte config space; ignored"
                ));
                None
            }
        }
    }
}

impl BusDevice for MmioDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= r::CONFIG {
            if let Some(start) = self.config_access(offset, data.len()) {
                let cfg = self.dev.config();
                data.copy_from_slice(&cfg[start..start + data.len()]);
            }
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            self.warn.warn(&format_args!(
                "{}-byte read at register {offset:#x}; registers take aligned 4-byte accesses",
                data.len()
            ));
            return;
        }
        let v = self.read_reg(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= r::CONFIG {
            if let Some(start) = self.config_access(offset, data.len()) {
                self.dev.write_config(start, data);
            }
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.warn.warn(&format_args!(
                "{}-byte write at register {offset:#x}; registers take aligned 4-byte accesses",
                data.len()
            ));
            return;
        };
        if offset % 4 != 0 {
            self.warn
                .warn(&format_args!("unaligned write at register {offset:#x}"));
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
    }
}

impl MutEventSubscriber for MmioDevice {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, evt) in self.queue_evts.iter().enumerate() {
            let data = u32::try_from(i).unwrap_or(u32::MAX);
            if let Err(e) = ops.add(Events::with_data(evt, data, EventSet::IN)) {
                log::error!("{}: cannot watch queue {i}: {e:?}", self.name);
            }
        }
        for fd in self.dev.host_fds() {
            let set = EventSet::IN | EventSet::EDGE_TRIGGERED;
            if let Err(e) = ops.add(Events::with_data_raw(fd, HOST_FD_DATA, set)) {
                log::error!("{}: cannot watch host fd {fd}: {e:?}", self.name);
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let data = events.data();
        if data == HOST_FD_DATA {
            self.process_host_fd(events.fd());
            return;
        }
        let q = data as usize;
        match self.queue_evts.get(q) {
            Some(evt) if evt.as_raw_fd() == events.fd() => {
                let _ = evt.read();
                self.process_queue(q);
            }
            _ => log::warn!("{}: event for unknown source {data}", self.name),
        }
    }
}

/// Test helpers: a driver that negotiates and sets up queues through the registers.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::devices::virtio::chain::testing as ct;

    pub fn rd(d: &mut MmioDevice, off: u64) -> u32 {
        let mut b = [0u8; 4];
        d.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn wr(d: &mut MmioDevice, off: u64, v: u32) {
        d.write(off, &v.to_le_bytes());
    }

    /// Negotiates `features` and sets up every queue with `size` entries, queue i's
    /// rings at the fixed test addresses plus i * 0x10000.
    /// Reset, ACKNOWLEDGE, DRIVER, `features`, FEATURES_OK (checked to be accepted).
    pub fn negotiate(d: &mut MmioDevice, features: u64) {
        wr(d, r::STATUS, 0);
        wr(d, r::STATUS, s::ACKNOWLEDGE);
        wr(d, r::STATUS, s::ACKNOWLEDGE | s::DRIVER);
        wr(d, r::DRIVER_FEATURES_SEL, 0);
        wr(d, r::DRIVER_FEATURES, features as u32);
        wr(d, r::DRIVER_FEATURES_SEL, 1);
        wr(d, r::DRIVER_FEATURES, (features >> 32) as u32);
        wr(d, r::STATUS, s::ACKNOWLEDGE | s::DRIVER | s::FEATURES_OK);
        assert_ne!(rd(d, r::STATUS) & s::FEATURES_OK, 0, "features refused");
    }

    pub fn bring_up(d: &mut MmioDevice, features: u64, size: u32) {
        negotiate(d, features);
        let n = d.queues.len();
        for i in 0..n {
            let off = i as u64 * 0x10000;
            wr(d, r::QUEUE_SEL, i as u32);
            wr(d, r::QUEUE_NUM, size);
            wr(d, r::QUEUE_DESC_LOW, (ct::DESC_TABLE + off) as u32);
            wr(d, r::QUEUE_DESC_HIGH, 0);
            wr(d, r::QUEUE_DRIVER_LOW, (ct::AVAIL_RING + off) as u32);
            wr(d, r::QUEUE_DRIVER_HIGH, 0);
            wr(d, r::QUEUE_DEVICE_LOW, (ct::USED_RING + off) as u32);
            wr(d, r::QUEUE_DEVICE_HIGH, 0);
            wr(d, r::QUEUE_READY, 1);
        }
        wr(
            d,
            r::STATUS,
            s::ACKNOWLEDGE | s::DRIVER | s::FEATURES_OK | s::DRIVER_OK,
        );
    }

    /// A copy of `mem` in new mappings, as a restored VM's memory is.
    pub fn copy_memory(mem: &GuestMemoryMmap) -> GuestMemoryMmap {
        use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};
        let ranges: Vec<_> = mem
            .iter()
            .map(|r| (r.start_addr(), r.len() as usize))
            .collect();
        let copy = GuestMemoryMmap::from_ranges(&ranges).unwrap();
        for (start, len) in ranges {
            let mut buf = vec![0u8; len];
            mem.read_slice(&mut buf, start).unwrap();
            copy.write_slice(&buf, start).unwrap();
        }
        copy
    }

    /// Whether any page of `mem` is marked dirty in its bitmap.
    pub fn any_dirty(mem: &GuestMemoryMmap) -> bool {
        use vm_memory::bitmap::Bitmap;
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        mem.iter().any(|r| {
            (0..r.len() as usize)
                .step_by(4096)
                .any(|o| r.bitmap().dirty_at(o))
        })
    }

    /// Clears every region's dirty bitmap.
    pub fn clear_dirty(mem: &GuestMemoryMmap) {
        // The region's own AtomicBitmap (not GuestMemoryRegion's slice of it).
        use vm_memory::GuestMemoryBackend;
        for r in mem.iter() {
            r.bitmap().reset();
        }
    }

    /// Delivers a host fd event the way the event loop would.
    pub fn host_fd(d: &mut MmioDevice, fd: RawFd) {
        d.process_host_fd(fd);
    }

    /// Delivers pending queue notifications the way the event loop would.
    pub fn run_notified(d: &mut MmioDevice) {
        for q in 0..d.queue_evts.len() {
            if d.queue_evts[q].read().is_ok() {
                d.process_queue(q);
            }
        }
    }
}

#[cfg(test)]
mod tests;
