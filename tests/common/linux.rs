//! The Linux test guest, host side: the kernel and initramfs that tests/linux/*.sh
//! build, the guest console read line by line under a deadline, the result lines
//! of the guest's init (tests/linux/init/), and the host end of its exchange
//! protocol. Used by tests/linux.rs, and by jailer/tests/linux.rs, which includes
//! this file by path (so it depends on std alone).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The kernel command line that boots the test kernel on hosts without VMX/SVM:
/// tests/linux/cmdline.txt (tests/linux/README.md says why each word is there).
/// The tests append the `caisson.*` words their init reads, after
/// `$CAISSON_LINUX_EXTRA_ARGS` (for debugging, e.g. `initcall_debug`).
pub fn boot_args() -> String {
    let path = repo_root().join("tests/linux/cmdline.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let args = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!args.is_empty(), "{} is empty", path.display());
    match std::env::var("CAISSON_LINUX_EXTRA_ARGS") {
        Ok(extra) if !extra.trim().is_empty() => format!("{args} {}", extra.trim()),
        _ => args,
    }
}

/// How long one boot may take, from spawn to exit, before it is killed.
pub const BOOT_LIMIT: Duration = Duration::from_secs(15 * 60);

/// How long one blocking socket operation of a host peer may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// The repository root (this file is compiled from two crates).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tests/linux/build-kernel.sh").is_file())
        .expect("no tests/linux/build-kernel.sh above CARGO_MANIFEST_DIR")
        .to_path_buf()
}

/// The file `script` (in tests/linux/) built and printed as its last line, or the
/// file named by `$env_override`.
fn built_by(script: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_override}={} is not a file", p.display());
        return p;
    }
    let path = repo_root().join("tests/linux").join(script);
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}), so there is nothing to boot; set {env_override} to use a \
         prebuilt file instead:\n{stderr}",
        path.display(),
        out.status
    );
    let last = stdout.lines().last().unwrap_or("").trim();
    let p = PathBuf::from(last);
    assert!(
        p.is_file(),
        "{script} printed {last:?} as its last line, which is not a file:\n{stderr}"
    );
    eprintln!(
        "linux: {script} -> {} ({:.1} s)",
        p.display(),
        start.elapsed().as_secs_f64()
    );
    p
}

/// The test guest kernel (tests/linux/build-kernel.sh, cached after the first
/// build), or `$CAISSON_LINUX_KERNEL`. Once per test process.
pub fn kernel() -> PathBuf {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| built_by("build-kernel.sh", "CAISSON_LINUX_KERNEL"))
        .clone()
}

/// The test initramfs (tests/linux/build-initramfs.sh), or
/// `$CAISSON_LINUX_INITRAMFS`. Once per test process.
pub fn initramfs() -> PathBuf {
    static I: OnceLock<PathBuf> = OnceLock::new();
    I.get_or_init(|| built_by("build-initramfs.sh", "CAISSON_LINUX_INITRAMFS"))
        .clone()
}

/// One `CAISSON-CHECK <name> ok|FAIL key=value...` line of the guest's init.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub fields: BTreeMap<String, String>,
    pub line: String,
}

impl Check {
    /// The check on `line`, wherever on the line it starts (a kernel message may
    /// precede it).
    pub fn parse(line: &str) -> Option<Self> {
        let at = line.find("CAISSON-CHECK ")?;
        let rest = &line[at..];
        let mut words = rest.split_whitespace().skip(1);
        let name = words.next()?.to_string();
        let ok = words.next()? == "ok";
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Self {
            name,
            ok,
            fields,
            line: rest.to_string(),
        })
    }

    /// The value of `key`; fails the test when the line has none.
    pub fn field(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("check {} has no {key}=: {}", self.name, self.line))
    }

    /// Asserts `key=want`.
    #[track_caller]
    pub fn expect(&self, key: &str, want: &str) {
        assert_eq!(
            self.field(key),
            want,
            "{key} of check {}: {}",
            self.name,
            self.line
        );
    }

    /// A `<hex>` field as a number.
    pub fn hash(&self, key: &str) -> u64 {
        u64::from_str_radix(self.field(key), 16)
            .unwrap_or_else(|_| panic!("{key} of {} is not hex: {}", self.name, self.line))
    }
}

