//! What the whole VMM needs from its sandbox: every device's declaration
//! ([`crate::devices::all_sandbox_needs`]) plus the VMM core's (process, KVM,
//! boot loader, Rust runtime, signals, seccomp handler, logger, event loop, metrics, vCPU
//! loop, snapshots and restores) and the API thread's. The tests check
//! seccomp/*.json against it in both directions: each thread kind's filter allows
//! every syscall declared for it, and each rule is declared by someone, whose
//! names start the rule's `comment`. caisson-jailer derives its mounts, device
//! nodes and Landlock rules from the declared paths (its `sandbox_plan`).

use crate::devices::{
    Access, DeviceNode, FdKind, FdNeed, FdOrigin, PathNeed, PathSource, SandboxNeeds, Syscall,
    ALL_THREADS, API, VCPU, VMM, VMM_VCPU,
};

/// The process itself: its image and the files its flags name.
pub const PROCESS: SandboxNeeds = SandboxNeeds {
    owner: "process",
    paths: &[
        PathNeed::new(PathSource::Executable, Access::Exec),
        PathNeed::new(PathSource::ConfigFile, Access::Read),
        PathNeed::new(PathSource::SeccompFilter, Access::Read),
    ],
    // stdin, stdout and stderr are the serial port's and the logger's.
    fds: &[],
    syscalls: &[],
};

/// KVM itself: /dev/kvm and the VM fd, opened before the filters; after them
/// only snapshots use the VM fd (see [`SNAPSHOT`]), and vCPUs their own fds.
pub const KVM: SandboxNeeds = SandboxNeeds {
    owner: "kvm",
    paths: &[PathNeed::new(
        PathSource::Device(DeviceNode::Kvm),
        Access::ReadWrite,
    )],
    fds: &[
        FdNeed::new(FdKind::Kvm, FdOrigin::Opened, "/dev/kvm"),
        FdNeed::new(FdKind::Kvm, FdOrigin::Created, "the VM fd"),
    ],
    syscalls: &[],
};

/// The boot loader (crate::arch): the kernel and the initrd, read into guest
/// memory before the filters.
pub const BOOT: SandboxNeeds = SandboxNeeds {
    owner: "boot",
    paths: &[
        PathNeed::new(PathSource::Kernel, Access::Read),
        PathNeed::new(PathSource::Initrd, Access::Read),
    ],
    fds: &[FdNeed::new(
        FdKind::File,
        FdOrigin::Opened,
        "the kernel and the initrd, closed once loaded",
    )],
    syscalls: &[],
};

/// Rust's std, the allocator and thread start/exit, in every thread.
pub const RUNTIME: SandboxNeeds = SandboxNeeds {
    owner: "runtime",
    paths: &[],
    fds: &[],
    syscalls: &[
        Syscall::new("close", ALL_THREADS, "dropping fds"),
        Syscall::new("futex", ALL_THREADS, "locks, channels, thread joins"),
        Syscall::new("sched_yield", ALL_THREADS, "spinning locks"),
        Syscall::new("nanosleep", ALL_THREADS, "thread::sleep"),
        Syscall::new("clock_nanosleep", ALL_THREADS, "thread::sleep"),
        Syscall::new(
            "clock_gettime",
            ALL_THREADS,
            "Instant and SystemTime (when not in the vDSO)",
        ),
        Syscall::new("brk", ALL_THREADS, "the allocator"),
        Syscall::new(
            "mmap",
            ALL_THREADS,
            "the allocator: anonymous memory, never executable",
        ),
        Syscall::new("mprotect", ALL_THREADS, "the allocator, never executable"),
        Syscall::new("munmap", ALL_THREADS, "the allocator"),
        Syscall::new("madvise", ALL_THREADS, "the allocator"),
        Syscall::new("mremap", ALL_THREADS, "the allocator"),
        Syscall::new(
            "rt_sigprocmask",
            ALL_THREADS,
            "signal masks around thread exit and handlers",
        ),
        Syscall::new(
            "sigaltstack",
            ALL_THREADS,
            "std's stack-overflow guard at thread exit",
        ),
        Syscall::new("getrandom", ALL_THREADS, "HashMap seeds"),
        Syscall::new("gettid", ALL_THREADS, "thread ids"),
        Syscall::new("exit", ALL_THREADS, "thread exit"),
        Syscall::new("exit_group", ALL_THREADS, "process exit"),
        Syscall::new(
            "fcntl",
            ALL_THREADS,
            "F_GETFD only: debug builds check fds before closing them",
        ),
    ],
};

