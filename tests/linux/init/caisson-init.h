/* Caisson's test init for the Linux guest: shared declarations.
 * The data pattern, the hash and the exchange protocol must match
 * tests/common/linux.rs on the host side. */
#ifndef CAISSON_INIT_H
#define CAISSON_INIT_H

#include <stddef.h>
#include <stdint.h>

/* Longest console line we print. */
#define LINE_LEN 768

/* One check's result line, `CAISSON-CHECK <name> ok|FAIL <details>`. */
struct result {
	char name[32];
	int ok;
	char text[LINE_LEN];
	size_t len;
};

void res_init(struct result *r, const char *name);
/* Appends ` <formatted>` to the details. */
void res_add(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Marks the check failed, appends ` error=<formatted>`; returns -1. */
int res_fail(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void res_print(const struct result *r);

/* Prints one line on the console with a single write(2). */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The value of `caisson.<key>=` on the kernel command line, or NULL. */
const char *param(const char *key);
/* The whole kernel command line (without the trailing newline). */
const char *cmdline(void);
/* Reads a small file into buf (NUL-terminated, trailing newlines removed).
 * Returns its length, or -1 with errno set. */
int read_text(const char *path, char *buf, size_t len);
/* Writes `text` to the file at path; 0 or -1 with errno set. */
int write_text(const char *path, const char *text);
/* errno's name (EROFS, ...). */
const char *errname(int e);

/* FNV-1a 64 over bytes, continuing from h (start with FNV_INIT). */
#define FNV_INIT 0xcbf29ce484222325ULL
uint64_t fnv1a(uint64_t h, const void *p, size_t n);
/* The test data stream `seed`: bytes off..off+n into buf. */
void pattern(uint64_t seed, uint64_t off, void *buf, size_t n);

/* Timeouts on a socket's blocking operations (SO_RCVTIMEO, SO_SNDTIMEO). */
int set_timeouts(int fd, int seconds);

/* What one end of an exchange saw (see peer.c for the protocol). */
struct xfer {
	uint64_t sent, sent_hash;
	uint64_t got, got_hash;
};
int exchange_initiate(int fd, uint64_t n, uint64_t seed_n, uint64_t m,
		      uint64_t seed_m, struct xfer *x, struct result *r);
int exchange_respond(int fd, struct xfer *x, struct result *r);

/* The checks; each fills its result. */
void check_smp(struct result *r);
void check_blk(struct result *r);
void check_rng(struct result *r);
void check_acpi(struct result *r);
void check_vsock_listen(struct result *r);
void check_vsock_connect(struct result *r);
void check_net(struct result *r);

#endif
