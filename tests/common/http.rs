//! A small HTTP/1.1 client for the API socket, and helpers that run `caisson`
//! with its API on a temporary socket.
//!
//! The client is deliberately plain: it writes exactly the bytes it is given
//! (`send_raw`) or a well-formed request with a Content-Length body, and it
//! parses responses with `httparse` (status line, headers) plus a Content-Length
//! body. Reads time out after [`READ_TIMEOUT`], so a hung server fails a test
//! instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::CAISSON;

/// How long a read waits for the server before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One response.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    // The body as text, so that a failing assertion shows the fault message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (failing the test) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// `fault_message` of an error body; panics if there is none.
    pub fn fault(&self) -> String {
        match self.json().get("fault_message").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None => panic!("no fault_message: {self:?}"),
        }
    }

    /// Checks a 400 whose fault_message is exactly `msg`.
    pub fn assert_fault(&self, msg: &str) {
        assert_eq!(self.status, 400, "{self:?}");
        assert_eq!(self.fault(), msg, "{self:?}");
    }

    /// Checks a 400 whose fault_message contains `part`.
    pub fn assert_fault_contains(&self, part: &str) {
        assert_eq!(self.status, 400, "{self:?}");
        let f = self.fault();
        assert!(f.contains(part), "fault {f:?} lacks {part:?}");
    }

    pub fn assert_no_content(&self) {
        assert_eq!(self.status, 204, "{self:?}");
        assert!(self.body.is_empty(), "{self:?}");
    }
}

/// A connection to the API socket.
pub struct Client {
    pub stream: UnixStream,
    /// Bytes read but not yet consumed by a response.
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// A client on an already connected stream (e.g. a writer's clone).
    pub fn from_stream(stream: UnixStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one well-formed request (keep-alive) and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Response> {
        self.send_raw(&request_bytes(method, path, body, &[]))?;
        self.read_response()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn put(&mut self, path: &str, body: &str) -> Response {
        self.request("PUT", path, Some(body))
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"))
    }

    pub fn patch(&mut self, path: &str, body: &str) -> Response {
        self.request("PATCH", path, Some(body))
            .unwrap_or_else(|e| panic!("PATCH {path}: {e}"))
    }

    /// Writes exactly `bytes`.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more bytes into the buffer; Ok(0) at EOF.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one response (an interim `100 Continue` is a response too).
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let head_len = match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => Some(n),
                Ok(httparse::Status::Partial) => None,
                Err(e) => {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "bad response ({e}): {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
            };
            if let Some(head_len) = head_len {
                let status = resp.code.unwrap_or(0);
                let reason = resp.reason.unwrap_or("").to_string();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let len = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse::<usize>())
                    .transpose()
                    .map_err(|e| {
                        std::io::Error::new(ErrorKind::InvalidData, format!("Content-Length: {e}"))
                    })?
                    .unwrap_or(0);
                while self.buf.len() < head_len + len {
                    if self.fill()? == 0 {
                        return Err(std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "connection closed inside a response body",
                        ));
                    }
                }
                let body = self.buf[head_len..head_len + len].to_vec();
                self.buf.drain(..head_len + len);
                return Ok(Response {
                    status,
                    reason,
                    headers,
                    body,
                });
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response (got {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Whether the server closed the connection: reads until EOF (true), a
    /// reset (true) or the read timeout (false). Bytes read are kept.
    pub fn closed_by_server(&mut self) -> bool {
        loop {
            match self.fill() {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Everything read so far and not consumed, as text.
    pub fn pending_text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// The bytes of a request with `extra` header lines ("Name: value").
pub fn request_bytes(method: &str, path: &str, body: Option<&str>, extra: &[&str]) -> Vec<u8> {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or("").as_bytes());
    out
}

/// One request on a fresh connection.
pub fn once(sock: &Path, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut c = Client::connect(sock).unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    c.request(method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A `caisson` process serving the API on a socket in its own temporary
/// directory. Its stdout (the serial console by default) and stderr go to files
/// there; stdin is a pipe (serial input). Killed on drop.
pub struct Vmm {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl Vmm {
    /// Spawns `caisson --api-sock <dir>/api.sock --id <id> args...` without
    /// waiting for the socket.
    pub fn spawn_nowait(id: &str, args: &[&str]) -> Self {
        let dir = super::tempdir();
        let sock = dir.path().join("api.sock");
        Self::spawn_in(dir, sock, id, args)
    }

    /// As [`Vmm::spawn_nowait`] with a given directory and socket path.
    pub fn spawn_in(dir: tempfile::TempDir, sock: PathBuf, id: &str, args: &[&str]) -> Self {
        let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(CAISSON)
            .arg("--api-sock")
            .arg(&sock)
            .args(["--id", id])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self { child, dir, sock }
    }

    /// Spawns and waits until the socket accepts.
    pub fn spawn(id: &str, args: &[&str]) -> Self {
        let mut v = Self::spawn_nowait(id, args);
        v.wait_for_socket();
        v
    }

    /// Polls the socket every 10 ms for up to 3 s, as firecracker-go-sdk does.
    pub fn wait_for_socket(&mut self) {
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "caisson exited ({status}) before serving its API: {}",
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{} did not accept within 3 s; stderr: {}",
                self.sock.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.sock)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.sock.display()))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// A path inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET /`'s state.
    pub fn state(&self) -> String {
        let r = once(&self.sock, "GET", "/", None);
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["state"].as_str().unwrap_or_default().to_string()
    }

    /// Polls `GET /` every 10 ms until the state is `want`, for up to `limit`.
    pub fn wait_state(&self, want: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let s = self.state();
            if s == want {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "state stayed {s:?}, want {want:?}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Checks the VMM is alive and its API still answers `state`.
    pub fn assert_serving(&mut self, state: &str) {
        assert!(self.alive(), "caisson died: {}", self.stderr());
        assert_eq!(self.state(), state, "stderr: {}", self.stderr());
    }

    /// Waits until `file` (a path) contains `text`, for up to `limit`.
    pub fn wait_for_text(&mut self, file: &Path, text: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let got = std::fs::read_to_string(file).unwrap_or_default();
            if got.contains(text) {
                return got;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "caisson exited ({status}) before {} held {text:?}: {got:?}; stderr: {}",
                    file.display(),
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < limit,
                "{} lacks {text:?} after {limit:?}: {got:?}; stderr: {}",
                file.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, for up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "caisson still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU time (user + system, in clock ticks) of process `pid`, from
/// /proc/<pid>/stat (fields 14 and 15; the name in field 2 may hold spaces).
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) is at index 11.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The names of process `pid`'s threads.
pub fn thread_names(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim_end().to_string())
        .collect()
}
