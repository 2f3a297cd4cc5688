//! virtio-blk over a raw host file, read-only or read-write.
//!
//! Requests: IN, OUT, FLUSH (fsync) and GET_ID (the drive_id, at most 20 bytes);
//! any other type gets UNSUPP. Every request is bounded before any host I/O: the
//! data length must be whole sectors and at most [`MAX_REQUEST_BYTES`], and the
//! sector range must lie inside the file's capacity, else the request gets IOERR.
//! [`parse_request`] is a pure function of the chain and guest memory.
//!
//! A [`RateLimiter`] charges each valid request one op and its data bytes (IN
//! and OUT); a request it refuses stays in the queue and the limiter's timerfd
//! (a host fd of the device) resumes the queue.
//!
//! Sandbox: the disk file is opened before confinement and held as an fd; needs
//! lseek, read, write, fsync.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;

use crate::memory::GuestMemoryMmap;
use vm_memory::{Address, Bytes, GuestAddress};

use super::chain::{gather, split_at, Chain, Desc};
use super::metrics::BlockDeviceMetrics;
use super::{complete, device_type, notify, DeviceCtx, VirtioDevice, VirtioError};
use super::{DeviceState, DeviceUpdate, UpdateOutcome};
use super::{QUEUE_MAX_SIZE, VIRTIO_F_VERSION_1};
use crate::devices::{
    Access, FdKind, FdNeed, FdOrigin, PathNeed, PathSource, SandboxNeeds, Syscall, VMM,
};
use crate::rate_limiter::RateLimiter;

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "virtio-blk",
    paths: &[
        PathNeed::new(PathSource::ReadOnlyDrive, Access::Read),
        PathNeed::new(PathSource::WritableDrive, Access::ReadWrite),
        PathNeed::runtime(PathSource::DriveUpdate, Access::ReadWrite),
    ],
    fds: &[
        FdNeed::new(FdKind::File, FdOrigin::Opened, "disk file"),
        FdNeed::new(FdKind::File, FdOrigin::AtRuntime, "disk file of a PATCH"),
        FdNeed::new(FdKind::TimerFd, FdOrigin::Created, "rate limiter timerfd"),
    ],
    syscalls: &[
        Syscall::new("lseek", VMM, "position the disk file before each transfer"),
        Syscall::new("read", VMM, "IN requests, and the rate limiter's timerfd"),
        Syscall::new("write", VMM, "OUT requests"),
        Syscall::new("fsync", VMM, "FLUSH requests"),
        Syscall::new(
            "timerfd_settime",
            VMM,
            "arm the rate limiter's refill timer",
        ),
        Syscall::new(
            "openat",
            VMM,
            "PATCH path_on_host: open an existing file, never create one",
        ),
        Syscall::new("statx", VMM, "PATCH path_on_host: the new file's size"),
    ],
};

pub const SECTOR_SIZE: u64 = 512;
/// Largest data length of one request.
pub const MAX_REQUEST_BYTES: u64 = 8 << 20;
/// Length of a GET_ID answer.
pub const ID_BYTES: usize = 20;

pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Largest data segment the driver may use (config `size_max`).
pub const SIZE_MAX: u32 = 64 << 10;
/// Most data segments per request (config `seg_max`): with [`SIZE_MAX`] this
/// keeps every request a driver may build under [`MAX_REQUEST_BYTES`].
pub const SEG_MAX: u32 = 126;
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot open drive {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("request header is {len} bytes, shorter than 16")]
    ShortHeader { len: u64 },
    #[error("request type {kind}: {len} data bytes in a buffer of the wrong direction")]
    Direction { kind: u32, len: u64 },
    #[error("request type {kind}: data length {len} is not a multiple of {SECTOR_SIZE}")]
    Unaligned { kind: u32, len: u64 },
    #[error("request type {kind}: data length {len} exceeds {MAX_REQUEST_BYTES}")]
    TooLong { kind: u32, len: u64 },
    #[error("sectors {sector}+{len} bytes are outside the disk of {capacity} sectors")]
    OutOfRange {
        sector: u64,
        len: u64,
        capacity: u64,
    },
    #[error("write to sector {sector} of a read-only drive")]
    ReadOnly { sector: u64 },
    #[error("request type {kind} is not supported")]
    Unsupported { kind: u32 },
    #[error("disk I/O at byte {offset} ({len} bytes) failed: {reason}")]
    Io {
        offset: u64,
        len: u64,
        reason: String,
    },
}

