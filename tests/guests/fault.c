/* fault: announce, then triple fault (no usable IDT). */
#include "rt.h"

int main(void)
{
	rt_puts("fault: triple faulting now\n");
	rt_triple_fault();
}
