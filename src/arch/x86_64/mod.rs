//! x86_64 boot: the guest memory layout, the Linux zero page, page tables, GDT,
//! registers, MSRs, CPUID and the MP table, as Firecracker sets them up.

pub mod boot;
pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;
