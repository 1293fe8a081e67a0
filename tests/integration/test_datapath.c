/* test_datapath.c: rings, arena and engine end to end: integrity, ordering, errors, waiting styles. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

static struct daemon_proc d;

static void start(void)
{
	static const char *const args[] = { "--host-mem", "2G", "--arena-max", "512M", NULL };

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
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

/* 64-bit FNV-1a: cheap, and any flipped or misplaced byte changes it. */
static uint64_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

START_TEST(blocking_roundtrip_sizes)
{
	/* From 1 byte to 256 MiB, unaligned offsets, arena and ordinary memory. */
	static const size_t sizes[] = { 1,      3,      255,      4096,           4097,      65535,
					262143, 262144, 1u << 20, (7u << 20) + 5, 256u << 20 };
	gpuq_t *q = open_session("sizes", 64u << 20);
	uint64_t seed = harness_seed();
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i], off = (i * 37) % 61;
		uint8_t *src = malloc(len), *dst = malloc(len);
		uint32_t id;

		ck_assert_ptr_nonnull(src);
		ck_assert_ptr_nonnull(dst);
		harness_fill(src, len, seed + i);
		memset(dst, 0, len);
		ck_assert_int_eq(gpuq_buf_alloc(q, 0, len + off, &id), 0);
		ck_assert_int_eq(gpuq_send(q, id, off, src, len), (ssize_t)len);
		ck_assert_int_eq(gpuq_recv(q, id, off, dst, len), (ssize_t)len);
		ck_assert_msg(checksum(src, len) == checksum(dst, len), "size %zu differs", len);
		ck_assert_int_eq(gpuq_buf_free(q, id), 0);
		free(src);
		free(dst);
	}
	gpuq_close(q);
}
END_TEST

START_TEST(arena_zero_copy_and_d2d)
{
	gpuq_t *q = open_session("arena", 8u << 20);
	size_t len = 1u << 20;
	uint8_t *a = gpuq_mem_alloc(q, len), *b = gpuq_mem_alloc(q, len);
	size_t asz;
	uint8_t *base = gpuq_arena(q, &asz);
	uint32_t x, y;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert(a >= base && a + len <= base + asz);
	ck_assert_uint_ge(asz, 8u << 20);
	ck_assert_ptr_null(gpuq_mem_alloc(q, asz + 1));
	harness_fill(a, len, harness_seed());
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, len, &x), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, len, &y), 0);
	ck_assert_int_eq(gpuq_send(q, x, 0, a, len), (ssize_t)len);
	ck_assert_int_eq(gpuq_copy(q, y, 100, x, 0, len - 100), (ssize_t)(len - 100));
	memset(b, 0, len);
	ck_assert_int_eq(gpuq_recv(q, y, 100, b, len - 100), (ssize_t)(len - 100));
	ck_assert_mem_eq(a, b, len - 100);
	gpuq_mem_free(q, a);
	gpuq_mem_free(q, b);
	/* Freed space is reusable in full. */
	a = gpuq_mem_alloc(q, asz);
	ck_assert_ptr_nonnull(a);
	gpuq_mem_free(q, a);
	gpuq_close(q);
}
END_TEST

START_TEST(nonblocking_many_in_flight)
{
	enum { N = 3000 };
	gpuq_t *q = open_session("isend", 32u << 20);
	static gpuq_req_t *reqs[N];
	static struct gpuq_completion cs[N];
	uint64_t s = harness_seed() | 1;
	uint8_t *src = gpuq_mem_alloc(q, N * 512), *dst = malloc(N * 512);
	uint32_t id;
	int i;

	ck_assert_ptr_nonnull(src);
	harness_fill(src, N * 512, s);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, N * 512, &id), 0);
	/* More requests than the ring holds: submission waits for room by itself. */
	for (i = 0; i < N; i++)
		ck_assert_int_eq(gpuq_isend(q, id, (uint64_t)i * 512, src + i * 512, 512,
					    (uint64_t)i, &reqs[i]),
				 0);
	ck_assert_int_eq(gpuq_waitall(q, reqs, N, cs), 0);
	for (i = 0; i < N; i++) {
		ck_assert_uint_eq(cs[i].tag, (uint64_t)i);
		ck_assert_int_eq(cs[i].result, 512);
	}
	/* Back, into ordinary memory, in random order, reaped with gpuq_poll. */
	{
		static int order[N], seen[N];
		int got = 0;

		for (i = 0; i < N; i++)
			order[i] = i;
		for (i = N - 1; i > 0; i--) {
			int j = (int)(rnd(&s) % (uint64_t)(i + 1)), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		for (i = 0; i < N; i++)
			ck_assert_int_eq(gpuq_irecv(q, id, (uint64_t)order[i] * 512,
						    dst + order[i] * 512, 512, 1000000 + order[i],
						    NULL),
					 0);
		while (got < N) {
			struct gpuq_completion c[64];
			int n = gpuq_poll(q, c, 64, 5000), k;

			ck_assert_int_gt(n, 0);
			for (k = 0; k < n; k++) {
				int t = (int)(c[k].tag - 1000000);

				ck_assert(t >= 0 && t < N);
				ck_assert_msg(!seen[t], "completion %d delivered twice", t);
				seen[t] = 1;
				ck_assert_int_eq(c[k].result, 512);
			}
			got += n;
		}
		ck_assert_int_eq(gpuq_poll(q, cs, 1, 0), 0);
	}
	ck_assert_mem_eq(src, dst, N * 512);
	free(dst);
	gpuq_close(q);
}
END_TEST

