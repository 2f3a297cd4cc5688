//! Loading a Linux kernel (ELF vmlinux or bzImage), its initrd and command line,
//! and writing the zero page with its e820 map, following the Linux x86 boot
//! protocol (Documentation/arch/x86/boot.rst).

use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::Path;

use crate::memory::GuestMemoryMmap;
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{self, BzImage, Elf, KernelLoader};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, ReadVolatile};

use super::layout::{
    ACPI_END, ACPI_START, CMDLINE_START, EBDA_START, FIRST_ADDR_PAST_32BITS, HIMEM_START,
    MEMMAP_START, MMIO_GAP_START, MODLIST_START, PAGE_SIZE, PVH_INFO_START, ZERO_PAGE_START,
};
use crate::config::{KernelFormat, KernelSource, MAX_CMDLINE_LEN};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;
/// xloadflags bit: the kernel has a 64-bit entry point at `load address + 0x200`.
const XLF_KERNEL_64: u16 = 1;
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("there is no kernel to load: the VM is restored from a snapshot")]
    NoKernel,
    #[error("cannot open {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot load the kernel: {0}")]
    Kernel(loader::Error),
    #[error("the bzImage has no 64-bit entry point (xloadflags {0:#x})")]
    No64BitEntry(u16),
    #[error("the initrd ({size} bytes) does not fit in guest memory below {limit:#x} above the kernel end {kernel_end:#x}")]
    InitrdTooBig {
        size: u64,
        limit: u64,
        kernel_end: u64,
    },
    #[error("cannot copy the initrd into guest memory at {addr:#x}: {source}")]
    InitrdCopy {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    #[error("cannot write the command line: {0}")]
    CmdlineWrite(loader::Error),
    #[error("cannot write the boot parameters: {0}")]
    ZeroPage(String),
}

/// What the loaders found, for the zero page and the vCPUs.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// The 64-bit entry point (Linux boot protocol).
    pub entry: u64,
    /// The 32-bit PVH entry point, when the ELF image has a PVH note.
    pub pvh_entry: Option<u64>,
    pub end: u64,
    pub setup_header: Option<setup_header>,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadedInitrd {
    pub addr: u64,
    pub size: u64,
}

fn load_from<F: Read + ReadVolatile + Seek>(
    mem: &GuestMemoryMmap,
    format: KernelFormat,
    image: &mut F,
) -> Result<LoadedKernel, BootError> {
    let himem = Some(GuestAddress(HIMEM_START));
    match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, image, himem).map_err(BootError::Kernel)?;
            Ok(LoadedKernel {
                entry: r.kernel_load.raw_value(),
                pvh_entry: match r.pvh_boot_cap {
                    PvhBootCapability::PvhEntryPresent(a) => Some(a.raw_value()),
                    _ => None,
                },
                end: r.kernel_end,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, image, himem).map_err(BootError::Kernel)?;
            let hdr = r.setup_header.ok_or(BootError::No64BitEntry(0))?;
            let xloadflags = hdr.xloadflags;
            if xloadflags & XLF_KERNEL_64 == 0 {
                return Err(BootError::No64BitEntry(xloadflags));
            }
            Ok(LoadedKernel {
                entry: r.kernel_load.raw_value() + BZIMAGE_64BIT_ENTRY_OFFSET,
                pvh_entry: None,
                end: r.kernel_end,
                setup_header: Some(hdr),
            })
        }
    }
}

/// Loads the kernel into guest memory.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    source: &KernelSource,
    format: KernelFormat,
) -> Result<LoadedKernel, BootError> {
    match source {
        KernelSource::File(path) => {
            let mut f = File::open(path).map_err(|source| BootError::Open {
                what: "kernel",
                path: path.clone(),
                source,
            })?;
            load_from(mem, format, &mut f)
        }
        KernelSource::Embedded(bytes) => load_from(mem, format, &mut Cursor::new(*bytes)),
        KernelSource::Restored => Err(BootError::NoKernel),
    }
}

/// End of the RAM below the MMIO gap.
fn low_mem_end(mem: &GuestMemoryMmap) -> u64 {
    (mem.last_addr().raw_value() + 1).min(MMIO_GAP_START)
}

/// Copies the initrd to the top of low memory, page aligned, as Firecracker does.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
) -> Result<LoadedInitrd, BootError> {
    let open_err = |source| BootError::Open {
        what: "initrd",
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(open_err)?;
    let size = f.metadata().map_err(open_err)?.len();
    let limit = low_mem_end(mem);
    let too_big = BootError::InitrdTooBig {
        size,
        limit,
        kernel_end,
    };
    let addr = match limit.checked_sub(size) {
        Some(a) => a & !(PAGE_SIZE - 1),
        None => return Err(too_big),
    };
    if addr < kernel_end || size > u32::MAX as u64 {
        return Err(too_big);
    }
    let count = usize::try_from(size).map_err(|_| BootError::InitrdTooBig {
        size,
        limit,
        kernel_end,
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, count)
        .map_err(|source| BootError::InitrdCopy { addr, source })?;
    Ok(LoadedInitrd { addr, size })
}

/// Writes the command line at its fixed address.
pub fn load_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<usize, BootError> {
    let mut cl = Cmdline::new(MAX_CMDLINE_LEN).map_err(|e| BootError::Cmdline(e.to_string()))?;
    if !cmdline.is_empty() {
        cl.insert_str(cmdline)
            .map_err(|e| BootError::Cmdline(e.to_string()))?;
    }
    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), &cl).map_err(BootError::CmdlineWrite)?;
    Ok(cmdline.len())
}

