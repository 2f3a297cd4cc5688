/* Shared between smp.c and smp_trampoline.S. */
#ifndef SMP_H
#define SMP_H

#define SMP_TRAMPOLINE	0x10000		/* SIPI vector 0x10 */
#define SMP_AP_STACK	0x2000		/* per-AP CPL0 stack */
#define SMP_MAX_APS	63

#endif