/// Signal delivery: the vCPU kick and the stop signals (on a signalfd).
pub const SIGNALS: SandboxNeeds = SandboxNeeds {
    owner: "signals",
    paths: &[],
    fds: &[FdNeed::new(
        FdKind::SignalFd,
        FdOrigin::Created,
        "the stop signals' signalfd",
    )],
    syscalls: &[
        Syscall::new(
            "rt_sigreturn",
            ALL_THREADS,
            "return from a signal handler (kick, SIGSYS)",
        ),
        Syscall::new(
            "tgkill",
            VMM,
            "kick a vCPU out of KVM_RUN with SIGRTMIN (34)",
        ),
        Syscall::new("getpid", VMM, "pthread_kill names the process to tgkill"),
        Syscall::new("read", VMM, "the stop signals' signalfd"),
    ],
};

/// The SIGSYS handler (crate::seccomp) that names a forbidden syscall.
pub const SECCOMP: SandboxNeeds = SandboxNeeds {
    owner: "seccomp",
    paths: &[],
    fds: &[],
    syscalls: &[
        Syscall::new(
            "prctl",
            ALL_THREADS,
            "PR_GET_NAME only: the SIGSYS handler names the thread",
        ),
        Syscall::new(
            "write",
            ALL_THREADS,
            "the SIGSYS handler's line and last metrics",
        ),
        Syscall::new("getpid", VMM_VCPU, "raise() in the SIGSYS handler"),
    ],
};

/// The logger (crate::logger): stderr or the log file, from any thread.
pub const LOGGER: SandboxNeeds = SandboxNeeds {
    owner: "logger",
    // Read too: Firecracker opens a log FIFO read-write, so that it opens without
    // a reader.
    paths: &[PathNeed::new(PathSource::LogFile, Access::ReadWrite)],
    fds: &[
        FdNeed::new(FdKind::Stdio, FdOrigin::Inherited, "stderr"),
        FdNeed::new(FdKind::File, FdOrigin::Opened, "the log file or FIFO"),
    ],
    syscalls: &[
        Syscall::new("write", ALL_THREADS, "log lines"),
        Syscall::new(
            "writev",
            VMM_VCPU,
            "std's buffered stderr may write vectored",
        ),
    ],
};

/// The main thread's event loop (event-manager) and its wakers.
pub const EVENT_LOOP: SandboxNeeds = SandboxNeeds {
    owner: "event loop",
    paths: &[],
    fds: &[
        FdNeed::new(FdKind::Epoll, FdOrigin::Created, "epoll fd"),
        FdNeed::new(FdKind::EventFd, FdOrigin::Created, "exit eventfd"),
        FdNeed::new(FdKind::EventFd, FdOrigin::Created, "API waker eventfd"),
    ],
    syscalls: &[
        Syscall::new("epoll_wait", VMM, "wait for device and VMM events"),
        Syscall::new("epoll_pwait", VMM, "libc may implement epoll_wait with it"),
        Syscall::new("epoll_ctl", VMM, "(un)register event sources"),
        Syscall::new("read", VMM, "drain the exit and API eventfds"),
    ],
};