impl BlockError {
    /// The status byte the driver gets for this error.
    pub fn status(&self) -> u8 {
        match self {
            Self::Unsupported { .. } => VIRTIO_BLK_S_UNSUPP,
            _ => VIRTIO_BLK_S_IOERR,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    In,
    Out,
    Flush,
    GetId,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestKind,
    pub sector: u64,
    pub data: Vec<Desc>,
    pub data_len: u64,
}

/// Where the status byte goes (the last byte of the last writable descriptor),
/// or None when the chain has no writable byte.
pub fn status_addr(chain: &Chain) -> Option<GuestAddress> {
    let last = chain.writable.iter().rev().find(|d| d.len > 0)?;
    last.addr.checked_add(u64::from(last.len) - 1)
}

fn total(descs: &[Desc]) -> u64 {
    descs.iter().map(|d| u64::from(d.len)).sum()
}

/// Parses and bounds-checks the request in `chain` (which has a status byte).
pub fn parse_request(
    mem: &GuestMemoryMmap,
    chain: &Chain,
    capacity: u64,
    read_only: bool,
) -> Result<Request, BlockError> {
    let mut header = [0u8; 16];
    let got = gather(mem, &chain.readable, 0, &mut header);
    if got < header.len() {
        return Err(BlockError::ShortHeader {
            len: chain.readable_len(),
        });
    }
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let mut sector_bytes = [0u8; 8];
    sector_bytes.copy_from_slice(&header[8..16]);
    let sector = u64::from_le_bytes(sector_bytes);
    let (_, readable_data) = split_at(&chain.readable, 16);
    let (writable_data, _) = split_at(&chain.writable, chain.writable_len().saturating_sub(1));
    let (rlen, wlen) = (total(&readable_data), total(&writable_data));

    let (kind_enum, data, len) = match kind {
        VIRTIO_BLK_T_IN => (RequestKind::In, writable_data, wlen),
        VIRTIO_BLK_T_OUT => (RequestKind::Out, readable_data, rlen),
        VIRTIO_BLK_T_FLUSH => (RequestKind::Flush, Vec::new(), 0),
        VIRTIO_BLK_T_GET_ID => (RequestKind::GetId, writable_data, wlen),
        other => return Err(BlockError::Unsupported { kind: other }),
    };
    // Data in the wrong direction: the device would write into a device-readable
    // buffer (IN, GET_ID) or read from a device-writable one (OUT).
    let wrong = match kind_enum {
        RequestKind::In | RequestKind::GetId => rlen,
        RequestKind::Out => wlen,
        RequestKind::Flush => 0,
    };
    if wrong != 0 {
        return Err(BlockError::Direction { kind, len: wrong });
    }
    if matches!(kind_enum, RequestKind::In | RequestKind::Out) {
        if len % SECTOR_SIZE != 0 {
            return Err(BlockError::Unaligned { kind, len });
        }
        if len > MAX_REQUEST_BYTES {
            return Err(BlockError::TooLong { kind, len });
        }
        let end = sector
            .checked_mul(SECTOR_SIZE)
            .and_then(|start| start.checked_add(len));
        if end.is_none_or(|end| end > capacity.saturating_mul(SECTOR_SIZE)) {
            return Err(BlockError::OutOfRange {
                sector,
                len,
                capacity,
            });
        }
        if read_only && kind_enum == RequestKind::Out {
            return Err(BlockError::ReadOnly { sector });
        }
    }
    Ok(Request {
        kind: kind_enum,
        sector,
        data,
        data_len: len,
    })
}

/// The host side of a drive: the file, its capacity in sectors, its mode.
pub struct Disk {
    file: File,
    capacity: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
}

impl Disk {
    /// Wraps an open file; `drive_id` is the GET_ID serial (truncated to 20 bytes).
    pub fn new(mut file: File, read_only: bool, drive_id: &str) -> Result<Self, std::io::Error> {
        use std::io::Seek;
        // The end offset is the size of a regular file and of a block device
        // alike (whose metadata length is 0).
        let size = file.seek(std::io::SeekFrom::End(0))?;
        if size % SECTOR_SIZE != 0 {
            log::warn!(
                "drive {drive_id}: size {size} is not a multiple of {SECTOR_SIZE}; the last {} bytes are not visible to the guest",
                size % SECTOR_SIZE
            );
        }
        let mut id = [0u8; ID_BYTES];
        let n = drive_id.len().min(ID_BYTES);
        id[..n].copy_from_slice(&drive_id.as_bytes()[..n]);
        Ok(Self {
            file,
            capacity: size / SECTOR_SIZE,
            read_only,
            id,
        })
    }

    /// Opens `path` (read-write unless `read_only`): at build time, and on the
    /// VMM thread for PATCH path_on_host (openat, statx).
    pub fn open(path: &Path, read_only: bool, drive_id: &str) -> Result<Self, BlockError> {
        let err = |source| BlockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = crate::backing_file::open(path, !read_only).map_err(err)?;
        Self::new(file, read_only, drive_id).map_err(err)
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn io_err(offset: u64, len: u64, e: &dyn std::fmt::Display) -> BlockError {
        BlockError::Io {
            offset,
            len,
            reason: e.to_string(),
        }
    }

    /// Runs a checked request; returns how many data bytes went to the guest.
    pub fn execute(&mut self, mem: &GuestMemoryMmap, req: &Request) -> Result<u32, BlockError> {
        // Checked against the capacity for IN and OUT; FLUSH and GET_ID ignore it.
        let mut offset = req.sector.wrapping_mul(SECTOR_SIZE);
        match req.kind {
            RequestKind::In | RequestKind::Out => {
                for d in &req.data {
                    let len = u64::from(d.len);
                    let count = d.len as usize;
                    self.file
                        .seek(SeekFrom::Start(offset))
                        .map_err(|e| Self::io_err(offset, len, &e))?;
                    if req.kind == RequestKind::In {
                        mem.read_exact_volatile_from(d.addr, &mut self.file, count)
                            .map_err(|e| Self::io_err(offset, len, &e))?;
                    } else {
                        mem.write_all_volatile_to(d.addr, &mut self.file, count)
                            .map_err(|e| Self::io_err(offset, len, &e))?;
                    }
                    offset += len;
                }
                Ok(if req.kind == RequestKind::In {
                    u32::try_from(req.data_len).unwrap_or(0)
                } else {
                    0
                })
            }
            RequestKind::Flush => {
                if !self.read_only {
                    self.file.sync_all().map_err(|e| Self::io_err(0, 0, &e))?;
                }
                Ok(0)
            }
            RequestKind::GetId => {
                let n = super::chain::scatter(mem, &req.data, 0, &self.id);
                Ok(u32::try_from(n).unwrap_or(0))
            }
        }
    }

    /// Serves one chain: parses, executes, writes the status byte. Returns the
    /// used length, or None when the chain has no room for a status (dropped).
    pub fn handle(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: &Chain,
    ) -> Result<u32, Option<BlockError>> {
        let status = status_addr(chain).ok_or(None)?;
        let (code, written, err) = match parse_request(mem, chain, self.capacity, self.read_only)
            .and_then(|req| self.execute(mem, &req))
        {
            Ok(n) => (VIRTIO_BLK_S_OK, n, None),
            Err(e) => (e.status(), 0, Some(e)),
        };
        if mem.write_obj(code, status).is_err() {
            return Err(err);
        }
        match err {
            // The request completes with an error status; the caller logs it.
            Some(e) => Err(Some(e)),
            None => Ok(written + 1),
        }
    }
}

/// What the guest saw of a drive: a restore onto a disk of another size or
/// mode would hand it a device its driver did not negotiate. Requests are
/// served synchronously on the event loop (a throttled one is put back in the
/// avail ring), so a paused drive has none in flight: what the guest posted
/// and the snapshot's rings show unserved is served once after the restore.
/// The rate limiter is rebuilt from the config with full budgets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockState {
    /// In 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
}

/// The virtio-blk device.
pub struct Block {
    disk: Disk,
    /// capacity (u64), size_max (u32), seg_max (u32).
    config: [u8; 16],
    limiter: RateLimiter,
    metrics: Arc<BlockDeviceMetrics>,
}

impl Block {
    /// An unlimited drive whose metrics belong to no group (fuzzers, tests).
    pub fn new(disk: Disk) -> Self {
        Self::with_limiter(disk, RateLimiter::unlimited(), Arc::default())
    }

    /// A drive behind `limiter`, counting into `metrics`.
    pub fn with_limiter(
        disk: Disk,
        limiter: RateLimiter,
        metrics: Arc<BlockDeviceMetrics>,
    ) -> Self {
        let mut config = [0u8; 16];
        config[..8].copy_from_slice(&disk.capacity().to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..].copy_from_slice(&SEG_MAX.to_le_bytes());
        Self {
            config,
            disk,
            limiter,
            metrics,
        }
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    fn count_done(&self, req: &Request) {
        let m = &self.metrics;
        match req.kind {
            RequestKind::In => {
                m.read_bytes.add(req.data_len);
                m.read_count.inc();
            }
            RequestKind::Out => {
                m.write_bytes.add(req.data_len);
                m.write_count.inc();
            }
            RequestKind::Flush => m.flush_count.inc(),
            RequestKind::GetId => {}
        }
    }

    /// Serves `queue` until it is empty or the rate limiter runs dry (then the
    /// request stays in the queue for the limiter's timer).
    fn run_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError> {
        let mut any = false;
        let mut popped = false;
        while let Some(chain) = ctx.next_chain(queue)? {
            popped = true;
            let Some(status) = status_addr(&chain) else {
                ctx.warn.warn(&format_args!(
                    "request {} has no writable status byte; dropped",
                    chain.head
                ));
                self.metrics.invalid_reqs_count.inc();
                complete(ctx, queue, chain.head, 0)?;
                any = true;
                continue;
            };
            let parsed = parse_request(ctx.mem, &chain, self.disk.capacity, self.disk.read_only);
            if let Ok(req) = &parsed {
                // Firecracker's costs: one op per request, the data bytes of IN and OUT.
                let bytes = match req.kind {
                    RequestKind::In | RequestKind::Out => req.data_len,
                    _ => 0,
                };
                if !self.limiter.consume_request(bytes) {
                    ctx.undo_pop(queue);
                    self.metrics.rate_limiter_throttled_events.inc();
                    break;
                }
            }
            any = true;
            let outcome = match &parsed {
                Err(e) => {
                    self.metrics.invalid_reqs_count.inc();
                    Err(e.to_string())
                }
                Ok(req) => match self.disk.execute(ctx.mem, req) {
                    Ok(n) => {
                        self.count_done(req);
                        Ok(n)
                    }
                    Err(e) => {
                        self.metrics.execute_fails.inc();
                        Err(e.to_string())
                    }
                },
            };
            let (code, written) = match &outcome {
                Ok(n) => (VIRTIO_BLK_S_OK, *n),
                Err(e) => {
                    ctx.warn
                        .warn(&format_args!("request {} failed: {e}", chain.head));
                    let code = parsed
                        .as_ref()
                        .err()
                        .map_or(VIRTIO_BLK_S_IOERR, BlockError::status);
                    (code, 0)
                }
            };
            // The status byte lies in checked guest memory; if it cannot be
            // written the chain completes empty.
            let used = if ctx.mem.write_obj(code, status).is_ok() {
                written + 1
            } else {
                0
            };
            complete(ctx, queue, chain.head, used)?;
        }
        if !popped {
            self.metrics.no_avail_buffer.inc();
        }
        if any {
            notify(ctx, queue);
        }
        Ok(())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }
    fn features(&self) -> u64 {
        let ro = if self.disk.read_only {
            VIRTIO_BLK_F_RO
        } else {
            0
        };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX | ro
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE]
    }
    fn config(&self) -> &[u8] {
        &self.config
    }

    fn process_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError> {
        self.metrics.queue_event_count.inc();
        let r = self.run_queue(ctx, queue);
        if r.is_err() {
            self.metrics.event_fails.inc();
        }
        r
    }

    fn host_fds(&self) -> Vec<RawFd> {
        self.limiter.timer_fd().into_iter().collect()
    }

    fn process_fd(&mut self, ctx: Option<&mut DeviceCtx>, _fd: RawFd) -> Result<(), VirtioError> {
        // The only host fd is the limiter's timer.
        if !self.limiter.event_handler() {
            return Ok(());
        }
        self.metrics.rate_limiter_event_count.inc();
        match ctx {
            Some(ctx) => {
                let r = self.run_queue(ctx, 0);
                if r.is_err() {
                    self.metrics.event_fails.inc();
                }
                r
            }
            None => Ok(()),
        }
    }

    fn save(&self) -> DeviceState {
        DeviceState::Block(BlockState {
            capacity: self.disk.capacity,
            read_only: self.disk.read_only,
        })
    }

    fn restore(&mut self, s: &DeviceState) -> Result<(), VirtioError> {
        let DeviceState::Block(s) = s else {
            return Err(s.mismatch(device_type::BLOCK));
        };
        if s.capacity != self.disk.capacity {
            return Err(VirtioError::Capacity {
                drive: self.drive_name(),
                saved: s.capacity,
                now: self.disk.capacity,
            });
        }
        if s.read_only != self.disk.read_only {
            let mode = |ro| if ro { "read-only" } else { "read-write" };
            return Err(VirtioError::ReadOnly {
                drive: self.drive_name(),
                saved: mode(s.read_only),
                now: mode(self.disk.read_only),
            });
        }
        Ok(())
    }

    fn update(&mut self, update: DeviceUpdate) -> Result<UpdateOutcome, VirtioError> {
        let r = self.apply(update);
        match &r {
            Ok(_) => self.metrics.update_count.inc(),
            Err(_) => self.metrics.update_fails.inc(),
        }
        r
    }
}

impl Block {
    /// The drive_id (as GET_ID serves it, at most 20 bytes), for messages.
    fn drive_name(&self) -> String {
        let id = &self.disk.id;
        let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
        String::from_utf8_lossy(id.get(..end).unwrap_or(id)).into_owned()
    }

    fn apply(&mut self, update: DeviceUpdate) -> Result<UpdateOutcome, VirtioError> {
        let DeviceUpdate::Drive { disk, rate_limiter } = update else {
            return Err(VirtioError::Device(
                "a drive takes drive updates only".into(),
            ));
        };
        if let Some(d) = &disk {
            // The guest negotiated VIRTIO_BLK_F_RO (or not) for the old file.
            if d.read_only != self.disk.read_only {
                return Err(VirtioError::Device(format!(
                    "the new file is {}, the drive is {}",
                    if d.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    },
                    if self.disk.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    },
                )));
            }
        }
        if let Some(p) = &rate_limiter {
            self.limiter
                .update(p)
                .map_err(|e| VirtioError::Device(e.to_string()))?;
        }
        let mut out = UpdateOutcome::default();
        if let Some(mut d) = disk {
            d.id = self.disk.id;
            self.disk = d;
            self.config[..8].copy_from_slice(&self.disk.capacity().to_le_bytes());
            out.config_changed = true;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