/// What the console of a running guest did next.
#[derive(Debug)]
pub enum Event {
    Line(String),
    /// Nothing within the wait asked for.
    Quiet,
    /// The console closed: the VMM exited.
    Closed,
}

/// A running VMM (caisson, or the jailer that runs it) with its serial console on
/// stdout. Dropping it kills the process if it still runs.
pub struct Guest {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    start: Instant,
    deadline: Instant,
    closed: bool,
    pub transcript: Vec<String>,
    /// Time from spawn to the init's `CAISSON-INIT` line.
    pub init_at: Option<Duration>,
    pub checks: BTreeMap<String, Check>,
}

impl Guest {
    /// Spawns `cmd` with stdout and stderr piped and stdin piped (for the serial
    /// console's input); `BOOT_LIMIT` runs from here.
    pub fn spawn(label: &str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn {cmd:?}: {e}"));
        Self::watch(label, child, start)
    }

    /// Takes over a child spawned elsewhere (e.g. in a network namespace) with
    /// piped stdout and stderr; `start` is when it was spawned.
    pub fn watch(label: &str, mut child: Child, start: Instant) -> Self {
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("the child's stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        if tx
                            .send(line.trim_end_matches(['\r', '\n']).to_string())
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            label: label.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            start,
            deadline: start + BOOT_LIMIT,
            closed: false,
            transcript: Vec::new(),
            init_at: None,
            checks: BTreeMap::new(),
        }
    }

    /// Fails the test with the console transcript and the VMM's stderr.
    #[track_caller]
    pub fn fail(&self, why: &str) -> ! {
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        panic!(
            "{}: {why}\n--- console ({} lines) ---\n{}\n--- VMM stderr ---\n{stderr}",
            self.label,
            self.transcript.len(),
            self.transcript.join("\n")
        );
    }

