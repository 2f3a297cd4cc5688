//! The device driven through its MMIO transport, as a guest driver would.

use super::*;
use crate::devices::virtio::chain::testing as ct;
use crate::devices::virtio::mmio::testing::*;
use crate::devices::virtio::mmio::MmioDevice;
use crate::devices::virtio::registers as r;
use crate::memory::GuestMemoryMmap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use vm_memory::{Bytes, GuestAddress};

const BUFS: u64 = 0x80000;

struct Rig {
    mem: GuestMemoryMmap,
    dev: MmioDevice,
    dir: tempfile::TempDir,
    rx_posted: u16,
    tx_sent: u16,
    rx_seen: u16,
}

/// Writes descriptor `i` of queue `q` (rings at the test addresses + q * 0x10000).
fn desc(mem: &GuestMemoryMmap, q: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let base = ct::DESC_TABLE + q * 0x10000 + 16 * u64::from(i);
    mem.write_obj(addr, GuestAddress(base)).unwrap();
    mem.write_obj(len, GuestAddress(base + 8)).unwrap();
    mem.write_obj(flags, GuestAddress(base + 12)).unwrap();
    mem.write_obj(next, GuestAddress(base + 14)).unwrap();
}

fn publish(mem: &GuestMemoryMmap, q: u64, slot: u16, head: u16) {
    let avail = ct::AVAIL_RING + q * 0x10000;
    mem.write_obj(head, GuestAddress(avail + 4 + 2 * u64::from(slot % 16)))
        .unwrap();
    mem.write_obj(slot + 1, GuestAddress(avail + 2)).unwrap();
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let vs = Vsock::new(3, dir.path().join("v.sock")).unwrap();
    let mut dev = MmioDevice::new("vsock".into(), Box::new(vs), mem.clone()).unwrap();
    bring_up(&mut dev, VIRTIO_F_VERSION_1, 16);
    let mut r = Rig {
        mem,
        dev,
        dir,
        rx_posted: 0,
        tx_sent: 0,
        rx_seen: 0,
    };
    for _ in 0..4 {
        r.post_rx();
    }
    r
}

impl Rig {
    fn post_rx(&mut self) {
        let i = self.rx_posted % 16;
        desc(
            &self.mem,
            0,
            i,
            BUFS + u64::from(i) * 0x1000,
            0x1000,
            ct::F_WRITE,
            0,
        );
        publish(&self.mem, 0, self.rx_posted, i);
        self.rx_posted += 1;
    }

    fn send(&mut self, h: Header, payload: &[u8]) {
        let i = self.tx_sent % 16;
        let addr = BUFS + 0x40000 + u64::from(i) * 0x20000;
        self.mem
            .write_slice(&h.encode(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(addr + HDR_LEN as u64))
            .unwrap();
        desc(
            &self.mem,
            1,
            i,
            addr,
            (HDR_LEN + payload.len()) as u32,
            0,
            0,
        );
        publish(&self.mem, 1, self.tx_sent, i);
        self.tx_sent += 1;
        wr(&mut self.dev, r::QUEUE_NOTIFY, 1);
        run_notified(&mut self.dev);
    }

    /// The packets the device put in RX buffers since the last call.
    fn received(&mut self) -> Vec<Header> {
        let used = ct::USED_RING;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let mut out = Vec::new();
        while self.rx_seen != idx {
            let id: u32 = self
                .mem
                .read_obj(GuestAddress(used + 4 + 8 * u64::from(self.rx_seen % 16)))
                .unwrap();
            let mut b = [0u8; HDR_LEN];
            self.mem
                .read_slice(&mut b, GuestAddress(BUFS + u64::from(id) * 0x1000))
                .unwrap();
            out.push(Header::decode(&b).unwrap());
            self.rx_seen += 1;
            self.post_rx();
        }
        out
    }
}

fn guest(op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 4096,
        fwd_cnt: 0,
    }
}

#[test]
fn host_connect_before_driver_ok_waits_for_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let vs = Vsock::new(3, dir.path().join("v.sock")).unwrap();
    let mut dev = MmioDevice::new("vsock".into(), Box::new(vs), mem.clone()).unwrap();
    let fd = dev.device().host_fds()[0];
    let mut s = UnixStream::connect(dir.path().join("v.sock")).unwrap();
    s.write_all(b"CONNECT 9\n").unwrap();
    for _ in 0..3 {
        crate::devices::virtio::mmio::testing::host_fd(&mut dev, fd);
    }
    // The driver comes up with RX buffers already posted.
    let mut r = Rig {
        mem,
        dev,
        dir,
        rx_posted: 0,
        tx_sent: 0,
        rx_seen: 0,
    };
    for _ in 0..4 {
        r.post_rx();
    }
    bring_up(&mut r.dev, VIRTIO_F_VERSION_1, 16);
    run_notified(&mut r.dev);
    let got = r.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].op, got[0].dst_port), (OP_REQUEST, 9));
}

