/* test_session_end.c: gpuqd's death or stop reaches every libgpuq call; gpuq_fd's promise; gpuq_reconnect; NULL arguments. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

#define LEN (1u << 20)
#define DEATH_LIMIT_MS 100.0

static struct daemon_proc d;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void start(void)
{
	static const char *const args[] = { "--host-mem", "256M", "--arena-max", "64M", NULL };

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
}

static gpuq_t *open_session(const char *path)
{
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = "session-end",
				  .arena_size = 16u << 20 };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(path, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	return q;
}

/* Stops gpuqd and waits until it is stopped for real (kill only queues the signal). */
static void stop_daemon(void)
{
	char path[64], buf[512], *p;
	int i;

	ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)d.pid);
	for (i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'T')
			return;
		usleep(500);
	}
	ck_abort_msg("gpuqd did not stop");
}

/* ---- a client blocked in each kind of call when gpuqd goes ---- */

enum kind {
	K_SEND,
	K_RECV,
	K_COPY,
	K_WAIT,
	K_WAITALL,
	K_POLL,
	K_POLL_TIMEOUT,
	K_CHAN_SEND,
	K_CHAN_RECV,
	K_NKINDS
};

static const char *const kind_name[] = { "send",       "recv",      "copy",
					 "wait",       "waitall",   "poll(-1)",
					 "poll(5000)", "chan_send", "chan_recv" };

struct blocked {
	gpuq_t *q;
	enum kind kind;
	uint32_t a, b;
	gpuq_chan_t *tx, *rx;
	uint8_t *host;
	gpuq_req_t *reqs[2];
	long ret;
	double t_return;
};

/* Queues what the call will wait for (gpuqd is stopped by now, so nothing completes). */
static void prepare(struct blocked *w)
{
	switch (w->kind) {
	case K_WAIT:
		ck_assert_int_eq(gpuq_isend(w->q, w->a, 0, w->host, 4096, 1, &w->reqs[0]), 0);
		break;
	case K_WAITALL:
		ck_assert_int_eq(gpuq_isend(w->q, w->a, 0, w->host, 4096, 1, &w->reqs[0]), 0);
		ck_assert_int_eq(gpuq_irecv(w->q, w->a, 0, w->host + 4096, 4096, 2, &w->reqs[1]),
				 0);
		break;
	case K_POLL:
	case K_POLL_TIMEOUT:
		ck_assert_int_eq(gpuq_isend(w->q, w->a, 0, w->host, 4096, 7, NULL), 0);
		break;
	default: break;
	}
}

static void *run_blocked(void *arg)
{
	struct blocked *w = arg;
	struct gpuq_completion c[4];
	char msg[64] = "m";

	switch (w->kind) {
	case K_SEND: w->ret = gpuq_send(w->q, w->a, 0, w->host, LEN); break;
	case K_RECV: w->ret = gpuq_recv(w->q, w->a, 0, w->host, LEN); break;
	case K_COPY: w->ret = gpuq_copy(w->q, w->b, 0, w->a, 0, LEN); break;
	case K_WAIT:
		w->ret = gpuq_wait(w->q, w->reqs[0], &c[0]);
		if (w->ret == 0 && c[0].result > 0)
			w->ret = c[0].result; /* done before a clean stop */
		else if (w->ret == 0 || c[0].result != w->ret)
			w->ret = -1000; /* the completion must carry the same error */
		break;
	case K_WAITALL:
		w->ret = gpuq_waitall(w->q, w->reqs, 2, c);
		if (c[0].result != w->ret || c[1].result != w->ret)
			w->ret = -1000;
		break;
	case K_POLL:
	case K_POLL_TIMEOUT:
		/* The lost request's completion first, then the session's error. */
		/*
		 * The queued request's completion first (the session's error, or
		 * its bytes when gpuqd finished it before a clean stop), then the
		 * session's error.
		 */
		w->ret = gpuq_poll(w->q, c, 4, w->kind == K_POLL ? -1 : 5000);
		if (w->ret == 1 && c[0].tag == 7) {
			int64_t res = c[0].result;

			w->ret = gpuq_poll(w->q, c, 4, w->kind == K_POLL ? -1 : 5000);
			if (res < 0 && res != w->ret)
				w->ret = -1001;
		} else {
			w->ret = -1002;
		}
		break;
	case K_CHAN_SEND: w->ret = gpuq_chan_send(w->tx, msg, sizeof(msg), -1); break;
	case K_CHAN_RECV: w->ret = gpuq_chan_recv(w->rx, msg, sizeof(msg), -1); break;
	default: break;
	}
	w->t_return = now_ms();
	return NULL;
}

