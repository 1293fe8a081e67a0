/* test_isolation.c: a hostile client against the data path: forged geometry, corrupt rings, deaf sockets, freeing in flight. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "gpuq/gpuq.h"
#include "harness.h"
#include "ring.h"

static struct daemon_proc d;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_with(const char *ndev)
{
	const char *const args[] = { "--host-mem",     "2G", "--arena-max", "256M",
				     "--host-devices", ndev, NULL };

	/* Only the host backend has a device count to choose: a GPU host has what it has. */
	if (strcmp(ndev, "1"))
		harness_use_host_backend();
	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
}

static void start(void)
{
	start_with("1");
}

static void stop(void)
{
	ck_assert_int_eq(harness_stop(&d), 0);
}

static gpuq_t *open_session(const char *name, size_t arena)
{
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = name,
				  .arena_size = arena };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	return q;
}

/* ---- a bystander whose data must never change ---- */

#define BYSTANDER_LEN (1u << 20)

struct bystander {
	gpuq_t *q;
	uint32_t buf;
	uint8_t *want;
	uint8_t *mark; /* a block of its arena, filled at set-up and never used for staging */
};

static void bystander_open(struct bystander *b, unsigned dev)
{
	b->q = open_session("bystander", 8u << 20);
	ck_assert_int_eq(gpuq_buf_alloc(b->q, dev, BYSTANDER_LEN, &b->buf), 0);
	b->want = malloc(BYSTANDER_LEN);
	ck_assert_ptr_nonnull(b->want);
	harness_fill(b->want, BYSTANDER_LEN, 0xb15);
	ck_assert_int_eq(gpuq_send(b->q, b->buf, 0, b->want, BYSTANDER_LEN), BYSTANDER_LEN);
	b->mark = gpuq_mem_alloc(b->q, BYSTANDER_LEN);
	ck_assert_ptr_nonnull(b->mark);
	harness_fill(b->mark, BYSTANDER_LEN, 0xa7e);
}

/* Its device buffer and its arena hold what it put there, and gpuqd still serves it. */
static void bystander_check(struct bystander *b)
{
	uint8_t *got = malloc(BYSTANDER_LEN);

	ck_assert_ptr_nonnull(got);
	harness_fill(got, BYSTANDER_LEN, 0xa7e);
	ck_assert_msg(memcmp(got, b->mark, BYSTANDER_LEN) == 0, "the bystander's arena changed");
	memset(got, 0, BYSTANDER_LEN);
	ck_assert_int_eq(gpuq_recv(b->q, b->buf, 0, got, BYSTANDER_LEN), BYSTANDER_LEN);
	ck_assert_msg(memcmp(got, b->want, BYSTANDER_LEN) == 0, "the bystander's buffer changed");
	free(got);
}

static void bystander_close(struct bystander *b)
{
	gpuq_close(b->q);
	free(b->want);
}

/* ---- a raw session: the whole shared memory, no library in the way ---- */

struct raw {
	int fd;   /* control socket */
	int sock; /* our end of the session socket */
	uint8_t *base;
	size_t size;
	struct shm_hdr *h;
	struct shm_geom g; /* what gpuqd published at the start */
	uint32_t sq_tail[SHM_MAX_DEVICES], cq_head[SHM_MAX_DEVICES];
	uint64_t seq;
};

