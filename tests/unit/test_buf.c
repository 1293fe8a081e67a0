/* test_buf.c: unit tests for per-session buffer tables: ids, bounds checks, quotas and isolation. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backend.h"
#include "daemon/buf.h"
#include "daemon/request.h"

#define HOST_MEM (4u << 20)

static struct backend be;

static void setup(void)
{
	ck_assert_int_eq(backend_open(&be, BACKEND_HOST, HOST_MEM), 0);
}

static void teardown(void)
{
	backend_close(&be);
}

static uint64_t backend_free(void)
{
	struct backend_device_info info;

	ck_assert_int_eq(be.ops->device_info(&be, 0, &info), 0);
	return info.free_mem;
}

/* Looks up id over [offset, offset+len) and returns the error (0 on success). */
static int get_err(struct buf_table *t, uint32_t id, uint64_t offset, uint64_t len)
{
	int err = 12345;
	struct buf *b = buf_get(t, id, offset, len, &err);

	ck_assert_msg((b != NULL) == (err == 0), "buf_get(%u, %llu, %llu) returned %p with err %d",
		      id, (unsigned long long)offset, (unsigned long long)len, (void *)b, err);
	return err;
}

/* --- ids --- */

START_TEST(test_ids_start_at_one_and_are_reused)
{
	struct buf_table t;

	buf_table_init(&t, &be, 0);
	ck_assert_int_eq(buf_alloc(&t, 0, 100), 1);
	ck_assert_int_eq(buf_alloc(&t, 0, 100), 2);
	ck_assert_int_eq(buf_alloc(&t, 0, 100), 3);

	/* A freed id is handed out again, lowest first. */
	ck_assert_int_eq(buf_free(&t, 2), 0);
	ck_assert_int_eq(buf_alloc(&t, 0, 50), 2);
	ck_assert_int_eq(buf_free(&t, 3), 0);
	ck_assert_int_eq(buf_free(&t, 1), 0);
	ck_assert_int_eq(buf_alloc(&t, 0, 10), 1);
	ck_assert_int_eq(buf_alloc(&t, 0, 10), 3);
	ck_assert_int_eq(buf_alloc(&t, 0, 10), 4);
	buf_table_fini(&t);
}
END_TEST

START_TEST(test_ids_are_small)
{
	struct buf_table t;
	struct buf *b;
	int i, id, err;

	/* Past the table's first growth, ids stay dense: n buffers use ids 1..n. */
	buf_table_init(&t, &be, 0);
	for (i = 1; i <= 100; i++) {
		id = buf_alloc(&t, 0, (uint64_t)i);
		ck_assert_int_eq(id, i);
	}
	for (i = 1; i <= 100; i++) {
		b = buf_get(&t, (uint32_t)i, 0, (uint64_t)i, &err);
		ck_assert_ptr_nonnull(b);
		ck_assert_uint_eq(b->id, (uint32_t)i);
		ck_assert_uint_eq(b->size, (uint64_t)i);
		ck_assert_uint_eq(b->device, 0);
	}
	for (i = 1; i <= 100; i++)
		ck_assert_int_eq(buf_free(&t, (uint32_t)i), 0);
	ck_assert_uint_eq(t.count, 0);
	/* Freed ids are reused (last freed first): the id space never grows. */
	ck_assert_int_eq(buf_alloc(&t, 0, 1), 100);
	ck_assert_int_eq(buf_alloc(&t, 0, 1), 99);
	ck_assert_uint_eq(t.nslots, 100);
	buf_table_fini(&t);
}
END_TEST

START_TEST(test_alloc_bad_args)
{
	struct buf_table t;

	buf_table_init(&t, &be, 0);
	ck_assert_int_eq(buf_alloc(&t, 0, 0), -EINVAL);
	ck_assert_int_eq(buf_alloc(&t, 1, 100), -EINVAL);
	ck_assert_int_eq(buf_alloc(&t, UINT32_MAX, 100), -EINVAL);
	/* More than the device holds. */
	ck_assert_int_eq(buf_alloc(&t, 0, HOST_MEM + 1ull), -ENOMEM);
	ck_assert_int_eq(buf_alloc(&t, 0, UINT64_MAX), -ENOMEM);
	ck_assert_uint_eq(t.count, 0);
	ck_assert_uint_eq(t.bytes, 0);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
	/* Failures consumed no id. */
	ck_assert_int_eq(buf_alloc(&t, 0, 1), 1);
	buf_table_fini(&t);
}
END_TEST

