/*
 * assist: runs, at CPL0, the instructions that KVM's emulator cannot execute
 * on hosts without VMX/SVM and that Caisson completes there (emulation
 * assists): fwait, int3 and int $0x40. The handlers check the return RIP the
 * CPU (or the assist) pushed, count, and iretq. Exit port 0xf4 status:
 *   0  both interrupts arrived with the right return RIP
 *   1  a handler did not run (count wrong)
 *   3  a handler saw the wrong return RIP
 * The same guest runs natively on hosts with VMX/SVM, where nothing is
 * assisted. Standalone: no runtime, CPL0 only.
 */
    .code64
    .text
    .globl _start
_start:
    lea idt(%rip), %rdi
    mov $3, %esi
    lea on_bp(%rip), %rdx
    call set_gate
    lea idt(%rip), %rdi
    mov $0x40, %esi
    lea on_int40(%rip), %rdx
    call set_gate
    lea idt(%rip), %rax
    mov %rax, idtr_base(%rip)
    lidt idtr(%rip)

    fwait                   /* no x87 exception pending: a no-op */
    int3
after_int3:
    int $0x40
after_int40:
    cmpl $2, hits(%rip)
    jne not_run
    xor %eax, %eax
    out %al, $0xf4
    hlt
not_run:
    mov $1, %al
    out %al, $0xf4
    hlt

on_bp:
    cmpq $after_int3, (%rsp)
    jne wrong_rip
    incl hits(%rip)
    iretq
on_int40:
    cmpq $after_int40, (%rsp)
    jne wrong_rip
    incl hits(%rip)
    iretq
wrong_rip:
    mov $3, %al
    out %al, $0xf4
    hlt

/* IDT gate %esi in the table at %rdi: a 64-bit interrupt gate to %rdx, on the
 * current code segment, DPL 0. */
set_gate:
    shl $4, %rsi
    add %rdi, %rsi
    mov %dx, (%rsi)
    mov %cs, %ax
    mov %ax, 2(%rsi)
    movw $0x8e00, 4(%rsi)
    shr $16, %rdx
    mov %dx, 6(%rsi)
    shr $16, %rdx
    mov %edx, 8(%rsi)
    movl $0, 12(%rsi)
    ret

    .data
    .balign 16
idt:
    .fill 256 * 16, 1, 0
hits:
    .long 0
    .balign 8
idtr:
    .word 256 * 16 - 1
idtr_base:
    .quad 0
