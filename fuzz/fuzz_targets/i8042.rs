//! The i8042 controller and keyboard as the guest drives them: the input is a
//! sequence of 2-byte port accesses (kind and port, value). Every port and
//! byte is the guest's; nothing may panic and the buffer must stay bounded.
#![no_main]

use std::sync::Arc;

use caisson::devices::bus::BusDevice;
use caisson::devices::i8042::I8042;
use caisson::exit::ExitSignal;
use libfuzzer_sys::fuzz_target;
use vmm_sys_util::eventfd::EventFd;

fuzz_target!(|data: &[u8]| {
    let exit = Arc::new(ExitSignal::new().expect("eventfd"));
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
    let mut dev = I8042::new(exit, irq);
    for op in data.chunks_exact(2) {
        // Offsets 0..5 are the device's window (0x60..0x64); wider reads too.
        let offset = u64::from(op[0] & 0x7);
        let width = if op[0] & 0x40 != 0 { 2 } else { 1 };
        match op[0] >> 7 {
            0 => {
                let mut buf = [0u8; 2];
                dev.read(offset, &mut buf[..width]);
            }
            _ => dev.write(offset, &[op[1], 0][..width]),
        }
        if op[0] & 0x38 == 0x38 {
            let _ = dev.trigger_ctrl_alt_del();
        }
    }
});
