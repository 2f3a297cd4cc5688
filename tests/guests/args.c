/* args: FNV-1a 64 hashes of the command line and the initrd. */
#include "rt.h"

static u64 fnv1a(const u8 *p, u64 n)
{
	u64 h = 0xcbf29ce484222325UL;
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3UL;
	}
	return h;
}

int main(void)
{
	const char *cmdline = rt_cmdline();
	u64 len = strlen(cmdline);
	rt_printf("args: cmdline %016lx len %lu\n",
		  fnv1a((const u8 *)cmdline, len), len);

	u64 size = rt_initrd_size();
	if (size == 0)
		rt_puts("args: initrd none\n");
	else
		rt_printf("args: initrd %016lx len %lu\n",
			  fnv1a((const u8 *)rt_initrd_addr(), size), size);
	return 0;
}