START_TEST(bad_requests_complete_with_errors)
{
	gpuq_t *q = open_session("bad", 4u << 20);
	uint8_t *a = gpuq_mem_alloc(q, 4096);
	struct gpuq_completion c;
	gpuq_req_t *r;
	uint32_t id, other;

	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &other), 0);
	/* Out of the buffer: the request completes with -ERANGE, the session goes on. */
	ck_assert_int_eq(gpuq_isend(q, id, 4000, a, 200, 7, &r), 0);
	ck_assert_int_eq(gpuq_wait(q, r, &c), 0);
	ck_assert_uint_eq(c.tag, 7);
	ck_assert_int_eq(c.result, -ERANGE);
	ck_assert_int_eq(gpuq_send(q, id, 4096, a, 1), -ERANGE);
	ck_assert_int_eq(gpuq_copy(q, id, 0, other, 1, 4096), -ERANGE);
	/* A freed buffer: the library knows, and says so before queueing. */
	ck_assert_int_eq(gpuq_buf_free(q, other), 0);
	ck_assert_int_eq(gpuq_isend(q, other, 0, a, 16, 8, &r), -ENOENT);
	ck_assert_int_eq(gpuq_send(q, 999, 0, a, 16), -ENOENT);
	/* Zero bytes is a valid, empty transfer. */
	ck_assert_int_eq(gpuq_send(q, id, 4096, a, 0), 0);
	ck_assert_int_eq(gpuq_send(q, id, 0, a, 4096), 4096);
	ck_assert_int_eq(gpuq_isend(NULL, id, 0, a, 1, 0, NULL), -EINVAL);
	gpuq_close(q);
}
END_TEST

START_TEST(completion_fd_for_event_loops)
{
	gpuq_t *q = open_session("fd", 4u << 20);
	uint8_t *a = gpuq_mem_alloc(q, 4096);
	struct gpuq_completion c[4];
	int fd = gpuq_fd(q), n, rounds;
	uint32_t id;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id), 0);
	for (rounds = 0; rounds < 50; rounds++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		/* Nothing pending: the fd is quiet. */
		ck_assert_int_eq(poll(&p, 1, 0), 0);
		ck_assert_int_eq(gpuq_isend(q, id, 0, a, 4096, (uint64_t)rounds, NULL), 0);
		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		n = gpuq_poll(q, c, 4, 0);
		ck_assert_int_eq(n, 1);
		ck_assert_uint_eq(c[0].tag, (uint64_t)rounds);
		ck_assert_int_eq(c[0].result, 4096);
	}
	gpuq_close(q);
}
END_TEST

START_TEST(engine_sleeps_and_wakes)
{
	gpuq_t *q = open_session("sleepy", 4u << 20);
	uint8_t *a = gpuq_mem_alloc(q, 64), *b = gpuq_mem_alloc(q, 64);
	uint32_t id;
	int i;

	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 64, &id), 0);
	for (i = 0; i < 5; i++) {
		/* Long enough for the engine to go to sleep: the doorbell must wake it. */
		usleep(20000);
		memset(a, i + 1, 64);
		ck_assert_int_eq(gpuq_send(q, id, 0, a, 64), 64);
		ck_assert_int_eq(gpuq_recv(q, id, 0, b, 64), 64);
		ck_assert_mem_eq(a, b, 64);
	}
	gpuq_close(q);
}
END_TEST

