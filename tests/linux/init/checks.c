/* The device checks that need no peer: smp, blk, rng, acpi. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caisson-init.h"

/* smp: /proc/cpuinfo lists caisson.cpus=<n> processors, all online. */
void check_smp(struct result *r)
{
	static char info[65536];
	if (read_text("/proc/cpuinfo", info, sizeof(info)) < 0) {
		res_fail(r, "cpuinfo:%s", errname(errno));
		return;
	}
	int n = 0;
	for (char *p = info; (p = strstr(p, "processor")); p++)
		if (p == info || p[-1] == '\n')
			n++;
	char online[64] = "?";
	read_text("/sys/devices/system/cpu/online", online, sizeof(online));
	res_add(r, "cpus=%d online=%s", n, online);
	const char *want = param("cpus");
	if (!want)
		res_fail(r, "no-caisson.cpus");
	else if (n != atoi(want))
		res_fail(r, "want-%s-cpus", want);
}

/* Reads len bytes at off of fd and compares them with pattern(seed). */
static int verify_range(int fd, uint64_t off, uint64_t len, uint64_t seed,
			uint64_t *hash, struct result *r, const char *what)
{
	/* Aligned for O_DIRECT. */
	static unsigned char got[65536] __attribute__((aligned(4096)));
	static unsigned char want[65536];
	*hash = FNV_INIT;
	for (uint64_t done = 0; done < len;) {
		size_t chunk = len - done < sizeof(got) ? len - done : sizeof(got);
		ssize_t n = pread(fd, got, chunk, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return res_fail(r, "%s-read-at-%" PRIu64 ":%s", what,
					off + done, n < 0 ? errname(errno) : "EOF");
		pattern(seed, off + done, want, n);
		if (memcmp(got, want, n)) {
			size_t i = 0;
			while (got[i] == want[i])
				i++;
			return res_fail(r, "%s-differs-at-%" PRIu64, what,
					off + done + i);
		}
		*hash = fnv1a(*hash, got, n);
		done += n;
	}
	return 0;
}

/* Parses `<off>:<len>:<seed>`. */
static int range_param(const char *key, uint64_t v[3], struct result *r)
{
	const char *s = param(key);
	if (!s || sscanf(s, "%" SCNu64 ":%" SCNu64 ":%" SCNu64, &v[0], &v[1],
			 &v[2]) != 3)
		return res_fail(r, "need-caisson.%s=off:len:seed", key);
	return 0;
}

/* Which of open(O_RDWR) and write() refused the read-only disk, and how. */
static void ro_refusal(const char *dev, struct result *r)
{
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		res_add(r, "ro_open=%s", errname(e));
		if (e != EROFS && e != EACCES && e != EPERM)
			res_fail(r, "ro-open-unexpected");
		return;
	}
	static unsigned char buf[4096];
	memset(buf, 0xee, sizeof(buf));
	ssize_t n = pwrite(fd, buf, sizeof(buf), 0);
	int e = errno;
	int s = n < 0 ? 0 : fsync(fd);
	int se = errno;
	close(fd);
	if (n >= 0 && s == 0) {
		res_fail(r, "ro-write-accepted");
		return;
	}
	res_add(r, "ro_open=ok ro_write=%s", errname(n < 0 ? e : se));
}

/* blk: vda holds the host's pattern (caisson.blk_read=off:len:seed); the guest
 * writes its own (caisson.blk_write=off:len:seed), flushes it and reads it back
 * past the page cache; vdb (read-only, caisson.blk_ro=off:len:seed) reads back
 * and refuses writes. Each disk's GET_ID serial is printed for the host. */
