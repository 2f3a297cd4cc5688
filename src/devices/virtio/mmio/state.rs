//! The transport's part of a snapshot, and restoring it into a device freshly
//! built from the VM's config.
//!
//! A snapshot file is hostile input. Restoring accepts exactly the states the
//! register file can reach from a guest (so every snapshot this VMM takes
//! restores) and refuses the rest with an error naming the field and its
//! value, leaving the device as it was. It neither touches guest memory nor
//! raises an interrupt: the used rings are in the restored memory, and whether
//! the guest has an interrupt pending is in its restored interrupt controller.

use serde::{Deserialize, Serialize};
use virtio_queue::Queue;

use super::{MmioDevice, MmioError, DRIVER_STATUS_BITS};
use crate::devices::virtio::interrupt::INT_ALL;
use crate::devices::virtio::status as s;
use crate::devices::virtio::{DeviceState, VIRTIO_F_VERSION_1};

/// One queue as virtio-queue's `QueueState` has it (which is not serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueState {
    /// Checked equal to the device's.
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
    /// VIRTIO_RING_F_EVENT_IDX in use; no device offers it, so always false.
    pub event_idx: bool,
}

impl From<virtio_queue::QueueState> for QueueState {
    fn from(q: virtio_queue::QueueState) -> Self {
        Self {
            max_size: q.max_size,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx: q.event_idx_enabled,
        }
    }
}

impl From<&QueueState> for virtio_queue::QueueState {
    fn from(q: &QueueState) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

/// The virtio-mmio transport of one device, and the device's own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmioState {
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub config_generation: u32,
    /// The InterruptStatus register (not the line: that is the irqchip's).
    pub interrupt_status: u32,
    pub queues: Vec<QueueState>,
    pub device: DeviceState,
}

impl MmioDevice {
    /// The transport and device state of the paused device (off the event
    /// loop, so no request is half served).
    pub fn save_state(&self) -> MmioState {
        MmioState {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            config_generation: self.config_generation,
            interrupt_status: self.interrupt.status(),
            queues: self.queues.iter().map(|q| q.state().into()).collect(),
            device: self.dev.save(),
        }
    }

    /// Restores `st` into this device, built from the config as at boot and
    /// not yet run. Everything is checked before anything changes: on an
    /// error the device is as it was. Raises no interrupt and touches no
    /// guest memory (which must already hold the snapshot's contents: ring
    /// addresses are checked against it). Call [`Self::kick_after_restore`]
    /// once the device is on the event loop.
    pub fn restore_state(&mut self, st: &MmioState) -> Result<(), MmioError> {
        if st.device.device_type() != self.dev.device_type() {
            return Err(MmioError::DeviceState {
                device: self.name.clone(),
                source: st.device.mismatch(self.dev.device_type()),
            });
        }
        self.check_status(st)?;
        if st.interrupt_status & !INT_ALL != 0 {
            return Err(MmioError::InterruptStatus {
                device: self.name.clone(),
                status: st.interrupt_status,
            });
        }
        // The feature and queue selectors and ConfigGeneration are left as
        // they are: a driver can write any value to them.
        let queues = self.restored_queues(st)?;
        // Last fallible step; the device's restore changes nothing when it fails.
        self.dev
            .restore(&st.device)
            .map_err(|source| MmioError::DeviceState {
                device: self.name.clone(),
                source,
            })?;
        self.queues = queues;
        self.status = st.status;
        self.device_features_sel = st.device_features_sel;
        self.driver_features_sel = st.driver_features_sel;
        self.driver_features = st.driver_features;
        self.queue_sel = st.queue_sel;
        self.config_generation = st.config_generation;
        self.interrupt.restore_status(st.interrupt_status);
        Ok(())
    }

    /// Serves what the driver posted before the snapshot: for a live device
    /// (DRIVER_OK, not DEVICE_NEEDS_RESET), runs the device's post-restore
    /// work (vsock's transport reset event) and then signals every queue's
    /// eventfd once, as DRIVER_OK does, so the event loop serves each queue
    /// from where the snapshot left it. Call on the VMM thread (or before
    /// confinement) after the irqfd, the ioeventfds and the guest's interrupt
    /// controller are in place, with the device on the event loop.
    pub fn kick_after_restore(&mut self) {
        if !self.is_live() {
            return;
        }
        let (dev, mut ctx) = self.ctx();
        if let Err(e) = dev.restored(&mut ctx) {
            self.fault(&e);
            return;
        }
        for (i, evt) in self.queue_evts.iter().enumerate() {
            if let Err(e) = evt.write(1) {
                log::warn!("{}: cannot restart queue {i}: {e}", self.name);
            }
        }
    }