/*
 * One round: gpuqd is stopped (SIGSTOP) so the call really waits, then
 * sig ends it (SIGKILL, or SIGTERM + SIGCONT). Returns how long after the
 * signal the call returned; *ret is what it returned.
 */
static double one_round(enum kind kind, int sig, long *ret, double *closed_ms)
{
	int observer;
	struct blocked w = { .kind = kind };
	pthread_t th;
	double t_sig;
	char msg[64] = { 0 };
	int i;

	start();
	w.q = open_session(d.sock);
	w.host = malloc(LEN);
	ck_assert_ptr_nonnull(w.host);
	memset(w.host, 0x5a, LEN);
	ck_assert_int_eq(gpuq_buf_alloc(w.q, 0, LEN, &w.a), 0);
	ck_assert_int_eq(gpuq_buf_alloc(w.q, 0, LEN, &w.b), 0);
	if (kind == K_CHAN_SEND || kind == K_CHAN_RECV) {
		ck_assert_int_eq(gpuq_chan_create(w.q, "end", 64, 16, GPUQ_CHAN_CPU_TO_GPU, &w.tx),
				 0);
		ck_assert_int_eq(gpuq_chan_open(w.q, "end", GPUQ_CHAN_RECV, &w.rx), 0);
		if (kind == K_CHAN_SEND) {
			for (i = 0; i < 16; i++)
				ck_assert_int_eq(gpuq_chan_send(w.tx, msg, sizeof(msg), 0),
						 sizeof(msg));
			ck_assert_int_eq(gpuq_chan_send(w.tx, msg, sizeof(msg), 0), -EAGAIN);
		}
	}
	observer = harness_raw_connect(&d);
	ck_assert_int_ge(observer, 0);
	stop_daemon();
	prepare(&w);
	ck_assert_int_eq(pthread_create(&th, NULL, run_blocked, &w), 0);
	usleep(30000); /* asleep in the call by now (it cannot complete) */
	ck_assert_msg(w.t_return == 0, "%s returned %ld while gpuqd was stopped", kind_name[kind],
		      w.ret);
	t_sig = now_ms();
	if (sig == SIGKILL) {
		kill(d.pid, SIGKILL);
	} else {
		kill(d.pid, SIGTERM);
		kill(d.pid, SIGCONT);
	}
	/* When gpuqd's descriptors are closed (the kernel's teardown of it is done). */
	{
		struct pollfd p = { .fd = observer, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 10000), 1);
		*closed_ms = now_ms() - t_sig;
	}
	/* Reaped without a second signal (a second SIGTERM may kill a stopping gpuqd). */
	ck_assert_int_eq(harness_kill_wait(&d, 0), (sig == SIGKILL ? -1 : 0));
	pthread_join(th, NULL);
	close(observer);
	*ret = w.ret;
	/* After the end: the fd is readable, new requests fail at once. */
	{
		int ep = epoll_create1(0), fd = gpuq_fd(w.q);
		struct epoll_event ev = { .events = EPOLLIN };

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 0), 1);
		close(ep);
	}
	{
		int gone = sig == SIGKILL ? -ECONNRESET : -ESHUTDOWN;

		ck_assert_int_eq(gpuq_isend(w.q, w.a, 0, w.host, 16, 0, NULL), gone);
		ck_assert_int_eq(gpuq_send(w.q, w.a, 0, w.host, 16), gone);
	}
	gpuq_chan_close(w.tx);
	gpuq_chan_close(w.rx);
	gpuq_close(w.q);
	free(w.host);
	return w.t_return - t_sig;
}

