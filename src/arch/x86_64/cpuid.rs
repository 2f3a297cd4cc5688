//! CPUID for each vCPU: KVM's supported set, normalized for the vCPU's APIC id and
//! the VM's topology, with the hypervisor bit set. On hosts without hardware
//! virtualization, KVM runs guest kernel code in its instruction emulator, which
//! cannot execute some instructions; the features that need them are hidden.

use kvm_bindings::CpuId;

/// What to hide and how to describe the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidPlan {
    pub vcpu_id: u8,
    pub vcpu_count: u8,
    /// Hide features KVM's instruction emulator cannot run (no VMX/SVM on the host).
    pub emulator_safe: bool,
}

// Leaf 1 ECX.
const ECX_FMA: u32 = 1 << 12;
const ECX_CX16: u32 = 1 << 13;
const ECX_XSAVE: u32 = 1 << 26;
const ECX_OSXSAVE: u32 = 1 << 27;
const ECX_AVX: u32 = 1 << 28;
const ECX_F16C: u32 = 1 << 29;
const ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX.
const EDX_HTT: u32 = 1 << 28;
// Leaf 7.0: features whose state lives in XSAVE areas (AVX2, AVX-512, AMX, PKU).
const L7_EBX_XSAVE_DEPENDENT: u32 = (1 << 5)
    | (1 << 16)
    | (1 << 17)
    | (1 << 21)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 30)
    | (1 << 31);
const L7_ECX_XSAVE_DEPENDENT: u32 = (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 6)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 14);
const L7_EDX_XSAVE_DEPENDENT: u32 =
    (1 << 2) | (1 << 3) | (1 << 8) | (1 << 22) | (1 << 24) | (1 << 25);
const L7_1_EAX_XSAVE_DEPENDENT: u32 = (1 << 4) | (1 << 5);
// Leaf 0x4000_0001 EAX: KVM paravirtual features whose hypercalls (`vmcall`)
// hang the vCPU when KVM emulates guest kernel code: PV_UNHALT, PV_SEND_IPI,
// PV_SCHED_YIELD and HC_MAP_GPA_RANGE.
const KVM_LEAF: u32 = 0x4000_0001;
const KVM_HYPERCALL_FEATURES: u32 = (1 << 7) | (1 << 11) | (1 << 13) | (1 << 16);

/// Smallest `s` with `1 << s >= n`.
fn shift_for(n: u8) -> u32 {
    let mut s = 0;
    while (1u32 << s) < u32::from(n) {
        s += 1;
    }
    s
}

/// Whether the host CPU has VMX or SVM. Read with the CPUID instruction, not
/// /proc/cpuinfo, because a jailed VMM has no /proc.
pub fn host_has_hardware_virtualization() -> bool {
    use std::arch::x86_64::__cpuid;
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU and only reads registers.
    let (leaf1, ext_max) = unsafe { (__cpuid(1), __cpuid(0x8000_0000).eax) };
    let vmx = leaf1.ecx & (1 << 5) != 0;
    #[allow(unused_unsafe)]
    // SAFETY: as above; the extended leaf exists when ext_max reaches it.
    let svm = ext_max >= 0x8000_0001 && unsafe { __cpuid(0x8000_0001) }.ecx & (1 << 2) != 0;
    vmx || svm
}