void check_blk(struct result *r)
{
	uint64_t rd[3], wr[3], ro[3], h;
	if (range_param("blk_read", rd, r) || range_param("blk_write", wr, r) ||
	    range_param("blk_ro", ro, r))
		return;
	char serial[64], size[32], flag[8];
	if (read_text("/sys/block/vda/serial", serial, sizeof(serial)) < 0)
		snprintf(serial, sizeof(serial), "<%s>", errname(errno));
	if (read_text("/sys/block/vda/size", size, sizeof(size)) < 0)
		snprintf(size, sizeof(size), "?");
	if (read_text("/sys/block/vda/ro", flag, sizeof(flag)) < 0)
		snprintf(flag, sizeof(flag), "?");
	res_add(r, "vda_serial=%s vda_sectors=%s vda_ro=%s", serial, size, flag);

	int fd = open("/dev/vda", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		res_fail(r, "open-vda:%s", errname(errno));
		return;
	}
	int bad = verify_range(fd, rd[0], rd[1], rd[2], &h, r, "vda");
	close(fd);
	if (bad)
		return;
	res_add(r, "read=%" PRIu64 "@%" PRIu64 " read_fnv=%016" PRIx64, rd[1],
		rd[0], h);

	fd = open("/dev/vda", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		res_fail(r, "open-vda-rw:%s", errname(errno));
		return;
	}
	static unsigned char buf[65536];
	h = FNV_INIT;
	for (uint64_t done = 0; done < wr[1];) {
		size_t chunk = wr[1] - done < sizeof(buf) ? wr[1] - done : sizeof(buf);
		pattern(wr[2], wr[0] + done, buf, chunk);
		ssize_t n = pwrite(fd, buf, chunk, wr[0] + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			res_fail(r, "write-vda:%s", n < 0 ? errname(errno) : "0");
			close(fd);
			return;
		}
		h = fnv1a(h, buf, n);
		done += n;
	}
	if (fsync(fd) < 0) {
		res_fail(r, "fsync-vda:%s", errname(errno));
		close(fd);
		return;
	}
	close(fd);
	res_add(r, "wrote=%" PRIu64 "@%" PRIu64 " write_fnv=%016" PRIx64,
		wr[1], wr[0], h);
	/* Read it back from the device itself, not from the page cache. */
	fd = open("/dev/vda", O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		res_fail(r, "open-vda-direct:%s", errname(errno));
		return;
	}
	bad = verify_range(fd, wr[0], wr[1], wr[2], &h, r, "vda-direct");
	close(fd);
	if (bad)
		return;
	res_add(r, "direct_readback=ok");

	if (read_text("/sys/block/vdb/serial", serial, sizeof(serial)) < 0)
		snprintf(serial, sizeof(serial), "<%s>", errname(errno));
	if (read_text("/sys/block/vdb/ro", flag, sizeof(flag)) < 0)
		snprintf(flag, sizeof(flag), "?");
	res_add(r, "vdb_serial=%s vdb_ro=%s", serial, flag);
	fd = open("/dev/vdb", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		res_fail(r, "open-vdb:%s", errname(errno));
		return;
	}
	bad = verify_range(fd, ro[0], ro[1], ro[2], &h, r, "vdb");
	close(fd);
	if (bad)
		return;
	res_add(r, "vdb_read=%" PRIu64 " vdb_fnv=%016" PRIx64, ro[1], h);
	if (strcmp(flag, "1"))
		res_fail(r, "vdb-not-read-only");
	ro_refusal("/dev/vdb", r);
}

/* rng: 4 KiB from /dev/hwrng, served by the virtio-rng driver. */
void check_rng(struct result *r)
{
	char current[64];
	if (read_text("/sys/class/misc/hw_random/rng_current", current,
		      sizeof(current)) < 0)
		snprintf(current, sizeof(current), "<%s>", errname(errno));
	res_add(r, "rng_current=%s", current);
	int fd = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		res_fail(r, "open-hwrng:%s", errname(errno));
		return;
	}
	static unsigned char buf[4096];
	size_t have = 0;
	int reads = 0;
	while (have < sizeof(buf)) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			res_fail(r, "read-hwrng:%s", n < 0 ? errname(errno) : "EOF");
			close(fd);
			return;
		}
		have += n;
		reads++;
	}
	close(fd);
	int seen[256] = { 0 }, distinct = 0;
	for (size_t i = 0; i < have; i++)
		if (!seen[buf[i]]++)
			distinct++;
	res_add(r, "bytes=%zu reads=%d distinct=%d fnv=%016" PRIx64, have, reads,
		distinct, fnv1a(FNV_INIT, buf, have));
	if (strncmp(current, "virtio_rng", 10))
		res_fail(r, "not-virtio-rng");
	/* 4096 uniform bytes cover nearly all 256 values. */
	if (distinct < 200)
		res_fail(r, "too-few-distinct-bytes");
}

/* acpi: the virtio devices came from ACPI (LNRO0005 platform devices), not
 * from virtio_mmio.device= words, of which the command line has none. */
void check_acpi(struct result *r)
{
	int words = 0;
	for (const char *p = cmdline(); (p = strstr(p, "virtio_mmio.device=")); p++)
		words++;
	int lnro = 0, cmdline_devs = 0, virtio = 0;
	DIR *d = opendir("/sys/bus/platform/devices");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strncmp(e->d_name, "LNRO0005:", 9))
				lnro++;
			if (!strncmp(e->d_name, "virtio-mmio.", 12))
				cmdline_devs++;
		}
		closedir(d);
	}
	d = opendir("/sys/bus/virtio/devices");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				virtio++;
		closedir(d);
	}
	char acpi[16] = "absent";
	if (!access("/sys/firmware/acpi/tables", F_OK))
		snprintf(acpi, sizeof(acpi), "present");
	res_add(r, "acpi_tables=%s cmdline_words=%d lnro0005=%d cmdline_devices=%d virtio_devices=%d",
		acpi, words, lnro, cmdline_devs, virtio);
	if (words)
		res_fail(r, "virtio-words-on-cmdline");
	if (!lnro || virtio != lnro)
		res_fail(r, "virtio-devices-not-all-from-acpi");
}
