/* harness.c: start a real gpuqd on a private socket and talk to it, for integration tests. */
#include "build-config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

int harness_run_suite(Suite *suite)
{
	SRunner *sr = srunner_create(suite);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void harness_use_host_backend(void)
{
	setenv("GPUQ_TEST_BACKEND", "host", 1);
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

void harness_drain_notify(struct daemon_proc *d)
{
	char buf[1024];
	ssize_t n;

	while ((n = recv(d->notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = '\0';
		if (!strncmp(buf, "STATUS=", 7))
			snprintf(d->status, sizeof(d->status), "%s", buf + 7);
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
	argv[argc++] = getenv("GPUQ_TEST_SHARING") && *getenv("GPUQ_TEST_SHARING") ?
			       getenv("GPUQ_TEST_SHARING") :
			       "exclusive";
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
		/* A test killed by its timeout takes its gpuqd with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
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
				fprintf(stderr, "gpuqd did not exit within 20 s of signal %d\n",
					sig);
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

int harness_wait_log(struct daemon_proc *d, const char *s, int ms)
{
	int waited;

	/* gpuqd writes each line with one write: a partial line is never seen as whole. */
	for (waited = 0; waited <= ms; waited += 5) {
		if (harness_log_contains(d, s))
			return 1;
		usleep(5000);
	}
	return harness_log_contains(d, s);
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

/*
 * Reads exactly len bytes within the deadline; fds that arrive beside them
 * are appended to fds[*nfds..max) (closed when fds is NULL or full).
 */
static int read_full(int fd, uint8_t *buf, size_t len, long deadline, int *fds, unsigned *nfds,
		     unsigned max)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -ETIMEDOUT;
		n = frame_recv(fd, buf + got, len - got, fds, nfds, max);
		if (n <= 0)
			return n == 0 ? -ECONNRESET : (int)n;
		got += (size_t)n;
	}
	return 0;
}

Gpuq__Msg *harness_raw_recv_fds(int fd, int ms, int *fds, unsigned *nfds, unsigned max)
{
	long deadline = now_ms() + ms;
	uint8_t hdr[FRAME_HDR], *buf;
	Gpuq__Msg *m;
	size_t len;

	if (read_full(fd, hdr, FRAME_HDR, deadline, fds, nfds, max))
		return NULL;
	if (frame_check(hdr, FRAME_HDR, FRAME_MAX_LIMIT) < 0)
		return NULL;
	len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	buf = malloc(FRAME_HDR + len);
	if (!buf)
		return NULL;
	memcpy(buf, hdr, FRAME_HDR);
	if (read_full(fd, buf + FRAME_HDR, len, deadline, fds, nfds, max)) {
		free(buf);
		return NULL;
	}
	m = frame_unpack(buf, FRAME_HDR + len);
	free(buf);
	return m;
}

Gpuq__Msg *harness_raw_recv(int fd, int ms)
{
	return harness_raw_recv_fds(fd, ms, NULL, NULL, 0);
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

int harness_raw_send_fds(int fd, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	ssize_t n = frame_send(fd, buf, len, fds, nfds);

	if (n < 0)
		return (int)n;
	if ((size_t)n < len)
		return harness_raw_send(fd, (const uint8_t *)buf + n, len - (size_t)n);
	return 0;
}

/*
 * The one place that knows what the Welcome's fds mean. Protocol 1: memfd,
 * CQ eventfd, one doorbell eventfd per device. Protocol 2: memfd and the
 * client's end of the session socket, which is both doorbell and wake.
 */
static int raw_take_welcome_fds(struct raw_session *rs)
{
	unsigned i;

	if (rs->nfds < 2)
		return -EPROTO;
	rs->memfd = rs->fds[0];
	rs->wake_fd = rs->fds[1];
	for (i = 0; i < 16; i++) {
		if (rs->proto >= 2)
			rs->doorbell[i] = rs->wake_fd;
		else
			rs->doorbell[i] = 2 + i < rs->nfds ? rs->fds[2 + i] : -1;
	}
	return 0;
}

int harness_raw_session_open(struct daemon_proc *d, struct raw_session *rs, uint32_t version,
			     uint64_t arena, uint32_t depth)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__Hello h = GPUQ__HELLO__INIT;
	struct stat st;
	unsigned i;
	int r;

	memset(rs, 0, sizeof(*rs));
	rs->memfd = rs->wake_fd = -1;
	for (i = 0; i < FRAME_MAX_FDS; i++)
		rs->fds[i] = -1;
	rs->sock = harness_raw_connect(d);
	if (rs->sock < 0)
		return rs->sock;
	h.proto_version = version;
	h.client_name = (char *)"raw-attack";
	h.arena_size = arena;
	h.queue_depth = depth;
	m.seq = 1;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &h;
	rs->seq = 2;
	r = harness_raw_send_msg(rs->sock, &m);
	if (r)
		goto fail;
	rep = harness_raw_recv_fds(rs->sock, 10000, rs->fds, &rs->nfds, FRAME_MAX_FDS);
	if (!rep || rep->body_case != GPUQ__MSG__BODY_WELCOME) {
		frame_free(rep);
		r = -EPROTO;
		goto fail;
	}
	rs->proto = rep->welcome->proto_version;
	rs->id = rep->welcome->session_id;
	rs->ndevices = rep->welcome->ndevices;
	frame_free(rep);
	r = raw_take_welcome_fds(rs);
	if (r)
		goto fail;
	if (fstat(rs->memfd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	rs->size = (size_t)st.st_size;
	rs->base = mmap(NULL, rs->size, PROT_READ | PROT_WRITE, MAP_SHARED, rs->memfd, 0);
	if (rs->base == MAP_FAILED) {
		rs->base = NULL;
		r = -errno;
		goto fail;
	}
	rs->hdr = (struct shm_hdr *)rs->base;
	rs->sq_entries = rs->hdr->sq_entries;
	rs->cq_entries = rs->hdr->cq_entries;
	rs->rings_off = rs->hdr->rings_off;
	rs->ringset_size = rs->hdr->ringset_size;
	rs->arena_off = rs->hdr->arena_off;
	rs->arena_size = rs->hdr->arena_size;
	return 0;
fail:
	harness_raw_session_close(rs);
	return r;
}

void harness_raw_session_close(struct raw_session *rs)
{
	unsigned i;

	if (rs->base)
		munmap(rs->base, rs->size);
	rs->base = NULL;
	for (i = 0; i < rs->nfds; i++)
		if (rs->fds[i] >= 0)
			close(rs->fds[i]);
	rs->nfds = 0;
	if (rs->sock >= 0)
		close(rs->sock);
	rs->sock = -1;
}

struct shm_sqe *harness_raw_sqe(struct raw_session *rs, unsigned dev, uint32_t idx)
{
	return (struct shm_sqe *)(rs->base + rs->rings_off + rs->ringset_size * dev + shm_sq_off() +
				  (uint64_t)(idx & (rs->sq_entries - 1)) * sizeof(struct shm_sqe));
}

static struct shm_cqe *raw_cqe(struct raw_session *rs, unsigned dev, uint32_t idx)
{
	return (struct shm_cqe *)(rs->base + rs->rings_off + rs->ringset_size * dev +
				  shm_cq_off(rs->sq_entries) +
				  (uint64_t)(idx & (rs->cq_entries - 1)) * sizeof(struct shm_cqe));
}

int harness_raw_doorbell(struct raw_session *rs, unsigned dev)
{
	int fd = dev < 16 ? rs->doorbell[dev] : -1;

	if (fd < 0)
		return -EBADF;
	if (rs->proto >= 2) {
		if (send(fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
			return -errno;
	} else {
		uint64_t one = 1;

		if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -errno;
	}
	return 0;
}

int harness_raw_submit(struct raw_session *rs, unsigned dev, const struct shm_sqe *q, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		*harness_raw_sqe(rs, dev, rs->sq_tail[dev] + i) = q[i];
	rs->sq_tail[dev] += n;
	atomic_store_explicit(&rs->hdr->ctl[dev].sq_tail.v, rs->sq_tail[dev], memory_order_release);
	return harness_raw_doorbell(rs, dev);
}

unsigned harness_raw_reap(struct raw_session *rs, unsigned dev, struct shm_cqe *out, unsigned n,
			  int ms)
{
	long deadline = now_ms() + ms;
	unsigned got = 0;

	while (got < n) {
		uint32_t tail =
			atomic_load_explicit(&rs->hdr->ctl[dev].cq_tail.v, memory_order_acquire);

		while (got < n && rs->cq_head[dev] != tail) {
			out[got++] = *raw_cqe(rs, dev, rs->cq_head[dev]);
			rs->cq_head[dev]++;
		}
		atomic_store_explicit(&rs->hdr->ctl[dev].cq_head.v, rs->cq_head[dev],
				      memory_order_release);
		if (got == n || now_ms() > deadline)
			break;
		usleep(200);
	}
	return got;
}

Gpuq__Msg *harness_raw_call(struct raw_session *rs, Gpuq__Msg *req, int ms, int *fds,
			    unsigned *nfds, unsigned max)
{
	req->seq = rs->seq++;
	if (harness_raw_send_msg(rs->sock, req))
		return NULL;
	return harness_raw_recv_fds(rs->sock, ms, fds, nfds, max);
}

int harness_raw_buf_alloc(struct raw_session *rs, unsigned dev, uint64_t size)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__BufAlloc a = GPUQ__BUF_ALLOC__INIT;
	int r;

	a.device = dev;
	a.size = size;
	m.body_case = GPUQ__MSG__BODY_BUF_ALLOC;
	m.buf_alloc = &a;
	rep = harness_raw_call(rs, &m, 10000, NULL, NULL, 0);
	if (!rep)
		return -ECONNRESET;
	if (rep->body_case == GPUQ__MSG__BODY_BUF_ALLOC_REPLY)
		r = (int)rep->buf_alloc_reply->buf_id;
	else if (rep->body_case == GPUQ__MSG__BODY_ERROR)
		r = rep->error->code < 0 ? rep->error->code : -EPROTO;
	else
		r = -EPROTO;
	frame_free(rep);
	return r;
}

int harness_raw_status(struct daemon_proc *d, int ms, Gpuq__Status **out)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;
	Gpuq__Hello h = GPUQ__HELLO__INIT;
	int fd = harness_raw_connect(d), r = 0;

	if (out)
		*out = NULL;
	if (fd < 0)
		return fd;
	/* Hello and StatusReq pipelined; the smallest arena gpuqd gives. */
	rep = NULL;
	h.proto_version = GPUQ_PROTO_VERSION;
	h.client_name = (char *)"raw-status";
	h.arena_size = 4096;
	m.seq = 8;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &h;
	if (harness_raw_send_msg(fd, &m))
		goto reset;
	m.seq = 9;
	m.body_case = GPUQ__MSG__BODY_STATUS_REQ;
	m.status_req = &sr;
	if (harness_raw_send_msg(fd, &m))
		goto reset;
	rep = harness_raw_recv(fd, ms); /* the Welcome: its fds are closed by frame_recv */
	if (!rep || rep->body_case != GPUQ__MSG__BODY_WELCOME)
		goto reset;
	frame_free(rep);
	rep = harness_raw_recv(fd, ms);
	close(fd);
	if (!rep)
		return -ETIMEDOUT;
	if (rep->body_case != GPUQ__MSG__BODY_STATUS)
		r = -EPROTO;
	if (!r && out) {
		/* Keep the whole message; the caller frees it through frame_free(container). */
		*out = rep->status;
		rep->status = NULL;
		rep->body_case = GPUQ__MSG__BODY__NOT_SET;
	}
	frame_free(rep);
	return r;
reset:
	frame_free(rep);
	close(fd);
	return -ECONNRESET;
}

static long proc_status_field(struct daemon_proc *d, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl)) {
			v = strtol(line + kl, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

long harness_rss_kb(struct daemon_proc *d)
{
	return proc_status_field(d, "VmRSS:");
}

int harness_threads(struct daemon_proc *d)
{
	return (int)proc_status_field(d, "Threads:");
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