/* Connects, says hello and maps the session. Asserts there are exactly 2 fds. */
static void raw_open(struct raw *r, unsigned ndevices)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__Hello h = GPUQ__HELLO__INIT;
	uint8_t hdr[FRAME_HDR], *buf;
	int fds[FRAME_MAX_FDS];
	unsigned nfds = 0;
	size_t got = 0, len;
	struct stat st;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	r->fd = harness_raw_connect(&d);
	ck_assert_int_ge(r->fd, 0);
	h.proto_version = GPUQ_PROTO_VERSION;
	h.client_name = (char *)"raw-attacker";
	h.arena_size = 4u << 20;
	h.queue_depth = 64;
	m.seq = ++r->seq;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &h;
	ck_assert_int_eq(harness_raw_send_msg(r->fd, &m), 0);
	while (got < FRAME_HDR) {
		n = frame_recv(r->fd, hdr + got, FRAME_HDR - got, fds, &nfds, FRAME_MAX_FDS);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	buf = malloc(FRAME_HDR + len);
	ck_assert_ptr_nonnull(buf);
	memcpy(buf, hdr, FRAME_HDR);
	for (got = 0; got < len; got += (size_t)n) {
		n = frame_recv(r->fd, buf + FRAME_HDR + got, len - got, NULL, NULL, 0);
		ck_assert_int_gt(n, 0);
	}
	rep = frame_unpack(buf, FRAME_HDR + len);
	free(buf);
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_WELCOME);
	ck_assert_uint_eq(rep->welcome->ndevices, ndevices);
	/* Protocol 2: the memfd and the session socket, whatever the number of devices. */
	ck_assert_uint_eq(nfds, 2);
	ck_assert_int_eq(fstat(fds[0], &st), 0);
	r->size = (size_t)st.st_size;
	r->base = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	ck_assert_ptr_ne(r->base, MAP_FAILED);
	close(fds[0]);
	r->sock = fds[1];
	r->h = (struct shm_hdr *)r->base;
	ck_assert_uint_eq(r->h->version, SHM_VERSION);
	ck_assert_uint_eq(r->h->ndevices, ndevices);
	r->g = (struct shm_geom){ .ndevices = r->h->ndevices,
				  .sq_entries = r->h->sq_entries,
				  .cq_entries = r->h->cq_entries,
				  .sq_mask = r->h->sq_entries - 1,
				  .cq_mask = r->h->cq_entries - 1,
				  .rings_off = r->h->rings_off,
				  .ringset_size = r->h->ringset_size,
				  .arena_off = r->h->arena_off,
				  .arena_size = r->h->arena_size,
				  .total_size = r->h->total_size };
	frame_free(rep);
}

static void raw_close(struct raw *r)
{
	munmap(r->base, r->size);
	close(r->sock);
	close(r->fd);
}

/* One control request; returns the reply (caller frees). */
static Gpuq__Msg *raw_call(struct raw *r, Gpuq__Msg *m)
{
	Gpuq__Msg *rep;

	m->seq = ++r->seq;
	ck_assert_int_eq(harness_raw_send_msg(r->fd, m), 0);
	rep = harness_raw_recv(r->fd, 5000);
	ck_assert_ptr_nonnull(rep);
	return rep;
}

static uint32_t raw_alloc(struct raw *r, unsigned dev, uint64_t size)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__BufAlloc a = GPUQ__BUF_ALLOC__INIT;
	uint32_t id;

	a.device = dev;
	a.size = size;
	m.body_case = GPUQ__MSG__BODY_BUF_ALLOC;
	m.buf_alloc = &a;
	rep = raw_call(r, &m);
	ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_BUF_ALLOC_REPLY);
	id = rep->buf_alloc_reply->buf_id;
	frame_free(rep);
	return id;
}

/* Sends BufFree; returns 0 or the Error code. */
static int raw_free(struct raw *r, uint32_t id)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__BufFree f = GPUQ__BUF_FREE__INIT;
	int code = 0;

	f.buf_id = id;
	m.body_case = GPUQ__MSG__BODY_BUF_FREE;
	m.buf_free = &f;
	rep = raw_call(r, &m);
	if (rep->body_case == GPUQ__MSG__BODY_ERROR)
		code = rep->error->code;
	else
		ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_OK);
	frame_free(rep);
	return code;
}