#[cfg(test)]
fn cpuinfo_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Rewrites `cpuid` (KVM's supported set) for one vCPU.
pub fn normalize(cpuid: &mut CpuId, plan: CpuidPlan) {
    let id = u32::from(plan.vcpu_id);
    let count = u32::from(plan.vcpu_count.max(1));
    let core_shift = shift_for(plan.vcpu_count.max(1));
    for e in cpuid.as_mut_slice() {
        match (e.function, e.index) {
            (0x1, _) => {
                e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | (count.min(255) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
                if plan.emulator_safe {
                    e.ecx &= !(ECX_CX16 | ECX_XSAVE | ECX_OSXSAVE | ECX_AVX | ECX_FMA | ECX_F16C);
                }
            }
            (0x4, _) => {
                // Cores per package, minus one; one thread per core.
                e.eax = (e.eax & 0x03ff_ffff) | ((count - 1).min(63) << 26);
                e.eax &= !(0xfff << 14);
            }
            (0x7, 0) if plan.emulator_safe => {
                e.ebx &= !L7_EBX_XSAVE_DEPENDENT;
                e.ecx &= !L7_ECX_XSAVE_DEPENDENT;
                e.edx &= !L7_EDX_XSAVE_DEPENDENT;
            }
            (0x7, 1) if plan.emulator_safe => e.eax &= !L7_1_EAX_XSAVE_DEPENDENT,
            (KVM_LEAF, _) if plan.emulator_safe => e.eax &= !KVM_HYPERCALL_FEATURES,
            (0xb, level) | (0x1f, level) => {
                e.edx = id;
                match level {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (1 << 8) | level;
                    }
                    1 => {
                        e.eax = core_shift;
                        e.ebx = count;
                        e.ecx = (2 << 8) | level;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = level;
                    }
                }
            }
            (0xd, _) if plan.emulator_safe => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            (0x8000_0008, _) => {
                e.ecx = (e.ecx & !0xf0ff) | (core_shift << 12) | (count - 1);
            }
            (0x8000_001e, _) => {
                e.eax = id;
                e.ebx = (e.ebx & !0xffff) | id;
                e.ecx &= !0xff;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0xffff_ffff,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == f && e.index == i)
            .expect("leaf")
    }

    #[test]
    fn apic_ids_and_topology() {
        let mut c = CpuId::from_entries(&[
            entry(1, 0),
            entry(0xb, 0),
            entry(0xb, 1),
            entry(0xb, 2),
            entry(KVM_LEAF, 0),
        ])
        .expect("cpuid");
        normalize(
            &mut c,
            CpuidPlan {
                vcpu_id: 3,
                vcpu_count: 4,
                emulator_safe: false,
            },
        );
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.ecx & ECX_XSAVE, 0, "kept on hardware hosts");
        assert_eq!(
            find(&c, KVM_LEAF, 0).eax,
            0xffff_ffff,
            "PV features kept on hardware hosts"
        );
        assert_eq!(find(&c, 0xb, 1).ebx, 4);
        assert_eq!(find(&c, 0xb, 1).eax, 2);
        assert_eq!(find(&c, 0xb, 2).edx, 3);
    }

    #[test]
    fn emulator_safe_hides_cx16_and_xsave() {
        let mut c =
            CpuId::from_entries(&[entry(1, 0), entry(7, 0), entry(0xd, 0), entry(KVM_LEAF, 0)])
                .expect("cpuid");
        normalize(
            &mut c,
            CpuidPlan {
                vcpu_id: 0,
                vcpu_count: 1,
                emulator_safe: true,
            },
        );
        let kvm = find(&c, KVM_LEAF, 0).eax;
        assert_eq!(kvm & KVM_HYPERCALL_FEATURES, 0, "hypercall features hidden");
        assert_ne!(kvm & 1, 0, "clocksource kept");
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ecx & (ECX_CX16 | ECX_XSAVE | ECX_AVX), 0);
        assert_eq!(l1.edx & EDX_HTT, 0);
        assert_eq!(find(&c, 7, 0).ebx & (1 << 5), 0);
        assert_eq!(find(&c, 0xd, 0).eax, 0);
    }

    #[test]
    fn cpuid_agrees_with_cpuinfo() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
        assert_eq!(
            host_has_hardware_virtualization(),
            cpuinfo_has_virt(&cpuinfo)
        );
        assert!(cpuinfo_has_virt("flags\t: fpu vme svm lm\n"));
        assert!(!cpuinfo_has_virt("flags\t: fpu vme lm\nmodel name: svm\n"));
    }
}
