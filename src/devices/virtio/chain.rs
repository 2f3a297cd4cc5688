//! Descriptor chains, read with virtio-queue and checked before use: every
//! descriptor must lie inside guest RAM, the chain must end (no loop), its total
//! length is bounded, and device-writable descriptors must follow the readable ones.

use crate::memory::GuestMemoryMmap;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend};

/// The most bytes one chain may describe (readable plus writable).
pub const MAX_CHAIN_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "chain at head {head} does not end within {limit} descriptors (a loop or a bad next index)"
    )]
    Unterminated { head: u16, limit: u16 },
    #[error("chain at head {head}: descriptor {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange { head: u16, addr: u64, len: u32 },
    #[error("chain at head {head} describes {total} bytes, more than {MAX_CHAIN_BYTES}")]
    Oversize { head: u16, total: u64 },
    #[error("chain at head {head}: a device-readable descriptor follows a device-writable one")]
    Order { head: u16 },
    #[error("chain at head {head} is empty")]
    Empty { head: u16 },
    #[error("avail idx {idx} is more than the queue size {size} ahead of {next}")]
    AvailIndex { idx: u16, next: u16, size: u16 },
    #[error("the avail ring cannot be read")]
    AvailRing,
}

/// One checked descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: GuestAddress,
    pub len: u32,
    pub writable: bool,
}

/// A checked chain: device-readable descriptors first, then device-writable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Desc>,
    pub writable: Vec<Desc>,
}

impl Chain {
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|d| u64::from(d.len)).sum()
    }
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|d| u64::from(d.len)).sum()
    }
}

/// Checks a chain popped from a queue. `limit` is the queue size: a chain that
/// has not ended after that many descriptors loops.
pub fn check_chain(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    limit: u16,
) -> Result<Chain, ChainError> {
    let head = chain.head_index();
    let mut out = Chain {
        head,
        readable: Vec::new(),
        writable: Vec::new(),
    };
    let mut total: u64 = 0;
    let mut count: u32 = 0;
    let mut ended = false;
    for d in chain {
        count += 1;
        let desc = Desc {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        };
        let len = usize::try_from(desc.len).unwrap_or(usize::MAX);
        if desc.len > 0 && !mem.check_range(desc.addr, len) {
            return Err(ChainError::OutOfRange {
                head,
                addr: desc.addr.raw_value(),
                len: desc.len,
            });
        }
        total += u64::from(desc.len);
        if total > MAX_CHAIN_BYTES {
            return Err(ChainError::Oversize { head, total });
        }
        if desc.writable {
            out.writable.push(desc);
        } else if out.writable.is_empty() {
            out.readable.push(desc);
        } else {
            return Err(ChainError::Order { head });
        }
        ended = !d.has_next();
        if ended {
            break;
        }
    }
    if count == 0 {
        return Err(ChainError::Empty { head });
    }
    if !ended {
        return Err(ChainError::Unterminated { head, limit });
    }
    Ok(out)
}

/// Pops and checks the next available chain of `queue`, if any.
pub fn pop_chain(mem: &GuestMemoryMmap, queue: &mut Queue) -> Option<Result<Chain, ChainError>> {
    if !queue.ready() {
        return None;
    }
    let limit = queue.size();
    // Checked here so that virtio-queue never logs (unlimited) about it.
    let idx = match queue.avail_idx(mem, std::sync::atomic::Ordering::Acquire) {
        Ok(idx) => idx.0,
        Err(_) => return Some(Err(ChainError::AvailRing)),
    };
    let next = queue.next_avail();
    if idx.wrapping_sub(next) > limit {
        return Some(Err(ChainError::AvailIndex {
            idx,
            next,
            size: limit,
        }));
    }
    let chain = queue.pop_descriptor_chain(mem)?;
    Some(check_chain(mem, chain, limit))
}

