//! Emulated devices. Each declares, next to its code, what its sandbox must allow.

pub mod bus;
pub mod exit_port;
pub mod i8042;
pub mod serial;
pub mod virtio;

use crate::seccomp::ThreadKind;

/// What a part of the VMM needs from its sandbox: the host paths it opens, the fds
/// it is handed, and the syscalls it makes in each filtered thread. The aggregate
/// ([`crate::sandbox::all`]) is checked against seccomp/*.json in both directions,
/// and is what the jailer can derive its mounts and Landlock rules from.
#[derive(Debug, Clone, Copy)]
pub struct SandboxNeeds {
    /// Who needs it; every seccomp rule's comment starts with its owners' names.
    pub owner: &'static str,
    pub paths: &'static [PathNeed],
    /// The fds it holds, all opened or created before the filters are installed.
    pub fds: &'static [&'static str],
    pub syscalls: &'static [Syscall],
}

/// How a path is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
    /// A Unix socket created and bound there (its directory must be writable).
    Bind,
    /// A Unix socket connected to.
    Connect,
    /// A file created or replaced there (its directory must be writable).
    Create,
}

/// A host path, named by the config field it comes from (or literally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNeed {
    pub path: &'static str,
    pub access: Access,
    /// True when it is opened after confinement (so it must be reachable in the
    /// jail, not only handed in as an fd).
    pub at_runtime: bool,
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
