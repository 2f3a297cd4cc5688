//! Shared helpers of the integration tests: a statically linked probe (it runs in an
//! empty jail), VM fixtures with unique ids, and a guard whose Drop undoes the jail
//! even when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const JAILER: &str = env!("CARGO_BIN_EXE_caisson-jailer");
pub const RUNTIME_DIR: &str = "/run/caisson";

/// Builds `caisson-probe` with a static C runtime (once per test binary).
pub fn probe() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = manifest.join("../target/probe-static");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "rustc",
                    "-q",
                    "-p",
                    "caisson-jailer",
                    "--bin",
                    "caisson-probe",
                    "--target-dir",
                ])
                .arg(&target)
                .args(["--", "-C", "target-feature=+crt-static"])
                .current_dir(manifest)
                .status()
                .expect("run cargo rustc for the probe");
            assert!(status.success(), "building the static probe failed");
            target.join("debug/caisson-probe")
        })
        .clone()
}

/// Builds `caisson` statically as tests/demo.sh does (the jail holds no shared
/// libraries); once per test binary. Returns the binary.
pub fn static_caisson() -> PathBuf {
    static VMM: OnceLock<PathBuf> = OnceLock::new();
    VMM.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "rustc",
                "-q",
                "--release",
                "-p",
                "caisson",
                "--bin",
                "caisson",
            ])
            .args(["--target-dir", "target/static"])
            .args(["--", "-C", "target-feature=+crt-static"])
            .current_dir(&root)
            .status()
            .expect("run cargo rustc for the static caisson");
        assert!(status.success(), "building the static caisson failed");
        root.join("target/static/release/caisson")
    })
    .clone()
}

/// The statically linked `caisson-jailer` (built as tests/demo.sh builds it,
/// libselinux and libpcre2-8 included): it starts ~1 ms sooner than the
/// dynamically linked one, which loads four shared libraries first.
pub fn static_jailer() -> PathBuf {
    static JAILER_STATIC: OnceLock<PathBuf> = OnceLock::new();
    JAILER_STATIC
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new("bash")
                .args(["tests/build-static.sh", "jailer"])
                .current_dir(&root)
                .status()
                .expect("run tests/build-static.sh jailer");
            assert!(
                status.success(),
                "building the static caisson-jailer failed"
            );
            root.join("target/static/release/caisson-jailer")
        })
        .clone()
}

/// A unique VM id for this test.
pub fn unique_id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        tag
    )
}

/// One VM's files and config; Drop cleans everything up.
pub struct Vm {
    pub id: String,
    pub dir: PathBuf,
    pub base: PathBuf,
    pub config: PathBuf,
    pub extra_pids: Vec<u32>,
}

