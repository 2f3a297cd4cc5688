//! Jailers killed with SIGKILL: the next start (or `cleanup --stale`) undoes their
//! records (their taps given back too), a live VM's record is untouched, and the parent cgroup goes with the
//! last VM under it. Each test has its own runtime directory and parent cgroup, so
//! that no other test's start sweeps its records first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// A private runtime directory and parent cgroup; Drop removes what is left.
struct Place {
    runtime: PathBuf,
    parent: String,
}

impl Place {
    fn new(tag: &str) -> Self {
        let runtime = std::env::temp_dir().join(format!("caisson-rt-{}", unique_id(tag)));
        let _ = std::fs::remove_dir_all(&runtime);
        Self {
            runtime,
            parent: format!("caisson-{}", unique_id(tag)),
        }
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--runtime-dir".into(),
            self.runtime.display().to_string(),
            "--parent-cgroup".into(),
            self.parent.clone(),
        ]
    }

    fn start(&self, vm: &Vm, hold_ms: u32) -> Child {
        let flags = self.flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        vm.spawn(&flags, &["--hold-ms".into(), hold_ms.to_string()])
    }

    fn state(&self, vm: &Vm) -> PathBuf {
        self.runtime.join("vms").join(format!("{}.json", vm.id))
    }

    fn vm_pid(&self, vm: &Vm) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(t) = std::fs::read_to_string(self.state(vm)) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                    if let Some(pid) = v["vm_pid"].as_i64().filter(|p| *p > 0) {
                        return pid as i32;
                    }
                }
            }
            assert!(Instant::now() < deadline, "VM {} did not start", vm.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn parent_dirs(&self) -> Vec<PathBuf> {
        CONTROLLERS
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(&self.parent))
            .collect()
    }

    fn leaves(&self, vm: &Vm) -> Vec<PathBuf> {
        self.parent_dirs().iter().map(|p| p.join(&vm.id)).collect()
    }

    /// `cleanup --stale` on this runtime directory, which must succeed; the ids
    /// it swept.
    #[track_caller]
    fn cleanup_stale(&self) -> String {
        let out = Command::new(JAILER)
            .args(["cleanup", "--stale", "--runtime-dir"])
            .arg(&self.runtime)
            .output()
            .unwrap();
        assert_exit_0(&out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Nothing of `vm` is left.
    #[track_caller]
    fn assert_gone(&self, vm: &Vm) {
        assert!(!self.state(vm).exists(), "{}: state file left", vm.id);
        assert!(
            !self.runtime.join("mcs").join(&vm.id).exists(),
            "{}: MCS record left",
            vm.id
        );
        assert!(!vm.jail_dir().exists(), "{}: jail dir left", vm.id);
        for l in self.leaves(vm) {
            assert!(!l.exists(), "cgroup {} left", l.display());
        }
    }

    /// Everything of `vm` is there.
    #[track_caller]
    fn assert_there(&self, vm: &Vm) {
        assert!(self.state(vm).exists(), "{}: state file gone", vm.id);
        assert!(vm.jail_dir().exists(), "{}: jail dir gone", vm.id);
        for l in self.leaves(vm) {
            assert!(l.exists(), "cgroup {} gone", l.display());
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        for p in self.parent_dirs() {
            if let Ok(dir) = std::fs::read_dir(&p) {
                for e in dir.filter_map(|e| e.ok()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&p);
        }
        common::release_netns_made_ahead(&self.runtime);
        let _ = std::fs::remove_dir_all(&self.runtime);
    }
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `vm` holding, then kills its jailer with SIGKILL; returns once the VM
/// died with it, its records left behind.
fn start_and_kill(place: &Place, vm: &Vm) {
    let mut c = place.start(vm, 60_000);
    wait_holding(&mut c);
    let vm_pid = place.vm_pid(vm);
    c.kill().unwrap();
    c.wait().unwrap();
    wait_gone(vm_pid);
    place.assert_there(vm);
}

#[test]
fn the_next_start_sweeps_killed_jailers_and_keeps_a_live_vm() {
    let place = Place::new("sweep");
    let killed: Vec<Vm> = (0..3).map(|i| Vm::new(&format!("k{i}"))).collect();
    for vm in &killed {
        start_and_kill(&place, vm);
    }
    let live = Vm::new("live");
    let mut live_child = place.start(&live, 60_000);
    wait_holding(&mut live_child);
    let live_pid = place.vm_pid(&live);

    let next = Vm::new("next");
    let out = place.start(&next, 0).wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for vm in &killed {
        place.assert_gone(vm);
    }
    place.assert_gone(&next);
    // The live VM is untouched, still running.
    place.assert_there(&live);
    assert!(pid_alive(live_pid));
    for p in place.parent_dirs() {
        assert!(p.exists(), "parent {} removed under a live VM", p.display());
    }

    // The last VM under the parent ends: the parent goes with it.
    // SAFETY: kill has no memory preconditions; the pid is the jailer this test started.
    unsafe { libc::kill(live_child.id() as i32, libc::SIGTERM) };
    // (pid 1 of its pid namespace, the probe ignores SIGTERM: killed after the grace.)
    live_child.wait().unwrap();
    place.assert_gone(&live);
    for p in place.parent_dirs() {
        assert!(!p.exists(), "empty parent {} left", p.display());
    }
}

#[test]
fn cleanup_stale_sweeps_only_the_dead() {
    let place = Place::new("cstale");
    // The live VM first: its start would sweep the killed one.
    let live = Vm::new("live");
    let mut live_child = place.start(&live, 60_000);
    wait_holding(&mut live_child);
    let killed = Vm::new("k");
    start_and_kill(&place, &killed);

    assert_eq!(place.cleanup_stale(), killed.id);
    place.assert_gone(&killed);
    place.assert_there(&live);
    // The original's ownership is back (the VM's uid had the writable disk).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(killed.dir.join("img/root.ext4"))
            .unwrap()
            .uid(),
        0
    );
    live_child.kill().unwrap();
    live_child.wait().unwrap();
    // Neither --id nor --stale: refused.
    let out = Command::new(JAILER).args(["cleanup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_killed_jailers_tap_is_given_back_by_cleanup_stale() {
    let place = Place::new("tapk");
    let ns = NetNs::new(&format!("cjk{}", std::process::id()));
    ns.add_tap("ktap0", &["user", "4321", "group", "4321"]);
    let vm = Vm::new("ktap");
    use_taps(&vm, &["ktap0"]);
    let mut flags = place.flags();
    flags.extend(["--netns".into(), ns.path()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut c = vm.spawn(
        &flags,
        &["--tap", "ktap0", "--hold-ms", "60000"].map(String::from),
    );
    wait_holding(&mut c);
    let vm_pid = place.vm_pid(&vm);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(place.state(&vm)).unwrap()).unwrap();
    let vm_ids = (st["uid"].as_i64().unwrap(), st["gid"].as_i64().unwrap());
    assert_eq!(ns.tap_ids("ktap0"), vm_ids);
    c.kill().unwrap();
    c.wait().unwrap();
    wait_gone(vm_pid);
    // Nobody gave it back yet.
    assert_eq!(ns.tap_ids("ktap0"), vm_ids);
    assert_eq!(place.cleanup_stale(), vm.id);
    assert_eq!(ns.tap_ids("ktap0"), (4321, 4321));
    place.assert_gone(&vm);
}

#[test]
fn a_parent_cgroup_stays_until_its_last_vm_ends() {
    let place = Place::new("parent");
    let (a, b) = (Vm::new("a"), Vm::new("b"));
    let mut first = place.start(&a, 60_000);
    wait_holding(&mut first);
    let out = place.start(&b, 0).wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    place.assert_gone(&b);
    for p in place.parent_dirs() {
        assert!(p.exists(), "parent {} removed under VM a", p.display());
    }
    // SAFETY: kill has no memory preconditions; the pid is the jailer this test started.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    first.wait().unwrap();
    place.assert_gone(&a);
    for p in place.parent_dirs() {
        assert!(!p.exists(), "empty parent {} left", p.display());
    }
}
