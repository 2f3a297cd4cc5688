//! The Intel MultiProcessor table (spec 1.4) describing every vCPU, the ISA bus,
//! the IOAPIC and the interrupt routing, placed at the start of the EBDA.

use crate::memory::GuestMemoryMmap;
use vm_memory::{Bytes, GuestAddress};

use super::layout::{APIC_START, EBDA_START, IOAPIC_START, IRQ_MAX};

const MPC_SPEC: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6, as Firecracker reports.
const CPU_SIGNATURE: u32 = 0x600;
/// FPU and APIC present.
const CPU_FEATURES: u32 = 0x201;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const IRQ_TYPE_INT: u8 = 0;
const IRQ_TYPE_NMI: u8 = 1;
const IRQ_TYPE_EXTINT: u8 = 3;
const BUS_ISA: u8 = 0;
/// Ends of the BIOS area Linux scans for the floating pointer; the table must fit.
const TABLE_LIMIT: u64 = 0xa0000 + 0x10000;

#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    #[error("{0} vCPUs do not fit the MP table (at most 254)")]
    TooManyCpus(u8),
    #[error("cannot write the MP table at {addr:#x}: {source}")]
    Write {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// The IOAPIC's id: the one after the last vCPU's APIC id (the MADT uses it too).
pub fn ioapic_id(num_cpus: u8) -> u8 {
    num_cpus.saturating_add(1)
}

/// Builds the floating pointer and the configuration table, to sit at `base`.
pub fn build(num_cpus: u8, base: u64) -> Result<Vec<u8>, MptableError> {
    if num_cpus == 0 || num_cpus > 254 {
        return Err(MptableError::TooManyCpus(num_cpus));
    }
    let ioapic_id = ioapic_id(num_cpus);
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;

    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0u8; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, BUS_ISA]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    count += 1;
    for irq in 0..=IRQ_MAX {
        // Conforming polarity and trigger: ISA defaults.
        entries.extend_from_slice(&[
            ENTRY_INTSRC,
            IRQ_TYPE_INT,
            0,
            0,
            BUS_ISA,
            irq,
            ioapic_id,
            irq,
        ]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_LINTSRC, IRQ_TYPE_EXTINT, 0, 0, BUS_ISA, 0, 0, 0]);
    entries.extend_from_slice(&[ENTRY_LINTSRC, IRQ_TYPE_NMI, 0, 0, BUS_ISA, 0, 0xff, 1]);
    count += 2;

    let table_addr = base + 16;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    let length =
        u16::try_from(44 + entries.len()).map_err(|_| MptableError::TooManyCpus(num_cpus))?;
    header.extend_from_slice(&length.to_le_bytes());
    header.push(MPC_SPEC);
    header.push(0); // checksum, below
    header.extend_from_slice(b"CAISSON ");
    header.extend_from_slice(b"000000000000");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    header.extend_from_slice(&[0u8; 4]); // extended table length, checksum, reserved
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.extend_from_slice(&[1, MPC_SPEC, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);

    fp.extend_from_slice(&table);
    if base + fp.len() as u64 > TABLE_LIMIT {
        return Err(MptableError::TooManyCpus(num_cpus));
    }
    Ok(fp)
}

/// Writes the MP table for `num_cpus` vCPUs at the start of the EBDA.
pub fn setup(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<(), MptableError> {
    let bytes = build(num_cpus, EBDA_START)?;
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(|source| MptableError::Write {
            addr: EBDA_START,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_counts() {
        for cpus in [1u8, 2, 32, 254] {
            let t = build(cpus, EBDA_START).expect("table");
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let cfg = &t[16..];
            assert_eq!(&cfg[..4], b"PCMP");
            let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
            assert_eq!(len, cfg.len());
            assert_eq!(sum(cfg), 0);
            let n = u16::from_le_bytes([cfg[34], cfg[35]]);
            assert_eq!(n as usize, cpus as usize + 2 + 24 + 2);
            let processors = cfg[44..].chunks(20).take(cpus as usize);
            for (i, p) in processors.enumerate() {
                assert_eq!(p[0], ENTRY_PROCESSOR);
                assert_eq!(p[1] as usize, i);
            }
        }
    }

    #[test]
    fn rejects_zero_and_too_many() {
        assert!(build(0, EBDA_START).is_err());
        assert!(build(255, EBDA_START).is_err());
    }
}