impl Vm {
    /// A VM with a kernel, a writable disk and a read-only disk (mode 0666, so only
    /// the jail's read-only mount can refuse writing to it).
    pub fn new(tag: &str) -> Self {
        let id = unique_id(tag);
        let dir = std::env::temp_dir().join(format!("caisson-jailer-it-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::write(dir.join("img/vmlinux"), vec![0x5au8; 4096]).unwrap();
        std::fs::write(dir.join("img/root.ext4"), vec![0u8; 1 << 20]).unwrap();
        std::fs::write(dir.join("img/ro.img"), vec![0u8; 65536]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("img/vmlinux"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(
            dir.join("img/root.ext4"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(
            dir.join("img/ro.img"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let config = dir.join("vm.json");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                r#"{{"boot-source": {{"kernel_image_path": "{d}/img/vmlinux"}},
                    "machine-config": {{"mem_size_mib": 16, "vcpu_count": 1}},
                    "drives": [
                      {{"drive_id": "root", "path_on_host": "{d}/img/root.ext4", "is_root_device": true}},
                      {{"drive_id": "ro", "path_on_host": "{d}/img/ro.img", "is_root_device": false, "is_read_only": true}}
                    ]}}"#
            ),
        )
        .unwrap();
        Self {
            base: dir.join("jails"),
            id,
            dir,
            config,
            extra_pids: Vec::new(),
        }
    }

    /// The jailer command for this VM, with `flags` before `--` and `probe_args` after.
    pub fn command(&self, flags: &[&str], probe_args: &[String]) -> Command {
        let mut c = Command::new(JAILER);
        c.arg("--id")
            .arg(&self.id)
            .arg("--exec-file")
            .arg(probe())
            .arg("--config-file")
            .arg(&self.config)
            .arg("--chroot-base-dir")
            .arg(&self.base)
            .arg("--resource-root")
            .arg(&self.dir)
            .args(flags)
            .arg("--")
            .args(probe_args);
        c
    }

    pub fn run(&self, flags: &[&str], probe_args: &[String]) -> Output {
        self.command(flags, probe_args).output().unwrap()
    }

    pub fn spawn(&self, flags: &[&str], probe_args: &[String]) -> Child {
        self.command(flags, probe_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn jail_dir(&self) -> PathBuf {
        self.base.join("caisson-probe").join(&self.id)
    }

    pub fn state_path(&self) -> PathBuf {
        Path::new(RUNTIME_DIR)
            .join("vms")
            .join(format!("{}.json", self.id))
    }

    pub fn mcs_path(&self) -> PathBuf {
        Path::new(RUNTIME_DIR).join("mcs").join(&self.id)
    }

    pub fn cgroup_leaves(&self, parent: &str) -> Vec<PathBuf> {
        ["memory", "cpu", "pids"]
            .iter()
            .map(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(parent)
                    .join(&self.id)
            })
            .collect()
    }

    /// Waits until the VM is running (its state has a pid) and returns the state.
    pub fn wait_running(&self, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(self.state_path()) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if v["vm_pid"].as_i64().unwrap_or(0) > 0 {
                        return v;
                    }
                }
            }
            assert!(Instant::now() < deadline, "VM {} did not start", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that nothing of the VM is left on the host.
    pub fn assert_cleaned(&self, parent: &str) {
        assert!(
            !self.jail_dir().exists(),
            "jail dir {} left",
            self.jail_dir().display()
        );
        assert!(!self.state_path().exists(), "state file left");
        assert!(!self.mcs_path().exists(), "MCS record left");
        for leaf in self.cgroup_leaves(parent) {
            assert!(!leaf.exists(), "cgroup {} left", leaf.display());
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        for pid in &self.extra_pids {
            // SAFETY: kill has no memory preconditions; the pid is a helper this test started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        if self.state_path().exists() {
            let _ = Command::new(JAILER)
                .args(["cleanup", "--id", &self.id])
                .output();
        }
        for parent in ["caisson", "caisson-dev", "caisson-test"] {
            for leaf in self.cgroup_leaves(parent) {
                let _ = std::fs::remove_dir(leaf);
            }
        }
        let _ = std::fs::remove_file(self.state_path());
        let _ = std::fs::remove_file(self.mcs_path());
        // A private runtime directory (`run/`) holds the namespace made ahead.
        release_netns_made_ahead(&self.dir.join("run"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unbinds the network namespace a jailer made ahead in `runtime_dir`, so the
/// directory can be removed.
pub fn release_netns_made_ahead(runtime_dir: &Path) {
    caisson_jailer::netns_pool::release(runtime_dir);
}

/// The probe's JSON lines, by attempt name.
pub fn attempts(stdout: &[u8]) -> std::collections::BTreeMap<String, serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["attempt"].as_str()?.to_string(), v)))
        .collect()
}

/// The probe's results, after checking that the jailed probe exited 0.
#[track_caller]
pub fn probe_results(out: &Output) -> std::collections::BTreeMap<String, serde_json::Value> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    attempts(&out.stdout)
}

/// Asserts that a command exited 0, showing its stderr if not.
#[track_caller]
pub fn assert_exit_0(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts an attempt was denied with `errno`.
#[track_caller]
pub fn denied_with(
    a: &std::collections::BTreeMap<String, serde_json::Value>,
    name: &str,
    errno: i32,
) {
    let v = a
        .get(name)
        .unwrap_or_else(|| panic!("no result for {name}: {a:?}"));
    assert_eq!(v["denied"], true, "{name} was allowed: {v}");
    assert_eq!(v["errno"], errno, "{name}: {v}");
}

#[track_caller]
pub fn allowed(a: &std::collections::BTreeMap<String, serde_json::Value>, name: &str) {
    let v = a
        .get(name)
        .unwrap_or_else(|| panic!("no result for {name}: {a:?}"));
    assert_eq!(v["denied"], false, "{name} was denied: {v}");
}

/// A `sleep` outside the jail, as a harmless target.
pub fn sleeper() -> Child {
    // Never ends by itself (a loaded machine once took the probe past a fixed
    // 120 s, and the test then blamed the probe): the test and `Vm`'s Drop kill it.
    Command::new("sleep").arg("infinity").spawn().unwrap()
}

/// A profile file: `strict` with `replacements` applied.
pub fn profile_with(dir: &Path, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/profiles/strict.toml"),
    )
    .unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{from} not in strict.toml");
        text = text.replace(from, to);
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Reads the probe's stdout until it says it is holding (so it has been exec'ed
/// and is fully confined); returns the lines read so far.
pub fn wait_holding(child: &mut Child) -> Vec<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let mut reader = std::io::BufReader::new(stdout);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the probe ended before holding: {lines:?}");
        let done = line.contains("\"holding\"");
        lines.push(line);
        if done {
            // Keep draining in the background so the probe never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut sink);
            });
            return lines;
        }
    }
}

/// A guest of the static VMM's build (tests/guests, built by its build script).
pub fn static_guest(name: &str) -> PathBuf {
    let release = static_caisson()
        .parent()
        .expect("target/static/release")
        .to_path_buf();
    std::fs::read_dir(release.join("build"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("out/guests").join(format!("{name}.elf")))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name}.elf is not in the static build's guests"))
}

/// One HTTP/1.1 exchange over a Unix socket, as Firecracker's clients (Kata, the
/// go SDK) make them: the request, then the response's status line, headers and a
/// body of `Content-Length` bytes. Returns the status code and the body.
pub fn http_unix(
    sock: &Path,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::os::unix::net::UnixStream::connect(sock)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req =
        format!("{method} {uri} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    (&stream).write_all(req.as_bytes())?;
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut reader = BufReader::new(&stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("the connection closed inside the headers".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("bad Content-Length {v:?}")))?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A network namespace made with `ip netns`, deleted on drop (its taps with it).
pub struct NetNs(pub String);

impl NetNs {
    pub fn new(name: &str) -> Self {
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Self(name.to_string())
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    /// A persistent tap in it, with `ip tuntap` options (`user N`, `group N`).
    pub fn add_tap(&self, name: &str, options: &[&str]) {
        let st = Command::new("ip")
            .args(["-n", &self.0, "tuntap", "add", "dev", name, "mode", "tap"])
            .args(options)
            .status()
            .unwrap();
        assert!(st.success(), "ip tuntap add {name} {options:?}");
    }

    /// A tap's owner and group as its namespace's sysfs shows them (-1: none).
    pub fn tap_ids(&self, name: &str) -> (i64, i64) {
        let read = |file: &str| {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.0, "cat"])
                .arg(format!("/sys/class/net/{name}/{file}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "reading {name}/{file}");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        (read("owner"), read("group"))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Rewrites the VM's config.
pub fn edit_config(vm: &Vm, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vm.config).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&vm.config, v.to_string()).unwrap();
}

/// The config's network interfaces, one per tap.
pub fn use_taps(vm: &Vm, taps: &[&str]) {
    edit_config(vm, |v| {
        v["network-interfaces"] = taps
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"iface_id": format!("eth{i}"), "host_dev_name": t}))
            .collect();
    });
}
