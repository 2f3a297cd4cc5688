/*
 * A small virtio-mmio (version 2) driver library for the test guests: finds
 * devices from the virtio_mmio.device= words of the command line, negotiates
 * features, sets up split virtqueues and submits/polls descriptor chains.
 * Everything runs at CPL3 with the identity map, polling (IF=0).
 */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "rt.h"

/* Registers. */
#define VIO_MAGIC		0x000
#define VIO_VERSION		0x004
#define VIO_DEVICE_ID		0x008
#define VIO_DEV_FEATURES	0x010
#define VIO_DEV_FEATURES_SEL	0x014
#define VIO_DRV_FEATURES	0x020
#define VIO_DRV_FEATURES_SEL	0x024
#define VIO_QUEUE_SEL		0x030
#define VIO_QUEUE_NUM_MAX	0x034
#define VIO_QUEUE_NUM		0x038
#define VIO_QUEUE_READY		0x044
#define VIO_QUEUE_NOTIFY	0x050
#define VIO_INT_STATUS		0x060
#define VIO_INT_ACK		0x064
#define VIO_STATUS		0x070
#define VIO_QUEUE_DESC_LO	0x080
#define VIO_QUEUE_DESC_HI	0x084
#define VIO_QUEUE_AVAIL_LO	0x090
#define VIO_QUEUE_AVAIL_HI	0x094
#define VIO_QUEUE_USED_LO	0x0a0
#define VIO_QUEUE_USED_HI	0x0a4
#define VIO_CONFIG		0x100

/* Status bits. */
#define VIO_S_ACK		1
#define VIO_S_DRIVER		2
#define VIO_S_DRIVER_OK		4
#define VIO_S_FEATURES_OK	8
#define VIO_S_NEEDS_RESET	0x40
#define VIO_S_FAILED		0x80

#define VIO_F_VERSION_1		(1UL << 32)

#define VIO_ID_NET		1
#define VIO_ID_BLOCK		2
#define VIO_ID_RNG		4
#define VIO_ID_VSOCK		19

#define VQ_F_NEXT		1
#define VQ_F_WRITE		2

#define VQ_MAX			256

struct vq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct vq_used_elem {
	u32 id;
	u32 len;
};

struct vdev {
	u64 base;
	u32 irq;
	u32 id;
	u64 features;		/* negotiated */
};

struct vq {
	struct vdev *dev;
	u16 index;
	u16 size;
	u16 next_desc;		/* next descriptor to hand out (round robin) */
	u16 avail_idx;		/* our copy of avail->idx */
	u16 used_seen;		/* used entries consumed */
	volatile struct vq_desc *desc;
	volatile u16 *avail;	/* flags, idx, ring[size] */
	volatile u16 *used_hdr;	/* flags, idx */
	volatile struct vq_used_elem *used;
};

/* One buffer of a chain. */
struct vbuf {
	void *addr;
	u32 len;
	int writable;
};

static inline u32 vio_read(struct vdev *d, u32 off) { return mmio_read32(d->base + off); }
static inline void vio_write(struct vdev *d, u32 off, u32 v) { mmio_write32(d->base + off, v); }
static inline void vio_barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

/* The nth (0-based) device of type id on the command line; 0 if found. */
int vio_find(u32 id, int nth, struct vdev *d);
/* Reset, ACK, DRIVER, negotiate (wanted & offered) | VERSION_1, FEATURES_OK. */
int vio_init(struct vdev *d, u64 wanted);
/* Sets up queue index with size entries in mem (3 pages, page aligned). */
int vq_setup(struct vdev *d, struct vq *q, u16 index, u16 size, void *mem);
void vio_driver_ok(struct vdev *d);
/* Adds a chain of n buffers, publishes it; returns its head. Does not notify. */
u16 vq_add(struct vq *q, const struct vbuf *bufs, int n);
void vq_kick(struct vq *q);
/* Waits up to timeout_us for a used entry; returns its id (len in *len) or -1. */
int vq_wait(struct vq *q, u32 *len, u64 timeout_us);
/* A used entry if one is there right now, else -1. */
int vq_poll(struct vq *q, u32 *len);
u32 vio_config32(struct vdev *d, u32 off);

/* Queue memory: three pages each. */
#define VQ_PAGES(n) static u8 n[3 * 4096] __attribute__((aligned(4096)))

u64 fnv1a64(const void *p, u64 n);

#endif
