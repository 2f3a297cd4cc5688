//! ACPI tables, the way stock distribution kernels discover a microVM's
//! hardware: most lack `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` and find virtio-mmio
//! transports only through the DSDT (as on Firecracker since 1.8).
//!
//! The tables, built with rust-vmm's `acpi_tables`, sit in the BIOS area
//! [`ACPI_START`]..[`ACPI_END`], which the e820 map marks reserved:
//!
//! - RSDP (revision 2) at [`ACPI_START`], found by Linux's scan of that area or
//!   through `boot_params.acpi_rsdp_addr` / PVH `rsdp_paddr`; it points to
//! - XSDT, listing the FADT and the MADT;
//! - FADT: hardware-reduced ACPI (no PM timer, SCI or fixed buttons), boot flags
//!   "8042 present" (so Linux probes the i8042), "no VGA", "no MSI", the i8042
//!   reset (0xfe to port 0x64) as reset register, and the DSDT's address;
//! - MADT: one enabled local APIC per vCPU (APIC id = vCPU index, as in the MP
//!   table and CPUID) and the IOAPIC, GSI base 0. No interrupt source overrides:
//!   KVM routes each ISA IRQ to the IOAPIC pin of the same number (the PIT too),
//!   which is what ACPI assumes without them;
//! - DSDT: COM1 (PNP0501), the i8042 keyboard controller (PNP0303) and one
//!   LNRO0005 device per virtio-mmio window, with its IRQ edge-triggered and
//!   active high (the transports signal through irqfds, which pulse the line).
//!
//! This module knows nothing of devices: it takes the windows as plain data.

use crate::memory::GuestMemoryMmap;
use acpi_tables::fadt::{FADTBuilder, Flags, FADT};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use vm_memory::{Bytes, GuestAddress};

use super::layout::{
    ACPI_END, ACPI_START, APIC_START, I8042_IRQ, I8042_PORT_BASE, IOAPIC_START, IRQ_MAX,
    SERIAL_IRQ, SERIAL_PORT_BASE, SERIAL_PORT_LEN,
};
use super::mptable;

const OEM_ID: [u8; 6] = *b"CAISSN";
const OEM_TABLE_ID: [u8; 8] = *b"CAISSON ";
const OEM_REVISION: u32 = 1;
/// FADT "hypervisor vendor identity": lets a guest tell it runs under Caisson.
const HYPERVISOR_VENDOR_ID: [u8; 8] = *b"CAISSON ";
/// DSDT revision 2 and later use 64-bit AML integers.
const DSDT_REVISION: u8 = 6;
/// IA-PC boot architecture flags (FADT offset 109).
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_PRESENT: u16 = 1 << 3;
/// The i8042 command port and the command that pulses the reset line.
const I8042_COMMAND_PORT: u16 = I8042_PORT_BASE + 4;
const I8042_RESET: u8 = 0xfe;
/// Tables after the RSDP start on this alignment.
const TABLE_ALIGN: u64 = 16;
/// DSDT device names are `V` and three hex digits.
const MAX_WINDOWS: usize = 0x1000;

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("{0} vCPUs do not fit the MADT (1 to 254, as in the MP table)")]
    VcpuCount(u8),
    #[error("{count} virtio-mmio windows do not fit the DSDT (at most {MAX_WINDOWS})")]
    TooManyWindows { count: usize },
    #[error(
        "virtio-mmio window {base:#x} ({size:#x} bytes) is not below 4 GiB, as Memory32Fixed needs"
    )]
    WindowAbove4G { base: u64, size: u64 },
    #[error("virtio-mmio window {base:#x} has IRQ {irq}, beyond the IOAPIC's last line {IRQ_MAX}")]
    Irq { base: u64, irq: u32 },
    #[error("the ACPI tables end at {end:#x}, past the end of their area {ACPI_END:#x}")]
    TooBig { end: u64 },
    #[error("cannot write the ACPI {table} at {addr:#x}: {source}")]
    Write {
        table: &'static str,
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

/// A virtio-mmio transport's register window and its IOAPIC input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioWindow {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
}

