/* test_chaos.c: clients SIGKILLed at random instants beside honest checksumming clients; gpuqd returns to its baseline. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

#define HONEST 3
/*
 * RSS may end above the baseline by allocator caching alone: glibc keeps
 * freed chunks in its heaps and the per-thread arenas of the control and
 * engine threads, and gpuqd's session and lane arrays keep their high-water
 * size. Each of those is bounded by the peak load (a few sessions with 1 MiB
 * arenas, which are memfd mappings and leave RSS on unmap), not by the
 * number of cycles: 8 MiB covers them, while a leak of even one arena or
 * one 64 KiB buffer per cycle shows as 12 MiB or more after 200 cycles.
 */
#if defined(__SANITIZE_ADDRESS__)
/*
 * Under AddressSanitizer gpuqd holds freed memory in quarantine (up to 256
 * MiB) before reusing it, so RSS says little; LeakSanitizer checks gpuqd's
 * memory at its exit instead.
 */
#define RSS_SLACK_KB (300 * 1024)
#else
#define RSS_SLACK_KB (8 * 1024)
#endif

static struct daemon_proc d;
static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/*
 * An honest client: sends and receives checksummed data (blocking and
 * pipelined) and loops messages through its own channel until SIGTERM.
 * Exit 0 only if it saw no error and no wrong byte.
 */
static int honest(int who, uint64_t seed)
{
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = "honest",
				  .arena_size = 1u << 20 };
	static uint8_t out[65536], in[65536];
	gpuq_chan_t *tx = NULL, *rx = NULL;
	char name[64];
	uint64_t x = seed | 1, rounds = 0;
	uint32_t buf;
	gpuq_t *q;

	signal(SIGTERM, on_term);
	if (gpuq_connect_opts(d.sock, &o, &q)) {
		fprintf(stderr, "honest %d: connect: %s\n", who, gpuq_errmsg(NULL));
		return 1;
	}
	if (gpuq_buf_alloc(q, 0, 256u << 10, &buf))
		return 2;
	snprintf(name, sizeof(name), "chaos-honest-%d", who);
	if (gpuq_chan_create(q, name, 256, 16, GPUQ_CHAN_CPU_TO_GPU, &tx) ||
	    gpuq_chan_open(q, name, GPUQ_CHAN_RECV, &rx))
		return 3;
	while (!stopping) {
		size_t len = 1 + rnd(&x) % sizeof(out);
		uint64_t off = rnd(&x) % ((256u << 10) - len + 1);
		gpuq_req_t *r[8];
		struct gpuq_completion c[8];
		unsigned i;
		ssize_t n;

		harness_fill(out, len, seed + rounds);
		if (gpuq_send(q, buf, off, out, len) != (ssize_t)len ||
		    gpuq_recv(q, buf, off, in, len) != (ssize_t)len) {
			fprintf(stderr, "honest %d: transfer failed: %s\n", who, gpuq_errmsg(q));
			return 4;
		}
		if (memcmp(in, out, len)) {
			fprintf(stderr, "honest %d: %zu bytes at %llu came back wrong\n", who, len,
				(unsigned long long)off);
			return 5;
		}
		/* Pipelined: 8 sends of distinct slices, then 8 receives. */
		for (i = 0; i < 8; i++)
			if (gpuq_isend(q, buf, i * 4096u, out + i * 512u, 4096, i, &r[i]))
				return 6;
		if (gpuq_waitall(q, r, 8, c))
			return 7;
		for (i = 0; i < 8; i++)
			if (c[i].result != 4096)
				return 8;
		for (i = 0; i < 8; i++)
			if (gpuq_irecv(q, buf, i * 4096u, in + i * 4096u, 4096, i, &r[i]))
				return 9;
		if (gpuq_waitall(q, r, 8, c))
			return 10;
		for (i = 0; i < 8; i++)
			if (c[i].result != 4096 || memcmp(in + i * 4096u, out + i * 512u, 4096)) {
				fprintf(stderr, "honest %d: pipelined slice %u wrong\n", who, i);
				return 11;
			}
		n = gpuq_chan_send(tx, out, 200, 1000);
		if (n != 200 || gpuq_chan_recv(rx, in, 256, 1000) != 200 || memcmp(in, out, 200)) {
			fprintf(stderr, "honest %d: channel message lost or wrong (%zd)\n", who, n);
			return 12;
		}
		rounds++;
	}
	gpuq_chan_close(rx);
	gpuq_chan_close(tx);
	gpuq_close(q);
	fprintf(stderr, "honest %d: %llu rounds, all checked\n", who, (unsigned long long)rounds);
	return 0;
}

