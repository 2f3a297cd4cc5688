/*
 * snapblk: a virtio-blk request stream for snapshot/restore tests
 * (tests/snapshot.rs): no request may be lost or repeated.
 *
 * Keeps `snapblk.depth=<n>` (default 4, at most MAX_DEPTH) requests in flight,
 * polling the used ring (IF=0, VRING_AVAIL_F_NO_INTERRUPT; kicks respect
 * VRING_USED_F_NO_NOTIFY, and nothing is ever kicked twice). Request k
 * (k = 0, 1, ..., `snapblk.count=<n>` - 1, default 2048) WRITES sector
 * k mod capacity with 512 bytes: "snapblk\0", k as a little-endian u64, then
 * filler(k, i) (below). When write k completes, the same chain slot READS that
 * sector back (every write is read back) and checks it holds k's bytes; then
 * the slot takes the next k.
 *
 * Each request gets its own descriptor chain, handed out round robin over the
 * whole queue (NCHAINS chains of 3), so a head is reused only NCHAINS requests
 * later. On every poll the guest reads the used idx, then counts the requests
 * in flight whose status byte the device has written: a correct device writes
 * the status before publishing, so the used idx may lag that count but never
 * pass it (`snapblk: unexpected used idx <x> expected <y>`, y = the entries
 * seen so far plus the requests with a status, and exit 1). Each used entry's
 * head must be a chain in flight (`snapblk: repeated completion <head>`,
 * exit 1), with status 0 (`snapblk: request <k> status <s>`, exit 1).
 * A request not completed within `snapblk.wait_s=<n>` seconds (default 20)
 * prints `snapblk: lost request <k>` and exits 1; that time counts only while
 * the guest runs: a TSC step of more than a second between two polls (a
 * restored snapshot, a long host stall) counts as nothing.
 *
 * Prints `snapblk: ready capacity <sectors>` at start, `snapblk: <k> done`
 * after every 64 completed writes (k = writes completed), and at the end
 * `snapblk: finished <count>` and exits 0.
 */
#include "vblk.h"

#define QSIZE		256
#define NCHAINS		(QSIZE / 3)
#define MAX_DEPTH	16
#define SECTOR		512
#define NONE		0xffffffffffffffffUL

VQ_PAGES(ring);
static u8 data[NCHAINS][SECTOR] __attribute__((aligned(4096)));
static struct vblk_hdr hdrs[NCHAINS];
static volatile u8 status[NCHAINS];

/* What each chain carries: NONE when free. */
static u64 chain_k[NCHAINS];
static u32 chain_type[NCHAINS];
static u64 chain_started[NCHAINS];	/* run time (ticks) at submission */

static struct vdev dev;
static struct vq q;
static u64 capacity, count, wait_ticks;
static u32 next_chain, in_flight;
static u64 run_ticks, last_tsc;		/* time the guest ran, jumps left out */

static u8 filler(u64 k, u32 i)
{
	u64 x = (k + 1) * 0x9e3779b97f4a7c15UL + i * 0xbf58476d1ce4e5b9UL;
	return (u8)(x >> 56);
}

static void fill(u8 *p, u64 k)
{
	memcpy(p, "snapblk", 8);
	for (int i = 0; i < 8; i++)
		p[8 + i] = (u8)(k >> (8 * i));
	for (u32 i = 16; i < SECTOR; i++)
		p[i] = filler(k, i);
}

static int matches(const u8 *p, u64 k)
{
	u8 want[SECTOR];
	fill(want, k);
	return !memcmp(p, want, SECTOR);
}

NORETURN static void fail(void)
{
	rt_exit(1);
}

static void tick(void)
{
	u64 now = rdtsc();
	u64 d = now - last_tsc;
	if ((long)d > 0 && d <= rt_tsc_mhz() * 1000000)
		run_ticks += d;
	last_tsc = now;
}

static void submit(u32 type, u64 k)
{
	u32 c = next_chain;
	next_chain = (next_chain + 1) % NCHAINS;
	if (chain_k[c] != NONE) {
		rt_printf("snapblk: chain %u still busy\n", c);	/* depth <= MAX_DEPTH: cannot be */
		fail();
	}
	u16 d = 3 * c;
	hdrs[c] = (struct vblk_hdr){ type, 0, k % capacity };
	if (type == VBLK_T_OUT)
		fill(data[c], k);
	else
		memset(data[c], 0, SECTOR);
	status[c] = 0xff;
	chain_k[c] = k;
	chain_type[c] = type;
	chain_started[c] = run_ticks;
	in_flight++;
	q.desc[d] = (struct vq_desc){ (u64)&hdrs[c], sizeof(hdrs[c]), VQ_F_NEXT, d + 1 };
	q.desc[d + 1] = (struct vq_desc){ (u64)data[c], SECTOR,
		VQ_F_NEXT | (type == VBLK_T_IN ? VQ_F_WRITE : 0), d + 2 };
	q.desc[d + 2] = (struct vq_desc){ (u64)&status[c], 1, VQ_F_WRITE, 0 };
	q.avail[2 + q.avail_idx % q.size] = d;
	vio_barrier();
	q.avail_idx++;
	q.avail[1] = q.avail_idx;
}

