/*
 * snapident: a guest whose identities (vsock CID, net MAC) may change under
 * it, for restoring clones of one snapshot (tests/snapshot_clones.rs).
 *
 * It sets up the virtio-vsock device (rx, tx and event queues, 4 event
 * buffers posted) and the virtio-net device (rx and tx queues), prints
 *
 *     snapident: cid <cid> mac <mac>
 *
 * and loops: every `snapident.period_us=<n>` µs (default 5000) it prints
 * `snapident: tick <n>`, n = 1, 2, ... from a counter in memory, and polls
 * the used rings. On a VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (what a restore
 * sends) it re-reads the CID and the MAC from config space, as Linux re-reads
 * guest_cid, and prints
 *
 *     snapident: reset cid <cid> mac <mac>
 *
 * then reposts the event buffer and, with its new identities:
 * - connects to host port 5000 (the host listens on <uds_path>_5000), sends
 *   `hello from cid <cid>`, shuts the connection down and waits for the RST:
 *   `snapident: vsock hello sent` (or `snapident: vsock <what> failed ...`);
 * - sends one broadcast frame, ethertype 0x88b5, from its MAC with the payload
 *   `snapident cid <cid>`: `snapident: net hello sent`.
 * Any other event id prints `snapident: event <id> len <len>`.
 *
 * With `snapident.ev_at_tick=<n>` (default 0: at start) the event buffers are
 * posted only after tick n, and the queue notified, with the line
 * `snapident: event buffers posted`: a reset owed by a restore before that
 * must wait for them.
 *
 * A 0x88b5 frame addressed
 * to its current MAC is echoed with the addresses swapped:
 * `snapident: net echoed <n> bytes`; other frames are dropped.
 *
 * Time is the TSC, which may jump either way across a restore: as in
 * snapcount, a passed deadline just ends the wait, and so does one suddenly
 * more than a period away.
 */
#include "virtio.h"

/* vsock */
#define HOST_CID	2
#define HOST_PORT	5000
#define LOCAL_PORT	1500
#define VBUF		4096
#define NVRX		8
#define NEV		4
enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW };

struct hdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

/* net */
#define F_MAC		(1UL << 5)
#define ETH_TEST	0x88b5
#define NHDR		12
#define NNRX		8
#define NBUF		2048

VQ_PAGES(vrx_ring);
VQ_PAGES(vtx_ring);
VQ_PAGES(ev_ring);
VQ_PAGES(nrx_ring);
VQ_PAGES(ntx_ring);
static u8 vrxbufs[NVRX][VBUF] __attribute__((aligned(4096)));
static u8 nrxbufs[NNRX][NBUF] __attribute__((aligned(4096)));
static u8 ntxbuf[NBUF] __attribute__((aligned(4096)));
static u8 evbufs[NEV][8];
static struct hdr vtxh;
static u8 vtxdata[64];

static struct vdev vs, net;
static struct vq vrxq, vtxq, evq, nrxq, ntxq;

/* The identities and the loop's state, in memory: what a snapshot carries. */
static u64 cid;
static u8 mac[6];
static volatile u64 tick;
static volatile u64 resets;

static void read_ids(void)
{
	cid = vio_config32(&vs, 0) | (u64)vio_config32(&vs, 4) << 32;
	for (int i = 0; i < 6; i++)
		mac[i] = *(volatile u8 *)(net.base + VIO_CONFIG + i);
}

