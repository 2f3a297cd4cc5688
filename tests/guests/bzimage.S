/*
 * Wraps a flat guest payload (linked at 0x100200) in a bzImage: a boot sector and
 * one setup sector carrying the Linux setup header (boot protocol 2.15), then the
 * protected-mode part, which the VMM loads at code32_start (1 MiB) and enters in
 * 64-bit mode at its start + 0x200, as it would a Linux bzImage. The payload file
 * name comes from the PAYLOAD macro.
 */
    .code16
    .section .data
    .globl _bz_start
_bz_start:
    .org 0x1f1
setup_sects:      .byte 1
root_flags:       .word 0
syssize:          .long 0
ram_size:         .word 0
vid_mode:         .word 0
root_dev:         .word 0
boot_flag:        .word 0xaa55
    .org 0x200
jump:             .byte 0xeb, 0x66
header:           .ascii "HdrS"
version:          .word 0x020f
realmode_swtch:   .long 0
start_sys_seg:    .word 0
kernel_version:   .word 0
type_of_loader:   .byte 0
loadflags:        .byte 0x01          /* LOADED_HIGH */
setup_move_size:  .word 0
code32_start:     .long 0x100000
ramdisk_image:    .long 0
ramdisk_size:     .long 0
bootsect_kludge:  .long 0
heap_end_ptr:     .word 0
ext_loader_ver:   .byte 0
ext_loader_type:  .byte 0
cmd_line_ptr:     .long 0
initrd_addr_max:  .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable:      .byte 0
min_alignment:    .byte 0
xloadflags:       .word 0x0001        /* XLF_KERNEL_64: 64-bit entry at +0x200 */
cmdline_size:     .long 2047
    /* End of the setup area: (setup_sects + 1) * 512 bytes. */
    .org 1024
    /* The 32-bit entry (unused by a 64-bit boot): halt forever. */
    .fill 0x200, 1, 0xf4
    .incbin PAYLOAD
