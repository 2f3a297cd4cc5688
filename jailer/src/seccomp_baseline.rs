//! Step 10: the jailer's own seccomp baseline, installed in the child just before
//! exec (after Landlock; no_new_privs is already set by the identity step).
//!
//! It denies, with `EPERM` rather than a kill so that a probe can observe it, what
//! no VMM thread ever needs: new namespaces (`clone`/`unshare` with a namespace
//! flag, `setns`), the keyring, sockets other than AF_UNIX (plus AF_INET/AF_INET6
//! when the profile says `inet = true`), `bpf`, `perf_event_open`,
//! `userfaultfd`, `ptrace`, `process_vm_*`, the mount family, `pivot_root`,
//! `chroot`, modules, kexec, swap, `reboot` and the clock setters. `clone3` gets
//! `ENOSYS`: its flags are in memory, out of seccomp's reach, and libc then falls
//! back to `clone`, whose flags the baseline checks. Everything else is allowed.
//!
//! The rules are data (seccomp/baseline.json, seccompiler's JSON), validated by
//! seccompiler and compiled by build.rs (seccomp/baseline_compiler.rs) into one
//! compact program, embedded: x32 syscall numbers get ENOSYS, and a binary search
//! keeps the kernel's install-time walk short. Filters stack, and the strictest
//! answer wins, so the VMM's own filters, installed later, only narrow it; with
//! them an audited VMM shows at least 2 (`Seccomp_filters`).

use seccompiler::BpfProgram;

use crate::profile::{BaselineMode, SeccompSettings};

static BASELINE_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp/baseline.bpf"));
static BASELINE_INET_BPF: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/seccomp/baseline_inet.bpf"));

/// The JSON source the programs were compiled from.
pub const BASELINE_JSON: &str = include_str!("../../seccomp/baseline.json");

/// How many filters the baseline installs (the audit counts them).
pub const FILTER_COUNT: u32 = 1;

/// The baseline could not be decoded or installed.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("the embedded seccomp baseline program {0} is corrupt")]
    Corrupt(&'static str),
    #[error("cannot install the seccomp baseline program {name}: {source}")]
    Install {
        name: &'static str,
        source: seccompiler::Error,
    },
}

/// The baseline's programs, in the order they are installed.
#[derive(Debug, Clone)]
pub struct Baseline {
    programs: Vec<(&'static str, BpfProgram)>,
}

fn decode(name: &'static str, bytes: &[u8]) -> Result<BpfProgram, BaselineError> {
    caisson::seccomp::decode_program(bytes).ok_or(BaselineError::Corrupt(name))
}

impl Baseline {
    /// The embedded baseline; `inet` picks the socket set that also allows
    /// AF_INET and AF_INET6.
    pub fn embedded(inet: bool) -> Result<Self, BaselineError> {
        let rules = if inet {
            ("baseline_inet", decode("baseline_inet", BASELINE_INET_BPF)?)
        } else {
            ("baseline", decode("baseline", BASELINE_BPF)?)
        };
        Ok(Self {
            programs: vec![rules],
        })
    }