    fn check_status(&self, st: &MmioState) -> Result<(), MmioError> {
        let status = st.status;
        let bad = |reason: String| MmioError::Status {
            device: self.name.clone(),
            status,
            reason,
        };
        // DEVICE_NEEDS_RESET and FAILED may come with any other bits: the
        // device then serves nothing until the driver resets it.
        let unknown = status & !(DRIVER_STATUS_BITS | s::DEVICE_NEEDS_RESET);
        if unknown != 0 {
            return Err(bad(format!("bits {unknown:#x} are not defined")));
        }
        if status & s::DRIVER_OK != 0 && status & s::FEATURES_OK == 0 {
            return Err(bad("DRIVER_OK without FEATURES_OK".into()));
        }
        // The driver can only write features with DRIVER set, and FEATURES_OK
        // is refused without VERSION_1 among them.
        if status & s::FEATURES_OK != 0 && status & s::DRIVER == 0 {
            return Err(bad("FEATURES_OK without DRIVER".into()));
        }
        let features = st.driver_features;
        let bad_features = |reason: String| MmioError::DriverFeatures {
            device: self.name.clone(),
            features,
            reason,
        };
        if status & s::DRIVER == 0 && features != 0 {
            return Err(bad_features(format!(
                "set while the status {status:#x} lacks DRIVER"
            )));
        }
        if status & s::FEATURES_OK != 0 {
            let offered = self.dev.features();
            let unoffered = features & !offered;
            if unoffered != 0 {
                return Err(bad_features(format!(
                    "accepted with FEATURES_OK, but bits {unoffered:#x} are not offered (offered {offered:#x})"
                )));
            }
            if features & VIRTIO_F_VERSION_1 == 0 {
                return Err(bad_features(
                    "accepted with FEATURES_OK, but VIRTIO_F_VERSION_1 is missing".into(),
                ));
            }
        }
        Ok(())
    }

    fn restored_queues(&self, st: &MmioState) -> Result<Vec<Queue>, MmioError> {
        let max_sizes = self.dev.queue_max_sizes();
        if st.queues.len() != max_sizes.len() {
            return Err(MmioError::QueueCount {
                device: self.name.clone(),
                saved: st.queues.len(),
                expected: max_sizes.len(),
            });
        }
        st.queues
            .iter()
            .zip(max_sizes)
            .enumerate()
            .map(|(i, (q, &max))| {
                self.restored_queue(q, max, st.status)
                    .map_err(|reason| MmioError::QueueState {
                        device: self.name.clone(),
                        queue: i,
                        reason,
                    })
            })
            .collect()
    }

    /// One queue, checked as the register writes check it (size, alignment,
    /// rings in memory when ready); the error is the reason.
    fn restored_queue(&self, q: &QueueState, max: u16, status: u32) -> Result<Queue, String> {
        if q.max_size != max {
            return Err(format!(
                "max size {} differs from the device's {max}",
                q.max_size
            ));
        }
        if q.size == 0 || !q.size.is_power_of_two() || q.size > max {
            return Err(format!(
                "size {} is not a power of two in 1..={max}",
                q.size
            ));
        }
        for (what, addr, align) in [
            ("descriptor table", q.desc_table, 16),
            ("avail ring", q.avail_ring, 2),
            ("used ring", q.used_ring, 4),
        ] {
            if addr % align != 0 {
                return Err(format!("{what} {addr:#x} is not {align}-byte aligned"));
            }
        }
        if q.event_idx {
            return Err("event_idx is set, but no device offers VIRTIO_RING_F_EVENT_IDX".into());
        }
        // Chains are completed as they are popped, so the device is never
        // more than one faulty chain ahead of the used ring.
        let in_flight = q.next_avail.wrapping_sub(q.next_used);
        if in_flight > q.size {
            return Err(format!(
                "next_avail {} is more than the size {} ahead of next_used {}",
                q.next_avail, q.size, q.next_used
            ));
        }
        if q.ready && status & s::FEATURES_OK == 0 {
            return Err(format!(
                "ready while the status {status:#x} lacks FEATURES_OK"
            ));
        }
        let queue = Queue::try_from(virtio_queue::QueueState::from(q))
            .map_err(|e| format!("rejected by virtio-queue: {e}"))?;
        if q.ready && !Self::ring_valid(&queue, &self.mem) {
            return Err(format!(
                "ready, but its rings (size {}, desc {:#x}, avail {:#x}, used {:#x}) are not inside guest memory",
                q.size, q.desc_table, q.avail_ring, q.used_ring
            ));
        }
        Ok(queue)
    }
}

#[cfg(test)]
mod tests;