START_TEST(kill_while_blocked)
{
	/* 50 kills in all, spread over every kind of blocking call. */
	double worst[K_NKINDS] = { 0 }, worst_after[K_NKINDS] = { 0 };
	int round;

	int slow = 0;

	/*
	 * 50 rounds must each see the error within 100 ms of gpuqd's sockets
	 * closing (measured from that moment: the kernel's teardown of the
	 * process takes its own time). The machine may be busy with other
	 * builds: up to 3 rounds that took longer, but under the 1 s a missed
	 * wake would cost, are run again and reported.
	 */
	for (round = 0; round < 50; round++) {
		enum kind k = (enum kind)(round % K_NKINDS);
		long ret;
		double closed, ms = one_round(k, SIGKILL, &ret, &closed);

		ck_assert_msg(ret == -ECONNRESET, "%s after kill -9: %ld (%s)", kind_name[k], ret,
			      ret < 0 ? strerror((int)-ret) : "no error");
		ck_assert_msg(ms < 1000, "%s returned %.1f ms after kill -9", kind_name[k], ms);
		if (ms - closed >= DEATH_LIMIT_MS) {
			printf("kill -9 while in %s: %.1f ms after gpuqd's sockets closed (busy "
			       "machine?), run again\n",
			       kind_name[k], ms - closed);
			ck_assert_msg(++slow <= 3,
				      "%s noticed gpuqd's death %.1f ms after its sockets "
				      "closed (4th slow round)",
				      kind_name[k], ms - closed);
			round--;
			continue;
		}
		if (ms > worst[k])
			worst[k] = ms;
		if (ms - closed > worst_after[k])
			worst_after[k] = ms - closed;
	}
	for (round = 0; round < K_NKINDS; round++)
		printf("kill -9 while in %s: slowest return %.2f ms after the kill, %.2f ms after "
		       "gpuqd's sockets closed\n",
		       kind_name[round], worst[round], worst_after[round]);
}
END_TEST

START_TEST(clean_stop_while_blocked)
{
	static const enum kind kinds[] = { K_POLL, K_CHAN_RECV, K_WAIT, K_SEND };
	unsigned i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		long ret;
		double closed, ms = one_round(kinds[i], SIGTERM, &ret, &closed);

		/*
		 * Resumed by SIGCONT, gpuqd may finish the queued work before it
		 * stops: then the call succeeded, which is also right for a wait.
		 */
		if (kinds[i] == K_WAIT || kinds[i] == K_SEND)
			ck_assert_msg(ret == -ESHUTDOWN || ret >= 0, "%s after SIGTERM: %ld",
				      kind_name[kinds[i]], ret);
		else
			ck_assert_msg(ret == -ESHUTDOWN, "%s after SIGTERM: %ld",
				      kind_name[kinds[i]], ret);
		ck_assert_msg(ms < 1000, "%s noticed the stop after %.1f ms", kind_name[kinds[i]],
			      ms);
	}
}
END_TEST