/* A client doing random work until it is killed. */
static void victim(uint64_t seed)
{
	struct gpuq_options o = { .struct_size = sizeof(o),
				  .client_name = "chaos",
				  .arena_size = 1u << 20,
				  .queue_depth = 64 };
	static uint8_t data[65536];
	uint64_t x = seed | 1;
	gpuq_chan_t *ch = NULL, *rx = NULL;
	uint32_t ids[8];
	unsigned nb = 0, i;
	char name[64];
	gpuq_t *q;

	if (gpuq_connect_opts(d.sock, &o, &q))
		_exit(0);
	for (;;) {
		switch (rnd(&x) % 6) {
		case 0:
			if (nb < 8 && !gpuq_buf_alloc(q, 0, 4096 + rnd(&x) % (64u << 10), &ids[nb]))
				nb++;
			break;
		case 1: /* pipelined, never waited for */
			for (i = 0; nb && i < 16; i++)
				(void)gpuq_isend(q, ids[rnd(&x) % nb], 0, data, 1 + rnd(&x) % 4096,
						 i, NULL);
			break;
		case 2:
			if (nb)
				(void)gpuq_send(q, ids[0], 0, data, 4096);
			break;
		case 3:
			if (!ch) {
				snprintf(name, sizeof(name), "chaos-%llu",
					 (unsigned long long)seed);
				if (!gpuq_chan_create(q, name, 64, 8, GPUQ_CHAN_CPU_TO_GPU, &ch))
					(void)gpuq_chan_open(q, name, GPUQ_CHAN_RECV, &rx);
			}
			if (ch)
				(void)gpuq_chan_send(ch, data, 64, 0);
			break;
		case 4: {
			struct gpuq_status st = { .struct_size = sizeof(st) };

			(void)gpuq_status(q, &st);
			break;
		}
		case 5:
			if (nb)
				(void)gpuq_buf_write(q, ids[nb - 1], 0, data, 4096);
			break;
		}
	}
}

struct snapshot {
	int fds, threads;
	long rss_kb;
	unsigned sessions, channels;
	uint64_t buffers;
};

static void snap(struct snapshot *s)
{
	Gpuq__Status *st;

	ck_assert_int_eq(harness_raw_status(&d, 5000, &st), 0);
	s->sessions = st->sessions;
	s->buffers = st->buffers;
	s->channels = st->channels;
	gpuq__status__free_unpacked(st, NULL);
	s->fds = harness_fd_count(&d);
	s->threads = harness_threads(&d);
	s->rss_kb = harness_rss_kb(&d);
}

static int same_counts(const struct snapshot *a, const struct snapshot *b)
{
	return a->fds == b->fds && a->threads == b->threads && a->sessions == b->sessions &&
	       a->buffers == b->buffers && a->channels == b->channels;
}

static void print_snap(const char *what, const struct snapshot *s)
{
	fprintf(stderr, "%s: fds %d threads %d rss %ld KiB sessions %u buffers %llu channels %u\n",
		what, s->fds, s->threads, s->rss_kb, s->sessions, (unsigned long long)s->buffers,
		s->channels);
}

static void run_cycles(int n, uint64_t *x)
{
	int i;

	for (i = 0; i < n; i++) {
		uint64_t seed = rnd(x);
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			victim(seed);
		/* Any instant: before the hello, during it, mid-request, mid-send. */
		usleep((useconds_t)(rnd(x) % 25000));
		kill(pid, SIGKILL);
		ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
		ck_assert_msg(harness_alive(&d), "gpuqd died in cycle %d", i);
		harness_drain_notify(&d);
		if (i % 100 == 99) {
			long t = now_ms();

			ck_assert_msg(harness_raw_status(&d, 5000, NULL) == 0,
				      "gpuqd stopped answering after cycle %d", i);
			fprintf(stderr, "cycle %d: status in %ld ms\n", i + 1, now_ms() - t);
		}
	}
}

START_TEST(sigkill_cycles)
{
	static const char *const args[] = { "--arena-default", "1M", NULL };
	const char *env = getenv("GPUQ_CHAOS_CYCLES");
	int cycles = env && *env ? atoi(env) : 200, i, st, waited;
	struct snapshot base, warm, end;
	uint64_t x = harness_seed() | 1;
	pid_t hon[HONEST];

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	for (i = 0; i < HONEST; i++) {
		hon[i] = fork();
		ck_assert_int_ge(hon[i], 0);
		if (hon[i] == 0)
			_exit(honest(i, harness_seed() + 1000u * (unsigned)i));
	}
	/* The honest clients are set up: their sessions, buffers and channels are the baseline. */
	for (waited = 0; waited < 100; waited++) {
		snap(&base);
		if (base.sessions >= HONEST + 1 && base.channels >= HONEST)
			break;
		usleep(20000);
	}
	print_snap("baseline", &base);
	run_cycles(10, &x);
	usleep(200000);
	snap(&warm);
	print_snap("after 10 warm-up cycles", &warm);
	run_cycles(cycles, &x);
	/* Teardown of the last victims is asynchronous: give it time. */
	for (waited = 0; waited < 100; waited++) {
		harness_drain_notify(&d);
		snap(&end);
		if (same_counts(&end, &base))
			break;
		usleep(50000);
	}
	print_snap("end", &end);
	for (i = 0; i < HONEST; i++) {
		kill(hon[i], SIGTERM);
		ck_assert_int_eq(waitpid(hon[i], &st, 0), hon[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "honest client %d saw an error (status %d)", i, st);
	}
	ck_assert_int_eq(end.fds, base.fds);
	ck_assert_int_eq(end.threads, base.threads);
	ck_assert_uint_eq(end.sessions, base.sessions);
	ck_assert_uint_eq(end.buffers, base.buffers);
	ck_assert_uint_eq(end.channels, base.channels);
	ck_assert_msg(end.rss_kb <= warm.rss_kb + RSS_SLACK_KB,
		      "RSS grew from %ld KiB to %ld KiB over %d cycles", warm.rss_kb, end.rss_kb,
		      cycles);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

static Suite *chaos_suite(void)
{
	Suite *s = suite_create("chaos");
	TCase *tc = tcase_create("sigkill");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, sigkill_cycles);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(chaos_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
