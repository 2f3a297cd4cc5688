//! vCPU threads: each is configured for the Linux 64-bit boot protocol, starts
//! paused, and once resumed runs KVM_RUN, dispatching port and MMIO exits to the
//! buses until the VM stops.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_bindings::{kvm_run, CpuId, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::arch::x86_64::emulation_assist::{self, MAX_INSN_LEN};
use crate::arch::x86_64::{lapic, msr, regs};
use crate::devices::bus::Bus;
use crate::exit::{ExitReason, ExitSignal};
use crate::metrics::METRICS;
use crate::seccomp::{Filters, SeccompError, ThreadKind};
use crate::snapshot::kvm_state::{self, KvmStateError};
use crate::snapshot::state::VcpuState;

/// The signal that kicks a vCPU out of KVM_RUN.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("vCPU {vcpu}: {what} failed: {source}")]
    Kvm {
        vcpu: u8,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("vCPU {vcpu}: KVM accepted {set} of {wanted} boot MSRs")]
    Msrs { vcpu: u8, set: usize, wanted: usize },
    #[error("vCPU {vcpu}: cannot build the MSR list: {source:?}")]
    MsrList {
        vcpu: u8,
        source: vmm_sys_util::fam::Error,
    },
    #[error("cannot install the vCPU kick signal handler: {0}")]
    Signal(vmm_sys_util::errno::Error),
    #[error("cannot spawn the thread of vCPU {vcpu}: {source}")]
    Spawn { vcpu: u8, source: std::io::Error },
    #[error("vCPU {vcpu}: {source}")]
    Seccomp { vcpu: u8, source: SeccompError },
    #[error("vCPU {vcpu}: the thread ended before it was ready")]
    NotReady { vcpu: u8 },
    #[error("vCPU {vcpu}: {source}")]
    State { vcpu: u8, source: KvmStateError },
    #[error("vCPU {vcpu} did not report its state (its thread is gone or not parked)")]
    NoState { vcpu: u8 },
}

/// What a waiting (never started, or parked) vCPU thread is told to do.
pub enum VcpuCommand {
    /// Run (again).
    Resume,
    /// Report the vCPU's state and keep waiting (the VM is paused).
    Save(SyncSender<Result<VcpuState, VcpuError>>),
}

thread_local! {
    /// This thread's `kvm_run` page, so the kick handler can set `immediate_exit`.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(|r| r.get());
    if !run.is_null() {
        // SAFETY: `run` is this thread's kvm_run mapping, set by the thread itself
        // before it first enters KVM_RUN and valid until the thread exits; a
        // volatile byte store is async-signal-safe.
        unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 1) };
    }
}

/// Installs the (process-wide) kick handler. Idempotent.
pub fn install_kick_handler() -> Result<(), VcpuError> {
    register_signal_handler(kick_signal(), handle_kick).map_err(VcpuError::Signal)
}

pub struct Vcpu {
    pub index: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: Arc<ExitSignal>,
    stop: Arc<AtomicBool>,
    pause: Arc<PauseControl>,
    /// Complete the instructions KVM's emulator cannot run (hosts without VMX/SVM).
    assists: bool,
    /// How many instructions were completed, for the log at exit.
    assisted: u64,
    /// The MSRs a snapshot saves (KVM's saveable list).
    msr_index: Arc<Vec<u32>>,
}

/// Firecracker's vCPU thread name, which orchestrators (Kata) look for.
pub fn thread_name(index: u8) -> String {
    format!("fc_vcpu {index}")
}

/// What the VM tells its vCPUs to do between runs: pause on request, and say
/// when they are parked so the pause is known to be complete.
#[derive(Debug)]
pub struct PauseControl {
    requested: AtomicBool,
    parked: std::sync::Mutex<Sender<u8>>,
}

impl PauseControl {
    /// The control and the receiver on which parked vCPUs report their index.
    pub fn new() -> (Arc<Self>, Receiver<u8>) {
        let (tx, rx) = channel();
        (
            Arc::new(Self {
                requested: AtomicBool::new(false),
                parked: std::sync::Mutex::new(tx),
            }),
            rx,
        )
    }

