//! The host side: the listening socket at `uds_path`, CONNECT lines from host
//! processes, connections to `<uds_path>_<port>`, and the device's epoll fd.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use super::conn::{sock_read, Conn, State};
use super::*;

/// Accepts a connection, non-blocking from the start.
pub(super) fn accept_nonblocking(listener: &UnixListener) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{accept4, SockFlag};
    let fd = accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?;
    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
    Ok(UnixStream::from(unsafe {
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }))
}

/// Connects to a Unix socket with a non-blocking socket.
pub(super) fn connect_nonblocking(path: &str) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(UnixStream::from(fd))
}

impl Vsock {
    pub(super) fn watch(&self, fd: RawFd, out: bool) {
        let mut set = EventSet::IN | EventSet::EDGE_TRIGGERED | EventSet::READ_HANG_UP;
        if out {
            set |= EventSet::OUT;
        }
        if let Err(e) = self
            .epoll
            .ctl(ControlOperation::Add, fd, EpollEvent::new(set, fd as u64))
        {
            log::warn!("virtio-vsock: cannot watch socket fd {fd}: {e}");
        }
    }

    pub(super) fn unwatch(&self, fd: RawFd) {
        let _ = self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default());
    }

    pub(super) fn accept_all(&mut self) {
        loop {
            match accept_nonblocking(&self.listener) {
                Ok(stream) => {
                    if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
                        log::warn!("virtio-vsock: {MAX_CONNECTIONS} connections are open; host connection refused");
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    self.watch(fd, false);
                    self.pending.insert(fd, (stream, Vec::new()));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads a pending connection's CONNECT line, one byte at a time so that no
    /// data after it is consumed.
    pub(super) fn read_connect_line(
        &mut self,
        fd: RawFd,
        warn: &mut dyn FnMut(&dyn std::fmt::Display),
    ) {
        let Some((stream, line)) = self.pending.get_mut(&fd) else {
            return;
        };
        let mut byte = [0u8; 1];
        let done = loop {
            match sock_read(stream, &mut byte) {
                Ok(0) => break Err("closed before CONNECT"),
                Ok(_) => {
                    line.push(byte[0]);
                    if byte[0] == b'\n' {
                        break Ok(());
                    }
                    if line.len() >= MAX_CONNECT_LINE {
                        break Err("CONNECT line too long");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Err("read failed"),
            }
        };
        let Some((stream, line)) = self.pending.remove(&fd) else {
            return;
        };
        let port = done.ok().and_then(|()| parse_connect(&line));
        let Some(port) = port else {
            self.unwatch(fd);
            warn(&format_args!(
                "host connection sent {:?}, not CONNECT <port>; closed",
                String::from_utf8_lossy(&line)
            ));
            return;
        };
        let key = (self.alloc_host_port(), port);
        self.unwatch(fd);
        self.watch(fd, true);
        self.by_fd.insert(fd, key);
        self.conns
            .insert(key, Conn::new(stream, State::HostConnecting));
        METRICS.vsock.conns_added.inc();
        self.send_ctrl(key, OP_REQUEST);
    }

    pub(super) fn host_events(&mut self, warn: &mut dyn FnMut(&dyn std::fmt::Display)) {
        let mut events = [EpollEvent::default(); 32];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    METRICS.vsock.muxer_event_fails.inc();
                    log::warn!("virtio-vsock: epoll_wait failed: {e}");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            for ev in &events[..n] {
                let token = ev.data();
                if token == LISTENER_TOKEN {
                    self.accept_all();
                    continue;
                }
                let fd = token as RawFd;
                if self.pending.contains_key(&fd) {
                    self.read_connect_line(fd, warn);
                    continue;
                }
                let Some(key) = self.by_fd.get(&fd).copied() else {
                    continue;
                };
                let set = ev.event_set();
                let Some(c) = self.conns.get_mut(&key) else {
                    continue;
                };
                if set.intersects(
                    EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR,
                ) {
                    c.readable = true;
                }
                if set.contains(EventSet::OUT) && !c.flush() {
                    self.reset_conn(key);
                    continue;
                }
                if c.fwd_cnt.wrapping_sub(c.reported_fwd) >= CREDIT_UPDATE_THRESHOLD {
                    self.send_ctrl(key, OP_CREDIT_UPDATE);
                }
            }
        }
    }
}
