//! The virtio-mmio register file, with a block device behind it: the input's
//! first 0x800 bytes are guest memory, the rest a sequence of 7-byte register
//! accesses (kind, offset u16, value u32). Notified queues are then processed.
#![no_main]

mod common;

use caisson::devices::bus::BusDevice;
use caisson::devices::virtio::block::Block;
use caisson::devices::virtio::mmio::MmioDevice;
use libfuzzer_sys::fuzz_target;

const MEM_PREFIX: usize = 0x800;

fuzz_target!(|data: &[u8]| {
    let (image, ops) = data.split_at(data.len().min(MEM_PREFIX));
    let mem = common::memory(image);
    let block = Block::new(common::disk(false));
    let mut dev = MmioDevice::new("fuzz".into(), Box::new(block), mem).unwrap();
    for op in ops.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]) % 0x1000);
        let value = [op[3], op[4], op[5], op[6]];
        let width = [1usize, 2, 4, 8][usize::from(op[0] >> 1) & 3];
        if op[0] & 1 == 0 {
            let mut buf = [0u8; 8];
            dev.read(offset, &mut buf[..width]);
        } else {
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&value);
            dev.write(offset, &buf[..width]);
        }
        for q in 0..dev.queue_eventfds().len() {
            if dev.queue_eventfds()[q].read().is_ok() {
                dev.process_queue(q);
            }
        }
    }
});