    pub fn request(&self, pause: bool) {
        self.requested.store(pause, Ordering::Release);
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    fn report_parked(&self, index: u8) {
        let tx = self
            .parked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = tx.send(index);
    }
}

/// A spawned vCPU thread.
pub struct VcpuHandle {
    pub index: u8,
    thread: JoinHandle<()>,
    resume: Sender<VcpuCommand>,
}

/// How long a parked vCPU may take to report its state.
const SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl VcpuHandle {
    /// Lets a vCPU that is waiting (never started, or parked by a pause) run.
    pub fn resume(&self) {
        let _ = self.resume.send(VcpuCommand::Resume);
    }

    /// The state of a parked vCPU, read on its own thread (KVM's vCPU ioctls
    /// belong to the thread that runs it, and its filter allows them).
    pub fn save_state(&self) -> Result<VcpuState, VcpuError> {
        let (tx, rx) = sync_channel(1);
        let gone = VcpuError::NoState { vcpu: self.index };
        self.resume
            .send(VcpuCommand::Save(tx))
            .map_err(|_| VcpuError::NoState { vcpu: self.index })?;
        rx.recv_timeout(SAVE_TIMEOUT).map_err(|_| gone)?
    }

    /// Interrupts KVM_RUN so the thread sees the stop flag.
    pub fn kick(&self) {
        if let Err(e) = self.thread.kill(kick_signal()) {
            log::debug!("vCPU {}: kick failed: {e}", self.index);
        }
    }

    /// Waits for the thread to end. Dropping the resume channel first lets a
    /// vCPU that was never resumed end too.
    pub fn join(self) {
        let Self {
            index,
            thread,
            resume,
        } = self;
        drop(resume);
        if thread.join().is_err() {
            log::error!("vCPU {index} thread panicked");
        }
    }
}

/// What every vCPU of a VM shares with the VM: how it ends and how it pauses.
#[derive(Clone)]
pub struct Lifecycle {
    pub exit: Arc<ExitSignal>,
    pub stop: Arc<AtomicBool>,
    pub pause: Arc<PauseControl>,
}

impl Vcpu {
    pub fn new(
        index: u8,
        fd: VcpuFd,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        lifecycle: Lifecycle,
        assists: bool,
        msr_index: Arc<Vec<u32>>,
    ) -> Self {
        let Lifecycle { exit, stop, pause } = lifecycle;
        Self {
            index,
            fd,
            pio,
            mmio,
            exit,
            stop,
            pause,
            assists,
            assisted: 0,
            msr_index,
        }
    }

    /// Puts a snapshot's state into this (new, never run) vCPU, in place of
    /// [`Vcpu::configure`].
    pub fn restore(&self, state: &VcpuState) -> Result<(), VcpuError> {
        kvm_state::restore_vcpu(&self.fd, state).map_err(|source| VcpuError::State {
            vcpu: self.index,
            source,
        })
    }

    /// Reads the state of this (parked) vCPU. A port or MMIO exit handled just
    /// before the park is completed by KVM only on the next KVM_RUN; one with
    /// `immediate_exit` set completes it without running guest code, so the
    /// state read after it is consistent (KVM's API documentation).
    fn save_state(&mut self) -> Result<VcpuState, VcpuError> {
        self.fd.set_kvm_immediate_exit(1);
        let _ = self.fd.run();
        self.fd.set_kvm_immediate_exit(0);
        kvm_state::save_vcpu(&self.fd, &self.msr_index).map_err(|source| VcpuError::State {
            vcpu: self.index,
            source,
        })
    }

    /// Waits for a command while not running: answers state requests, and
    /// returns true on Resume, false when the VM is gone.
    fn wait(&mut self, commands: &Receiver<VcpuCommand>) -> bool {
        loop {
            match commands.recv() {
                Ok(VcpuCommand::Resume) => return true,
                Ok(VcpuCommand::Save(reply)) => {
                    let _ = reply.send(self.save_state());
                }
                Err(_) => return false,
            }
        }
    }

