/* test_soak.c: many client processes, mixed sizes and directions, every byte checked: nothing lost, duplicated or corrupted. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

/*
 * Each client runs SLOTS independent pipelines. One round of a slot sends a
 * fresh pattern from the arena into buffer A (H2D), copies it inside the
 * device to buffer B (D2D), receives it back (D2H) into a second arena
 * region and compares every byte. Sizes and offsets change every round.
 * Each request carries a tag naming its slot, step and round: a completion
 * with any other tag is a duplicate or a stray, a slot that hears nothing
 * for STALL_S seconds lost a completion.
 *
 * GPUQ_SOAK_SECONDS (default 3) and GPUQ_SOAK_CLIENTS (default 4) set the
 * length and the width; on a GPU host the soak runs with 16 clients for
 * 600 s (scripts/gpuhost-check soak).
 */
#define SLOTS 8
#define REGION (4u << 20)  /* per slot, in each device buffer */
#define MAX_LEN (2u << 20) /* largest transfer */
#define STALL_S 20

struct totals {
	uint64_t transfers, bytes, rounds;
	uint64_t lost, duplicated, corrupted, errors;
	char first_error[160];
};

static struct daemon_proc d;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned env_or(const char *name, unsigned dflt)
{
	const char *v = getenv(name);

	return v && atoi(v) > 0 ? (unsigned)atoi(v) : dflt;
}

enum { STEP_SEND, STEP_COPY, STEP_RECV };

struct slot {
	uint8_t *src, *dst; /* arena regions of MAX_LEN bytes */
	uint64_t round;
	unsigned step;
	size_t len;
	uint64_t off_a, off_b;
	uint32_t seed;
};

static uint64_t tag_of(unsigned k, const struct slot *s)
{
	return (uint64_t)k << 56 | (uint64_t)s->step << 48 | (s->round & 0xffffffffffffull);
}

static void note(struct totals *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct totals *t, const char *fmt, ...)
{
	va_list ap;

	if (t->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(t->first_error, sizeof(t->first_error), fmt, ap);
	va_end(ap);
}

static size_t pick_len(uint64_t *r)
{
	switch (rnd(r) % 6) {
	case 0: return 1 + rnd(r) % 256;
	case 1: return 4096;
	case 2: return 1 + rnd(r) % 65536;
	case 3: return 1u << 20;
	case 4: return MAX_LEN;
	default: return 1 + rnd(r) % MAX_LEN;
	}
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint64_t s = seed | 1ull << 40, w = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (!(i & 7))
			w = rnd(&s);
		p[i] = (uint8_t)(w >> (8 * (i & 7)));
	}
}

/* Issues the slot's current step. Returns 0 or -errno. */
static int issue(gpuq_t *q, uint32_t a, uint32_t b, unsigned k, struct slot *s)
{
	uint64_t tag = tag_of(k, s);

	switch (s->step) {
	case STEP_SEND: return gpuq_isend(q, a, s->off_a, s->src, s->len, tag, NULL);
	case STEP_COPY: return gpuq_icopy(q, b, s->off_b, a, s->off_a, s->len, tag, NULL);
	default: return gpuq_irecv(q, b, s->off_b, s->dst, s->len, tag, NULL);
	}
}

static void new_round(struct slot *s, unsigned k, uint64_t *r)
{
	s->round++;
	s->step = STEP_SEND;
	s->len = pick_len(r);
	s->off_a = k * (uint64_t)REGION + rnd(r) % (REGION - s->len + 1);
	s->off_b = k * (uint64_t)REGION + rnd(r) % (REGION - s->len + 1);
	s->seed = (uint32_t)rnd(r);
	fill(s->src, s->len, s->seed);
	memset(s->dst, 0xa5, s->len);
}

