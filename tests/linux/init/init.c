/* Caisson's test init for the Linux guest (/init in the initramfs).
 *
 * Mounts proc, sysfs and devtmpfs, prints `CAISSON-INIT ...`, runs the checks
 * named by `caisson.checks=a,b,c` on the kernel command line (one
 * `CAISSON-CHECK <name> ok|FAIL ...` line each), prints `CAISSON-DONE ...`
 * and resets the machine with reboot(RB_AUTOBOOT), as `reboot -f` does.
 * The check `serial` runs busybox sh on the console instead, for the host to
 * type into; the host ends it with `reboot -f`.
 *
 * One process does all of it: every guest system call and page fault runs
 * through the (on the CI hosts, emulated) guest kernel, so fork and exec are
 * kept to the shell alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "caisson-init.h"

void say(const char *fmt, ...)
{
	char line[LINE_LEN + 2];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, LINE_LEN, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= LINE_LEN)
		n = LINE_LEN - 1;
	line[n++] = '\n';
	size_t off = 0;
	while (off < (size_t)n) {
		ssize_t w = write(1, line + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += w;
	}
}

void res_init(struct result *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->ok = 1;
}

static void res_vadd(struct result *r, const char *prefix, const char *fmt,
		     va_list ap)
{
	size_t room = sizeof(r->text) - r->len;
	int n = snprintf(r->text + r->len, room, " %s", prefix);
	if (n < 0 || (size_t)n >= room)
		return;
	r->len += n;
	room -= n;
	n = vsnprintf(r->text + r->len, room, fmt, ap);
	if (n < 0)
		return;
	r->len += (size_t)n < room ? (size_t)n : room - 1;
}

void res_add(struct result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	res_vadd(r, "", fmt, ap);
	va_end(ap);
}

int res_fail(struct result *r, const char *fmt, ...)
{
	va_list ap;
	r->ok = 0;
	va_start(ap, fmt);
	res_vadd(r, "error=", fmt, ap);
	va_end(ap);
	return -1;
}

void res_print(const struct result *r)
{
	say("CAISSON-CHECK %s %s%s", r->name, r->ok ? "ok" : "FAIL", r->text);
}

int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t have = 0;
	while (have + 1 < len) {
		ssize_t n = read(fd, buf + have, len - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		have += n;
	}
	close(fd);
	while (have > 0 && (buf[have - 1] == '\n' || buf[have - 1] == ' '))
		have--;
	buf[have] = 0;
	return (int)have;
}

int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = e;
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

const char *errname(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static char cmdline_buf[4096];

const char *cmdline(void)
{
	return cmdline_buf;
}

const char *param(const char *key)
{
	/* Parameter values are returned from a copy split at spaces. */
	static char words[sizeof(cmdline_buf)];
	static int split;
	if (!split) {
		memcpy(words, cmdline_buf, sizeof(words));
		for (char *p = words; *p; p++)
			if (*p == ' ')
				*p = 0;
		split = 1;
	}
	size_t klen = strlen(key);
	size_t total = strlen(cmdline_buf);
	for (size_t i = 0; i < total;) {
		const char *w = words + i;
		size_t wlen = strlen(w);
		if (wlen > 8 + klen && !strncmp(w, "caisson.", 8) &&
		    !strncmp(w + 8, key, klen) && w[8 + klen] == '=')
			return w + 9 + klen;
		i += wlen + 1;
	}
	return NULL;
}

static void mount_one(const char *src, const char *dir, const char *type)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		say("CAISSON-WARN mkdir %s: %s", dir, errname(errno));
	if (mount(src, dir, type, MS_NOSUID | MS_NOEXEC, NULL) < 0 &&
	    errno != EBUSY)
		say("CAISSON-WARN mount %s on %s: %s", type, dir,
		    errname(errno));
}

/* Runs busybox sh on the console and waits for it (the host types into it). */
static void run_shell(struct result *r)
{
	say("CAISSON-SHELL");
	pid_t pid = fork();
	if (pid < 0) {
		res_fail(r, "fork:%s", errname(errno));
		return;
	}
	if (pid == 0) {
		char *argv[] = { "sh", NULL };
		char *envp[] = { "PATH=/bin:/sbin", "HOME=/", "TERM=dumb",
				 "PS1=# ", NULL };
		execve("/bin/sh", argv, envp);
		say("CAISSON-WARN exec /bin/sh: %s", errname(errno));
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	res_add(r, "shell_status=%d", WIFEXITED(status) ? WEXITSTATUS(status) :
							 128 + WTERMSIG(status));
}

static const struct {
	const char *name;
	void (*run)(struct result *);
} checks[] = {
	{ "smp", check_smp },
	{ "blk", check_blk },
	{ "rng", check_rng },
	{ "acpi", check_acpi },
	{ "vsock-listen", check_vsock_listen },
	{ "vsock-connect", check_vsock_connect },
	{ "net", check_net },
	{ "serial", run_shell },
};

int main(void)
{
	if (getpid() != 1) {
		/* It mounts and reboots: never as a program on the host. */
		fprintf(stderr, "caisson-init: not pid 1, refusing to run\n");
		return 1;
	}
	mount_one("proc", "/proc", "proc");
	mount_one("sysfs", "/sys", "sysfs");
	mount_one("devtmpfs", "/dev", "devtmpfs");
	if (read_text("/proc/cmdline", cmdline_buf, sizeof(cmdline_buf)) < 0)
		say("CAISSON-WARN /proc/cmdline: %s", errname(errno));

	char up[64] = "?";
	read_text("/proc/uptime", up, sizeof(up));
	char *space = strchr(up, ' ');
	if (space)
		*space = 0;
	struct utsname u;
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "?");
	say("CAISSON-INIT uptime=%s release=%s", up, u.release);

	/* Only warnings and worse on the console from here, so that kernel
	 * messages do not cut into the result lines. */
	const char *level = param("loglevel");
	if (write_text("/proc/sys/kernel/printk", level ? level : "5") < 0)
		say("CAISSON-WARN console loglevel: %s", errname(errno));

	int ok = 0, failed = 0;
	const char *list = param("checks");
	char names[512];
	snprintf(names, sizeof(names), "%s", list ? list : "");
	char *save = NULL;
	for (char *name = strtok_r(names, ",", &save); name;
	     name = strtok_r(NULL, ",", &save)) {
		struct result r;
		res_init(&r, name);
		size_t i;
		for (i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
			if (!strcmp(checks[i].name, name))
				break;
		if (i == sizeof(checks) / sizeof(checks[0]))
			res_fail(&r, "unknown-check");
		else
			checks[i].run(&r);
		res_print(&r);
		if (r.ok)
			ok++;
		else
			failed++;
	}
	read_text("/proc/uptime", up, sizeof(up));
	space = strchr(up, ' ');
	if (space)
		*space = 0;
	say("CAISSON-DONE ok=%d fail=%d uptime=%s", ok, failed, up);
	/* Console writes are sent by the UART's interrupt handler: let them
	 * all out before the reset. */
	tcdrain(1);
	sync();
	reboot(RB_AUTOBOOT);
	say("CAISSON-WARN reboot: %s", errname(errno));
	for (;;)
		pause();
}