/* --- lookups --- */

START_TEST(test_get_bounds)
{
	struct buf_table t;
	int id;

	buf_table_init(&t, &be, 0);
	id = buf_alloc(&t, 0, 100);
	ck_assert_int_gt(id, 0);

	ck_assert_int_eq(get_err(&t, (uint32_t)id, 0, 100), 0);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 99, 1), 0);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 100, 0), 0); /* empty range at the very end */
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 37, 63), 0);

	ck_assert_int_eq(get_err(&t, (uint32_t)id, 0, 101), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 99, 2), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 100, 1), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 101, 0), -ERANGE);
	/* offset + len wraps around 2^64 to a small number: still out of range. */
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 8, UINT64_MAX - 4), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, UINT64_MAX, 2), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, UINT64_MAX, 0), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 1, UINT64_MAX), -ERANGE);
	ck_assert_int_eq(get_err(&t, (uint32_t)id, 0, UINT64_MAX), -ERANGE);
	buf_table_fini(&t);
}
END_TEST

START_TEST(test_get_unknown_ids)
{
	struct buf_table t;
	int a, b;

	buf_table_init(&t, &be, 0);
	/* Empty table. */
	ck_assert_int_eq(get_err(&t, 1, 0, 0), -ENOENT);
	ck_assert_int_eq(buf_free(&t, 1), -ENOENT);

	a = buf_alloc(&t, 0, 64);
	b = buf_alloc(&t, 0, 64);
	ck_assert_int_eq(get_err(&t, 0, 0, 0), -ENOENT);
	ck_assert_int_eq(get_err(&t, 3, 0, 0), -ENOENT);
	ck_assert_int_eq(get_err(&t, 17, 0, 0), -ENOENT); /* past the slot array */
	ck_assert_int_eq(get_err(&t, UINT32_MAX, 0, 0), -ENOENT);
	/* -ENOENT wins over a bad range. */
	ck_assert_int_eq(get_err(&t, 3, UINT64_MAX, UINT64_MAX), -ENOENT);

	ck_assert_int_eq(buf_free(&t, (uint32_t)a), 0);
	ck_assert_int_eq(get_err(&t, (uint32_t)a, 0, 1), -ENOENT);
	ck_assert_int_eq(buf_free(&t, (uint32_t)a), -ENOENT); /* double free */
	ck_assert_int_eq(buf_free(&t, 0), -ENOENT);
	ck_assert_int_eq(buf_free(&t, UINT32_MAX), -ENOENT);
	ck_assert_int_eq(get_err(&t, (uint32_t)b, 0, 64), 0);
	ck_assert_uint_eq(t.count, 1);
	ck_assert_uint_eq(t.bytes, 64);
	buf_table_fini(&t);
}
END_TEST

/* --- quota and accounting --- */

START_TEST(test_quota)
{
	struct buf_table t;
	int a, b, c;

	buf_table_init(&t, &be, 10000);
	a = buf_alloc(&t, 0, 6000);
	ck_assert_int_gt(a, 0);
	ck_assert_int_eq(buf_alloc(&t, 0, 4001), -EDQUOT);
	ck_assert_int_eq(buf_alloc(&t, 0, UINT64_MAX), -EDQUOT);
	ck_assert_uint_eq(t.count, 1);
	ck_assert_uint_eq(t.bytes, 6000);
	ck_assert_uint_eq(backend_free(), HOST_MEM - 6000);

	/* Exactly up to the quota is allowed, then not one byte more. */
	b = buf_alloc(&t, 0, 4000);
	ck_assert_int_gt(b, 0);
	ck_assert_uint_eq(t.count, 2);
	ck_assert_uint_eq(t.bytes, 10000);
	ck_assert_int_eq(buf_alloc(&t, 0, 1), -EDQUOT);
	ck_assert_uint_eq(t.count, 2);
	ck_assert_uint_eq(t.bytes, 10000);
	ck_assert_uint_eq(backend_free(), HOST_MEM - 10000);

	/* Freeing gives quota back. */
	ck_assert_int_eq(buf_free(&t, (uint32_t)a), 0);
	ck_assert_uint_eq(t.count, 1);
	ck_assert_uint_eq(t.bytes, 4000);
	c = buf_alloc(&t, 0, 6000);
	ck_assert_int_eq(c, a);
	ck_assert_uint_eq(t.count, 2);
	ck_assert_uint_eq(t.bytes, 10000);
	buf_table_fini(&t);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
}
END_TEST

