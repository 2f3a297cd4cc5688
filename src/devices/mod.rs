//! Emulated devices. Each declares, next to its code, what its sandbox must allow.

pub mod bus;
pub mod exit_port;
pub mod i8042;
pub mod serial;
pub mod virtio;

use crate::seccomp::ThreadKind;

/// What a part of the VMM needs from its sandbox: the host paths it opens, the fds
/// it holds, and the syscalls it makes in each filtered thread. The aggregate
/// ([`crate::sandbox::all`]) is checked against seccomp/*.json in both directions,
/// and the jailer derives its mounts, device nodes and Landlock rules from it
/// (caisson-jailer's `sandbox_plan`), tested against them in both directions too.
#[derive(Debug, Clone, Copy)]
pub struct SandboxNeeds {
    /// Who needs it; every seccomp rule's comment starts with its owners' names.
    pub owner: &'static str,
    pub paths: &'static [PathNeed],
    pub fds: &'static [FdNeed],
    pub syscalls: &'static [Syscall],
}

/// How a path is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
    /// Written (appended to), never read.
    Write,
    /// Executed: the VMM's own image, exec'd under the jailer's Landlock ruleset.
    Exec,
    /// A Unix socket created and bound there (its directory must be writable).
    Bind,
    /// A Unix socket connected to.
    Connect,
    /// A file created or replaced there (its directory must be writable).
    Create,
}

/// A host device node the VMM opens by its fixed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceNode {
    /// /dev/kvm.
    Kvm,
    /// /dev/net/tun.
    NetTun,
}

impl DeviceNode {
    pub const fn path(self) -> &'static str {
        match self {
            Self::Kvm => "/dev/kvm",
            Self::NetTun => "/dev/net/tun",
        }
    }
}

/// Where a path comes from: a fixed device node, or the flag, config field or
/// API request whose value it is (which the jailer resolves to a jail path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSource {
    Device(DeviceNode),
    /// The VMM's own executable.
    Executable,
    /// `--config-file`.
    ConfigFile,
    /// `--seccomp-filter`.
    SeccompFilter,
    /// `--api-sock` (default /run/firecracker.socket).
    ApiSocket,
    /// `boot-source.kernel_image_path` (the config's or `PUT /boot-source`'s).
    Kernel,
    /// `boot-source.initrd_path`.
    Initrd,
    /// `drives[].path_on_host` of a drive with `is_read_only`.
    ReadOnlyDrive,
    /// `drives[].path_on_host` of a writable drive.
    WritableDrive,
    /// `PATCH /drives/{id}`'s `path_on_host`, on a running VM.
    DriveUpdate,
    /// `vsock.uds_path` (or `snapshot-load.vsock_override.uds_path`).
    VsockSocket,
    /// `<vsock.uds_path>_<port>`: the host listeners guest connections go to.
    VsockPeer,
    /// `logger.log_path` (or `--log-path`).
    LogFile,
    /// `metrics.metrics_path`.
    MetricsFile,
    /// `caisson.serial` (or `--serial`) when it names a file.
    SerialFile,
    /// `snapshot-load.snapshot_path`.
    SnapshotState,
    /// `snapshot-load.mem_backend.backend_path` (or `mem_file_path`).
    SnapshotMemory,
    /// `snapshot_path` and `mem_file_path` of `PUT /snapshot/create`.
    SnapshotCreate,
}

impl PathSource {
    /// The flag, field or path, for messages and tests.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Device(d) => d.path(),
            Self::Executable => "the VMM's executable",
            Self::ConfigFile => "--config-file",
            Self::SeccompFilter => "--seccomp-filter",
            Self::ApiSocket => "--api-sock",
            Self::Kernel => "boot-source.kernel_image_path",
            Self::Initrd => "boot-source.initrd_path",
            Self::ReadOnlyDrive => "drives[].path_on_host (read-only)",
            Self::WritableDrive => "drives[].path_on_host (writable)",
            Self::DriveUpdate => "PATCH /drives/{id} path_on_host",
            Self::VsockSocket => "vsock.uds_path",
            Self::VsockPeer => "<vsock.uds_path>_<port>",
            Self::LogFile => "logger.log_path",
            Self::MetricsFile => "metrics.metrics_path",
            Self::SerialFile => "caisson.serial",
            Self::SnapshotState => "snapshot-load.snapshot_path",
            Self::SnapshotMemory => "snapshot-load memory file",
            Self::SnapshotCreate => "PUT /snapshot/create snapshot_path, mem_file_path",
        }
    }
}

