/* test_export.c: gpuq_buf_export against a real gpuqd on the host backend: refusals, not crashes. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
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

static gpuq_t *connect_ok(const char *name)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = name };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	return q;
}

/*
 * The host backend has no device memory another process could map: export
 * says so (-ENOTSUP, with a message naming the backend and what is needed),
 * and the session and the buffer stay usable.
 */
START_TEST(host_backend_refuses_export)
{
	gpuq_t *q = connect_ok("test_export");
	unsigned char in[1000], out[1000];
	struct gpuq_buf_export ex = { .struct_size = sizeof(ex) };
	uint32_t id;

	ck_assert_str_eq(gpuq_backend(q), "host");
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, sizeof(in), &id), 0);
	ck_assert_int_eq(gpuq_buf_export(q, id, &ex), -ENOTSUP);
	ck_assert_msg(strstr(gpuq_errmsg(q), "host backend") && strstr(gpuq_errmsg(q), "cuda"),
		      "unclear message: '%s'", gpuq_errmsg(q));

	harness_fill(in, sizeof(in), harness_seed());
	ck_assert_int_eq(gpuq_send(q, id, 0, in, sizeof(in)), (ssize_t)sizeof(in));
	ck_assert_int_eq(gpuq_recv(q, id, 0, out, sizeof(out)), (ssize_t)sizeof(out));
	ck_assert_mem_eq(in, out, sizeof(in));
	ck_assert_int_eq(gpuq_buf_free(q, id), 0);
	gpuq_close(q);
	ck_assert(harness_alive(&d));
}
END_TEST

/* Ids the session does not own are unknown, whatever the backend; bad arguments stay local. */
START_TEST(unknown_ids_and_bad_arguments)
{
	gpuq_t *a = connect_ok("test_export-a"), *b = connect_ok("test_export-b");
	struct gpuq_buf_export ex = { .struct_size = sizeof(ex) };
	uint32_t id;

	ck_assert_int_eq(gpuq_buf_export(a, 12345, &ex), -ENOENT);
	ck_assert_msg(strstr(gpuq_errmsg(a), "no buffer 12345"), "message: '%s'", gpuq_errmsg(a));
	ck_assert_int_eq(gpuq_buf_export(a, 0, &ex), -ENOENT);
	ck_assert_int_eq(gpuq_buf_export(a, UINT32_MAX, &ex), -ENOENT);

	/* Another session's buffer is not this session's to export. */
	ck_assert_int_eq(gpuq_buf_alloc(b, 0, 4096, &id), 0);
	ck_assert_int_eq(gpuq_buf_export(a, id, &ex), -ENOENT);
	ck_assert_int_eq(gpuq_buf_free(b, id), 0);
	ck_assert_int_eq(gpuq_buf_export(b, id, &ex), -ENOENT);

	ck_assert_int_eq(gpuq_buf_export(NULL, 1, &ex), -EINVAL);
	ck_assert_int_eq(gpuq_buf_export(a, 1, NULL), -EINVAL);
	gpuq_close(b);
	gpuq_close(a);
	ck_assert(harness_alive(&d));
}
END_TEST

static Suite *export_suite(void)
{
	Suite *s = suite_create("export");
	TCase *tc = tcase_create("export");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, host_backend_refuses_export);
	tcase_add_test(tc, unknown_ids_and_bad_arguments);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* The refusal is the host backend's; the cuda backend's export is tests/gpu/test_ipc. */
	setenv("GPUQ_TEST_BACKEND", "host", 1);
	return harness_run_suite(export_suite());
}
