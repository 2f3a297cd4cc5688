/*
 * snapcount: counts in memory and prints over serial, for snapshot/restore
 * tests (tests/snapshot.rs).
 *
 * At start it fills a region of RAM just above its image (from the next
 * 2 MiB boundary, `snapcount.mib=<n>` MiB, default 16, clamped to the e820 RAM
 * entry it starts in, to the identity map and to below an initrd) with a
 * pattern derived from each 8-byte word's address and `snapcount.seed=<n>`
 * (default 1), and prints `snapcount: ready <mib> MiB`.
 *
 * Then it loops: every `snapcount.period_us=<n>` microseconds (default 2000;
 * 0: back to back) it increments the line counter kept in memory and prints
 *
 *     snapcount: <n> verified <k>
 *
 * with n = 1, 2, 3, ... and k the full verification passes over the region
 * completed so far. Before each line it verifies the next 1/256 of the region,
 * so a pass completes every 256 lines. A mismatch prints
 * `snapcount: memory mismatch at 0x<addr>` and exits 1 (port 0xf4).
 * `snapcount.max=<n>` (default 0 = forever): after line n it verifies the whole
 * region once more, prints `snapcount: done` and exits 0.
 *
 * Time is the TSC. After a snapshot is restored the TSC may jump either way:
 * a deadline already passed just ends the wait (the next line comes at once,
 * and the following one a period later: no catching up), and a deadline that
 * is suddenly more than a period away (the TSC went back) ends it too.
 */
#include "rt.h"

#define LINES_PER_PASS	256
#define REGION_ALIGN	(2UL << 20)

static u64 seed;
static u64 *region;
static u64 words;		/* region size in 8-byte words */
static u64 slice;		/* words verified per line */

/* The loop's state, in memory: what a snapshot must carry. */
static volatile u64 line;	/* lines printed */
static volatile u64 passes;	/* full verification passes completed */
static volatile u64 cursor;	/* next word to verify */
static volatile u64 spins;	/* wait-loop iterations, all lines together */

static inline u64 pattern(u64 addr)
{
	u64 x = addr + seed * 0x9e3779b97f4a7c15UL;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9UL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebUL;
	return x ^ (x >> 31);
}

NORETURN static void mismatch(const volatile u64 *p)
{
	rt_printf("snapcount: memory mismatch at 0x%lx\n", (u64)p);
	rt_exit(1);
}

/* [start, end) of the region; size 0 if there is no room. */
static void place_region(u64 mib)
{
	u64 start = ((u64)__image_end + REGION_ALIGN - 1) & ~(REGION_ALIGN - 1);
	u64 end = start;
	for (u32 i = 0; i < rt_e820_count(); i++) {
		struct e820_entry e = rt_e820(i);
		if (e.type == E820_RAM && e.addr <= start && start < e.addr + e.size)
			end = e.addr + e.size;
	}
	if (end > rt_mapped_top)
		end = rt_mapped_top;
	u64 initrd = rt_initrd_addr();
	if (rt_initrd_size() && initrd >= start && initrd < end)
		end = initrd;
	if (end < start)
		end = start;
	u64 room = (end - start) >> 20;
	if (mib > room)
		mib = room;
	region = (u64 *)start;
	words = (mib << 20) / 8;
}

static void verify(u64 from, u64 n)
{
	const volatile u64 *p = region + from;
	for (u64 i = 0; i < n; i++, p++)
		if (*p != pattern((u64)p))
			mismatch(p);
}

/* Verifies the next slice; counts a pass when the cursor wraps. */
static void verify_slice(void)
{
	if (!words)
		return;
	u64 c = cursor;
	u64 n = words - c < slice ? words - c : slice;
	verify(c, n);
	c += n;
	if (c == words) {
		c = 0;
		passes = passes + 1;
	}
	cursor = c;
}

static void wait_us(u64 us)
{
	if (!us)
		return;
	u64 ticks = us * rt_tsc_mhz();
	u64 deadline = rt_deadline_us(us);
	for (;;) {
		spins = spins + 1;
		if (rt_expired(deadline))
			return;
		if (deadline - rdtsc() > ticks)	/* the TSC went back */
			return;
		cpu_relax();
	}
}

int main(void)
{
	u64 mib = rt_cmdline_u64("snapcount.mib", 16);
	u64 period = rt_cmdline_u64("snapcount.period_us", 2000);
	u64 max = rt_cmdline_u64("snapcount.max", 0);
	seed = rt_cmdline_u64("snapcount.seed", 1);

	place_region(mib);
	for (u64 i = 0; i < words; i++)
		region[i] = pattern((u64)&region[i]);
	slice = (words + LINES_PER_PASS - 1) / LINES_PER_PASS;
	rt_printf("snapcount: ready %lu MiB\n", words * 8 >> 20);

	for (;;) {
		verify_slice();
		wait_us(period);
		line = line + 1;
		rt_printf("snapcount: %lu verified %lu\n", line, passes);
		if (max && line >= max)
			break;
	}
	verify(0, words);
	rt_puts("snapcount: done\n");
	return 0;
}
