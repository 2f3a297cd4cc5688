//! The memory file: guest RAM as a plain file, regions one after the other.
//!
//! A Full snapshot writes every page. A Diff snapshot writes only the pages
//! dirtied since the last snapshot: those KVM's dirty log reports (the
//! vCPUs' writes) and those vm-memory's bitmap holds (the VMM's writes into
//! the guest). Written to a new file, a diff is sparse (holes where nothing
//! changed); written over the previous memory file of the same size, it
//! updates that file in place, as Firecracker does. A restore maps the file
//! private: the guest's writes go to anonymous copies, so one file can back
//! many VMs.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvm_ioctls::VmFd;
use vm_memory::bitmap::{AtomicBitmap, Bitmap};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::state::{MemoryState, RegionState};
use crate::memory::{GuestMemoryMmap, GuestRegionMmap};

const PAGE: u64 = 4096;
/// vm-memory's bitmap granule: one bit per page.
const PAGE_SIZE: std::num::NonZeroUsize = std::num::NonZeroUsize::MIN.saturating_add(4095);

#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    #[error("memory file {path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("memory file {path}: cannot write guest memory at {addr:#x}: {source}")]
    Write {
        path: PathBuf,
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    #[error("cannot read KVM's dirty log of memory slot {slot}: {source}")]
    DirtyLog {
        slot: u32,
        source: kvm_ioctls::Error,
    },
    #[error("memory file {path} is {actual} bytes, but the snapshot's guest has {expected} bytes of RAM")]
    Size {
        path: PathBuf,
        actual: u64,
        expected: u64,
    },
    #[error("memory file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot map memory file {path} at guest address {addr:#x}: {reason}")]
    Map {
        path: PathBuf,
        addr: u64,
        reason: String,
    },
    #[error("the base file {base} is {base_len} bytes and the diff file {diff} is {diff_len}: they are not of one VM")]
    RebaseSize {
        base: PathBuf,
        diff: PathBuf,
        base_len: u64,
        diff_len: u64,
    },
}

/// What a dump wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub pages: u64,
    pub bytes: u64,
}

fn io<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> MemoryFileError + 'a {
    move |source| MemoryFileError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// The layout to record for `mem`.
pub fn layout(mem: &GuestMemoryMmap) -> MemoryState {
    MemoryState {
        regions: mem
            .iter()
            .map(|r| RegionState {
                guest_addr: r.start_addr().0,
                size: r.len(),
            })
            .collect(),
    }
}

/// Whether `file` is the one guest memory is mapped from (a restored VM):
/// it must then be neither truncated nor left with holes where the guest's
/// pages are zero, since unwritten pages of the mapping still read from it.
fn backs_memory(mem: &GuestMemoryMmap, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = file.metadata() else {
        return true;
    };
    mem.iter().any(|r| {
        r.file_offset()
            .and_then(|f| f.file().metadata().ok())
            .is_some_and(|b| b.dev() == m.dev() && b.ino() == m.ino())
    })
}

/// How a dump treats the file it writes.
struct Target {
    file: File,
    /// Every page of the dump is written, zero or not (the file's old data
    /// stays where nothing is written, so zeros must overwrite it).
    write_zeros: bool,
}

/// Opens (creating it) the memory file for a dump of `total` bytes. A Diff
/// over a file of the right size merges into it (Firecracker's rule), and so
/// does any dump into the file guest memory is mapped from; any other file
/// is emptied to a sparse file of that size, where zero pages stay holes.
fn open_for_dump(
    mem: &GuestMemoryMmap,
    path: &Path,
    total: u64,
    diff: bool,
) -> Result<Target, MemoryFileError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path, "open for writing"))?;
    let len = file.metadata().map_err(io(path, "stat"))?.len();
    let backing = backs_memory(mem, &file);
    if backing && len != total {
        return Err(MemoryFileError::Size {
            path: path.to_path_buf(),
            actual: len,
            expected: total,
        });
    }
    let keep = backing || (diff && len == total);
    if !keep {
        file.set_len(0).map_err(io(path, "truncate"))?;
        file.set_len(total).map_err(io(path, "set the length"))?;
    }
    Ok(Target {
        file,
        write_zeros: keep,
    })
}

