/*
 * virtio_hostile: drives the block device like a hostile guest -- a looping
 * chain, a descriptor outside RAM, an oversize chain, a device write into a
 * device-readable buffer, a queue size that is not a power of two, a notify
 * before DRIVER_OK, config accesses outside the config space, a flood of bad
 * notifies -- checking the device's answer to each (DEVICE_NEEDS_RESET, an
 * error status, or nothing), and ends with a valid request to show the VMM
 * still serves.  Prints "hostile: <case> ok" per case.
 */
#include "vblk.h"

static struct vblk b;
static u8 buf[4096] __attribute__((aligned(4096)));
static u8 chk[4096] __attribute__((aligned(4096)));
static struct vblk_hdr hdr;
static volatile u8 st;

static int wait_needs_reset(void)
{
	u64 end = rt_deadline_us(2000000);
	while (!rt_expired(end)) {
		u32 s = vio_read(&b.dev, VIO_STATUS);
		if (s & VIO_S_NEEDS_RESET)
			return (vio_read(&b.dev, VIO_INT_STATUS) & 2) ? 0 : -2;
		rt_delay_us(200);
	}
	return -1;
}

static void desc(u16 i, u64 addr, u32 len, u16 flags, u16 next)
{
	b.q.desc[i].addr = addr;
	b.q.desc[i].len = len;
	b.q.desc[i].flags = flags;
	b.q.desc[i].next = next;
}

static void publish(u16 head)
{
	b.q.avail[2 + b.q.avail_idx % b.q.size] = head;
	vio_barrier();
	b.q.avail_idx++;
	b.q.avail[1] = b.q.avail_idx;
	vq_kick(&b.q);
}

static int reopen(const char *after)
{
	int r = vblk_open(&b);
	if (r) {
		rt_printf("hostile: reopen after %s failed %d\n", after, r);
		return -1;
	}
	return 0;
}

static int case_needs_reset(const char *name)
{
	int r = wait_needs_reset();
	if (r) {
		rt_printf("hostile: %s: no DEVICE_NEEDS_RESET + config interrupt (%d)\n", name, r);
		return -1;
	}
	rt_printf("hostile: %s ok\n", name);
	return reopen(name);
}

static int valid_roundtrip(u64 sector, u8 seed)
{
	for (int i = 0; i < 512; i++)
		buf[i] = (u8)(i * 3 + seed);
	if (vblk_req(&b, VBLK_T_OUT, sector, buf, 512, 0) != 0)
		return -1;
	memset(chk, 0, 512);
	if (vblk_req(&b, VBLK_T_IN, sector, chk, 512, 0) != 0)
		return -2;
	return memcmp(buf, chk, 512) ? -3 : 0;
}

