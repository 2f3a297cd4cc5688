/* Constants shared by the runtime's assembly and C code. */
#ifndef RT_LAYOUT_H
#define RT_LAYOUT_H

/* Our own GDT (rt/start.S). */
#define RT_KERNEL_CS	0x08
#define RT_KERNEL_DS	0x10
#define RT_USER_DS	0x1b	/* 0x18 | RPL 3 */
#define RT_USER_CS	0x23	/* 0x20 | RPL 3 */
#define RT_GDT_ENTRIES	5

/* Page-table entry bits: present, writable, user, 2M/1G page. */
#define RT_PTE_TABLE	0x07
#define RT_PTE_LARGE	0x87

/* 2 MiB-page fallback (no pdpe1gb): page directories for this many GiB. */
#define RT_MAX_PD_GIB	64

#define RT_STACK_SIZE	0x10000		/* BSP stack */
#define RT_RFLAGS_USER	0x3002		/* IOPL=3, IF=0, reserved bit 1 */

#endif
