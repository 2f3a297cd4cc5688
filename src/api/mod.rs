//! The Firecracker API over a Unix socket, served by one thread (`fc_api`).
//!
//! The thread only parses and answers: each request becomes a [`VmmAction`]
//! ([`routes`]), goes to the VMM thread over a channel (with an eventfd to wake
//! its loop), and the [`ActionResult`] that comes back becomes the response.
//! Connections are non-blocking on one epoll; at most [`MAX_CONNECTIONS`] are
//! open at once, and a connection that breaks HTTP's rules gets a 400 and is
//! closed. Nothing a client sends can stop the VM.

pub mod http;
pub mod routes;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::controller::{ActionResult, VmmAction, VmmData};
use http::{Parsed, Response};

/// Firecracker's default API socket.
pub const DEFAULT_SOCKET: &str = "/run/firecracker.socket";
/// Most connections open at once, as Firecracker's server.
pub const MAX_CONNECTIONS: usize = 10;
/// Firecracker's API thread name.
pub const THREAD_NAME: &str = "fc_api";
/// The API thread's stack: it parses small requests only.
const STACK_SIZE: usize = 256 * 1024;
/// Answers queued for a client that does not read them: past this, its
/// connection is not read (nor its buffered requests answered) until it does.
const OUT_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("--api-sock {path}: another process is serving this socket")]
    Live { path: PathBuf },
    #[error("--api-sock {path}: exists and is not a socket; not replacing it")]
    NotASocket { path: PathBuf },
    #[error("--api-sock {path}: cannot remove the stale socket: {source}")]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--api-sock {path}: cannot bind: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the API thread: {0}")]
    Setup(std::io::Error),
    #[error("the API thread: {0}")]
    Seccomp(crate::seccomp::SeccompError),
}

/// One request for the VMM thread and where its answer goes.
pub type ApiMessage = (VmmAction, SyncSender<ActionResult>);

/// The VMM thread's end: pending requests and the eventfd that announces them.
pub struct ApiReceiver {
    pub requests: Receiver<ApiMessage>,
    pub waker: EventFd,
    /// A second handle on `waker` for the running VM's event loop, made now
    /// because the VMM thread's seccomp filter forbids dup later.
    pub loop_waker: Option<EventFd>,
}

/// Binds the API socket. A stale socket file (nobody accepting) is replaced;
/// a live socket or any other file is an error.
pub fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ApiError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ApiError::Live {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(|source| ApiError::RemoveStale {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ApiError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(ApiError::Setup)?;
    Ok(listener)
}

/// Starts the API thread on `listener`. The thread installs `filters`' API
/// filter before it serves anything.
pub fn spawn(
    listener: UnixListener,
    max_payload: usize,
    filters: Option<crate::seccomp::Filters>,
) -> Result<ApiReceiver, ApiError> {
    let (tx, requests) = std::sync::mpsc::channel();
    let waker = EventFd::new(libc::EFD_NONBLOCK).map_err(ApiError::Setup)?;
    let server_waker = waker.try_clone().map_err(ApiError::Setup)?;
    let loop_waker = Some(waker.try_clone().map_err(ApiError::Setup)?);
    let epoll = Epoll::new().map_err(ApiError::Setup)?;
    epoll
        .ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, listener.as_raw_fd() as u64),
        )
        .map_err(ApiError::Setup)?;
    let mut server = Server {
        listener,
        epoll,
        conns: HashMap::new(),
        max_payload,
        to_vmm: tx,
        waker: server_waker,
    };
    let (ready_tx, ready) = sync_channel(1);
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let installed = match &filters {
                Some(f) => f.install(crate::seccomp::ThreadKind::Api),
                None => Ok(()),
            };
            let ok = installed.is_ok();
            let _ = ready_tx.send(installed);
            if ok {
                server.run();
            }
        })
        .map_err(ApiError::Setup)?;
    // Serve nothing unconfined: the thread reports its filter before it accepts.
    match ready.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ApiError::Seccomp(e)),
        Err(_) => {
            return Err(ApiError::Setup(std::io::Error::other(
                "the API thread ended",
            )))
        }
    }
    Ok(ApiReceiver {
        requests,
        waker,
        loop_waker,
    })
}

/// One client connection.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Bytes still to write.
    out: Vec<u8>,
    continue_sent: bool,
    /// Close once `out` is written.
    closing: bool,
}

struct Server {
    listener: UnixListener,
    epoll: Epoll,
    conns: HashMap<RawFd, Conn>,
    max_payload: usize,
    to_vmm: Sender<ApiMessage>,
    waker: EventFd,
}

