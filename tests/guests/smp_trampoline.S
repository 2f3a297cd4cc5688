/*
 * AP start-up.  smp_tramp_* is copied to SMP_TRAMPOLINE and entered in real
 * mode at CS=0x1000, IP=0 after INIT-SIPI-SIPI.  It switches straight to
 * long mode (PE and PG together) on the runtime's page tables and GDT, and
 * far-jumps into smp_ap_entry64 in the image.  All of this runs in the
 * instruction emulator, so it stays short; the AP prints from CPL0 and
 * halts there (hlt needs CPL0).
 */
#include "layout.h"
#include "smp.h"

	.section .rodata, "a"
	.code16
	.globl	smp_tramp_start, smp_tramp_end
smp_tramp_start:
	cli
	lidtl	%cs:(tr_idtr - smp_tramp_start)
	lgdtl	%cs:(tr_gdtr - smp_tramp_start)
	movl	$0x20, %eax			/* CR4.PAE */
	movl	%eax, %cr4
	movl	$rt_pml4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx		/* EFER.LME */
	xorl	%edx, %edx
	movl	$0x100, %eax
	wrmsr
	movl	$0x80000011, %eax		/* PG | ET | PE */
	movl	%eax, %cr0
	ljmpl	$RT_KERNEL_CS, $smp_ap_entry64
	.balign	4
tr_gdtr:
	.word	RT_GDT_ENTRIES * 8 - 1
	.long	rt_gdt
tr_idtr:
	.word	0
	.long	0
smp_tramp_end:

	.text
	.code64
smp_ap_entry64:
	mov	$RT_KERNEL_DS, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$1, %eax
	lock xadd %eax, smp_ap_next(%rip)
	cmp	$SMP_MAX_APS, %eax
	jae	1f
	inc	%eax
	imul	$SMP_AP_STACK, %eax
	add	$smp_ap_stacks, %rax
	mov	%rax, %rsp
	call	smp_ap_main
1:	cli
	hlt
	jmp	1b

	.bss
	.balign	4
smp_ap_next:	.long	0

	.section .stacks, "aw", @nobits
	.balign	4096
smp_ap_stacks:	.skip	SMP_AP_STACK * SMP_MAX_APS
