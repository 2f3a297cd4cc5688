/*
 * virtio_vsock: first connects to host port 5000 (the host side listens on
 * <uds_path>_5000) and checks a message comes back echoed; then accepts a
 * host-initiated connection on port 6000 and echoes everything it receives
 * until the host shuts it down, honouring credit both ways: it advertises a
 * 64 KiB buffer, fails if the device ever sends past it, and never sends past
 * the device's credit.  Last, it opens a second connection to port 5000 and
 * resets the device with it open.
 */
#include "virtio.h"

#define HOST_CID	2
#define OUT_PORT	5000
#define LOCAL_PORT	1234
#define LISTEN_PORT	6000
#define GBUF		65536
#define RXBUF		4096
#define NRX		16

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST };

struct hdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

VQ_PAGES(rx_ring);
VQ_PAGES(tx_ring);
VQ_PAGES(ev_ring);
static u8 rxbufs[NRX][RXBUF] __attribute__((aligned(4096)));
static u8 evbufs[4][8];
static struct vdev dev;
static struct vq rxq, txq, evq;
static u64 cid;

struct conn {
	u32 local, peer;
	u32 rx_total, fwd_cnt, reported;
	u32 tx_total, peer_alloc, peer_fwd;
	u32 pend_len, max_inflight;
	int credit_requested, shut;
	u8 pend[GBUF];
};
static struct conn c;
static struct hdr txh;
static u8 txdata[RXBUF];

static void post_rx(u8 *buf)
{
	struct vbuf b = { buf, RXBUF, 1 };
	vq_add(&rxq, &b, 1);
}

static int send(u16 op, u32 flags, const void *data, u32 len)
{
	txh = (struct hdr){ cid, HOST_CID, c.local, c.peer, len, 1, op, flags, GBUF, c.fwd_cnt };
	c.reported = c.fwd_cnt;
	struct vbuf b[2] = { { &txh, sizeof(txh), 0 }, { txdata, len, 0 } };
	if (len)
		memcpy(txdata, data, len);
	vq_add(&txq, b, len ? 2 : 1);
	vq_kick(&txq);
	return vq_wait(&txq, 0, 5000000) < 0 ? -1 : 0;
}

/* Next packet into *h / payload (copied into c.pend for RW); -1 on timeout. */
static int recv(struct hdr *h, u64 timeout_us)
{
	u32 len;
	int id = vq_wait(&rxq, &len, timeout_us);
	if (id < 0)
		return -1;
	u8 *buf = (u8 *)rxq.desc[id].addr;	/* the buffer this descriptor carries */
	memcpy(h, buf, sizeof(*h));
	if (h->op == OP_RW && h->dst_port == c.local && h->src_port == c.peer) {
		c.rx_total += h->len;
		u32 inflight = c.rx_total - c.fwd_cnt;
		if (inflight > c.max_inflight)
			c.max_inflight = inflight;
		if (inflight > GBUF || c.pend_len + h->len > GBUF) {
			rt_printf("vsock: credit violated: %u bytes in flight\n", inflight);
			rt_exit(9);
		}
		memcpy(c.pend + c.pend_len, buf + sizeof(*h), h->len);
		c.pend_len += h->len;
	}
	if (h->src_port == c.peer) {
		c.peer_alloc = h->buf_alloc;
		c.peer_fwd = h->fwd_cnt;
	}
	post_rx(buf);
	vq_kick(&rxq);
	return 0;
}

static u32 peer_credit(void)
{
	u32 inflight = c.tx_total - c.peer_fwd;
	return inflight > c.peer_alloc ? 0 : c.peer_alloc - inflight;
}

/* Echoes what is pending, within the host's credit. */
static int echo_pending(void)
{
	while (c.pend_len) {
		u32 n = c.pend_len;
		if (n > RXBUF)
			n = RXBUF;
		if (n > peer_credit())
			n = peer_credit();
		if (!n) {
			if (!c.credit_requested && send(OP_CREDIT_REQUEST, 0, 0, 0))
				return -1;
			c.credit_requested = 1;
			return 0;
		}
		c.credit_requested = 0;
		c.fwd_cnt += n;		/* consumed from our buffer */
		if (send(OP_RW, 0, c.pend, n))
			return -1;
		c.tx_total += n;
		memmove(c.pend, c.pend + n, c.pend_len - n);
		c.pend_len -= n;
	}
	if (c.fwd_cnt - c.reported >= GBUF / 4)
		return send(OP_CREDIT_UPDATE, 0, 0, 0);
	return 0;
}

