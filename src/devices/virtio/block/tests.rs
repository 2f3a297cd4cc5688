//! Unit tests of virtio-blk through the MMIO transport.

use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::virtio::chain::testing as ct;
use crate::devices::virtio::mmio::testing::*;
use crate::devices::virtio::mmio::MmioDevice;
use crate::devices::virtio::registers as r;
use crate::devices::virtio::status as s;
use crate::devices::virtio::DeviceUpdate;
use crate::rate_limiter::{RateLimiterConfig, RateLimiterPatch, TokenBucketConfig};
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
    rig_with(sectors, read_only, RateLimiter::unlimited(), Arc::default())
}

fn disk_file(sectors: u64, fill: u8) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&vec![fill; (sectors * SECTOR_SIZE) as usize])
        .unwrap();
    file
}

fn rig_with(
    sectors: u64,
    read_only: bool,
    limiter: RateLimiter,
    metrics: Arc<BlockDeviceMetrics>,
) -> Rig {
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
    let blk = Block::with_limiter(disk, limiter, metrics);
    let mut dev = MmioDevice::new("blk".into(), Box::new(blk), mem.clone()).unwrap();
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

    /// Posts an IN of one sector at `sector` and lets the device run; returns
    /// the used ring's idx afterwards.
    fn post_read(&mut self, sector: u64) -> u16 {
        self.mem
            .write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR))
            .unwrap();
        self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let head = (self.next * 8) % 16;
        ct::write_chain(
            &self.mem,
            head,
            &[(HDR, 16, false), (BUF, 512, true), (STATUS, 1, true)],
        );
        self.mem
            .write_obj(
                head,
                GuestAddress(ct::AVAIL_RING + 4 + 2 * u64::from(self.next % 16)),
            )
            .unwrap();
        self.next += 1;
        self.mem
            .write_obj(self.next, GuestAddress(ct::AVAIL_RING + 2))
            .unwrap();
        wr(&mut self.dev, r::QUEUE_NOTIFY, 0);
        run_notified(&mut self.dev);
        ct::used(&self.mem, 0).0
    }

    /// Waits (up to 5 s) for the limiter's timer, then delivers it like the
    /// event loop; returns the used ring's idx afterwards.
    fn timer_fired(&mut self) -> u16 {
        let fd = self.dev.device().host_fds()[0];
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a count of 1.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1, "timer fired");
        host_fd(&mut self.dev, fd);
        ct::used(&self.mem, 0).0
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

fn ops(size: u64, refill_time: u64) -> RateLimiterConfig {
    RateLimiterConfig {
        bandwidth: None,
        ops: Some(TokenBucketConfig {
            size,
            one_time_burst: None,
            refill_time,
        }),
    }
}

#[test]
fn throttled_request_stays_queued_until_the_timer() {
    let m: Arc<BlockDeviceMetrics> = Arc::default();
    let l = RateLimiter::new(&ops(2, 100)).unwrap();
    let mut r = rig_with(64, false, l, m.clone());
    assert_eq!(r.post_read(1), 1);
    assert_eq!(r.post_read(2), 2);
    // The third request finds the bucket empty: not served, not lost.
    assert_eq!(r.post_read(3), 2);
    assert_eq!(m.rate_limiter_throttled_events.total(), 1);
    // A notification while throttled changes nothing.
    wr(&mut r.dev, r::QUEUE_NOTIFY, 0);
    run_notified(&mut r.dev);
    assert_eq!(ct::used(&r.mem, 0).0, 2);
    // After REFILL_INTERVAL the bucket (2 ops per 100 ms) is full again.
    assert_eq!(r.timer_fired(), 3);
    assert_eq!(r.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0);
    let mut got = [0u8; 512];
    r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, [3u8; 512], "the queued request read sector 3");
    assert_eq!(m.rate_limiter_event_count.total(), 1);
    assert_eq!((m.read_count.total(), m.read_bytes.total()), (3, 1536));
}

#[test]
fn bandwidth_counts_data_bytes() {
    // 1024 bytes per 100 s: two 512-byte reads, then throttled.
    let l = RateLimiter::new(&RateLimiterConfig {
        bandwidth: Some(TokenBucketConfig {
            size: 1024,
            one_time_burst: None,
            refill_time: 100_000,
        }),
        ops: None,
    })
    .unwrap();
    let mut r = rig_with(64, false, l, Arc::default());
    assert_eq!(r.post_read(1), 1);
    assert_eq!(r.post_read(2), 2);
    assert_eq!(r.post_read(3), 2);
}