START_TEST(pending_requests_fail)
{
	struct gpuq_completion c[64];
	gpuq_req_t *h[8];
	uint8_t *host = malloc(LEN);
	gpuq_t *q;
	uint32_t id;
	int i, n, done;

	start();
	q = open_session(d.sock);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, LEN, &id), 0);
	stop_daemon();
	for (i = 0; i < 8; i++) {
		ck_assert_int_eq(gpuq_isend(q, id, 0, host, 4096, 100 + i, NULL), 0);
		ck_assert_int_eq(gpuq_irecv(q, id, 0, host + 8192 * (i + 1), 4096, 0, &h[i]), 0);
	}
	ck_assert_int_eq(harness_kill_wait(&d, SIGKILL), -1);
	/* gpuq_test notices on its own (no blocking call came first). */
	for (i = 0; i < 200; i++) {
		ck_assert_int_eq(gpuq_test(q, h[0], &done, &c[0]), 0);
		if (done)
			break;
		usleep(1000);
	}
	ck_assert_int_eq(done, 1);
	ck_assert_int_eq(c[0].result, -ECONNRESET);
	for (i = 1; i < 8; i++) {
		ck_assert_int_eq(gpuq_wait(q, h[i], &c[i]), -ECONNRESET);
		ck_assert_int_eq(c[i].result, -ECONNRESET);
		ck_assert_int_eq(gpuq_wait(q, h[i], &c[i]), -EINVAL); /* released */
	}
	n = gpuq_poll(q, c, 64, 0);
	ck_assert_int_eq(n, 8);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(c[i].tag, 100 + (uint64_t)i);
		ck_assert_int_eq(c[i].result, -ECONNRESET);
	}
	ck_assert_int_eq(gpuq_poll(q, c, 64, 0), -ECONNRESET);
	ck_assert_int_eq(gpuq_poll(q, c, 64, -1), -ECONNRESET);
	/* The control path says so too. */
	ck_assert_int_lt(gpuq_buf_alloc(q, 0, 4096, &id), 0);
	gpuq_close(q);
	free(host);
}
END_TEST

START_TEST(reconnect_after_restart)
{
	char dir[] = "/tmp/gpuq-reconnect-XXXXXX", link[64];
	struct gpuq_completion c;
	uint8_t buf[4096], back[4096];
	int ep, fd, round;
	struct epoll_event ev = { .events = EPOLLIN };
	gpuq_t *q;
	uint32_t id;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(link, sizeof(link), "%s/sock", dir);
	start();
	ck_assert_int_eq(symlink(d.sock, link), 0);
	q = open_session(link);
	fd = gpuq_fd(q);
	ck_assert_int_ge(fd, 0);
	ep = epoll_create1(0);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	for (round = 0; round < 3; round++) {
		uint64_t sid = gpuq_session_id(q);

		harness_fill(buf, sizeof(buf), (uint64_t)round);
		ck_assert_int_eq(gpuq_buf_alloc(q, 0, sizeof(buf), &id), 0);
		ck_assert_int_eq(gpuq_send(q, id, 0, buf, sizeof(buf)), sizeof(buf));
		ck_assert_int_eq(harness_kill_wait(&d, SIGKILL), -1);
		ck_assert_int_eq(gpuq_recv(q, id, 0, back, sizeof(back)), -ECONNRESET);
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 100), 1);
		/* No daemon yet: the reconnect fails and may be tried again. */
		ck_assert_int_lt(gpuq_reconnect(q), 0);
		ck_assert_int_eq(gpuq_send(q, id, 0, buf, sizeof(buf)), -EINVAL);
		start();
		unlink(link);
		ck_assert_int_eq(symlink(d.sock, link), 0);
		ck_assert_int_eq(gpuq_reconnect(q), 0);
		ck_assert_uint_ne(gpuq_session_id(q), 0);
		(void)sid;
		/* The old buffer is gone with the old session; a new one works. */
		ck_assert_int_eq(gpuq_send(q, id, 0, buf, sizeof(buf)), -ENOENT);
		ck_assert_int_eq(gpuq_buf_alloc(q, 0, sizeof(buf), &id), 0);
		ck_assert_int_eq(gpuq_send(q, id, 0, buf, sizeof(buf)), sizeof(buf));
		memset(back, 0, sizeof(back));
		ck_assert_int_eq(gpuq_recv(q, id, 0, back, sizeof(back)), sizeof(back));
		ck_assert_mem_eq(buf, back, sizeof(buf));
		/* The same gpuq_fd watches the new session. */
		ck_assert_int_eq(gpuq_fd(q), fd);
		ck_assert_int_eq(gpuq_poll(q, &c, 1, 0), 0);
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 0), 0);
		ck_assert_int_eq(gpuq_isend(q, id, 0, buf, 64, 9, NULL), 0);
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 1000), 1);
		ck_assert_int_eq(gpuq_poll(q, &c, 1, 0), 1);
		ck_assert_int_eq(c.tag, 9);
		ck_assert_int_eq(c.result, 64);
	}
	close(ep);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
	unlink(link);
	rmdir(dir);
}
END_TEST

