/*
 * smp: bring up every AP listed in the MP table with INIT-SIPI-SIPI and
 * have each one report in.  The BSP runs at CPL3; APs stay at CPL0.
 */
#include "rt.h"
#include "smp.h"

#define LAPIC_ID	(LAPIC_BASE + 0x20)
#define LAPIC_SVR	(LAPIC_BASE + 0xf0)
#define LAPIC_ICR_LO	(LAPIC_BASE + 0x300)
#define LAPIC_ICR_HI	(LAPIC_BASE + 0x310)
#define ICR_BUSY	(1 << 12)
#define ICR_INIT	0x4500		/* INIT, level assert */
#define ICR_SIPI	0x4600		/* start-up | vector */

#define WAIT_US		(5UL * 1000 * 1000)

extern char smp_tramp_start[], smp_tramp_end[];

static volatile u32 console_lock;
static volatile u32 online;

static void lock(void)
{
	while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
}

static void unlock(void)
{
	__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

static u32 my_apic_id(void)
{
	return mmio_read32(LAPIC_ID) >> 24;
}

static void report_online(void)
{
	u32 id = my_apic_id();
	lock();
	rt_printf("smp: cpu %u online\n", id);
	online++;
	unlock();
}

/* Called on each AP, at CPL0, on its own stack (smp_trampoline.S). */
void smp_ap_main(void)
{
	report_online();
}

static void send_ipi(u32 apic_id, u32 icr)
{
	mmio_write32(LAPIC_ICR_HI, apic_id << 24);
	mmio_write32(LAPIC_ICR_LO, icr);
	for (int i = 0; i < 100000 && (mmio_read32(LAPIC_ICR_LO) & ICR_BUSY); i++)
		cpu_relax();
}

int main(void)
{
	u8 ids[RT_MAX_CPUS];
	int n = rt_mp_cpus(ids, RT_MAX_CPUS);
	u32 bsp = my_apic_id();

	if (n == 0) {
		rt_puts("smp: no MP table, assuming 1 cpu\n");
		n = 1;
		ids[0] = bsp;
	}
	report_online();

	memcpy((void *)SMP_TRAMPOLINE, smp_tramp_start,
	       smp_tramp_end - smp_tramp_start);
	mmio_write32(LAPIC_SVR, 0x1ff);		/* software-enable the LAPIC */

	for (int i = 0; i < n; i++)
		if (ids[i] != bsp)
			send_ipi(ids[i], ICR_INIT);
	rt_delay_us(10000);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n; i++)
			if (ids[i] != bsp)
				send_ipi(ids[i], ICR_SIPI | SMP_TRAMPOLINE >> 12);
		rt_delay_us(200);
	}

	u64 deadline = rt_deadline_us(WAIT_US);
	while (online < (u32)n && !rt_expired(deadline))
		cpu_relax();

	lock();
	u32 k = online;
	if (k < (u32)n) {
		rt_printf("smp: timeout: %u of %d cpus online\n", k, n);
		unlock();
		return 1;
	}
	rt_printf("smp: %d cpus online\n", n);
	unlock();
	return 0;
}