#[test]
fn patch_removes_and_replaces_the_limit() {
    let m: Arc<BlockDeviceMetrics> = Arc::default();
    let l = RateLimiter::new(&ops(1, 1_000_000)).unwrap();
    let mut r = rig_with(64, false, l, m.clone());
    assert_eq!(r.post_read(1), 1);
    assert_eq!(r.post_read(2), 1);
    let patch = |json: &str| {
        let cfg: RateLimiterConfig = serde_json::from_str(json).unwrap();
        DeviceUpdate::Drive {
            disk: None,
            rate_limiter: Some(RateLimiterPatch::from_config(&cfg, "rate_limiter").unwrap()),
        }
    };
    r.dev
        .update(patch(r#"{"ops": {"size": 0, "refill_time": 0}}"#))
        .unwrap();
    // Unlimited now: the waiting request goes with the next timer tick, the
    // rest at once.
    assert_eq!(r.timer_fired(), 2);
    for i in 0..20 {
        assert_eq!(r.post_read(i), 3 + i as u16);
    }
    // A new bucket replaces the (absent) old one.
    r.dev
        .update(patch(r#"{"ops": {"size": 1, "refill_time": 1000000}}"#))
        .unwrap();
    assert_eq!(r.post_read(1), 23);
    assert_eq!(r.post_read(1), 23);
    assert_eq!(m.update_count.total(), 2);
    assert_eq!(
        rd(&mut r.dev, r::INTERRUPT_STATUS) & 2,
        0,
        "no config interrupt"
    );
}

#[test]
fn new_backing_file_changes_capacity_and_raises_a_config_interrupt() {
    let m: Arc<BlockDeviceMetrics> = Arc::default();
    let mut r = rig_with(10, false, RateLimiter::unlimited(), m.clone());
    let gen = rd(&mut r.dev, r::CONFIG_GENERATION);
    let bigger = disk_file(40, 0xab);
    let disk = Disk::open(bigger.path(), false, "ignored").unwrap();
    r.dev
        .update(DeviceUpdate::Drive {
            disk: Some(disk),
            rate_limiter: None,
        })
        .unwrap();
    let mut b = [0u8; 8];
    r.dev.read(r::CONFIG, &mut b);
    assert_eq!(u64::from_le_bytes(b), 40);
    assert_ne!(
        rd(&mut r.dev, r::INTERRUPT_STATUS) & 2,
        0,
        "config interrupt"
    );
    assert_eq!(rd(&mut r.dev, r::CONFIG_GENERATION), gen.wrapping_add(1));
    // Requests go to the new file, and sector 30 is now in range.
    assert_eq!(r.submit(VIRTIO_BLK_T_IN, 30, &[(BUF, 512, true)]), (0, 513));
    let mut got = [0u8; 512];
    r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, [0xab; 512]);
    // GET_ID still answers the drive's own id.
    assert_eq!(
        r.submit(VIRTIO_BLK_T_GET_ID, 0, &[(BUF, 20, true)]),
        (0, 21)
    );
    let mut id = [0u8; 20];
    r.mem.read_slice(&mut id, GuestAddress(BUF)).unwrap();
    assert_eq!(&id, b"rootfs-drive-id-long");
    // A read-only file for a read-write drive is refused, and nothing changes.
    let ro = Disk::open(bigger.path(), true, "x").unwrap();
    let e = r
        .dev
        .update(DeviceUpdate::Drive {
            disk: Some(ro),
            rate_limiter: None,
        })
        .unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
    assert_eq!(m.update_fails.total(), 1);
    // A net update is not a drive update.
    assert!(r
        .dev
        .update(DeviceUpdate::Net { rx: None, tx: None })
        .is_err());
}

#[test]
fn update_before_the_driver_runs_raises_no_interrupt() {
    let file = disk_file(4, 0);
    let disk = Disk::open(file.path(), false, "d").unwrap();
    let mut dev = MmioDevice::new("blk".into(), Box::new(Block::new(disk)), ct::memory()).unwrap();
    let bigger = disk_file(8, 0);
    let disk = Disk::open(bigger.path(), false, "d").unwrap();
    dev.update(DeviceUpdate::Drive {
        disk: Some(disk),
        rate_limiter: None,
    })
    .unwrap();
    assert_eq!(rd(&mut dev, r::INTERRUPT_STATUS), 0);
    let mut b = [0u8; 8];
    dev.read(r::CONFIG, &mut b);
    assert_eq!(u64::from_le_bytes(b), 8);
}

#[test]
fn metrics_count_reads_writes_flushes_and_bad_requests() {
    let m: Arc<BlockDeviceMetrics> = Arc::default();
    let mut r = rig_with(16, false, RateLimiter::unlimited(), m.clone());
    r.submit(VIRTIO_BLK_T_IN, 0, &[(BUF, 1024, true)]);
    r.submit(VIRTIO_BLK_T_OUT, 0, &[(BUF, 512, false)]);
    r.submit(VIRTIO_BLK_T_FLUSH, 0, &[]);
    r.submit(VIRTIO_BLK_T_IN, 99, &[(BUF, 512, true)]);
    assert_eq!((m.read_count.total(), m.read_bytes.total()), (1, 1024));
    assert_eq!((m.write_count.total(), m.write_bytes.total()), (1, 512));
    assert_eq!(m.flush_count.total(), 1);
    assert_eq!(m.invalid_reqs_count.total(), 1);
    assert_eq!(m.queue_event_count.total(), 4);
    assert_eq!(m.no_avail_buffer.total(), 0);
    wr(&mut r.dev, r::QUEUE_NOTIFY, 0);
    run_notified(&mut r.dev);
    assert_eq!(m.no_avail_buffer.total(), 1, "a notify with nothing queued");
}

/// The drive of `path` built again, as a restore builds it from the config.
fn rebuilt(path: &std::path::Path, mem: &GuestMemoryMmap, read_only: bool) -> MmioDevice {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .unwrap();
    let disk = Disk::new(f, read_only, "rootfs-drive-id-longer-than-20").unwrap();
    MmioDevice::new("blk".into(), Box::new(Block::new(disk)), mem.clone()).unwrap()
}

#[test]
fn request_posted_before_the_snapshot_is_served_once_after_restore() {
    let r = rig(16, false);
    r.mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
    r.mem.write_obj(3u64, GuestAddress(HDR + 8)).unwrap();
    r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    ct::write_chain(
        &r.mem,
        0,
        &[(HDR, 16, false), (BUF, 512, true), (STATUS, 1, true)],
    );
    ct::publish(&r.mem, &[0]);
    // Paused before the device saw the notification.
    let saved = r.dev.save_state();
    assert_eq!(
        saved.device,
        DeviceState::Block(BlockState {
            capacity: 16,
            read_only: false
        })
    );
    let mem = copy_memory(&r.mem);
    let mut dev = rebuilt(r.file.path(), &mem, false);
    dev.restore_state(&saved).unwrap();
    assert_eq!(ct::used(&mem, 0).0, 0);
    dev.kick_after_restore();
    run_notified(&mut dev);
    assert_eq!(ct::used(&mem, 0), (1, 0, 513));
    assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0);
    let mut got = [0u8; 512];
    mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, [3u8; 512]);
    dev.kick_after_restore();
    run_notified(&mut dev);
    assert_eq!(ct::used(&mem, 0).0, 1, "served once");
    assert_eq!(rd(&mut dev, r::INTERRUPT_STATUS) & 1, 1);
}

#[test]
fn throttled_request_is_served_after_restore() {
    let limiter = RateLimiter::new(&ops(1, 1_000_000)).unwrap();
    let mut r = rig_with(16, false, limiter, Arc::default());
    assert_eq!(r.post_read(0), 1);
    assert_eq!(r.post_read(1), 1, "the second waits for the limiter");
    let saved = r.dev.save_state();
    let mem = copy_memory(&r.mem);
    // The limiter is rebuilt from the config: here, none.
    let mut dev = rebuilt(r.file.path(), &mem, false);
    dev.restore_state(&saved).unwrap();
    dev.kick_after_restore();
    run_notified(&mut dev);
    assert_eq!(ct::used(&mem, 1), (2, 8, 513));
    let mut got = [0u8; 512];
    mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, [1u8; 512]);
    dev.kick_after_restore();
    run_notified(&mut dev);
    assert_eq!(ct::used(&mem, 0).0, 2, "served once");
}

