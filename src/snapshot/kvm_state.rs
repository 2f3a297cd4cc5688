//! Reading and writing KVM's state of the VM and of a vCPU, in the order KVM
//! needs it (Firecracker's order: CPUID first, MSRs and events last).

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_msr_entry, CpuId, Msrs, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_MAX_CPUID_ENTRIES, KVM_MAX_MSR_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use super::state::{FpuState, VcpuState, VmState};

#[derive(Debug, thiserror::Error)]
pub enum KvmStateError {
    #[error("{what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("the snapshot lists {got} {what}, more than KVM's limit of {max}")]
    TooMany {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("KVM took {set} of the {total} saved MSRs; it refused MSR {index:#x}")]
    MsrRefused {
        set: usize,
        total: usize,
        index: u32,
    },
    #[error("KVM lists {got} saveable MSRs, over the {max} a vCPU state may hold")]
    MsrList { got: usize, max: usize },
    #[error("cannot build the {what} list: {source:?}")]
    Fam {
        what: &'static str,
        source: vmm_sys_util::fam::Error,
    },
    #[error("the snapshot's TSC runs at {saved} kHz, this host's vCPU at {host} kHz, and KVM cannot scale it: {source}")]
    TscScaling {
        saved: u32,
        host: u32,
        source: kvm_ioctls::Error,
    },
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, KvmStateError> {
    r.map_err(|source| KvmStateError::Kvm { what, source })
}

/// The MSRs to save: every one KVM lists as saveable.
pub fn saveable_msrs(kvm_fd: &Kvm) -> Result<Vec<u32>, KvmStateError> {
    let list = kvm(
        "KVM_GET_MSR_INDEX_LIST",
        kvm_fd
            .get_msr_index_list()
            .map_err(|e| kvm_ioctls::Error::new(e.errno())),
    )?;
    let v = list.as_slice().to_vec();
    if v.len() > KVM_MAX_MSR_ENTRIES {
        return Err(KvmStateError::MsrList {
            got: v.len(),
            max: KVM_MAX_MSR_ENTRIES,
        });
    }
    Ok(v)
}

/// Reads a vCPU's state. The vCPU must be out of KVM_RUN, with any port or
/// MMIO exit already completed (see `Vcpu::complete_pending_io`).
pub fn save_vcpu(fd: &VcpuFd, msr_index: &[u32]) -> Result<VcpuState, KvmStateError> {
    let cpuid = kvm("KVM_GET_CPUID2", fd.get_cpuid2(KVM_MAX_CPUID_ENTRIES))?;
    let entries: Vec<kvm_msr_entry> = msr_index
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut msrs = Msrs::from_entries(&entries).map_err(|source| KvmStateError::Fam {
        what: "MSR",
        source,
    })?;
    let got = kvm("KVM_GET_MSRS", fd.get_msrs(&mut msrs))?;
    // KVM stops at the first MSR it cannot read; keep what it read.
    let msrs = msrs.as_slice()[..got.min(msrs.as_slice().len())].to_vec();
    Ok(VcpuState {
        cpuid: cpuid.as_slice().to_vec(),
        msrs,
        regs: kvm("KVM_GET_REGS", fd.get_regs())?,
        sregs: kvm("KVM_GET_SREGS", fd.get_sregs())?,
        fpu: FpuState::from(&kvm("KVM_GET_FPU", fd.get_fpu())?),
        xsave: kvm("KVM_GET_XSAVE", fd.get_xsave())?,
        xcrs: kvm("KVM_GET_XCRS", fd.get_xcrs())?,
        debug_regs: kvm("KVM_GET_DEBUGREGS", fd.get_debug_regs())?,
        lapic: kvm("KVM_GET_LAPIC", fd.get_lapic())?,
        mp_state: kvm("KVM_GET_MP_STATE", fd.get_mp_state())?,
        vcpu_events: kvm("KVM_GET_VCPU_EVENTS", fd.get_vcpu_events())?,
        tsc_khz: fd.get_tsc_khz().ok(),
    })
}

/// Writes a saved state into a freshly created vCPU.
pub fn restore_vcpu(fd: &VcpuFd, s: &VcpuState) -> Result<(), KvmStateError> {
    if s.cpuid.len() > KVM_MAX_CPUID_ENTRIES {
        return Err(KvmStateError::TooMany {
            what: "CPUID entries",
            got: s.cpuid.len(),
            max: KVM_MAX_CPUID_ENTRIES,
        });
    }
    if s.msrs.len() > KVM_MAX_MSR_ENTRIES {
        return Err(KvmStateError::TooMany {
            what: "MSRs",
            got: s.msrs.len(),
            max: KVM_MAX_MSR_ENTRIES,
        });
    }
    // The TSC frequency first: the TSC MSR's value is read against it.
    if let Some(saved) = s.tsc_khz {
        let host = fd.get_tsc_khz().unwrap_or(0);
        if host != saved {
            fd.set_tsc_khz(saved)
                .map_err(|source| KvmStateError::TscScaling {
                    saved,
                    host,
                    source,
                })?;
            log::warn!(
                "the snapshot's TSC runs at {saved} kHz, this host's at {host} kHz: KVM scales it"
            );
        }
    }
    let cpuid = CpuId::from_entries(&s.cpuid).map_err(|source| KvmStateError::Fam {
        what: "CPUID",
        source,
    })?;
    kvm("KVM_SET_CPUID2", fd.set_cpuid2(&cpuid))?;
    kvm("KVM_SET_MP_STATE", fd.set_mp_state(s.mp_state))?;
    kvm("KVM_SET_REGS", fd.set_regs(&s.regs))?;
    kvm("KVM_SET_SREGS", fd.set_sregs(&s.sregs))?;
    kvm("KVM_SET_FPU", fd.set_fpu(&(&s.fpu).into()))?;
    // SAFETY: `kvm_xsave` is the legacy 4 KiB XSAVE area KVM_GET_XSAVE filled
    // when the snapshot was taken; KVM_SET_XSAVE reads exactly that size, and
    // KVM itself checks the header it holds.
    kvm("KVM_SET_XSAVE", unsafe { fd.set_xsave(&s.xsave) })?;
    kvm("KVM_SET_XCRS", fd.set_xcrs(&s.xcrs))?;
    kvm("KVM_SET_DEBUGREGS", fd.set_debug_regs(&s.debug_regs))?;
    kvm("KVM_SET_LAPIC", fd.set_lapic(&s.lapic))?;
    let msrs = Msrs::from_entries(&s.msrs).map_err(|source| KvmStateError::Fam {
        what: "MSR",
        source,
    })?;
    let set = kvm("KVM_SET_MSRS", fd.set_msrs(&msrs))?;
    if set != s.msrs.len() {
        return Err(KvmStateError::MsrRefused {
            set,
            total: s.msrs.len(),
            index: s.msrs.get(set).map_or(0, |m| m.index),
        });
    }
    kvm("KVM_SET_VCPU_EVENTS", fd.set_vcpu_events(&s.vcpu_events))?;
    Ok(())
}

fn chip(vm: &VmFd, chip_id: u32, what: &'static str) -> Result<kvm_irqchip, KvmStateError> {
    let mut c = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    kvm(what, vm.get_irqchip(&mut c))?;
    Ok(c)
}

/// Reads the VM-wide state (vCPUs paused).
pub fn save_vm(vm: &VmFd) -> Result<VmState, KvmStateError> {
    let mut clock = kvm("KVM_GET_CLOCK", vm.get_clock())?;
    // Only the clock value carries over; the host-relative fields do not.
    clock = kvm_clock_data {
        clock: clock.clock,
        ..Default::default()
    };
    Ok(VmState {
        pic_master: chip(vm, KVM_IRQCHIP_PIC_MASTER, "KVM_GET_IRQCHIP (PIC master)")?,
        pic_slave: chip(vm, KVM_IRQCHIP_PIC_SLAVE, "KVM_GET_IRQCHIP (PIC slave)")?,
        ioapic: chip(vm, KVM_IRQCHIP_IOAPIC, "KVM_GET_IRQCHIP (IOAPIC)")?,
        pit: kvm("KVM_GET_PIT2", vm.get_pit2())?,
        clock,
    })
}

/// Writes the VM-wide state into a VM whose irqchip and PIT exist.
pub fn restore_vm(vm: &VmFd, s: &VmState) -> Result<(), KvmStateError> {
    kvm("KVM_SET_PIT2", vm.set_pit2(&s.pit))?;
    let clock = kvm_clock_data {
        clock: s.clock.clock,
        ..Default::default()
    };
    kvm("KVM_SET_CLOCK", vm.set_clock(&clock))?;
    // The chip ids are the ones each slot must hold, whatever the file says.
    for (mut c, id, what) in [
        (
            s.pic_master,
            KVM_IRQCHIP_PIC_MASTER,
            "KVM_SET_IRQCHIP (PIC master)",
        ),
        (
            s.pic_slave,
            KVM_IRQCHIP_PIC_SLAVE,
            "KVM_SET_IRQCHIP (PIC slave)",
        ),
        (s.ioapic, KVM_IRQCHIP_IOAPIC, "KVM_SET_IRQCHIP (IOAPIC)"),
    ] {
        c.chip_id = id;
        kvm(what, vm.set_irqchip(&c))?;
    }
    Ok(())
}
