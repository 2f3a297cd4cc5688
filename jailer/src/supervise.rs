//! The jailer stays as a small parent: it clones the child (which becomes pid 1 of
//! a new pid namespace when asked), releases it once it is in its cgroup, forwards
//! SIGTERM/SIGINT/SIGHUP/SIGQUIT to it, and returns its exit code (or 128+signal).
//! A child that ignores a forwarded signal (pid 1 ignores signals it has no handler
//! for) is SIGKILLed after [`GRACE`].

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a forwarded signal may take before the child is killed.
pub const GRACE: Duration = Duration::from_secs(5);
/// Exit code of the child when a jail step failed before exec.
pub const SETUP_FAILED: i32 = 125;

static CHILD: AtomicI32 = AtomicI32::new(0);
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

/// A supervision step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot install the handler for {signal}: {errno}")]
    Handler { signal: Signal, errno: nix::Error },
    #[error("cannot create the sync pipe: {0}")]
    Pipe(nix::Error),
    #[error("cannot block the forwarded signals around clone: {0}")]
    Mask(nix::Error),
    #[error("cannot clone the jailed child with {flags}: {errno}")]
    Clone { flags: String, errno: nix::Error },
    #[error("cannot release child {pid}: {source}")]
    Release { pid: i32, source: std::io::Error },
    #[error("cannot wait for child {pid}: {errno}")]
    Wait { pid: i32, errno: nix::Error },
}

extern "C" fn forward(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is the child we started.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The signals forwarded to the child.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Installs the forwarding handlers (without SA_RESTART, so waits are interrupted).
pub fn install_forwarding() -> Result<(), SuperviseError> {
    let act = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in FORWARDED {
        // SAFETY: `forward` only touches atomics and calls kill, both async-signal-safe.
        unsafe { sigaction(signal, &act) }
            .map_err(|errno| SuperviseError::Handler { signal, errno })?;
    }
    Ok(())
}

/// The last forwarded signal received (0 when none).
pub fn signalled() -> i32 {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Restores default dispositions (in the child, before exec).
pub fn reset_signals() {
    let act = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in FORWARDED {
        // SAFETY: installing SIG_DFL has no handler code to be unsafe.
        let _ = unsafe { sigaction(signal, &act) };
    }
}

/// A started child, blocked until [`Child::release`].
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    /// The write end of the child's lifeline: written once to release the child,
    /// then held open until the jailer exits, so the child can tell it is alive.
    go: Option<OwnedFd>,
    released: bool,
}

/// The child's read end of its lifeline (set in the child only).
static LIFELINE: AtomicI32 = AtomicI32::new(-1);

fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set
}

/// Clones a child running `body` (its return value is the exit code) with the
/// namespace `flags`. The child first waits until the parent calls `release`.
///
/// The forwarded signals are blocked around the clone, so that a signal can never
/// hit the child while it still runs the parent's handler; the child restores the
/// default dispositions, unblocks them, and asks for SIGKILL when the jailer dies.
pub fn spawn(flags: CloneFlags, mut body: impl FnMut() -> i32) -> Result<Child, SuperviseError> {
    let (rx, tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SuperviseError::Pipe)?;
    let mut stack = vec![0u8; 8 << 20];
    let mut rx_opt = Some(rx);
    let tx_raw = std::os::fd::AsRawFd::as_raw_fd(&tx);
    let mask = forwarded_set();
    let cb = Box::new(move || -> isize {
        reset_signals();
        let _ = mask.thread_unblock();
        if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
            return SETUP_FAILED as isize;
        }
        // SAFETY: in the child, tx_raw is this process's copy of the pipe's write end,
        // which the child must not hold (so it sees EOF/POLLHUP when the parent dies).
        unsafe { libc::close(tx_raw) };
        let Some(rx) = rx_opt.take() else {
            return SETUP_FAILED as isize;
        };
        let mut f = std::fs::File::from(rx);
        let mut b = [0u8; 1];
        match f.read(&mut b) {
            Ok(1) if b[0] == b'G' => {}
            _ => return SETUP_FAILED as isize,
        }
        LIFELINE.store(std::os::fd::IntoRawFd::into_raw_fd(f), Ordering::SeqCst);
        body() as isize
    });
    mask.thread_block().map_err(SuperviseError::Mask)?;
    // SAFETY: the child gets its own copy of the address space (no CLONE_VM), runs
    // `cb` on `stack`, and either execs or returns; the stack outlives the call in
    // the parent and is a copy in the child.
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) };
    if let Ok(pid) = pid {
        CHILD.store(pid.as_raw(), Ordering::SeqCst);
    }
    let _ = mask.thread_unblock();
    let pid = pid.map_err(|errno| SuperviseError::Clone {
        flags: format!("{flags:?}"),
        errno,
    })?;
    Ok(Child {
        pid: pid.as_raw(),
        go: Some(tx),
        released: false,
    })
}

/// In the child: re-arms the parent-death signal (a uid change clears it) and
/// exits at once if the jailer already died.
pub fn rearm_death_signal() -> Result<(), nix::Error> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    let fd = LIFELINE.load(Ordering::SeqCst);
    if fd < 0 {
        return Ok(());
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for one descriptor; timeout 0 does not block.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n > 0 && pfd.revents & libc::POLLHUP != 0 {
        // SAFETY: the supervisor is gone; end now without running anything else.
        unsafe { libc::_exit(SETUP_FAILED) };
    }
    Ok(())
}

impl Child {
    /// Lets the child go on (after it was put into its cgroup).
    pub fn release(&mut self) -> Result<(), SuperviseError> {
        if let (Some(tx), false) = (self.go.as_ref(), self.released) {
            let raw = std::os::fd::AsRawFd::as_raw_fd(tx);
            // SAFETY: writing one byte from a valid buffer to our open pipe end.
            let n = unsafe { libc::write(raw, b"G".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(SuperviseError::Release {
                    pid: self.pid,
                    source: std::io::Error::last_os_error(),
                });
            }
            self.released = true;
        }
        Ok(())
    }

    /// Makes the child exit without running the jail (closing the pipe).
    pub fn abort(&mut self) {
        self.go = None;
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.pid), None);
    }

    /// Waits for the child, forwarding signals; returns its exit code or 128+signal.
    pub fn wait(&self) -> Result<i32, SuperviseError> {
        let pid = Pid::from_raw(self.pid);
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && SIGNALLED.load(Ordering::SeqCst) != 0 {
                deadline = Some(Instant::now() + GRACE);
            }
            let flags = if deadline.is_some() {
                Some(WaitPidFlag::WNOHANG)
            } else {
                None
            };
            match waitpid(pid, flags) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(SuperviseError::Wait {
                        pid: self.pid,
                        errno,
                    })
                }
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    log::warn!(
                        "child {} ignored the forwarded signal; killing it",
                        self.pid
                    );
                    let _ = kill(pid, Signal::SIGKILL);
                    deadline = Some(Instant::now() + Duration::from_secs(3600));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
