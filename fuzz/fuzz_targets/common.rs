//! Shared by the targets: a small guest memory, a memfd-backed disk, and the
//! fixed ring layout the seeds use.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::FromRawFd;

use caisson::devices::virtio::block::Disk;
use vm_memory::{Bytes, GuestAddress};
use caisson::memory::GuestMemoryMmap;

pub const MEM_SIZE: usize = 0x10000;
pub const DESC: u64 = 0x0;
pub const AVAIL: u64 = 0x100;
pub const USED: u64 = 0x200;
pub const QUEUE_SIZE: u16 = 16;
pub const DISK_SECTORS: u64 = 64;

/// Guest memory whose first bytes are `image`.
pub fn memory(image: &[u8]) -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let n = image.len().min(MEM_SIZE);
    mem.write_slice(&image[..n], GuestAddress(0)).unwrap();
    mem
}

/// A 64-sector disk in a memfd.
pub fn disk(read_only: bool) -> Disk {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned at once.
    let fd = unsafe { libc::memfd_create(c"fuzz-disk".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(DISK_SECTORS * 512).unwrap();
    Disk::new(file, read_only, "fuzz-drive").unwrap()
}
