//! What a snapshot holds: the VM's configuration, the KVM state of the VM and
//! of each vCPU, the devices' state and the layout of guest memory. Guest
//! memory itself is in the separate memory file.

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state,
    kvm_mp_state, kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave,
};
use serde::{Deserialize, Serialize};

use crate::devices::i8042::I8042State;
use crate::devices::serial::SerialState;
use crate::devices::virtio::mmio::MmioState;

/// The whole state file's payload.
#[derive(Serialize, Deserialize)]
pub struct MicrovmState {
    /// The Caisson version that wrote it (for messages; the format version is
    /// in the file's header).
    pub vmm_version: String,
    /// The configuration the VM ran with, in the config-file schema (JSON: the
    /// schema has free-form parts that a binary format cannot carry). A
    /// restore parses it with the same checks as a config file.
    pub config_json: String,
    pub memory: MemoryState,
    pub vm: VmState,
    pub vcpus: Vec<VcpuState>,
    pub devices: DevicesState,
}

/// Guest RAM as the memory file lays it out: the regions in order, each
/// right after the previous one in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryState {
    pub regions: Vec<RegionState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionState {
    pub guest_addr: u64,
    pub size: u64,
}

impl MemoryState {
    /// The bytes the memory file must hold.
    pub fn total(&self) -> u64 {
        self.regions.iter().map(|r| r.size).sum()
    }
}

/// KVM's VM-wide state: the in-kernel interrupt controllers, the PIT and the
/// KVM clock.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

/// The legacy FPU registers (kvm_fpu has no serde support of its own; with
/// XSAVE the same state is also in `xsave`, which is restored after it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpuState {
    pub fpr: [[u8; 16]; 8],
    pub fcw: u16,
    pub fsw: u16,
    pub ftwx: u8,
    pub last_opcode: u16,
    pub last_ip: u64,
    pub last_dp: u64,
    pub xmm: [[u8; 16]; 16],
    pub mxcsr: u32,
}

impl From<&kvm_fpu> for FpuState {
    fn from(f: &kvm_fpu) -> Self {
        Self {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
        }
    }
}

impl From<&FpuState> for kvm_fpu {
    fn from(f: &FpuState) -> Self {
        kvm_fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
            ..Default::default()
        }
    }
}

/// One vCPU, as KVM reports it while the vCPU is out of KVM_RUN.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// Every MSR KVM lists as saveable (KVM_GET_MSR_INDEX_LIST), with its value.
    pub msrs: Vec<kvm_msr_entry>,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: FpuState,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debug_regs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    pub vcpu_events: kvm_vcpu_events,
    /// The guest TSC frequency; None where KVM cannot tell it.
    pub tsc_khz: Option<u32>,
}

/// The devices, each by the id the config gives it.
#[derive(Serialize, Deserialize)]
pub struct DevicesState {
    pub serial: SerialState,
    pub i8042: I8042State,
    pub virtio: Vec<VirtioEntry>,
}

/// A virtio device: its transport (with the device's own state inside), under
/// the drive_id / iface_id / "vsock" / "rng" id.
#[derive(Serialize, Deserialize)]
pub struct VirtioEntry {
    pub id: String,
    pub device_type: u32,
    pub mmio: MmioState,
}
