//! Per-thread seccomp filters. The filters are seccompiler JSON files in seccomp/
//! (one per thread kind), compiled to BPF at build time and embedded. Each thread
//! installs its own filter before the first KVM_RUN. A forbidden syscall traps to
//! a SIGSYS handler that logs the syscall by name, writes a last metrics line
//! (`seccomp.num_faults` = 1) and then lets SIGSYS kill the process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use seccompiler::{sock_filter, BpfProgram};

include!(concat!(env!("OUT_DIR"), "/syscall_names.rs"));

static VMM_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp/vmm.bpf"));
static VCPU_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp/vcpu.bpf"));
static API_BPF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seccomp/api.bpf"));

/// The JSON sources, for checks against what devices declare.
pub const VMM_JSON: &str = include_str!("../seccomp/vmm.json");
pub const VCPU_JSON: &str = include_str!("../seccomp/vcpu.json");
pub const API_JSON: &str = include_str!("../seccomp/api.json");

/// Where the SIGSYS handler also writes its line (the log file), or -1.
static LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// The thread kinds, each with its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread: event loop and device emulation.
    Vmm,
    /// A vCPU thread.
    Vcpu,
    /// The API server thread (`fc_api`).
    Api,
}

impl ThreadKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Vmm => "vmm",
            Self::Vcpu => "vcpu",
            Self::Api => "api",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("--seccomp-filter: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--seccomp-filter: {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("--seccomp-filter: {path} has no filter for the {kind:?} threads")]
    Missing { path: PathBuf, kind: &'static str },
    #[error("the embedded {0} seccomp filter is corrupt")]
    Corrupt(&'static str),
    #[error("cannot install the {kind} seccomp filter: {source}")]
    Install {
        kind: &'static str,
        source: seccompiler::Error,
    },
    #[error("cannot install the SIGSYS handler: {0}")]
    Sigsys(vmm_sys_util::errno::Error),
}

/// The filters of every thread kind.
#[derive(Debug, Clone)]
pub struct Filters {
    vmm: BpfProgram,
    vcpu: BpfProgram,
    api: BpfProgram,
}

/// A BPF program from its embedded bytes (8 per instruction, little-endian, as
/// build.rs writes them); `None` when the length is not whole instructions.
/// The jailer's baseline is embedded the same way and decoded with this.
pub fn decode_program(bytes: &[u8]) -> Option<BpfProgram> {
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

fn decode(kind: &'static str, bytes: &[u8]) -> Result<BpfProgram, SeccompError> {
    decode_program(bytes).ok_or(SeccompError::Corrupt(kind))
}

impl Filters {
    /// The filters built into the binary from seccomp/*.json.
    pub fn embedded() -> Result<Self, SeccompError> {
        Ok(Self {
            vmm: decode("vmm", VMM_BPF)?,
            vcpu: decode("vcpu", VCPU_BPF)?,
            api: decode("api", API_BPF)?,
        })
    }

    /// Filters from a seccompiler JSON file with a `vmm`, a `vcpu` and an `api`
    /// filter (Firecracker's three thread categories).
    pub fn from_json_file(path: &Path) -> Result<Self, SeccompError> {
        let file = std::fs::File::open(path).map_err(|source| SeccompError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut map = seccompiler::compile_from_json(file, seccompiler::TargetArch::x86_64)
            .map_err(|e| SeccompError::Parse {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut take = |kind: &'static str| {
            map.remove(kind).ok_or(SeccompError::Missing {
                path: path.to_path_buf(),
                kind,
            })
        };
        Ok(Self {
            vmm: take("vmm")?,
            vcpu: take("vcpu")?,
            api: take("api")?,
        })
    }

    pub fn program(&self, kind: ThreadKind) -> &BpfProgram {
        match kind {
            ThreadKind::Vmm => &self.vmm,
            ThreadKind::Vcpu => &self.vcpu,
            ThreadKind::Api => &self.api,
        }
    }

    /// Installs `kind`'s filter on the calling thread (and sets no_new_privs).
    pub fn install(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        seccompiler::apply_filter(self.program(kind)).map_err(|source| SeccompError::Install {
            kind: kind.name(),
            source,
        })
    }
}

/// Also send the SIGSYS line to this fd (the log file).
pub fn set_log_fd(fd: i32) {
    LOG_FD.store(fd, Ordering::Relaxed);
}

/// The name of syscall `nr`, or "unknown".
pub fn syscall_name(nr: i64) -> &'static str {
    usize::try_from(nr)
        .ok()
        .and_then(|i| SYSCALL_NAMES.get(i))
        .filter(|n| !n.is_empty())
        .copied()
        .unwrap_or("unknown")
}

/// A fixed buffer that formatting writes into without allocating.
struct StackBuf {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

extern "C" fn handle_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: for SIGSYS the kernel fills `_sigsys`, whose `_syscall` int sits 24
    // bytes into siginfo_t on x86_64 (after signo, errno, code, padding, call_addr).
    let nr = unsafe { *(info as *const i32).add(6) };
    // An atomic store: async-signal-safe.
    crate::metrics::METRICS.seccomp.num_faults.store(1);
    let mut thread = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer given.
    unsafe { libc::prctl(libc::PR_GET_NAME, thread.as_mut_ptr()) };
    let tlen = thread.iter().position(|b| *b == 0).unwrap_or(thread.len());
    let tname = std::str::from_utf8(&thread[..tlen]).unwrap_or("?");
    let mut line = StackBuf {
        buf: [0; 256],
        len: 0,
    };
    // SAFETY: for an SA_SIGINFO handler the third argument is the interrupted
    // context, whose saved registers hold the syscall's arguments.
    let args = unsafe {
        let g = &(*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs;
        [
            g[libc::REG_RDI as usize],
            g[libc::REG_RSI as usize],
            g[libc::REG_RDX as usize],
        ]
    };
    let _ = writeln!(
        line,
        "caisson: seccomp: thread {tname} made the forbidden syscall {} ({nr}) with arguments {:#x}, {:#x}, {:#x}; killing the VMM with SIGSYS",
        syscall_name(i64::from(nr)),
        args[0],
        args[1],
        args[2]
    );
    for fd in [2, LOG_FD.load(Ordering::Relaxed)] {
        if fd >= 0 {
            // SAFETY: writing an initialised buffer of `len` bytes; write(2) is
            // async-signal-safe and allowed by every filter.
            unsafe { libc::write(fd, line.buf.as_ptr().cast(), line.len) };
        }
    }
    // Built on the stack, without allocating or blocking (see metrics).
    crate::metrics::flush_in_signal_handler();
    // Die by SIGSYS: with the default disposition restored, re-raising it kills the
    // process. Were these calls themselves filtered, the kernel forces SIGSYS anyway.
    // SAFETY: plain libc calls with valid arguments; the process ends here.
    unsafe {
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSYS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGSYS);
        libc::_exit(128 + libc::SIGSYS);
    }
}

/// Installs the handler that names the syscall before the process dies.
pub fn install_sigsys_handler() -> Result<(), SeccompError> {
    vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, handle_sigsys)
        .map_err(SeccompError::Sigsys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_filters_decode() {
        let f = Filters::embedded().expect("embedded filters");
        assert!(f.program(ThreadKind::Vmm).len() > 10);
        assert!(f.program(ThreadKind::Vcpu).len() > 10);
        assert!(decode("x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn syscall_names_come_from_the_headers() {
        assert_eq!(syscall_name(0), "read");
        assert_eq!(syscall_name(1), "write");
        assert_eq!(syscall_name(16), "ioctl");
        assert_eq!(syscall_name(-1), "unknown");
        assert_eq!(syscall_name(100_000), "unknown");
    }

    #[test]
    fn kick_signal_matches_the_vmm_filter() {
        // vmm.json allows tgkill only with SIGRTMIN, written there as 34.
        assert_eq!(crate::vcpu::kick_signal(), 34);
        assert!(VMM_JSON.contains("\"val\": 34"));
    }
}