/// A host path, named by where it comes from, and how it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNeed {
    pub source: PathSource,
    pub access: Access,
    /// True when it is opened after confinement (so it must be reachable in the
    /// jail, not only handed in as an fd).
    pub at_runtime: bool,
}

impl PathNeed {
    /// A path opened before the filters are installed.
    pub const fn new(source: PathSource, access: Access) -> Self {
        Self {
            source,
            access,
            at_runtime: false,
        }
    }

    /// A path opened after confinement.
    pub const fn runtime(source: PathSource, access: Access) -> Self {
        Self {
            source,
            access,
            at_runtime: true,
        }
    }
}

/// What an fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    EventFd,
    TimerFd,
    SignalFd,
    Epoll,
    /// A regular file (or a FIFO, or a block device for a drive).
    File,
    /// A terminal or whatever stdin, stdout or stderr is.
    Stdio,
    UnixListener,
    UnixStream,
    Tap,
    /// /dev/kvm or the VM fd.
    Kvm,
    /// A vCPU fd (and its kvm_run mapping).
    KvmVcpu,
}

impl FdKind {
    /// The syscalls an owner of such an fd makes on it after confinement (it
    /// declares at least one of them); empty when it may only hold it.
    pub const fn used_by(self) -> &'static [&'static str] {
        match self {
            Self::EventFd => &["read", "write"],
            Self::TimerFd | Self::SignalFd => &["read"],
            Self::Epoll => &["epoll_ctl", "epoll_wait", "epoll_pwait"],
            Self::UnixListener => &["accept4"],
            Self::UnixStream => &["read", "write", "recvfrom", "sendto"],
            Self::Tap => &["read", "write"],
            Self::Stdio => &["read", "write", "writev"],
            Self::KvmVcpu => &["ioctl"],
            Self::File | Self::Kvm => &[],
        }
    }
}

/// Where an fd comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdOrigin {
    /// Inherited from whoever started the VMM: stdin, stdout, stderr, and the tap
    /// fds `caisson.net_fds` names.
    Inherited,
    /// Opened from a path (see the owner's [`PathNeed`]s) before the filters.
    Opened,
    /// Created (eventfd, timerfd, signalfd, epoll, socket, KVM fd) before the filters.
    Created,
    /// Opened, accepted or created under the filters.
    AtRuntime,
}

/// One kind of fd an owner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdNeed {
    pub kind: FdKind,
    pub origin: FdOrigin,
    pub what: &'static str,
}

impl FdNeed {
    pub const fn new(kind: FdKind, origin: FdOrigin, what: &'static str) -> Self {
        Self { kind, origin, what }
    }
}

/// One syscall made after confinement, in the given thread kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    pub name: &'static str,
    /// For ioctl: the request's name (the filter rule's argument comment names it).
    pub ioctl: Option<&'static str>,
    pub threads: &'static [ThreadKind],
    pub why: &'static str,
}

impl Syscall {
    pub const fn new(
        name: &'static str,
        threads: &'static [ThreadKind],
        why: &'static str,
    ) -> Self {
        Self {
            name,
            ioctl: None,
            threads,
            why,
        }
    }

    pub const fn ioctl(
        request: &'static str,
        threads: &'static [ThreadKind],
        why: &'static str,
    ) -> Self {
        Self {
            name: "ioctl",
            ioctl: Some(request),
            threads,
            why,
        }
    }
}

/// Thread sets for [`Syscall::threads`].
pub const VMM: &[ThreadKind] = &[ThreadKind::Vmm];
pub const VCPU: &[ThreadKind] = &[ThreadKind::Vcpu];
pub const API: &[ThreadKind] = &[ThreadKind::Api];
pub const VMM_VCPU: &[ThreadKind] = &[ThreadKind::Vmm, ThreadKind::Vcpu];
pub const ALL_THREADS: &[ThreadKind] = &[ThreadKind::Vmm, ThreadKind::Vcpu, ThreadKind::Api];

/// Locks a device mutex, recovering from poisoning (a panicking vCPU thread aborts
/// the process in release builds anyway).
pub fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Every device's declared sandbox needs (the VMM core's and the API thread's are
/// added by [`crate::sandbox::all`]).
pub fn all_sandbox_needs() -> Vec<SandboxNeeds> {
    vec![
        serial::SANDBOX,
        i8042::SANDBOX,
        exit_port::SANDBOX,
        virtio::mmio::SANDBOX,
        virtio::block::SANDBOX,
        virtio::net::SANDBOX,
        virtio::vsock::SANDBOX,
        virtio::rng::SANDBOX,
    ]
}
