/* virtio-blk requests (see vblk.h). */
#include "vblk.h"

VQ_PAGES(vblk_ring);
static struct vblk_hdr hdr;
static volatile u8 status;

int vblk_open(struct vblk *b)
{
	if (vio_find(VIO_ID_BLOCK, 0, &b->dev))
		return -1;
	if (vio_init(&b->dev, VBLK_F_FLUSH | VBLK_F_RO))
		return -2;
	if (vq_setup(&b->dev, &b->q, 0, 16, vblk_ring))
		return -3;
	vio_driver_ok(&b->dev);
	b->capacity = vio_config32(&b->dev, 0) | (u64)vio_config32(&b->dev, 4) << 32;
	return 0;
}

int vblk_req(struct vblk *b, u32 type, u64 sector, void *buf, u32 len, u32 *used)
{
	struct vbuf bufs[3];
	int n = 0;
	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status = 0xff;
	bufs[n++] = (struct vbuf){ &hdr, sizeof(hdr), 0 };
	if (len)
		bufs[n++] = (struct vbuf){ buf, len, type != VBLK_T_OUT };
	bufs[n++] = (struct vbuf){ (void *)&status, 1, 1 };
	vq_add(&b->q, bufs, n);
	vq_kick(&b->q);
	u32 l = 0;
	if (vq_wait(&b->q, &l, 5000000) < 0)
		return -1;
	if (used)
		*used = l;
	return status;
}
