/* The test data stream, its hash, the exchange protocol, and the checks that
 * talk to a host peer: vsock-listen, vsock-connect, net.
 *
 * Exchange protocol (both ends check a hash of everything; the host side is
 * tests/common/linux.rs):
 *   initiator -> "X <n> <seed_n> <m> <seed_m>\n", then n bytes of pattern(seed_n)
 *   responder -> "R <n> <fnv of what it got>\n", then m bytes of pattern(seed_m)
 *   initiator -> "B <m> <fnv of what it got>\n", then waits for the
 *                responder to close. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>

#include "caisson-init.h"

/* How long one blocking socket operation may take. */
#define IO_TIMEOUT_S 300

uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Byte o of stream `seed` is byte (o % 8) (little-endian) of
 * mix(seed + (o / 8) * 0x9e3779b97f4a7c15). */
void pattern(uint64_t seed, uint64_t off, void *buf, size_t n)
{
	unsigned char *b = buf;
	uint64_t word = off >> 3;
	uint64_t v = mix(seed + word * 0x9e3779b97f4a7c15ULL);
	for (size_t i = 0; i < n; i++) {
		uint64_t o = off + i;
		if (o >> 3 != word) {
			word = o >> 3;
			v = mix(seed + word * 0x9e3779b97f4a7c15ULL);
		}
		b[i] = (unsigned char)(v >> ((o & 7) * 8));
	}
}

int set_timeouts(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -1;
	return 0;
}

/* A buffered reader over a socket. */
struct conn {
	int fd;
	size_t pos, len;
	unsigned char buf[65536];
};

static int conn_fill(struct conn *c, struct result *r)
{
	for (;;) {
		ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return res_fail(r, "read:%s", errname(errno));
		if (n == 0)
			return res_fail(r, "read:EOF");
		c->pos = 0;
		c->len = n;
		return 0;
	}
}

static int conn_line(struct conn *c, char *line, size_t max,
		     struct result *r)
{
	size_t have = 0;
	for (;;) {
		if (c->pos == c->len && conn_fill(c, r))
			return -1;
		char ch = c->buf[c->pos++];
		if (ch == '\n')
			break;
		if (have + 1 >= max)
			return res_fail(r, "protocol-line-too-long");
		line[have++] = ch;
	}
	line[have] = 0;
	return 0;
}

/* Receives n bytes, checks them against pattern(seed), hashes them. */
static int conn_pattern(struct conn *c, uint64_t n, uint64_t seed,
			uint64_t *hash, struct result *r)
{
	static unsigned char want[65536];
	*hash = FNV_INIT;
	for (uint64_t done = 0; done < n;) {
		if (c->pos == c->len && conn_fill(c, r))
			return -1;
		size_t chunk = c->len - c->pos;
		if (chunk > n - done)
			chunk = n - done;
		pattern(seed, done, want, chunk);
		if (memcmp(c->buf + c->pos, want, chunk))
			return res_fail(r, "data-differs-near-%" PRIu64, done);
		*hash = fnv1a(*hash, c->buf + c->pos, chunk);
		c->pos += chunk;
		done += chunk;
	}
	return 0;
}

static int write_all(int fd, const void *p, size_t n, struct result *r)
{
	const unsigned char *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return res_fail(r, "write:%s", w < 0 ? errname(errno) : "0");
		b += w;
		n -= w;
	}
	return 0;
}

static int send_pattern(int fd, uint64_t n, uint64_t seed, uint64_t *hash,
			struct result *r)
{
	static unsigned char buf[65536];
	*hash = FNV_INIT;
	for (uint64_t done = 0; done < n;) {
		size_t chunk = n - done < sizeof(buf) ? n - done : sizeof(buf);
		pattern(seed, done, buf, chunk);
		*hash = fnv1a(*hash, buf, chunk);
		if (write_all(fd, buf, chunk, r))
			return -1;
		done += chunk;
	}
	return 0;
}

static struct conn the_conn;

int exchange_initiate(int fd, uint64_t n, uint64_t seed_n, uint64_t m,
		      uint64_t seed_m, struct xfer *x, struct result *r)
{
	struct conn *c = &the_conn;
	c->fd = fd;
	c->pos = c->len = 0;
	char line[128];
	snprintf(line, sizeof(line), "X %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
		 n, seed_n, m, seed_m);
	if (write_all(fd, line, strlen(line), r) ||
	    send_pattern(fd, n, seed_n, &x->sent_hash, r))
		return -1;
	x->sent = n;
	uint64_t rn, rh;
	if (conn_line(c, line, sizeof(line), r))
		return -1;
	if (sscanf(line, "R %" SCNu64 " %" SCNx64, &rn, &rh) != 2)
		return res_fail(r, "bad-reply");
	if (rn != n || rh != x->sent_hash)
		return res_fail(r, "peer-got-%" PRIu64 ":%016" PRIx64, rn, rh);
	if (conn_pattern(c, m, seed_m, &x->got_hash, r))
		return -1;
	x->got = m;
	snprintf(line, sizeof(line), "B %" PRIu64 " %016" PRIx64 "\n", m,
		 x->got_hash);
	if (write_all(fd, line, strlen(line), r))
		return -1;
	/* The responder closes once it has checked the B line. */
	char b;
	ssize_t e = read(fd, &b, 1);
	if (e != 0)
		return res_fail(r, "no-close-after-B:%s",
				e < 0 ? errname(errno) : "data");
	return 0;
}

