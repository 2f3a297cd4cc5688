//! Restoring device state from a hostile snapshot. The input's first byte picks
//! the device (virtio-blk or virtio-rng behind the MMIO transport, the serial
//! port, the i8042), the next two give the length of the postcard-encoded
//! state that follows, and the rest is guest memory (for the virtio devices).
//! A refused state must leave the device as built; an accepted one must save
//! back unchanged and keep the device working.
#![no_main]

mod common;

use std::sync::Arc;

use caisson::devices::bus::BusDevice;
use caisson::devices::i8042::{I8042State, I8042};
use caisson::devices::serial::{SerialDevice, SerialState};
use caisson::devices::virtio::block::Block;
use caisson::devices::virtio::mmio::{MmioDevice, MmioState};
use caisson::devices::virtio::rng::Rng;
use caisson::exit::ExitSignal;
use libfuzzer_sys::fuzz_target;
use vmm_sys_util::eventfd::EventFd;

fn virtio(state: &[u8], image: &[u8], block: bool) {
    let Ok(st) = postcard::from_bytes::<MmioState>(state) else {
        return;
    };
    let mem = common::memory(image);
    let dev: Box<dyn caisson::devices::virtio::VirtioDevice> = if block {
        Box::new(Block::new(common::disk(false)))
    } else {
        Box::new(Rng::new())
    };
    let mut dev = MmioDevice::new("fuzz".into(), dev, mem).unwrap();
    let built = dev.save_state();
    if dev.restore_state(&st).is_err() {
        assert_eq!(
            dev.save_state(),
            built,
            "a refused state changed the device"
        );
        return;
    }
    assert_eq!(dev.save_state(), st, "an accepted state did not round-trip");
    assert!(dev.irqfd().read().is_err(), "restore raised an interrupt");
    dev.kick_after_restore();
    for q in 0..dev.queue_eventfds().len() {
        if dev.queue_eventfds()[q].read().is_ok() {
            dev.process_queue(q);
        }
    }
    for off in (0..0x100).step_by(4) {
        let mut b = [0u8; 4];
        dev.read(off, &mut b);
    }
}

fn serial(state: &[u8]) {
    let Ok(st) = postcard::from_bytes::<SerialState>(state) else {
        return;
    };
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let drained = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let mut dev = SerialDevice::new(irq, drained, Box::new(std::io::sink()));
    let built = dev.save_state();
    if dev.restore_state(&st).is_err() {
        assert_eq!(dev.save_state(), built);
        return;
    }
    assert_eq!(dev.save_state(), st);
    dev.enqueue_input(b"input");
    for off in 0..8 {
        let mut b = [0u8];
        dev.read(off, &mut b);
        dev.write(off, &[0x5a]);
    }
}

fn i8042(state: &[u8]) {
    let Ok(st) = postcard::from_bytes::<I8042State>(state) else {
        return;
    };
    let exit = Arc::new(ExitSignal::new().unwrap());
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let mut dev = I8042::new(exit, irq);
    let built = dev.save_state();
    if dev.restore_state(&st).is_err() {
        assert_eq!(dev.save_state(), built);
        return;
    }
    assert_eq!(dev.save_state(), st);
    let _ = dev.trigger_ctrl_alt_del();
    for b in [0xf4u8, 0xed, 0x07, 0xf0, 0x00] {
        dev.write(0, &[b]);
        let mut r = [0u8];
        dev.read(4, &mut r);
        dev.read(0, &mut r);
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, lo, hi, rest @ ..] = data else {
        return;
    };
    let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
    let (state, image) = rest.split_at(len);
    match kind % 4 {
        0 => virtio(state, image, true),
        1 => virtio(state, image, false),
        2 => serial(state),
        _ => i8042(state),
    }
});
