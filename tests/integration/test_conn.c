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

static double mono_us(void)
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
		ck_assert_msg(mono_ms() < deadline, "reply %llu never came",
			      (unsigned long long)want);
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
	off_t total = 0;
	unsigned nfds = 0, u;
	size_t blen = 0;
	gpuq_t *q;

	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
	a = raw_session(&d);
	/* Thousands of replies nobody reads fill the socket and stay queued in gpuqd. */
	for (i = 0; i < 6000; i++)
		send_status_req(a, 100 + (uint64_t)i);
	usleep(200000);
	cc.name.data = (uint8_t *)"owned-fds";
	cc.name.len = strlen("owned-fds");
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
			ck_assert_msg(strstr(target, "chan") != NULL, "got %s", target);
			total += st.st_size;
		}
		close(fds[u]);
	}
	ck_assert_int_ge(memfds, 1);
	/* The channel's regions together hold its slots, and nothing as large as an arena. */
	ck_assert_int_ge(total, (off_t)slot * nslots);
	ck_assert_int_lt(total, (off_t)64 << 20);
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

/* Sends a Hello asking for arena bytes and returns the reply. */
static Gpuq__Msg *hello_arena(int fd, uint64_t arena)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Hello h = GPUQ__HELLO__INIT;

	h.proto_version = GPUQ_PROTO_VERSION;
	h.client_name = "limits";
	h.arena_size = arena;
	m.seq = 1;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &h;
	ck_assert_int_eq(harness_raw_send_msg(fd, &m), 0);
	return harness_raw_recv(fd, 5000);
}

static void assert_error(Gpuq__Msg *m, int code, const char *what)
{
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_ERROR);
	ck_assert_int_eq(m->error->code, code);
	ck_assert_msg(strstr(m->error->message, what), "message '%s' lacks '%s'", m->error->message,
		      what);
	frame_free(m);
}

/*
 * Per-uid limits: sessions, pinned arena, device memory, channels and
 * channel bytes are refused with -EDQUOT and a message naming the limit;
 * what is given back can be taken again, and gpuqd goes on.
 */
