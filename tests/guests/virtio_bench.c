/*
 * virtio_bench: drives the first block device at CPL3 by polling the used
 * ring (interrupts suppressed) and prints, per workload,
 *   bench: <name> qd <n> reqs <n> us <n> iops <n> kib_s <n> kicks_per_100_req <n>
 * Workloads: 4 KiB random reads and writes at queue depth 1 and 32, 64 KiB
 * sequential reads and writes at queue depth 1.  "bench.n=<count>" on the
 * command line sets the requests per workload (default 2000).
 */
#include "virtio.h"
#include "vblk.h"

#define QSIZE	256
#define MAXQD	32
#define MAXBUF	(64 << 10)

VQ_PAGES(ring);
static u8 data[MAXQD][MAXBUF] __attribute__((aligned(4096)));
static struct vblk_hdr hdrs[MAXQD];
static volatile u8 status[MAXQD];
static struct vdev dev;
static struct vq q;
static u64 capacity, rng = 0x9e3779b97f4a7c15UL;
static u64 kicks;

static u64 next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Slot s always uses descriptors 3s..3s+2. */
static void submit(int s, u32 type, u64 sector, u32 len)
{
	hdrs[s] = (struct vblk_hdr){ type, 0, sector };
	status[s] = 0xff;
	u16 d = 3 * s;
	q.desc[d] = (struct vq_desc){ (u64)&hdrs[s], 16, VQ_F_NEXT, d + 1 };
	q.desc[d + 1] = (struct vq_desc){ (u64)data[s], len,
		VQ_F_NEXT | (type == VBLK_T_IN ? VQ_F_WRITE : 0), d + 2 };
	q.desc[d + 2] = (struct vq_desc){ (u64)&status[s], 1, VQ_F_WRITE, 0 };
	q.avail[2 + q.avail_idx % q.size] = d;
	vio_barrier();
	q.avail_idx++;
	q.avail[1] = q.avail_idx;
}

/* Notifies unless the device said it is still working (VRING_USED_F_NO_NOTIFY). */
static void kick(void)
{
	vio_barrier();
	if (q.used_hdr[0] & 1)
		return;
	vio_write(&dev, VIO_QUEUE_NOTIFY, 0);
	kicks++;
}

static u64 parse_n(void)
{
	const char *s = rt_cmdline();
	for (; *s; s++) {
		if (memcmp(s, "bench.n=", 8))
			continue;
		u64 v = 0;
		for (s += 8; *s >= '0' && *s <= '9'; s++)
			v = v * 10 + (*s - '0');
		return v ? v : 2000;
	}
	return 2000;
}

static int run(const char *name, u32 type, u32 len, int qd, int random, u64 n)
{
	u64 units = capacity / (len / 512);
	u64 seq = 0, submitted = 0, done = 0;
	kicks = 0;
	u64 t0 = rdtsc();
	for (int s = 0; s < qd && submitted < n; s++, submitted++)
		submit(s, type, (random ? next_rand() % units : seq++ % units) * (len / 512), len);
	kick();
	u64 deadline = rt_deadline_us(60000000);
	while (done < n) {
		u32 l;
		int id = vq_poll(&q, &l);
		if (id < 0) {
			if (rt_expired(deadline)) {
				rt_printf("bench: %s timed out after %lu of %lu\n", name, done, n);
				return -1;
			}
			cpu_relax();
			continue;
		}
		int s = id / 3;
		if (status[s] != 0) {
			rt_printf("bench: %s request failed with status %u\n", name, status[s]);
			return -1;
		}
		done++;
		int more = 0;
		if (submitted < n) {
			submit(s, type, (random ? next_rand() % units : seq++ % units) * (len / 512), len);
			submitted++;
			more = 1;
		}
		/* Batch: kick once the used ring is drained. */
		if (more && q.used_hdr[1] == q.used_seen)
			kick();
		else if (more && submitted - done >= (u64)qd)
			kick();
	}
	u64 us = (rdtsc() - t0) / rt_tsc_mhz();
	if (!us)
		us = 1;
	rt_printf("bench: %s qd %d reqs %lu us %lu iops %lu kib_s %lu kicks_per_100_req %lu\n",
		  name, qd, n, us, n * 1000000 / us, n * (len / 1024) * 1000000 / us,
		  kicks * 100 / n);
	return 0;
}

int main(void)
{
	if (vio_find(VIO_ID_BLOCK, 0, &dev) || vio_init(&dev, 0) ||
	    vq_setup(&dev, &q, 0, QSIZE, ring)) {
		rt_puts("bench: no block device\n");
		return 1;
	}
	q.avail[0] = 1;		/* VRING_AVAIL_F_NO_INTERRUPT: we poll */
	vio_driver_ok(&dev);
	capacity = vio_config32(&dev, 0) | (u64)vio_config32(&dev, 4) << 32;
	u64 n = parse_n();
	rt_printf("bench: capacity %lu sectors, %lu requests per workload\n", capacity, n);
	if (run("randread-4k", VBLK_T_IN, 4096, 1, 1, n) ||
	    run("randread-4k", VBLK_T_IN, 4096, 32, 1, n) ||
	    run("randwrite-4k", VBLK_T_OUT, 4096, 1, 1, n) ||
	    run("randwrite-4k", VBLK_T_OUT, 4096, 32, 1, n) ||
	    run("seqread-64k", VBLK_T_IN, 65536, 1, 0, n) ||
	    run("seqwrite-64k", VBLK_T_OUT, 65536, 1, 0, n))
		return 2;
	rt_puts("bench: done\n");
	return 0;
}
