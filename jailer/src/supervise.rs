//! The jailer stays as a small parent: it clones the child (which becomes pid 1 of
//! a new pid namespace when asked, and is born in its cgroup v2), releases it once
//! its state is recorded, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to it, and returns
//! its exit code (or 128+signal).
//! A child that ignores a forwarded signal (pid 1 ignores signals it has no handler
//! for) is SIGKILLed after [`GRACE`].

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
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
    #[error("cannot signal child {pid} (its cgroup made, or its release): {source}")]
    Release { pid: i32, source: std::io::Error },
    #[error("the jailer ended or aborted the start before releasing the child")]
    NotReleased,
    #[error("the jailer did not make the VM's cgroup (it failed or ended first)")]
    NoCgroup,
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

/// linux/sched.h (libc's constant is an overflowing c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` (clone3), up to `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts a child running `body` (its return value is the exit code) with the
/// namespace `flags`, born inside the cgroup v2 directory `into_cgroup` when one
/// is given (`CLONE_INTO_CGROUP`: no migration, so none of the kernel's global
/// threadgroup lock that a later write to `cgroup.procs` takes). The child first
/// waits until the parent calls `release`, at its start (`Release::AtStart`) or
/// where `body` calls [`await_release`] (`Release::InBody`).
///
/// `clone3` without a stack has fork semantics: the child runs on a copy of this
/// (single-threaded) process. The forwarded signals are blocked around it, so
/// that a signal can never hit the child while it still runs the parent's
/// handler; the child restores the default dispositions, unblocks them, and asks
/// for SIGKILL when the jailer dies.
pub fn spawn(
    flags: CloneFlags,
    into_cgroup: Option<BorrowedFd<'_>>,
    release: Release,
    body: impl FnOnce() -> i32,
) -> Result<Child, SuperviseError> {
    let (rx, tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SuperviseError::Pipe)?;
    let mask = forwarded_set();
    let mut args = CloneArgs {
        flags: flags.bits() as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = into_cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    mask.thread_block().map_err(SuperviseError::Mask)?;
    // SAFETY: clone3 with fork semantics (no CLONE_VM, no stack): `args` is a valid
    // clone_args of the size passed. This process is single-threaded here, so the
    // child's copy is consistent; it ends in `_exit` and never returns to the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        let code = child_start(rx, tx, &mask, release, body);
        // SAFETY: ends the child without running the parent's destructors or atexit
        // handlers (its copy of them belongs to the jailer).
        unsafe { libc::_exit(code) }
    }
    let errno = nix::errno::Errno::last();
    if r > 0 {
        CHILD.store(r as i32, Ordering::SeqCst);
    }
    let _ = mask.thread_unblock();
    if r < 0 {
        return Err(SuperviseError::Clone {
            flags: format!(
                "{:?}{}",
                flags,
                if into_cgroup.is_some() {
                    " | CLONE_INTO_CGROUP"
                } else {
                    ""
                }
            ),
            errno,
        });
    }
    drop(rx);
    Ok(Child {
        pid: r as i32,
        go: Some(tx),
        released: false,
    })
}

/// Where the child waits for [`Child::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Before `body` runs.
    AtStart,
    /// Where `body` calls [`await_release`]: the child's work before that point
    /// overlaps the parent's between clone and release.
    InBody,
}

/// The child's read end of the go pipe, until the go byte is read.
static GO: AtomicI32 = AtomicI32::new(-1);

/// In the child: default signals, death signal, wait for the go byte (or leave
/// that to `body`), run `body`.
fn child_start(
    rx: OwnedFd,
    tx: OwnedFd,
    mask: &SigSet,
    release: Release,
    body: impl FnOnce() -> i32,
) -> i32 {
    reset_signals();
    let _ = mask.thread_unblock();
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        return SETUP_FAILED;
    }
    // The child must not hold the write end, so that it sees EOF/POLLHUP when the
    // parent dies.
    drop(tx);
    GO.store(std::os::fd::IntoRawFd::into_raw_fd(rx), Ordering::SeqCst);
    if release == Release::AtStart && await_release().is_err() {
        return SETUP_FAILED;
    }
    body()
}