START_TEST(test_uid_limits)
{
	static const char conf[] = "uid_max_sessions = 3\n"
				   "uid_max_arena = 11M\n"
				   "uid_max_mem = 1M\n"
				   "uid_max_channels = 2\n"
				   "uid_max_channel_bytes = 64K\n"
				   "arena_default = 1M\n";
	struct daemon_proc d;
	gpuq_t *q[3], *extra;
	struct gpuq_status st = { .struct_size = sizeof(st) };
	uint32_t b1, b2;
	int fd, i, r;

	ck_assert_int_eq(harness_start(&d, conf, NULL), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(gpuq_connect(d.sock, &q[i]), 0);
	/* A fourth session of the same uid. */
	r = gpuq_connect_opts(d.sock,
			      &(struct gpuq_options){ .struct_size = sizeof(struct gpuq_options),
						      .client_name = "fourth" },
			      &extra);
	ck_assert_int_eq(r, -EDQUOT);
	ck_assert_msg(strstr(gpuq_errmsg(NULL), "uid_max_sessions"), "got '%s'", gpuq_errmsg(NULL));
	gpuq_close(q[2]);
	/* A session counts until gpuqd has freed it (on its worker thread). */
	usleep(200000);
	/*
	 * Session memory: each session pins its arena and 2 MiB of rings (and
	 * alignment) besides: 6 MiB in use, 6 more asked, 11 the limit.
	 */
	fd = harness_raw_connect(&d);
	ck_assert_int_ge(fd, 0);
	assert_error(hello_arena(fd, 4u << 20), -EDQUOT, "uid_max_arena");
	close(fd);
	fd = harness_raw_connect(&d);
	ck_assert_int_ge(fd, 0);
	{
		Gpuq__Msg *m = hello_arena(fd, 3u << 20);

		ck_assert_ptr_nonnull(m);
		ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_WELCOME);
		frame_free(m);
	}
	close(fd);

	/* Device memory across two sessions of the uid. */
	ck_assert_int_eq(gpuq_buf_alloc(q[0], 0, 768 << 10, &b1), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q[1], 0, 512 << 10, &b2), -ENOMEM);
	ck_assert_msg(strstr(gpuq_errmsg(q[1]), "uid_max_mem"), "got '%s'", gpuq_errmsg(q[1]));
	ck_assert_int_eq(gpuq_buf_alloc(q[1], 0, 256 << 10, &b2), 0);
	ck_assert_int_eq(gpuq_buf_free(q[0], b1), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q[1], 0, 512 << 10, &b1), 0);

	/* Channels: two open at most, 64 KiB of them at most. */
	{
		gpuq_chan_t *c1, *c2, *c3;

		ck_assert_int_eq(
			gpuq_chan_create(q[0], "lim-a", 64, 16, GPUQ_CHAN_CPU_TO_GPU | 0600, &c1),
			0);
		ck_assert_int_eq(gpuq_chan_create(q[1], "lim-big", 4096, 32,
						  GPUQ_CHAN_CPU_TO_GPU | 0600, &c2),
				 -EDQUOT);
		ck_assert_int_eq(
			gpuq_chan_create(q[1], "lim-b", 64, 16, GPUQ_CHAN_CPU_TO_GPU | 0600, &c2),
			0);
		ck_assert_int_eq(
			gpuq_chan_create(q[1], "lim-c", 64, 16, GPUQ_CHAN_CPU_TO_GPU | 0600, &c3),
			-EDQUOT);
		gpuq_chan_close(c2);
		ck_assert_int_eq(
			gpuq_chan_create(q[1], "lim-c", 64, 16, GPUQ_CHAN_CPU_TO_GPU | 0600, &c3),
			0);
		gpuq_chan_close(c3);
		gpuq_chan_close(c1);
	}
	/* A session's end gives everything back: the uid can start three again. */
	gpuq_close(q[1]);
	gpuq_close(q[0]);
	usleep(100000);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(gpuq_connect(d.sock, &q[i]), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q[2], 0, 1 << 20, &b1), 0);
	ck_assert_int_eq(gpuq_status(q[0], &st), 0);
	for (i = 0; i < 3; i++)
		gpuq_close(q[i]);
	ck_assert(harness_alive(&d));
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* max_clients counts sessions: connections still in their handshake take no session slot. */
START_TEST(test_max_clients_counts_sessions)
{
	static const char conf[] = "max_clients = 2\nmax_handshakes = 8\n";
	struct daemon_proc d;
	int idle[6], i, r;
	gpuq_t *q[3];

	ck_assert_int_eq(harness_start(&d, conf, NULL), 0);
	for (i = 0; i < 6; i++) {
		idle[i] = harness_raw_connect(&d);
		ck_assert_int_ge(idle[i], 0);
	}
	ck_assert_int_eq(gpuq_connect(d.sock, &q[0]), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q[1]), 0);
	r = gpuq_connect_opts(d.sock,
			      &(struct gpuq_options){ .struct_size = sizeof(struct gpuq_options),
						      .client_name = "third" },
			      &q[2]);
	ck_assert_int_eq(r, -EUSERS);
	ck_assert_msg(strstr(gpuq_errmsg(NULL), "max_clients"), "got '%s'", gpuq_errmsg(NULL));
	for (i = 0; i < 6; i++)
		close(idle[i]);
	gpuq_close(q[1]);
	usleep(100000);
	ck_assert_int_eq(gpuq_connect(d.sock, &q[1]), 0);
	gpuq_close(q[1]);
	gpuq_close(q[0]);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* CPU time (user + system) gpuqd has used, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	/* Fields after the name: state is 3rd, utime 14th and stime 15th. */
	for (i = 2; i < 14 && p; i++)
		p = strchr(p + 1, ' ');
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(sscanf(p + 1, "%lu %lu", &ut, &st), 2);
	return (long)(ut + st);
}

/*
 * Out of descriptors, gpuqd pauses its listener instead of spinning on a
 * readable socket it cannot accept from, and serves again once descriptors
 * are free.
 */
START_TEST(test_accept_emfile_backoff)
{
	static const char conf[] = "max_handshakes = 1000\nhandshake_timeout = 60\n";
	struct daemon_proc d;
	struct rlimit rl;
	struct gpuq_status st = { .struct_size = sizeof(st) };
	int fds[100], i, base;
	long t0, used;
	gpuq_t *q;

	ck_assert_int_eq(harness_start(&d, conf, NULL), 0);
	base = harness_fd_count(&d);
	ck_assert_int_gt(base, 0);
	/* Only the soft limit: the hard one stays, so it can be raised again. */
	ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, NULL, &rl), 0);
	rl.rlim_cur = (rlim_t)base + 8;
	ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, &rl, NULL), 0);
	for (i = 0; i < 100; i++) {
		fds[i] = harness_raw_connect(&d);
		ck_assert_int_ge(fds[i], 0);
	}
	usleep(300000);
	ck_assert_int_ge(harness_fd_count(&d), base + 7);
	t0 = cpu_ticks(d.pid);
	usleep(1000000);
	used = cpu_ticks(d.pid) - t0;
	printf("gpuqd out of descriptors: %ld of %ld ticks of CPU in 1 s\n", used,
	       sysconf(_SC_CLK_TCK));
	ck_assert_msg(used * 10 < sysconf(_SC_CLK_TCK), "gpuqd spun: %ld ticks in 1 s", used);
	ck_assert(harness_log_contains(&d, "not accepting for"));
	for (i = 0; i < 100; i++)
		close(fds[i]);
	rl.rlim_cur = (rlim_t)base + 64;
	ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, &rl, NULL), 0);
	usleep(300000);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* Appends a varint. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/*
 * A frame of nothing but unknown fields (field 1000, varint 0, about 1.4
 * million of them in 4 MiB) costs gpuqd little and disconnects the sender;
 * another client's status answers promptly throughout.
 */