static void print_ids(const char *what)
{
	rt_printf("snapident: %scid %lu mac %02x:%02x:%02x:%02x:%02x:%02x\n", what, cid,
		  mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static void post(struct vq *q, void *buf, u32 len)
{
	struct vbuf b = { buf, len, 1 };
	vq_add(q, &b, 1);
}

/* ---- vsock: one connection at a time, synchronously ---- */

static int vsend(u16 op, u32 flags, const void *data, u32 len)
{
	vtxh = (struct hdr){ cid, HOST_CID, LOCAL_PORT + (u32)resets, HOST_PORT, len, 1, op,
			     flags, VBUF, 0 };
	struct vbuf b[2] = { { &vtxh, sizeof(vtxh), 0 }, { vtxdata, len, 0 } };
	if (len)
		memcpy(vtxdata, data, len);
	vq_add(&vtxq, b, len ? 2 : 1);
	vq_kick(&vtxq);
	return vq_wait(&vtxq, 0, 5000000) < 0 ? -1 : 0;
}

/* The op of the next packet for our connection; -1 after 5 s. */
static int vrecv(void)
{
	u64 end = rt_deadline_us(5000000);
	while (!rt_expired(end)) {
		u32 len;
		int id = vq_poll(&vrxq, &len);
		if (id < 0) {
			cpu_relax();
			continue;
		}
		u8 *buf = (u8 *)vrxq.desc[id].addr;
		struct hdr h;
		memcpy(&h, buf, sizeof(h));
		post(&vrxq, buf, VBUF);
		vq_kick(&vrxq);
		if (h.dst_cid == cid && h.dst_port == LOCAL_PORT + (u32)resets &&
		    h.src_port == HOST_PORT)
			return h.op;
	}
	return -1;
}

static void vsock_hello(void)
{
	char msg[48];
	u32 n = 0;
	static const char pre[] = "hello from cid ";
	memcpy(msg, pre, sizeof(pre) - 1);
	n = sizeof(pre) - 1;
	char digits[24];
	int k = 0;
	u64 c = cid;
	do {
		digits[k++] = '0' + c % 10;
		c /= 10;
	} while (c);
	while (k)
		msg[n++] = digits[--k];

	int op;
	if (vsend(OP_REQUEST, 0, 0, 0) || (op = vrecv()) != OP_RESPONSE) {
		rt_printf("snapident: vsock connect failed\n");
		return;
	}
	if (vsend(OP_RW, 0, msg, n) || vsend(OP_SHUTDOWN, 3, 0, 0)) {
		rt_puts("snapident: vsock send failed\n");
		return;
	}
	do
		op = vrecv();
	while (op >= 0 && op != OP_RST);
	if (op != OP_RST) {
		rt_puts("snapident: vsock close failed\n");
		return;
	}
	rt_puts("snapident: vsock hello sent\n");
}

/* ---- net ---- */

static int send_frame(const u8 *dst, const void *payload, u32 len)
{
	memset(ntxbuf, 0, NHDR);
	memcpy(ntxbuf + NHDR, dst, 6);
	memcpy(ntxbuf + NHDR + 6, mac, 6);
	ntxbuf[NHDR + 12] = ETH_TEST >> 8;
	ntxbuf[NHDR + 13] = ETH_TEST & 0xff;
	memcpy(ntxbuf + NHDR + 14, payload, len);
	u32 n = NHDR + 14 + len;
	if (n < NHDR + 60) {
		memset(ntxbuf + n, 0, NHDR + 60 - n);
		n = NHDR + 60;
	}
	struct vbuf b = { ntxbuf, n, 0 };
	vq_add(&ntxq, &b, 1);
	vq_kick(&ntxq);
	return vq_wait(&ntxq, 0, 5000000) < 0 ? -1 : 0;
}

static void net_hello(void)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	char msg[40] = "snapident cid ";
	u32 n = 14;
	char digits[24];
	int k = 0;
	u64 c = cid;
	do {
		digits[k++] = '0' + c % 10;
		c /= 10;
	} while (c);
	while (k)
		msg[n++] = digits[--k];
	if (send_frame(bcast, msg, n))
		rt_puts("snapident: net send failed\n");
	else
		rt_puts("snapident: net hello sent\n");
}

static void poll_net(void)
{
	u32 len;
	int id;
	int any = 0;
	while ((id = vq_poll(&nrxq, &len)) >= 0) {
		u8 *b = (u8 *)nrxq.desc[id].addr;
		u8 *f = b + NHDR;
		if (len >= NHDR + 14 && len <= NBUF && f[12] == (ETH_TEST >> 8) &&
		    f[13] == (ETH_TEST & 0xff) && !memcmp(f, mac, 6)) {
			u32 plen = len - NHDR - 14;
			u8 src[6];
			memcpy(src, f + 6, 6);
			if (send_frame(src, f + 14, plen))
				rt_puts("snapident: net echo failed\n");
			else
				rt_printf("snapident: net echoed %u bytes\n", plen);
		}
		post(&nrxq, b, NBUF);
		any = 1;
	}
	if (any)
		vq_kick(&nrxq);
}

/* ---- events ---- */

static void poll_events(void)
{
	u32 len;
	int id;
	while ((id = vq_poll(&evq, &len)) >= 0) {
		u8 *b = (u8 *)evq.desc[id].addr;
		u32 ev = b[0] | b[1] << 8 | b[2] << 16 | (u32)b[3] << 24;
		if (len >= 4 && ev == 0) {
			resets = resets + 1;
			read_ids();
			print_ids("reset ");
			post(&evq, b, 8);
			vq_kick(&evq);
			vsock_hello();
			net_hello();
		} else {
			rt_printf("snapident: event %u len %u\n", ev, len);
			post(&evq, b, 8);
			vq_kick(&evq);
		}
	}
}

static void post_events(void)
{
	for (int i = 0; i < NEV; i++)
		post(&evq, evbufs[i], 8);
}

/* Ends at the deadline, or at once if the TSC went back (see the top). */
static void wait_until(u64 deadline, u64 ticks)
{
	for (;;) {
		if (rt_expired(deadline))
			return;
		if (deadline - rdtsc() > ticks)
			return;
		cpu_relax();
	}
}

int main(void)
{
	u64 period = rt_cmdline_u64("snapident.period_us", 5000);
	u64 ev_at = rt_cmdline_u64("snapident.ev_at_tick", 0);

	if (vio_find(VIO_ID_VSOCK, 0, &vs) || vio_init(&vs, 0) ||
	    vq_setup(&vs, &vrxq, 0, NVRX, vrx_ring) || vq_setup(&vs, &vtxq, 1, 16, vtx_ring) ||
	    vq_setup(&vs, &evq, 2, NEV, ev_ring)) {
		rt_puts("snapident: no vsock device\n");
		return 1;
	}
	if (vio_find(VIO_ID_NET, 0, &net) || vio_init(&net, F_MAC) ||
	    !(net.features & F_MAC) || vq_setup(&net, &nrxq, 0, NNRX, nrx_ring) ||
	    vq_setup(&net, &ntxq, 1, 8, ntx_ring)) {
		rt_puts("snapident: no net device with a MAC\n");
		return 2;
	}
	for (int i = 0; i < NVRX; i++)
		post(&vrxq, vrxbufs[i], VBUF);
	if (!ev_at)
		post_events();
	vio_driver_ok(&vs);
	for (int i = 0; i < NNRX; i++)
		post(&nrxq, nrxbufs[i], NBUF);
	vio_driver_ok(&net);
	vq_kick(&nrxq);

	read_ids();
	print_ids("");

	u64 ticks = period * rt_tsc_mhz();
	for (;;) {
		wait_until(rt_deadline_us(period), ticks);
		tick = tick + 1;
		rt_printf("snapident: tick %lu\n", tick);
		if (ev_at && tick == ev_at) {
			post_events();
			vq_kick(&evq);
			rt_puts("snapident: event buffers posted\n");
		}
		poll_events();
		poll_net();
	}
}
