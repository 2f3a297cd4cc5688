/* virtio-blk requests on top of virtio.h (one request in flight). */
#ifndef VBLK_H
#define VBLK_H

#include "virtio.h"

#define VBLK_T_IN	0
#define VBLK_T_OUT	1
#define VBLK_T_FLUSH	4
#define VBLK_T_GET_ID	8
#define VBLK_F_RO	(1UL << 5)
#define VBLK_F_FLUSH	(1UL << 9)

struct vblk_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

struct vblk {
	struct vdev dev;
	struct vq q;
	u64 capacity;	/* sectors */
};

/* Finds, negotiates and starts the first block device; 0 on success. */
int vblk_open(struct vblk *b);
/* One request: returns the status byte, or -1 on timeout. *used gets the used len. */
int vblk_req(struct vblk *b, u32 type, u64 sector, void *buf, u32 len, u32 *used);

#endif