START_TEST(test_accounting)
{
	struct buf_table t;
	uint64_t sizes[] = { 1, 4096, 12345, 1 << 20, 7 };
	uint64_t total = 0;
	size_t i;

	buf_table_init(&t, &be, 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_int_eq(buf_alloc(&t, 0, sizes[i]), (int)i + 1);
		total += sizes[i];
		ck_assert_uint_eq(t.count, i + 1);
		ck_assert_uint_eq(t.bytes, total);
		ck_assert_uint_eq(backend_free(), HOST_MEM - total);
	}
	ck_assert_int_eq(buf_free(&t, 4), 0);
	total -= sizes[3];
	ck_assert_uint_eq(t.count, 4);
	ck_assert_uint_eq(t.bytes, total);
	ck_assert_uint_eq(backend_free(), HOST_MEM - total);
	buf_table_fini(&t);
}
END_TEST

START_TEST(test_fini_frees_everything)
{
	struct buf_table t;
	int i;

	buf_table_init(&t, &be, 0);
	/* Enough buffers to grow the slot array, with holes. */
	for (i = 0; i < 40; i++)
		ck_assert_int_gt(buf_alloc(&t, 0, 1000 + (uint64_t)i), 0);
	for (i = 1; i <= 40; i += 3)
		ck_assert_int_eq(buf_free(&t, (uint32_t)i), 0);
	ck_assert_uint_lt(backend_free(), HOST_MEM);
	buf_table_fini(&t);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
	ck_assert_uint_eq(t.count, 0);
	ck_assert_uint_eq(t.bytes, 0);
	ck_assert_int_eq(get_err(&t, 2, 0, 0), -ENOENT);

	/* An empty table finis cleanly too, and the backend is whole again. */
	buf_table_init(&t, &be, 0);
	buf_table_fini(&t);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
}
END_TEST

/* --- isolation between sessions --- */

START_TEST(test_tables_isolated)
{
	struct buf_table a, b;
	struct buf *ba, *bb;
	uint8_t pattern[64], out[64], zero[64];
	int err;

	buf_table_init(&a, &be, 0);
	buf_table_init(&b, &be, 1000);
	ck_assert_int_eq(buf_alloc(&a, 0, 64), 1);
	ck_assert_int_eq(buf_alloc(&a, 0, 64), 2);
	ck_assert_int_eq(buf_alloc(&a, 0, 64), 3);
	ck_assert_int_eq(buf_alloc(&b, 0, 64), 1);

	/* Ids that exist only in A are unknown to B, for lookups and frees alike. */
	ck_assert_int_eq(get_err(&b, 2, 0, 1), -ENOENT);
	ck_assert_int_eq(get_err(&b, 3, 0, 1), -ENOENT);
	ck_assert_int_eq(buf_free(&b, 3), -ENOENT);
	ck_assert_int_eq(get_err(&a, 3, 0, 64), 0);

	/* The same id in two tables names two different buffers. */
	ba = buf_get(&a, 1, 0, 64, &err);
	bb = buf_get(&b, 1, 0, 64, &err);
	ck_assert_ptr_nonnull(ba);
	ck_assert_ptr_nonnull(bb);
	ck_assert_uint_ne(ba->addr, bb->addr);
	memset(pattern, 0xc3, sizeof(pattern));
	memset(zero, 0, sizeof(zero));
	ck_assert_int_eq(be.ops->copy_to_dev(&be, 0, ba->addr, pattern, sizeof(pattern)), 0);
	ck_assert_int_eq(be.ops->copy_from_dev(&be, 0, out, bb->addr, sizeof(out)), 0);
	ck_assert_mem_eq(out, zero, sizeof(out));

	/* B's quota and frees do not touch A. */
	ck_assert_int_eq(buf_alloc(&b, 0, 1000), -EDQUOT);
	ck_assert_int_eq(buf_free(&b, 1), 0);
	ck_assert_int_eq(get_err(&a, 1, 0, 64), 0);
	ck_assert_uint_eq(a.count, 3);
	ck_assert_uint_eq(a.bytes, 192);
	ck_assert_uint_eq(b.count, 0);
	ck_assert_uint_eq(b.bytes, 0);

	buf_table_fini(&b);
	ck_assert_uint_eq(backend_free(), HOST_MEM - 192);
	buf_table_fini(&a);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
}
END_TEST