/// In the child (spawned with `Release::InBody`): blocks until the parent's
/// [`Child::release`]; an error when the parent died or aborted instead.
pub fn await_release() -> Result<(), SuperviseError> {
    let fd = GO.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return Err(SuperviseError::NotReleased);
    }
    // SAFETY: fd is the go pipe's read end, taken out of GO, so owned here only.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut b = [0u8; 1];
    match f.read(&mut b) {
        Ok(1) if b[0] == GO_BYTE => {}
        _ => return Err(SuperviseError::NotReleased),
    }
    LIFELINE.store(std::os::fd::IntoRawFd::into_raw_fd(f), Ordering::SeqCst);
    Ok(())
}

/// In the child (spawned with `Release::InBody`): blocks until the parent's
/// [`Child::cgroup_made`], which comes before the release; an error when the
/// parent died or aborted instead.
pub fn await_cgroup() -> Result<(), SuperviseError> {
    let fd = GO.load(Ordering::SeqCst);
    if fd < 0 {
        return Err(SuperviseError::NoCgroup);
    }
    let mut b = [0u8; 1];
    // SAFETY: one byte into a stack buffer from the go pipe's read end, which
    // stays open (in GO) for `await_release`.
    let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
    if n == 1 && b[0] == CGROUP_MADE {
        Ok(())
    } else {
        Err(SuperviseError::NoCgroup)
    }
}

