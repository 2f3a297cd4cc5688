//! Emulation assists: on hosts without VMX/SVM, KVM runs guest kernel code in its
//! instruction emulator, which cannot execute a few instructions that Linux uses
//! at CPL0. KVM then exits with an emulation failure that carries the
//! instruction's bytes; the few that can be completed faithfully from outside are
//! completed here:
//!
//! - `int3` (`cc`): RIP moves past it and #BP is injected, as the CPU's trap does;
//! - `int n` (`cd n`): RIP moves past it and vector n is injected;
//! - `fwait` (`9b`): a no-op when no unmasked x87 exception is pending, else #MF.
//!
//! Only at CPL0 (at CPL3 these run natively, so a failure there is something
//! else) and only when no other event is being delivered. Everything else stays
//! an error that names the bytes and the RIP. On hosts with VMX/SVM the assists
//! are never enabled: the builder passes `enabled = false`.

use kvm_bindings::{kvm_regs, kvm_sregs, kvm_vcpu_events};
use kvm_ioctls::VcpuFd;

/// The longest x86 instruction, and the most bytes KVM reports.
pub const MAX_INSN_LEN: usize = 15;

const INT3: u8 = 0xcc;
const INT_N: u8 = 0xcd;
const FWAIT: u8 = 0x9b;
const BP_VECTOR: u8 = 3;
const MF_VECTOR: u8 = 16;
/// x87 status word: error summary (an unmasked exception is pending).
const FSW_ES: u16 = 1 << 7;
/// CR0.NE: x87 errors are reported as #MF (Linux always sets it).
const CR0_NE: u64 = 1 << 5;

/// An instruction this module can complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    Int3,
    IntN(u8),
    Fwait,
}

impl Insn {
    /// Decodes the instruction KVM reported. Prefixed forms are not accepted:
    /// Linux never emits them and their meaning would need a full decoder.
    pub fn decode(bytes: &[u8]) -> Option<(Self, u64)> {
        match bytes {
            [INT3, ..] => Some((Self::Int3, 1)),
            [INT_N, n, ..] => Some((Self::IntN(*n), 2)),
            [FWAIT, ..] => Some((Self::Fwait, 1)),
            _ => None,
        }
    }
}

/// What to do to the vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Set RIP (past the instruction).
    Skip { rip: u64 },
    /// Set RIP, then deliver exception `vector` (no error code).
    Inject { rip: u64, vector: u8 },
    /// Set RIP, then deliver `vector` through the IDT as an interrupt (KVM takes
    /// only vectors below 32 as exceptions; at CPL0 no gate DPL check applies, so
    /// this is what `int n` does).
    Interrupt { rip: u64, vector: u8 },
}

/// Why an emulation failure was left as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssistError {
    #[error("KVM reported no instruction bytes")]
    NoBytes,
    #[error("instruction [{}] is not one the VMM completes", hex(.0))]
    Unsupported(Vec<u8>),
    #[error("instruction [{}] at CPL {cpl}: only CPL0 is assisted", hex(.bytes))]
    NotKernelMode { bytes: Vec<u8>, cpl: u8 },
    #[error("an event is already being delivered (exception {exception}, interrupt {interrupt}, nmi {nmi})")]
    EventPending {
        exception: u8,
        interrupt: u8,
        nmi: u8,
    },
    #[error("fwait with an x87 exception pending but CR0.NE clear (cr0 {cr0:#x})")]
    LegacyFpuError { cr0: u64 },
    #[error("{what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

/// Bytes as `cc 0f ae`.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The vCPU state an assist depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub rip: u64,
    /// The current privilege level (CS's RPL, which equals SS's DPL in long mode).
    pub cpl: u8,
    pub cr0: u64,
    /// The x87 status word; read only for `fwait`.
    pub fsw: u16,
}

