/* test_log.c: logging from engine threads: rate-limited, and never blocked by a stuck stderr. */
#include "build-config.h"

#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(ratelimit_burst)
{
	struct log_rl rl = { 0 };
	unsigned i, allowed = 0;

	for (i = 0; i < 1000; i++)
		allowed += (unsigned)log_ratelimit(&rl);
	ck_assert_uint_eq(allowed, LOG_RL_BURST);
}
END_TEST

static atomic_int done;

static void *engine_like(void *arg)
{
	unsigned i;

	(void)arg;
	log_thread_nonblocking();
	for (i = 0; i < 500; i++) {
		log_msg(LOG_ERR, "engine-like thread: message %u", i);
		log_engine(LOG_WARNING, "engine-like thread: rate-limited %u", i);
		log_async(LOG_ERR, "engine-like thread: queued %u", i);
	}
	atomic_store(&done, 1);
	return NULL;
}

START_TEST(stuck_stderr_never_blocks)
{
	int p[2], saved = dup(2), fl;
	char junk[4096] = { 0 };
	pthread_t t;
	long t0;

	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(pipe(p), 0);
	/* Fill the pipe, then make it blocking: whoever writes stderr now waits for a reader. */
	fl = fcntl(p[1], F_GETFL);
	ck_assert_int_eq(fcntl(p[1], F_SETFL, fl | O_NONBLOCK), 0);
	while (write(p[1], junk, sizeof(junk)) > 0)
		;
	ck_assert_int_eq(fcntl(p[1], F_SETFL, fl & ~O_NONBLOCK), 0);
	ck_assert_int_eq(dup2(p[1], 2), 2);

	t0 = now_ms();
	ck_assert_int_eq(pthread_create(&t, NULL, engine_like, NULL), 0);
	while (!atomic_load(&done) && now_ms() - t0 < 3000)
		usleep(1000);
	ck_assert_msg(atomic_load(&done), "an engine-like thread blocked in logging");
	ck_assert_msg(now_ms() - t0 < 1000, "logging took %ld ms", now_ms() - t0);
	pthread_join(t, NULL);

	/* Unstick the logger thread and give stderr back. */
	ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	t0 = now_ms();
	while (now_ms() - t0 < 200)
		if (read(p[0], junk, sizeof(junk)) <= 0)
			usleep(1000);
	dup2(saved, 2);
	close(saved);
	close(p[0]);
	close(p[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("default");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, ratelimit_burst);
	tcase_add_test(tc, stuck_stderr_never_blocks);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	/* One process: the logger thread and the dup'ed stderr belong to this test. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