static void reset_conn(u32 local, u32 peer)
{
	memset(&c, 0, sizeof(c) - sizeof(c.pend));
	c.local = local;
	c.peer = peer;
}

static int guest_initiated(void)
{
	static const char msg[] = "hello from the guest over vsock";
	struct hdr h;
	reset_conn(LOCAL_PORT, OUT_PORT);
	if (send(OP_REQUEST, 0, 0, 0))
		return 10;
	if (recv(&h, 5000000) || h.op != OP_RESPONSE || h.src_port != OUT_PORT) {
		rt_printf("vsock: no RESPONSE from port %u (op %u)\n", OUT_PORT, h.op);
		return 11;
	}
	rt_printf("vsock: connected to host port %u\n", OUT_PORT);
	c.peer_alloc = h.buf_alloc;
	if (send(OP_RW, 0, msg, sizeof(msg) - 1))
		return 12;
	c.tx_total += sizeof(msg) - 1;
	while (c.pend_len < sizeof(msg) - 1)
		if (recv(&h, 5000000))
			return 13;
	if (memcmp(c.pend, msg, sizeof(msg) - 1)) {
		rt_puts("vsock: echo mismatch\n");
		return 14;
	}
	c.fwd_cnt += c.pend_len;
	c.pend_len = 0;
	if (send(OP_SHUTDOWN, 3, 0, 0))
		return 15;
	do {
		if (recv(&h, 5000000))
			return 16;
	} while (h.op != OP_RST);
	rt_puts("vsock: guest-initiated echo ok\n");
	return 0;
}

static int host_initiated(void)
{
	struct hdr h;
	reset_conn(LISTEN_PORT, 0);
	rt_printf("vsock: listening on port %u\n", LISTEN_PORT);
	do {
		if (recv(&h, 30000000))
			return 20;
	} while (h.op != OP_REQUEST || h.dst_port != LISTEN_PORT);
	c.peer = h.src_port;
	c.peer_alloc = h.buf_alloc;
	c.peer_fwd = h.fwd_cnt;
	if (send(OP_RESPONSE, 0, 0, 0))
		return 21;
	rt_printf("vsock: accepted host port %u\n", c.peer);
	for (;;) {
		if (recv(&h, 30000000))
			return 22;
		if (h.src_port != c.peer)
			continue;
		if (h.op == OP_SHUTDOWN || h.op == OP_RST)
			break;
		if (h.op == OP_CREDIT_REQUEST && send(OP_CREDIT_UPDATE, 0, 0, 0))
			return 23;
		if (echo_pending())
			return 24;
	}
	if (c.pend_len)
		rt_printf("vsock: %u bytes left unechoed\n", c.pend_len);
	if (h.op == OP_SHUTDOWN)
		send(OP_RST, 0, 0, 0);
	rt_printf("vsock: host-initiated echo ok %u bytes, max in flight %u of %u\n",
		  c.tx_total, c.max_inflight, GBUF);
	return 0;
}

int main(void)
{
	if (vio_find(VIO_ID_VSOCK, 0, &dev) || vio_init(&dev, 0) ||
	    vq_setup(&dev, &rxq, 0, NRX, rx_ring) || vq_setup(&dev, &txq, 1, 16, tx_ring) ||
	    vq_setup(&dev, &evq, 2, 4, ev_ring)) {
		rt_puts("vsock: no device\n");
		return 1;
	}
	cid = vio_config32(&dev, 0) | (u64)vio_config32(&dev, 4) << 32;
	rt_printf("vsock: guest cid %lu\n", cid);
	for (int i = 0; i < NRX; i++)
		post_rx(rxbufs[i]);
	for (int i = 0; i < 4; i++) {
		struct vbuf b = { evbufs[i], 8, 1 };
		vq_add(&evq, &b, 1);
	}
	vio_driver_ok(&dev);
	int r = guest_initiated();
	if (!r)
		r = host_initiated();
	if (r)
		return r;

	/* Reset the device with a connection open: the VMM must drop it cleanly. */
	struct hdr h;
	reset_conn(LOCAL_PORT + 1, OUT_PORT);
	if (send(OP_REQUEST, 0, 0, 0) || recv(&h, 5000000) || h.op != OP_RESPONSE)
		return 30;
	vio_write(&dev, VIO_STATUS, 0);
	if (vio_read(&dev, VIO_STATUS) != 0)
		return 31;
	rt_puts("vsock: reset with an open connection\n");
	return 0;
}