/// One table and the guest address it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// Every table, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub rsdp: Table,
    pub xsdt: Table,
    pub fadt: Table,
    pub madt: Table,
    pub dsdt: Table,
}

impl AcpiTables {
    /// The tables with their names, in address order.
    pub fn all(&self) -> [(&'static str, &Table); 5] {
        [
            ("RSDP", &self.rsdp),
            ("FADT", &self.fadt),
            ("MADT", &self.madt),
            ("DSDT", &self.dsdt),
            ("XSDT", &self.xsdt),
        ]
    }
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn align_up(addr: u64) -> u64 {
    addr.div_ceil(TABLE_ALIGN) * TABLE_ALIGN
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // No fixed-feature power or sleep button.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    b.iapc_boot_arch = (IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_PRESENT).into();
    b.reset_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(I8042_COMMAND_PORT),
    );
    b.reset_value = I8042_RESET;
    b.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR_ID).into();
    to_bytes(&b.finalize())
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    for cpu in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(
        mptable::ioapic_id(vcpus),
        IOAPIC_START as u32,
        0,
    ));
    to_bytes(&madt)
}

/// `Name (_HID, ...)`, `Name (_UID, ...)` and `Name (_CRS, ...)` in a `Device`.
fn device(name: &str, hid: &dyn Aml, uid: u32, resources: Vec<&dyn Aml>) -> Vec<u8> {
    to_bytes(&aml::Device::new(
        name.into(),
        vec![
            &aml::Name::new("_HID".into(), hid),
            &aml::Name::new("_UID".into(), &uid),
            &aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(resources)),
        ],
    ))
}

/// Extended interrupt descriptor: consumer, edge-triggered, active high, exclusive.
fn edge_irq(irq: u32) -> aml::Interrupt {
    aml::Interrupt::new(true, true, false, false, irq)
}

fn dsdt(windows: &[VirtioMmioWindow]) -> Result<Vec<u8>, AcpiError> {
    if windows.len() > MAX_WINDOWS {
        return Err(AcpiError::TooManyWindows {
            count: windows.len(),
        });
    }
    let mut devices = device(
        "COM1",
        &aml::EISAName::new("PNP0501"),
        0,
        vec![
            &aml::IO::new(SERIAL_PORT_BASE, SERIAL_PORT_BASE, 1, SERIAL_PORT_LEN as u8),
            &edge_irq(SERIAL_IRQ),
        ],
    );
    devices.extend(device(
        "PS2_",
        &aml::EISAName::new("PNP0303"),
        0,
        vec![
            &aml::IO::new(I8042_PORT_BASE, I8042_PORT_BASE, 1, 1),
            &aml::IO::new(I8042_COMMAND_PORT, I8042_COMMAND_PORT, 1, 1),
            &edge_irq(I8042_IRQ),
        ],
    ));
    for (uid, w) in (0u32..).zip(windows) {
        let below_4g = u32::try_from(w.base)
            .ok()
            .zip(u32::try_from(w.size).ok())
            .filter(|(base, size)| u64::from(*base) + u64::from(*size) <= 1 << 32);
        let Some((base, size)) = below_4g else {
            return Err(AcpiError::WindowAbove4G {
                base: w.base,
                size: w.size,
            });
        };
        if w.irq > u32::from(IRQ_MAX) {
            return Err(AcpiError::Irq {
                base: w.base,
                irq: w.irq,
            });
        }
        devices.extend(device(
            &format!("V{uid:03X}"),
            &"LNRO0005",
            uid,
            vec![&aml::Memory32Fixed::new(true, base, size), &edge_irq(w.irq)],
        ));
    }
    let mut dsdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&aml::Scope::raw("\\_SB_".into(), devices));
    Ok(dsdt.as_slice().to_vec())
}