/// Copies `len` bytes of guest memory at `addr` to the file at `offset`, in
/// chunks; a page that is all zeros is skipped unless `write_zeros` (in a
/// fresh sparse file it is a hole, which reads as zeros). Returns the bytes
/// written.
fn copy_range(
    mem: &GuestMemoryMmap,
    (file, write_zeros): (&File, bool),
    path: &Path,
    addr: u64,
    offset: u64,
    len: u64,
    buf: &mut [u8],
) -> Result<u64, MemoryFileError> {
    let mut written = 0;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        mem.read_slice(chunk, GuestAddress(addr + done))
            .map_err(|source| MemoryFileError::Write {
                path: path.to_path_buf(),
                addr: addr + done,
                source,
            })?;
        // Runs of pages to write, each with one pwrite.
        let pages = chunk.len() / PAGE as usize;
        let keep = |i: usize| {
            write_zeros
                || chunk[i * PAGE as usize..(i + 1) * PAGE as usize]
                    .iter()
                    .any(|&b| b != 0)
        };
        let mut i = 0;
        while i < pages {
            if !keep(i) {
                i += 1;
                continue;
            }
            let first = i;
            while i < pages && keep(i) {
                i += 1;
            }
            let (from, to) = (first * PAGE as usize, i * PAGE as usize);
            file.write_all_at(&chunk[from..to], offset + done + from as u64)
                .map_err(io(path, "write"))?;
            written += (to - from) as u64;
        }
        done += n as u64;
    }
    Ok(written)
}

/// Forgets every dirty page: KVM's log (read and cleared) and vm-memory's
/// bitmap. Called after each snapshot, so a diff is against the latest one.
fn take_dirty(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    kvm_log: bool,
) -> Result<Vec<Vec<bool>>, MemoryFileError> {
    let mut out = Vec::new();
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let pages = usize::try_from(region.len() / PAGE).unwrap_or(0);
        let mut dirty = vec![false; pages];
        if kvm_log {
            let log = vm
                .get_dirty_log(slot, usize::try_from(region.len()).unwrap_or(0))
                .map_err(|source| MemoryFileError::DirtyLog { slot, source })?;
            for (i, d) in dirty.iter_mut().enumerate() {
                let word = log.get(i / 64).copied().unwrap_or(0);
                *d = word & (1 << (i % 64)) != 0;
            }
        }
        let mapping = region.get_mmap();
        let bitmap: &AtomicBitmap = mapping.bitmap();
        for (i, d) in dirty.iter_mut().enumerate() {
            *d |= bitmap.dirty_at(i * PAGE as usize);
        }
        bitmap.reset();
        out.push(dirty);
    }
    Ok(out)
}

/// Writes guest memory to `path`: all of it, or (`diff`) only what was
/// dirtied since the previous snapshot. `kvm_log` says whether the memory
/// slots log dirty pages (`track_dirty_pages`).
pub fn dump(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    path: &Path,
    diff: bool,
    kvm_log: bool,
) -> Result<DumpStats, MemoryFileError> {
    let total = layout(mem).total();
    let target = open_for_dump(mem, path, total, diff)?;
    // Read (and clear) the dirty state first: a Full dump resets it too.
    let dirty = take_dirty(vm, mem, kvm_log)?;
    let mut stats = DumpStats::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    for (region, dirty) in mem.iter().zip(&dirty) {
        let start = region.start_addr().0;
        if !diff {
            let to = (&target.file, target.write_zeros);
            stats.bytes += copy_range(mem, to, path, start, offset, region.len(), &mut buf)?;
        } else {
            // Runs of dirty pages; a dirtied page is written even if zero.
            let to = (&target.file, true);
            let mut i = 0usize;
            while i < dirty.len() {
                if !dirty[i] {
                    i += 1;
                    continue;
                }
                let run_start = i;
                while i < dirty.len() && dirty[i] {
                    i += 1;
                }
                let at = run_start as u64 * PAGE;
                let len = (i - run_start) as u64 * PAGE;
                stats.bytes += copy_range(mem, to, path, start + at, offset + at, len, &mut buf)?;
            }
        }
        offset += region.len();
    }
    stats.pages = stats.bytes / PAGE;
    target.file.sync_all().map_err(io(path, "sync"))?;
    Ok(stats)
}

