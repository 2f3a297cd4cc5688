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