/// Builds every table for `vcpus` vCPUs and the given windows, placed from
/// [`ACPI_START`]: RSDP, FADT, MADT, DSDT, XSDT.
pub fn build(vcpus: u8, windows: &[VirtioMmioWindow]) -> Result<AcpiTables, AcpiError> {
    if vcpus == 0 || vcpus > 254 {
        return Err(AcpiError::VcpuCount(vcpus));
    }
    // The MADT and DSDT do not depend on addresses; the others point to them.
    let madt = madt(vcpus);
    let dsdt = dsdt(windows)?;
    let rsdp_addr = ACPI_START;
    let fadt_addr = align_up(rsdp_addr + Rsdp::len() as u64);
    let madt_addr = align_up(fadt_addr + FADT::len() as u64);
    let dsdt_addr = align_up(madt_addr + madt.len() as u64);
    let xsdt_addr = align_up(dsdt_addr + dsdt.len() as u64);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = to_bytes(&xsdt);
    let end = xsdt_addr + xsdt.len() as u64;
    if end > ACPI_END {
        return Err(AcpiError::TooBig { end });
    }
    let table = |addr, bytes| Table { addr, bytes };
    Ok(AcpiTables {
        rsdp: table(rsdp_addr, to_bytes(&Rsdp::new(OEM_ID, xsdt_addr))),
        xsdt: table(xsdt_addr, xsdt),
        fadt: table(fadt_addr, fadt(dsdt_addr)),
        madt: table(madt_addr, madt),
        dsdt: table(dsdt_addr, dsdt),
    })
}

