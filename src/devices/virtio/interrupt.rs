//! The virtio-mmio interrupt: an InterruptStatus register shared with the
//! transport, and an eventfd registered as an irqfd for the device's IRQ line.

use std::sync::atomic::{AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

/// InterruptStatus bit: a used buffer was added.
pub const INT_VRING: u32 = 1;
/// InterruptStatus bit: the configuration (or the status) changed.
pub const INT_CONFIG: u32 = 2;
/// Every bit the register can hold.
pub const INT_ALL: u32 = INT_VRING | INT_CONFIG;

#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    /// `irqfd` is registered with KVM by the builder; tests read it directly.
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            irqfd,
        }
    }

    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.irqfd.write(1) {
            log::warn!("virtio: cannot raise the interrupt (bit {bit}): {e}");
        }
    }

    /// Used buffers are available.
    pub fn signal_used(&self) {
        self.raise(INT_VRING);
    }

    /// The configuration space or the device status changed.
    pub fn signal_config(&self) {
        self.raise(INT_CONFIG);
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Sets the register from a snapshot without raising the line: whether
    /// the guest still has the interrupt pending is in its interrupt
    /// controller's saved state, not here.
    pub fn restore_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}