impl Server {
    fn run(&mut self) {
        let mut events = vec![EpollEvent::default(); MAX_CONNECTIONS + 2];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("the API server's epoll failed, not serving any more: {e}");
                    return;
                }
            };
            for ev in events.iter().take(n) {
                let fd = ev.data() as RawFd;
                if fd == self.listener.as_raw_fd() {
                    self.accept();
                } else {
                    self.serve(fd, ev.event_set());
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("API: accept failed: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                // Best effort: tell the client why, then drop it.
                let _ = (&stream)
                    .write_all(&Response::fault(503, "Too many open connections.").to_bytes(false));
                log::warn!("API: refused a connection: {MAX_CONNECTIONS} are already open");
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let fd = stream.as_raw_fd();
            let ev = EpollEvent::new(EventSet::IN | EventSet::READ_HANG_UP, fd as u64);
            if self.epoll.ctl(ControlOperation::Add, fd, ev).is_err() {
                continue;
            }
            self.conns.insert(
                fd,
                Conn {
                    stream,
                    buf: Vec::new(),
                    out: Vec::new(),
                    continue_sent: false,
                    closing: false,
                },
            );
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some(c) = self.conns.remove(&fd) {
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                c.stream.as_raw_fd(),
                EpollEvent::default(),
            );
        }
    }

    fn serve(&mut self, fd: RawFd, set: EventSet) {
        let limit = self.read_limit();
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        if set.contains(EventSet::IN) && !conn.closing && conn.out.len() < OUT_LIMIT {
            let mut chunk = [0u8; 4096];
            while conn.buf.len() <= limit {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        // The client is gone (perhaps mid-request): nothing to answer.
                        self.close(fd);
                        return;
                    }
                    Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.close(fd);
                        return;
                    }
                }
            }
        }
        // Answer what is buffered, as far as the client takes the answers.
        loop {
            let before = self.conns.get(&fd).map(|c| c.buf.len());
            self.handle_buffered(fd);
            if !self.flush(fd) {
                return;
            }
            let Some(c) = self.conns.get(&fd) else {
                return;
            };
            // Go on while answers are taken and requests are being consumed.
            let progress = Some(c.buf.len()) != before;
            if !c.out.is_empty() || c.closing || c.buf.is_empty() || !progress {
                break;
            }
        }
        self.watch(fd);
        if set.contains(EventSet::READ_HANG_UP) || set.contains(EventSet::HANG_UP) {
            if let Some(c) = self.conns.get(&fd) {
                if c.out.is_empty() {
                    self.close(fd);
                }
            }
        }
    }

    /// Most bytes buffered from one client: a request head and a full body.
    fn read_limit(&self) -> usize {
        http::MAX_HEAD_LEN + self.max_payload
    }

    /// Watches a connection for input only while its answers are being taken
    /// and its buffer has room, and for room to write while answers wait.
    fn watch(&mut self, fd: RawFd) {
        let limit = self.read_limit();
        let Some(c) = self.conns.get(&fd) else {
            return;
        };
        let mut set = EventSet::READ_HANG_UP;
        if !c.closing && c.out.len() < OUT_LIMIT && c.buf.len() <= limit {
            set |= EventSet::IN;
        }
        if !c.out.is_empty() {
            set |= EventSet::OUT;
        }
        let _ = self.epoll.ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(set, fd as u64),
        );
    }

    /// Answers every complete request in the connection's buffer.
    fn handle_buffered(&mut self, fd: RawFd) {
        loop {
            let Some(conn) = self.conns.get_mut(&fd) else {
                return;
            };
            if conn.closing || conn.out.len() >= OUT_LIMIT {
                return;
            }
            match http::parse(&conn.buf, self.max_payload, conn.continue_sent) {
                Ok(Parsed::Incomplete { send_continue }) => {
                    if send_continue {
                        conn.out.extend_from_slice(http::CONTINUE);
                        conn.continue_sent = true;
                    }
                    return;
                }
                Ok(Parsed::Complete { request, consumed }) => {
                    conn.buf.drain(..consumed);
                    conn.continue_sent = false;
                    let keep_alive = request.keep_alive;
                    let response = self.answer(&request);
                    let Some(conn) = self.conns.get_mut(&fd) else {
                        return;
                    };
                    conn.out.extend(response.to_bytes(keep_alive));
                    if !keep_alive {
                        conn.closing = true;
                    }
                }
                Err(e) => {
                    conn.out
                        .extend(Response::fault(400, &e.to_string()).to_bytes(false));
                    conn.closing = true;
                    conn.buf.clear();
                    return;
                }
            }
        }
    }

    /// Writes what is pending; false if the connection was closed.
    fn flush(&mut self, fd: RawFd) -> bool {
        let Some(conn) = self.conns.get_mut(&fd) else {
            return false;
        };
        while !conn.out.is_empty() {
            match conn.stream.write(&conn.out) {
                Ok(0) => break,
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(fd);
                    return false;
                }
            }
        }
        let (pending, closing) = (!conn.out.is_empty(), conn.closing);
        if !pending && closing {
            self.close(fd);
            return false;
        }
        // Wait for room to write only while something is pending.
        let mut set = EventSet::IN | EventSet::READ_HANG_UP;
        if pending {
            set |= EventSet::OUT;
        }
        let _ = self.epoll.ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(set, fd as u64),
        );
        true
    }

    /// Parses one request, has the VMM thread act on it, and turns the outcome
    /// into a response.
    fn answer(&mut self, request: &http::Request) -> Response {
        let response = self.act(request);
        count(&request.method, &request.path, response.status < 300);
        response
    }

    fn act(&mut self, request: &http::Request) -> Response {
        let routes::Routed {
            action,
            deprecation,
        } = match routes::parse(&request.method, &request.path, &request.body) {
            Ok(r) => r,
            Err(fault) => {
                log::info!("API: {} {}: {fault}", request.method, request.path);
                return Response::fault(400, &fault);
            }
        };
        // Firecracker's channels for a deprecated field: a warning, a counter,
        // and a `Deprecation: true` header on the answer, whatever it is.
        if let Some(message) = deprecation {
            log::warn!("{message}");
            crate::metrics::METRICS
                .deprecated_api
                .deprecated_http_api_calls
                .inc();
        }
        let mut response = self.perform(action, request);
        response.deprecation = deprecation.is_some();
        response
    }

    fn perform(&mut self, action: VmmAction, request: &http::Request) -> Response {
        let (reply, answer) = sync_channel(1);
        if self.to_vmm.send((action, reply)).is_err() || self.waker.write(1).is_err() {
            return Response::fault(503, "The VMM is shutting down.");
        }
        match answer.recv() {
            Ok(Ok(data)) => data_response(data),
            Ok(Err(e)) => {
                log::info!("API: {} {}: {e}", request.method, request.path);
                Response::fault(400, &e.to_string())
            }
            Err(_) => Response::fault(503, "The VMM is shutting down."),
        }
    }
}

