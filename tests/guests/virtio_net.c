/*
 * virtio_net: sends one frame (ethertype 0x88b5, broadcast) saying hello, then
 * waits for a 0x88b5 frame addressed to it and sends it back with the MAC
 * addresses swapped.  Frames of other ethertypes are ignored.
 */
#include "virtio.h"

#define F_MAC		(1UL << 5)
#define ETH_TEST	0x88b5
#define HDR		12
#define NRX		8
#define BUFSZ		2048

VQ_PAGES(rx_ring);
VQ_PAGES(tx_ring);
static u8 rxbufs[NRX][BUFSZ] __attribute__((aligned(4096)));
static u8 txbuf[BUFSZ] __attribute__((aligned(4096)));
static struct vdev dev;
static struct vq rxq, txq;
static u8 mac[6];

static void post_rx(u8 *b)
{
	struct vbuf v = { b, BUFSZ, 1 };
	vq_add(&rxq, &v, 1);
}

static int send_frame(const u8 *dst, const u8 *payload, u32 len)
{
	memset(txbuf, 0, HDR);		/* no offloads */
	memcpy(txbuf + HDR, dst, 6);
	memcpy(txbuf + HDR + 6, mac, 6);
	txbuf[HDR + 12] = ETH_TEST >> 8;
	txbuf[HDR + 13] = ETH_TEST & 0xff;
	memcpy(txbuf + HDR + 14, payload, len);
	u32 n = HDR + 14 + len;
	if (n < HDR + 60)
		n = HDR + 60;
	/* Header and frame in separate descriptors, as Linux may do. */
	struct vbuf b[2] = { { txbuf, HDR, 0 }, { txbuf + HDR, n - HDR, 0 } };
	vq_add(&txq, b, 2);
	vq_kick(&txq);
	return vq_wait(&txq, 0, 5000000) < 0 ? -1 : 0;
}

int main(void)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const char hello[] = "hello from the guest net";

	if (vio_find(VIO_ID_NET, 0, &dev) || vio_init(&dev, F_MAC) ||
	    vq_setup(&dev, &rxq, 0, NRX, rx_ring) || vq_setup(&dev, &txq, 1, 8, tx_ring)) {
		rt_puts("net: no device\n");
		return 1;
	}
	for (int i = 0; i < 6; i++)
		mac[i] = *(volatile u8 *)(dev.base + VIO_CONFIG + i);
	rt_printf("net: mac %02x:%02x:%02x:%02x:%02x:%02x\n",
		  mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	for (int i = 0; i < NRX; i++)
		post_rx(rxbufs[i]);
	vio_driver_ok(&dev);
	vq_kick(&rxq);

	if (send_frame(bcast, (const u8 *)hello, sizeof(hello) - 1))
		return 2;
	rt_puts("net: sent hello\n");

	u64 end = rt_deadline_us(30000000);
	while (!rt_expired(end)) {
		u32 len;
		int id = vq_wait(&rxq, &len, 1000000);
		if (id < 0)
			continue;
		u8 *b = (u8 *)rxq.desc[id].addr;
		u16 nbuf = b[10] | b[11] << 8;
		u8 *f = b + HDR;
		int ours = len >= HDR + 14 && f[12] == (ETH_TEST >> 8) &&
			   f[13] == (ETH_TEST & 0xff) && !memcmp(f, mac, 6);
		if (ours) {
			u32 plen = len - HDR - 14;
			rt_printf("net: got %u bytes, num_buffers %u, flags %u\n", plen, nbuf, b[0]);
			u8 src[6];
			memcpy(src, f + 6, 6);
			if (send_frame(src, f + 14, plen))
				return 3;
			rt_puts("net: echoed\n");
			return nbuf == 1 ? 0 : 4;
		}
		post_rx(b);
		vq_kick(&rxq);
	}
	rt_puts("net: timeout\n");
	return 5;
}