    /// The next console line, waiting at most `wait` (and never past the boot's
    /// deadline, which fails the test).
    pub fn next(&mut self, wait: Duration) -> Event {
        if self.closed {
            return Event::Closed;
        }
        let now = Instant::now();
        if now >= self.deadline {
            self.fail(&format!("still running after {BOOT_LIMIT:?}: killed"));
        }
        match self.lines.recv_timeout(wait.min(self.deadline - now)) {
            Ok(line) => {
                self.note(&line);
                Event::Line(line)
            }
            Err(RecvTimeoutError::Timeout) => Event::Quiet,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Event::Closed
            }
        }
    }

    fn note(&mut self, line: &str) {
        if self.init_at.is_none() && line.contains("CAISSON-INIT ") {
            let t = self.start.elapsed();
            self.init_at = Some(t);
            eprintln!(
                "{}: init started {:.1} s after spawn",
                self.label,
                t.as_secs_f64()
            );
        }
        if let Some(c) = Check::parse(line) {
            self.checks.insert(c.name.clone(), c);
        }
        self.transcript.push(line.to_string());
    }

    /// Types `text` on the guest's serial console.
    pub fn send(&mut self, text: &str) {
        let Some(stdin) = self.stdin.as_mut() else {
            self.fail("stdin is not piped")
        };
        if let Err(e) = stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
        {
            self.fail(&format!("writing to the console: {e}"));
        }
    }

    /// Reads the console to its end, then waits for the process (within the
    /// boot's deadline) and returns its exit status. Prints the wall times.
    pub fn finish(&mut self) -> ExitStatus {
        while !matches!(self.next(Duration::from_secs(60)), Event::Closed) {}
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < self.deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => self.fail("closed its console but did not exit"),
                Err(e) => self.fail(&format!("wait: {e}")),
            }
        };
        let init = self
            .init_at
            .map_or("never".to_string(), |t| format!("{:.1} s", t.as_secs_f64()));
        let notable = |l: &&String| l.contains("CAISSON-") || l.contains("SERIAL-");
        for l in self.transcript.iter().filter(notable) {
            eprintln!("{}: | {l}", self.label);
        }
        eprintln!(
            "{}: wall time from spawn: init {init}, exit {:.1} s ({status})",
            self.label,
            self.start.elapsed().as_secs_f64()
        );
        status
    }

    /// Asserts the VMM exited 0 (the guest reset the machine).
    pub fn assert_clean_exit(&mut self) {
        let status = self.finish();
        if status.code() != Some(0) {
            self.fail(&format!("exit status {status}, want 0"));
        }
    }

    /// The passed check `name`; fails the test when it is missing or failed.
    pub fn check(&self, name: &str) -> &Check {
        let Some(c) = self.checks.get(name) else {
            self.fail(&format!("no result line for check {name}"))
        };
        if !c.ok {
            self.fail(&format!("check {name} failed: {}", c.line));
        }
        c
    }

    /// Asserts that the init started and that every one of its checks passed.
    pub fn assert_init_and_checks(&self, names: &[&str]) {
        if self.init_at.is_none() {
            self.fail("the guest's init never started");
        }
        for n in names {
            self.check(n);
        }
    }

    /// Whether the console printed exactly `line` (after trimming).
    pub fn printed(&self, line: &str) -> bool {
        self.transcript.iter().any(|l| l.trim() == line)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// FNV-1a 64 start value.
pub const FNV_INIT: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 over `bytes`, continuing from `h`.
pub fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes `off..off + buf.len()` of the test data stream `seed`, as the guest's
/// `pattern()` makes them (tests/linux/init/peer.c).
pub fn pattern(seed: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let o = off + i as u64;
        let v = mix(seed.wrapping_add((o >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        *b = (v >> ((o & 7) * 8)) as u8;
    }
}

/// `len` bytes of stream `seed` from `off`.
pub fn pattern_vec(seed: u64, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern(seed, off, &mut v);
    v
}

/// What one end of an exchange sent and got (byte counts and FNV-1a hashes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Xfer {
    pub sent: u64,
    pub sent_hash: u64,
    pub got: u64,
    pub got_hash: u64,
}

fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err("EOF instead of a protocol line".into()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(e) => Err(format!("reading a protocol line: {e}")),
    }
}

fn send_pattern(w: &mut impl Write, n: u64, seed: u64) -> Result<u64, String> {
    let mut h = FNV_INIT;
    let mut buf = vec![0u8; 65536];
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(buf.len() as u64) as usize;
        pattern(seed, done, &mut buf[..chunk]);
        h = fnv1a(h, &buf[..chunk]);
        w.write_all(&buf[..chunk])
            .map_err(|e| format!("sending at {done} of {n}: {e}"))?;
        done += chunk as u64;
    }
    w.flush().map_err(|e| format!("flush: {e}"))?;
    Ok(h)
}

fn recv_pattern(r: &mut impl BufRead, n: u64, seed: u64) -> Result<u64, String> {
    let mut h = FNV_INIT;
    let mut want = vec![0u8; 65536];
    let mut done = 0;
    while done < n {
        let got = r
            .fill_buf()
            .map_err(|e| format!("receiving at {done} of {n}: {e}"))?;
        if got.is_empty() {
            return Err(format!("EOF after {done} of {n} bytes"));
        }
        let chunk = got.len().min((n - done) as usize).min(want.len());
        pattern(seed, done, &mut want[..chunk]);
        if got[..chunk] != want[..chunk] {
            return Err(format!("data differs near byte {done}"));
        }
        h = fnv1a(h, &got[..chunk]);
        r.consume(chunk);
        done += chunk as u64;
    }
    Ok(h)
}

fn two_numbers(line: &str, tag: &str) -> Result<(u64, u64), String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        [t, n, h] if *t == tag => Ok((
            n.parse().map_err(|_| format!("bad count in {line:?}"))?,
            u64::from_str_radix(h, 16).map_err(|_| format!("bad hash in {line:?}"))?,
        )),
        _ => Err(format!("expected {tag} <n> <hash>, got {line:?}")),
    }
}