/// The e820 map: base memory below the EBDA, the ACPI tables' area (reserved),
/// then high memory split around the MMIO gap.
pub fn e820_map(mem_end: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (ACPI_START, ACPI_END - ACPI_START, E820_RESERVED),
    ];
    if mem_end <= MMIO_GAP_START {
        map.push((HIMEM_START, mem_end - HIMEM_START, E820_RAM));
    } else {
        map.push((HIMEM_START, MMIO_GAP_START - HIMEM_START, E820_RAM));
        let high = mem_end - MMIO_GAP_START;
        map.push((FIRST_ADDR_PAST_32BITS, high, E820_RAM));
    }
    map
}

/// Fills and writes the zero page; `rsdp` is the ACPI RSDP's address.
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    ram_bytes: u64,
    kernel: &LoadedKernel,
    cmdline_len: usize,
    initrd: Option<LoadedInitrd>,
    rsdp: u64,
) -> Result<(), BootError> {
    let mut params = boot_params::default();
    if let Some(hdr) = kernel.setup_header {
        params.hdr = hdr;
    }
    // Zero-page offset 0x70, for every protocol version (2.14 briefly had it in
    // the setup header; that version is withdrawn). Kernels before 5.0 leave it
    // unread and find the RSDP by scanning the BIOS area.
    params.acpi_rsdp_addr = rsdp;
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = u32::try_from(cmdline_len).unwrap_or(u32::MAX);
    if let Some(i) = initrd {
        // Both fit 32 bits: the initrd lies below the MMIO gap.
        params.hdr.ramdisk_image = i.addr as u32;
        params.hdr.ramdisk_size = i.size as u32;
    }
    let map = e820_map(ram_bytes);
    for (i, (addr, size, type_)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *type_,
        };
    }
    params.e820_entries = map.len() as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| BootError::ZeroPage(e.to_string()))
}

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// Writes the PVH `hvm_start_info` (with the ACPI RSDP's address `rsdp`), its
/// memory map and the initrd module, for a kernel entered at its PVH entry
/// point (32-bit, `ebx` = [`PVH_INFO_START`]).
pub fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    ram_bytes: u64,
    initrd: Option<LoadedInitrd>,
    rsdp: u64,
) -> Result<(), BootError> {
    let memmap: Vec<hvm_memmap_table_entry> = e820_map(ram_bytes)
        .into_iter()
        .map(|(addr, size, type_)| hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        })
        .collect();
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { MODLIST_START } else { 0 },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp,
        memmap_paddr: MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(MEMMAP_START));
    if let Some(i) = initrd {
        let module = hvm_modlist_entry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(|e| BootError::ZeroPage(format!("PVH start info: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_splits_around_the_gap() {
        let small = e820_map(128 << 20);
        assert_eq!(small.len(), 3);
        assert_eq!(small[1], (ACPI_START, ACPI_END - ACPI_START, E820_RESERVED));
        assert_eq!(small[2], (HIMEM_START, (128 << 20) - HIMEM_START, 1));
        let big = e820_map(MMIO_GAP_START + (1 << 30));
        assert_eq!(big.len(), 4);
        assert_eq!(big[3], (FIRST_ADDR_PAST_32BITS, 1 << 30, 1));
    }

    #[test]
    fn zero_page_fields() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("mem");
        let k = LoadedKernel {
            entry: 0x100000,
            pvh_entry: None,
            end: 0x200000,
            setup_header: None,
        };
        let i = LoadedInitrd {
            addr: 0xf00000,
            size: 0x1000,
        };
        write_zero_page(&mem, 16 << 20, &k, 12, Some(i), ACPI_START).expect("zero page");
        let p: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).expect("read");
        let (ptr, size, img, flag) = (
            p.hdr.cmd_line_ptr,
            p.hdr.ramdisk_size,
            p.hdr.ramdisk_image,
            p.hdr.boot_flag,
        );
        assert_eq!(
            (ptr, size, img, flag),
            (CMDLINE_START as u32, 0x1000, 0xf00000, 0xaa55)
        );
        assert_eq!(p.e820_entries, 3);
        let rsdp = p.acpi_rsdp_addr;
        assert_eq!(rsdp, ACPI_START);
    }

    #[test]
    fn pvh_start_info_fields() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("mem");
        write_pvh_start_info(&mem, 16 << 20, None, ACPI_START).expect("start info");
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).expect("read");
        let (magic, rsdp, entries) = (info.magic, info.rsdp_paddr, info.memmap_entries);
        assert_eq!((magic, rsdp, entries), (XEN_HVM_START_MAGIC, ACPI_START, 3));
        let reserved: hvm_memmap_table_entry =
            mem.read_obj(GuestAddress(MEMMAP_START + 24)).expect("read");
        let (addr, type_) = (reserved.addr, reserved.type_);
        assert_eq!((addr, type_), (ACPI_START, E820_RESERVED));
    }
}
