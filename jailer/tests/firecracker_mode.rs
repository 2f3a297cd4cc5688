//! caisson-jailer in Firecracker's own mode (issue 9, part 5): without
//! `--config-file` it is launched as orchestrators launch Firecracker's jailer.
//! Kata's Go runtime: `--uid 0 --gid 0 --daemonize -- --config-file /fcConfig.json`
//! with the VM's files hard-linked into the jail root; firecracker-go-sdk's
//! API-driven launch: no config at all, the jail root's files are the VM's.
//! Every layer is checked on the running process, as lifecycle.rs and attacks.rs
//! do, and the orchestrator's jail root is left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// Kata's pool of placeholder drives (fcDiskPoolSize).
const PLACEHOLDERS: usize = 8;

/// A jail root filled as an orchestrator fills it; Drop stops the VM and cleans up.
struct FcJail {
    id: String,
    /// Scratch directory: the exec file and the images linked into the root.
    dir: PathBuf,
    /// `--chroot-base-dir`.
    base: PathBuf,
    exec: PathBuf,
    /// `<base>/<exec name>/<id>/root`.
    root: PathBuf,
    exec_name: String,
    /// The read end of Kata's log FIFO, held open as Kata holds it.
    log_reader: Option<std::fs::File>,
}

impl FcJail {
    /// A jail for `exec_src`, copied to `<dir>/bin/<exec_name>`.
    fn new(tag: &str, exec_src: &Path, exec_name: &str) -> Self {
        let id = unique_id(tag);
        let dir = std::env::temp_dir().join(format!("caisson-jailer-fc-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("img")).unwrap();
        let exec = dir.join("bin").join(exec_name);
        std::fs::copy(exec_src, &exec).unwrap();
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = dir.join("jails");
        let root = base.join(exec_name).join(&id).join("root");
        std::fs::create_dir_all(&root).unwrap();
        Self {
            id,
            dir,
            base,
            exec,
            root,
            exec_name: exec_name.into(),
            log_reader: None,
        }
    }

    /// Puts `src` in the scratch dir with `mode` and hard-links it into the root.
    fn link(&self, src_bytes: &[u8], name: &str, mode: u32) {
        let img = self.dir.join("img").join(name);
        std::fs::write(&img, src_bytes).unwrap();
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::hard_link(&img, self.root.join(name)).unwrap();
    }

    fn pid_file(&self) -> PathBuf {
        self.root.join(format!("{}.pid", self.exec_name))
    }

    /// The VMM's pid, from Firecracker's pid file (waiting for it to appear).
    fn wait_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(t) = std::fs::read_to_string(self.pid_file()) {
                if let Ok(pid) = t.trim().parse() {
                    return pid;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                self.pid_file().display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn state_path(&self) -> PathBuf {
        Path::new(RUNTIME_DIR)
            .join("vms")
            .join(format!("{}.json", self.id))
    }

    fn cgroup_leaves(&self) -> Vec<PathBuf> {
        ["memory", "cpu", "pids"]
            .iter()
            .map(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join("caisson")
                    .join(&self.id)
            })
            .collect()
    }

    /// Waits until the jailer has cleaned up after the VM (its state file is gone).
    fn wait_cleaned(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.state_path().exists() {
            assert!(
                Instant::now() < deadline,
                "VM {} was not cleaned up",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for leaf in self.cgroup_leaves() {
            assert!(!leaf.exists(), "cgroup {} left", leaf.display());
        }
        assert!(!Path::new(RUNTIME_DIR).join("mcs").join(&self.id).exists());
    }

    /// What is in the jail root (names, sorted).
    fn root_names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

impl Drop for FcJail {
    fn drop(&mut self) {
        // A test that made the root a mount (as Kata does) may have failed midway.
        for m in [self.root.join("drive_0"), self.root.clone()] {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        if self.state_path().exists() {
            let _ = Command::new(JAILER)
                .args(["cleanup", "--id", &self.id])
                .output();
        }
        for leaf in self.cgroup_leaves() {
            let _ = std::fs::remove_dir(leaf);
        }
        let _ = std::fs::remove_file(self.state_path());
        let _ = std::fs::remove_file(Path::new(RUNTIME_DIR).join("mcs").join(&self.id));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A jail root as Kata's Go runtime fills it (fc.go): the kernel as /vmlinux, a
/// read-only /rootfs, eight empty placeholder drives, /run, the logger's FIFO
/// /logs.fifo (mode 0, read by Kata), the hybrid vsock's socket /kata.hvsock (made
/// by the VMM), and /fcConfig.json (0640 root:root, as Kata writes it). The guest is the demo guest waiting for serial input, which under
/// --daemonize never comes: it keeps running.
fn kata_jail(tag: &str) -> FcJail {
    kata_jail_for(tag, "demo", "console=ttyS0 caisson.demo_wait", None, true)
}

/// As [`kata_jail`], booting guest `guest` with `boot_args`, with the serial
/// output in the jail root's file `serial` when given, and without the rootfs
/// drive unless `rootfs` (so that a guest using the first drive gets drive_0).
fn kata_jail_for(
    tag: &str,
    guest: &str,
    boot_args: &str,
    serial: Option<&str>,
    rootfs: bool,
) -> FcJail {
    assert!(
        Path::new("/dev/kvm").exists(),
        "this test boots a guest through KVM and needs /dev/kvm"
    );
    let mut j = FcJail::new(tag, &static_caisson(), "firecracker");
    let fifo = j.root.join("logs.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::empty()).unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o000)).unwrap();
    j.log_reader = Some(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap(),
    );
    j.link(
        &std::fs::read(static_guest(guest)).unwrap(),
        "vmlinux",
        0o644,
    );
    j.link(&vec![0u8; 1 << 20], "rootfs", 0o644);
    std::fs::create_dir(j.root.join("run")).unwrap();
    let mut drives = vec![];
    if rootfs {
        drives.push(serde_json::json!({
            "drive_id": "rootfs", "path_on_host": "/rootfs",
            "is_root_device": false, "is_read_only": true
        }));
    }
    for i in 0..PLACEHOLDERS {
        let name = format!("drive_{i}");
        std::fs::File::create(j.root.join(&name)).unwrap();
        std::fs::set_permissions(j.root.join(&name), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        drives.push(serde_json::json!({
            "drive_id": name, "path_on_host": format!("/{name}"),
            "is_root_device": false, "is_read_only": false
        }));
    }
    let mut cfg = serde_json::json!({
        "boot-source": {
            "kernel_image_path": "/vmlinux",
            "boot_args": boot_args
        },
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
        "drives": drives,
        "logger": {"log_path": "/logs.fifo", "level": "Error"},
        "vsock": {"guest_cid": 3, "uds_path": "/kata.hvsock", "vsock_id": "root"},
    });
    if let Some(name) = serial {
        std::fs::File::create(j.root.join(name)).unwrap();
        cfg["caisson"] = serde_json::json!({"serial": format!("/{name}")});
    }
    let cfg_path = j.root.join("fcConfig.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    j
}

/// Kata's launch (fc.go fcInit, with the `--node 0` it still passes): the jailer
/// returns once it has daemonized.
fn kata_launch(j: &FcJail) -> Output {
    let out = Command::new(JAILER)
        .args(["--id", &j.id, "--node", "0", "--exec-file"])
        .arg(&j.exec)
        .args(["--uid", "0", "--gid", "0", "--chroot-base-dir"])
        .arg(&j.base)
        .arg("--daemonize")
        .args(["--", "--config-file", "/fcConfig.json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn status_field(pid: i32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The argv of `pid` once it has exec'ed `argv0`.
fn wait_exec(pid: i32, argv0: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.first().map(String::as_str) == Some(argv0) {
            return argv;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not exec {argv0}: {argv:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The name of `pid`'s first vCPU thread, once there is one.
fn wait_vcpu_thread(pid: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .collect();
        if let Some(v) = names.iter().find(|n| n.contains("vcpu")) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "VMM {pid} never started a vCPU thread: threads {names:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn kata_go_launch_is_confined_and_its_jail_root_kept() {
    let j = kata_jail("kata");
    let out = kata_launch(&j);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--uid 0 --gid 0 accepted") && err.contains("never runs as root"),
        "{err}"
    );
    let pid = j.wait_pid();
    assert!(pid_alive(pid), "pid {pid} from the pid file is not running");

    // The VMM itself: /firecracker with Kata's arguments unchanged and the API on.
    // (The file is written before the jailed child is released, so the process
    // may still be the jailer for a moment.)
    let argv = wait_exec(pid, "/firecracker");
    assert_eq!(argv[argv.len() - 2..], ["--config-file", "/fcConfig.json"]);
    assert!(!argv.contains(&"--no-api".to_string()), "{argv:?}");
    assert_eq!(argv[1..3], ["--id".to_string(), j.id.clone()]);

    // The VM was built from the jailed files: its vCPU thread runs. (Kata finds
    // vCPU threads by the name prefix "fc_vcpu"; this accepts Caisson's "vcpu".)
    let vcpu = wait_vcpu_thread(pid);
    assert!(vcpu.contains("vcpu"), "{vcpu}");

    // Identity: not root (uid 0 was replaced by the derived uid), no capability
    // in any set, no new privileges, the VMM's seccomp filters.
    let uids: Vec<u32> = status_field(pid, "Uid")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        uids.iter().all(|&u| u == uids[0] && u >= 100_000),
        "{uids:?}"
    );
    let gids = status_field(pid, "Gid");
    assert!(
        gids.split_whitespace().all(|g| g == uids[0].to_string()),
        "{gids}"
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    // Namespaces: all new; the root is the jail root; the cgroup is the VM's.
    for ns in ["mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace shared with the host");
    }
    let root_meta = std::fs::metadata(format!("/proc/{pid}/root/.")).unwrap();
    let jail_meta = std::fs::metadata(&j.root).unwrap();
    assert_eq!(
        (root_meta.dev(), root_meta.ino()),
        (jail_meta.dev(), jail_meta.ino())
    );
    // --node 0: the node's CPUs and memory.
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(j.state_path()).unwrap()).unwrap();
    let extra = st["cgroup_limits"]["extra"].to_string();
    assert!(extra.contains(r#"["cpuset.mems","0"]"#), "{extra}");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines()
            .any(|l| l.ends_with(&format!("/caisson/{}", j.id))),
        "{cg}"
    );
    // The audit agrees with everything applied (Landlock is reported as applied:
    // it cannot be read back from /proc).
    let audit = Command::new(JAILER)
        .args(["audit", "--id", &j.id])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit.status.code(), Some(0), "{report:#}");
    let landlock = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["layer"] == "landlock")
        .expect("a landlock check");
    assert_ne!(landlock["actual"], "off", "{landlock}");

    // Firecracker's jail layout, given to the VM; the VM's writable placeholders
    // and its config (0640 root:root) handed over; the shared read-only images not.
    let vm = (uids[0], uids[0]);
    for d in ["", "dev", "dev/net", "run"] {
        assert_eq!(owner(&j.root.join(d)), vm, "/{d}");
    }
    assert_eq!(owner(&j.root.join("drive_0")), vm);
    assert_eq!(owner(&j.root.join("fcConfig.json")), vm);
    let mode = |f: &str| {
        std::fs::metadata(j.root.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (owner(&j.root.join("logs.fifo")), mode("logs.fifo")),
        (vm, 0o600)
    );
    // The VMM made its vsock socket in the jail root.
    use std::os::unix::fs::FileTypeExt;
    let hvsock = std::fs::symlink_metadata(j.root.join("kata.hvsock")).unwrap();
    assert!(hvsock.file_type().is_socket());
    assert_eq!(owner(&j.root.join("kata.hvsock")), vm);
    assert_eq!(owner(&j.root.join("rootfs")), (0, 0));
    assert_eq!(owner(&j.root.join("vmlinux")), (0, 0));
    assert_eq!(
        std::fs::metadata(j.root.join("firecracker"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    // The exec file is a copy, never a link to the orchestrator's binary.
    assert_ne!(
        std::fs::metadata(j.root.join("firecracker")).unwrap().ino(),
        std::fs::metadata(&j.exec).unwrap().ino()
    );

    // Kata stops the VM with SIGTERM to the pid it read; the guest was still running.
    assert!(pid_alive(pid), "the VMM ended on its own");
    // SAFETY: signalling the VMM this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    j.wait_cleaned();
    assert!(!pid_alive(pid));
    // The orchestrator's files stay, with their owners back; the jailer's are gone.
    let mut want: Vec<String> = ["fcConfig.json", "logs.fifo", "rootfs", "run", "vmlinux"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..PLACEHOLDERS).map(|i| format!("drive_{i}")))
        .collect();
    want.sort();
    assert_eq!(j.root_names(), want);
    assert_eq!(std::fs::read_dir(j.root.join("run")).unwrap().count(), 0);
    for f in ["", "run", "drive_0", "fcConfig.json", "logs.fifo"] {
        assert_eq!(owner(&j.root.join(f)), (0, 0), "/{f}");
    }
    assert_eq!(mode("logs.fifo"), 0);
    assert_eq!(
        std::fs::metadata(j.root.join("fcConfig.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
}

/// Kata's readiness check (fc.go waitVMMRunning): `GET /` on
/// `<jail root>/run/firecracker.socket` every 10 ms for up to 10 s until the
/// instance info says `"state":"Running"`.
///
/// Needs the VMM's API server (default socket `/run/firecracker.socket`, on unless
/// `--no-api`); it fails where the VMM does not serve the API yet.
#[test]
fn kata_go_launch_answers_get_root_over_the_jailed_socket() {
    let j = kata_jail("kata-api");
    kata_launch(&j);
    let pid = j.wait_pid();
    let sock = j.root.join("run/firecracker.socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match http_unix(&sock, "GET", "/", None) {
            Ok((200, body)) if body.replace(' ', "").contains("\"state\":\"Running\"") => {
                let info: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(info["id"], j.id.as_str(), "{body}");
                break;
            }
            Ok((code, body)) => format!("{code} {body}"),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "GET / on {} never said Running within 10 s: {last}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signalling the VMM this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    j.wait_cleaned();
    assert!(!sock.exists(), "the API socket was left in the jail");
}

/// firecracker-go-sdk's jailed launch names no config: the jail root's regular
/// files are the VM's (writable where the SDK gave them to `--uid`), nothing
/// outside is reachable, and the only new files the VM can make in the root are
/// regular files (snapshots, which Firecracker creates in its chroot) and its
/// sockets: no directory, device node, FIFO or symlink. The probe runs as the
/// exec file and reports each attempt.
#[test]
fn go_sdk_launch_without_a_config_confines_the_vm_to_the_root_files() {
    // Allowed (a snapshot file made, written, truncated), then refused.
    const TRIES: [&str; 7] = [
        "create:/new.snap",
        "write:/new.snap",
        "truncate:/new.snap",
        "mkdir:/d",
        "mknod:/null",
        "mkfifo:/fifo",
        "symlink:/l",
    ];
    let j = FcJail::new("gosdk", &probe(), "caisson-probe");
    j.link(b"kernel", "vmlinux", 0o644);
    j.link(&vec![0u8; 4096], "shared.img", 0o644);
    j.link(&vec![0u8; 8192], "disk.img", 0o600);
    nix::unistd::chown(
        &j.root.join("disk.img"),
        Some(nix::unistd::Uid::from_raw(4242)),
        Some(nix::unistd::Gid::from_raw(4242)),
    )
    .unwrap();
    let out = Command::new(JAILER)
        .args(["--id", &j.id, "--exec-file"])
        .arg(&j.exec)
        .args(["--uid", "4242", "--gid", "4242", "--chroot-base-dir"])
        .arg(&j.base)
        .args([
            "--",
            "--read-ok",
            "/vmlinux",
            "--rw-file",
            "disk.img",
            "--ro-file",
            "/shared.img",
            "--host-file",
            "/etc/hostname",
        ])
        .args(TRIES.iter().flat_map(|t| ["--try", t]))
        .args(["--unix-bind", "/run/probe.sock"])
        .output()
        .unwrap();
    let a = probe_results(&out);
    let me = &a["identity"];
    assert_eq!(me["uid"], 4242, "{me}");
    assert_eq!(me["gid"], 4242, "{me}");
    assert_eq!(me["capeff"], 0);
    assert_eq!(me["no_new_privs"], 1);
    assert_eq!(me["pid"], 1);
    // The arguments after -- arrived unchanged, after Firecracker's own.
    let argv: Vec<&str> = me["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(argv[..3], ["/caisson-probe", "--id", j.id.as_str()]);
    assert_eq!(argv[9..11], ["--read-ok", "/vmlinux"]);
    assert_eq!(argv.last(), Some(&"/run/probe.sock"));
    allowed(&a, "read-allowed");
    allowed(&a, "write-allowed");
    allowed(&a, "open-kvm");
    // The API socket's directory takes the VMM's sockets.
    allowed(&a, "unix-bind-allowed");
    // Not the VM's to write (root's, 0644): refused.
    denied_with(&a, "write-readonly-resource", libc::EACCES);
    // The host is not there.
    denied_with(&a, "read-host-file", libc::ENOENT);
    denied_with(&a, "exec-host-shell", libc::ENOENT);
    // The root is the VM's: Landlock lets it make, write and truncate regular
    // files there, and nothing else.
    allowed(&a, "create-file-in-root");
    for (i, t) in TRIES.iter().enumerate() {
        let name = format!("try-{}", t.replacen(':', " ", 1));
        if i < 3 {
            allowed(&a, &name);
        } else {
            denied_with(&a, &name, libc::EACCES);
        }
    }
    // The jailer left the root as the SDK made it, with the VM's new files.
    assert!(!j.state_path().exists());
    assert_eq!(
        j.root_names().join(" "),
        "disk.img new.snap probe-new-file shared.img vmlinux"
    );
    assert_eq!(owner(&j.root), (0, 0));
    assert_eq!(owner(&j.root.join("disk.img")), (4242, 4242));
    for f in ["new.snap", "probe-new-file"] {
        let m = std::fs::symlink_metadata(j.root.join(f)).unwrap();
        assert!(m.file_type().is_file(), "{f}");
        assert_eq!((m.uid(), m.gid()), (4242, 4242), "{f}");
    }
}

/// What an orchestrator may not hand the VM through the config: a file outside
/// the jail root. Refused before anything is set up, naming the field.
#[test]
fn a_config_naming_a_file_outside_the_root_is_refused() {
    let j = FcJail::new("escape", &probe(), "caisson-probe");
    std::os::unix::fs::symlink("/etc/hostname", j.root.join("vmlinux")).unwrap();
    std::fs::write(
        j.root.join("vm.json"),
        r#"{"boot-source": {"kernel_image_path": "/vmlinux"}}"#,
    )
    .unwrap();
    let out = Command::new(JAILER)
        .args(["--id", &j.id, "--exec-file"])
        .arg(&j.exec)
        .args(["--chroot-base-dir"])
        .arg(&j.base)
        .args(["--", "--config-file", "vm.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("boot-source.kernel_image_path") && err.contains("escapes the jail root"),
        "{err}"
    );
    assert!(!j.state_path().exists());
    assert_eq!(j.root_names(), vec!["vm.json", "vmlinux"]);
}

fn mount_points_of(pid: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[4].to_string(), f[5].to_string())
        })
        .collect()
}

/// Kata makes the jail root a shared mount and hot-plugs a drive by bind-mounting
/// it over a placeholder after the VM started (fc.go fcJailResource,
/// hotplugBlockDevice): the mount reaches the running jail, whose read-only files
/// are read-only mounts there and whose own mounts never reach the host.
#[test]
fn kata_hot_plugged_mounts_reach_the_running_jail_and_nothing_goes_back() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let j = kata_jail("hotplug");
    let none: Option<&str> = None;
    mount(Some(&j.root), &j.root, none, MsFlags::MS_BIND, none).unwrap();
    mount(none, &j.root, none, MsFlags::MS_SHARED, none).unwrap();
    kata_launch(&j);
    let pid = j.wait_pid();
    wait_exec(pid, "/firecracker");
    wait_vcpu_thread(pid);

    // In the jail: /rootfs is a read-only mount, the writable drives are not
    // covered by any mount.
    let inside = mount_points_of(&pid.to_string());
    let rootfs = inside
        .iter()
        .find(|(p, _)| p == "/rootfs")
        .expect("/rootfs is bound in the jail");
    assert!(rootfs.1.split(',').any(|o| o == "ro"), "{rootfs:?}");
    assert!(
        !inside.iter().any(|(p, _)| p.starts_with("/drive_")),
        "{inside:?}"
    );
    // The jail's mounts are not the host's.
    let host = mount_points_of("self");
    let jailed_rootfs = j.root.join("rootfs").display().to_string();
    assert!(!host.iter().any(|(p, _)| *p == jailed_rootfs), "{host:?}");

    // Hot-plug: a new image over /drive_0, from the host, while the VM runs.
    let hot = j.dir.join("img/hot.img");
    std::fs::write(&hot, b"HOTPLUG-DATA").unwrap();
    mount(
        Some(&hot),
        &j.root.join("drive_0"),
        none,
        MsFlags::MS_BIND,
        none,
    )
    .unwrap();
    let seen = std::fs::read(format!("/proc/{pid}/root/drive_0")).unwrap();
    assert_eq!(seen, b"HOTPLUG-DATA");

    // SAFETY: signalling the VMM this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    j.wait_cleaned();
    umount2(&j.root.join("drive_0"), MntFlags::MNT_DETACH).unwrap();
    umount2(&j.root, MntFlags::MNT_DETACH).unwrap();
    assert!(j.root.join("vmlinux").exists());
}

/// Waits until the jail root's file `name` holds `text`; returns what it holds.
fn wait_file_text(j: &FcJail, name: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = std::fs::read_to_string(j.root.join(name)).unwrap_or_default();
        if got.contains(text) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never showed {text:?}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kata Go's whole hot-plug, jailed: the VM boots on empty placeholder drives,
/// `GET /` over the jailed socket says Running, a new image is bind-mounted over
/// /drive_0 (the jail root is a shared mount, as Kata makes it), and
/// `PATCH /drives/drive_0 {drive_id, path_on_host}` makes the guest see the new
/// capacity and data. The pid file names the VMM; SIGTERM ends it and the jail
/// is cleaned.
#[test]
fn kata_go_hot_plug_through_the_jailed_api_reaches_the_guest() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    // Kata's placeholders are empty files; the guest watches the first drive,
    // drive_0 here.
    let j = kata_jail_for(
        "kata-hp",
        "blk_hotplug",
        "console=ttyS0 hotplug.wait_s=60",
        Some("serial.out"),
        false,
    );
    let none: Option<&str> = None;
    mount(Some(&j.root), &j.root, none, MsFlags::MS_BIND, none).unwrap();
    mount(none, &j.root, none, MsFlags::MS_SHARED, none).unwrap();
    kata_launch(&j);
    let pid = j.wait_pid();
    let sock = j.root.join("run/firecracker.socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(http_unix(&sock, "GET", "/", None), Ok((200, ref b)) if b.contains("\"Running\""))
    {
        assert!(Instant::now() < deadline, "GET / never said Running");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = wait_file_text(&j, "serial.out", "hotplug: capacity 0 sectors");

    // The hot-plugged image, writable by the VM as Kata's devices are.
    let hot = j.dir.join("img/hot.img");
    let mut bytes = vec![0u8; 2 << 20];
    bytes[..8].copy_from_slice(b"HOTPLUG!");
    std::fs::write(&hot, &bytes).unwrap();
    std::fs::set_permissions(&hot, std::fs::Permissions::from_mode(0o666)).unwrap();
    mount(
        Some(&hot),
        &j.root.join("drive_0"),
        none,
        MsFlags::MS_BIND,
        none,
    )
    .unwrap();
    let patch = r#"{"drive_id": "drive_0", "path_on_host": "/drive_0"}"#;
    let (code, body) = http_unix(&sock, "PATCH", "/drives/drive_0", Some(patch)).unwrap();
    assert_eq!((code, body.as_str()), (204, ""), "{first}");
    let seen = wait_file_text(&j, "serial.out", "hotplug: sector 0 HOTPLUG!");
    assert!(seen.contains("hotplug: capacity 4096 sectors"), "{seen}");

    // The guest ends by itself after reading the new disk, so the VMM may be
    // gone already; SIGTERM stops it otherwise.
    // SAFETY: signalling the VMM this test started.
    let r = unsafe { libc::kill(pid, libc::SIGTERM) };
    let gone = std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    assert!(
        r == 0 || gone,
        "kill {pid}: {}",
        std::io::Error::last_os_error()
    );
    j.wait_cleaned();
    umount2(&j.root.join("drive_0"), MntFlags::MNT_DETACH).unwrap();
    umount2(&j.root, MntFlags::MNT_DETACH).unwrap();
}