/* ---- busy buffers and many of them ---- */

START_TEST(test_free_refuses_busy)
{
	struct buf_table t;
	struct buf *b;
	int id, err;

	buf_table_init(&t, &be, 0);
	id = buf_alloc(&t, 0, 100);
	ck_assert_int_gt(id, 0);
	b = buf_get(&t, (uint32_t)id, 0, 0, &err);
	ck_assert_ptr_nonnull(b);
	buf_hold(b);
	buf_hold(b);
	ck_assert_int_eq(buf_free(&t, (uint32_t)id), -EBUSY);
	buf_release(b);
	ck_assert_int_eq(buf_free(&t, (uint32_t)id), -EBUSY);
	ck_assert_uint_eq(t.count, 1);
	buf_release(b);
	ck_assert_int_eq(buf_free(&t, (uint32_t)id), 0);
	ck_assert_uint_eq(t.count, 0);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
	buf_table_fini(&t);
}
END_TEST

START_TEST(test_many_free_fast)
{
	struct buf_table t;
	uint32_t i, n = 200000;

	/* Quadratic alloc or free would take minutes here; the check timeout is seconds. */
	buf_table_init(&t, &be, 0);
	for (i = 1; i <= n; i++)
		ck_assert_int_eq(buf_alloc(&t, 0, 1), (int)i);
	for (i = 1; i <= n; i += 2)
		ck_assert_int_eq(buf_free(&t, i), 0);
	for (i = 0; i < n / 2; i++)
		ck_assert_int_le(buf_alloc(&t, 0, 1), (int)n);
	ck_assert_uint_eq(t.nslots, n);
	buf_table_fini(&t);
	ck_assert_uint_eq(backend_free(), HOST_MEM);
}
END_TEST

/* ---- request_translate: every field of an SQE is hostile ---- */