#[test]
fn request_without_listener_gets_rst() {
    let mut r = rig();
    r.send(guest(OP_REQUEST, 1000, 77, 0), &[]);
    let got = r.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].op, got[0].src_port, got[0].dst_port),
        (OP_RST, 77, 1000)
    );
    assert_eq!(got[0].dst_cid, 3);
}

#[test]
fn guest_connection_credit_and_overrun() {
    let mut r = rig();
    let listener = UnixListener::bind(r.dir.path().join("v.sock_80")).unwrap();
    r.send(guest(OP_REQUEST, 1000, 80, 0), &[]);
    let (mut host, _) = listener.accept().unwrap();
    let got = r.received();
    assert_eq!(got[0].op, OP_RESPONSE);
    assert_eq!(got[0].buf_alloc, BUF_ALLOC);
    r.send(guest(OP_RW, 1000, 80, 5), b"hello");
    let mut b = [0u8; 5];
    host.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    r.send(guest(OP_CREDIT_REQUEST, 1000, 80, 0), &[]);
    let got = r.received();
    assert_eq!((got[0].op, got[0].fwd_cnt), (OP_CREDIT_UPDATE, 5));
    // The host stops reading; the guest ignores the credit: the device resets.
    host.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 60 << 10];
    let mut reset = false;
    for _ in 0..64 {
        r.send(guest(OP_RW, 1000, 80, chunk.len() as u32), &chunk);
        if r.received().iter().any(|h| h.op == OP_RST) {
            reset = true;
            break;
        }
    }
    assert!(reset, "overrunning the buffer resets the connection");
    assert!(r.dev.warnings() > 0);
}

#[test]
fn host_connect_line_becomes_a_request() {
    let mut r = rig();
    let fd = r.dev.device().host_fds()[0];
    let mut s = UnixStream::connect(r.dir.path().join("v.sock")).unwrap();
    s.write_all(b"CONNECT 52\n").unwrap();
    // Accept, then read the line (two epoll rounds at most).
    for _ in 0..3 {
        crate::devices::virtio::mmio::testing::host_fd(&mut r.dev, fd);
    }
    let got = r.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].op, got[0].dst_port), (OP_REQUEST, 52));
    assert!(got[0].src_port >= FIRST_HOST_PORT);
    let mut resp = guest(OP_RESPONSE, 52, got[0].src_port, 0);
    resp.buf_alloc = 1 << 20;
    r.send(resp, &[]);
    let mut line = [0u8; 14];
    s.read_exact(&mut line[..3]).unwrap();
    assert_eq!(&line[..3], b"OK ");
    // Bad first lines are closed without a packet to the guest.
    let mut bad = UnixStream::connect(r.dir.path().join("v.sock")).unwrap();
    bad.write_all(b"HELLO\n").unwrap();
    for _ in 0..3 {
        crate::devices::virtio::mmio::testing::host_fd(&mut r.dev, fd);
    }
    assert!(r.received().is_empty());
    let mut b = [0u8; 1];
    bad.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    assert_eq!(bad.read(&mut b).unwrap(), 0, "closed by the device");
}

/// Where event buffer `i` is.
const EVT: u64 = 0x40_0000;

impl Rig {
    /// Posts event buffer `slot` (of `len` bytes) and notifies queue 2.
    fn post_event(&mut self, slot: u16, len: u32) {
        let addr = EVT + u64::from(slot) * 0x100;
        self.mem.write_obj(u32::MAX, GuestAddress(addr)).unwrap();
        desc(&self.mem, 2, slot, addr, len, ct::F_WRITE, 0);
        publish(&self.mem, 2, slot, slot);
        wr(&mut self.dev, r::QUEUE_NOTIFY, 2);
        run_notified(&mut self.dev);
    }