/* One client process: random transfers both ways, every byte checked against a shadow copy. */
static int hammer(const char *sock, uint64_t seed, int rounds)
{
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = "hammer",
				  .arena_size = 16u << 20 };
	size_t bufsz = 4u << 20;
	uint8_t *shadow = malloc(bufsz), *tmp = malloc(bufsz), *stage;
	uint64_t s = seed | 1;
	gpuq_t *q;
	uint32_t id;
	int i;

	if (!shadow || !tmp || gpuq_connect_opts(sock, &o, &q))
		return 10;
	if (gpuq_buf_alloc(q, 0, bufsz, &id))
		return 11;
	stage = gpuq_mem_alloc(q, bufsz);
	if (!stage)
		return 12;
	memset(shadow, 0, bufsz);
	for (i = 0; i < rounds; i++) {
		uint64_t kind = rnd(&s) % 4;
		size_t len = 1 + rnd(&s) % (kind == 0 ? 64 : kind == 1 ? 8192 : 300000);
		size_t off = rnd(&s) % (bufsz - len);
		uint8_t *src = (rnd(&s) & 1) ? stage : tmp;

		harness_fill(src, len, s);
		if (gpuq_send(q, id, off, src, len) != (ssize_t)len)
			return 20;
		memcpy(shadow + off, src, len);
		if (rnd(&s) % 3 == 0) {
			size_t roff = rnd(&s) % (bufsz - len);
			uint8_t *dst = (rnd(&s) & 1) ? stage : tmp;

			if (gpuq_recv(q, id, roff, dst, len) != (ssize_t)len)
				return 21;
			if (checksum(dst, len) != checksum(shadow + roff, len))
				return 22;
		}
	}
	if (gpuq_recv(q, id, 0, tmp, bufsz) != (ssize_t)bufsz)
		return 23;
	if (memcmp(tmp, shadow, bufsz))
		return 24;
	gpuq_close(q);
	free(tmp);
	free(shadow);
	return 0;
}

START_TEST(concurrent_processes)
{
	enum { NPROC = 6 };
	uint64_t seed = harness_seed();
	struct gpuq_status st = { .struct_size = sizeof(st) };
	pid_t pids[NPROC];
	gpuq_t *q;
	int i, status;

	for (i = 0; i < NPROC; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(hammer(d.sock, seed + (uint64_t)i * 7919, 400));
	}
	for (i = 0; i < NPROC; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "client %d failed with %d (seed %llu)", i, WEXITSTATUS(status),
			      (unsigned long long)seed);
	}
	q = open_session("observer", 1u << 20);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_uint_eq(st.buffers, 0);
	gpuq_close(q);
}
END_TEST

/*
 * One client process, nonblocking: slots of random sizes (1 B to 24 MiB) go
 * up with isend and come back with irecv, a window of requests in flight,
 * completions harvested with gpuq_poll; every tag must arrive exactly once
 * and every slot's bytes must match.
 */
static int windowed(const char *sock, uint64_t seed)
{
	enum { SLOTS = 96, WINDOW = 24 };
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = "windowed",
				  .arena_size = 256u << 20 };
	size_t len[SLOTS], off[SLOTS], total = 0;
	uint8_t *up, *down, seen[2 * SLOTS] = { 0 };
	uint64_t s = seed | 1, sum[SLOTS];
	unsigned inflight = 0, next = 0, got = 0, i;
	gpuq_t *q;
	uint32_t id;

	for (i = 0; i < SLOTS; i++) {
		uint64_t k = rnd(&s) % 8;

		/* Three large slots; the rest tiny, page-sized or mid-sized. */
		len[i] = i % 32 == 5 ? (8u << 20) + rnd(&s) % (16u << 20) :
			 k < 3       ? 1 + rnd(&s) % 256 :
			 k < 7       ? 1 + rnd(&s) % 300000 :
				       4096;
		off[i] = total + rnd(&s) % 64;
		total = off[i] + len[i];
	}
	if (total > (120u << 20))
		return 30; /* sizes are drawn to fit twice in the arena */
	if (gpuq_connect_opts(sock, &o, &q))
		return 31;
	up = gpuq_mem_alloc(q, total);
	down = gpuq_mem_alloc(q, total);
	if (!up || !down || gpuq_buf_alloc(q, 0, total, &id))
		return 32;
	for (i = 0; i < SLOTS; i++) {
		harness_fill(up + off[i], len[i], seed + i);
		sum[i] = checksum(up + off[i], len[i]);
	}
	memset(down, 0, total);
	while (got < 2 * SLOTS) {
		struct gpuq_completion c[16];
		int n, k;

		while (inflight < WINDOW && next < 2 * SLOTS) {
			/* Uploads first; a slot's download only after its upload completed. */
			if (next < SLOTS) {
				if (gpuq_isend(q, id, off[next], up + off[next], len[next], next,
					       NULL))
					return 33;
			} else {
				unsigned sl = next - SLOTS;

				if (!seen[sl])
					break;
				if (gpuq_irecv(q, id, off[sl], down + off[sl], len[sl], next, NULL))
					return 34;
			}
			next++;
			inflight++;
		}
		n = gpuq_poll(q, c, 16, 10000);
		if (n <= 0)
			return 35;
		for (k = 0; k < n; k++) {
			uint64_t t = c[k].tag;

			if (t >= 2 * SLOTS || seen[t])
				return 36; /* unknown or duplicated completion */
			seen[t] = 1;
			if (c[k].result != (int64_t)len[t % SLOTS])
				return 37;
			inflight--;
			got++;
		}
	}
	for (i = 0; i < SLOTS; i++)
		if (checksum(down + off[i], len[i]) != sum[i])
			return 38;
	gpuq_close(q);
	return 0;
}