static void kick(void)
{
	vio_barrier();
	if (!(q.used_hdr[0] & 1))
		vio_write(&dev, VIO_QUEUE_NOTIFY, 0);
}

/* The used idx must not pass what the status bytes say completed. */
static void check_used_idx(u16 used_idx)
{
	u16 with_status = 0;
	for (u32 c = 0; c < NCHAINS; c++)
		if (chain_k[c] != NONE && status[c] != 0xff)
			with_status++;
	u16 expected = q.used_seen + with_status;
	if ((u16)(used_idx - q.used_seen) > with_status) {
		rt_printf("snapblk: unexpected used idx %u expected %u\n", used_idx, expected);
		fail();
	}
}

static void check_lost(void)
{
	for (u32 c = 0; c < NCHAINS; c++) {
		if (chain_k[c] != NONE && run_ticks - chain_started[c] > wait_ticks) {
			rt_printf("snapblk: lost request %lu\n", chain_k[c]);
			fail();
		}
	}
}

int main(void)
{
	u64 depth = rt_cmdline_u64("snapblk.depth", 4);
	count = rt_cmdline_u64("snapblk.count", 2048);
	wait_ticks = rt_cmdline_u64("snapblk.wait_s", 20) * 1000000 * rt_tsc_mhz();
	if (depth < 1)
		depth = 1;
	if (depth > MAX_DEPTH)
		depth = MAX_DEPTH;

	if (vio_find(VIO_ID_BLOCK, 0, &dev) || vio_init(&dev, 0) ||
	    vq_setup(&dev, &q, 0, QSIZE, ring)) {
		rt_puts("snapblk: no block device\n");
		return 2;
	}
	q.avail[0] = 1;		/* VRING_AVAIL_F_NO_INTERRUPT: we poll */
	vio_driver_ok(&dev);
	capacity = vio_config32(&dev, 0) | (u64)vio_config32(&dev, 4) << 32;
	rt_printf("snapblk: ready capacity %lu\n", capacity);
	if (!capacity) {
		rt_puts("snapblk: empty disk\n");
		return 2;
	}
	for (u32 c = 0; c < NCHAINS; c++)
		chain_k[c] = NONE;

	u64 next_k = 0, writes_done = 0;
	last_tsc = rdtsc();
	for (; next_k < depth && next_k < count; next_k++)
		submit(VBLK_T_OUT, next_k);
	if (next_k)
		kick();

	while (in_flight) {
		tick();
		vio_barrier();
		u16 used_idx = q.used_hdr[1];
		vio_barrier();
		if (used_idx == q.used_seen) {
			check_lost();
			cpu_relax();
			continue;
		}
		check_used_idx(used_idx);
		int submitted = 0;
		while (q.used_seen != used_idx) {
			u32 head = q.used[q.used_seen % q.size].id;
			q.used_seen++;
			u32 c = head / 3;
			if (head % 3 || c >= NCHAINS || chain_k[c] == NONE) {
				rt_printf("snapblk: repeated completion %u\n", head);
				fail();
			}
			u64 k = chain_k[c];
			u32 type = chain_type[c];
			if (status[c] != 0) {
				rt_printf("snapblk: request %lu status %u\n", k, status[c]);
				fail();
			}
			if (type == VBLK_T_IN && !matches(data[c], k)) {
				rt_printf("snapblk: sector %lu does not hold request %lu\n",
					  k % capacity, k);
				fail();
			}
			chain_k[c] = NONE;
			in_flight--;
			if (type == VBLK_T_OUT) {
				writes_done++;
				if (writes_done % 64 == 0)
					rt_printf("snapblk: %lu done\n", writes_done);
				submit(VBLK_T_IN, k);
			} else if (next_k < count) {
				submit(VBLK_T_OUT, next_k++);
			}
			submitted = 1;
		}
		if (submitted)
			kick();
	}
	rt_printf("snapblk: finished %lu\n", writes_done);
	return 0;
}
