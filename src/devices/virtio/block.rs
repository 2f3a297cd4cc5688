//! virtio-blk over a raw host file, read-only or read-write.
//!
//! Requests: IN, OUT, FLUSH (fsync) and GET_ID (the drive_id, at most 20 bytes);
//! any other type gets UNSUPP. Every request is bounded before any host I/O: the
//! data length must be whole sectors and at most [`MAX_REQUEST_BYTES`], and the
//! sector range must lie inside the file's capacity, else the request gets IOERR.
//! [`parse_request`] is a pure function of the chain and guest memory.
//!
//! Sandbox: the disk file is opened before confinement and held as an fd; needs
//! lseek, read, write, fsync.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::chain::{gather, split_at, Chain, Desc};
use super::{complete, device_type, notify, DeviceCtx, VirtioDevice, VirtioError};
use super::{QUEUE_MAX_SIZE, VIRTIO_F_VERSION_1};
use crate::devices::SandboxNeeds;

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    paths: &[],
    fds: &[
        "disk file (opened before confinement)",
        "queue ioeventfd",
        "irqfd",
    ],
    syscalls: &["lseek", "read", "write", "fsync"],
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
    pub fn new(file: File, read_only: bool, drive_id: &str) -> Result<Self, std::io::Error> {
        let size = file.metadata()?.len();
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

/// The virtio-blk device.
pub struct Block {
    disk: Disk,
    /// capacity (u64), size_max (u32), seg_max (u32).
    config: [u8; 16],
}

impl Block {
    pub fn new(disk: Disk) -> Self {
        let mut config = [0u8; 16];
        config[..8].copy_from_slice(&disk.capacity().to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..].copy_from_slice(&SEG_MAX.to_le_bytes());
        Self { config, disk }
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
        let mut any = false;
        while let Some(chain) = ctx.next_chain(queue)? {
            any = true;
            let used = match self.disk.handle(ctx.mem, &chain) {
                Ok(n) => n,
                Err(Some(e)) => {
                    ctx.warn
                        .warn(&format_args!("request {} failed: {e}", chain.head));
                    1
                }
                Err(None) => {
                    ctx.warn.warn(&format_args!(
                        "request {} has no writable status byte; dropped",
                        chain.head
                    ));
                    0
                }
            };
            complete(ctx, queue, chain.head, used)?;
        }
        if any {
            notify(ctx, queue);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::virtio::chain::testing as ct;
    use crate::devices::virtio::mmio::testing::*;
    use crate::devices::virtio::mmio::MmioDevice;
    use crate::devices::virtio::registers as r;
    use crate::devices::virtio::status as s;
    use std::io::{Read, Write};

    const HDR: u64 = ct::DATA;
    const BUF: u64 = ct::DATA + 0x1000;
    const STATUS: u64 = ct::DATA + 0x100;

    struct Rig {
        mem: GuestMemoryMmap,
        dev: MmioDevice,
        file: tempfile::NamedTempFile,
        next: u16,
    }

    fn rig(sectors: u64, read_only: bool) -> Rig {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..sectors * SECTOR_SIZE)
            .map(|i| (i / 512) as u8)
            .collect();
        file.write_all(&content).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(file.path())
            .unwrap();
        let disk = Disk::new(f, read_only, "rootfs-drive-id-longer-than-20").unwrap();
        let mem = ct::memory();
        let mut dev =
            MmioDevice::new("blk".into(), Box::new(Block::new(disk)), mem.clone()).unwrap();
        bring_up(&mut dev, VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH, 16);
        Rig {
            mem,
            dev,
            file,
            next: 0,
        }
    }

    impl Rig {
        /// Submits header + `data` descriptors + status; returns (status, used len).
        fn submit(&mut self, kind: u32, sector: u64, data: &[(u64, u32, bool)]) -> (u8, u32) {
            self.mem.write_obj(kind, GuestAddress(HDR)).unwrap();
            self.mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
            self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
            self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
            let mut descs = vec![(HDR, 16, false)];
            descs.extend_from_slice(data);
            descs.push((STATUS, 1, true));
            self.submit_raw(&descs)
        }

        fn submit_raw(&mut self, descs: &[(u64, u32, bool)]) -> (u8, u32) {
            let head = (self.next * 8) % 16;
            ct::write_chain(&self.mem, head, descs);
            let slot = self.next;
            self.mem
                .write_obj(
                    head,
                    GuestAddress(ct::AVAIL_RING + 4 + 2 * u64::from(slot % 16)),
                )
                .unwrap();
            self.next += 1;
            self.mem
                .write_obj(self.next, GuestAddress(ct::AVAIL_RING + 2))
                .unwrap();
            wr(&mut self.dev, r::QUEUE_NOTIFY, 0);
            run_notified(&mut self.dev);
            let (idx, id, len) = ct::used(&self.mem, slot % 16);
            assert_eq!(idx, self.next, "request completed");
            assert_eq!(id, u32::from(head));
            (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
        }

        fn file_bytes(&self) -> Vec<u8> {
            let mut v = Vec::new();
            std::fs::File::open(self.file.path())
                .unwrap()
                .read_to_end(&mut v)
                .unwrap();
            v
        }
    }

    #[test]
    fn capacity_in_config_space() {
        let mut r = rig(10, false);
        let mut b = [0u8; 8];
        r.dev.read(r::CONFIG, &mut b);
        assert_eq!(u64::from_le_bytes(b), 10);
        let mut b4 = [0u8; 4];
        r.dev.read(r::CONFIG + 4, &mut b4);
        assert_eq!(b4, [0; 4]);
        r.dev.read(r::CONFIG + 8, &mut b4);
        assert_eq!(u32::from_le_bytes(b4), SIZE_MAX);
        r.dev.read(r::CONFIG + 12, &mut b4);
        assert_eq!(u32::from_le_bytes(b4), SEG_MAX);
        assert!(u64::from(SIZE_MAX) * u64::from(SEG_MAX) <= MAX_REQUEST_BYTES);
        // Past the 16-byte config space: ignored.
        r.dev.read(r::CONFIG + 14, &mut b4);
        assert_eq!(b4, [0; 4]);
    }

    #[test]
    fn read_write_flush() {
        let mut r = rig(16, false);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 3, &[(BUF, 1024, true)]),
            (0, 1025)
        );
        let mut got = vec![0u8; 1024];
        r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
        assert!(got[..512].iter().all(|b| *b == 3) && got[512..].iter().all(|b| *b == 4));

        let pattern: Vec<u8> = (0..1536u32).map(|i| (i * 7) as u8).collect();
        r.mem.write_slice(&pattern, GuestAddress(BUF)).unwrap();
        // Split across two descriptors.
        assert_eq!(
            r.submit(
                VIRTIO_BLK_T_OUT,
                5,
                &[(BUF, 1024, false), (BUF + 1024, 512, false)]
            ),
            (0, 1)
        );
        assert_eq!(r.submit(VIRTIO_BLK_T_FLUSH, 0, &[]), (0, 1));
        let file = r.file_bytes();
        assert_eq!(&file[5 * 512..8 * 512], &pattern[..]);
        assert!(
            file[8 * 512..9 * 512].iter().all(|b| *b == 8),
            "neighbour untouched"
        );
        assert_eq!(file.len(), 16 * 512, "file did not grow");
    }

    #[test]
    fn get_id_returns_the_drive_id() {
        let mut r = rig(1, false);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_GET_ID, 0, &[(BUF, 20, true)]),
            (0, 21)
        );
        let mut id = [0u8; 20];
        r.mem.read_slice(&mut id, GuestAddress(BUF)).unwrap();
        assert_eq!(&id, b"rootfs-drive-id-long");
    }

    #[test]
    fn sector_of_flush_and_get_id_is_ignored() {
        // Found by fuzzing: the sector of these requests was multiplied unchecked.
        let mut r = rig(1, false);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_GET_ID, u64::MAX, &[(BUF, 20, true)]),
            (0, 21)
        );
        assert_eq!(r.submit(VIRTIO_BLK_T_FLUSH, u64::MAX, &[]), (0, 1));
    }

    #[test]
    fn unknown_type_is_unsupported() {
        let mut r = rig(1, false);
        assert_eq!(r.submit(11, 0, &[]).0, VIRTIO_BLK_S_UNSUPP);
        assert_eq!(
            r.submit(0x8000_0000, 0, &[(BUF, 512, true)]).0,
            VIRTIO_BLK_S_UNSUPP
        );
    }

    #[test]
    fn out_of_range_sectors_get_ioerr() {
        let mut r = rig(4, false);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 4, &[(BUF, 512, true)]).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 3, &[(BUF, 1024, true)]).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, u64::MAX / 256, &[(BUF, 512, false)])
                .0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, u64::MAX, &[(BUF, 512, false)]).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(r.file_bytes().len(), 4 * 512, "no write past the end");
        assert_eq!(r.submit(VIRTIO_BLK_T_IN, 3, &[(BUF, 512, true)]), (0, 513));
    }

    #[test]
    fn bad_lengths_get_ioerr() {
        let mut r = rig(64, false);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 0, &[(BUF, 100, true)]).0,
            VIRTIO_BLK_S_IOERR
        );
        // Longer than MAX_REQUEST_BYTES, in guest memory and inside the chain bound.
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
        let chain = Chain {
            head: 0,
            readable: vec![Desc {
                addr: GuestAddress(HDR),
                len: 16,
                writable: false,
            }],
            writable: vec![
                Desc {
                    addr: GuestAddress(0x100000),
                    len: (MAX_REQUEST_BYTES + 512) as u32,
                    writable: true,
                },
                Desc {
                    addr: GuestAddress(STATUS),
                    len: 1,
                    writable: true,
                },
            ],
        };
        mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
        assert!(matches!(
            parse_request(&mem, &chain, u64::MAX / 512, false),
            Err(BlockError::TooLong { .. })
        ));
    }

    #[test]
    fn wrong_direction_data_gets_ioerr() {
        let mut r = rig(4, false);
        // IN whose data buffer is device-readable: the device must not write it.
        r.mem.write_slice(&[0x55; 512], GuestAddress(BUF)).unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 0, &[(BUF, 512, false)]).0,
            VIRTIO_BLK_S_IOERR
        );
        let mut got = [0u8; 512];
        r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
        assert_eq!(got, [0x55; 512]);
        // OUT whose data is device-writable.
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, 0, &[(BUF, 512, true)]).0,
            VIRTIO_BLK_S_IOERR
        );
        assert!(r.file_bytes()[..512].iter().all(|b| *b == 0));
    }

    #[test]
    fn short_header_gets_ioerr() {
        let mut r = rig(4, false);
        r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        assert_eq!(
            r.submit_raw(&[(HDR, 8, false), (STATUS, 1, true)]).0,
            VIRTIO_BLK_S_IOERR
        );
    }

    #[test]
    fn no_status_byte_is_dropped() {
        let mut r = rig(4, false);
        r.mem
            .write_obj(VIRTIO_BLK_T_OUT, GuestAddress(HDR))
            .unwrap();
        let (_, len) = r.submit_raw(&[(HDR, 16, false), (BUF, 512, false)]);
        assert_eq!(len, 0);
        assert!(
            r.file_bytes()[..512].iter().all(|b| *b == 0),
            "nothing written"
        );
        assert_eq!(rd(&mut r.dev, r::STATUS), 0xf);
    }

    #[test]
    fn read_only_drive_refuses_writes() {
        let mut r = rig(4, true);
        let mut f = [0u8; 4];
        wr(&mut r.dev, r::DEVICE_FEATURES_SEL, 0);
        r.dev.read(r::DEVICE_FEATURES, &mut f);
        assert_ne!(
            u32::from_le_bytes(f) & (1 << 5),
            0,
            "VIRTIO_BLK_F_RO offered"
        );
        r.mem.write_slice(&[9; 512], GuestAddress(BUF)).unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, 0, &[(BUF, 512, false)]).0,
            VIRTIO_BLK_S_IOERR
        );
        assert!(r.file_bytes()[..512].iter().all(|b| *b == 0));
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 1, &[(BUF, 512, true)]).0,
            VIRTIO_BLK_S_OK
        );
        assert_eq!(r.submit(VIRTIO_BLK_T_FLUSH, 0, &[]).0, VIRTIO_BLK_S_OK);
    }

    #[test]
    fn descriptor_outside_memory_needs_reset() {
        let mut r = rig(4, false);
        r.mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
        ct::write_chain(
            &r.mem,
            0,
            &[
                (HDR, 16, false),
                (0xdead_0000, 512, true),
                (STATUS, 1, true),
            ],
        );
        ct::publish(&r.mem, &[0]);
        wr(&mut r.dev, r::QUEUE_NOTIFY, 0);
        run_notified(&mut r.dev);
        assert_ne!(rd(&mut r.dev, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
        assert_eq!(ct::used(&r.mem, 0).0, 0);
    }
}