    fn kvm<T>(&self, what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VcpuError> {
        r.map_err(|source| VcpuError::Kvm {
            vcpu: self.index,
            what,
            source,
        })
    }

    /// Sets CPUID, MSRs, registers, FPU and LAPIC for the boot protocol.
    pub fn configure(
        &self,
        cpuid: &CpuId,
        entry: u64,
        protocol: regs::BootProtocol,
    ) -> Result<(), VcpuError> {
        self.kvm("KVM_SET_CPUID2", self.fd.set_cpuid2(cpuid))?;
        let msrs = msr::boot_msrs().map_err(|source| VcpuError::MsrList {
            vcpu: self.index,
            source,
        })?;
        let set = self.kvm("KVM_SET_MSRS", self.fd.set_msrs(&msrs))?;
        if set != msrs.as_slice().len() {
            return Err(VcpuError::Msrs {
                vcpu: self.index,
                set,
                wanted: msrs.as_slice().len(),
            });
        }
        self.kvm(
            "KVM_SET_REGS",
            self.fd.set_regs(&regs::boot_regs(entry, protocol)),
        )?;
        let mut sregs = self.kvm("KVM_GET_SREGS", self.fd.get_sregs())?;
        regs::set_boot_sregs(&mut sregs, protocol);
        self.kvm("KVM_SET_SREGS", self.fd.set_sregs(&sregs))?;
        self.kvm("KVM_SET_FPU", self.fd.set_fpu(&regs::boot_fpu()))?;
        let mut lapic_state = self.kvm("KVM_GET_LAPIC", self.fd.get_lapic())?;
        lapic::set_lint(&mut lapic_state);
        self.kvm("KVM_SET_LAPIC", self.fd.set_lapic(&lapic_state))?;
        Ok(())
    }

    /// Starts the thread, which installs its seccomp filter and then stays paused
    /// until [`VcpuHandle::resume`]. Returns once the filter is in place.
    pub fn spawn(self, filters: Option<Filters>) -> Result<VcpuHandle, VcpuError> {
        let index = self.index;
        let (resume, resumed) = channel();
        let (ready_tx, ready) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(thread_name(index))
            .spawn(move || {
                let installed = match &filters {
                    Some(f) => f.install(ThreadKind::Vcpu),
                    None => Ok(()),
                };
                let ok = installed.is_ok();
                let _ = ready_tx.send(installed);
                if ok {
                    self.thread_main(resumed);
                }
            })
            .map_err(|source| VcpuError::Spawn {
                vcpu: index,
                source,
            })?;
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(VcpuError::Seccomp {
                    vcpu: index,
                    source,
                })
            }
            Err(_) => return Err(VcpuError::NotReady { vcpu: index }),
        }
        Ok(VcpuHandle {
            index,
            thread,
            resume,
        })
    }

    fn thread_main(mut self, resumed: Receiver<VcpuCommand>) {
        let run: *mut kvm_run = self.fd.get_kvm_run();
        KVM_RUN.with(|r| r.set(run));
        // Paused until the builder resumes us; a dropped sender means the VM is gone.
        if !self.wait(&resumed) {
            return;
        }
        self.run_loop(&resumed);
        KVM_RUN.with(|r| r.set(std::ptr::null_mut()));
        if self.assisted > 0 {
            log::info!(
                "vCPU {}: {} instructions completed by emulation assists",
                self.index,
                self.assisted
            );
        }
    }

    fn rip(&self) -> u64 {
        self.fd.get_regs().map(|r| r.rip).unwrap_or(0)
    }

    /// Parks the thread until the VM resumes it; false when the VM is gone.
    fn park(&mut self, resumed: &Receiver<VcpuCommand>) -> bool {
        self.pause.report_parked(self.index);
        self.wait(resumed)
    }