/// Firecracker's per-endpoint request counters: `*_count` for every request,
/// `*_fails` for those answered with an error.
fn count(method: &str, path: &str, ok: bool) {
    use crate::metrics::{SharedIncMetric, METRICS};
    let first = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let (get, put, patch) = (
        &METRICS.get_api_requests,
        &METRICS.put_api_requests,
        &METRICS.patch_api_requests,
    );
    let pair: (&SharedIncMetric, Option<&SharedIncMetric>) = match (method, first) {
        ("GET", "") => (&get.instance_info_count, None),
        ("GET", "machine-config") => (&get.machine_cfg_count, None),
        ("GET", "version") => (&get.vmm_version_count, None),
        ("PUT", "actions") => (&put.actions_count, Some(&put.actions_fails)),
        ("PUT", "boot-source") => (&put.boot_source_count, Some(&put.boot_source_fails)),
        ("PUT", "drives") => (&put.drive_count, Some(&put.drive_fails)),
        ("PUT", "logger") => (&put.logger_count, Some(&put.logger_fails)),
        ("PUT", "machine-config") => (&put.machine_cfg_count, Some(&put.machine_cfg_fails)),
        ("PUT", "metrics") => (&put.metrics_count, Some(&put.metrics_fails)),
        ("PUT", "network-interfaces") => (&put.network_count, Some(&put.network_fails)),
        ("PUT", "vsock") => (&put.vsock_count, Some(&put.vsock_fails)),
        ("PATCH", "drives") => (&patch.drive_count, Some(&patch.drive_fails)),
        ("PATCH", "network-interfaces") => (&patch.network_count, Some(&patch.network_fails)),
        ("PATCH", "machine-config") => (&patch.machine_cfg_count, Some(&patch.machine_cfg_fails)),
        _ => return,
    };
    pair.0.inc();
    if let (false, Some(fails)) = (ok, pair.1) {
        fails.inc();
    }
}

fn data_response(data: VmmData) -> Response {
    let json = match data {
        VmmData::Empty => return Response::no_content(),
        VmmData::InstanceInfo(i) => serde_json::to_string(&i),
        VmmData::Version(v) => Ok(serde_json::json!({ "firecracker_version": v }).to_string()),
        VmmData::MachineConfig(v) | VmmData::FullVmConfig(v) => Ok(v.to_string()),
    };
    match json {
        Ok(body) => Response::json(200, body),
        Err(e) => Response::fault(500, &format!("cannot encode the answer: {e}")),
    }
}
