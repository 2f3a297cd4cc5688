/* The virtio-mmio driver library (see virtio.h). */
#include "virtio.h"

u64 fnv1a64(const void *p, u64 n)
{
	const u8 *b = p;
	u64 h = 0xcbf29ce484222325UL;
	while (n--) {
		h ^= *b++;
		h *= 0x100000001b3UL;
	}
	return h;
}

static u64 parse_num(const char **s, int base)
{
	u64 v = 0;
	for (;;) {
		char c = **s;
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return v;
		v = v * base + d;
		(*s)++;
	}
}

int vio_find(u32 id, int nth, struct vdev *d)
{
	static const char key[] = "virtio_mmio.device=";
	const char *s = rt_cmdline();
	u64 klen = sizeof(key) - 1;

	for (; *s; s++) {
		if ((s != rt_cmdline() && s[-1] != ' ') || memcmp(s, key, klen))
			continue;
		const char *p = s + klen;
		while (*p && *p != '@' && *p != ' ')
			p++;
		if (*p != '@' || p[1] != '0' || (p[2] != 'x' && p[2] != 'X'))
			continue;
		p += 3;
		u64 base = parse_num(&p, 16);
		if (*p != ':')
			continue;
		p++;
		u32 irq = parse_num(&p, 10);
		if (mmio_read32(base + VIO_MAGIC) != 0x74726976 ||
		    mmio_read32(base + VIO_VERSION) != 2 ||
		    mmio_read32(base + VIO_DEVICE_ID) != id)
			continue;
		if (nth-- > 0)
			continue;
		d->base = base;
		d->irq = irq;
		d->id = id;
		d->features = 0;
		return 0;
	}
	return -1;
}

int vio_init(struct vdev *d, u64 wanted)
{
	vio_write(d, VIO_STATUS, 0);
	vio_write(d, VIO_STATUS, VIO_S_ACK);
	vio_write(d, VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER);
	vio_write(d, VIO_DEV_FEATURES_SEL, 0);
	u64 offered = vio_read(d, VIO_DEV_FEATURES);
	vio_write(d, VIO_DEV_FEATURES_SEL, 1);
	offered |= (u64)vio_read(d, VIO_DEV_FEATURES) << 32;
	if (!(offered & VIO_F_VERSION_1))
		return -1;
	d->features = (wanted & offered) | VIO_F_VERSION_1;
	vio_write(d, VIO_DRV_FEATURES_SEL, 0);
	vio_write(d, VIO_DRV_FEATURES, (u32)d->features);
	vio_write(d, VIO_DRV_FEATURES_SEL, 1);
	vio_write(d, VIO_DRV_FEATURES, (u32)(d->features >> 32));
	vio_write(d, VIO_STATUS, VIO_S_ACK | VIO_S_DRIVER | VIO_S_FEATURES_OK);
	if (!(vio_read(d, VIO_STATUS) & VIO_S_FEATURES_OK))
		return -1;
	return 0;
}

int vq_setup(struct vdev *d, struct vq *q, u16 index, u16 size, void *mem)
{
	vio_write(d, VIO_QUEUE_SEL, index);
	u32 max = vio_read(d, VIO_QUEUE_NUM_MAX);
	if (max == 0 || size > max || size > VQ_MAX)
		return -1;
	memset(mem, 0, 3 * 4096);
	q->dev = d;
	q->index = index;
	q->size = size;
	q->next_desc = 0;
	q->avail_idx = 0;
	q->used_seen = 0;
	q->desc = mem;				/* 16 * 256 = 4 KiB */
	q->avail = (u16 *)((u8 *)mem + 4096);	/* 6 + 2 * 256 */
	q->used_hdr = (u16 *)((u8 *)mem + 8192);	/* 6 + 8 * 256 */
	q->used = (struct vq_used_elem *)((u8 *)mem + 8192 + 4);
	u64 da = (u64)q->desc, aa = (u64)q->avail, ua = (u64)q->used_hdr;
	vio_write(d, VIO_QUEUE_NUM, size);
	vio_write(d, VIO_QUEUE_DESC_LO, (u32)da);
	vio_write(d, VIO_QUEUE_DESC_HI, (u32)(da >> 32));
	vio_write(d, VIO_QUEUE_AVAIL_LO, (u32)aa);
	vio_write(d, VIO_QUEUE_AVAIL_HI, (u32)(aa >> 32));
	vio_write(d, VIO_QUEUE_USED_LO, (u32)ua);
	vio_write(d, VIO_QUEUE_USED_HI, (u32)(ua >> 32));
	vio_write(d, VIO_QUEUE_READY, 1);
	return vio_read(d, VIO_QUEUE_READY) == 1 ? 0 : -1;
}

void vio_driver_ok(struct vdev *d)
{
	vio_write(d, VIO_STATUS,
		  VIO_S_ACK | VIO_S_DRIVER | VIO_S_FEATURES_OK | VIO_S_DRIVER_OK);
}

u16 vq_add(struct vq *q, const struct vbuf *bufs, int n)
{
	u16 head = q->next_desc;
	for (int i = 0; i < n; i++) {
		u16 idx = (head + i) % q->size;
		q->desc[idx].addr = (u64)bufs[i].addr;
		q->desc[idx].len = bufs[i].len;
		q->desc[idx].flags = (bufs[i].writable ? VQ_F_WRITE : 0) |
				     (i + 1 < n ? VQ_F_NEXT : 0);
		q->desc[idx].next = (head + i + 1) % q->size;
	}
	q->next_desc = (head + n) % q->size;
	q->avail[2 + q->avail_idx % q->size] = head;
	vio_barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
	vio_barrier();
	return head;
}

void vq_kick(struct vq *q)
{
	vio_barrier();
	vio_write(q->dev, VIO_QUEUE_NOTIFY, q->index);
}

int vq_poll(struct vq *q, u32 *len)
{
	vio_barrier();
	if (q->used_hdr[1] == q->used_seen)
		return -1;
	vio_barrier();
	volatile struct vq_used_elem *e = &q->used[q->used_seen % q->size];
	int id = e->id;
	if (len)
		*len = e->len;
	q->used_seen++;
	return id;
}

int vq_wait(struct vq *q, u32 *len, u64 timeout_us)
{
	u64 end = rt_deadline_us(timeout_us);
	for (;;) {
		int id = vq_poll(q, len);
		if (id >= 0)
			return id;
		if (rt_expired(end))
			return -1;
		cpu_relax();
	}
}

u32 vio_config32(struct vdev *d, u32 off)
{
	return vio_read(d, VIO_CONFIG + off);
}
