/* libc pieces, TSC time and the ways out of the VM. */
#include "rt.h"

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;
	while (n--)
		*p++ = c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	if (p < q)
		return memcpy(d, s, n);
	while (n--)
		p[n] = q[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

u64 rt_tsc_mhz(void)
{
	static u64 mhz;
	u32 a, b, c, d, max;

	if (mhz)
		return mhz;
	cpuid(0, &max, &b, &c, &d);
	if (max >= 0x15) {
		cpuid(0x15, &a, &b, &c, &d);
		if (a && b && c)
			mhz = (u64)c * b / a / 1000000;
	}
	if (!mhz && max >= 0x16) {
		cpuid(0x16, &a, &b, &c, &d);
		mhz = a & 0xffff;
	}
	if (!mhz) {
		cpuid(0x40000000, &max, &b, &c, &d);
		if (max >= 0x40000010 && max < 0x40010000) {
			cpuid(0x40000010, &a, &b, &c, &d);
			mhz = a / 1000;
		}
	}
	if (!mhz || mhz > 10000)
		mhz = 3000;
	return mhz;
}

u64 rt_deadline_us(u64 us)
{
	return rdtsc() + us * rt_tsc_mhz();
}

int rt_expired(u64 deadline)
{
	return (long)(rdtsc() - deadline) >= 0;
}

void rt_delay_us(u64 us)
{
	u64 end = rt_deadline_us(us);
	while (!rt_expired(end))
		cpu_relax();
}

NORETURN void rt_triple_fault(void)
{
	/* The IDT has limit 0: #UD -> #GP -> #DF -> triple fault. */
	for (;;)
		__asm__ volatile("ud2");
}

NORETURN void rt_exit(int status)
{
	outb(0xf4, status == 0 ? 0 : (status & 0xff) ? status : 1);
	rt_triple_fault();		/* the VMM ignored the exit port */
}

NORETURN void rt_reset(void)
{
	outb(0x64, 0xfe);
	rt_triple_fault();
}
