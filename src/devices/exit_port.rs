//! The debug exit port (0xf4): a test guest writes one status byte to end the VM.
//! Status 0 makes `caisson` exit 0; any other value makes it exit 65.

use std::sync::Arc;

use super::bus::BusDevice;
use super::{FdKind, FdNeed, FdOrigin, SandboxNeeds, Syscall, VCPU};
use crate::exit::{ExitReason, ExitSignal};

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "exit port",
    paths: &[],
    fds: &[FdNeed::new(
        FdKind::EventFd,
        FdOrigin::Created,
        "the exit eventfd",
    )],
    syscalls: &[Syscall::new(
        "write",
        VCPU,
        "signal the VM's end on the exit eventfd",
    )],
};

pub struct ExitPort(pub Arc<ExitSignal>);

impl BusDevice for ExitPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(status) = data.first() {
            self.0.request(ExitReason::ExitPort(*status));
        }
    }
}
