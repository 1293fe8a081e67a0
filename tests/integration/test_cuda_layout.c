/* test_cuda_layout.c: libgpuq-cuda refuses to map a channel for kernels built against another channel layout. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuq/gpuq.h"
#include "gpuq/gpuq_chan.h"
#include "gpuq/gpuq_cuda.h"
#include "harness.h"

static struct daemon_proc d;

static void start(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

static void stop(void)
{
	ck_assert_int_eq(harness_stop(&d), 0);
}

static gpuq_t *connect_ok(void)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = "test_cuda_layout" };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	return q;
}

typedef int (*map_fn)(gpuq_chan_t *, struct gpuq_dev_chan *, uint32_t);

static const struct {
	const char *name;
	map_fn map;
} maps[] = {
	{ "gpuq_chan_map_cuda", gpuq_chan_map_cuda_versioned },
	{ "gpuq_chan_map_cuda_sender", gpuq_chan_map_cuda_sender_versioned },
	{ "gpuq_chan_map_cuda_receiver", gpuq_chan_map_cuda_receiver_versioned },
};

/*
 * Each mapping call, given a layout other than the library's, fails with
 * -EPROTO and a message naming the call and both layouts, and leaves the
 * caller's struct and the channel as they were: no end is taken, so CPU
 * senders and receivers keep working.
 */
START_TEST(other_layout_refused)
{
	const uint32_t wrong[] = { GPUQ_CHAN_VERSION + 1, GPUQ_CHAN_VERSION - 1, 0 };
	gpuq_t *q = connect_ok();
	struct gpuq_dev_chan dc, before;
	char want_mine[64], want_theirs[64], buf[64];
	gpuq_chan_t *ch;

	ck_assert_int_eq(gpuq_chan_create(q, "layout", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	snprintf(want_mine, sizeof(want_mine), "layout %u", GPUQ_CHAN_VERSION);
	for (unsigned m = 0; m < sizeof(maps) / sizeof(maps[0]); m++) {
		for (unsigned w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++) {
			const char *msg;

			memset(&dc, 0xa5, sizeof(dc));
			before = dc;
			ck_assert_int_eq(maps[m].map(ch, &dc, wrong[w]), -EPROTO);
			ck_assert_mem_eq(&dc, &before, sizeof(dc));
			msg = gpuq_cuda_errmsg();
			snprintf(want_theirs, sizeof(want_theirs), "layout %u,", wrong[w]);
			ck_assert_msg(strstr(msg, maps[m].name) && strstr(msg, want_mine) &&
					      strstr(msg, want_theirs),
				      "%s(.., %u): unclear message: '%s'", maps[m].name, wrong[w],
				      msg);
		}
		/* Neither end was taken for kernels: the CPU still sends and receives. */
		ck_assert_int_eq(gpuq_chan_send(ch, "layout!", 8, 0), 8);
		ck_assert_int_eq(gpuq_chan_recv(ch, buf, sizeof(buf), 0), 8);
		ck_assert_str_eq(buf, "layout!");
	}
	/* The layout is checked first: a refusal names it even with a bad argument. */
	ck_assert_int_eq(gpuq_chan_map_cuda_versioned(NULL, &dc, GPUQ_CHAN_VERSION + 1), -EPROTO);
	ck_assert_int_eq(gpuq_chan_map_cuda_versioned(NULL, &dc, GPUQ_CHAN_VERSION), -EINVAL);
	ck_assert_str_eq(gpuq_cuda_errmsg(), "");
	ck_assert_int_eq(gpuq_chan_map_cuda_versioned(ch, NULL, GPUQ_CHAN_VERSION), -EINVAL);
	gpuq_chan_close(ch);
	gpuq_close(q);
	ck_assert(harness_alive(&d));
}
END_TEST

/*
 * The gpuq_cuda.h macros pass the layout this test was built against, the
 * library's own: the call gets past the check (to CUDA, which may have no
 * device here) and leaves no message about layouts.
 */
START_TEST(own_layout_passes)
{
	gpuq_t *q = connect_ok();
	struct gpuq_dev_chan dc;
	gpuq_chan_t *ch;
	int r;

	ck_assert_int_eq(gpuq_chan_create(q, "layout", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	ck_assert_int_eq(gpuq_chan_map_cuda_versioned(ch, &dc, 0), -EPROTO);
	ck_assert_str_ne(gpuq_cuda_errmsg(), "");
	r = gpuq_chan_map_cuda(ch, &dc);
	ck_assert_msg(r != -EPROTO, "the library's own layout refused: %s", gpuq_cuda_errmsg());
	ck_assert_str_eq(gpuq_cuda_errmsg(), "");
	if (r == 0)
		ck_assert_int_eq(gpuq_chan_unmap_cuda(ch), 0);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

static Suite *layout_suite(void)
{
	Suite *s = suite_create("cuda_layout");
	TCase *tc = tcase_create("layout");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, other_layout_refused);
	tcase_add_test(tc, own_layout_passes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* Channels are host memory whatever the backend; the check runs before any CUDA call. */
	setenv("GPUQ_TEST_BACKEND", "host", 1);
	return harness_run_suite(layout_suite());
}
