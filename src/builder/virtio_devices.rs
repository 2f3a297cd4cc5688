//! Builds the virtio devices of a validated config: each gets a 4 KiB window in
//! the MMIO gap and an IRQ (see [`placement`]), an irqfd, and one ioeventfd per
//! queue on QueueNotify with the queue index as datamatch. The returned
//! subscribers run the devices on the event loop; the returned windows are
//! what the ACPI tables describe.

use std::sync::{Arc, Mutex};

use crate::memory::GuestMemoryMmap;
use kvm_ioctls::{IoEventAddress, VmFd};

use crate::arch::x86_64::acpi::VirtioMmioWindow;
use crate::arch::x86_64::layout::{FIRST_VIRTIO_IRQ, MMIO_GAP_START};
use crate::config::devices::VirtioConfig;
use crate::devices::bus::{Bus, BusError};
use crate::devices::virtio::block::{Block, Disk};
use crate::devices::virtio::metrics;
use crate::devices::virtio::mmio::{MmioDevice, MmioError};
use crate::devices::virtio::registers::QUEUE_NOTIFY;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::VirtioDevice;
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};
use crate::vm::Subscriber;

/// Size of each device's MMIO window.
pub const MMIO_WINDOW: u64 = 0x1000;
/// The first device's window, at the start of the MMIO gap.
pub const MMIO_BASE: u64 = MMIO_GAP_START;

/// The MMIO window base and IRQ of the `index`th virtio device (config's
/// validation keeps the count within `layout::MAX_VIRTIO_DEVICES`).
pub fn placement(index: usize) -> (u64, u32) {
    let i = index as u64;
    (MMIO_BASE + i * MMIO_WINDOW, FIRST_VIRTIO_IRQ + i as u32)
}

/// Words for the kernel command line: the root device and, with
/// `mmio_devices` (`caisson.virtio_cmdline`), one
/// `virtio_mmio.device=4K@<addr>:<irq>` per device, as placed by [`setup`].
pub fn cmdline_words(cfg: &VirtioConfig, mmio_devices: bool) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(root) = cfg.drives.iter().find(|d| d.root) {
        words.push(match &root.partuuid {
            Some(uuid) => format!("root=PARTUUID={uuid}"),
            None => "root=/dev/vda".to_string(),
        });
        words.push(if root.read_only { "ro" } else { "rw" }.to_string());
    }
    if mmio_devices {
        for i in 0..cfg.count() {
            let (addr, irq) = placement(i);
            words.push(format!("virtio_mmio.device=4K@{addr:#x}:{irq}"));
        }
    }
    words
}

#[derive(Debug, thiserror::Error)]
pub enum VirtioSetupError {
    #[error("cannot open drive {id} ({path}): {source}")]
    Drive {
        id: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{device}: {what} failed: {source}")]
    Kvm {
        device: String,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Mmio(#[from] MmioError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{device}: {reason}")]
    Device { device: String, reason: String },
}

/// A device, the name its log lines carry, and its API id (drive_id, iface_id).
type Named = (String, Box<dyn VirtioDevice>, Option<String>);

/// A limiter for `cfg`; its timerfd is created now, before confinement, so a
/// later PATCH can add buckets.
fn limiter(name: &str, cfg: &Option<RateLimiterConfig>) -> Result<RateLimiter, VirtioSetupError> {
    RateLimiter::new(&cfg.unwrap_or_default()).map_err(|e| VirtioSetupError::Device {
        device: name.to_string(),
        reason: e.to_string(),
    })
}

/// The devices of `cfg`, in placement order.
fn devices(cfg: &VirtioConfig) -> Result<Vec<Named>, VirtioSetupError> {
    let mut out: Vec<Named> = Vec::new();
    for d in &cfg.drives {
        let err = |source| VirtioSetupError::Drive {
            id: d.id.clone(),
            path: d.path.clone(),
            source,
        };
        let file = crate::backing_file::open(&d.path, !d.read_only).map_err(err)?;
        let disk = Disk::new(file, d.read_only, &d.id).map_err(err)?;
        let name = format!("virtio-blk {}", d.id);
        let rl = limiter(&name, &d.rate_limiter)?;
        let dev = Block::with_limiter(disk, rl, metrics::block(&d.id));
        out.push((name, Box::new(dev), Some(d.id.clone())));
    }
    for n in &cfg.nets {
        out.push((
            format!("virtio-net {}", n.id),
            crate::devices::virtio::net::from_config(n).map_err(|e| VirtioSetupError::Device {
                device: format!("virtio-net {}", n.id),
                reason: e.to_string(),
            })?,
            Some(n.id.clone()),
        ));
    }
    if let Some(v) = &cfg.vsock {
        out.push((
            "virtio-vsock".into(),
            crate::devices::virtio::vsock::from_config(v).map_err(|e| {
                VirtioSetupError::Device {
                    device: "virtio-vsock".into(),
                    reason: e.to_string(),
                }
            })?,
            None,
        ));
    }
    if let Some(e) = &cfg.entropy {
        let rl = limiter("virtio-rng", &e.rate_limiter)?;
        let dev = Rng::with_limiter(rl, metrics::entropy());
        out.push(("virtio-rng".into(), Box::new(dev), None));
    }
    Ok(out)
}

/// The placed devices: what runs them, and where they are.
pub struct Placed {
    pub subscribers: Vec<Subscriber>,
    pub windows: Vec<VirtioMmioWindow>,
    /// Every device: drives by drive_id and interfaces by iface_id (for
    /// PATCH, [`MmioDevice::update`]), vsock and rng by their names (for
    /// snapshots), in placement order.
    pub by_id: Vec<(String, Arc<Mutex<MmioDevice>>)>,
}

/// Creates the devices, puts them on `mmio` and wires their eventfds into KVM.
pub fn setup(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    cfg: &VirtioConfig,
    mmio: &mut Bus,
) -> Result<Placed, VirtioSetupError> {
    let mut subscribers: Vec<Subscriber> = Vec::new();
    let mut windows = Vec::new();
    let mut by_id = Vec::new();
    for (index, (name, dev, id)) in devices(cfg)?.into_iter().enumerate() {
        let (addr, irq) = placement(index);
        let dev = MmioDevice::new(name.clone(), dev, mem.clone())?;
        let kvm = |what, r: Result<(), kvm_ioctls::Error>| {
            r.map_err(|source| VirtioSetupError::Kvm {
                device: name.clone(),
                what,
                source,
            })
        };
        kvm("KVM_IRQFD", vm.register_irqfd(dev.irqfd(), irq))?;
        for (q, evt) in dev.queue_eventfds().iter().enumerate() {
            let notify = IoEventAddress::Mmio(addr + QUEUE_NOTIFY);
            kvm("KVM_IOEVENTFD", vm.register_ioevent(evt, &notify, q as u32))?;
        }
        log::info!("{name}: MMIO {addr:#x}, IRQ {irq}");
        let dev = Arc::new(Mutex::new(dev));
        mmio.insert(addr, MMIO_WINDOW, dev.clone())?;
        by_id.push((id.unwrap_or_else(|| name.clone()), dev.clone()));
        subscribers.push(dev);
        // irqfds pulse the line: the guest must see it edge-triggered.
        windows.push(VirtioMmioWindow {
            base: addr,
            size: MMIO_WINDOW,
            irq,
        });
    }
    Ok(Placed {
        subscribers,
        windows,
        by_id,
    })
}