/// Decides what an instruction does in `ctx`. Pure, so it is unit-tested.
pub fn plan(bytes: &[u8], ctx: &Context) -> Result<Effect, AssistError> {
    if bytes.is_empty() {
        return Err(AssistError::NoBytes);
    }
    let (insn, len) =
        Insn::decode(bytes).ok_or_else(|| AssistError::Unsupported(bytes.to_vec()))?;
    if ctx.cpl != 0 {
        return Err(AssistError::NotKernelMode {
            bytes: bytes[..len as usize].to_vec(),
            cpl: ctx.cpl,
        });
    }
    let next = ctx.rip.wrapping_add(len);
    Ok(match insn {
        // A software interrupt is a trap: the frame's RIP is the next instruction.
        Insn::Int3 => Effect::Inject {
            rip: next,
            vector: BP_VECTOR,
        },
        Insn::IntN(vector) => Effect::Interrupt { rip: next, vector },
        Insn::Fwait if ctx.fsw & FSW_ES == 0 => Effect::Skip { rip: next },
        // #MF is a fault: the frame's RIP is the fwait itself.
        Insn::Fwait if ctx.cr0 & CR0_NE != 0 => Effect::Inject {
            rip: ctx.rip,
            vector: MF_VECTOR,
        },
        Insn::Fwait => return Err(AssistError::LegacyFpuError { cr0: ctx.cr0 }),
    })
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, AssistError> {
    r.map_err(|source| AssistError::Kvm { what, source })
}

fn context(
    fd: &VcpuFd,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    bytes: &[u8],
) -> Result<Context, AssistError> {
    let fsw = if matches!(Insn::decode(bytes), Some((Insn::Fwait, _))) {
        kvm("KVM_GET_FPU", fd.get_fpu())?.fsw
    } else {
        0
    };
    Ok(Context {
        rip: regs.rip,
        cpl: (sregs.cs.selector & 3) as u8,
        cr0: sregs.cr0,
        fsw,
    })
}

/// Refuses to inject over an event KVM is still delivering.
fn check_no_event(events: &kvm_vcpu_events) -> Result<(), AssistError> {
    let e = &events.exception;
    if e.injected != 0
        || e.pending != 0
        || events.interrupt.injected != 0
        || events.nmi.injected != 0
    {
        return Err(AssistError::EventPending {
            exception: e.nr,
            interrupt: events.interrupt.nr,
            nmi: events.nmi.injected,
        });
    }
    Ok(())
}

/// Completes the failed instruction on `fd`, or says why not. Returns the effect.
pub fn complete(fd: &VcpuFd, bytes: &[u8]) -> Result<Effect, AssistError> {
    let mut regs = kvm("KVM_GET_REGS", fd.get_regs())?;
    let sregs = kvm("KVM_GET_SREGS", fd.get_sregs())?;
    let effect = plan(bytes, &context(fd, &regs, &sregs, bytes)?)?;
    let (rip, event) = match effect {
        Effect::Skip { rip } => (rip, None),
        Effect::Inject { rip, vector } => (rip, Some((vector, false))),
        Effect::Interrupt { rip, vector } => (rip, Some((vector, true))),
    };
    // The event is checked before RIP moves, so a refusal leaves the vCPU as it was.
    let events = match event {
        Some(_) => {
            let events = kvm("KVM_GET_VCPU_EVENTS", fd.get_vcpu_events())?;
            check_no_event(&events)?;
            Some(events)
        }
        None => None,
    };
    regs.rip = rip;
    kvm("KVM_SET_REGS", fd.set_regs(&regs))?;
    if let (Some(mut events), Some((vector, interrupt))) = (events, event) {
        if interrupt {
            events.interrupt.injected = 1;
            events.interrupt.nr = vector;
            // Not KVM's "soft" kind: that one re-derives the return RIP from an
            // instruction length KVM never saw; RIP is already past `int n`.
            events.interrupt.soft = 0;
        } else {
            events.exception.injected = 1;
            events.exception.nr = vector;
            events.exception.has_error_code = 0;
            events.exception.error_code = 0;
        }
        kvm("KVM_SET_VCPU_EVENTS", fd.set_vcpu_events(&events))?;
    }
    Ok(effect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(rip: u64) -> Context {
        Context {
            rip,
            cpl: 0,
            cr0: 0x8005_0033,
            fsw: 0,
        }
    }

    #[test]
    fn decodes_exactly_the_assisted_opcodes() {
        assert_eq!(Insn::decode(&[0xcc]), Some((Insn::Int3, 1)));
        assert_eq!(Insn::decode(&[0xcc, 0x90, 0x90]), Some((Insn::Int3, 1)));
        assert_eq!(Insn::decode(&[0xcd, 0x80]), Some((Insn::IntN(0x80), 2)));
        assert_eq!(Insn::decode(&[0x9b, 0xdb, 0xe3]), Some((Insn::Fwait, 1)));
        // int n with its immediate cut off, prefixes, and what is never assisted.
        assert_eq!(Insn::decode(&[0xcd]), None);
        assert_eq!(Insn::decode(&[0x66, 0xcc]), None);
        assert_eq!(
            Insn::decode(&[0x0f, 0xae, 0x54, 0x24, 0x04]),
            None,
            "ldmxcsr"
        );
        assert_eq!(Insn::decode(&[0x0f, 0x01, 0xcb]), None, "stac");
        assert_eq!(Insn::decode(&[0x0f, 0x01, 0xc1]), None, "vmcall");
        assert_eq!(Insn::decode(&[]), None);
    }

    #[test]
    fn int3_traps_past_itself_with_bp() {
        let e = plan(&[0xcc, 0x48], &kernel(0xffff_ffff_8100_0000)).expect("assisted");
        assert_eq!(
            e,
            Effect::Inject {
                rip: 0xffff_ffff_8100_0001,
                vector: 3
            }
        );
    }

    #[test]
    fn int_n_returns_past_its_immediate() {
        let e = plan(&[0xcd, 0x21], &kernel(0x1000)).expect("assisted");
        assert_eq!(
            e,
            Effect::Interrupt {
                rip: 0x1002,
                vector: 0x21
            }
        );
    }

    #[test]
    fn fwait_is_a_noop_without_a_pending_x87_exception() {
        assert_eq!(
            plan(&[0x9b], &kernel(0x2000)).expect("assisted"),
            Effect::Skip { rip: 0x2001 }
        );
        // Masked exception flags alone (no ES) do not fault.
        let ctx = Context {
            fsw: 0x003f,
            ..kernel(0x2000)
        };
        assert_eq!(
            plan(&[0x9b], &ctx).expect("assisted"),
            Effect::Skip { rip: 0x2001 }
        );
    }

    #[test]
    fn fwait_with_a_pending_x87_exception_raises_mf_at_itself() {
        let ctx = Context {
            fsw: 0x0081,
            ..kernel(0x2000)
        };
        assert_eq!(
            plan(&[0x9b], &ctx).expect("assisted"),
            Effect::Inject {
                rip: 0x2000,
                vector: 16
            }
        );
        let legacy = Context { cr0: 0x11, ..ctx };
        assert_eq!(
            plan(&[0x9b], &legacy),
            Err(AssistError::LegacyFpuError { cr0: 0x11 })
        );
    }

    #[test]
    fn user_mode_and_unknown_instructions_stay_errors() {
        let user = Context {
            cpl: 3,
            ..kernel(0x40_0000)
        };
        assert_eq!(
            plan(&[0xcc], &user),
            Err(AssistError::NotKernelMode {
                bytes: vec![0xcc],
                cpl: 3
            })
        );
        let err = plan(&[0x0f, 0xae, 0x54, 0x24, 0x04], &kernel(0x1000)).expect_err("ldmxcsr");
        assert_eq!(
            err.to_string(),
            "instruction [0f ae 54 24 04] is not one the VMM completes"
        );
        assert_eq!(plan(&[], &kernel(0)), Err(AssistError::NoBytes));
    }

    #[test]
    fn an_event_in_delivery_is_not_overwritten() {
        let mut ev = kvm_vcpu_events::default();
        assert!(check_no_event(&ev).is_ok());
        ev.interrupt.injected = 1;
        ev.interrupt.nr = 0xec;
        assert!(matches!(
            check_no_event(&ev),
            Err(AssistError::EventPending {
                interrupt: 0xec,
                ..
            })
        ));
        let mut ev = kvm_vcpu_events::default();
        ev.exception.pending = 1;
        assert!(check_no_event(&ev).is_err());
    }

    /// The register effects on a real vCPU (it never runs: KVM only stores them).
    mod on_kvm {
        use super::super::*;
        use kvm_ioctls::Kvm;

        fn vcpu(rip: u64, cs: u16) -> (kvm_ioctls::VmFd, VcpuFd) {
            let kvm = Kvm::new().expect("/dev/kvm");
            let vm = kvm.create_vm().expect("KVM_CREATE_VM");
            let fd = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
            let mut sregs = fd.get_sregs().expect("sregs");
            sregs.cs.selector = cs;
            sregs.cr0 |= CR0_NE;
            fd.set_sregs(&sregs).expect("set sregs");
            let mut regs = fd.get_regs().expect("regs");
            regs.rip = rip;
            regs.rax = 0x1234;
            fd.set_regs(&regs).expect("set regs");
            (vm, fd)
        }

        #[test]
        fn int3_moves_rip_and_injects_bp() {
            let (_vm, fd) = vcpu(0x10_0000, 0x10);
            let effect = complete(&fd, &[0xcc]).expect("assisted");
            assert_eq!(
                effect,
                Effect::Inject {
                    rip: 0x10_0001,
                    vector: 3
                }
            );
            let regs = fd.get_regs().expect("regs");
            assert_eq!(regs.rip, 0x10_0001);
            assert_eq!(regs.rax, 0x1234, "other registers untouched");
            // KVM reports #BP (a "soft" exception) as not injected even while it
            // holds it for delivery; the vector is what it stored.
            let ev = fd.get_vcpu_events().expect("events");
            assert_eq!(ev.exception.nr, 3);
            assert_eq!(ev.exception.has_error_code, 0);
        }

        #[test]
        fn int_n_moves_rip_and_injects_its_vector() {
            let (_vm, fd) = vcpu(0x10_0000, 0x10);
            let effect = complete(&fd, &[0xcd, 0x21]).expect("assisted");
            assert_eq!(
                effect,
                Effect::Interrupt {
                    rip: 0x10_0002,
                    vector: 0x21
                }
            );
            assert_eq!(fd.get_regs().expect("regs").rip, 0x10_0002);
            let ev = fd.get_vcpu_events().expect("events");
            assert_eq!((ev.interrupt.injected, ev.interrupt.nr), (1, 0x21));
            assert_eq!(ev.interrupt.soft, 0);
            // A second assist while that vector is still being delivered is refused.
            assert!(matches!(
                complete(&fd, &[0xcd, 0x22]),
                Err(AssistError::EventPending {
                    interrupt: 0x21,
                    ..
                })
            ));
            assert_eq!(fd.get_regs().expect("regs").rip, 0x10_0002);
        }

        #[test]
        fn fwait_only_moves_rip() {
            let (_vm, fd) = vcpu(0x20_0000, 0x10);
            assert_eq!(
                complete(&fd, &[0x9b]).expect("assisted"),
                Effect::Skip { rip: 0x20_0001 }
            );
            assert_eq!(fd.get_regs().expect("regs").rip, 0x20_0001);
            assert_eq!(fd.get_vcpu_events().expect("events").exception.injected, 0);
        }

        #[test]
        fn user_mode_is_left_alone() {
            let (_vm, fd) = vcpu(0x40_0000, 0x33);
            assert!(matches!(
                complete(&fd, &[0xcc]),
                Err(AssistError::NotKernelMode { cpl: 3, .. })
            ));
            assert_eq!(fd.get_regs().expect("regs").rip, 0x40_0000);
        }
    }
}