    /// The event queue's used idx and entry `i` (id, len).
    fn events(&self, i: u16) -> (u16, u32, u32) {
        let used = ct::USED_RING + 2 * 0x10000;
        let idx = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let base = used + 4 + 8 * u64::from(i);
        let id = self.mem.read_obj(GuestAddress(base)).unwrap();
        let len = self.mem.read_obj(GuestAddress(base + 4)).unwrap();
        (idx, id, len)
    }

    /// The device restored from this one's snapshot in a "new process":
    /// copied memory, a new socket path and guest CID `cid`.
    fn restored(&self, cid: u64) -> Rig {
        let saved = self.dev.save_state();
        assert_eq!(saved.device, DeviceState::Vsock(VsockState {}));
        let dir = tempfile::tempdir().unwrap();
        let mem = copy_memory(&self.mem);
        let vs = Vsock::new(cid, dir.path().join("v.sock")).unwrap();
        let mut dev = MmioDevice::new("vsock".into(), Box::new(vs), mem.clone()).unwrap();
        dev.restore_state(&saved).unwrap();
        Rig {
            mem,
            dev,
            dir,
            rx_posted: self.rx_posted,
            tx_sent: self.tx_sent,
            rx_seen: self.rx_seen,
        }
    }
}

#[test]
fn restore_drops_connections_and_sends_one_transport_reset() {
    let mut r = rig();
    let listener = UnixListener::bind(r.dir.path().join("v.sock_80")).unwrap();
    r.send(guest(OP_REQUEST, 1000, 80, 0), &[]);
    let _host = listener.accept().unwrap();
    assert_eq!(r.received()[0].op, OP_RESPONSE);
    r.post_event(0, 4);
    assert_eq!(r.events(0).0, 0, "no event while nothing happened");

    let mut n = r.restored(5);
    assert_eq!(n.events(0).0, 0, "restore itself sends nothing");
    assert!(n.dev.irqfd().read().is_err(), "nor interrupts");
    let mut cid = [0u8; 8];
    crate::devices::bus::BusDevice::read(&mut n.dev, r::CONFIG, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), 5, "the CID comes from the config");

    n.dev.kick_after_restore();
    assert_eq!(n.events(0), (1, 0, EVENT_LEN as u32));
    let ev: u32 = n.mem.read_obj(GuestAddress(EVT)).unwrap();
    assert_eq!(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
    assert_eq!(rd(&mut n.dev, r::INTERRUPT_STATUS) & 1, 1);
    assert!(n.dev.irqfd().read().is_ok(), "used-buffer interrupt raised");
    run_notified(&mut n.dev);
    n.post_event(1, 4);
    assert_eq!(n.events(0).0, 1, "exactly one reset");

    // The connection is gone: the guest's data on it is answered with RST.
    let mut h = guest(OP_RW, 1000, 80, 2);
    h.src_cid = 5;
    n.send(h, b"hi");
    let got = n.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].op, got[0].dst_cid), (OP_RST, 5));
}

#[test]
fn transport_reset_waits_for_an_event_buffer() {
    let r = rig();
    let mut n = r.restored(3);
    n.dev.kick_after_restore();
    run_notified(&mut n.dev);
    assert_eq!(n.events(0).0, 0, "no buffer, no event");
    // A buffer too short for the event is handed back empty.
    n.post_event(0, 2);
    assert_eq!(n.events(0), (1, 0, 0));
    n.post_event(1, 4);
    assert_eq!(n.events(1), (2, 1, 4));
    n.post_event(2, 4);
    assert_eq!(n.events(1).0, 2, "sent once");
}

#[test]
fn a_driver_reset_after_restore_owes_no_event() {
    let r = rig();
    let mut n = r.restored(3);
    bring_up(&mut n.dev, VIRTIO_F_VERSION_1, 16);
    run_notified(&mut n.dev);
    n.post_event(0, 4);
    assert_eq!(n.events(0).0, 0);
}

#[test]
fn vsock_refuses_another_devices_state() {
    let r = rig();
    let mut saved = r.dev.save_state();
    saved.device = DeviceState::Net(crate::devices::virtio::net::NetState {});
    let dir = tempfile::tempdir().unwrap();
    let vs = Vsock::new(3, dir.path().join("v.sock")).unwrap();
    let mut dev = MmioDevice::new("vsock".into(), Box::new(vs), r.mem.clone()).unwrap();
    let err = dev.restore_state(&saved).unwrap_err().to_string();
    assert_eq!(
        err,
        "vsock: snapshot device state: the snapshot holds virtio-net device state for a virtio-vsock device"
    );
}
