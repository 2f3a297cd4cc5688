/* 8250 UART console at 0x3f8 and a minimal printf. */
#include <stdarg.h>
#include "rt.h"

#define COM1		0x3f8
#define COM1_LSR	(COM1 + 5)
#define LSR_DR		0x01
#define LSR_THRE	0x20

void rt_putc(char c)
{
	/* bounded: a stuck LSR must not hang the guest */
	for (int i = 0; i < 100000 && !(inb(COM1_LSR) & LSR_THRE); i++)
		cpu_relax();
	outb(COM1, c);
}

void rt_puts(const char *s)
{
	while (*s)
		rt_putc(*s++);
}

int rt_serial_poll(void)
{
	return (inb(COM1_LSR) & LSR_DR) ? inb(COM1) : -1;
}

static void put_num(u64 v, unsigned base, int width, char pad)
{
	char buf[24];
	int n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (width-- > n)
		rt_putc(pad);
	while (n)
		rt_putc(buf[--n]);
}

void rt_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			rt_putc(*fmt);
			continue;
		}
		char pad = ' ';
		int width = 0, lng = 0;
		if (*++fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng = 1, fmt++;
		switch (*fmt) {
		case 'd': {
			long v = lng ? va_arg(ap, long) : va_arg(ap, int);
			if (v < 0) {
				rt_putc('-');
				v = -v;
			}
			put_num(v, 10, width, pad);
			break;
		}
		case 'u':
			put_num(lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad);
			break;
		case 'x':
			put_num(lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad);
			break;
		case 's':
			rt_puts(va_arg(ap, const char *));
			break;
		case 'c':
			rt_putc(va_arg(ap, int));
			break;
		case '%':
			rt_putc('%');
			break;
		default:
			va_end(ap);
			return;
		}
	}
	va_end(ap);
}
