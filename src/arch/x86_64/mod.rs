//! x86_64 boot: the guest memory layout, the Linux zero page, page tables, GDT,
//! registers, MSRs, CPUID, the MP table and the ACPI tables, as Firecracker sets them up.

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod emulation_assist;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;
