//! The 8250 UART at 0x3f8 (vm-superio), raising IRQ 4 through an irqfd.
//!
//! Sandbox: writes to its output (stdout or a file opened before confinement),
//! reads stdin when the output is stdout.

use std::io::Write;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::SandboxNeeds;

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    paths: &[],
    fds: &["serial output (stdout or file)", "stdin", "irqfd"],
    syscalls: &["write", "read"],
};

/// An eventfd that raises an interrupt when written (registered as an irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

pub type SerialOut = Box<dyn Write + Send>;

pub struct SerialDevice {
    serial: Serial<EventFdTrigger, vm_superio::serial::NoEvents, SerialOut>,
    write_errors: u64,
}

impl SerialDevice {
    pub fn new(irq: EventFd, out: SerialOut) -> Self {
        Self {
            serial: Serial::new(EventFdTrigger(irq), out),
            write_errors: 0,
        }
    }

    /// Feeds host input to the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.serial.fifo_capacity().min(bytes.len());
        match self.serial.enqueue_raw_bytes(&bytes[..room]) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: cannot queue input: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.serial.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.serial.write(off, *b) {
                // A closed output must not stop the guest; say so once.
                self.write_errors += 1;
                if self.write_errors == 1 {
                    log::warn!("serial: output failed, further errors are not logged: {e:?}");
                }
            }
        }
    }
}
