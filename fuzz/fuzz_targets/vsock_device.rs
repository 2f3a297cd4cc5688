//! The whole vsock device behind the MMIO transport: the input is a guest
//! memory image whose TX queue (descriptors at 0x0, avail ring at 0x100) holds
//! guest packets; the device answers into 16 RX buffers the harness posts.
#![no_main]

mod common;

use std::sync::OnceLock;

use caisson::devices::bus::BusDevice;
use caisson::devices::virtio::mmio::MmioDevice;
use caisson::devices::virtio::vsock::Vsock;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};
use caisson::memory::GuestMemoryMmap;

const RX: u64 = 0x8000;
const EVQ: u64 = 0xa000;
const RX_BUFS: u64 = 0x10000;
const MEM: usize = 0x30000;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("caisson-fuzz-vsock-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn wr(d: &mut MmioDevice, off: u64, v: u32) {
    d.write(off, &v.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let n = data.len().min(0x2000);
    mem.write_slice(&data[..n], GuestAddress(0)).unwrap();
    // 16 RX buffers of 4 KiB, published.
    for i in 0..16u64 {
        let d = RX + 16 * i;
        mem.write_obj(RX_BUFS + i * 0x1000, GuestAddress(d))
            .unwrap();
        mem.write_obj(0x1000u32, GuestAddress(d + 8)).unwrap();
        mem.write_obj(2u16, GuestAddress(d + 12)).unwrap();
        mem.write_obj(i as u16, GuestAddress(RX + 0x100 + 4 + 2 * i))
            .unwrap();
    }
    mem.write_obj(16u16, GuestAddress(RX + 0x102)).unwrap();

    let uds = dir().join("v.sock");
    let _ = std::fs::remove_file(&uds);
    let vsock = Vsock::new(3, uds).unwrap();
    let mut d = MmioDevice::new("fuzz-vsock".into(), Box::new(vsock), mem).unwrap();
    wr(&mut d, 0x70, 1);
    wr(&mut d, 0x70, 3);
    wr(&mut d, 0x24, 1);
    wr(&mut d, 0x20, 1);
    wr(&mut d, 0x70, 0xb);
    for (q, base) in [(0u32, RX), (1, 0), (2, EVQ)] {
        wr(&mut d, 0x30, q);
        wr(&mut d, 0x38, 16);
        wr(&mut d, 0x80, base as u32);
        wr(&mut d, 0x90, (base + 0x100) as u32);
        wr(&mut d, 0xa0, (base + 0x200) as u32);
        wr(&mut d, 0x44, 1);
    }
    wr(&mut d, 0x70, 0xf);
    wr(&mut d, 0x50, 1);
    for _ in 0..2 {
        for q in 0..3 {
            if d.queue_eventfds()[q].read().is_ok() {
                d.process_queue(q);
            }
        }
    }
});