START_TEST(test_translate)
{
	struct shm_geom g;
	struct buf_table t;
	struct backend_xfer x;
	struct buf *held[2], *b;
	uint64_t arena_dev = 0x100000000ull, cross = 4096;
	int a, c, err;

	shm_geom_compute(&g, 1, 64, 128, 1u << 20);
	buf_table_init(&t, &be, 0);
	a = buf_alloc(&t, 0, 8192);
	c = buf_alloc(&t, 0, 8192);
	ck_assert_int_gt(a, 0);
	ck_assert_int_gt(c, 0);
	b = buf_get(&t, (uint32_t)a, 0, 0, &err);

#define SQE(...) (&(struct shm_sqe){ __VA_ARGS__ })
	/* Good requests: lanes, addresses, held buffers. */
	ck_assert_int_eq(request_translate(SQE(.op = SHM_OP_H2D, .buf = a, .arena_off = 4096,
					       .buf_off = 16, .len = 100),
					   &g, arena_dev, &t, 0, cross, &x, held),
			 LANE_H2D_SMALL);
	ck_assert_uint_eq(x.src, arena_dev + 4096);
	ck_assert_uint_eq(x.dst, b->addr + 16);
	ck_assert_uint_eq(x.len, 100);
	ck_assert_ptr_eq(held[0], b);
	ck_assert_ptr_null(held[1]);
	ck_assert_int_eq(request_translate(SQE(.op = SHM_OP_D2H, .buf = a,
					       .arena_off = (1u << 20) - 8192, .len = 8192),
					   &g, arena_dev, &t, 0, cross, &x, held),
			 LANE_D2H_LARGE);
	ck_assert_uint_eq(x.dst, arena_dev + (1u << 20) - 8192);
	ck_assert_int_eq(
		request_translate(SQE(.op = SHM_OP_D2D, .buf = a, .src_buf = c, .len = 8192), &g,
				  arena_dev, &t, 0, cross, &x, held),
		LANE_D2D);
	ck_assert_ptr_nonnull(held[1]);

	/* The arena range is checked against the private size, without wrapping. */
	ck_assert_int_eq(request_translate(
				 SQE(.op = SHM_OP_H2D, .buf = a, .arena_off = 1ull << 40, .len = 1),
				 &g, arena_dev, &t, 0, cross, &x, held),
			 -ERANGE);
	ck_assert_int_eq(request_translate(SQE(.op = SHM_OP_H2D, .buf = a,
					       .arena_off = (1u << 20) - 10, .len = 11),
					   &g, arena_dev, &t, 0, cross, &x, held),
			 -ERANGE);
	ck_assert_int_eq(request_translate(
				 SQE(.op = SHM_OP_D2H, .buf = a, .arena_off = ~0ull - 5, .len = 10),
				 &g, arena_dev, &t, 0, cross, &x, held),
			 -ERANGE);
	ck_assert_int_eq(
		request_translate(SQE(.op = SHM_OP_D2H, .buf = a, .arena_off = 8, .len = ~0ull), &g,
				  arena_dev, &t, 0, cross, &x, held),
		-ERANGE);
	/* Buffer ranges, ids, devices, ops. */
	ck_assert_int_eq(
		request_translate(SQE(.op = SHM_OP_H2D, .buf = a, .buf_off = 8000, .len = 200), &g,
				  arena_dev, &t, 0, cross, &x, held),
		-ERANGE);
	ck_assert_int_eq(request_translate(SQE(.op = SHM_OP_H2D, .buf = 999, .len = 1), &g,
					   arena_dev, &t, 0, cross, &x, held),
			 -ENOENT);
	ck_assert_int_eq(request_translate(SQE(.op = SHM_OP_D2D, .buf = a, .src_buf = c,
					       .src_off = ~0ull, .len = 2),
					   &g, arena_dev, &t, 0, cross, &x, held),
			 -ERANGE);
	ck_assert_int_eq(request_translate(SQE(.op = SHM_OP_H2D, .buf = a, .len = 1), &g, arena_dev,
					   &t, 1, cross, &x, held),
			 -EINVAL);
	ck_assert_int_eq(request_translate(SQE(.op = 0, .buf = a, .len = 1), &g, arena_dev, &t, 0,
					   cross, &x, held),
			 -EINVAL);
	ck_assert_int_eq(request_translate(SQE(.op = 0xff, .buf = a, .len = 1), &g, arena_dev, &t,
					   0, cross, &x, held),
			 -EINVAL);
#undef SQE
	buf_table_fini(&t);
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc;

	tc = tcase_create("ids");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ids_start_at_one_and_are_reused);
	tcase_add_test(tc, test_ids_are_small);
	tcase_add_test(tc, test_alloc_bad_args);
	suite_add_tcase(s, tc);

	tc = tcase_create("get");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_get_bounds);
	tcase_add_test(tc, test_get_unknown_ids);
	suite_add_tcase(s, tc);

	tc = tcase_create("quota");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_quota);
	tcase_add_test(tc, test_accounting);
	tcase_add_test(tc, test_fini_frees_everything);
	suite_add_tcase(s, tc);

	tc = tcase_create("isolation");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_tables_isolated);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifetime");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_free_refuses_busy);
	tcase_add_test(tc, test_many_free_fast);
	tcase_set_timeout(tc, 10);
	suite_add_tcase(s, tc);

	tc = tcase_create("translate");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_translate);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(buf_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