START_TEST(test_unknown_field_flood)
{
	struct daemon_proc d;
	size_t cap = (4u << 20) - 16, len = 0, n;
	uint8_t *frame = malloc(4u << 20);
	struct gpuq_status st = { .struct_size = sizeof(st) };
	double t0, worst = 0;
	int fd, i, closed;
	gpuq_t *q;

	ck_assert_ptr_nonnull(frame);
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	len = FRAME_HDR;
	while (len + 4 < cap) {
		n = put_varint(frame + len, (1000u << 3) | 0);
		len += n;
		frame[len++] = 0;
	}
	frame[0] = (uint8_t)((len - FRAME_HDR) >> 24);
	frame[1] = (uint8_t)((len - FRAME_HDR) >> 16);
	frame[2] = (uint8_t)((len - FRAME_HDR) >> 8);
	frame[3] = (uint8_t)(len - FRAME_HDR);
	for (i = 0; i < 3; i++) {
		double dt;

		fd = raw_session(&d);
		ck_assert_int_eq(harness_raw_send(fd, frame, len), 0);
		t0 = mono_us();
		ck_assert_int_eq(gpuq_status(q, &st), 0);
		dt = (mono_us() - t0) / 1000.0;
		closed = harness_raw_closed(fd, 3000);
		if (dt > worst)
			worst = dt;
		printf("unknown-field frame %d: another client's status answered in %.1f ms\n", i,
		       dt);
		ck_assert_msg(closed, "a sender of unknown fields was not disconnected");
		close(fd);
	}
	printf("4 MiB of unknown fields: status after it within %.1f ms (worst of 3)\n", worst);
	ck_assert_msg(worst < 50, "gpuqd took %.1f ms over a frame of unknown fields", worst);
	/* Body-less messages one after another are cheap too, and end the connection. */
	fd = raw_session(&d);
	for (i = 0; i < 100; i++) {
		uint8_t tiny[8] = { 0, 0, 0, 2, 0x08, (uint8_t)i };

		if (harness_raw_send(fd, tiny, 6))
			break;
	}
	ck_assert(harness_raw_closed(fd, 3000));
	close(fd);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	gpuq_close(q);
	free(frame);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* A client that never reads its replies is disconnected once max_output is queued. */
START_TEST(test_never_reading_client)
{
	static const char conf[] = "max_output = 256K\n";
	struct daemon_proc d;
	static uint8_t burst[64 << 10];
	struct gpuq_status st = { .struct_size = sizeof(st) };
	size_t blen = 0;
	long deadline;
	int fd, i, gone = 0;
	gpuq_t *q;

	ck_assert_int_eq(harness_start(&d, conf, NULL), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	fd = raw_session(&d);
	{
		Gpuq__Msg m = GPUQ__MSG__INIT;
		Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;

		m.body_case = GPUQ__MSG__BODY_STATUS_REQ;
		m.status_req = &sr;
		while (blen + 64 < sizeof(burst)) {
			m.seq = blen + 1;
			blen += pack_into(burst + blen, sizeof(burst) - blen, &m);
		}
	}
	/* Far more replies than the socket and max_output hold together; never read. */
	deadline = mono_ms() + 10000;
	for (i = 0; i < 400 && mono_ms() < deadline; i++) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (poll(&p, 1, 200) <= 0)
			continue;
		if (send(fd, burst, blen, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) {
			gone = 1;
			break;
		}
		if (harness_log_contains(&d, "disconnecting"))
			break;
	}
	deadline = mono_ms() + 5000;
	while (!harness_log_contains(&d, "unread (max_output") && mono_ms() < deadline)
		usleep(20000);
	ck_assert_msg(harness_log_contains(&d, "unread (max_output"),
		      "gpuqd kept a client that reads nothing (send failed: %d)", gone);
	/* The dropped session is freed on gpuqd's worker thread: it goes within moments. */
	deadline = mono_ms() + 2000;
	do {
		ck_assert_int_eq(gpuq_status(q, &st), 0);
	} while (st.sessions != 1 && mono_ms() < deadline && usleep(10000) == 0);
	ck_assert_uint_eq(st.sessions, 1);
	close(fd);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* A frame started after hello that stops arriving times out. */
START_TEST(test_partial_frame_times_out)
{
	static const char conf[] = "frame_timeout = 1\n";
	static const uint8_t part[] = { 0, 0, 0x10, 0, 0x08, 0x01, 0x12 };
	struct daemon_proc d;
	struct gpuq_status st = { .struct_size = sizeof(st) };
	long t0;
	int fd;
	gpuq_t *q;

	ck_assert_int_eq(harness_start(&d, conf, NULL), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	fd = raw_session(&d);
	ck_assert_int_eq(harness_raw_send(fd, part, sizeof(part)), 0);
	t0 = mono_ms();
	/* An idle session, with no frame started, is left alone. */
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	usleep(1500000);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert(harness_raw_closed(fd, 3000));
	ck_assert_int_lt(mono_ms() - t0, 4000);
	ck_assert(harness_log_contains(&d, "in the middle of a"));
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_uint_eq(st.sessions, 1);
	close(fd);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Slow work runs off the event loop: while one client connects and
 * disconnects with 1 GiB arenas (populated and registered by gpuqd) in a
 * loop, another client's status answers within 10 ms at p99.
 */
START_TEST(test_status_beside_big_arenas)
{
	static const char conf[] = "arena_max = 1G\nuid_max_arena = 4G\n";
	enum { NSAMPLES = 400 };
	static double lat[NSAMPLES];
	struct daemon_proc d;
	struct gpuq_status st = { .struct_size = sizeof(st) };
	int pipefd[2], i, status;
	unsigned cycles = 0;
	pid_t child;
	gpuq_t *q;

	ck_assert_int_eq(harness_start(&d, conf, NULL), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	ck_assert_int_eq(pipe(pipefd), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct gpuq_options o = { .struct_size = sizeof(o),
					  .client_name = "big-arena",
					  .arena_size = 1ull << 30 };
		unsigned n = 0;

		close(pipefd[1]);
		for (;;) {
			struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
			gpuq_t *b;

			if (poll(&p, 1, 0) > 0)
				break;
			if (gpuq_connect_opts(d.sock, &o, &b) == 0) {
				gpuq_close(b);
				n++;
			} else {
				usleep(10000);
			}
		}
		_exit(n > 255 ? 255 : (int)n);
	}
	close(pipefd[0]);
	usleep(200000);
	for (i = 0; i < NSAMPLES; i++) {
		double t0 = mono_us();

		ck_assert_int_eq(gpuq_status(q, &st), 0);
		lat[i] = (mono_us() - t0) / 1000.0;
		usleep(5000);
	}
	close(pipefd[1]);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status));
	cycles = (unsigned)WEXITSTATUS(status);
	qsort(lat, NSAMPLES, sizeof(lat[0]), cmp_double);
	printf("status beside %u connect/disconnect cycles with 1 GiB arenas: p50 %.3f ms, "
	       "p99 %.3f ms, max %.3f ms (%d samples)\n",
	       cycles, lat[NSAMPLES / 2], lat[NSAMPLES * 99 / 100], lat[NSAMPLES - 1], NSAMPLES);
	ck_assert_uint_ge(cycles, 1);
	ck_assert_msg(lat[NSAMPLES * 99 / 100] < 10.0, "status p99 %.3f ms",
		      lat[NSAMPLES * 99 / 100]);
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* SIGTERM with sessions holding buffers stops gpuqd promptly, every session freed. */
START_TEST(test_sigterm_with_sessions)
{
	struct daemon_proc d;
	gpuq_t *q[16];
	uint32_t id;
	long t0;
	int i;

	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
	for (i = 0; i < 16; i++) {
		ck_assert_int_eq(gpuq_connect(d.sock, &q[i]), 0);
		ck_assert_int_eq(gpuq_buf_alloc(q[i], 0, 1 << 20, &id), 0);
	}
	t0 = mono_ms();
	ck_assert_int_eq(harness_stop(&d), 0);
	printf("SIGTERM with 16 sessions: stopped in %ld ms\n", mono_ms() - t0);
	ck_assert_int_lt(mono_ms() - t0, 5000);
	for (i = 0; i < 16; i++)
		gpuq_close(q[i]);
}
END_TEST

static Suite *conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("conn");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_queued_reply_fds_owned);
	tcase_add_test(tc, test_uid_limits);
	tcase_add_test(tc, test_max_clients_counts_sessions);
	tcase_add_test(tc, test_accept_emfile_backoff);
	tcase_add_test(tc, test_unknown_field_flood);
	tcase_add_test(tc, test_never_reading_client);
	tcase_add_test(tc, test_partial_frame_times_out);
	tcase_add_test(tc, test_status_beside_big_arenas);
	tcase_add_test(tc, test_sigterm_with_sessions);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(conn_suite());
	int failed;

	/* Figures printed by a test that then fails must not be lost in a buffer. */
	setvbuf(stdout, NULL, _IONBF, 0);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
