/* demo: a friendly banner; optionally waits for a key on the serial port. */
#include "rt.h"

#define INPUT_TIMEOUT_US (300UL * 1000 * 1000)	/* bounded wait: 5 min */

int main(void)
{
	u8 ids[RT_MAX_CPUS];
	int cpus = rt_mp_cpus(ids, RT_MAX_CPUS);
	u64 ram = 0;

	for (u32 i = 0; i < rt_e820_count(); i++) {
		struct e820_entry e = rt_e820(i);
		if (e.type == E820_RAM)
			ram += e.size;
	}

	rt_puts("Caisson demo guest: hello from inside a microVM\n");
	rt_printf("demo: %d vcpus\n", cpus ? cpus : 1);
	rt_printf("demo: %lu MiB of RAM\n", ram >> 20);

	if (rt_cmdline_has_word("caisson.demo_wait")) {
		rt_puts("demo: waiting for input\n");
		u64 deadline = rt_deadline_us(INPUT_TIMEOUT_US);
		int c;
		while ((c = rt_serial_poll()) < 0 && !rt_expired(deadline))
			cpu_relax();
		rt_puts(c < 0 ? "demo: no input (timeout)\n" : "demo: got input\n");
	}

	rt_puts("demo: bye\n");
	rt_reset();
}
