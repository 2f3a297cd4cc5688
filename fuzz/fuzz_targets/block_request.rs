//! The block request path: the input is a guest memory image holding a split
//! virtqueue (descriptors at 0x0, avail ring at 0x100, 16 entries); every
//! available chain is checked, parsed and executed against a 64-sector disk.
#![no_main]

mod common;

use caisson::devices::virtio::block::{parse_request, status_addr, RequestKind};
use caisson::devices::virtio::chain::pop_chain;
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};

fuzz_target!(|data: &[u8]| {
    let mem = common::memory(data);
    let mut disk = common::disk(data.get(0x1ff).is_some_and(|b| b & 1 == 1));
    let mut q = Queue::new(common::QUEUE_SIZE).unwrap();
    q.set_size(common::QUEUE_SIZE);
    q.set_desc_table_address(Some(common::DESC as u32), Some(0));
    q.set_avail_ring_address(Some(common::AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(common::USED as u32), Some(0));
    q.set_ready(true);
    for _ in 0..common::QUEUE_SIZE {
        let Some(chain) = pop_chain(&mem, &mut q) else {
            break;
        };
        let Ok(chain) = chain else {
            break;
        };
        if status_addr(&chain).is_some() {
            if let Ok(req) = parse_request(&mem, &chain, disk.capacity(), false) {
                // Checked reads and writes never reach past the disk (FLUSH and
                // GET_ID ignore the sector).
                if matches!(req.kind, RequestKind::In | RequestKind::Out) {
                    let end = req
                        .sector
                        .checked_mul(512)
                        .and_then(|s| s.checked_add(req.data_len));
                    assert!(end.is_some_and(|e| e <= disk.capacity() * 512));
                    assert_eq!(req.data_len % 512, 0);
                }
            }
        }
        let _ = disk.handle(&mem, &chain);
        let _ = q.add_used(&mem, chain.head, 0);
    }
});