/* ---- gpuq_fd after each kind of blocking call ---- */

enum bkind { B_SEND, B_RECV, B_COPY, B_WAIT, B_WAITALL, B_POLL, B_NBKINDS };
static const char *const bkind_name[] = { "send", "recv", "copy", "wait", "waitall", "poll" };

static void blocking_call(gpuq_t *q, enum bkind k, uint32_t a, uint32_t b, uint8_t *host)
{
	struct gpuq_completion c[2];
	gpuq_req_t *h[2];

	switch (k) {
	case B_SEND: ck_assert_int_eq(gpuq_send(q, a, 0, host, LEN), LEN); break;
	case B_RECV: ck_assert_int_eq(gpuq_recv(q, a, 0, host, LEN), LEN); break;
	case B_COPY: ck_assert_int_eq(gpuq_copy(q, b, 0, a, 0, LEN), LEN); break;
	case B_WAIT:
		ck_assert_int_eq(gpuq_isend(q, a, 0, host, LEN, 0, &h[0]), 0);
		ck_assert_int_eq(gpuq_wait(q, h[0], &c[0]), 0);
		ck_assert_int_eq(c[0].result, LEN);
		break;
	case B_WAITALL:
		ck_assert_int_eq(gpuq_isend(q, a, 0, host, LEN, 0, &h[0]), 0);
		ck_assert_int_eq(gpuq_irecv(q, b, 0, host + LEN, LEN, 0, &h[1]), 0);
		ck_assert_int_eq(gpuq_waitall(q, h, 2, c), 0);
		break;
	case B_POLL:
		ck_assert_int_eq(gpuq_isend(q, a, 0, host, LEN, 5, NULL), 0);
		ck_assert_int_eq(gpuq_poll(q, c, 1, 5000), 1);
		ck_assert_int_eq(c[0].tag, 5);
		break;
	default: break;
	}
}

static void fd_after_blocking(int edge)
{
	uint8_t *host = malloc(2 * LEN), small[4096];
	struct epoll_event ev = { .events = EPOLLIN | (edge ? EPOLLET : 0) };
	struct gpuq_completion c[4];
	int k, round, ep, fd, n, spurious = 0;
	double t0;
	gpuq_t *q;
	uint32_t a, b;

	/* No spinning: every blocking call sleeps on the session socket. */
	setenv("GPUQ_SPIN_US", "0", 1);
	start();
	q = open_session(d.sock);
	unsetenv("GPUQ_SPIN_US");
	ck_assert_ptr_nonnull(host);
	memset(host, 1, 2 * LEN);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, LEN, &a), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, LEN, &b), 0);
	fd = gpuq_fd(q);
	ck_assert_int_ge(fd, 0);
	ep = epoll_create1(0);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	for (k = 0; k < B_NBKINDS; k++) {
		for (round = 0; round < 100; round++) {
			blocking_call(q, (enum bkind)k, a, b, host);
			ck_assert_int_eq(gpuq_isend(q, a, 0, small, sizeof(small), 42, NULL), 0);
			/*
			 * The loop a user writes: wait, harvest until empty. A wake
			 * may find nothing (a byte gpuqd sent for an earlier
			 * completion); the completion must come within the second.
			 */
			t0 = now_ms();
			for (n = 0; n == 0;) {
				int left = 1000 - (int)(now_ms() - t0);

				ck_assert_msg(left > 0 && epoll_wait(ep, &ev, 1, left) == 1,
					      "%s-triggered gpuq_fd deaf after gpuq_%s (round %d)",
					      edge ? "edge" : "level", bkind_name[k], round);
				n = gpuq_poll(q, c, 4, 0);
				if (n == 0)
					spurious++;
			}
			ck_assert_int_eq(n, 1);
			ck_assert_int_eq(c[0].tag, 42);
			ck_assert_int_eq(c[0].result, sizeof(small));
			ck_assert_int_eq(gpuq_poll(q, c, 4, 0), 0);
			if (!edge) /* all taken: no longer readable */
				ck_assert_int_eq(epoll_wait(ep, &ev, 1, 0), 0);
		}
	}
	printf("%s-triggered: %d wakes of 600 found nothing yet\n", edge ? "edge" : "level",
	       spurious);
	close(ep);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
	free(host);
}