/// Copies `len` bytes starting `offset` bytes into `descs` into `out`; returns how
/// many bytes were available.
pub fn gather(mem: &GuestMemoryMmap, descs: &[Desc], mut offset: u64, out: &mut [u8]) -> usize {
    use vm_memory::Bytes;
    let mut done = 0usize;
    for d in descs {
        if done == out.len() {
            break;
        }
        let len = u64::from(d.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        let avail = usize::try_from(len - offset).unwrap_or(usize::MAX);
        let n = avail.min(out.len() - done);
        let Some(addr) = d.addr.checked_add(offset) else {
            break;
        };
        if mem.read_slice(&mut out[done..done + n], addr).is_err() {
            break;
        }
        done += n;
        offset = 0;
    }
    done
}

/// Copies `data` into `descs` starting `offset` bytes in; returns how many bytes
/// were written.
pub fn scatter(mem: &GuestMemoryMmap, descs: &[Desc], mut offset: u64, data: &[u8]) -> usize {
    use vm_memory::Bytes;
    let mut done = 0usize;
    for d in descs {
        if done == data.len() {
            break;
        }
        let len = u64::from(d.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        let avail = usize::try_from(len - offset).unwrap_or(usize::MAX);
        let n = avail.min(data.len() - done);
        let Some(addr) = d.addr.checked_add(offset) else {
            break;
        };
        if mem.write_slice(&data[done..done + n], addr).is_err() {
            break;
        }
        done += n;
        offset = 0;
    }
    done
}

/// Splits `descs` at byte `at`: the descriptors (or parts) before and after it.
pub fn split_at(descs: &[Desc], at: u64) -> (Vec<Desc>, Vec<Desc>) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut pos: u64 = 0;
    for d in descs {
        let len = u64::from(d.len);
        let end = pos + len;
        if end <= at {
            before.push(*d);
        } else if pos >= at {
            after.push(*d);
        } else {
            let head = at - pos;
            // head < len <= u32::MAX, so both parts fit in u32.
            let head32 = u32::try_from(head).unwrap_or(d.len);
            before.push(Desc { len: head32, ..*d });
            after.push(Desc {
                addr: d.addr.unchecked_add(head),
                len: d.len - head32,
                writable: d.writable,
            });
        }
        pos = end;
    }
    (before, after)
}

/// Test helpers: lay out a split virtqueue in a small guest memory.
#[cfg(test)]
pub mod testing {
    use crate::memory::GuestMemoryMmap;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Address, Bytes, GuestAddress};

    pub const DESC_TABLE: u64 = 0x1000;
    pub const AVAIL_RING: u64 = 0x2000;
    pub const USED_RING: u64 = 0x3000;
    pub const DATA: u64 = 0x10000;
    pub const MEM_SIZE: usize = 0x100000;

    pub const F_NEXT: u16 = 1;
    pub const F_WRITE: u16 = 2;

    pub fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
    }

    /// A ready queue of `size` entries over the fixed ring addresses.
    pub fn queue(size: u16) -> Queue {
        let mut q = Queue::new(size).unwrap();
        q.set_size(size);
        q.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
        q.set_used_ring_address(Some(USED_RING as u32), Some(0));
        q.set_ready(true);
        q
    }

    pub fn write_desc(
        mem: &GuestMemoryMmap,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let base = GuestAddress(DESC_TABLE + 16 * u64::from(index));
        mem.write_obj(addr, base).unwrap();
        mem.write_obj(len, base.unchecked_add(8)).unwrap();
        mem.write_obj(flags, base.unchecked_add(12)).unwrap();
        mem.write_obj(next, base.unchecked_add(14)).unwrap();
    }

    /// Publishes the chain heads in `heads` (avail idx = heads.len()).
    pub fn publish(mem: &GuestMemoryMmap, heads: &[u16]) {
        for (i, h) in heads.iter().enumerate() {
            mem.write_obj(*h, GuestAddress(AVAIL_RING + 4 + 2 * i as u64))
                .unwrap();
        }
        mem.write_obj(heads.len() as u16, GuestAddress(AVAIL_RING + 2))
            .unwrap();
    }

    /// Writes a chain of (addr, len, writable) descriptors starting at `first`.
    pub fn write_chain(mem: &GuestMemoryMmap, first: u16, descs: &[(u64, u32, bool)]) {
        for (i, (addr, len, w)) in descs.iter().enumerate() {
            let idx = first + i as u16;
            let last = i + 1 == descs.len();
            let flags = if *w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            write_desc(mem, idx, *addr, *len, flags, idx + 1);
        }
    }

    /// The used ring's idx and its entry `i` (id, len).
    pub fn used(mem: &GuestMemoryMmap, i: u16) -> (u16, u32, u32) {
        let idx: u16 = mem.read_obj(GuestAddress(USED_RING + 2)).unwrap();
        let base = USED_RING + 4 + 8 * u64::from(i);
        let id: u32 = mem.read_obj(GuestAddress(base)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(base + 4)).unwrap();
        (idx, id, len)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn good_chain_is_split_by_direction() {
        let mem = memory();
        let mut q = queue(16);
        write_chain(
            &mem,
            0,
            &[
                (DATA, 16, false),
                (DATA + 16, 512, true),
                (DATA + 600, 1, true),
            ],
        );
        publish(&mem, &[0]);
        let c = pop_chain(&mem, &mut q).unwrap().unwrap();
        assert_eq!(c.head, 0);
        assert_eq!(c.readable.len(), 1);
        assert_eq!(c.writable.len(), 2);
        assert_eq!(c.writable_len(), 513);
        assert!(pop_chain(&mem, &mut q).is_none());
    }

    #[test]
    fn looping_chain_is_rejected() {
        let mem = memory();
        let mut q = queue(8);
        write_desc(&mem, 0, DATA, 16, F_NEXT, 1);
        write_desc(&mem, 1, DATA, 16, F_NEXT, 0);
        publish(&mem, &[0]);
        let e = pop_chain(&mem, &mut q).unwrap().unwrap_err();
        assert_eq!(e, ChainError::Unterminated { head: 0, limit: 8 });
    }

    #[test]
    fn next_index_past_the_table_is_rejected() {
        let mem = memory();
        let mut q = queue(8);
        write_desc(&mem, 0, DATA, 16, F_NEXT, 200);
        publish(&mem, &[0]);
        assert!(matches!(
            pop_chain(&mem, &mut q).unwrap(),
            Err(ChainError::Unterminated { .. })
        ));
    }

    #[test]
    fn address_outside_memory_is_rejected() {
        let mem = memory();
        let mut q = queue(8);
        write_chain(&mem, 0, &[(MEM_SIZE as u64 - 8, 16, false)]);
        publish(&mem, &[0]);
        assert!(matches!(
            pop_chain(&mem, &mut q).unwrap(),
            Err(ChainError::OutOfRange { len: 16, .. })
        ));
        write_chain(&mem, 1, &[(u64::MAX - 4, 16, true)]);
        publish(&mem, &[0, 1]);
        assert!(matches!(
            pop_chain(&mem, &mut q).unwrap(),
            Err(ChainError::OutOfRange { .. })
        ));
    }

    #[test]
    fn oversize_chain_is_rejected() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let mut q = queue(8);
        write_chain(&mem, 0, &[(DATA, 10 << 20, false), (DATA, 10 << 20, true)]);
        publish(&mem, &[0]);
        assert!(matches!(
            pop_chain(&mem, &mut q).unwrap(),
            Err(ChainError::Oversize { .. })
        ));
    }

    #[test]
    fn avail_index_too_far_ahead_is_rejected() {
        let mem = memory();
        let mut q = queue(8);
        mem.write_obj(9u16, GuestAddress(AVAIL_RING + 2)).unwrap();
        assert_eq!(
            pop_chain(&mem, &mut q).unwrap().unwrap_err(),
            ChainError::AvailIndex {
                idx: 9,
                next: 0,
                size: 8
            }
        );
    }

    #[test]
    fn readable_after_writable_is_rejected() {
        let mem = memory();
        let mut q = queue(8);
        write_chain(&mem, 0, &[(DATA, 16, true), (DATA + 16, 16, false)]);
        publish(&mem, &[0]);
        assert_eq!(
            pop_chain(&mem, &mut q).unwrap().unwrap_err(),
            ChainError::Order { head: 0 }
        );
    }

    #[test]
    fn gather_scatter_and_split_cross_descriptors() {
        let mem = memory();
        let descs = [
            Desc {
                addr: GuestAddress(DATA),
                len: 3,
                writable: true,
            },
            Desc {
                addr: GuestAddress(DATA + 100),
                len: 5,
                writable: true,
            },
        ];
        assert_eq!(scatter(&mem, &descs, 1, b"abcdefg"), 7);
        let mut out = [0u8; 8];
        assert_eq!(gather(&mem, &descs, 0, &mut out), 8);
        assert_eq!(&out[1..], b"abcdefg");
        let (a, b) = split_at(&descs, 4);
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].len, 1);
        assert_eq!(
            b,
            vec![Desc {
                addr: GuestAddress(DATA + 101),
                len: 4,
                writable: true
            }]
        );
        let (a, b) = split_at(&descs, 100);
        assert_eq!((a.len(), b.len()), (2, 0));
    }
}
