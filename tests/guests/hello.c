/* hello: one line on the serial console, then an i8042 reset. */
#include "rt.h"

int main(void)
{
	rt_puts("Hello from the Caisson hello guest\n");
	rt_reset();
}