int main(void)
{
	if (vblk_open(&b)) {
		rt_puts("hostile: no block device\n");
		return 1;
	}
	if (valid_roundtrip(1, 0))
		return 2;
	rt_puts("hostile: baseline ok\n");

	/* 1. A chain that loops: 0 -> 1 -> 0. */
	hdr = (struct vblk_hdr){ VBLK_T_IN, 0, 0 };
	desc(0, (u64)&hdr, 16, VQ_F_NEXT, 1);
	desc(1, (u64)buf, 512, VQ_F_NEXT, 0);
	publish(0);
	if (case_needs_reset("loop"))
		return 3;

	/* 2. A descriptor outside guest RAM. */
	desc(0, (u64)&hdr, 16, VQ_F_NEXT, 1);
	desc(1, 0xdead00000000UL, 512, VQ_F_NEXT | VQ_F_WRITE, 2);
	desc(2, (u64)&st, 1, VQ_F_WRITE, 0);
	publish(0);
	if (case_needs_reset("out-of-range address"))
		return 4;

	/* 3. An oversize length (32 MiB, inside RAM). */
	desc(0, (u64)&hdr, 16, VQ_F_NEXT, 1);
	desc(1, 0x200000, 32 << 20, VQ_F_NEXT | VQ_F_WRITE, 2);
	desc(2, (u64)&st, 1, VQ_F_WRITE, 0);
	publish(0);
	if (case_needs_reset("oversize length"))
		return 5;

	/* 4. A read whose data buffer is device-readable: IOERR, buffer untouched. */
	memset(buf, 0x77, 512);
	st = 0xff;
	desc(0, (u64)&hdr, 16, VQ_F_NEXT, 1);
	desc(1, (u64)buf, 512, VQ_F_NEXT, 2);
	desc(2, (u64)&st, 1, VQ_F_WRITE, 0);
	publish(0);
	if (vq_wait(&b.q, 0, 2000000) < 0 || st != 1) {
		rt_printf("hostile: readable data buffer: status %u\n", st);
		return 6;
	}
	for (int i = 0; i < 512; i++)
		if (buf[i] != 0x77) {
			rt_puts("hostile: device wrote a device-readable buffer\n");
			return 6;
		}
	if (vio_read(&b.dev, VIO_STATUS) != 0xf)
		return 6;
	rt_puts("hostile: write into device-readable buffer ok\n");

	/* 5. A queue size that is not a power of two. */
	if (vio_init(&b.dev, 0))
		return 7;
	vio_write(&b.dev, VIO_QUEUE_SEL, 0);
	vio_write(&b.dev, VIO_QUEUE_NUM, 100);
	if (case_needs_reset("queue size 100"))
		return 7;

	/* 6. A notify before DRIVER_OK: ignored; served once DRIVER_OK is set. */
	{
		static u8 ring[3 * 4096] __attribute__((aligned(4096)));
		if (vio_init(&b.dev, 0) || vq_setup(&b.dev, &b.q, 0, 16, ring))
			return 8;
		hdr = (struct vblk_hdr){ VBLK_T_IN, 0, 0 };
		st = 0xff;
		desc(0, (u64)&hdr, 16, VQ_F_NEXT, 1);
		desc(1, (u64)buf, 512, VQ_F_NEXT | VQ_F_WRITE, 2);
		desc(2, (u64)&st, 1, VQ_F_WRITE, 0);
		publish(0);		/* kicks */
		rt_delay_us(100000);
		if (b.q.used_hdr[1] != 0 || st != 0xff) {
			rt_puts("hostile: request served before DRIVER_OK\n");
			return 8;
		}
		vio_driver_ok(&b.dev);
		vq_kick(&b.q);
		if (vq_wait(&b.q, 0, 2000000) < 0 || st != 0) {
			rt_printf("hostile: request not served after DRIVER_OK (status %u)\n", st);
			return 8;
		}
		rt_puts("hostile: notify before DRIVER_OK ok\n");
	}

	/* 7. Config accesses outside the 16-byte config space. */
	if (reopen("notify"))
		return 9;
	u32 far = vio_read(&b.dev, VIO_CONFIG + 0x40);
	u32 straddle = vio_read(&b.dev, VIO_CONFIG + 14);
	vio_write(&b.dev, VIO_CONFIG + 0x40, 0xffffffff);
	vio_write(&b.dev, VIO_CONFIG, 0xffffffff);	/* read-only field */
	u64 cap = vio_config32(&b.dev, 0) | (u64)vio_config32(&b.dev, 4) << 32;
	if (far || straddle || cap != b.capacity || vio_read(&b.dev, VIO_STATUS) != 0xf) {
		rt_printf("hostile: config access: %x %x cap %lu\n", far, straddle, cap);
		return 9;
	}
	rt_puts("hostile: config access outside config space ok\n");

	/* 8. A flood of notifies for a queue that does not exist. */
	for (int i = 0; i < 2000; i++)
		vio_write(&b.dev, VIO_QUEUE_NOTIFY, 7);
	rt_puts("hostile: notify flood ok\n");

	/* The VMM still serves. */
	if (valid_roundtrip(2, 9)) {
		rt_puts("hostile: final request failed\n");
		return 10;
	}
	rt_puts("hostile: still serving\n");
	return 0;
}
