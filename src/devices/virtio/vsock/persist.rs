//! Snapshots, as Firecracker takes them: no connection survives. The new
//! process has no host socket of the old one, so on restore every connection
//! is dropped and the guest is sent a transport reset on the event queue once
//! the device is live again; its driver then resets its sockets and re-reads
//! guest_cid from the configuration space, which is how a CID given at restore
//! reaches the guest. The CID and uds_path come from the config the device is
//! rebuilt from, so the state holds nothing.

use super::*;
use crate::devices::virtio::DeviceState;

/// The vsock device's part of a snapshot: nothing (see the module's comment).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VsockState {}

/// The one event a vsock device sends (virtio 1.2, 5.10.6.6).
pub const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: u32 = 0;
/// Length of `struct virtio_vsock_event` (a le32 id).
pub const EVENT_LEN: u64 = 4;

impl Vsock {
    pub(super) fn save_state(&self) -> DeviceState {
        DeviceState::Vsock(VsockState {})
    }

    /// Drops every host connection (closing a socket also takes it off the
    /// device's epoll set) and owes the guest a transport reset.
    pub(super) fn restore_state(&mut self, s: &DeviceState) -> Result<(), VirtioError> {
        let DeviceState::Vsock(VsockState {}) = s else {
            return Err(s.mismatch(device_type::VSOCK));
        };
        self.conns.clear();
        self.by_fd.clear();
        self.pending.clear();
        self.ctrl.clear();
        self.reset_owed = true;
        Ok(())
    }

    /// Sends the owed transport reset in the driver's next event buffer. With
    /// none posted it stays owed until the driver notifies the event queue
    /// (Linux keeps buffers there from probe on, so this is rare).
    pub(super) fn send_transport_reset(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        if !self.reset_owed {
            return Ok(());
        }
        let mut any = false;
        let r = loop {
            let chain = match ctx.next_chain(EVENT_QUEUE) {
                Ok(Some(chain)) => chain,
                Ok(None) => {
                    log::warn!(
                        "virtio-vsock: the driver posted no event buffer; the transport reset waits for one"
                    );
                    break Ok(());
                }
                Err(e) => break Err(e),
            };
            any = true;
            if !chain.readable.is_empty() || chain.writable_len() < EVENT_LEN {
                ctx.warn.warn(&format_args!(
                    "event buffer {} is device-readable or shorter than {EVENT_LEN} bytes; dropped",
                    chain.head
                ));
                if let Err(e) = complete(ctx, EVENT_QUEUE, chain.head, 0) {
                    break Err(e);
                }
                continue;
            }
            let event = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.to_le_bytes();
            scatter(ctx.mem, &chain.writable, 0, &event);
            self.reset_owed = false;
            log::info!("virtio-vsock: sent the guest a transport reset after the restore");
            break complete(ctx, EVENT_QUEUE, chain.head, EVENT_LEN as u32);
        };
        if any {
            notify(ctx, EVENT_QUEUE);
        }
        r
    }
}
