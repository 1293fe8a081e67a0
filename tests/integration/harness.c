/* harness.c: start a real gpuqd on a private socket and talk to it, for integration tests. */
#include "build-config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static const char *builddir(void)
{
	const char *b = getenv("GPUQ_BUILDDIR");

	return b && *b ? b : GPUQ_BUILDDIR;
}

const char *harness_backend(void)
{
	const char *b = getenv("GPUQ_TEST_BACKEND");

	return b && *b ? b : "host";
}

const char *harness_gpuqd(void)
{
	static char path[512];
	const char *p = getenv("GPUQD");

	if (p && *p)
		return p;
	snprintf(path, sizeof(path), "%s/daemon/gpuqd", builddir());
	return path;
}

const char *harness_gpuqctl(void)
{
	static char path[512];
	const char *p = getenv("GPUQCTL");

	if (p && *p)
		return p;
	snprintf(path, sizeof(path), "%s/client/gpuqctl", builddir());
	return path;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int harness_wait_notify(struct daemon_proc *d, const char *what, int ms)
{
	long deadline = now_ms() + ms;
	char buf[1024];

	for (;;) {
		struct pollfd p = { .fd = d->notify_fd, .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -ETIMEDOUT;
		n = recv(d->notify_fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (!strncmp(buf, "STATUS=", 7))
			snprintf(d->status, sizeof(d->status), "%s", buf + 7);
		if (strstr(buf, what))
			return 0;
	}
}

void harness_print_log(struct daemon_proc *d)
{
	char line[1024];
	FILE *f = fopen(d->log, "r");

	if (!f)
		return;
	fprintf(stderr, "---- gpuqd log (%s) ----\n", d->log);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(f);
}

int harness_start(struct daemon_proc *d, const char *config_text, const char *const *extra)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *argv[64];
	int argc = 0, i, r;
	FILE *f;

	memset(d, 0, sizeof(*d));
	d->notify_fd = -1;
	snprintf(d->dir, sizeof(d->dir), "/tmp/gpuq-test.XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/gpuqd.sock", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/gpuqd.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/gpuqd.log", d->dir);
	snprintf(d->notify, sizeof(d->notify), "%s/notify", d->dir);

	f = fopen(d->conf, "w");
	if (!f)
		return -errno;
	fputs(config_text ? config_text : "# empty: defaults and flags\n", f);
	fclose(f);

	d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->notify);
	if (d->notify_fd < 0 || bind(d->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;

	argv[argc++] = harness_gpuqd();
	argv[argc++] = "--socket";
	argv[argc++] = d->sock;
	argv[argc++] = "--backend";
	argv[argc++] = harness_backend();
	/*
	 * Each test daemon has a private socket directory; MPS would give each
	 * its own control daemon for one GPU. MPS has tests of its own:
	 * $GPUQ_TEST_SHARING picks the mode (default exclusive).
	 */
	argv[argc++] = "--sharing";
	argv[argc++] = getenv("GPUQ_TEST_SHARING") && *getenv("GPUQ_TEST_SHARING")
			       ? getenv("GPUQ_TEST_SHARING")
			       : "exclusive";
	argv[argc++] = "--config";
	argv[argc++] = d->conf;
	for (i = 0; extra && extra[i] && argc < 62; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;

	d->pid = fork();
	if (d->pid < 0)
		return -errno;
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("NOTIFY_SOCKET", d->notify, 1);
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	/* The cuda backend initialises every device first: allow it time. */
	r = harness_wait_notify(d, "READY=1", 30000);
	if (r) {
		fprintf(stderr, "gpuqd did not become ready\n");
		harness_print_log(d);
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	return r;
}

static void remove_dir(const char *dir)
{
	char path[600];
	struct dirent *e;
	DIR *dp = opendir(dir);

	if (!dp)
		return;
	while ((e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(dp);
	rmdir(dir);
}

int harness_kill_wait(struct daemon_proc *d, int sig)
{
	int st, r = -1;
	long deadline = now_ms() + 20000;

	if (d->pid > 0) {
		kill(d->pid, sig);
		for (;;) {
			pid_t p = waitpid(d->pid, &st, WNOHANG);

			if (p == d->pid) {
				r = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
				break;
			}
			if (now_ms() > deadline) {
				fprintf(stderr, "gpuqd did not exit within 20 s of signal %d\n", sig);
				kill(d->pid, SIGKILL);
				waitpid(d->pid, &st, 0);
				break;
			}
			usleep(2000);
		}
		if (r != 0)
			harness_print_log(d);
		d->pid = 0;
	}
	if (d->notify_fd >= 0)
		close(d->notify_fd);
	d->notify_fd = -1;
	remove_dir(d->dir);
	return r;
}

int harness_stop(struct daemon_proc *d)
{
	return harness_kill_wait(d, SIGTERM);
}

int harness_alive(struct daemon_proc *d)
{
	return d->pid > 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

int harness_fd_count(struct daemon_proc *d)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dp;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
	dp = opendir(path);
	if (!dp)
		return -errno;
	while ((e = readdir(dp)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dp);
	return n;
}

int harness_log_contains(struct daemon_proc *d, const char *s)
{
	char line[2048];
	FILE *f = fopen(d->log, "r");
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, s) != NULL;
	fclose(f);
	return found;
}

int harness_raw_connect(struct daemon_proc *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

int harness_raw_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int harness_raw_send_msg(int fd, Gpuq__Msg *m)
{
	uint8_t *buf;
	size_t len;
	int r = frame_pack(m, FRAME_MAX_LIMIT, &buf, &len);

	if (r)
		return r;
	r = harness_raw_send(fd, buf, len);
	free(buf);
	return r;
}

Gpuq__Msg *harness_raw_hello(int fd, uint32_t version)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Hello h = GPUQ__HELLO__INIT;

	h.proto_version = version;
	h.client_name = (char *)"raw-test";
	m.seq = 1;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &h;
	if (harness_raw_send_msg(fd, &m))
		return NULL;
	return harness_raw_recv(fd, 5000);
}

/* Reads exactly len bytes within the deadline. */
static int read_full(int fd, uint8_t *buf, size_t len, long deadline)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -ETIMEDOUT;
		n = recv(fd, buf + got, len - got, 0);
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		got += (size_t)n;
	}
	return 0;
}

Gpuq__Msg *harness_raw_recv(int fd, int ms)
{
	long deadline = now_ms() + ms;
	uint8_t hdr[FRAME_HDR], *buf;
	Gpuq__Msg *m;
	size_t len;

	if (read_full(fd, hdr, FRAME_HDR, deadline))
		return NULL;
	if (frame_check(hdr, FRAME_HDR, FRAME_MAX_LIMIT) < 0)
		return NULL;
	len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	buf = malloc(FRAME_HDR + len);
	if (!buf)
		return NULL;
	memcpy(buf, hdr, FRAME_HDR);
	if (read_full(fd, buf + FRAME_HDR, len, deadline)) {
		free(buf);
		return NULL;
	}
	m = frame_unpack(buf, FRAME_HDR + len);
	free(buf);
	return m;
}

int harness_raw_closed(int fd, int ms)
{
	long deadline = now_ms() + ms;
	uint8_t buf[4096];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return 0;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
		if (n < 0)
			return 0;
	}
}

int harness_run_ctl(const char *const *args, char *out, size_t outlen)
{
	const char *argv[32];
	int pipefd[2], st, argc = 0, i;
	size_t got = 0;
	pid_t pid;

	argv[argc++] = harness_gpuqctl();
	for (i = 0; args[i] && argc < 31; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	if (pipe(pipefd) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		ssize_t n = read(pipefd[0], out + got, outlen - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == outlen - 1)
			break;
	}
	out[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void harness_fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		/* xorshift64*: cheap, and no two seeds give the same stream prefix */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

uint64_t harness_seed(void)
{
	static uint64_t seed;
	const char *s;

	if (seed)
		return seed;
	s = getenv("GPUQ_TEST_SEED");
	seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	if (!seed)
		seed = 1;
	fprintf(stderr, "seed %llu (set GPUQ_TEST_SEED to repeat)\n", (unsigned long long)seed);
	return seed;
}
