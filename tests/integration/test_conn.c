/* test_conn.c: gpuqd's control plane under pressure: owned reply fds, per-uid limits, bounds, back-off. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

static long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static __attribute__((unused)) double mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A raw session: connected, hello answered with a Welcome (whose fds are dropped). */
static int raw_session(struct daemon_proc *d)
{
	int fd = harness_raw_connect(d);
	Gpuq__Msg *m;

	ck_assert_int_ge(fd, 0);
	m = harness_raw_hello(fd, GPUQ_PROTO_VERSION);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_WELCOME);
	frame_free(m);
	return fd;
}

static void send_status_req(int fd, uint64_t seq)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;

	m.seq = seq;
	m.body_case = GPUQ__MSG__BODY_STATUS_REQ;
	m.status_req = &sr;
	ck_assert_int_eq(harness_raw_send_msg(fd, &m), 0);
}

/* Packs several messages into one buffer, so they arrive together. */
static size_t pack_into(uint8_t *dst, size_t cap, Gpuq__Msg *m)
{
	uint8_t *buf;
	size_t len;

	ck_assert_int_eq(frame_pack(m, FRAME_MAX_LIMIT, &buf, &len), 0);
	ck_assert_uint_le(len, cap);
	memcpy(dst, buf, len);
	free(buf);
	return len;
}

/*
 * Reads everything the daemon sends on fd until the frame with seq want has
 * arrived, collecting every descriptor passed. Returns that frame.
 */
static Gpuq__Msg *read_until(int fd, uint64_t want, int *fds, unsigned *nfds, unsigned maxfds)
{
	static uint8_t buf[8 << 20];
	size_t len = 0, off = 0;
	long deadline = mono_ms() + 20000;

	for (;;) {
		ssize_t fl;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		while ((fl = frame_check(buf + off, len - off, FRAME_MAX_LIMIT)) > 0) {
			Gpuq__Msg *m = frame_unpack(buf + off, (size_t)fl);

			off += (size_t)fl;
			ck_assert_ptr_nonnull(m);
			if (m->seq == want)
				return m;
			frame_free(m);
		}
		ck_assert_int_ge(fl, 0);
		if (off) {
			memmove(buf, buf + off, len - off);
			len -= off;
			off = 0;
		}
		ck_assert_msg(mono_ms() < deadline, "reply %llu never came", (unsigned long long)want);
		if (poll(&p, 1, 1000) <= 0)
			continue;
		fl = frame_recv(fd, buf + len, sizeof(buf) - len, fds, nfds, maxfds);
		ck_assert_int_gt(fl, 0);
		len += (size_t)fl;
	}
}

/*
 * A reply's descriptors are the daemon's own duplicates: a ChanReply left
 * queued behind thousands of unread replies, its channel closed by a
 * pipelined ChanClose and the numbers reused by a second client's session,
 * still carries the channel's memory, never the other session's socket or
 * memfd.
 */
START_TEST(test_queued_reply_fds_owned)
{
	struct daemon_proc d;
	static uint8_t burst[1 << 16];
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__ChanCreate cc = GPUQ__CHAN_CREATE__INIT;
	Gpuq__ChanClose cl = GPUQ__CHAN_CLOSE__INIT;
	const uint32_t slot = 256, nslots = 64;
	int fds[16], a, b, i, memfds = 0;
	unsigned nfds = 0, u;
	size_t blen = 0;
	gpuq_t *q;

	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
	a = raw_session(&d);
	/* Thousands of replies nobody reads fill the socket and stay queued in gpuqd. */
	for (i = 0; i < 6000; i++)
		send_status_req(a, 100 + (uint64_t)i);
	usleep(200000);
	cc.name = "owned-fds";
	cc.slot_size = slot;
	cc.nslots = nslots;
	cc.direction = 2;
	cc.mode = 0600;
	m.seq = 1;
	m.body_case = GPUQ__MSG__BODY_CHAN_CREATE;
	m.chan_create = &cc;
	blen += pack_into(burst + blen, sizeof(burst) - blen, &m);
	/* Ids start at 1 in a session. */
	cl.chan_id = 1;
	m.seq = 2;
	m.body_case = GPUQ__MSG__BODY_CHAN_CLOSE;
	m.chan_close = &cl;
	blen += pack_into(burst + blen, sizeof(burst) - blen, &m);
	ck_assert_int_eq(harness_raw_send(a, burst, blen), 0);
	usleep(200000);
	/* A second client takes the lowest free descriptor numbers in gpuqd. */
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	b = raw_session(&d);

	rep = read_until(a, 1, fds, &nfds, 16);
	ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_CHAN_REPLY);
	ck_assert_uint_ge(nfds, 2);
	for (u = 0; u < nfds; u++) {
		char link[64], target[128];
		struct stat st;
		ssize_t n;

		ck_assert_int_eq(fstat(fds[u], &st), 0);
		ck_assert_msg(!S_ISSOCK(st.st_mode), "fd %u of the ChanReply is a socket", u);
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fds[u]);
		n = readlink(link, target, sizeof(target) - 1);
		ck_assert_int_gt(n, 0);
		target[n] = '\0';
		if (!strncmp(target, "/memfd:", 7)) {
			memfds++;
			/* A channel's memory: not a session arena, sized by the channel. */
			ck_assert_msg(strstr(target, "session") == NULL, "got %s", target);
			ck_assert_int_ge(st.st_size, (off_t)slot * nslots);
			ck_assert_int_lt(st.st_size, (off_t)64 << 20);
		}
		close(fds[u]);
	}
	ck_assert_int_ge(memfds, 1);
	frame_free(rep);
	rep = read_until(a, 2, fds, &nfds, 16);
	ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_OK);
	frame_free(rep);
	close(a);
	close(b);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

static Suite *conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("conn");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_queued_reply_fds_owned);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(conn_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