START_TEST(fd_level_after_blocking)
{
	fd_after_blocking(0);
}
END_TEST

START_TEST(fd_edge_after_blocking)
{
	fd_after_blocking(1);
}
END_TEST

START_TEST(fd_handles_and_queued)
{
	/* A completion reaped by another call (queued in libgpuq) keeps the fd readable. */
	struct epoll_event ev = { .events = EPOLLIN };
	struct gpuq_completion c[2];
	uint8_t small[4096];
	gpuq_req_t *h;
	int ep, fd, done = 0, i;
	gpuq_t *q;
	uint32_t a;

	start();
	q = open_session(d.sock);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, sizeof(small), &a), 0);
	fd = gpuq_fd(q);
	ep = epoll_create1(0);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	for (i = 0; i < 50; i++) {
		ck_assert_int_eq(gpuq_isend(q, a, 0, small, sizeof(small), 1, NULL), 0);
		ck_assert_int_eq(gpuq_isend(q, a, 0, small, sizeof(small), 0, &h), 0);
		/* The blocking send reaps both completions into libgpuq's queues. */
		ck_assert_int_eq(gpuq_send(q, a, 0, small, sizeof(small)), sizeof(small));
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 1000), 1);
		ck_assert_int_eq(gpuq_poll(q, c, 2, 0), 1);
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 1000), 1); /* the handle is still done */
		ck_assert_int_eq(gpuq_test(q, h, &done, &c[1]), 0);
		ck_assert_int_eq(done, 1);
		ck_assert_int_eq(gpuq_poll(q, c, 2, 0), 0);
		ck_assert_int_eq(epoll_wait(ep, &ev, 1, 0), 0);
	}
	close(ep);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* ---- NULL where a pointer is needed ---- */

