/*
 * CPL0 entry point, reached in 64-bit mode exactly like a Linux vmlinux
 * under Firecracker (rsi = boot_params).  Everything here runs in KVM's
 * instruction emulator, so it is kept to a few dozen instructions: install
 * our GDT and an empty IDT (any exception => triple fault), identity map the
 * first GiB(s) with user-accessible pages, and iretq to CPL3 with IOPL=3.
 * The rest of the identity map is filled in from C at CPL3 (rt/boot.c).
 */
#include "layout.h"

	.code64
	.section .text.entry, "ax"
	.globl	_start
_start:
	cli
	lidt	rt_null_idtr(%rip)
	lgdt	rt_gdtr(%rip)
	mov	%rsi, rt_boot_params(%rip)

	mov	$rt_pdpt + RT_PTE_TABLE, %eax
	mov	%rax, rt_pml4(%rip)

#ifdef RT_FORCE_2M_PAGES		/* test hook: make EXTRA_FLAGS=-DRT_FORCE_2M_PAGES */
	jmp	.Lpages_2m
#endif
	mov	$0x80000001, %eax
	cpuid
	bt	$26, %edx		/* pdpe1gb */
	jnc	.Lpages_2m

	/* 1 GiB pages: map [0, 4 GiB) (RAM + the LAPIC/IOAPIC hole). */
	movb	$1, rt_have_1g(%rip)
	mov	$rt_pdpt, %edi
	mov	$RT_PTE_LARGE, %eax
	mov	$4, %ecx
1:	mov	%rax, (%rdi)
	add	$8, %rdi
	add	$0x40000000, %rax
	dec	%ecx
	jnz	1b
	jmp	.Lpaging_on

.Lpages_2m:
	/* 2 MiB pages: map only the first GiB here. */
	mov	$rt_pd + RT_PTE_TABLE, %eax
	mov	%rax, rt_pdpt(%rip)
	mov	$rt_pd, %edi
	mov	$RT_PTE_LARGE, %eax
	mov	$512, %ecx
1:	mov	%rax, (%rdi)
	add	$8, %rdi
	add	$0x200000, %eax
	dec	%ecx
	jnz	1b

.Lpaging_on:
	mov	$rt_pml4, %eax
	mov	%rax, %cr3

	/* Drop to CPL3: IOPL=3 so in/out keep working, interrupts off. */
	pushq	$RT_USER_DS
	pushq	$rt_stack_top
	pushq	$RT_RFLAGS_USER
	pushq	$RT_USER_CS
	pushq	$rt_user_entry
	iretq

	.text
rt_user_entry:
	call	rt_user_start		/* rt/boot.c, does not return */
	ud2

	.data
	.balign	16
	.globl	rt_gdt
rt_gdt:					/* accessed bits preset: no CPU writes */
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08 kernel code, 64-bit */
	.quad	0x00cf93000000ffff	/* 0x10 kernel data */
	.quad	0x00cff3000000ffff	/* 0x18 user data, DPL3 */
	.quad	0x00affb000000ffff	/* 0x20 user code, 64-bit, DPL3 */
	.balign	8
	.word	0, 0, 0
rt_gdtr:
	.word	RT_GDT_ENTRIES * 8 - 1
	.quad	rt_gdt
	.balign	8
	.word	0, 0, 0
rt_null_idtr:
	.word	0
	.quad	0

	.globl	rt_boot_params, rt_have_1g
	.balign	8
rt_boot_params:	.quad	0
rt_have_1g:	.byte	0

	.section .pagetables, "aw", @nobits
	.globl	rt_pml4, rt_pdpt, rt_pd
	.balign	4096
rt_pml4:	.skip	4096
rt_pdpt:	.skip	4096
rt_pd:		.skip	4096 * RT_MAX_PD_GIB

	.section .stacks, "aw", @nobits
	.balign	4096
	.skip	RT_STACK_SIZE
	.globl	rt_stack_top
rt_stack_top:
