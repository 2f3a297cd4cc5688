/* virtio_rng: reads 4 KiB from the entropy device and describes it. */
#include "virtio.h"

VQ_PAGES(ring);
static u8 buf[4096] __attribute__((aligned(4096)));

int main(void)
{
	struct vdev d;
	struct vq q;
	if (vio_find(VIO_ID_RNG, 0, &d) || vio_init(&d, 0) || vq_setup(&d, &q, 0, 8, ring)) {
		rt_puts("rng: no device\n");
		return 1;
	}
	vio_driver_ok(&d);
	struct vbuf b = { buf, sizeof(buf), 1 };
	vq_add(&q, &b, 1);
	vq_kick(&q);
	u32 len = 0;
	if (vq_wait(&q, &len, 5000000) < 0) {
		rt_puts("rng: timeout\n");
		return 2;
	}
	u8 seen[256];
	memset(seen, 0, sizeof(seen));
	int distinct = 0;
	for (u32 i = 0; i < len && i < sizeof(buf); i++)
		if (!seen[buf[i]]++)
			distinct++;
	rt_printf("rng: %u bytes, %d distinct, hash %016lx\n", len, distinct,
		  fnv1a64(buf, sizeof(buf)));
	return 0;
}