/* Queues e on dev's ring (at the true geometry) and rings the doorbell. */
static void raw_push(struct raw *r, unsigned dev, const struct shm_sqe *e)
{
	struct shm_ringctl *ctl = &r->h->ctl[dev];
	struct shm_sqe *sq = (struct shm_sqe *)(r->base + r->g.rings_off + r->g.ringset_size * dev);

	sq[r->sq_tail[dev] & r->g.sq_mask] = *e;
	r->sq_tail[dev]++;
	atomic_store_explicit(&ctl->sq_tail.v, r->sq_tail[dev], memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	/* Always ring: a doorbell the engine did not need costs it nothing. */
	if (send(r->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		(void)0;
}

/* Waits up to ms for dev's next completion (at the true geometry). 0 or -ETIMEDOUT. */
static int raw_cqe(struct raw *r, unsigned dev, struct shm_cqe *out, int ms)
{
	struct shm_ringctl *ctl = &r->h->ctl[dev];
	struct shm_cqe *cq = (struct shm_cqe *)(r->base + r->g.rings_off + r->g.ringset_size * dev +
						shm_cq_off(r->g.sq_entries));
	long deadline = now_ms() + ms;

	while (atomic_load_explicit(&ctl->cq_tail.v, memory_order_acquire) == r->cq_head[dev]) {
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		usleep(100);
	}
	*out = cq[r->cq_head[dev] & r->g.cq_mask];
	r->cq_head[dev]++;
	atomic_store_explicit(&ctl->cq_head.v, r->cq_head[dev], memory_order_release);
	return 0;
}

static int64_t raw_xfer(struct raw *r, uint8_t op, uint32_t buf, uint64_t arena_off,
			uint64_t buf_off, uint64_t len)
{
	struct shm_sqe e = { .op = op,
			     .buf = buf,
			     .arena_off = arena_off,
			     .buf_off = buf_off,
			     .len = len,
			     .user_data = 0x5eed0000u + r->sq_tail[0] };
	struct shm_cqe c;

	raw_push(r, 0, &e);
	ck_assert_int_eq(raw_cqe(r, 0, &c, 5000), 0);
	ck_assert_uint_eq(c.user_data, e.user_data);
	return c.res;
}

/* ---- forged geometry ---- */

START_TEST(forged_arena_size)
{
	static const uint64_t sizes[] = { 1ull << 62, ~0ull, ~0ull - 4095 };
	struct bystander b;
	struct raw r;
	uint32_t id;
	size_t i;

	start();
	bystander_open(&b, 0);
	raw_open(&r, 1);
	id = raw_alloc(&r, 0, 1u << 20);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		r.h->arena_size = sizes[i];
		r.h->total_size = sizes[i];
		/* Far beyond the arena: a SIGSEGV once. */
		ck_assert_int_eq(raw_xfer(&r, SHM_OP_H2D, id, 1ull << 40, 0, 4096), -ERANGE);
		/* Just past it: the next mapping (another session's arena, once). */
		ck_assert_int_eq(raw_xfer(&r, SHM_OP_D2H, id, r.g.arena_size, 0, 4096), -ERANGE);
		ck_assert_int_eq(raw_xfer(&r, SHM_OP_H2D, id, r.g.arena_size - 4096, 0, 8192),
				 -ERANGE);
		/* Wrapping sums. */
		ck_assert_int_eq(raw_xfer(&r, SHM_OP_D2H, id, ~0ull - 10, 0, 100), -ERANGE);
		/* Inside the true arena it still works. */
		ck_assert_int_eq(raw_xfer(&r, SHM_OP_H2D, id, r.g.arena_size - 4096, 0, 4096),
				 4096);
	}
	ck_assert(harness_alive(&d));
	bystander_check(&b);
	raw_close(&r);
	bystander_close(&b);
	stop();
}
END_TEST

START_TEST(forged_ring_geometry)
{
	struct bystander b;
	struct raw r;
	uint32_t id, k;
	uint8_t *arena;

	start();
	bystander_open(&b, 0);
	raw_open(&r, 1);
	id = raw_alloc(&r, 0, 1u << 20);
	arena = r.base + r.g.arena_off;
	/* Every size and offset in the header, wrong; completions must land where gpuqd put the ring. */
	r.h->sq_entries = 1u << 30;
	r.h->cq_entries = 1u << 31;
	r.h->rings_off = 1ull << 44;
	r.h->ringset_size = ~0ull / 3;
	r.h->arena_off = 1ull << 50;
	r.h->ndevices = 16;
	for (k = 0; k < 3 * r.g.cq_entries; k++) {
		int64_t res;

		arena[0] = (uint8_t)k;
		res = raw_xfer(&r, SHM_OP_H2D, id, 0, k % 4096, 1);
		ck_assert_int_eq(res, 1);
		if (k % 97 == 0)
			ck_assert(harness_alive(&d));
	}
	/* The forged header also never makes gpuqd write outside the ring set. */
	ck_assert_uint_eq(r.h->sq_entries, 1u << 30);
	ck_assert(harness_alive(&d));
	bystander_check(&b);
	raw_close(&r);
	bystander_close(&b);
	stop();
}
END_TEST

/* ---- corrupt indices surface as an error and a closed connection ---- */

/* After corrupting its ring, the client hears why: an Error on the control socket, EOF, srv_state. */
static void expect_broken(struct raw *r)
{
	Gpuq__Msg *m;
	char c;
	struct pollfd p = { .fd = r->sock, .events = POLLIN };

	m = harness_raw_recv(r->fd, 3000);
	ck_assert_msg(m != NULL, "no Error frame after a corrupt ring");
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_ERROR);
	ck_assert_int_eq(m->error->code, -EPROTO);
	frame_free(m);
	ck_assert_int_eq(harness_raw_closed(r->fd, 3000), 1);
	/* The session socket ends too, after srv_state was set. */
	for (;;) {
		ssize_t n;

		ck_assert_int_eq(poll(&p, 1, 3000), 1);
		n = recv(r->sock, &c, 1, MSG_DONTWAIT);
		if (n == 0)
			break;
		ck_assert_int_eq(n, 1);
	}
	ck_assert_uint_eq(atomic_load(&r->h->srv_state.v), SHM_STATE_BROKEN);
}

START_TEST(corrupt_sq_tail)
{
	struct bystander b;
	struct raw r;

	start();
	bystander_open(&b, 0);
	raw_open(&r, 1);
	atomic_store(&r.h->ctl[0].sq_tail.v, r.g.sq_entries * 5 + 3);
	ck_assert_int_eq(send(r.sock, "", 1, MSG_DONTWAIT), 1);
	expect_broken(&r);
	ck_assert(harness_alive(&d));
	bystander_check(&b);
	raw_close(&r);
	bystander_close(&b);
	stop();
}
END_TEST

START_TEST(corrupt_cq_head)
{
	struct shm_sqe e = { .op = SHM_OP_H2D, .len = 0 };
	struct bystander b;
	struct raw r;

	start();
	bystander_open(&b, 0);
	raw_open(&r, 1);
	/* The consumer index runs ahead of what gpuqd produced: ring indices out of range. */
	atomic_store(&r.h->ctl[0].cq_head.v, 0x80000000u);
	raw_push(&r, 0, &e);
	expect_broken(&r);
	ck_assert(harness_alive(&d));
	bystander_check(&b);
	raw_close(&r);
	bystander_close(&b);
	stop();
}
END_TEST

/* ---- a client that never reads its socket cannot stall gpuqd ---- */

START_TEST(deaf_blocking_socket)
{
	struct bystander b;
	struct raw r;
	uint32_t id, k;
	long t0;
	int st;

	start();
	bystander_open(&b, 0);
	raw_open(&r, 1);
	id = raw_alloc(&r, 0, 1u << 20);
	/* Blocking, and never read: each wake gpuqd sends fills it further. */
	ck_assert_int_eq(fcntl(r.sock, F_SETFL, fcntl(r.sock, F_GETFL) & ~O_NONBLOCK), 0);
	for (k = 0; k < 4000; k++) {
		struct shm_sqe e = { .op = SHM_OP_H2D, .buf = id, .len = 64, .user_data = k };
		struct shm_cqe c;

		atomic_store(&r.h->cq_waiting.v, 1);
		raw_push(&r, 0, &e);
		ck_assert_int_eq(raw_cqe(&r, 0, &c, 5000), 0);
		ck_assert_int_eq(c.res, 64);
		if (k % 1000 == 0)
			bystander_check(&b);
	}
	/* Its socket is full for certain by now; everyone else goes on. */
	bystander_check(&b);
	ck_assert(harness_alive(&d));
	t0 = now_ms();
	ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
	while (waitpid(d.pid, &st, WNOHANG) == 0) {
		ck_assert_msg(now_ms() - t0 < 2000, "gpuqd did not stop within 2 s of SIGTERM");
		usleep(10000);
	}
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* A clean stop says so before the socket ends. */
	ck_assert_uint_eq(atomic_load(&r.h->srv_state.v), SHM_STATE_SHUTDOWN);
	d.pid = 0;
	raw_close(&r);
	bystander_close(&b);
	harness_stop(&d);
}
END_TEST

/* ---- many devices on one session socket ---- */

static void devices_case(const char *ndev_s, unsigned ndev)
{
	uint8_t *src = malloc(1u << 20), *dst = malloc(1u << 20);
	unsigned devs[2] = { 0, ndev - 1 }, i;
	gpuq_t *q;
	struct raw r;

	ck_assert_ptr_nonnull(src);
	ck_assert_ptr_nonnull(dst);
	start_with(ndev_s);
	q = open_session("many-devices", 16u << 20);
	for (i = 0; i < 2; i++) {
		uint32_t id;

		ck_assert_int_eq(gpuq_buf_alloc(q, devs[i], 1u << 20, &id), 0);
		harness_fill(src, 1u << 20, devs[i] + 77);
		/* Large (copied in chunks) and small transfers, on the first and the last device. */
		ck_assert_int_eq(gpuq_send(q, id, 0, src, 1u << 20), 1u << 20);
		memset(dst, 0, 1u << 20);
		ck_assert_int_eq(gpuq_recv(q, id, 0, dst, 1u << 20), 1u << 20);
		ck_assert(memcmp(src, dst, 1u << 20) == 0);
		ck_assert_int_eq(gpuq_send(q, id, 123, src, 100), 100);
		ck_assert_int_eq(gpuq_recv(q, id, 123, dst, 100), 100);
		ck_assert(memcmp(src, dst, 100) == 0);
		ck_assert_int_eq(gpuq_buf_free(q, id), 0);
	}
	gpuq_close(q);
	/* Exactly two descriptors, however many devices (raw_open asserts it). */
	raw_open(&r, ndev);
	raw_close(&r);
	free(src);
	free(dst);
	stop();
}

START_TEST(devices_1)
{
	devices_case("1", 1);
}
END_TEST

START_TEST(devices_8)
{
	devices_case("8", 8);
}
END_TEST

START_TEST(devices_16)
{
	devices_case("16", 16);
}
END_TEST

/* ---- buffer lifetime ---- */

START_TEST(free_in_flight_raw)
{
	struct bystander b;
	struct raw r;
	unsigned round, busy = 0;

	start();
	bystander_open(&b, 0);
	raw_open(&r, 1);
	for (round = 0; round < 20; round++) {
		uint32_t id = raw_alloc(&r, 0, 4u << 20);
		struct shm_sqe e = { .op = (round & 1) ? SHM_OP_D2H : SHM_OP_H2D,
				     .buf = id,
				     .len = 4u << 20,
				     .user_data = round };
		struct shm_cqe c;
		int code;

		raw_push(&r, 0, &e);
		/* Whatever the timing: -EBUSY while the copy runs, never a freed buffer under it. */
		while ((code = raw_free(&r, id)) == -EBUSY)
			busy++;
		ck_assert_int_eq(code, 0);
		ck_assert_int_eq(raw_cqe(&r, 0, &c, 5000), 0);
		ck_assert_uint_eq(c.user_data, round);
		ck_assert_msg(c.res == (int64_t)(4u << 20) || c.res == -ENOENT, "completion %lld",
			      (long long)c.res);
		bystander_check(&b);
	}
	ck_assert(harness_alive(&d));
	raw_close(&r);
	bystander_close(&b);
	stop();
	fprintf(stderr, "free_in_flight_raw: %u BufFree(s) answered -EBUSY\n", busy);
}
END_TEST

static void free_during(size_t len, unsigned rounds, unsigned per_round)
{
	struct bystander b;
	gpuq_t *q;
	uint8_t *src;
	unsigned round, i;

	start();
	bystander_open(&b, 0);
	q = open_session("freer", 128u << 20);
	src = gpuq_mem_alloc(q, len);
	ck_assert_ptr_nonnull(src);
	harness_fill(src, len, 5);
	for (round = 0; round < rounds; round++) {
		gpuq_req_t *req[64];
		uint32_t id;

		ck_assert_int_eq(gpuq_buf_alloc(q, 0, len, &id), 0);
		for (i = 0; i < per_round; i++)
			ck_assert_int_eq(gpuq_isend(q, id, 0, src, len, i, &req[i]), 0);
		/* Returns once gpuqd has freed it: after the transfers, not under them. */
		ck_assert_int_eq(gpuq_buf_free(q, id), 0);
		for (i = 0; i < per_round; i++) {
			struct gpuq_completion c;

			ck_assert_int_eq(gpuq_wait(q, req[i], &c), 0);
			ck_assert_msg(c.result == (int64_t)len || c.result == -ENOENT,
				      "completion %lld", (long long)c.result);
		}
		bystander_check(&b);
	}
	ck_assert(harness_alive(&d));
	gpuq_close(q);
	bystander_close(&b);
	stop();
}

START_TEST(free_during_large)
{
	free_during(32u << 20, 6, 2);
}
END_TEST

START_TEST(free_during_small)
{
	free_during(4096, 40, 64);
}
END_TEST

/* ---- ending a session with very many buffers ---- */

START_TEST(many_tiny_buffers)
{
	const unsigned total = 200000, wave = 2000;
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__BufAlloc a = GPUQ__BUF_ALLOC__INIT;
	struct raw r;
	unsigned done = 0, i;
	long t0, t;
	gpuq_t *q;

	start();
	raw_open(&r, 1);
	a.device = 0;
	a.size = 1;
	m.body_case = GPUQ__MSG__BODY_BUF_ALLOC;
	m.buf_alloc = &a;
	/* Pipelined: the control thread answers waves of allocations. */
	while (done < total) {
		for (i = 0; i < wave; i++) {
			m.seq = ++r.seq;
			ck_assert_int_eq(harness_raw_send_msg(r.fd, &m), 0);
		}
		for (i = 0; i < wave; i++) {
			rep = harness_raw_recv(r.fd, 10000);
			ck_assert_ptr_nonnull(rep);
			ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_BUF_ALLOC_REPLY);
			frame_free(rep);
		}
		done += wave;
	}
	t0 = now_ms();
	raw_close(&r);
	/* The control thread tears the session down before it answers the next client. */
	q = open_session("after", 4u << 20);
	t = now_ms() - t0;
	gpuq_close(q);
	fprintf(stderr, "many_tiny_buffers: teardown and reconnect took %ld ms\n", t);
	ck_assert_msg(t < 1500, "ending a session with %u buffers took %ld ms", total, t);
	ck_assert(harness_log_contains(&d, "freeing 200000 buffer(s)"));
	stop();
}
END_TEST