/// Builds the tables and writes them to guest memory; returns the RSDP's address.
pub fn setup(
    mem: &GuestMemoryMmap,
    vcpus: u8,
    windows: &[VirtioMmioWindow],
) -> Result<u64, AcpiError> {
    let tables = build(vcpus, windows)?;
    for (table, t) in tables.all() {
        mem.write_slice(&t.bytes, GuestAddress(t.addr))
            .map_err(|source| AcpiError::Write {
                table,
                addr: t.addr,
                source,
            })?;
    }
    Ok(tables.rsdp.addr)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
    }

    /// Caisson's placement: 4 KiB windows from 0xd0000000, IRQs from 5.
    fn windows(n: u32) -> Vec<VirtioMmioWindow> {
        (0..n)
            .map(|i| VirtioMmioWindow {
                base: 0xd000_0000 + u64::from(i) * 0x1000,
                size: 0x1000,
                irq: 5 + i,
            })
            .collect()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    #[test]
    fn checksums_lengths_and_pointers() {
        for (vcpus, devices) in [(1u8, 0u32), (2, 3), (254, 19)] {
            let t = build(vcpus, &windows(devices)).expect("tables");
            // RSDP: both checksums, its length, and the XSDT pointer.
            let r = &t.rsdp.bytes;
            assert_eq!(
                (&r[..8], r.len(), t.rsdp.addr),
                (&b"RSD PTR "[..], 36, ACPI_START)
            );
            assert_eq!(sum(&r[..20]), 0);
            assert_eq!(sum(r), 0);
            assert_eq!(u32_at(r, 20), 36);
            assert_eq!(u64_at(r, 24), t.xsdt.addr);
            let mut end = 0;
            for (name, table) in t.all() {
                let b = &table.bytes;
                assert_eq!(sum(b), 0, "{name} checksum");
                assert_eq!(table.addr % TABLE_ALIGN, 0, "{name} alignment");
                assert!(table.addr >= end, "{name} overlaps the table before it");
                end = table.addr + b.len() as u64;
                assert!(end <= ACPI_END, "{name} ends at {end:#x}");
                if name != "RSDP" {
                    assert_eq!(u32_at(b, 4) as usize, b.len(), "{name} length");
                }
            }
            let sig = |t: &Table| t.bytes[..4].to_vec();
            assert_eq!(sig(&t.xsdt), b"XSDT");
            assert_eq!(sig(&t.fadt), b"FACP");
            assert_eq!(sig(&t.madt), b"APIC");
            assert_eq!(sig(&t.dsdt), b"DSDT");
            // XSDT: the FADT and the MADT.
            assert_eq!(t.xsdt.bytes.len(), 36 + 16);
            assert_eq!(u64_at(&t.xsdt.bytes, 36), t.fadt.addr);
            assert_eq!(u64_at(&t.xsdt.bytes, 44), t.madt.addr);
            // FADT: X_DSDT, hardware-reduced, boot flags, reset register.
            let f = &t.fadt.bytes;
            assert_eq!(f.len(), 276);
            assert_eq!(u64_at(f, 140), t.dsdt.addr);
            assert_ne!(u32_at(f, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
            assert_ne!(u32_at(f, 112) & (1 << 10), 0, "RESET_REG_SUP");
            assert_eq!(u16::from_le_bytes([f[109], f[110]]), 0b1110);
            assert_eq!((f[116], u64_at(f, 120), f[128]), (1, 0x64, 0xfe));
        }
    }

    #[test]
    fn madt_lists_every_vcpu_and_the_ioapic() {
        for vcpus in [1u8, 2, 7, 254] {
            let t = build(vcpus, &[]).expect("tables");
            let m = &t.madt.bytes;
            assert_eq!(u32_at(m, 36), APIC_START as u32);
            let (mut cpus, mut ioapics, mut off) = (0u8, 0, 44);
            while off < m.len() {
                let (kind, len) = (m[off], usize::from(m[off + 1]));
                match kind {
                    0 => {
                        assert_eq!(len, 8);
                        assert_eq!((m[off + 2], m[off + 3]), (cpus, cpus), "uid, APIC id");
                        assert_eq!(u32_at(m, off + 4), 1, "enabled");
                        cpus += 1;
                    }
                    1 => {
                        assert_eq!(len, 12);
                        assert_eq!(m[off + 2], mptable::ioapic_id(vcpus));
                        assert_eq!(u32_at(m, off + 4), IOAPIC_START as u32);
                        assert_eq!(u32_at(m, off + 8), 0, "GSI base");
                        ioapics += 1;
                    }
                    other => panic!("unexpected MADT structure type {other}"),
                }
                off += len;
            }
            assert_eq!((cpus, ioapics, off), (vcpus, 1, m.len()));
        }
    }

    #[test]
    fn dsdt_describes_each_device() {
        let ws = windows(19);
        let d = build(1, &ws).expect("tables").dsdt.bytes;
        assert_eq!(contains(&d, b"LNRO0005\0"), ws.len());
        for w in &ws {
            // Memory32Fixed (ReadWrite, base, size).
            let mut mem = vec![0x86, 9, 0, 1];
            mem.extend((w.base as u32).to_le_bytes());
            mem.extend((w.size as u32).to_le_bytes());
            assert_eq!(contains(&d, &mem), 1, "window {:#x}", w.base);
            // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { irq }.
            let mut irq = vec![0x89, 6, 0, 0b11, 1];
            irq.extend(w.irq.to_le_bytes());
            assert_eq!(contains(&d, &irq), 1, "IRQ {}", w.irq);
        }
        // COM1 and the i8042: EISA ids, ports and IRQs.
        assert_eq!(contains(&d, &[0x0c, 0x41, 0xd0, 0x05, 0x01]), 1, "PNP0501");
        assert_eq!(contains(&d, &[0x0c, 0x41, 0xd0, 0x03, 0x03]), 1, "PNP0303");
        assert_eq!(contains(&d, &[0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8]), 1);
        assert_eq!(contains(&d, &[0x47, 1, 0x60, 0, 0x60, 0, 1, 1]), 1);
        assert_eq!(contains(&d, &[0x47, 1, 0x64, 0, 0x64, 0, 1, 1]), 1);
        assert_eq!(contains(&d, &[0x89, 6, 0, 0b11, 1, 4, 0, 0, 0]), 1);
        assert_eq!(contains(&d, &[0x89, 6, 0, 0b11, 1, 1, 0, 0, 0]), 1);
    }

    #[test]
    fn rejects_what_the_tables_cannot_describe() {
        assert!(matches!(build(0, &[]), Err(AcpiError::VcpuCount(0))));
        assert!(matches!(build(255, &[]), Err(AcpiError::VcpuCount(255))));
        let mut w = windows(1);
        w[0].base = 1 << 32;
        assert!(matches!(build(1, &w), Err(AcpiError::WindowAbove4G { .. })));
        w[0].base = 0xffff_f000;
        w[0].size = 0x2000;
        let e = build(1, &w).expect_err("crosses 4 GiB");
        assert!(e.to_string().contains("0xfffff000"), "{e}");
        let mut w = windows(1);
        w[0].irq = 24;
        let e = build(1, &w).expect_err("IRQ 24");
        assert!(e.to_string().contains("IRQ 24"), "{e}");
        let many = vec![windows(1)[0]; MAX_WINDOWS + 1];
        assert!(matches!(
            build(1, &many),
            Err(AcpiError::TooManyWindows { .. })
        ));
    }

    #[test]
    fn setup_writes_the_tables_to_guest_memory() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("mem");
        let ws = windows(2);
        let rsdp = setup(&mem, 2, &ws).expect("setup");
        assert_eq!(rsdp, ACPI_START);
        for (name, t) in build(2, &ws).expect("tables").all() {
            let mut back = vec![0u8; t.bytes.len()];
            mem.read_slice(&mut back, GuestAddress(t.addr))
                .expect("read");
            assert_eq!(back, t.bytes, "{name}");
        }
    }

    /// Disassembles `bytes` with ACPICA's iasl; fails (never skips) without it.
    fn iasl_disassemble(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
        let file = format!("{name}.dat");
        std::fs::write(dir.join(&file), bytes).expect("write table");
        let out = Command::new("iasl")
            .args(["-d", &file])
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run iasl ({e}): install acpica-tools (bash tests/install-deps.sh test)"
                )
            });
        assert!(
            out.status.success(),
            "iasl -d {file} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(dir.join(format!("{name}.dsl"))).expect("iasl output")
    }

    #[test]
    fn iasl_reads_the_dsdt_and_madt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = windows(3);
        let t = build(3, &ws).expect("tables");

        let dsdt = iasl_disassemble(dir.path(), "dsdt", &t.dsdt.bytes);
        // Each `Device (...)` block of the disassembly, by name.
        let block = |name: &str| -> &str {
            let start = dsdt
                .find(&format!("Device ({name})"))
                .unwrap_or_else(|| panic!("no Device ({name}):\n{dsdt}"));
            let rest = &dsdt[start + 1..];
            &dsdt[start..start + 1 + rest.find("Device (").unwrap_or(rest.len())]
        };
        assert_eq!(dsdt.matches("\"LNRO0005\"").count(), ws.len(), "{dsdt}");
        let edge = "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )";
        for (i, w) in ws.iter().enumerate() {
            let b = block(&format!("V{i:03X}"));
            for needle in [
                "Name (_HID, \"LNRO0005\")".to_string(),
                "Memory32Fixed (ReadWrite,".to_string(),
                format!("0x{:08X},         // Address Base", w.base),
                format!("0x{:08X},         // Address Length", w.size),
                edge.to_string(),
                format!("0x{:08X},\n", w.irq),
            ] {
                assert!(b.contains(&needle), "{needle:?} missing:\n{b}");
            }
        }
        let com1 = block("COM1");
        for needle in [
            "EisaId (\"PNP0501\")",
            "0x03F8,",
            "0x08,",
            edge,
            "0x00000004,",
        ] {
            assert!(com1.contains(needle), "{needle:?} missing:\n{com1}");
        }
        let ps2 = block("PS2");
        for needle in [
            "EisaId (\"PNP0303\")",
            "0x0060,",
            "0x0064,",
            edge,
            "0x00000001,",
        ] {
            assert!(ps2.contains(needle), "{needle:?} missing:\n{ps2}");
        }

        let madt = iasl_disassemble(dir.path(), "apic", &t.madt.bytes);
        assert_eq!(madt.matches("[Processor Local APIC]").count(), 3, "{madt}");
        for id in 0..3 {
            let line = format!("Local Apic ID : {id:02X}");
            assert!(madt.contains(&line), "{line} missing:\n{madt}");
        }
        assert!(madt.contains("Address : FEC00000"), "{madt}");
        assert!(!madt.contains("Invalid"), "{madt}");
    }
}