/// The metrics timer and sink (crate::metrics).
pub const METRICS: SandboxNeeds = SandboxNeeds {
    owner: "metrics",
    // Read too, as the logger's.
    paths: &[PathNeed::new(PathSource::MetricsFile, Access::ReadWrite)],
    fds: &[
        FdNeed::new(FdKind::File, FdOrigin::Opened, "metrics file or FIFO"),
        FdNeed::new(FdKind::TimerFd, FdOrigin::Created, "flush timerfd"),
    ],
    syscalls: &[
        Syscall::new("read", VMM, "the periodic flush timerfd"),
        Syscall::new("write", VMM, "metrics lines"),
    ],
};

/// The vCPU run loop (crate::vcpu) and its emulation assists.
pub const VCPU_LOOP: SandboxNeeds = SandboxNeeds {
    owner: "vcpu",
    paths: &[],
    fds: &[FdNeed::new(
        FdKind::KvmVcpu,
        FdOrigin::Created,
        "the vCPU fd and its kvm_run mapping",
    )],
    syscalls: &[
        Syscall::ioctl("KVM_RUN", VCPU, "run the guest"),
        Syscall::ioctl("KVM_GET_REGS", VCPU, "report the RIP of a failed vCPU"),
        Syscall::ioctl(
            "KVM_GET_SREGS",
            VCPU,
            "emulation assists: the CPL of a failed instruction",
        ),
        Syscall::ioctl(
            "KVM_SET_REGS",
            VCPU,
            "emulation assists: move RIP past a completed instruction",
        ),
        Syscall::ioctl(
            "KVM_GET_FPU",
            VCPU,
            "emulation assists: the x87 status word for fwait",
        ),
        Syscall::ioctl(
            "KVM_GET_VCPU_EVENTS",
            VCPU,
            "emulation assists: no event is being delivered",
        ),
        Syscall::ioctl(
            "KVM_SET_VCPU_EVENTS",
            VCPU,
            "emulation assists: inject #BP, int n or #MF",
        ),
        Syscall::new(
            "write",
            VCPU,
            "signal the VM's end (shutdown, triple fault) on the exit eventfd",
        ),
    ],
};

/// Snapshots (crate::snapshot): each parked vCPU reads its own state; the
/// VMM thread reads the VM's and writes the two files.
pub const SNAPSHOT: SandboxNeeds = SandboxNeeds {
    owner: "snapshot",
    paths: &[PathNeed::runtime(
        PathSource::SnapshotCreate,
        Access::Create,
    )],
    fds: &[FdNeed::new(
        FdKind::File,
        FdOrigin::AtRuntime,
        "the state and memory files, while a create writes them",
    )],
    syscalls: &[
        Syscall::ioctl(
            "KVM_RUN",
            VCPU,
            "complete a pending port or MMIO exit before the state is read (immediate_exit)",
        ),
        Syscall::ioctl("KVM_GET_CPUID2", VCPU, "the vCPU's CPUID"),
        Syscall::ioctl("KVM_GET_MSRS", VCPU, "the saveable MSRs"),
        Syscall::ioctl("KVM_GET_REGS", VCPU, "general registers"),
        Syscall::ioctl("KVM_GET_SREGS", VCPU, "segment and control registers"),
        Syscall::ioctl("KVM_GET_FPU", VCPU, "legacy FPU state"),
        Syscall::ioctl("KVM_GET_XSAVE", VCPU, "XSAVE state"),
        Syscall::ioctl("KVM_GET_XCRS", VCPU, "extended control registers"),
        Syscall::ioctl("KVM_GET_DEBUGREGS", VCPU, "debug registers"),
        Syscall::ioctl("KVM_GET_LAPIC", VCPU, "the local APIC"),
        Syscall::ioctl("KVM_GET_MP_STATE", VCPU, "the multiprocessing state"),
        Syscall::ioctl(
            "KVM_GET_VCPU_EVENTS",
            VCPU,
            "pending exceptions and interrupts",
        ),
        Syscall::ioctl("KVM_GET_TSC_KHZ", VCPU, "the guest TSC frequency"),
        Syscall::ioctl("KVM_GET_IRQCHIP", VMM, "the PICs and the IOAPIC"),
        Syscall::ioctl("KVM_GET_PIT2", VMM, "the PIT"),
        Syscall::ioctl("KVM_GET_CLOCK", VMM, "the KVM clock"),
        Syscall::ioctl(
            "KVM_GET_DIRTY_LOG",
            VMM,
            "the pages the guest dirtied (Diff)",
        ),
        Syscall::new("openat", VMM, "create or open the state and memory files"),
        Syscall::new("statx", VMM, "the memory file's current size"),
        Syscall::new("ftruncate", VMM, "size the memory file (sparse)"),
        Syscall::new("write", VMM, "the state file"),
        Syscall::new(
            "pwrite64",
            VMM,
            "each run of pages at its place in the memory file",
        ),
        Syscall::new(
            "fsync",
            VMM,
            "both files are on disk before the create answers",
        ),
    ],
};