/* ---- a hung device delays shutdown by a bounded time, and is reported ---- */

START_TEST(hung_device_shutdown)
{
	gpuq_t *q;
	uint8_t *src;
	uint32_t id;
	long t0, t;
	int st;

	/* The host backend's test knob: batches never complete. */
	harness_use_host_backend();
	setenv("GPUQD_HOST_HANG", "1", 1);
	start();
	unsetenv("GPUQD_HOST_HANG");
	q = open_session("hung", 4u << 20);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id), 0);
	src = gpuq_mem_alloc(q, 4096);
	ck_assert_ptr_nonnull(src);
	ck_assert_int_eq(gpuq_isend(q, id, 0, src, 4096, 1, NULL), 0);
	ck_assert_int_eq(gpuq_isend(q, id, 0, src, 4096, 2, NULL), 0);
	usleep(100000);
	t0 = now_ms();
	ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
	while (waitpid(d.pid, &st, WNOHANG) == 0) {
		ck_assert_msg(now_ms() - t0 < 15000, "gpuqd hangs on shutdown with a hung device");
		usleep(20000);
	}
	t = now_ms() - t0;
	d.pid = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_msg(t >= 4000, "gpuqd did not wait for the device (%ld ms)", t);
	ck_assert(harness_log_contains(&d, "looks hung"));
	gpuq_close(q);
	harness_stop(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("isolation");
	TCase *tc = tcase_create("default");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, forged_arena_size);
	tcase_add_test(tc, forged_ring_geometry);
	tcase_add_test(tc, corrupt_sq_tail);
	tcase_add_test(tc, corrupt_cq_head);
	tcase_add_test(tc, deaf_blocking_socket);
	tcase_add_test(tc, devices_1);
	tcase_add_test(tc, devices_8);
	tcase_add_test(tc, devices_16);
	tcase_add_test(tc, free_in_flight_raw);
	tcase_add_test(tc, free_during_large);
	tcase_add_test(tc, free_during_small);
	tcase_add_test(tc, many_tiny_buffers);
	tcase_add_test(tc, hung_device_shutdown);
	suite_add_tcase(s, tc);
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
