//! Enough of the i8042 for the guest to reset the machine (0xFE to port 0x64),
//! which ends the VM. Sandbox: nothing beyond the VMM's base set.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use super::bus::BusDevice;
use super::SandboxNeeds;
use crate::exit::{ExitReason, ExitSignal};

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    paths: &[],
    fds: &[],
    syscalls: &[],
};

/// Turns the i8042 reset line into a VM exit.
#[derive(Debug)]
pub struct ResetTrigger(pub Arc<ExitSignal>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(ExitReason::GuestReset);
        Ok(())
    }
}

pub struct I8042(I8042Device<ResetTrigger>);

impl I8042 {
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        Self(I8042Device::new(ResetTrigger(exit)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.0.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            let _ = self.0.write(off, *b);
        }
    }
}
