//! The boot state of a vCPU: general registers, segments and control registers,
//! the identity-mapping page tables and the FPU, as the Linux 64-bit boot protocol
//! expects them.

use crate::memory::GuestMemoryMmap;
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use super::gdt::{segment_from_gdt, BOOT_GDT, CODE_INDEX, DATA_INDEX, PVH_GDT, TSS_INDEX};
use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    PVH_INFO_START, ZERO_PAGE_START,
};

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// Linux 64-bit boot protocol: long mode, paging on, `rsi` = zero page.
    Linux64,
    /// PVH: 32-bit protected mode, paging off, `ebx` = `hvm_start_info`.
    Pvh,
}

impl BootProtocol {
    fn gdt(self) -> &'static [u64; 4] {
        match self {
            Self::Linux64 => &BOOT_GDT,
            Self::Pvh => &PVH_GDT,
        }
    }
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("cannot write the boot {what} at guest address {addr:#x}: {source}")]
    Write {
        what: &'static str,
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    what: &'static str,
    addr: u64,
    val: T,
) -> Result<(), RegsError> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|source| RegsError::Write { what, addr, source })
}

/// General registers: the entry point, and the boot parameters where the protocol
/// wants them (the zero page in `rsi`, or `hvm_start_info` in `rbx`).
pub fn boot_regs(entry: u64, protocol: BootProtocol) -> kvm_regs {
    match protocol {
        BootProtocol::Linux64 => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
        BootProtocol::Pvh => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rbx: PVH_INFO_START,
            ..Default::default()
        },
    }
}

/// FPU control word and MXCSR at their reset values.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Writes the boot GDT, IDT and page tables once, for all vCPUs.
pub fn write_boot_tables(mem: &GuestMemoryMmap, protocol: BootProtocol) -> Result<(), RegsError> {
    for (i, entry) in protocol.gdt().iter().enumerate() {
        write(mem, "GDT", BOOT_GDT_START + 8 * i as u64, *entry)?;
    }
    write(mem, "IDT", BOOT_IDT_START, 0u64)?;
    // PML4[0] -> PDPT, PDPT[0] -> PD, PD maps the first 1 GiB with 2 MiB pages.
    write(mem, "PML4", PML4_START, PDPTE_START | 0x03)?;
    write(mem, "PDPT", PDPTE_START, PDE_START | 0x03)?;
    for i in 0..512u64 {
        write(mem, "PD", PDE_START + i * 8, (i << 21) | 0x83)?;
    }
    Ok(())
}

/// Segment and control registers: 64-bit mode with paging on (Linux), or 32-bit
/// protected mode with paging off (PVH).
pub fn set_boot_sregs(sregs: &mut kvm_sregs, protocol: BootProtocol) {
    let gdt = protocol.gdt();
    let code = segment_from_gdt(gdt[CODE_INDEX as usize], CODE_INDEX);
    let data = segment_from_gdt(gdt[DATA_INDEX as usize], DATA_INDEX);
    let tss = segment_from_gdt(gdt[TSS_INDEX as usize], TSS_INDEX);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = u16::try_from(std::mem::size_of_val(&BOOT_GDT) - 1).unwrap_or(u16::MAX);
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    match protocol {
        BootProtocol::Linux64 => {
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        BootProtocol::Pvh => {
            // Only PE among the writable CR0 bits; CR4 and EFER clear (PVH ABI).
            sregs.cr0 = (sregs.cr0 & X86_CR0_ET) | X86_CR0_PE;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_written() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("memory");
        write_boot_tables(&mem, BootProtocol::Linux64).expect("tables");
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).expect("read");
        assert_eq!(pml4, PDPTE_START | 3);
        let last_pde: u64 = mem
            .read_obj(GuestAddress(PDE_START + 511 * 8))
            .expect("read");
        assert_eq!(last_pde, (511 << 21) | 0x83);
        let code: u64 = mem
            .read_obj(GuestAddress(BOOT_GDT_START + 8))
            .expect("read");
        assert_eq!(code, BOOT_GDT[1]);
    }

    #[test]
    fn sregs_long_mode() {
        let mut s = kvm_sregs::default();
        set_boot_sregs(&mut s, BootProtocol::Linux64);
        assert_eq!(s.cr3, PML4_START);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cs.selector, 8);
        assert_eq!(s.tr.selector, 0x18);
    }

    #[test]
    fn sregs_pvh() {
        let mut s = kvm_sregs {
            cr0: 0x6000_0010,
            cr4: 0x20,
            ..Default::default()
        };
        set_boot_sregs(&mut s, BootProtocol::Pvh);
        assert_eq!((s.cr0, s.cr4, s.efer), (0x11, 0, 0));
        assert_eq!((s.cs.l, s.cs.db), (0, 1));
        let r = boot_regs(0x1234, BootProtocol::Pvh);
        assert_eq!((r.rip, r.rbx), (0x1234, PVH_INFO_START));
    }
}