START_TEST(null_arguments)
{
	struct gpuq_completion c;
	struct gpuq_device_info di;
	struct gpuq_status st = { .struct_size = sizeof(st) };
	struct gpuq_buf_export ex = { .struct_size = sizeof(ex) };
	struct gpuq_client_info *ci;
	struct gpuq_channel_info *chi;
	gpuq_chan_t *ch = NULL;
	gpuq_req_t *h, *none[2] = { NULL, NULL };
	uint8_t buf[64];
	int done;
	size_t sz;
	gpuq_t *q;
	uint32_t id;

	start();
	q = open_session(d.sock);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id), 0);

	/* No session at all. */
	ck_assert_int_eq(gpuq_connect(d.sock, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_connect_opts(d.sock, NULL, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_reconnect(NULL), -EINVAL);
	gpuq_close(NULL);
	ck_assert_str_eq(gpuq_errmsg(NULL), "");
	ck_assert_uint_eq(gpuq_session_id(NULL), 0);
	ck_assert_str_eq(gpuq_backend(NULL), "");
	ck_assert_int_eq(gpuq_devices(NULL, &di, sizeof(di), 1), -EINVAL);
	ck_assert_int_eq(gpuq_buf_alloc(NULL, 0, 64, &id), -EINVAL);
	ck_assert_int_eq(gpuq_buf_free(NULL, id), -EINVAL);
	ck_assert_int_eq(gpuq_buf_write(NULL, id, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(gpuq_buf_read(NULL, id, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(gpuq_buf_export(NULL, id, &ex), -EINVAL);
	ck_assert_int_eq(gpuq_status(NULL, &st), -EINVAL);
	ck_assert_int_eq(gpuq_clients(NULL, &ci, sizeof(*ci)), -EINVAL);
	ck_assert_int_eq(gpuq_channels(NULL, &chi, sizeof(*chi)), -EINVAL);
	ck_assert_ptr_null(gpuq_mem_alloc(NULL, 64));
	gpuq_mem_free(NULL, buf);
	ck_assert_ptr_null(gpuq_arena(NULL, &sz));
	ck_assert_ptr_null(gpuq_arena(NULL, NULL));
	ck_assert_int_eq(gpuq_send(NULL, id, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(gpuq_recv(NULL, id, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(gpuq_copy(NULL, id, 0, id, 0, 1), -EINVAL);
	ck_assert_int_eq(gpuq_isend(NULL, id, 0, buf, 1, 0, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_irecv(NULL, id, 0, buf, 1, 0, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_icopy(NULL, id, 0, id, 0, 1, 0, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_test(NULL, NULL, &done, &c), -EINVAL);
	ck_assert_int_eq(gpuq_wait(NULL, NULL, &c), -EINVAL);
	ck_assert_int_eq(gpuq_waitall(NULL, none, 2, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_poll(NULL, &c, 1, 0), -EINVAL);
	ck_assert_int_eq(gpuq_fd(NULL), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(NULL, "n", 64, 8, GPUQ_CHAN_CPU_TO_GPU, &ch), -EINVAL);
	ck_assert_int_eq(gpuq_chan_open(NULL, "n", GPUQ_CHAN_RECV, &ch), -EINVAL);
	gpuq_chan_close(NULL);
	ck_assert_int_eq(gpuq_chan_send(NULL, buf, 1, 0), -EINVAL);
	ck_assert_int_eq(gpuq_chan_recv(NULL, buf, 1, 0), -EINVAL);
	ck_assert_int_eq(gpuq_chan_recv_batch(NULL, buf, 1, &sz, 1, 0), -EINVAL);
	ck_assert_int_eq(gpuq_chan_fd(NULL), -EINVAL);
	ck_assert_int_eq(gpuq_chan_info(NULL, &sz, NULL, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_chan_own(NULL, GPUQ_CHAN_SEND, 1), -EINVAL);

	/* A session, and NULL where a pointer is needed. */
	ck_assert_int_eq(gpuq_devices(q, NULL, 0, 1), -EINVAL);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 64, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_buf_write(q, id, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(gpuq_buf_read(q, id, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(gpuq_buf_export(q, id, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_status(q, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_clients(q, NULL, sizeof(struct gpuq_client_info)), -EINVAL);
	ck_assert_int_eq(gpuq_channels(q, NULL, sizeof(struct gpuq_channel_info)), -EINVAL);
	ck_assert_int_eq(gpuq_send(q, id, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(gpuq_recv(q, id, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(gpuq_isend(q, id, 0, NULL, 1, 0, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_irecv(q, id, 0, NULL, 1, 0, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_test(q, NULL, &done, &c), -EINVAL);
	ck_assert_int_eq(gpuq_wait(q, NULL, &c), -EINVAL);
	ck_assert_int_eq(gpuq_waitall(q, NULL, 2, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_waitall(q, NULL, 2, &c), -EINVAL);
	ck_assert_int_eq(gpuq_waitall(q, none, 2, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_waitall(q, NULL, 0, NULL), 0);
	ck_assert_int_eq(gpuq_poll(q, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(gpuq_isend(q, id, 0, buf, sizeof(buf), 0, &h), 0);
	ck_assert_int_eq(gpuq_test(q, h, NULL, &c), -EINVAL);
	{
		/* One bad handle among good ones: refused before any is waited for. */
		gpuq_req_t *mixed[2] = { h, NULL };

		ck_assert_int_eq(gpuq_waitall(q, mixed, 2, NULL), -EINVAL);
	}
	ck_assert_int_eq(gpuq_wait(q, h, NULL), 0);
	ck_assert_int_eq(gpuq_chan_create(q, NULL, 64, 8, GPUQ_CHAN_CPU_TO_GPU, &ch), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "n", 64, 8, GPUQ_CHAN_CPU_TO_GPU, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_chan_open(q, NULL, GPUQ_CHAN_RECV, &ch), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "n", 64, 8, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
	ck_assert_int_eq(gpuq_chan_open(q, "n", GPUQ_CHAN_RECV, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_chan_send(ch, NULL, 1, 0), -EINVAL);
	gpuq_chan_close(ch);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* ---- zero-length ranges: one rule for the data and the control path ---- */

START_TEST(zero_length_ranges)
{
	struct gpuq_completion c;
	uint8_t buf[16];
	gpuq_req_t *h;
	gpuq_t *q;
	uint32_t id;

	start();
	q = open_session(d.sock);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id), 0);
	/* At the end: fine, both paths. */
	ck_assert_int_eq(gpuq_buf_write(q, id, 4096, buf, 0), 0);
	ck_assert_int_eq(gpuq_buf_read(q, id, 4096, buf, 0), 0);
	ck_assert_int_eq(gpuq_send(q, id, 4096, buf, 0), 0);
	ck_assert_int_eq(gpuq_recv(q, id, 4096, buf, 0), 0);
	ck_assert_int_eq(gpuq_copy(q, id, 4096, id, 4096, 0), 0);
	/* Past the end: -ERANGE, both paths. */
	ck_assert_int_eq(gpuq_buf_write(q, id, 4097, buf, 0), -ERANGE);
	ck_assert_int_eq(gpuq_buf_read(q, id, 4097, buf, 0), -ERANGE);
	ck_assert_int_eq(gpuq_send(q, id, 4097, buf, 0), -ERANGE);
	ck_assert_int_eq(gpuq_recv(q, id, 4097, buf, 0), -ERANGE);
	ck_assert_int_eq(gpuq_copy(q, id, 0, id, 4097, 0), -ERANGE);
	ck_assert_int_eq(gpuq_isend(q, id, 1u << 30, buf, 0, 0, &h), 0);
	ck_assert_int_eq(gpuq_wait(q, h, &c), 0);
	ck_assert_int_eq(c.result, -ERANGE);
	/* The session goes on after a request that failed. */
	ck_assert_int_eq(gpuq_send(q, id, 0, buf, sizeof(buf)), sizeof(buf));
	ck_assert_int_eq(gpuq_buf_read(q, id, 0, buf, sizeof(buf)), sizeof(buf));
	/* An unknown buffer is unknown whatever the length. */
	ck_assert_int_eq(gpuq_send(q, id + 100, 0, buf, 0), -ENOENT);
	ck_assert_int_eq(gpuq_buf_write(q, id + 100, 0, buf, 0), -ENOENT);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("session_end");
	TCase *t = tcase_create("death");

	tcase_set_timeout(t, 240);
	tcase_add_test(t, kill_while_blocked);
	tcase_add_test(t, clean_stop_while_blocked);
	tcase_add_test(t, pending_requests_fail);
	tcase_add_test(t, reconnect_after_restart);
	suite_add_tcase(s, t);
	t = tcase_create("fd");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, fd_level_after_blocking);
	tcase_add_test(t, fd_edge_after_blocking);
	tcase_add_test(t, fd_handles_and_queued);
	suite_add_tcase(s, t);
	t = tcase_create("args");
	tcase_add_test(t, null_arguments);
	tcase_add_test(t, zero_length_ranges);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
