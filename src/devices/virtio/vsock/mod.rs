//! virtio-vsock with Firecracker's host side: stream sockets are bridged to Unix
//! sockets on the host.
//!
//! * Host-initiated: a host process connects to `uds_path` and writes
//!   `CONNECT <port>\n`; the device sends the guest a REQUEST to `<port>` from a
//!   fresh host port, and on the guest's RESPONSE writes `OK <hostport>\n` back.
//! * Guest-initiated: a REQUEST to the host (CID 2) port P connects to
//!   `<uds_path>_P`; the guest gets RESPONSE, or RST if nobody listens.
//! * Credit-based flow control (virtio 1.2, 5.10.6.3): the device never sends
//!   more than the guest's `buf_alloc - (tx_cnt - fwd_cnt)`, advertises its own
//!   buffer ([`BUF_ALLOC`]) and how much it forwarded, answers CREDIT_REQUEST,
//!   and resets a connection whose guest overruns the advertised buffer.
//!
//! Host sockets come and go, so the device watches them on an epoll fd of its
//! own, which is the one host fd the event loop watches.
//!
//! Sandbox: binds `uds_path` (before confinement), connects to
//! `<uds_path>_<port>`; while running needs socket (AF_UNIX), connect, accept4,
//! read, write, epoll_ctl, epoll_wait. Sockets are made non-blocking at creation
//! (no fcntl/ioctl) and read with read(2). Like Firecracker, the VMM leaves
//! `uds_path` in place when it exits.

mod conn;
mod host;
pub mod packet;
mod persist;

pub use persist::{VsockState, EVENT_LEN, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET};

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use self::conn::{sock_read, Conn, State};
use self::host::connect_nonblocking;
use self::packet::*;
use super::chain::{gather, scatter};
use super::{complete, device_type, notify, DeviceCtx, DeviceState, VirtioDevice, VirtioError};
use super::{QUEUE_MAX_SIZE, VIRTIO_F_VERSION_1};
use crate::config::devices::ValidVsock;
use crate::devices::{
    Access, FdKind, FdNeed, FdOrigin, PathNeed, PathSource, SandboxNeeds, Syscall, VMM,
};
use crate::metrics::METRICS;

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "virtio-vsock",
    paths: &[
        PathNeed::new(PathSource::VsockSocket, Access::Bind),
        PathNeed::runtime(PathSource::VsockPeer, Access::Connect),
    ],
    fds: &[
        FdNeed::new(FdKind::UnixListener, FdOrigin::Created, "listening socket"),
        FdNeed::new(
            FdKind::UnixStream,
            FdOrigin::AtRuntime,
            "one socket per connection",
        ),
        FdNeed::new(FdKind::Epoll, FdOrigin::Created, "epoll fd"),
    ],
    syscalls: &[
        Syscall::new(
            "socket",
            VMM,
            "guest connections to <uds_path>_<port>, Unix sockets only",
        ),
        Syscall::new("connect", VMM, "guest connections to <uds_path>_<port>"),
        Syscall::new("accept4", VMM, "host connections to uds_path"),
        Syscall::new("read", VMM, "data from host sockets"),
        Syscall::new("write", VMM, "data to host sockets"),
        Syscall::new(
            "epoll_ctl",
            VMM,
            "watch host sockets on the device's epoll fd",
        ),
        Syscall::new("epoll_wait", VMM, "poll the device's epoll fd"),
    ],
};

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;

/// Bytes of guest data the device buffers per connection.
pub const BUF_ALLOC: u32 = 256 << 10;
/// Forwarded bytes after which the device tells the guest without being asked.
pub const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 4;
/// First host port handed out for host-initiated connections.
pub const FIRST_HOST_PORT: u32 = 1 << 30;
/// Most open connections (guest- and host-initiated, plus host connections
/// that have not sent their CONNECT line); further ones are refused.
pub const MAX_CONNECTIONS: usize = 1024;
/// Longest `CONNECT <port>\n` line.
pub const MAX_CONNECT_LINE: usize = 32;

const LISTENER_TOKEN: u64 = u64::MAX;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("cannot bind vsock socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the vsock epoll fd: {0}")]
    Epoll(std::io::Error),
}

/// Connections by (host port, guest port).
type Key = (u32, u32);

