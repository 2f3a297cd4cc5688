//! Why the VM stopped, and the process exit code each reason maps to.
//!
//! Any thread (a vCPU, a device, the signal handler) may request the VM's end;
//! the first request wins and wakes the main event loop.

use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Exit codes, as documented in the README.
pub mod code {
    pub const OK: i32 = 0;
    pub const VMM_ERROR: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const TRIPLE_FAULT: i32 = 3;
    pub const KVM_ERROR: i32 = 4;
    pub const GUEST_FAILURE: i32 = 65;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest reset the machine through the i8042 (0xFE to port 0x64).
    GuestReset,
    /// KVM reported a system event (shutdown or reset) from the guest.
    SystemEvent(u32),
    /// A test guest wrote its status to the debug exit port.
    ExitPort(u8),
    /// A vCPU triple faulted (KVM_EXIT_SHUTDOWN).
    TripleFault { vcpu: u8, rip: u64 },
    /// KVM could not run the guest: an internal error, emulation failure or failed entry.
    KvmError { vcpu: u8, reason: String, rip: u64 },
    /// A vCPU thread hit a host error.
    VcpuFailed { vcpu: u8, error: String },
    /// The VMM was asked to stop (SIGTERM, SIGINT, SIGHUP).
    Signal(i32),
}

impl ExitReason {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::GuestReset | Self::SystemEvent(_) | Self::ExitPort(0) | Self::Signal(_) => {
                code::OK
            }
            Self::ExitPort(_) => code::GUEST_FAILURE,
            Self::TripleFault { .. } => code::TRIPLE_FAULT,
            Self::KvmError { .. } => code::KVM_ERROR,
            Self::VcpuFailed { .. } => code::VMM_ERROR,
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GuestReset => write!(f, "guest reset the VM (i8042)"),
            Self::SystemEvent(t) => write!(f, "guest system event {t}"),
            Self::ExitPort(s) => write!(f, "guest wrote status {s} to the exit port"),
            Self::TripleFault { vcpu, rip } => {
                write!(
                    f,
                    "vCPU {vcpu} triple faulted (KVM_EXIT_SHUTDOWN) at RIP {rip:#x}"
                )
            }
            Self::KvmError { vcpu, reason, rip } => {
                write!(f, "vCPU {vcpu}: KVM {reason} at RIP {rip:#x}")
            }
            Self::VcpuFailed { vcpu, error } => write!(f, "vCPU {vcpu} failed: {error}"),
            Self::Signal(s) => write!(f, "stopped by signal {s}"),
        }
    }
}

/// The VM-wide stop request.
#[derive(Debug)]
pub struct ExitSignal {
    reason: Mutex<Option<ExitReason>>,
    evt: EventFd,
}

impl ExitSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            reason: Mutex::new(None),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` unless another one came first, and wakes the event loop.
    pub fn request(&self, reason: ExitReason) {
        let mut slot = match self.reason.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if slot.is_none() {
            *slot = Some(reason);
        }
        // Only fails if the counter would overflow, which means a wakeup is pending anyway.
        let _ = self.evt.write(1);
    }

    pub fn reason(&self) -> Option<ExitReason> {
        match self.reason.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}