    /// The programs, in installation order.
    pub fn programs(&self) -> &[(&'static str, BpfProgram)] {
        &self.programs
    }

    /// Installs every program on the calling thread (which also sets
    /// no_new_privs, already set by the identity step).
    pub fn install(&self) -> Result<(), BaselineError> {
        for (name, prog) in &self.programs {
            seccompiler::apply_filter(prog)
                .map_err(|source| BaselineError::Install { name, source })?;
        }
        Ok(())
    }
}

/// The step: installs the baseline the profile names, or nothing when it is off.
pub fn apply(settings: &SeccompSettings) -> Result<(), BaselineError> {
    match settings.baseline {
        BaselineMode::Off => Ok(()),
        BaselineMode::Default => Baseline::embedded(settings.inet)?.install(),
    }
}

/// The number of filters the baseline adds for this mode.
pub fn filter_count(mode: BaselineMode) -> u32 {
    match mode {
        BaselineMode::Default => FILTER_COUNT,
        BaselineMode::Off => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::CString;

    /// The child side of [`the_baseline_denies_what_it_should_and_allows_what_the_vmm_needs`]:
    /// a no-op unless that test re-ran this binary with the variable set.
    const CHILD_ENV: &str = "CAISSON_BASELINE_CHILD";

    #[test]
    fn the_json_compiles_and_the_embedded_programs_are_its() {
        let map = seccompiler::compile_from_json(
            BASELINE_JSON.as_bytes(),
            seccompiler::TargetArch::x86_64,
        )
        .unwrap();
        for name in ["baseline", "sockets", "sockets_inet", "clone3"] {
            assert!(map.contains_key(name), "{name} missing");
        }
        let b = Baseline::embedded(false).unwrap();
        let names: Vec<_> = b.programs().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["baseline"]);
        assert_eq!(b.programs().len() as u32, FILTER_COUNT);
        // The two socket sets give two programs; tests/baseline_bpf.rs checks what
        // each one answers against seccompiler's own programs.
        let inet = Baseline::embedded(true).unwrap();
        assert_eq!(inet.programs()[0].0, "baseline_inet");
        assert_ne!(b.programs()[0].1, inet.programs()[0].1);
        assert_eq!(filter_count(BaselineMode::Default), 1);
        assert_eq!(filter_count(BaselineMode::Off), 0);
        assert!(matches!(
            decode("x", &[1, 2, 3]),
            Err(BaselineError::Corrupt("x"))
        ));
    }

    /// Runs the child in a fresh process (this test binary again), so that seccomp
    /// stays out of the test harness; returns attempt -> (return value, errno).
    fn run_child(variant: &str) -> BTreeMap<String, (i64, i32)> {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp_baseline::tests::baseline_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, variant)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: BTreeMap<_, _> = stdout
            .lines()
            .filter_map(|l| Some(&l[l.find("BASELINE-RESULT ")? + 16..]))
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (
                    f[0].to_string(),
                    (f[1].parse().unwrap(), f[2].parse().unwrap()),
                )
            })
            .collect();
        assert!(results.contains_key("done"), "{stdout}");
        results
    }

    #[track_caller]
    fn denied(r: &BTreeMap<String, (i64, i32)>, name: &str, errno: i32) {
        let got = r
            .get(name)
            .unwrap_or_else(|| panic!("no result for {name}"));
        assert_eq!(*got, (-1, errno), "{name}");
    }

    #[track_caller]
    fn allowed(r: &BTreeMap<String, (i64, i32)>, name: &str) {
        let got = r
            .get(name)
            .unwrap_or_else(|| panic!("no result for {name}"));
        assert!(got.0 >= 0, "{name} was denied: errno {}", got.1);
    }

    #[test]
    fn the_baseline_denies_what_it_should_and_allows_what_the_vmm_needs() {
        let r = run_child("default");
        for name in [
            "clone-newuser",
            "clone-newnet",
            "unshare-newuser",
            "unshare-newns",
            "unshare-newtime",
            "setns",
            "socket-netlink",
            "socket-packet",
            "socket-inet",
            "socket-inet6",
            "socketpair-inet",
            "keyctl",
            "add-key",
            "request-key",
            "bpf",
            "perf-event-open",
            "userfaultfd",
            "ptrace",
            "process-vm-readv",
            "process-vm-writev",
            "mount",
            "umount2",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move-mount",
            "open-tree",
            "mount-setattr",
            "pivot-root",
            "chroot",
            "init-module",
            "finit-module",
            "delete-module",
            "kexec-load",
            "kexec-file-load",
            "swapon",
            "swapoff",
            "reboot",
            "settimeofday",
            "clock-settime",
            "clock-adjtime",
            "adjtimex",
        ] {
            denied(&r, name, libc::EPERM);
        }
        denied(&r, "clone3", libc::ENOSYS);
        // What the VMM (and libc under it) needs.
        for name in [
            "socket-unix",
            "socketpair-unix",
            "clone-fork",
            "unshare-files",
            "thread-spawn",
            "eventfd",
            "open-dev-null",
            "seccomp-stacks",
        ] {
            allowed(&r, name);
        }
        // The child's own count: the two baseline filters and the stacked one.
        assert_eq!(r["seccomp-filters"].0, i64::from(FILTER_COUNT) + 1);

        // The inet variant lets IPv4 and IPv6 through, nothing more.
        let r = run_child("inet");
        allowed(&r, "socket-inet");
        allowed(&r, "socket-inet6");
        denied(&r, "socket-netlink", libc::EPERM);
        denied(&r, "socket-packet", libc::EPERM);
        denied(&r, "unshare-newuser", libc::EPERM);
        allowed(&r, "socket-unix");

        // The control: without the baseline the same calls get other answers, so
        // the EPERMs above are the baseline's (this test runs as root).
        let r = run_child("off");
        assert_eq!(r["seccomp-filters"].0, 1);
        denied(&r, "clone3", libc::EINVAL);
        allowed(&r, "clone-newuser");
        // (EINVAL: unshare(CLONE_NEWUSER) needs a single-threaded process.)
        assert_ne!(r["unshare-newuser"], (-1, libc::EPERM));
        allowed(&r, "socket-netlink");
        allowed(&r, "socket-inet");
        assert_ne!(r["keyctl"], (-1, libc::EPERM));
        denied(&r, "setns", libc::EBADF);
        denied(&r, "chroot", libc::ENOENT);
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn report(name: &str, ret: i64) {
        let e = if ret < 0 { errno() } else { 0 };
        println!("BASELINE-RESULT {name} {} {e}", ret.max(-1));
    }

    /// Closes `ret` when it is an fd the attempt opened.
    fn report_fd(name: &str, ret: i64) {
        report(name, ret);
        if ret >= 0 {
            // SAFETY: ret is an fd this process just opened and owns.
            unsafe { libc::close(ret as i32) };
        }
    }

    /// A raw clone(2) with `flags` that, when it creates a child, has it exit at
    /// once; returns what the parent saw.
    fn raw_clone(flags: libc::c_long) -> i64 {
        // SAFETY: with a NULL stack, clone(2) behaves as fork: the child returns 0
        // on a copy of this stack and only calls _exit.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as libc::c_long,
                0,
                0,
                0,
                0,
            )
        };
        if r == 0 {
            // SAFETY: the child ends without running anything of the parent's.
            unsafe { libc::_exit(0) };
        }
        if r > 0 {
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(r as i32, std::ptr::null_mut(), 0) };
        }
        r
    }

    /// Installs the baseline, then makes each call with arguments that are
    /// harmless should it be allowed (this runs as root).
    #[test]
    fn baseline_child() {
        let Ok(variant) = std::env::var(CHILD_ENV) else {
            return;
        };
        if variant != "off" {
            Baseline::embedded(variant == "inet")
                .unwrap()
                .install()
                .unwrap();
        }
        let c = |s: &str| CString::new(s).unwrap();
        let (nowhere, empty) = (c("/nonexistent-caisson-baseline"), c(""));
        let sys = |nr: libc::c_long, a: [libc::c_long; 6]| -> i64 {
            // SAFETY: every call below passes NULL, invalid fds, or pointers to
            // live C strings, with which the kernel fails or does nothing harmful.
            unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
        };
        let p = |s: &CString| s.as_ptr() as libc::c_long;
        report(
            "clone-newuser",
            raw_clone(libc::CLONE_NEWUSER as libc::c_long),
        );
        report(
            "clone-newnet",
            raw_clone(libc::CLONE_NEWNET as libc::c_long),
        );
        report("clone-fork", raw_clone(0));
        report("clone3", sys(libc::SYS_clone3, [0; 6]));
        // (Were these allowed, they would only move this child process.)
        report(
            "unshare-newuser",
            sys(libc::SYS_unshare, [libc::CLONE_NEWUSER as _, 0, 0, 0, 0, 0]),
        );
        report(
            "unshare-newns",
            sys(libc::SYS_unshare, [libc::CLONE_NEWNS as _, 0, 0, 0, 0, 0]),
        );
        report(
            "unshare-newtime",
            sys(libc::SYS_unshare, [0x80, 0, 0, 0, 0, 0]),
        );
        report(
            "unshare-files",
            sys(libc::SYS_unshare, [libc::CLONE_FILES as _, 0, 0, 0, 0, 0]),
        );
        report("setns", sys(libc::SYS_setns, [-1, 0, 0, 0, 0, 0]));
        let sock = |family: i32, ty: i32| {
            sys(
                libc::SYS_socket,
                [family as _, (ty | libc::SOCK_CLOEXEC) as _, 0, 0, 0, 0],
            )
        };
        report_fd("socket-unix", sock(libc::AF_UNIX, libc::SOCK_STREAM));
        report_fd("socket-netlink", sock(libc::AF_NETLINK, libc::SOCK_RAW));
        report_fd("socket-packet", sock(libc::AF_PACKET, libc::SOCK_DGRAM));
        report_fd("socket-inet", sock(libc::AF_INET, libc::SOCK_STREAM));
        report_fd("socket-inet6", sock(libc::AF_INET6, libc::SOCK_DGRAM));
        let mut fds = [-1i32; 2];
        let pair = |family: i32, fds: &mut [i32; 2]| {
            // SAFETY: fds is a writable array of two ints.
            let r = unsafe {
                libc::socketpair(
                    family,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                )
            };
            i64::from(r)
        };
        report("socketpair-unix", pair(libc::AF_UNIX, &mut fds));
        for fd in fds.into_iter().filter(|fd| *fd >= 0) {
            // SAFETY: fd is one end of the pair this process just made.
            unsafe { libc::close(fd) };
        }
        report("socketpair-inet", pair(libc::AF_INET, &mut fds));
        let (user, desc, key) = (c("user"), c("caisson-baseline-test"), c("x"));
        // KEYCTL_GET_KEYRING_ID of the session keyring, without creating it.
        report("keyctl", sys(libc::SYS_keyctl, [0, -3, 0, 0, 0, 0]));
        // Into this process's own keyring (gone with the process).
        report(
            "add-key",
            sys(libc::SYS_add_key, [p(&user), p(&desc), p(&key), 1, -2, 0]),
        );
        report(
            "request-key",
            sys(libc::SYS_request_key, [p(&user), p(&desc), 0, 0, 0, 0]),
        );
        report("bpf", sys(libc::SYS_bpf, [-1, 0, 0, 0, 0, 0]));
        report(
            "perf-event-open",
            sys(libc::SYS_perf_event_open, [0, 0, -1, -1, 0, 0]),
        );
        report_fd(
            "userfaultfd",
            sys(libc::SYS_userfaultfd, [libc::O_CLOEXEC as _, 0, 0, 0, 0, 0]),
        );
        report(
            "ptrace",
            sys(
                libc::SYS_ptrace,
                [libc::PTRACE_PEEKDATA as _, i32::MAX as _, 0, 0, 0, 0],
            ),
        );
        report(
            "process-vm-readv",
            sys(libc::SYS_process_vm_readv, [i32::MAX as _, 0, 0, 0, 0, 0]),
        );
        report(
            "process-vm-writev",
            sys(libc::SYS_process_vm_writev, [i32::MAX as _, 0, 0, 0, 0, 0]),
        );
        let tmpfs = c("tmpfs");
        report(
            "mount",
            sys(
                libc::SYS_mount,
                [p(&tmpfs), p(&nowhere), p(&tmpfs), 0, 0, 0],
            ),
        );
        report(
            "umount2",
            sys(libc::SYS_umount2, [p(&nowhere), 0, 0, 0, 0, 0]),
        );
        report_fd("fsopen", sys(libc::SYS_fsopen, [p(&desc), 0, 0, 0, 0, 0]));
        report("fsconfig", sys(libc::SYS_fsconfig, [-1, 0, 0, 0, 0, 0]));
        report_fd("fsmount", sys(libc::SYS_fsmount, [-1, 0, 0, 0, 0, 0]));
        report_fd(
            "fspick",
            sys(libc::SYS_fspick, [-1, p(&nowhere), 0, 0, 0, 0]),
        );
        report(
            "move-mount",
            sys(
                libc::SYS_move_mount,
                [-1, p(&nowhere), -1, p(&nowhere), 0, 0],
            ),
        );
        report_fd(
            "open-tree",
            sys(libc::SYS_open_tree, [-1, p(&nowhere), 0, 0, 0, 0]),
        );
        report(
            "mount-setattr",
            sys(libc::SYS_mount_setattr, [-1, p(&nowhere), 0, 0, 0, 0]),
        );
        report(
            "pivot-root",
            sys(libc::SYS_pivot_root, [p(&nowhere), p(&nowhere), 0, 0, 0, 0]),
        );
        report(
            "chroot",
            sys(libc::SYS_chroot, [p(&nowhere), 0, 0, 0, 0, 0]),
        );
        report(
            "init-module",
            sys(libc::SYS_init_module, [0, 0, p(&empty), 0, 0, 0]),
        );
        report(
            "finit-module",
            sys(libc::SYS_finit_module, [-1, p(&empty), 0, 0, 0, 0]),
        );
        let module = c("caisson_nonexistent_module");
        report(
            "delete-module",
            sys(
                libc::SYS_delete_module,
                [p(&module), libc::O_NONBLOCK as _, 0, 0, 0, 0],
            ),
        );
        // Invalid flags: never an unload of a loaded image.
        report(
            "kexec-load",
            sys(libc::SYS_kexec_load, [0, 0, 0, 0x7ead_0000, 0, 0]),
        );
        report(
            "kexec-file-load",
            sys(libc::SYS_kexec_file_load, [-1, -1, 0, 0, 0x7ead_0000, 0]),
        );
        report(
            "swapon",
            sys(libc::SYS_swapon, [p(&nowhere), 0, 0, 0, 0, 0]),
        );
        report(
            "swapoff",
            sys(libc::SYS_swapoff, [p(&nowhere), 0, 0, 0, 0, 0]),
        );
        // Wrong magic numbers: EINVAL were it allowed.
        report("reboot", sys(libc::SYS_reboot, [0, 0, 0, 0, 0, 0]));
        // NULL, NULL: a no-op were it allowed.
        report(
            "settimeofday",
            sys(libc::SYS_settimeofday, [0, 0, 0, 0, 0, 0]),
        );
        report(
            "clock-settime",
            sys(
                libc::SYS_clock_settime,
                [libc::CLOCK_REALTIME as _, 0, 0, 0, 0, 0],
            ),
        );
        report(
            "clock-adjtime",
            sys(
                libc::SYS_clock_adjtime,
                [libc::CLOCK_REALTIME as _, 0, 0, 0, 0, 0],
            ),
        );
        report("adjtimex", sys(libc::SYS_adjtimex, [0, 0, 0, 0, 0, 0]));
        // Rust std threads: glibc tries clone3, gets ENOSYS and falls back to clone.
        let t = std::thread::spawn(|| 7).join();
        report("thread-spawn", if t.ok() == Some(7) { 0 } else { -1 });
        report_fd(
            "eventfd",
            sys(libc::SYS_eventfd2, [0, libc::EFD_CLOEXEC as _, 0, 0, 0, 0]),
        );
        let null = c("/dev/null");
        report_fd(
            "open-dev-null",
            sys(
                libc::SYS_openat,
                [libc::AT_FDCWD as _, p(&null), libc::O_RDONLY as _, 0, 0, 0],
            ),
        );
        // The VMM's own filters stack on top.
        let allow_all: BpfProgram = vec![seccompiler::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }];
        report(
            "seccomp-stacks",
            if seccompiler::apply_filter(&allow_all).is_ok() {
                0
            } else {
                -1
            },
        );
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
        let filters = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-1);
        println!("BASELINE-RESULT seccomp-filters {filters} 0");
        println!("BASELINE-RESULT done 0 0");
    }
}