#[test]
fn restore_onto_another_disk_is_refused() {
    let r = rig(16, false);
    let saved = r.dev.save_state();
    let bigger = disk_file(32, 0);
    let mut dev = rebuilt(bigger.path(), &r.mem, false);
    let err = dev.restore_state(&saved).unwrap_err().to_string();
    assert_eq!(
        err,
        "blk: snapshot device state: drive rootfs-drive-id-long: the disk has 32 sectors, the snapshot's guest saw 16"
    );
    assert_eq!(dev.device_status(), 0);

    let mut dev = rebuilt(r.file.path(), &r.mem, true);
    let err = dev.restore_state(&saved).unwrap_err().to_string();
    assert!(
        err.ends_with("the disk is read-only, the snapshot's guest saw it read-write"),
        "{err}"
    );

    let mut wrong = saved.clone();
    wrong.device = DeviceState::Rng(crate::devices::virtio::rng::RngState {});
    let mut dev = rebuilt(r.file.path(), &r.mem, false);
    let err = dev.restore_state(&wrong).unwrap_err().to_string();
    assert!(
        err.ends_with("the snapshot holds virtio-rng device state for a virtio-blk device"),
        "{err}"
    );
    // Refused states leave the device as built: a driver can start it.
    bring_up(&mut dev, VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH, 16);
    let mut r2 = Rig {
        mem: r.mem.clone(),
        dev,
        file: disk_file(1, 0),
        next: 0,
    };
    assert_eq!(r2.submit(VIRTIO_BLK_T_FLUSH, 0, &[]), (0, 1));
}
