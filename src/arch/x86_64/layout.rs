//! Guest physical memory layout (the same addresses Firecracker uses, so that a
//! guest built for one boots on the other).

/// GDT used while booting.
pub const BOOT_GDT_START: u64 = 0x500;
/// IDT used while booting (one null entry).
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH boot: `hvm_start_info`, the module list (initrd) and the memory map.
pub const PVH_INFO_START: u64 = 0x6000;
pub const MODLIST_START: u64 = 0x6040;
pub const MEMMAP_START: u64 = 0x7000;
/// The Linux zero page (`struct boot_params`); its address goes in `rsi`.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, PDPT and one PD covering the first 1 GiB.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Start of the extended BIOS data area; the MP table lives here.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables: the RSDP at the start of the BIOS area Linux scans for it (on
/// 16-byte boundaries, 0xe0000 to 1 MiB), the other tables after it. The e820
/// map marks the whole range reserved.
pub const ACPI_START: u64 = 0xe_0000;
pub const ACPI_END: u64 = HIMEM_START;
/// Where the kernel is loaded and high memory starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// First address past 32 bits.
pub const FIRST_ADDR_PAST_32BITS: u64 = 1 << 32;
/// Size of the MMIO gap below 4 GiB.
pub const MEM_32BIT_GAP_SIZE: u64 = 768 << 20;
/// Start of the MMIO gap; guest RAM that would reach it continues at 4 GiB.
pub const MMIO_GAP_START: u64 = FIRST_ADDR_PAST_32BITS - MEM_32BIT_GAP_SIZE;
/// Where KVM keeps the TSS (three pages, inside the MMIO gap).
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// Local APIC and IO APIC MMIO bases.
pub const APIC_START: u64 = 0xfee0_0000;
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Guest IRQ lines the IOAPIC offers.
pub const IRQ_MAX: u8 = 23;
/// The first virtio-mmio device's IRQ (4 is the serial port's); each device has
/// one line, so this many fit.
pub const FIRST_VIRTIO_IRQ: u32 = 5;
pub const MAX_VIRTIO_DEVICES: usize = IRQ_MAX as usize + 1 - FIRST_VIRTIO_IRQ as usize;
/// Port I/O: the first serial port, its IRQ, the i8042 and the debug exit port.
pub const SERIAL_PORT_BASE: u16 = 0x3f8;
pub const SERIAL_PORT_LEN: u16 = 8;
pub const SERIAL_IRQ: u32 = 4;
pub const I8042_PORT_BASE: u16 = 0x60;
pub const I8042_PORT_LEN: u16 = 5;
/// The keyboard controller's IRQ.
pub const I8042_IRQ: u32 = 1;
pub const EXIT_PORT: u16 = 0xf4;
pub const PAGE_SIZE: u64 = 4096;
