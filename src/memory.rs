//! Guest RAM on vm-memory: one region below the 32-bit MMIO gap, and one above
//! 4 GiB for whatever does not fit below it.
//!
//! Every region carries a dirty bitmap (one bit per 4 KiB page, 4 KiB per
//! 128 MiB) that vm-memory sets on each VMM write into the guest (virtio
//! buffers, used rings). KVM's dirty log only sees the vCPUs' writes; a diff
//! snapshot needs both.

use vm_memory::bitmap::AtomicBitmap;
use vm_memory::GuestAddress;

/// Guest memory as the whole VMM sees it.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<AtomicBitmap>;
/// One of its regions.
pub type GuestRegionMmap = vm_memory::GuestRegionMmap<AtomicBitmap>;

use crate::arch::x86_64::layout::{FIRST_ADDR_PAST_32BITS, MMIO_GAP_START};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot map {mib} MiB of guest memory: {source}")]
    Map {
        mib: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("{0} MiB of guest memory does not fit the host address space")]
    TooBig(u64),
}

/// The RAM ranges for `bytes` of guest memory, split around the MMIO gap.
pub fn ram_ranges(bytes: u64) -> Vec<(GuestAddress, u64)> {
    if bytes <= MMIO_GAP_START {
        vec![(GuestAddress(0), bytes)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START),
            (GuestAddress(FIRST_ADDR_PAST_32BITS), bytes - MMIO_GAP_START),
        ]
    }
}

/// Maps anonymous guest memory (lazily backed: untouched pages cost nothing).
pub fn create_guest_memory(mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let bytes = mib.checked_mul(1 << 20).ok_or(MemoryError::TooBig(mib))?;
    let ranges = ram_ranges(bytes)
        .into_iter()
        .map(|(a, len)| usize::try_from(len).map(|l| (a, l)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| MemoryError::TooBig(mib))?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Map { mib, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

    #[test]
    fn splits_at_the_gap() {
        assert_eq!(ram_ranges(1 << 30).len(), 1);
        let r = ram_ranges(4 << 30);
        assert_eq!(r[1], (GuestAddress(1 << 32), (4 << 30) - MMIO_GAP_START));
        let mem = create_guest_memory(4096).expect("4 GiB, lazily mapped");
        assert_eq!(mem.num_regions(), 2);
        let total: u64 = mem.iter().map(|r| r.len()).sum();
        assert_eq!(total, 4 << 30);
    }
}
