//! The jailer's own process: what step 1 makes of it (no inherited fds, no
//! environment, root unless rootless), `--daemonize`, and the clocks and host
//! size the sequence reads.

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

/// Step 1: close every fd above 2 and clear the environment.
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