pub struct Vsock {
    cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    config: [u8; 8],
    conns: HashMap<Key, Conn>,
    by_fd: HashMap<RawFd, Key>,
    /// Host connections that have not sent their CONNECT line yet.
    pending: HashMap<RawFd, (UnixStream, Vec<u8>)>,
    /// Packets without payload waiting for an RX buffer.
    ctrl: VecDeque<Header>,
    next_port: u32,
    buf: Vec<u8>,
    /// Restored from a snapshot: the guest gets a transport reset.
    reset_owed: bool,
}

pub fn from_config(v: &ValidVsock) -> Result<Box<dyn VirtioDevice>, VsockError> {
    Ok(Box::new(Vsock::new(u64::from(v.cid), v.uds_path.clone())?))
}

impl Vsock {
    pub fn new(cid: u64, uds_path: PathBuf) -> Result<Self, VsockError> {
        let listener = UnixListener::bind(&uds_path).map_err(|source| VsockError::Bind {
            path: uds_path.clone(),
            source,
        })?;
        let bind_err = |source| VsockError::Bind {
            path: uds_path.clone(),
            source,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
            )
            .map_err(VsockError::Epoll)?;
        Ok(Self {
            cid,
            uds_path,
            listener,
            epoll,
            config: cid.to_le_bytes(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            pending: HashMap::new(),
            ctrl: VecDeque::new(),
            next_port: FIRST_HOST_PORT,
            buf: Vec::new(),
            reset_owed: false,
        })
    }

    fn header(&self, key: Key, op: u16, conn: Option<&Conn>) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: key.0,
            dst_port: key.1,
            len: 0,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: if conn.is_some() { BUF_ALLOC } else { 0 },
            fwd_cnt: conn.map_or(0, |c| c.fwd_cnt),
        }
    }

    fn send_ctrl(&mut self, key: Key, op: u16) {
        let h = self.header(key, op, self.conns.get(&key));
        if let Some(c) = self.conns.get_mut(&key) {
            c.reported_fwd = c.fwd_cnt;
        }
        self.ctrl.push_back(h);
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            METRICS.vsock.conns_removed.inc();
            let fd = c.stream.as_raw_fd();
            self.unwatch(fd);
            self.by_fd.remove(&fd);
        }
    }

    /// Resets `key` on both sides (counted as a killed connection).
    fn reset_conn(&mut self, key: Key) {
        METRICS.vsock.conns_killed.inc();
        self.remove(key);
        self.send_ctrl(key, OP_RST);
    }

    fn alloc_host_port(&mut self) -> u32 {
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
            if !self.conns.keys().any(|k| k.0 == p) {
                return p;
            }
        }
    }

    /// Handles one packet from the guest.
    fn handle_tx(
        &mut self,
        h: &Header,
        payload: &[u8],
        warn: &mut dyn FnMut(&dyn std::fmt::Display),
    ) {
        let key = (h.dst_port, h.src_port);
        if h.kind != TYPE_STREAM {
            if h.op != OP_RST {
                self.send_ctrl(key, OP_RST);
            }
            return;
        }
        if h.op == OP_REQUEST {
            if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
                warn(&format_args!(
                    "REQUEST to port {}: {MAX_CONNECTIONS} connections are open; refused",
                    h.dst_port
                ));
                self.send_ctrl(key, OP_RST);
                return;
            }
            if self.conns.contains_key(&key) {
                warn(&format_args!(
                    "REQUEST for existing connection {key:?}; reset"
                ));
                self.reset_conn(key);
                return;
            }
            let path = format!("{}_{}", self.uds_path.display(), h.dst_port);
            match connect_nonblocking(&path) {
                Ok(stream) => {
                    let fd = stream.as_raw_fd();
                    let mut c = Conn::new(stream, State::Established);
                    c.peer_buf_alloc = h.buf_alloc;
                    c.peer_fwd_cnt = h.fwd_cnt;
                    self.watch(fd, true);
                    self.by_fd.insert(fd, key);
                    self.conns.insert(key, c);
                    METRICS.vsock.conns_added.inc();
                    self.send_ctrl(key, OP_RESPONSE);
                }
                Err(e) => {
                    log::debug!("virtio-vsock: guest connection to {path} failed: {e}");
                    self.send_ctrl(key, OP_RST);
                }
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            if h.op != OP_RST {
                self.send_ctrl(key, OP_RST);
            }
            return;
        };
        c.peer_buf_alloc = h.buf_alloc;
        c.peer_fwd_cnt = h.fwd_cnt;
        match h.op {
            OP_RESPONSE if c.state == State::HostConnecting => {
                c.state = State::Established;
                let line = format!("OK {}\n", key.0);
                c.out.extend_from_slice(line.as_bytes());
                // The OK line is not guest data: keep it out of fwd_cnt.
                c.fwd_cnt = c.fwd_cnt.wrapping_sub(line.len() as u32);
                if !c.flush() {
                    self.reset_conn(key);
                }
            }
            OP_RW if c.state == State::Established => {
                if c.out.len() + payload.len() > BUF_ALLOC as usize {
                    warn(&format_args!(
                        "connection {key:?}: guest sent past the advertised buffer of {BUF_ALLOC} bytes; reset"
                    ));
                    self.reset_conn(key);
                    return;
                }
                c.out.extend_from_slice(payload);
                if !c.flush() {
                    self.reset_conn(key);
                    return;
                }
                if c.fwd_cnt.wrapping_sub(c.reported_fwd) >= CREDIT_UPDATE_THRESHOLD {
                    self.send_ctrl(key, OP_CREDIT_UPDATE);
                }
            }
            OP_CREDIT_UPDATE => {}
            OP_CREDIT_REQUEST => self.send_ctrl(key, OP_CREDIT_UPDATE),
            OP_SHUTDOWN => {
                // Deliver what is buffered, then close both directions (an
                // orderly end: not counted as a killed connection).
                let _ = c.flush();
                self.remove(key);
                self.send_ctrl(key, OP_RST);
            }
            OP_RST => self.remove(key),
            _ => {
                warn(&format_args!(
                    "op {} in the wrong state on {key:?}; reset",
                    h.op
                ));
                self.reset_conn(key);
            }
        }
    }

    fn process_tx(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        let mut any = false;
        let mut bytes = Vec::new();
        while let Some(chain) = ctx.next_chain(TX_QUEUE)? {
            any = true;
            let len = usize::try_from(chain.readable_len())
                .unwrap_or(usize::MAX)
                .min(HDR_LEN + MAX_PAYLOAD as usize);
            bytes.resize(len, 0);
            let got = gather(ctx.mem, &chain.readable, 0, &mut bytes);
            bytes.truncate(got);
            let warn = &mut *ctx.warn;
            match parse_tx(&bytes, self.cid) {
                Ok((h, payload)) => {
                    METRICS.vsock.tx_packets_count.inc();
                    METRICS.vsock.tx_bytes_count.add(payload.len() as u64);
                    let payload = payload.to_vec();
                    self.handle_tx(&h, &payload, &mut |m| {
                        warn.warn(m);
                    });
                }
                Err(e) => {
                    warn.warn(&format_args!("TX packet {} dropped: {e}", chain.head));
                }
            }
            complete(ctx, TX_QUEUE, chain.head, 0)?;
        }
        if any {
            notify(ctx, TX_QUEUE);
        }
        Ok(())
    }

    /// The next packet for the guest, reading at most `room` payload bytes from a
    /// host socket into `self.buf`.
    fn next_rx(&mut self, room: usize) -> Option<Header> {
        if let Some(h) = self.ctrl.pop_front() {
            return Some(h);
        }
        let keys: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Established && c.readable && !c.eof)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            let n = room.min(c.peer_credit() as usize).min(MAX_PAYLOAD as usize);
            if n == 0 {
                continue;
            }
            self.buf.resize(n, 0);
            match sock_read(&c.stream, &mut self.buf) {
                Ok(0) => {
                    c.eof = true;
                    let mut h = self.header(key, OP_SHUTDOWN, self.conns.get(&key));
                    h.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
                    return Some(h);
                }
                Ok(got) => {
                    self.buf.truncate(got);
                    c.tx_cnt = c.tx_cnt.wrapping_add(got as u32);
                    c.reported_fwd = c.fwd_cnt;
                    let mut h = self.header(key, OP_RW, self.conns.get(&key));
                    h.len = got as u32;
                    return Some(h);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(_) => {
                    METRICS.vsock.rx_read_fails.inc();
                    self.reset_conn(key);
                    return self.ctrl.pop_front();
                }
            }
        }
        None
    }

    /// Fills RX buffers with control packets and host data, within the guest's credit.
    fn pump_rx(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        use virtio_queue::QueueT;
        let mut any = false;
        while let Some(chain) = ctx.next_chain(RX_QUEUE)? {
            if !chain.readable.is_empty() || chain.writable_len() < HDR_LEN as u64 {
                ctx.warn.warn(&format_args!(
                    "RX buffer {} is device-readable or shorter than {HDR_LEN} bytes; dropped",
                    chain.head
                ));
                complete(ctx, RX_QUEUE, chain.head, 0)?;
                any = true;
                continue;
            }
            let room = usize::try_from(chain.writable_len() - HDR_LEN as u64).unwrap_or(usize::MAX);
            let Some(h) = self.next_rx(room) else {
                // Nothing to send: give the buffer back.
                if let Some(q) = ctx.queues.get_mut(RX_QUEUE) {
                    let n = q.next_avail();
                    q.set_next_avail(n.wrapping_sub(1));
                }
                break;
            };
            scatter(ctx.mem, &chain.writable, 0, &h.encode());
            let mut used = HDR_LEN as u32;
            if h.op == OP_RW {
                let n = scatter(ctx.mem, &chain.writable, HDR_LEN as u64, &self.buf);
                used += n as u32;
                METRICS.vsock.rx_bytes_count.add(n as u64);
            }
            METRICS.vsock.rx_packets_count.inc();
            complete(ctx, RX_QUEUE, chain.head, used)?;
            any = true;
        }
        if any {
            notify(ctx, RX_QUEUE);
        }
        Ok(())
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE; 3]
    }
    fn config(&self) -> &[u8] {
        &self.config
    }
    fn process_queue(&mut self, ctx: &mut DeviceCtx, queue: usize) -> Result<(), VirtioError> {
        let m = &METRICS.vsock;
        match queue {
            TX_QUEUE => {
                m.tx_queue_event_count.inc();
                let r = self.process_tx(ctx).and_then(|()| self.pump_rx(ctx));
                r.inspect_err(|_| m.tx_queue_event_fails.inc())
            }
            RX_QUEUE => {
                m.rx_queue_event_count.inc();
                self.pump_rx(ctx)
                    .inspect_err(|_| m.rx_queue_event_fails.inc())
            }
            // Event buffers wait for a transport reset (after a restore).
            _ => self.send_transport_reset(ctx),
        }
    }
    fn host_fds(&self) -> Vec<RawFd> {
        vec![self.epoll.as_raw_fd()]
    }
    fn save(&self) -> DeviceState {
        self.save_state()
    }
    fn restore(&mut self, s: &DeviceState) -> Result<(), VirtioError> {
        self.restore_state(s)
    }
    fn restored(&mut self, ctx: &mut DeviceCtx) -> Result<(), VirtioError> {
        self.send_transport_reset(ctx)
    }
    fn process_fd(&mut self, ctx: Option<&mut DeviceCtx>, _fd: RawFd) -> Result<(), VirtioError> {
        match ctx {
            Some(ctx) => {
                let warn = &mut *ctx.warn;
                self.host_events(&mut |m| {
                    warn.warn(m);
                });
                self.pump_rx(ctx)
            }
            None => {
                self.host_events(&mut |m| log::warn!("virtio-vsock: {m}"));
                Ok(())
            }
        }
    }
    /// Drops every connection the guest knew of. Host connections whose REQUEST
    /// the guest has not seen yet (e.g. made before the driver came up, which
    /// resets the device first) survive and are offered to the new driver.
    /// Runs on the vCPU thread: it only closes sockets (which also takes them
    /// out of the device's epoll set), so it needs no syscall beyond close.
    fn reset(&mut self) {
        // A new driver reads guest_cid as it starts: no reset event is due.
        self.reset_owed = false;
        self.ctrl.retain(|h| h.op == OP_REQUEST);
        let offered: Vec<Key> = self.ctrl.iter().map(|h| (h.src_port, h.dst_port)).collect();
        self.conns
            .retain(|k, c| c.state == State::HostConnecting && offered.contains(k));
        let conns = &self.conns;
        self.by_fd.retain(|_, k| conns.contains_key(k));
    }
}

#[cfg(test)]
mod tests;