/// The initiating end of the exchange protocol (tests/linux/init/peer.c): sends
/// `n` bytes of stream `seed_n`, gets `m` bytes of stream `seed_m` back, both
/// checked, with the hashes compared on both ends.
pub fn initiate(
    r: &mut impl BufRead,
    w: &mut impl Write,
    n: u64,
    seed_n: u64,
    m: u64,
    seed_m: u64,
) -> Result<Xfer, String> {
    let mut x = Xfer::default();
    w.write_all(format!("X {n} {seed_n} {m} {seed_m}\n").as_bytes())
        .map_err(|e| format!("sending the header: {e}"))?;
    x.sent_hash = send_pattern(w, n, seed_n)?;
    x.sent = n;
    let (rn, rh) = two_numbers(&read_line(r)?, "R")?;
    if (rn, rh) != (n, x.sent_hash) {
        return Err(format!(
            "the peer got {rn} bytes with hash {rh:016x}, sent {n} with {:016x}",
            x.sent_hash
        ));
    }
    x.got_hash = recv_pattern(r, m, seed_m)?;
    x.got = m;
    w.write_all(format!("B {m} {:016x}\n", x.got_hash).as_bytes())
        .map_err(|e| format!("sending B: {e}"))?;
    w.flush().map_err(|e| format!("flush: {e}"))?;
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(0) => Ok(x),
        Ok(k) => Err(format!("{k} bytes after the exchange")),
        Err(e) => Err(format!("waiting for the peer to close: {e}")),
    }
}

/// The responding end of the exchange protocol.
pub fn respond(r: &mut impl BufRead, w: &mut impl Write) -> Result<Xfer, String> {
    let mut x = Xfer::default();
    let line = read_line(r)?;
    let v: Vec<u64> = line
        .strip_prefix("X ")
        .map(|s| {
            s.split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [n, seed_n, m, seed_m] = v[..] else {
        return Err(format!("bad header {line:?}"));
    };
    x.got_hash = recv_pattern(r, n, seed_n)?;
    x.got = n;
    w.write_all(format!("R {n} {:016x}\n", x.got_hash).as_bytes())
        .map_err(|e| format!("sending R: {e}"))?;
    x.sent_hash = send_pattern(w, m, seed_m)?;
    x.sent = m;
    let (bm, bh) = two_numbers(&read_line(r)?, "B")?;
    if (bm, bh) != (m, x.sent_hash) {
        return Err(format!(
            "the peer got {bm} bytes with hash {bh:016x}, sent {m} with {:016x}",
            x.sent_hash
        ));
    }
    Ok(x)
}

/// Connects to the guest's vsock `port` through caisson's Unix socket `uds`
/// (Firecracker's protocol: `CONNECT <port>\n`, answered `OK <host port>\n`).
/// Returns the reader, the writer and the host port.
pub fn vsock_connect(
    uds: &Path,
    port: u32,
) -> Result<(BufReader<UnixStream>, UnixStream, u32), String> {
    let s = UnixStream::connect(uds).map_err(|e| format!("connect {}: {e}", uds.display()))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let mut w = s.try_clone().map_err(|e| format!("dup: {e}"))?;
    let mut r = BufReader::new(s);
    w.write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(|e| format!("sending CONNECT: {e}"))?;
    let line = read_line(&mut r)?;
    let host_port = line
        .strip_prefix("OK ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("CONNECT {port} answered {line:?}"))?;
    Ok((r, w, host_port))
}

/// Accepts one connection within `limit`, polling a non-blocking listener; the
/// accepted stream is blocking.
pub fn accept_within<T>(
    limit: Duration,
    mut accept: impl FnMut() -> std::io::Result<T>,
) -> Result<T, String> {
    let end = Instant::now() + limit;
    loop {
        match accept() {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > end {
                    return Err(format!("no connection within {limit:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// Issue 8 item 4: the guest read 4 KiB from virtio-rng through /dev/hwrng.
pub fn assert_rng(g: &Guest) {
    let c = g.check("rng");
    c.expect("bytes", "4096");
    assert!(
        c.field("rng_current").starts_with("virtio_rng"),
        "{}",
        c.line
    );
}