/// The byte that says the VM's cgroup is made; the release's is [`GO_BYTE`].
const CGROUP_MADE: u8 = b'C';
/// The release's byte.
const GO_BYTE: u8 = b'G';

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
    /// Lets the child go on (after its state was recorded).
    pub fn release(&mut self) -> Result<(), SuperviseError> {
        if !self.released {
            self.send(GO_BYTE)?;
            self.released = true;
        }
        Ok(())
    }

    /// Tells the child (waiting in [`await_cgroup`]) that its cgroup is made:
    /// it joins it while this side records the VM, before the release.
    pub fn cgroup_made(&mut self) -> Result<(), SuperviseError> {
        if self.released {
            return Ok(());
        }
        self.send(CGROUP_MADE)
    }

    fn send(&self, byte: u8) -> Result<(), SuperviseError> {
        let Some(tx) = self.go.as_ref() else {
            return Ok(());
        };
        // SAFETY: writing one byte from a valid buffer to our open pipe end.
        let n = unsafe { libc::write(tx.as_raw_fd(), std::ptr::from_ref(&byte).cast(), 1) };
        let err = std::io::Error::last_os_error();
        // A child released in its body may have failed (and ended) before:
        // `wait` reports its exit code. (Rust ignores SIGPIPE.)
        if n != 1 && err.raw_os_error() != Some(libc::EPIPE) {
            return Err(SuperviseError::Release {
                pid: self.pid,
                source: err,
            });
        }
        Ok(())
    }

    /// Waits, at most `timeout`, until the released child has exec'd the VMM or
    /// ended: its read end of the go pipe (close-on-exec, kept until then) closes.
    /// False on timeout, on a forwarded signal, or when the child was not released.
    pub fn await_exec(&self, timeout: Duration) -> bool {
        let Some(tx) = self.go.as_ref().filter(|_| self.released) else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd: tx.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: pfd is a valid pollfd for one open descriptor we own.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n == 1 && pfd.revents & libc::POLLERR != 0
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, IntoRawFd};
    use std::path::PathBuf;

    /// Removes the test cgroup, also when the test fails.
    struct TestCgroup(PathBuf);
    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    /// True when `text` has `line` as one of its lines. Allocates nothing (it runs
    /// in a forked child of the multi-threaded test harness).
    fn has_line(text: &[u8], line: &[u8]) -> bool {
        text.split(|b| *b == b'\n').any(|l| l == line)
    }

    /// The child's `/proc/self/cgroup` holds `line`: exit 0, else 1 (2: unreadable).
    fn child_checks_its_cgroup(line: &[u8]) -> i32 {
        let mut buf = [0u8; 4096];
        // SAFETY: open/read/close on a valid C string and a stack buffer.
        let n = unsafe {
            let fd = libc::open(c"/proc/self/cgroup".as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return 2;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        let Ok(n) = usize::try_from(n) else { return 2 };
        i32::from(!has_line(&buf[..n], line))
    }

    /// The race of issue 11: the jailer dies after the clone but before the child
    /// re-arms its death signal (cleared by the uid change). A "jailer" process
    /// spawns the child and exits; only then does the child (whose death signal
    /// was cleared, as `setuid` clears it) call `rearm_death_signal`. It must end
    /// there and never report that it went on unsupervised.
    #[test]
    fn a_child_whose_jailer_died_before_the_rearm_exits() {
        let (go_rx, go_tx) = nix::unistd::pipe().unwrap();
        let (out_rx, out_tx) = nix::unistd::pipe().unwrap();
        let (go_rx, go_tx) = (go_rx.into_raw_fd(), go_tx.into_raw_fd());
        let (out_rx, out_tx) = (out_rx.into_raw_fd(), out_tx.into_raw_fd());
        // SAFETY: the forked "jailer" only clones, writes and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let spawned = spawn(CloneFlags::empty(), None, Release::AtStart, || {
                    // As the uid change does: no death signal any more.
                    if nix::sys::prctl::set_pdeathsig(None).is_err() {
                        return 3;
                    }
                    let mut b = [0u8; 1];
                    // SAFETY: read into a stack buffer from an inherited pipe.
                    if unsafe { libc::read(go_rx, b.as_mut_ptr().cast(), 1) } != 1 {
                        return 4;
                    }
                    if rearm_death_signal().is_err() {
                        return 5;
                    }
                    // Unsupervised: say so.
                    // SAFETY: write from a static buffer to an inherited pipe.
                    unsafe { libc::write(out_tx, b"R".as_ptr().cast(), 1) };
                    0
                });
                let code = match spawned.map(|mut c| c.release()) {
                    Ok(Ok(())) => 0,
                    _ => 1,
                };
                // SAFETY: the forked jailer ends without running the harness's code.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                // SAFETY: closing this process's copies of the ends it does not use.
                unsafe {
                    libc::close(out_tx);
                    libc::close(go_rx);
                }
                let status = waitpid(child, None).unwrap();
                assert_eq!(status, WaitStatus::Exited(child, 0), "the jailer failed");
                // The jailer is gone; now let the child reach its re-arm.
                // SAFETY: writing one byte from a static buffer to our pipe end.
                assert_eq!(unsafe { libc::write(go_tx, b"G".as_ptr().cast(), 1) }, 1);
                let mut out = Vec::new();
                // SAFETY: out_rx is this process's open read end, owned from here on.
                let mut f =
                    unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(out_rx) };
                f.read_to_end(&mut out).unwrap();
                // SAFETY: closing our write end.
                unsafe { libc::close(go_tx) };
                assert!(out.is_empty(), "the child ran on after its jailer died");
            }
        }
    }

    /// With a cgroup2 directory fd, the child is born in that cgroup
    /// (CLONE_INTO_CGROUP); without one it stays in the parent's.
    #[test]
    fn child_is_born_in_its_cgroup_v2() {
        let root = crate::cgroup::v2_root();
        assert!(
            crate::cgroup::is_cgroup2(&root),
            "{} is not a cgroup2 mount (this machine kind has one)",
            root.display()
        );
        let name = format!("caisson-test-clone3-{}", std::process::id());
        let cg = TestCgroup(root.join(&name));
        std::fs::create_dir(&cg.0).unwrap();
        let dir = std::fs::File::open(&cg.0).unwrap();
        let line = format!("0::/{name}").into_bytes();

        let mut child = spawn(
            CloneFlags::empty(),
            Some(dir.as_fd()),
            Release::AtStart,
            || child_checks_its_cgroup(&line),
        )
        .unwrap();
        child.release().unwrap();
        assert_eq!(child.wait().unwrap(), 0, "child not in {}", cg.0.display());

        let mut child = spawn(CloneFlags::empty(), None, Release::AtStart, || {
            child_checks_its_cgroup(&line)
        })
        .unwrap();
        child.release().unwrap();
        assert_eq!(
            child.wait().unwrap(),
            1,
            "child in {} without the fd",
            cg.0.display()
        );
    }

    /// The child waits for its cgroup, then for its release, in that order; a
    /// release is not taken for the cgroup; a child whose jailer gives up before
    /// the cgroup is made fails there.
    #[test]
    fn the_child_waits_for_its_cgroup_then_its_release() {
        let mut child = spawn(CloneFlags::empty(), None, Release::InBody, || {
            if await_cgroup().is_err() {
                return 3;
            }
            if await_release().is_err() {
                return 4;
            }
            0
        })
        .unwrap();
        child.cgroup_made().unwrap();
        child.release().unwrap();
        assert_eq!(child.wait().unwrap(), 0);

        let mut child = spawn(CloneFlags::empty(), None, Release::InBody, || {
            i32::from(await_cgroup().is_ok()) + 5
        })
        .unwrap();
        child.release().unwrap();
        assert_eq!(child.wait().unwrap(), 5, "a release taken for the cgroup");

        // The jailer ends the start first: its end of the pipe closes.
        let mut child = spawn(
            CloneFlags::empty(),
            None,
            Release::InBody,
            || match await_cgroup() {
                Err(SuperviseError::NoCgroup) => 6,
                _ => 7,
            },
        )
        .unwrap();
        let pid = Pid::from_raw(child.pid);
        drop(child.go.take());
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 6));
    }

    /// `await_exec` reports the released child's exec (its lifeline is
    /// close-on-exec), or its end; not a child still running the jailer's code,
    /// nor one never released.
    #[test]
    fn await_exec_sees_the_exec_or_the_end_and_nothing_before() {
        let mut child = spawn(CloneFlags::empty(), None, Release::AtStart, || {
            let argv = [c"/bin/sleep".as_ptr(), c"60".as_ptr(), std::ptr::null()];
            // SAFETY: execv with a valid path and a null-terminated argv of
            // static C strings; it returns only on failure.
            unsafe { libc::execv(argv[0], argv.as_ptr()) };
            9
        })
        .unwrap();
        assert!(
            !child.await_exec(Duration::from_millis(300)),
            "an exec seen before the release"
        );
        child.release().unwrap();
        assert!(
            child.await_exec(Duration::from_secs(30)),
            "the exec not seen"
        );
        // Seen at the exec, not at the end: the sleep still runs.
        let pid = Pid::from_raw(child.pid);
        assert_eq!(
            waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap(),
            WaitStatus::StillAlive,
            "await_exec waited for the end, not the exec"
        );
        kill(pid, Signal::SIGKILL).unwrap();
        assert_eq!(
            waitpid(pid, None).unwrap(),
            WaitStatus::Signaled(pid, Signal::SIGKILL, false)
        );

        let mut child = spawn(CloneFlags::empty(), None, Release::AtStart, || {
            // SAFETY: a plain sleep in the child, no allocation.
            unsafe { libc::usleep(400_000) };
            0
        })
        .unwrap();
        child.release().unwrap();
        assert!(
            !child.await_exec(Duration::from_millis(100)),
            "an exec seen in a child that runs on without one"
        );
        assert!(
            child.await_exec(Duration::from_secs(10)),
            "the end not seen"
        );
        assert_eq!(child.wait().unwrap(), 0);
    }
}