int exchange_respond(int fd, struct xfer *x, struct result *r)
{
	struct conn *c = &the_conn;
	c->fd = fd;
	c->pos = c->len = 0;
	char line[128];
	uint64_t n, seed_n, m, seed_m;
	if (conn_line(c, line, sizeof(line), r))
		return -1;
	if (sscanf(line, "X %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &n,
		   &seed_n, &m, &seed_m) != 4)
		return res_fail(r, "bad-header");
	if (conn_pattern(c, n, seed_n, &x->got_hash, r))
		return -1;
	x->got = n;
	snprintf(line, sizeof(line), "R %" PRIu64 " %016" PRIx64 "\n", n,
		 x->got_hash);
	if (write_all(fd, line, strlen(line), r) ||
	    send_pattern(fd, m, seed_m, &x->sent_hash, r))
		return -1;
	x->sent = m;
	uint64_t bm, bh;
	if (conn_line(c, line, sizeof(line), r))
		return -1;
	if (sscanf(line, "B %" SCNu64 " %" SCNx64, &bm, &bh) != 2)
		return res_fail(r, "bad-bye");
	if (bm != m || bh != x->sent_hash)
		return res_fail(r, "peer-got-%" PRIu64 ":%016" PRIx64, bm, bh);
	return 0;
}

static void xfer_report(struct result *r, const struct xfer *x)
{
	res_add(r, "sent=%" PRIu64 " sent_fnv=%016" PRIx64 " got=%" PRIu64
		   " got_fnv=%016" PRIx64,
		x->sent, x->sent_hash, x->got, x->got_hash);
}

/* Parses `<n>,<m>`. */
static int sizes_param(const char *key, uint64_t *n, uint64_t *m,
		       struct result *r)
{
	const char *s = param(key);
	if (!s || sscanf(s, "%" SCNu64 ",%" SCNu64, n, m) != 2)
		return res_fail(r, "need-caisson.%s=n,m", key);
	return 0;
}

static void local_cid(struct result *r)
{
	unsigned int cid = 0;
	int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
		res_fail(r, "local-cid:%s", errname(errno));
	else
		res_add(r, "cid=%u", cid);
	if (fd >= 0)
		close(fd);
}

/* vsock-listen: a listener on caisson.vsock_listen=<port>; the host connects
 * through its Unix socket (CONNECT <port>) and initiates an exchange. */
void check_vsock_listen(struct result *r)
{
	const char *p = param("vsock_listen");
	if (!p) {
		res_fail(r, "need-caisson.vsock_listen");
		return;
	}
	unsigned int port = (unsigned int)strtoul(p, NULL, 10);
	local_cid(r);
	int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		res_fail(r, "socket:%s", errname(errno));
		return;
	}
	struct sockaddr_vm a = { .svm_family = AF_VSOCK,
				 .svm_cid = VMADDR_CID_ANY,
				 .svm_port = port };
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0) {
		res_fail(r, "bind-listen:%s", errname(errno));
		close(s);
		return;
	}
	say("CAISSON-READY vsock-listen %u", port);
	struct pollfd pfd = { .fd = s, .events = POLLIN };
	int pr = poll(&pfd, 1, IO_TIMEOUT_S * 1000);
	if (pr <= 0) {
		res_fail(r, "accept:%s", pr == 0 ? "timeout" : errname(errno));
		close(s);
		return;
	}
	struct sockaddr_vm peer;
	socklen_t plen = sizeof(peer);
	int c = accept4(s, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
	close(s);
	if (c < 0) {
		res_fail(r, "accept:%s", errname(errno));
		return;
	}
	res_add(r, "port=%u peer=%u:%u", port, peer.svm_cid, peer.svm_port);
	struct xfer x = { 0 };
	if (set_timeouts(c, IO_TIMEOUT_S) < 0)
		res_fail(r, "timeouts:%s", errname(errno));
	else if (!exchange_respond(c, &x, r))
		xfer_report(r, &x);
	close(c);
}

/* vsock-connect: connects to the host (CID 2) port caisson.vsock_connect=<p>,
 * which caisson bridges to <uds_path>_<p>, and initiates an exchange of
 * caisson.vsock_bytes=<n>,<m>. */