/// Maps the memory file `path` private (copy on write) as guest memory laid
/// out as `layout`. The file is opened read-only: the guest never writes it.
pub fn map_private(path: &Path, layout: &MemoryState) -> Result<GuestMemoryMmap, MemoryFileError> {
    let file = File::open(path).map_err(io(path, "open"))?;
    let meta = file.metadata().map_err(io(path, "stat"))?;
    if !meta.is_file() {
        return Err(MemoryFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let expected = layout.total();
    if meta.len() != expected {
        return Err(MemoryFileError::Size {
            path: path.to_path_buf(),
            actual: meta.len(),
            expected,
        });
    }
    let file = Arc::new(file);
    let mut regions = Vec::with_capacity(layout.regions.len());
    let mut offset = 0u64;
    for r in &layout.regions {
        let map_err = |reason: String| MemoryFileError::Map {
            path: path.to_path_buf(),
            addr: r.guest_addr,
            reason,
        };
        let size = usize::try_from(r.size).map_err(|_| map_err("too large".into()))?;
        let mapping = MmapRegionBuilder::new_with_bitmap(size, AtomicBitmap::new(size, PAGE_SIZE))
            .with_file_offset(FileOffset::from_arc(file.clone(), offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| map_err(e.to_string()))?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(r.guest_addr))
            .ok_or_else(|| map_err("the region wraps the address space".into()))?;
        regions.push(region);
        offset += r.size;
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| MemoryFileError::Map {
        path: path.to_path_buf(),
        addr: 0,
        reason: e.to_string(),
    })
}

/// Writes the data of the diff memory file `diff` (its non-hole extents)
/// onto `base`, as Firecracker's rebase-snap does. Returns the bytes copied.
pub fn rebase(base: &Path, diff: &Path) -> Result<u64, MemoryFileError> {
    let b = OpenOptions::new()
        .write(true)
        .open(base)
        .map_err(io(base, "open for writing"))?;
    let d = File::open(diff).map_err(io(diff, "open"))?;
    let base_len = b.metadata().map_err(io(base, "stat"))?.len();
    let diff_len = d.metadata().map_err(io(diff, "stat"))?.len();
    if base_len != diff_len {
        return Err(MemoryFileError::RebaseSize {
            base: base.to_path_buf(),
            diff: diff.to_path_buf(),
            base_len,
            diff_len,
        });
    }
    let mut copied = 0u64;
    let mut pos = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while pos < diff_len {
        let Some(start) = seek_data(&d, pos, libc::SEEK_DATA).map_err(io(diff, "find data"))?
        else {
            break;
        };
        let end = seek_data(&d, start, libc::SEEK_HOLE)
            .map_err(io(diff, "find a hole"))?
            .unwrap_or(diff_len);
        let mut at = start;
        while at < end {
            let n = usize::try_from(end - at)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            d.read_exact_at(&mut buf[..n], at)
                .map_err(io(diff, "read"))?;
            b.write_all_at(&buf[..n], at).map_err(io(base, "write"))?;
            at += n as u64;
        }
        copied += end - start;
        pos = end;
    }
    b.sync_all().map_err(io(base, "sync"))?;
    Ok(copied)
}

/// lseek with SEEK_DATA / SEEK_HOLE; None past the last data.
fn seek_data(f: &File, from: u64, whence: i32) -> std::io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    let off = i64::try_from(from).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek on an fd this function borrows for the call; it touches no
    // memory.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(r as u64))
}

/// The data extents of a file (for tests and `snapshot rebase`'s report).
pub fn data_bytes(path: &Path) -> std::io::Result<u64> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut pos = 0;
    let mut total = 0;
    while pos < len {
        let Some(start) = seek_data(&f, pos, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek_data(&f, start, libc::SEEK_HOLE)?.unwrap_or(len);
        total += end - start;
        pos = end;
    }
    Ok(total)
}
