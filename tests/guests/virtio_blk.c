/*
 * virtio_blk: GET_ID, hashes the first 8 sectors, writes a pattern to
 * sectors [8, 72), flushes, reads it back and compares, then checks that bad
 * requests get IOERR/UNSUPP.  Pattern byte at disk offset o: (o % 251) ^ 0x5a.
 * On a read-only drive the write must be refused instead.
 */
#include "vblk.h"

#define PAT_SECTOR	8
#define PAT_SECTORS	64
#define PAT_BYTES	(PAT_SECTORS * 512)

static u8 wbuf[PAT_BYTES] __attribute__((aligned(4096)));
static u8 rbuf[PAT_BYTES] __attribute__((aligned(4096)));

int main(void)
{
	struct vblk b;
	int r = vblk_open(&b);
	if (r) {
		rt_printf("blk: open failed %d\n", r);
		return 1;
	}
	int ro = (b.dev.features & VBLK_F_RO) != 0;
	rt_printf("blk: capacity %lu sectors%s\n", b.capacity, ro ? " ro" : "");

	char id[21];
	memset(id, 0, sizeof(id));
	u32 used = 0;
	r = vblk_req(&b, VBLK_T_GET_ID, 0, id, 20, &used);
	rt_printf("blk: id %s status %d used %u\n", id, r, used);

	r = vblk_req(&b, VBLK_T_IN, 0, rbuf, 8 * 512, &used);
	rt_printf("blk: head %016lx status %d used %u\n", fnv1a64(rbuf, 8 * 512), r, used);

	for (u64 i = 0; i < PAT_BYTES; i++)
		wbuf[i] = ((PAT_SECTOR * 512 + i) % 251) ^ 0x5a;
	r = vblk_req(&b, VBLK_T_OUT, PAT_SECTOR, wbuf, PAT_BYTES, 0);
	if (ro) {
		rt_printf("blk: ro write status %d\n", r);
		if (r != 1)
			return 2;
	} else if (r != 0) {
		rt_printf("blk: write failed %d\n", r);
		return 2;
	}
	r = vblk_req(&b, VBLK_T_FLUSH, 0, 0, 0, 0);
	rt_printf("blk: flush status %d\n", r);
	if (r != 0)
		return 3;
	memset(rbuf, 0, PAT_BYTES);
	r = vblk_req(&b, VBLK_T_IN, PAT_SECTOR, rbuf, PAT_BYTES, &used);
	if (r != 0) {
		rt_printf("blk: read failed %d\n", r);
		return 4;
	}
	if (!ro) {
		if (memcmp(rbuf, wbuf, PAT_BYTES)) {
			rt_puts("blk: pattern mismatch\n");
			return 5;
		}
		rt_printf("blk: pattern ok (%u bytes)\n", PAT_BYTES);
	}

	int oor = vblk_req(&b, VBLK_T_IN, b.capacity, rbuf, 512, 0);
	int odd = vblk_req(&b, VBLK_T_IN, 0, rbuf, 100, 0);
	int uns = vblk_req(&b, 42, 0, 0, 0, 0);
	rt_printf("blk: bad requests: out-of-range %d, odd length %d, type 42 %d\n", oor, odd, uns);
	if (oor != 1 || odd != 1 || uns != 2)
		return 6;
	rt_puts("blk: done\n");
	return 0;
}
