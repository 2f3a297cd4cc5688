/*
 * blk_hotplug: waits for the host to swap the virtio-blk drive's backing file
 * (PATCH /drives/{id} with a new path_on_host), as Kata does to hot-plug a disk
 * onto a placeholder drive.
 *
 * Prints the capacity and ConfigGeneration, then polls (IF=0) until the
 * capacity in config space changes, for at most hotplug.wait_s seconds (20 by
 * default; `hotplug: timeout` and exit 1 past that). A generation change that
 * leaves the capacity as it was is printed too (`hotplug: generation <g>,
 * capacity unchanged`), so the host can see that a refused update changed
 * nothing. Then prints the new capacity and generation, the InterruptStatus
 * the change left (bit 1: configuration change), and the first 8 bytes of the
 * new disk's sector 0 as text.
 */
#include "vblk.h"

#define VIO_CONFIG_GENERATION	0x0fc
#define VIO_INT_CONFIG		2

static u8 sector[512] __attribute__((aligned(4096)));

/* A consistent capacity: the generation is the same before and after (virtio 1.x 4.2.2.2). */
static u64 read_capacity(struct vdev *d, u32 *generation)
{
	for (;;) {
		u32 g = vio_read(d, VIO_CONFIG_GENERATION);
		u64 cap = vio_config32(d, 0) | (u64)vio_config32(d, 4) << 32;
		if (vio_read(d, VIO_CONFIG_GENERATION) == g) {
			*generation = g;
			return cap;
		}
	}
}

/* The decimal value of the command-line word `hotplug.wait_s=<n>`, or dflt. */
static u64 wait_seconds(u64 dflt)
{
	static const char key[] = "hotplug.wait_s=";
	const char *s = rt_cmdline();
	for (; *s; s++) {
		if ((s != rt_cmdline() && s[-1] != ' ') || memcmp(s, key, sizeof(key) - 1))
			continue;
		u64 v = 0;
		for (s += sizeof(key) - 1; *s >= '0' && *s <= '9'; s++)
			v = v * 10 + (u64)(*s - '0');
		return v ? v : dflt;
	}
	return dflt;
}

int main(void)
{
	struct vblk b;
	int r = vblk_open(&b);
	if (r) {
		rt_printf("hotplug: open failed %d\n", r);
		return 2;
	}
	u32 gen;
	u64 cap = read_capacity(&b.dev, &gen);
	rt_printf("hotplug: capacity %lu sectors generation %u\n", cap, gen);

	u64 end = rt_deadline_us(wait_seconds(20) * 1000000);
	u32 seen = gen;
	u64 now_cap;
	for (;;) {
		u32 g;
		now_cap = read_capacity(&b.dev, &g);
		if (now_cap != cap) {
			gen = g;
			break;
		}
		if (g != seen) {
			rt_printf("hotplug: generation %u, capacity unchanged\n", g);
			seen = g;
		}
		if (rt_expired(end)) {
			rt_puts("hotplug: timeout\n");
			return 1;
		}
		rt_delay_us(1000);
	}
	u32 isr = vio_read(&b.dev, VIO_INT_STATUS);
	vio_write(&b.dev, VIO_INT_ACK, isr);
	b.capacity = now_cap;
	rt_printf("hotplug: capacity %lu sectors generation %u\n", now_cap, gen);
	rt_printf("hotplug: interrupt status %u\n", isr);

	memset(sector, 0, sizeof(sector));
	r = vblk_req(&b, VBLK_T_IN, 0, sector, sizeof(sector), 0);
	if (r != 0) {
		rt_printf("hotplug: read failed %d\n", r);
		return 3;
	}
	char text[9];
	for (int i = 0; i < 8; i++)
		text[i] = (sector[i] >= 0x20 && sector[i] < 0x7f) ? (char)sector[i] : '.';
	text[8] = 0;
	rt_printf("hotplug: sector 0 %s\n", text);
	/* The new capacity is usable: its last sector reads too. */
	r = vblk_req(&b, VBLK_T_IN, now_cap - 1, sector, sizeof(sector), 0);
	rt_printf("hotplug: last sector %lu status %d\n", now_cap - 1, r);
	return r == 0 ? 0 : 4;
}
