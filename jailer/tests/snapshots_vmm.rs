//! Jailed snapshots with the real (static) VMM and the snapcount guest
//! (tests/guests/snapcount.c): a snapshot made through the API of a `--api` jail
//! is restored in another jail, which gives the restored VM its own uid, cgroup
//! and label; two clones of one snapshot run side by side, each in its own jail
//! with its own vsock socket; Firecracker's mode restores files the orchestrator
//! linked into its root. Each restored guest must go on counting from where the
//! snapshot stopped it, with its memory intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Guest RAM of the snapshotted VM (and so of every restore).
const RAM_MIB: u64 = 32;
const SHARED_LABEL: &str = "system_u:object_r:caisson_image_ro_t:s0";
const LIMIT: Duration = Duration::from_secs(60);

/// One jailed VMM: the fixture (cleaned up on drop), the jailer process and what
/// it printed (the guest's serial console on stdout, the jailer's log on stderr).
struct Jailed {
    vm: Vm,
    child: Option<Child>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

impl Jailed {
    /// Starts the static VMM jailed (strict profile) with `cfg` as its config.
    fn start(vm: Vm, cfg: &serde_json::Value, flags: &[&str]) -> Self {
        std::fs::write(&vm.config, cfg.to_string()).unwrap();
        let mut child = Command::new(JAILER)
            .arg("--id")
            .arg(&vm.id)
            .arg("--exec-file")
            .arg(static_caisson())
            .arg("--config-file")
            .arg(&vm.config)
            .arg("--chroot-base-dir")
            .arg(&vm.base)
            .arg("--resource-root")
            .arg(&vm.dir)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Self {
            vm,
            child: Some(child),
            out,
            err,
        }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn root(&self) -> PathBuf {
        self.vm.base.join("caisson").join(&self.vm.id).join("root")
    }

    /// Waits until the guest's output holds `text`; returns the output.
    fn wait_text(&mut self, text: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let out = self.stdout();
            if out.contains(text) {
                return out;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the jailer ended ({st}) before {text:?}\nstdout: {out}\nstderr: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in time\nstdout: {out}\nstderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn state(&self) -> serde_json::Value {
        self.vm.wait_running(LIMIT)
    }

    /// SIGTERM to the jailer (forwarded to the VMM); waits for the cleanup.
    fn stop(&mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill has no memory preconditions; the pid is the jailer this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
        self.vm.assert_cleaned("caisson");
        self.stdout()
    }
}

impl Drop for Jailed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The config of the snapshotted VM: snapcount, one vCPU, [`RAM_MIB`], a vsock
/// device (so that clones can each have their own socket).
fn boot_config(vm: &Vm) -> serde_json::Value {
    let kernel = vm.dir.join("img/snapcount.elf");
    std::fs::copy(static_guest("snapcount"), &kernel).unwrap();
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o644)).unwrap();
    serde_json::json!({
        "boot-source": {"kernel_image_path": kernel, "boot_args": "console=ttyS0 snapcount.mib=8"},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": RAM_MIB},
        "vsock": {"guest_cid": 3, "uds_path": "/anywhere/a.sock"},
    })
}

/// The config of a VM restoring `snap`/`mem`: the same devices, its own vsock
/// socket `sock` (config) or `over` (`vsock_override`).
fn restore_config(snap: &Path, mem: &Path, sock: &str, over: Option<&str>) -> serde_json::Value {
    let mut load = serde_json::json!({
        "snapshot_path": snap,
        "mem_backend": {"backend_type": "File", "backend_path": mem},
        "resume_vm": true,
    });
    if let Some(o) = over {
        load["vsock_override"] = serde_json::json!({ "uds_path": o });
    }
    serde_json::json!({
        "machine-config": {"vcpu_count": 1, "mem_size_mib": RAM_MIB},
        "vsock": {"guest_cid": 3, "uds_path": sock},
        "snapshot-load": load,
    })
}

/// snapcount's `<n> verified <k>` lines of `text` (complete lines), checked to
/// count up by one, and whether `ready` came first.
fn count_lines(text: &str) -> (Vec<(u64, u64)>, bool) {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut lines: Vec<(u64, u64)> = Vec::new();
    let mut ready = false;
    for (i, l) in complete.lines().enumerate() {
        if l.starts_with("snapcount: ready ") {
            assert_eq!(i, 0, "`ready` at line {i} (a restart?):\n{text}");
            ready = true;
            continue;
        }
        let (n, k) = l
            .strip_prefix("snapcount: ")
            .and_then(|r| r.split_once(" verified "))
            .and_then(|(n, k)| Some((n.parse().ok()?, k.parse().ok()?)))
            .unwrap_or_else(|| panic!("line {i} is not snapcount's: {l:?}\n{text}"));
        if let Some(&(pn, pk)) = lines.last() {
            assert_eq!(n, pn + 1, "line {i}: {l:?} after line {pn}\n{text}");
            assert!(k >= pk, "line {i}: passes went back\n{text}");
        }
        lines.push((n, k));
    }
    (lines, ready)
}

/// `new` (a restored guest's output) takes up `old` (the snapshotted guest's,
/// to the pause) without a gap, a repeat or a restart. Returns the cut line.
fn assert_continues(old: &str, new: &str) -> u64 {
    let (old_lines, ready) = count_lines(old);
    assert!(ready, "{old}");
    let cut = old_lines.last().unwrap().0;
    assert!(
        !new.contains("ready"),
        "the restored guest started over:\n{new}"
    );
    let (lines, _) = count_lines(&format!("{old}{new}"));
    assert!(
        lines.last().unwrap().0 > cut,
        "nothing after line {cut}: {new:?}"
    );
    cut
}

fn status_ids(pid: i64, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

/// A snapshotted VM: booted in a `--api` jail, run to line 40, paused, its
/// snapshot written to its jail's `/snapshots` through the API, the two files
/// hard-linked out (into the fixture's image directory) and the jail stopped.
/// Returns the fixture dir's owner (the jail, for its uid and cleanup), the
/// files and the guest's output to the pause.
fn snapshot_in_a_jail(tag: &str) -> (Jailed, PathBuf, PathBuf, String) {
    let vm = Vm::new(tag);
    let cfg = boot_config(&vm);
    let mut a = Jailed::start(vm, &cfg, &["--api"]);
    a.wait_text("snapcount: 40 verified ");
    let st = a.state();
    let sock = PathBuf::from(st["api"]["socket_host_path"].as_str().unwrap());
    let dir = PathBuf::from(st["api"]["snapshot_dir_host_path"].as_str().unwrap());
    assert_eq!(sock, a.root().join("run/caisson.socket"));
    assert!(
        a.stderr()
            .contains(&format!("API socket {}", sock.display())),
        "{}",
        a.stderr()
    );
    let (code, body) = http_unix(&sock, "PATCH", "/vm", Some(r#"{"state": "Paused"}"#)).unwrap();
    assert_eq!(code, 204, "{body}");
    let create = r#"{"snapshot_type": "Full", "snapshot_path": "/snapshots/vm.snap", "mem_file_path": "/snapshots/vm.mem"}"#;
    let (code, body) = http_unix(&sock, "PUT", "/snapshot/create", Some(create)).unwrap();
    assert_eq!(code, 204, "{body}\nstderr: {}", a.stderr());
    // Written by the VM, as the VM, in its own directory.
    let uid = st["uid"].as_u64().unwrap() as u32;
    for f in ["vm.snap", "vm.mem"] {
        assert_eq!(std::fs::metadata(dir.join(f)).unwrap().uid(), uid, "{f}");
    }
    assert_eq!(
        std::fs::metadata(dir.join("vm.mem")).unwrap().len(),
        RAM_MIB << 20
    );
    // The orchestrator takes the files out before the jail goes.
    let snap = a.vm.dir.join("img/vm.snap");
    let mem = a.vm.dir.join("img/vm.mem");
    std::fs::hard_link(dir.join("vm.snap"), &snap).unwrap();
    std::fs::hard_link(dir.join("vm.mem"), &mem).unwrap();
    let old = a.stdout();
    a.stop();
    (a, snap, mem, old)
}

/// Issue 10: "A snapshot restored into another jail gets that jail's label, uid
/// and cgroup." Made in jail A, restored in jail B: the restored VMM runs as B's
/// uid/gid, in B's cgroup, under the label computed for B's pair (applied where
/// SELinux is enabled: not on this host), and the snapshot files get the shared
/// label planned; the guest goes on from the cut.
#[test]
fn a_snapshot_restored_in_another_jail_gets_its_uid_cgroup_and_label() {
    let (a, snap, mem, old) = snapshot_in_a_jail("snap-jail-a");
    let a_state_uid = std::fs::metadata(&snap).unwrap().uid();
    let b_vm = Vm::new("snap-jail-b");
    let a_dir = a.vm.dir.display().to_string();
    let cfg = restore_config(&snap, &mem, "/anywhere/b.sock", None);
    let mut b = Jailed::start(b_vm, &cfg, &["--resource-root", &a_dir]);
    let st = b.state();
    let pid = st["vm_pid"].as_i64().unwrap();
    let cut = {
        let (lines, _) = count_lines(&old);
        lines.last().unwrap().0
    };
    // 300 lines: more than a full verification pass of the restored memory.
    let new = b.wait_text(&format!("snapcount: {} verified ", cut + 300));
    assert_continues(&old, &new);
    let passes = |t: &str| count_lines(t).0.last().unwrap().1;
    let joined = format!("{old}{new}");
    assert!(
        passes(&joined) > passes(&old),
        "no full pass after the restore"
    );
    // B's uid and gid, not A's (whose files these are).
    let uid = st["uid"].as_u64().unwrap() as u32;
    assert_ne!(uid, a_state_uid);
    assert_eq!(status_ids(pid, "Uid"), [uid; 4]);
    assert_eq!(status_ids(pid, "Gid"), [uid; 4]);
    // B's cgroup.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for ctrl in ["memory", "cpu", "pids"] {
        assert!(
            cg.lines()
                .any(|l| l.contains(ctrl) && l.ends_with(&format!(":/caisson/{}", b.vm.id))),
            "{ctrl}: {cg}"
        );
    }
    // B's computed label, for B's own pair; the shared label for the snapshot's files.
    let cats = &st["categories"];
    assert_eq!(
        st["computed_label"],
        format!(
            "system_u:system_r:caisson_vm_t:s0:c{},c{}",
            cats["a"], cats["b"]
        )
    );
    let files = st["vm_files"].as_array().unwrap();
    let kinds: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Snapshot", "SnapshotMemory"]);
    for f in files {
        assert_eq!(f["label"], SHARED_LABEL, "{f}");
        assert_eq!(f["writable"], false);
    }
    // The whole jail audits clean (the VMM's own filter included).
    let audit = Command::new(JAILER)
        .args(["audit", "--id", &b.vm.id])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit.status.code(), Some(0), "{report:#}");
    // B's vsock socket is in B's jail, at the path B's config named.
    let sock = b.root().join("vsock/b.sock");
    assert_eq!(st["vsock_host_path"], sock.display().to_string());
    assert!(std::fs::metadata(&sock).unwrap().file_type().is_socket());
    b.stop();
}

/// Issue 10: two clones of one snapshot at once, each in its own jail with its
/// own vsock socket (one from its config, one from `vsock_override`): both go on
/// from the cut, side by side, with their own uids and cgroups, and the memory
/// file stays as it was (each clone's writes are its own copies).
#[test]
fn two_clones_of_one_jailed_snapshot_run_side_by_side() {
    let (a, snap, mem, old) = snapshot_in_a_jail("clone-src");
    let mem_before = std::fs::read(&mem).unwrap();
    let a_dir = a.vm.dir.display().to_string();
    let flags = ["--resource-root", a_dir.as_str()];
    let cfg_b = restore_config(&snap, &mem, "/c/b.sock", None);
    let cfg_c = restore_config(&snap, &mem, "/c/unused.sock", Some("/c/c.sock"));
    let mut b = Jailed::start(Vm::new("clone-b"), &cfg_b, &flags);
    let mut c = Jailed::start(Vm::new("clone-c"), &cfg_c, &flags);
    let (sb, sc) = (b.state(), c.state());
    let cut = {
        let (lines, _) = count_lines(&old);
        lines.last().unwrap().0
    };
    let want = format!("snapcount: {} verified ", cut + 100);
    let (nb, nc) = (b.wait_text(&want), c.wait_text(&want));
    assert_continues(&old, &nb);
    assert_continues(&old, &nc);
    // Both run at once, each its own.
    for s in [&sb, &sc] {
        assert!(Path::new(&format!("/proc/{}", s["vm_pid"])).exists());
    }
    assert_ne!(sb["uid"], sc["uid"]);
    assert_ne!(sb["computed_label"], sc["computed_label"]);
    assert_ne!(sb["cgroup_leaves"], sc["cgroup_leaves"]);
    for (j, s, name) in [(&b, &sb, "b.sock"), (&c, &sc, "c.sock")] {
        let sock = j.root().join("vsock").join(name);
        assert_eq!(s["vsock_host_path"], sock.display().to_string());
        assert!(
            std::fs::metadata(&sock).unwrap().file_type().is_socket(),
            "{name}"
        );
    }
    assert!(!c.root().join("vsock/unused.sock").exists());
    b.stop();
    c.stop();
    assert!(
        std::fs::read(&mem).unwrap() == mem_before,
        "a clone wrote to the snapshot's memory file"
    );
}

/// Firecracker's mode: the orchestrator links the snapshot files into the jail
/// root after the start and loads them through the API with jail-relative paths
/// (the root-wide Landlock rule lets the VMM read them and bind the overridden
/// vsock socket); nothing more is needed. A snapshot of the restored VM is then
/// created as Firecracker's users create one in a jail: to new paths relative to
/// the chroot (`./snapshot_file`), which the VMM creates in the root (Landlock
/// lets it make regular files there), or over files the orchestrator made. The
/// files stay in the root when the VM ends, as Firecracker's jailer leaves them.
#[test]
fn firecracker_mode_restores_files_linked_into_its_root() {
    let (a, snap, mem, old) = snapshot_in_a_jail("fc-src");
    let id = unique_id("fc-restore");
    let base = a.vm.dir.join("fc-jails");
    let root = base.join("firecracker").join(&id).join("root");
    std::fs::create_dir_all(&root).unwrap();
    let exec = a.vm.dir.join("firecracker");
    std::fs::copy(static_caisson(), &exec).unwrap();
    let mut child = Command::new(JAILER)
        .args(["--id", &id, "--exec-file"])
        .arg(&exec)
        .arg("--chroot-base-dir")
        .arg(&base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    struct Stop(Child, String);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(JAILER)
                .args(["cleanup", "--id", &self.1])
                .output();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Stop(child, id.clone());
    let sock = root.join("run/firecracker.socket");
    let deadline = Instant::now() + LIMIT;
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "no API socket: {}",
            err.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // After the start, as go SDK users do before PUT /snapshot/load.
    std::fs::hard_link(&snap, root.join("vm.snap")).unwrap();
    std::fs::hard_link(&mem, root.join("vm.mem")).unwrap();
    let load = r#"{"snapshot_path": "/vm.snap", "mem_backend": {"backend_type": "File", "backend_path": "/vm.mem"}, "resume_vm": true, "vsock_override": {"uds_path": "/v.sock"}}"#;
    let (code, body) = http_unix(&sock, "PUT", "/snapshot/load", Some(load)).unwrap();
    assert_eq!(code, 204, "{body}\nstderr: {}", err.lock().unwrap());
    let cut = count_lines(&old).0.last().unwrap().0;
    let want = format!("snapcount: {} verified ", cut + 50);
    let deadline = Instant::now() + LIMIT;
    while !out.lock().unwrap().contains(&want) {
        assert!(Instant::now() < deadline, "{}", out.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_continues(&old, &out.lock().unwrap());
    assert!(std::fs::metadata(root.join("v.sock"))
        .unwrap()
        .file_type()
        .is_socket());
    let (code, _) = http_unix(&sock, "PATCH", "/vm", Some(r#"{"state": "Paused"}"#)).unwrap();
    assert_eq!(code, 204);
    let create = |s: &str, m: &str| {
        let body =
            serde_json::json!({"snapshot_type": "Full", "snapshot_path": s, "mem_file_path": m});
        http_unix(&sock, "PUT", "/snapshot/create", Some(&body.to_string())).unwrap()
    };
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(RUNTIME_DIR).join(format!("vms/{id}.json"))).unwrap(),
    )
    .unwrap();
    let uid = st["uid"].as_u64().unwrap() as u32;
    // New files, named as Firecracker's docs name them (relative to the chroot,
    // the VMM's cwd): made by the VM, as the VM, in the root.
    let (code, body) = create("./snapshot_file", "mem_file");
    assert_eq!(code, 204, "{body}\nstderr: {}", err.lock().unwrap());
    let (snap_new, mem_new) = (root.join("snapshot_file"), root.join("mem_file"));
    for f in [&snap_new, &mem_new] {
        let m = std::fs::symlink_metadata(f).unwrap();
        assert!(m.file_type().is_file(), "{}", f.display());
        assert_eq!((m.uid(), m.gid()), (uid, uid), "{}", f.display());
    }
    assert!(std::fs::metadata(&snap_new).unwrap().len() > 0);
    assert_eq!(std::fs::metadata(&mem_new).unwrap().len(), RAM_MIB << 20);
    // The VMM makes no directory (nor does Firecracker): a path in a missing
    // one fails, and nothing appears.
    let (code, body) = create("/nodir/x.snap", "/nodir/x.mem");
    assert_eq!(code, 400, "{body}");
    assert!(!root.join("nodir").exists());
    // Files the orchestrator made for it (writable by the VM's uid) are written.
    for f in ["pre.snap", "pre.mem"] {
        std::fs::File::create(root.join(f)).unwrap();
        nix::unistd::chown(
            &root.join(f),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(uid)),
        )
        .unwrap();
    }
    let (code, body) = create("/pre.snap", "/pre.mem");
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        std::fs::metadata(root.join("pre.mem")).unwrap().len(),
        RAM_MIB << 20
    );
    // SAFETY: kill has no memory preconditions; the pid is the jailer this test started.
    unsafe { libc::kill(guard.0.id() as i32, libc::SIGTERM) };
    guard.0.wait().unwrap();
    // The orchestrator's files stay in its root, and so do those the VM made.
    for f in ["vm.snap", "vm.mem", "pre.snap", "pre.mem"] {
        assert!(root.join(f).exists(), "{f}");
    }
    assert_eq!(std::fs::metadata(&mem_new).unwrap().len(), RAM_MIB << 20);
    assert!(std::fs::metadata(&snap_new).unwrap().len() > 0);
}
