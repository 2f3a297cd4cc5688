/*
 * virtio_rate: reads the first block device sequentially, one request at a
 * time and as fast as the device answers, for the rate limiter test.
 * Command line: rate.len=<bytes per request> rate.warm=<requests>
 * rate.n=<requests>.  The first `warm` requests drain the limiter's initial
 * bucket; the next `n` are timed with the TSC and reported as
 *   rate: reqs <n> bytes <n> ticks <n>
 * (the host converts ticks, its own TSC running at the same rate).
 */
#include "vblk.h"

#define MAXLEN	(64 << 10)

static u8 buf[MAXLEN] __attribute__((aligned(4096)));

static u64 arg(const char *key, u64 dflt)
{
	u64 klen = strlen(key);
	for (const char *s = rt_cmdline(); *s; s++) {
		if (memcmp(s, key, klen))
			continue;
		u64 v = 0;
		for (s += klen; *s >= '0' && *s <= '9'; s++)
			v = v * 10 + (*s - '0');
		return v;
	}
	return dflt;
}

int main(void)
{
	struct vblk b;
	if (vblk_open(&b)) {
		rt_puts("rate: no block device\n");
		return 1;
	}
	u64 len = arg("rate.len=", MAXLEN);
	u64 warm = arg("rate.warm=", 0);
	u64 n = arg("rate.n=", 16);
	u64 per = len / 512;
	if (!len || len > MAXLEN || len % 512 || b.capacity < per) {
		rt_printf("rate: bad length %lu for %lu sectors\n", len, b.capacity);
		return 1;
	}
	u64 sector = 0, t0 = rdtsc();
	for (u64 i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = rdtsc();
		int r = vblk_req(&b, VBLK_T_IN, sector, buf, len, 0);
		if (r) {
			rt_printf("rate: request %lu failed with %d\n", i, r);
			return 2;
		}
		sector += per;
		if (sector + per > b.capacity)
			sector = 0;
	}
	u64 ticks = rdtsc() - t0;
	rt_printf("rate: reqs %lu bytes %lu ticks %lu\n", n, n * len, ticks);
	return 0;
}