void check_vsock_connect(struct result *r)
{
	const char *p = param("vsock_connect");
	uint64_t n, m;
	if (!p) {
		res_fail(r, "need-caisson.vsock_connect");
		return;
	}
	if (sizes_param("vsock_bytes", &n, &m, r))
		return;
	unsigned int port = (unsigned int)strtoul(p, NULL, 10);
	local_cid(r);
	int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		res_fail(r, "socket:%s", errname(errno));
		return;
	}
	struct timeval tv = { .tv_sec = 60 };
	setsockopt(s, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv));
	struct sockaddr_vm a = { .svm_family = AF_VSOCK,
				 .svm_cid = VMADDR_CID_HOST,
				 .svm_port = port };
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		res_fail(r, "connect:%s", errname(errno));
		close(s);
		return;
	}
	res_add(r, "port=%u", port);
	struct xfer x = { 0 };
	if (set_timeouts(s, IO_TIMEOUT_S) < 0)
		res_fail(r, "timeouts:%s", errname(errno));
	else if (!exchange_initiate(s, n, 0x5eed0001, m, 0x5eed0002, &x, r))
		xfer_report(r, &x);
	close(s);
}

static int ifreq_addr(int s, const char *ifname, unsigned long req,
		      struct in_addr addr)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr = addr;
	return ioctl(s, req, &ifr);
}

/* Gives the interface its address (caisson.net_addr=<ip>/<prefix>) and
 * brings it up. */
static int configure(const char *ifname, struct result *r)
{
	const char *a = param("net_addr");
	char ip[32];
	int prefix;
	struct in_addr addr, mask;
	if (!a || sscanf(a, "%31[0-9.]/%d", ip, &prefix) != 2 ||
	    inet_pton(AF_INET, ip, &addr) != 1 || prefix < 1 || prefix > 32)
		return res_fail(r, "need-caisson.net_addr=ip/prefix");
	mask.s_addr = htonl(0xffffffffu << (32 - prefix));
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return res_fail(r, "socket:%s", errname(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	int bad = ifreq_addr(s, ifname, SIOCSIFADDR, addr) < 0 ||
		  ifreq_addr(s, ifname, SIOCSIFNETMASK, mask) < 0 ||
		  ioctl(s, SIOCGIFFLAGS, &ifr) < 0;
	if (!bad) {
		ifr.ifr_flags |= IFF_UP;
		bad = ioctl(s, SIOCSIFFLAGS, &ifr) < 0;
	}
	int e = errno;
	close(s);
	if (bad)
		return res_fail(r, "configure-%s:%s", ifname, errname(e));
	res_add(r, "addr=%s", a);
	return 0;
}

/* net: configures the first Ethernet interface and initiates an exchange of
 * caisson.net_bytes=<n>,<m> over TCP with caisson.net_peer=<ip>:<port>. */
void check_net(struct result *r)
{
	char ifname[IFNAMSIZ] = "";
	DIR *d = opendir("/sys/class/net");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.' && strcmp(e->d_name, "lo") &&
			    (!ifname[0] || strcmp(e->d_name, ifname) < 0))
				snprintf(ifname, sizeof(ifname), "%.15s", e->d_name);
		closedir(d);
	}
	if (!ifname[0]) {
		res_fail(r, "no-interface");
		return;
	}
	char path[96], mac[32] = "?";
	snprintf(path, sizeof(path), "/sys/class/net/%s/address", ifname);
	read_text(path, mac, sizeof(mac));
	res_add(r, "if=%s mac=%s", ifname, mac);
	const char *want = param("net_mac");
	if (want && strcasecmp(want, mac))
		res_fail(r, "mac-is-not-%s", want);

	const char *peer = param("net_peer");
	char ip[32];
	unsigned int port;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint64_t n, m;
	if (!peer || sscanf(peer, "%31[0-9.]:%u", ip, &port) != 2 ||
	    inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
		res_fail(r, "need-caisson.net_peer=ip:port");
		return;
	}
	sa.sin_port = htons(port);
	if (sizes_param("net_bytes", &n, &m, r) || configure(ifname, r))
		return;

	/* The host listens before the guest boots; retry while ARP and the
	 * link settle. */
	int s = -1, attempts = 0;
	time_t end = time(NULL) + 120;
	for (;;) {
		s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0) {
			res_fail(r, "socket:%s", errname(errno));
			return;
		}
		set_timeouts(s, 30);
		attempts++;
		if (!connect(s, (struct sockaddr *)&sa, sizeof(sa)))
			break;
		int e = errno;
		close(s);
		if (time(NULL) > end) {
			res_fail(r, "connect-%s:%s", peer, errname(e));
			return;
		}
		sleep(1);
	}
	res_add(r, "peer=%s connects=%d", peer, attempts);
	struct xfer x = { 0 };
	if (set_timeouts(s, IO_TIMEOUT_S) < 0)
		res_fail(r, "timeouts:%s", errname(errno));
	else if (!exchange_initiate(s, n, 0x6e657401, m, 0x6e657402, &x, r))
		xfer_report(r, &x);
	close(s);
}
