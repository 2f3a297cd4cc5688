/*
 * memory: print the e820 map, fill every usable RAM byte above 1 MiB that
 * the guest does not occupy with an address-derived pattern, verify it.
 */
#include "rt.h"

#define PATTERN 0x5a5aa5a5c3c33c3cUL
#define MAX_RANGES 64

struct range { u64 start, end; };
static struct range ranges[MAX_RANGES];
static int nranges;

static void add_range(u64 start, u64 end)
{
	start = (start + 4095) & ~4095UL;
	end &= ~4095UL;
	if (end > rt_mapped_top)
		end = rt_mapped_top;
	if (start < end && nranges < MAX_RANGES)
		ranges[nranges++] = (struct range){ start, end };
}

int main(void)
{
	u64 img_start = (u64)__image_start & ~4095UL;
	u64 img_end = ((u64)__image_end + 4095) & ~4095UL;

	for (u32 i = 0; i < rt_e820_count(); i++) {
		struct e820_entry e = rt_e820(i);
		rt_printf("memory: e820 %lx %lx %u\n", e.addr, e.size, e.type);
		if (e.type != E820_RAM)
			continue;
		u64 start = e.addr < 0x100000 ? 0x100000 : e.addr;
		u64 end = e.addr + e.size;
		/* cut out our own image (text, data, page tables, stacks) */
		add_range(start, end < img_start ? end : img_start);
		add_range(start > img_end ? start : img_end, end);
	}

	u64 tested = 0;
	for (int r = 0; r < nranges; r++) {
		volatile u64 *p = (volatile u64 *)ranges[r].start;
		volatile u64 *end = (volatile u64 *)ranges[r].end;
		for (; p < end; p++)
			*p = (u64)p ^ PATTERN;
		tested += ranges[r].end - ranges[r].start;
	}
	for (int r = 0; r < nranges; r++) {
		volatile u64 *p = (volatile u64 *)ranges[r].start;
		volatile u64 *end = (volatile u64 *)ranges[r].end;
		for (; p < end; p++) {
			if (*p != ((u64)p ^ PATTERN)) {
				rt_printf("memory: mismatch at %lx\n", (u64)p);
				return 1;
			}
		}
	}
	rt_printf("memory: tested %lu bytes\n", tested);
	rt_puts("memory: ok\n");
	return 0;
}