    fn run_loop(&mut self, resumed: &Receiver<VcpuCommand>) {
        while !self.stop.load(Ordering::Acquire) {
            // A pause request comes with a kick, so KVM_RUN returns and we get here.
            if self.pause.requested() {
                if !self.park(resumed) {
                    return;
                }
                continue;
            }
            let reason = match self.fd.run() {
                Ok(exit) => match exit {
                    VcpuExit::IoOut(port, data) => {
                        let _timed = METRICS.vcpu.io_out();
                        if !self.pio.write(u64::from(port), data) {
                            log::trace!("vCPU {}: unhandled out {port:#x}", self.index);
                        }
                        None
                    }
                    VcpuExit::IoIn(port, data) => {
                        let _timed = METRICS.vcpu.io_in();
                        if !self.pio.read(u64::from(port), data) {
                            data.fill(0xff);
                        }
                        None
                    }
                    VcpuExit::MmioRead(addr, data) => {
                        let _timed = METRICS.vcpu.mmio_read();
                        if !self.mmio.read(addr, data) {
                            data.fill(0);
                        }
                        None
                    }
                    VcpuExit::MmioWrite(addr, data) => {
                        let _timed = METRICS.vcpu.mmio_write();
                        if !self.mmio.write(addr, data) {
                            log::trace!("vCPU {}: unhandled MMIO write {addr:#x}", self.index);
                        }
                        None
                    }
                    VcpuExit::Hlt => None,
                    VcpuExit::Shutdown => Some(ExitReason::TripleFault {
                        vcpu: self.index,
                        rip: 0,
                    }),
                    VcpuExit::SystemEvent(t, _)
                        if t == KVM_SYSTEM_EVENT_SHUTDOWN || t == KVM_SYSTEM_EVENT_RESET =>
                    {
                        Some(ExitReason::SystemEvent(t))
                    }
                    VcpuExit::InternalError => {
                        self.internal_error().map(|reason| ExitReason::KvmError {
                            vcpu: self.index,
                            reason,
                            rip: 0,
                        })
                    }
                    VcpuExit::FailEntry(reason, cpu) => Some(ExitReason::KvmError {
                        vcpu: self.index,
                        reason: format!(
                            "entry failure (hardware reason {reason:#x}, host cpu {cpu})"
                        ),
                        rip: 0,
                    }),
                    other => {
                        METRICS.vcpu.failures.inc();
                        log::warn!("vCPU {}: unexpected exit {other:?}", self.index);
                        None
                    }
                },
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    None
                }
                Err(e) => Some(ExitReason::VcpuFailed {
                    vcpu: self.index,
                    error: format!("KVM_RUN: {e}"),
                }),
            };
            if let Some(mut reason) = reason {
                if matches!(
                    reason,
                    ExitReason::KvmError { .. } | ExitReason::VcpuFailed { .. }
                ) {
                    METRICS.vcpu.failures.inc();
                }
                // The RIP is read after the exit so the message names where it happened.
                match &mut reason {
                    ExitReason::TripleFault { rip, .. } | ExitReason::KvmError { rip, .. } => {
                        *rip = self.rip();
                    }
                    _ => {}
                }
                self.exit.request(reason);
                break;
            }
        }
    }

    /// Handles KVM_EXIT_INTERNAL_ERROR: completes an assisted instruction and
    /// returns None, or returns the error that stops the VM.
    fn internal_error(&mut self) -> Option<String> {
        let run = self.fd.get_kvm_run();
        // SAFETY: after KVM_EXIT_INTERNAL_ERROR, KVM fills the `internal` member of
        // the exit union (and, for an emulation failure, its `emulation_failure`
        // view); both are plain integers and arrays, valid for any bit pattern.
        let (suberror, failure) = unsafe {
            (
                run.__bindgen_anon_1.internal.suberror,
                run.__bindgen_anon_1.emulation_failure,
            )
        };
        let what = match suberror {
            1 => "emulation failure",
            2 => "simultaneous exception",
            3 => "event delivery failure",
            4 => "unexpected exit reason",
            _ => "internal error",
        };
        let mut reason = format!("internal error: {what} (suberror {suberror})");
        if suberror != kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
            return Some(reason);
        }
        // SAFETY: as above; the instruction bytes are a plain byte array.
        let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
        let bytes = if failure.flags
            & u64::from(kvm_bindings::KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)
            != 0
        {
            &insn.insn_bytes[..usize::from(insn.insn_size).min(MAX_INSN_LEN)]
        } else {
            &[][..]
        };
        let mut named = false;
        if self.assists {
            match emulation_assist::complete(&self.fd, bytes) {
                Ok(effect) => {
                    self.assisted += 1;
                    log::debug!(
                        "vCPU {}: assisted [{}]: {effect:?}",
                        self.index,
                        emulation_assist::hex(bytes)
                    );
                    return None;
                }
                Err(e) => {
                    named = matches!(
                        e,
                        emulation_assist::AssistError::Unsupported(_)
                            | emulation_assist::AssistError::NotKernelMode { .. }
                    );
                    reason.push_str(&format!(", not assisted: {e}"));
                }
            }
        }
        if !named && !bytes.is_empty() {
            reason.push_str(&format!(", instruction [{}]", emulation_assist::hex(bytes)));
        }
        Some(reason)
    }
}
