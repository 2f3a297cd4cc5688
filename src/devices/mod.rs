//! Emulated devices. Each declares, next to its code, what its sandbox must allow.

pub mod bus;
pub mod exit_port;
pub mod i8042;
pub mod serial;
pub mod virtio;

/// What a device needs from its sandbox: host paths, fds it holds, syscalls it makes
/// on top of the VMM's base set. The jailer and the seccomp filters are checked
/// against these declarations.
#[derive(Debug, Clone, Copy)]
pub struct SandboxNeeds {
    pub paths: &'static [&'static str],
    pub fds: &'static [&'static str],
    pub syscalls: &'static [&'static str],
}

/// Locks a device mutex, recovering from poisoning (a panicking vCPU thread aborts
/// the process in release builds anyway).
pub fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Every device's declared sandbox needs, for the jailer and the seccomp checks.
pub fn all_sandbox_needs() -> Vec<SandboxNeeds> {
    vec![serial::SANDBOX, i8042::SANDBOX, exit_port::SANDBOX]
}
