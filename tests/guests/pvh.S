/*
 * pvh: booted through its PVH note (XEN_ELFNOTE_PHYS32_ENTRY) in 32-bit
 * protected mode with paging off and %ebx = hvm_start_info. Checks the magic and
 * prints what the VMM passed:
 *   pvh: start_info ok
 *   pvh: cmdline <command line>
 *   pvh: memmap <entries> modules <count>
 * then exits through port 0xf4 (status 0; 1 if the magic is wrong). Runs at CPL0
 * without the shared runtime.
 */
    .section .note.Xen, "a"
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_entry
    .balign 4

    .text
    .code64
    .globl _start
_start:                     /* the 64-bit ELF entry must never be used */
    mov $2, %al
    out %al, $0xf4
    hlt

    .code32
pvh_entry:
    mov $0x8ff0, %esp
    cmpl $0x336ec578, (%ebx)
    jne bad_magic
    mov $msg_ok, %esi
    call puts
    mov $msg_cmdline, %esi
    call puts
    mov 24(%ebx), %esi      /* cmdline_paddr */
    call puts
    mov $'\n', %al
    call putc
    mov $msg_memmap, %esi
    call puts
    mov 48(%ebx), %eax      /* memmap_entries (< 10) */
    add $'0', %al
    call putc
    mov $msg_modules, %esi
    call puts
    mov 12(%ebx), %eax      /* nr_modules (< 10) */
    add $'0', %al
    call putc
    mov $'\n', %al
    call putc
    xor %eax, %eax
    out %al, $0xf4
    hlt
bad_magic:
    mov $1, %al
    out %al, $0xf4
    hlt

putc:                       /* %al -> serial */
    mov $0x3f8, %dx
    out %al, %dx
    ret
puts:                       /* NUL-terminated string at %esi -> serial */
    lodsb
    test %al, %al
    jz 1f
    call putc
    jmp puts
1:  ret

    .section .rodata
msg_ok:      .asciz "pvh: start_info ok\n"
msg_cmdline: .asciz "pvh: cmdline "
msg_memmap:  .asciz "pvh: memmap "
msg_modules: .asciz " modules "