static void client(int id, double seconds, int out)
{
	struct totals t = { 0 };
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = "soak",
				  .arena_size = 64u << 20 };
	struct gpuq_device_info devs[16];
	struct slot slots[SLOTS];
	uint64_t r = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
	double end, last_progress;
	uint32_t a = 0, b = 0;
	unsigned k, dev;
	gpuq_t *q = NULL;
	int n, rc;

	rc = gpuq_connect_opts(d.sock, &o, &q);
	if (rc) {
		t.errors++;
		note(&t, "client %d: connect: %s (%s)", id, strerror(-rc), gpuq_errmsg(NULL));
		goto report;
	}
	n = gpuq_devices(q, devs, sizeof(*devs), 16);
	dev = n > 0 ? (unsigned)id % (unsigned)n : 0;
	if ((rc = gpuq_buf_alloc(q, dev, SLOTS * (size_t)REGION, &a)) ||
	    (rc = gpuq_buf_alloc(q, dev, SLOTS * (size_t)REGION, &b))) {
		t.errors++;
		note(&t, "client %d: buf_alloc: %s (%s)", id, strerror(-rc), gpuq_errmsg(q));
		goto report;
	}
	for (k = 0; k < SLOTS; k++) {
		slots[k].src = gpuq_mem_alloc(q, MAX_LEN);
		slots[k].dst = gpuq_mem_alloc(q, MAX_LEN);
		if (!slots[k].src || !slots[k].dst) {
			t.errors++;
			note(&t, "client %d: arena too small", id);
			goto report;
		}
		slots[k].round = 0;
		new_round(&slots[k], k, &r);
		if ((rc = issue(q, a, b, k, &slots[k]))) {
			t.errors++;
			note(&t, "client %d: issue: %s", id, strerror(-rc));
			goto report;
		}
	}
	end = now_s() + seconds;
	last_progress = now_s();
	for (;;) {
		struct gpuq_completion c[SLOTS * 2];
		int i, busy = 0;

		for (k = 0; k < SLOTS; k++)
			busy += slots[k].step != 99;
		if (!busy)
			break;
		n = gpuq_poll(q, c, SLOTS * 2, 1000);
		if (n < 0) {
			t.errors++;
			note(&t, "client %d: poll: %s", id, strerror(-n));
			break;
		}
		if (n == 0 && now_s() - last_progress > STALL_S) {
			t.lost += (uint64_t)busy;
			note(&t, "client %d: %d request(s) without completion for %d s", id, busy,
			     STALL_S);
			break;
		}
		if (n > 0)
			last_progress = now_s();
		for (i = 0; i < n; i++) {
			unsigned sk = (unsigned)(c[i].tag >> 56);
			struct slot *s = sk < SLOTS ? &slots[sk] : NULL;

			if (!s || s->step == 99 || c[i].tag != tag_of(sk, s)) {
				t.duplicated++;
				note(&t, "client %d: unexpected completion tag %#" PRIx64, id,
				     c[i].tag);
				continue;
			}
			if (c[i].result != (int64_t)s->len) {
				t.errors++;
				note(&t, "client %d: step %u of %zu bytes: result %" PRId64, id,
				     s->step, s->len, c[i].result);
				s->step = 99;
				continue;
			}
			t.transfers++;
			t.bytes += s->len;
			if (s->step == STEP_RECV) {
				t.rounds++;
				if (memcmp(s->src, s->dst, s->len)) {
					t.corrupted++;
					note(&t,
					     "client %d: round %" PRIu64
					     " of %zu bytes came back changed",
					     id, s->round, s->len);
				}
				if (now_s() >= end) {
					s->step = 99;
					continue;
				}
				new_round(s, sk, &r);
			} else {
				s->step++;
			}
			if ((rc = issue(q, a, b, sk, s))) {
				t.errors++;
				note(&t, "client %d: issue: %s", id, strerror(-rc));
				s->step = 99;
			}
		}
	}
report:
	if (q)
		gpuq_close(q);
	if (write(out, &t, sizeof(t)) != (ssize_t)sizeof(t))
		_exit(3);
	_exit(0);
}

START_TEST(test_soak)
{
	static const char *const args[] = { "--host-mem", "4G", "--arena-max", "256M", NULL };
	unsigned nclients = env_or("GPUQ_SOAK_CLIENTS", 4),
		 seconds = env_or("GPUQ_SOAK_SECONDS", 3), i;
	struct totals sum = { 0 };
	int pipes[64][2];
	pid_t pids[64];
	double t0;

	ck_assert_uint_le(nclients, 64);
	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	t0 = now_s();
	for (i = 0; i < nclients; i++) {
		ck_assert_int_eq(pipe(pipes[i]), 0);
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			close(pipes[i][0]);
			client((int)i, seconds, pipes[i][1]);
		}
		close(pipes[i][1]);
	}
	for (i = 0; i < nclients; i++) {
		struct totals t = { 0 };
		struct pollfd p = { .fd = pipes[i][0], .events = POLLIN };
		int st;

		/* gpuqd's sd_notify status updates must be read, or its loop stalls on a full queue. */
		while (poll(&p, 1, 200) == 0)
			harness_drain_notify(&d);
		ck_assert_int_eq(read(pipes[i][0], &t, sizeof(t)), (ssize_t)sizeof(t));
		close(pipes[i][0]);
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %u died (status %#x)",
			      i, st);
		sum.transfers += t.transfers;
		sum.bytes += t.bytes;
		sum.rounds += t.rounds;
		sum.lost += t.lost;
		sum.duplicated += t.duplicated;
		sum.corrupted += t.corrupted;
		sum.errors += t.errors;
		if (t.first_error[0] && !sum.first_error[0])
			memcpy(sum.first_error, t.first_error, sizeof(sum.first_error));
	}
	printf("soak: %s backend, %u clients, %.1f s: %" PRIu64 " transfers, %" PRIu64
	       " rounds checked, %.2f GB; lost %" PRIu64 ", duplicated %" PRIu64
	       ", corrupted %" PRIu64 ", errors %" PRIu64 "%s%s\n",
	       harness_backend(), nclients, now_s() - t0, sum.transfers, sum.rounds,
	       (double)sum.bytes / 1e9, sum.lost, sum.duplicated, sum.corrupted, sum.errors,
	       sum.first_error[0] ? "; first: " : "", sum.first_error);
	fflush(stdout);
	ck_assert_msg(harness_alive(&d), "gpuqd died during the soak");
	ck_assert_int_eq(harness_stop(&d), 0);
	ck_assert_msg(sum.lost == 0 && sum.duplicated == 0 && sum.corrupted == 0 && sum.errors == 0,
		      "soak: %s", sum.first_error);
	ck_assert_uint_gt(sum.rounds, nclients);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("soak");
	TCase *tc = tcase_create("soak");
	SRunner *sr;
	int failed;

	/* The soak's own length plus start-up, the stall limit and teardown. */
	tcase_set_timeout(tc, env_or("GPUQ_SOAK_SECONDS", 3) + STALL_S + 60);
	tcase_add_test(tc, test_soak);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
