/* Tiny runtime shared by all guests: boot info, serial console, exit. */
#ifndef RT_H
#define RT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef unsigned long size_t;

#define NORETURN __attribute__((noreturn))

/* ---- port I/O, CPU (work at CPL3: the runtime runs with IOPL=3) ---- */
static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(0));
}

/* ---- memory-mapped I/O ---- */
#define LAPIC_BASE	0xfee00000UL
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }

/* ---- boot_params (Linux zero page) ---- */
struct e820_entry {
	u64 addr;
	u64 size;
	u32 type;
};
#define E820_RAM 1

extern u8 *rt_boot_params;
u32 rt_e820_count(void);
struct e820_entry rt_e820(u32 i);
const char *rt_cmdline(void);		/* never NULL */
u64 rt_initrd_addr(void);
u64 rt_initrd_size(void);
int rt_cmdline_has_word(const char *word);	/* "word" or "word=..." */
/* The decimal value of the word `key=<n>`; dflt if absent or not a number. */
u64 rt_cmdline_u64(const char *key, u64 dflt);
extern u64 rt_mapped_top;		/* identity map covers [0, this) */

/* ---- Intel MP table ---- */
#define RT_MAX_CPUS 64
int rt_mp_cpus(u8 *apic_ids, int max);	/* enabled CPUs, or 0 if no table */

/* ---- console (8250 at 0x3f8) ---- */
void rt_putc(char c);
void rt_puts(const char *s);
/* %s %c %d %u %x, with 'l' (64-bit), zero-pad and width: "%016lx" */
void rt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int rt_serial_poll(void);		/* next input byte, or -1 */

/* ---- time (TSC based, frequency from CPUID or assumed 3 GHz) ---- */
u64 rt_tsc_mhz(void);
u64 rt_deadline_us(u64 us);		/* TSC value us microseconds from now */
int rt_expired(u64 deadline);
void rt_delay_us(u64 us);

/* ---- ending the VM ---- */
NORETURN void rt_exit(int status);	/* debug port 0xf4 */
NORETURN void rt_reset(void);		/* i8042 reset */
NORETURN void rt_triple_fault(void);

/* ---- libc bits the compiler may call ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- image bounds (link.ld) ---- */
extern char __image_start[], __image_end[];

int main(void);

#endif