/* 256 MiB and 3 bytes, at an odd offset, both ways, while the others run. */
static int huge(const char *sock, uint64_t seed)
{
	size_t len = (256u << 20) + 3, off = 5;
	uint8_t *src = malloc(len), *dst = malloc(len);
	gpuq_t *q;
	uint32_t id;

	if (!src || !dst || gpuq_connect(sock, &q) || gpuq_buf_alloc(q, 0, len + off, &id))
		return 40;
	harness_fill(src, len, seed);
	if (gpuq_send(q, id, off, src, len) != (ssize_t)len)
		return 41;
	if (gpuq_recv(q, id, off, dst, len) != (ssize_t)len)
		return 42;
	if (checksum(src, len) != checksum(dst, len))
		return 43;
	gpuq_close(q);
	free(src);
	free(dst);
	return 0;
}

START_TEST(concurrent_nonblocking)
{
	enum { NPROC = 4 };
	uint64_t seed = harness_seed();
	pid_t pids[NPROC];
	int i, status;

	for (i = 0; i < NPROC; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(i == 0 ? huge(d.sock, seed) :
				       windowed(d.sock, seed * 31 + (uint64_t)i));
	}
	for (i = 0; i < NPROC; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "client %d failed with %d (seed %llu)", i, WEXITSTATUS(status),
			      (unsigned long long)seed);
	}
}
END_TEST

START_TEST(client_killed_mid_transfer)
{
	struct gpuq_status st = { .struct_size = sizeof(st) };
	gpuq_t *q;
	pid_t pid;
	int status, i;

	pid = fork();
	if (pid == 0) {
		gpuq_t *c = open_session("doomed", 64u << 20);
		uint8_t *a = gpuq_mem_alloc(c, 32u << 20);
		uint32_t id;

		gpuq_buf_alloc(c, 0, 32u << 20, &id);
		for (;;)
			gpuq_isend(c, id, 0, a, 32u << 20, 0, NULL);
	}
	usleep(200000);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	q = open_session("survivor", 1u << 20);
	for (i = 0; i < 300; i++) {
		ck_assert_int_eq(gpuq_status(q, &st), 0);
		if (st.sessions == 1 && st.buffers == 0)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.sessions, 1);
	ck_assert_uint_eq(st.buffers, 0);
	ck_assert(harness_alive(&d));
	gpuq_close(q);
}
END_TEST

static Suite *datapath_suite(void)
{
	Suite *s = suite_create("datapath");
	TCase *tc = tcase_create("datapath");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, blocking_roundtrip_sizes);
	tcase_add_test(tc, arena_zero_copy_and_d2d);
	tcase_add_test(tc, nonblocking_many_in_flight);
	tcase_add_test(tc, bad_requests_complete_with_errors);
	tcase_add_test(tc, completion_fd_for_event_loops);
	tcase_add_test(tc, engine_sleeps_and_wakes);
	tcase_add_test(tc, concurrent_processes);
	tcase_add_test(tc, concurrent_nonblocking);
	tcase_add_test(tc, client_killed_mid_transfer);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(datapath_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
