//! One bridged connection: its host socket, state and credit counters.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;

use crate::metrics::METRICS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Host-initiated, waiting for the guest's RESPONSE.
    HostConnecting,
    Established,
}

pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) state: State,
    pub(super) peer_buf_alloc: u32,
    pub(super) peer_fwd_cnt: u32,
    /// Bytes sent to the guest.
    pub(super) tx_cnt: u32,
    /// Bytes of guest data written to the host socket.
    pub(super) fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    pub(super) reported_fwd: u32,
    /// Guest data the host socket has not taken yet.
    pub(super) out: Vec<u8>,
    pub(super) readable: bool,
    pub(super) eof: bool,
}

impl Conn {
    pub(super) fn new(stream: UnixStream, state: State) -> Self {
        Self {
            stream,
            state,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            reported_fwd: 0,
            out: Vec::new(),
            readable: true,
            eof: false,
        }
    }

    /// How many bytes the guest can take now.
    pub(super) fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Writes buffered guest data to the host socket; false if the socket broke.
    pub(super) fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match sock_write(&self.stream, &self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    METRICS.vsock.tx_write_fails.inc();
                    return false;
                }
            }
        }
        true
    }
}

/// read(2) on a socket (std would use recvfrom, which the sandbox does not allow).
pub(super) fn sock_read(stream: &UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    nix::unistd::read(stream, buf).map_err(std::io::Error::from)
}

/// write(2) on a socket (std would use sendto). SIGPIPE is ignored in Rust
/// programs, so a closed peer is an EPIPE error.
pub(super) fn sock_write(stream: &UnixStream, buf: &[u8]) -> std::io::Result<usize> {
    nix::unistd::write(stream, buf).map_err(std::io::Error::from)
}
