/* Boot information (zero page, MP table) and the CPL3 start-up path. */
#include "rt.h"
#include "layout.h"

/* struct boot_params offsets */
#define BP_EXT_RAMDISK_IMAGE	0x0c0
#define BP_EXT_RAMDISK_SIZE	0x0c4
#define BP_EXT_CMD_LINE_PTR	0x0c8
#define BP_E820_ENTRIES		0x1e8
#define BP_RAMDISK_IMAGE	0x218
#define BP_RAMDISK_SIZE		0x21c
#define BP_CMD_LINE_PTR		0x228
#define BP_E820_TABLE		0x2d0
#define BP_E820_MAX		128

extern u8 rt_have_1g;
extern u64 rt_pdpt[512];
extern u64 rt_pd[RT_MAX_PD_GIB * 512];
extern char __bss_start[], __bss_end[];

u64 rt_mapped_top;

static u32 bp32(u32 off) { return *(volatile u32 *)(rt_boot_params + off); }

u32 rt_e820_count(void)
{
	u32 n = rt_boot_params[BP_E820_ENTRIES];
	return n > BP_E820_MAX ? BP_E820_MAX : n;
}

struct e820_entry rt_e820(u32 i)
{
	const u8 *p = rt_boot_params + BP_E820_TABLE + 20 * i;
	struct e820_entry e;
	memcpy(&e.addr, p, 8);
	memcpy(&e.size, p + 8, 8);
	memcpy(&e.type, p + 16, 4);
	return e;
}

const char *rt_cmdline(void)
{
	u64 p = bp32(BP_CMD_LINE_PTR) | (u64)bp32(BP_EXT_CMD_LINE_PTR) << 32;
	return p ? (const char *)p : "";
}

u64 rt_initrd_addr(void)
{
	return bp32(BP_RAMDISK_IMAGE) | (u64)bp32(BP_EXT_RAMDISK_IMAGE) << 32;
}

u64 rt_initrd_size(void)
{
	return bp32(BP_RAMDISK_SIZE) | (u64)bp32(BP_EXT_RAMDISK_SIZE) << 32;
}

int rt_cmdline_has_word(const char *word)
{
	const char *s = rt_cmdline();
	size_t n = strlen(word);

	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		if (!memcmp(s, word, n) &&
		    (s[n] == 0 || s[n] == ' ' || s[n] == '\t' ||
		     s[n] == '\n' || s[n] == '='))
			return 1;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n')
			s++;
	}
	return 0;
}

u64 rt_cmdline_u64(const char *key, u64 dflt)
{
	const char *s = rt_cmdline();
	size_t n = strlen(key);

	for (; *s; s++) {
		if ((s != rt_cmdline() && s[-1] != ' ') || memcmp(s, key, n) || s[n] != '=')
			continue;
		s += n + 1;
		if (*s < '0' || *s > '9')
			return dflt;
		u64 v = 0;
		for (; *s >= '0' && *s <= '9'; s++)
			v = v * 10 + (u64)(*s - '0');
		return v;
	}
	return dflt;
}

/* ---- Intel MP table (spec 1.4) ---- */

static const u8 *mp_scan(u64 start, u64 end)
{
	for (u64 p = start; p + 16 <= end; p += 16)
		if (!memcmp((const void *)p, "_MP_", 4))
			return (const u8 *)p;
	return 0;
}

int rt_mp_cpus(u8 *apic_ids, int max)
{
	const u8 *fp = mp_scan(0x9fc00, 0xa0000);
	if (!fp)
		fp = mp_scan(0xf0000, 0x100000);
	if (!fp)
		return 0;
	u32 cfg_addr;
	memcpy(&cfg_addr, fp + 4, 4);
	const u8 *cfg = (const u8 *)(u64)cfg_addr;
	if (!cfg_addr || memcmp(cfg, "PCMP", 4))
		return 0;
	u16 len, count;
	memcpy(&len, cfg + 4, 2);
	memcpy(&count, cfg + 34, 2);

	const u8 *p = cfg + 44, *end = cfg + len;
	int n = 0;
	for (u32 i = 0; i < count && p < end; i++) {
		if (p[0] == 0) {		/* processor, 20 bytes */
			if ((p[3] & 1) && n < max)
				apic_ids[n++] = p[1];
			p += 20;
		} else if (p[0] <= 4) {		/* bus, ioapic, irq: 8 bytes */
			p += 8;
		} else {
			break;
		}
	}
	return n;
}

/* ---- identity map beyond what start.S mapped (runs at CPL3) ---- */

static void map_rest(void)
{
	u64 top = 4UL << 30;		/* always cover the MMIO hole */
	for (u32 i = 0; i < rt_e820_count(); i++) {
		struct e820_entry e = rt_e820(i);
		if (e.addr + e.size > top)
			top = e.addr + e.size;
	}
	u64 gib = (top + (1UL << 30) - 1) >> 30;

	if (rt_have_1g) {
		if (gib > 512)
			gib = 512;
		for (u64 g = 4; g < gib; g++)
			rt_pdpt[g] = g << 30 | RT_PTE_LARGE;
	} else {
		if (gib > RT_MAX_PD_GIB)
			gib = RT_MAX_PD_GIB;
		for (u64 g = 1; g < gib; g++) {
			u64 *pd = &rt_pd[g * 512];
			for (u64 i = 0; i < 512; i++)
				pd[i] = g << 30 | i << 21 | RT_PTE_LARGE;
			rt_pdpt[g] = (u64)pd | RT_PTE_TABLE;
		}
	}
	rt_mapped_top = gib << 30;
}

NORETURN void rt_user_start(void)
{
	memset(__bss_start, 0, __bss_end - __bss_start);
	map_rest();
	rt_exit(main());
}