/// Restores (crate::snapshot, `snapshot-load` or `PUT /snapshot/load`): the
/// state file is read and the memory file mapped private, before the filters.
pub const RESTORE: SandboxNeeds = SandboxNeeds {
    owner: "restore",
    paths: &[
        PathNeed::new(PathSource::SnapshotState, Access::Read),
        PathNeed::new(PathSource::SnapshotMemory, Access::Read),
    ],
    fds: &[FdNeed::new(
        FdKind::File,
        FdOrigin::Opened,
        "the memory file, mapped as guest memory",
    )],
    syscalls: &[],
};

/// The API server thread `fc_api` (crate::api).
pub const API_THREAD: SandboxNeeds = SandboxNeeds {
    owner: "api",
    paths: &[PathNeed::new(PathSource::ApiSocket, Access::Bind)],
    fds: &[
        FdNeed::new(FdKind::UnixListener, FdOrigin::Created, "the API socket"),
        FdNeed::new(FdKind::Epoll, FdOrigin::Created, "its epoll fd"),
        FdNeed::new(
            FdKind::UnixStream,
            FdOrigin::AtRuntime,
            "one socket per connection",
        ),
        FdNeed::new(
            FdKind::EventFd,
            FdOrigin::Created,
            "the VMM's waker eventfd",
        ),
    ],
    syscalls: &[
        Syscall::new("accept4", API, "connections to the API socket"),
        Syscall::ioctl(
            "FIONBIO",
            API,
            "std's set_nonblocking on accepted connections",
        ),
        Syscall::new("recvfrom", API, "std's UnixStream::read"),
        Syscall::new("sendto", API, "std's UnixStream::write"),
        Syscall::new(
            "read",
            API,
            "reads on connections that std does not route to recv",
        ),
        Syscall::new("write", API, "wake the VMM thread through its eventfd"),
        Syscall::new("epoll_wait", API, "wait for connections"),
        Syscall::new("epoll_pwait", API, "libc may implement epoll_wait with it"),
        Syscall::new("epoll_ctl", API, "watch connections"),
    ],
};

/// Every declaration: the VMM core's, the API thread's and every device's.
pub fn all() -> Vec<SandboxNeeds> {
    let mut all = vec![
        PROCESS, KVM, BOOT, RUNTIME, SIGNALS, SECCOMP, LOGGER, EVENT_LOOP, METRICS, VCPU_LOOP,
        SNAPSHOT, RESTORE, API_THREAD,
    ];
    all.extend(crate::devices::all_sandbox_needs());
    all
}

/// Every declared host path, for the jailer's mounts and Landlock rules.
pub fn all_paths() -> Vec<(&'static str, PathNeed)> {
    all()
        .iter()
        .flat_map(|n| n.paths.iter().map(|p| (n.owner, *p)))
        .collect()
}

/// Every declared fd, with its owner.
pub fn all_fds() -> Vec<(&'static str, FdNeed)> {
    all()
        .iter()
        .flat_map(|n| n.fds.iter().map(|f| (n.owner, *f)))
        .collect()
}

#[cfg(test)]
mod tests;
