/*
 * emufail: fetches its next instruction from unbacked MMIO space, which KVM
 * cannot emulate on any host: the VMM must report an emulation failure with
 * the RIP (0xd0000000). Runs entirely at CPL0 on the VMM's boot page tables,
 * without the shared runtime.
 */
    .code64
    .text
    .globl _start
_start:
    /* PDPT[3] (3-4 GiB) -> a fresh PD at 0xc000, which maps 0xd0000000 with a 2 MiB page. */
    movq $0xc003, 0xa018
    mov $0xd0000083, %eax
    movq %rax, 0xc400
    mov %cr3, %rax
    mov %rax, %cr3
    mov $0xd0000000, %rax
    jmp *%rax
