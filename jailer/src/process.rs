//! The jailer's own process: what step 1 makes of it (no inherited fds, no
//! environment, root unless rootless), `--daemonize`, and the clocks and host
//! size the sequence reads.

use std::sync::atomic::{AtomicU32, Ordering};

/// A failed change to the jailer's own process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("sanitize: {0}")]
    Sanitize(String),
    #[error(
        "caisson-jailer must run as root (euid is {euid}); use --rootless for a user namespace"
    )]
    NotRoot { euid: u32 },
    #[error("cannot daemonize: {0}")]
    Daemonize(String),
}

/// At the start of the C `main` (main.rs): what Rust's runtime would have done
/// before `fn main` that the jailer needs:
/// a write to a closed pipe is an error, not a SIGPIPE death; and fds 0-2 are
/// open (on /dev/null where they were closed), so that no file the jailer opens
/// becomes its stderr.
pub fn runtime_start() {
    // SAFETY: SIG_IGN for SIGPIPE, as Rust's runtime sets it; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll on a valid array of three pollfds, with no timeout.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: open of a static C string; the lowest free fd is the closed
        // one, p.fd, since 0-2 are filled in order.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd >= 0 && fd != p.fd {
            // SAFETY: dup2 between fds this process holds; fd is then closed.
            unsafe {
                libc::dup2(fd, p.fd);
                libc::close(fd);
            }
        }
    }
}

/// The umask read in step 1 ([`sanitize`]); `u32::MAX` until then.
static UMASK: AtomicU32 = AtomicU32::new(u32::MAX);

/// The process's umask, when step 1 has read it.
pub fn umask() -> Option<u32> {
    let m = UMASK.load(Ordering::Relaxed);
    (m != u32::MAX).then_some(m)
}

/// Whether a directory made with `mode` needs a chmod to have it: only where
/// the umask masked some of its bits, or is unknown. (A chmod is an inode
/// update, ~10 µs on this ext4, three per start.)
pub fn needs_chmod(mode: u32, umask: Option<u32>) -> bool {
    umask.is_none_or(|m| m & mode != 0)
}

/// Step 1: close every fd above 2, clear the environment, and read the umask.
pub fn sanitize() -> Result<(), ProcessError> {
    // SAFETY: close_range only closes descriptors; nothing in this process holds an
    // fd above 2 at this point (nothing has been opened yet).
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r != 0 {
        return Err(ProcessError::Sanitize(format!(
            "close_range(3, ~0): {}",
            std::io::Error::last_os_error()
        )));
    }
    // Reading the umask means setting it; no other thread runs yet (step 1).
    // SAFETY: umask only swaps the process's file-creation mask.
    let old = unsafe { libc::umask(0o077) };
    // SAFETY: as above, putting the old mask back.
    unsafe { libc::umask(old) };
    UMASK.store(old, Ordering::Relaxed);
    let keys: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in keys {
        std::env::remove_var(k);
    }
    Ok(())
}

/// Step 1: euid 0, unless the jail is rootless.
pub fn require_root(rootless: bool) -> Result<(), ProcessError> {
    if rootless {
        return Ok(());
    }
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        return Err(ProcessError::NotRoot { euid });
    }
    Ok(())
}

/// Firecracker's --daemonize: fork, new session, stdio to /dev/null.
pub fn daemonize() -> Result<(), ProcessError> {
    let err = |e: nix::Error| ProcessError::Daemonize(e.to_string());
    // SAFETY: the process is single-threaded here; the parent only exits.
    match unsafe { nix::unistd::fork() }.map_err(err)? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: _exit ends the parent without running destructors twice.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {}
    }
    nix::unistd::setsid().map_err(err)?;
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err)?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors with a valid open fd.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } < 0 {
            return Err(ProcessError::Daemonize(
                std::io::Error::last_os_error().to_string(),
            ));
        }
    }
    Ok(())
}

/// The times Firecracker's jailer passes to the VMM.
pub(crate) struct StartTimes {
    pub(crate) wall_us: u64,
    pub(crate) cpu_us: u64,
}

impl StartTimes {
    pub(crate) fn now() -> Self {
        Self {
            wall_us: clock_us(libc::CLOCK_REALTIME),
            cpu_us: cpu_time_us(),
        }
    }
}

/// The CPU time this process has used so far (Firecracker's parent CPU time).
pub(crate) fn cpu_time_us() -> u64 {
    clock_us(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000) + (ts.tv_nsec as u64) / 1000
}

/// The host's memory (MiB) and CPU count.
pub(crate) fn host_size() -> (u64, u64) {
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(u64::MAX >> 20);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    (mem_kib / 1024, cpus)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_chmod_only_where_the_umask_masked_the_mode() {
        assert!(!needs_chmod(0o755, Some(0o022)));
        assert!(!needs_chmod(0o700, Some(0o022)));
        assert!(needs_chmod(0o755, Some(0o027)));
        assert!(needs_chmod(0o755, Some(0o077)));
        assert!(!needs_chmod(0o700, Some(0o077)));
        assert!(needs_chmod(0o700, None), "an unknown umask is always fixed");
    }

    /// In a forked child (no allocation: the harness is multi-threaded), with
    /// fds 0 and 2 closed: `runtime_start` opens /dev/null on both (so that no
    /// file opened later becomes stderr) and ignores SIGPIPE.
    #[test]
    fn runtime_start_fills_closed_stdio_and_ignores_sigpipe() {
        // SAFETY: the child makes only raw syscalls and ends in _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: closing fds of this (forked) process, and SIGPIPE back
                // to its default (the harness ignores it, as Rust does).
                unsafe {
                    libc::close(0);
                    libc::close(2);
                    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                }
                runtime_start();
                let null = nix::sys::stat::stat("/dev/null").map(|s| s.st_rdev);
                let ok = [0, 2].iter().all(|fd| {
                    // SAFETY: an all-zero stat is a valid value of the C struct.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: fstat of an fd into a stat buffer of ours.
                    let r = unsafe { libc::fstat(*fd, &mut st) };
                    r == 0 && Ok(st.st_rdev) == null
                });
                // SAFETY: an all-zero sigaction is a valid value of the C struct.
                let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
                // SAFETY: reads the disposition only (null new action).
                unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) };
                let ignored = old.sa_sigaction == libc::SIG_IGN;
                // SAFETY: ends the forked child.
                unsafe { libc::_exit(i32::from(!ok) + 2 * i32::from(!ignored)) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "1: fds 0/2 not on /dev/null, 2: SIGPIPE not ignored"
                );
            }
        }
    }
}
