/*
 * virtio_rng: reads 4 KiB from the entropy device and describes it.  It also
 * checks the device's interrupt reaches the IOAPIC pin named on the command
 * line: the pin is routed to vector 0x40 + irq and, with IF=0, the vector must
 * end up pending in the local APIC's IRR.
 */
#include "virtio.h"

#define IOAPIC_BASE	0xfec00000UL
#define LAPIC_SVR	0xf0
#define LAPIC_IRR	0x200

static void ioapic_write(u32 reg, u32 v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}

static int vector_pending(u32 vec)
{
	return (mmio_read32(LAPIC_BASE + LAPIC_IRR + 0x10 * (vec / 32)) >> (vec % 32)) & 1;
}

VQ_PAGES(ring);
static u8 buf[4096] __attribute__((aligned(4096)));

int main(void)
{
	struct vdev d;
	struct vq q;
	if (vio_find(VIO_ID_RNG, 0, &d) || vio_init(&d, 0) || vq_setup(&d, &q, 0, 8, ring)) {
		rt_puts("rng: no device\n");
		return 1;
	}
	/* Route the device's pin to a vector (edge, fixed, to APIC 0). */
	u32 vec = 0x40 + d.irq;
	mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x1ff);
	ioapic_write(0x11 + 2 * d.irq, 0);
	ioapic_write(0x10 + 2 * d.irq, vec);
	int before = vector_pending(vec);
	vio_driver_ok(&d);
	struct vbuf b = { buf, sizeof(buf), 1 };
	vq_add(&q, &b, 1);
	vq_kick(&q);
	u32 len = 0;
	if (vq_wait(&q, &len, 5000000) < 0) {
		rt_puts("rng: timeout\n");
		return 2;
	}
	u64 end = rt_deadline_us(1000000);
	while (!vector_pending(vec) && !rt_expired(end))
		cpu_relax();
	rt_printf("rng: irq %u vector %x pending before %d after %d, isr %x\n", d.irq, vec,
		  before, vector_pending(vec), vio_read(&d, VIO_INT_STATUS));
	u8 seen[256];
	memset(seen, 0, sizeof(seen));
	int distinct = 0;
	for (u32 i = 0; i < len && i < sizeof(buf); i++)
		if (!seen[buf[i]]++)
			distinct++;
	rt_printf("rng: %u bytes, %d distinct, hash %016lx\n", len, distinct,
		  fnv1a64(buf, sizeof(buf)));
	return 0;
}
