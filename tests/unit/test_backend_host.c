/* test_backend_host.c: unit tests for the host backend and backend selection (host, cuda, auto). */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backend.h"

#define HOST_MEM (1u << 20)

static struct backend be;

static void setup(void)
{
	ck_assert_int_eq(backend_open(&be, BACKEND_HOST, HOST_MEM), 0);
}

static void teardown(void)
{
	backend_close(&be);
}

static uint64_t free_mem(void)
{
	struct backend_device_info info;

	ck_assert_int_eq(be.ops->device_info(&be, 0, &info), 0);
	return info.free_mem;
}

static uint64_t alloc_ok(size_t size)
{
	uint64_t addr = 0;

	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, size, &addr), 0);
	ck_assert_uint_ne(addr, 0);
	return addr;
}

/* --- open --- */

START_TEST(test_open_host)
{
	struct backend_device_info info;

	ck_assert_ptr_eq(be.ops, &backend_host_ops);
	ck_assert_str_eq(be.ops->name, "host");
	ck_assert_uint_eq(be.ndevices, 1);
	memset(&info, 0xa5, sizeof(info));
	ck_assert_int_eq(be.ops->device_info(&be, 0, &info), 0);
	ck_assert_uint_gt(strlen(info.name), 0);
	ck_assert_uint_lt(strlen(info.name), sizeof(info.name));
	ck_assert_str_eq(info.pci_bus_id, "");
	ck_assert_uint_eq(info.total_mem, HOST_MEM);
	ck_assert_uint_eq(info.free_mem, HOST_MEM);
	ck_assert_uint_eq(info.pcie_gen, 0);
	ck_assert_uint_eq(info.pcie_width, 0);
}
END_TEST

START_TEST(test_open_auto)
{
	struct backend a;
	struct backend_device_info info;
	int r;

	r = backend_open(&a, BACKEND_AUTO, 4u << 20);
	ck_assert_int_eq(r, 0);
	ck_assert_ptr_nonnull(a.ops);
	ck_assert_uint_ge(a.ndevices, 1);
#ifndef HAVE_CUDA
	ck_assert_ptr_eq(a.ops, &backend_host_ops);
	ck_assert_msg(strstr(a.reason, "without CUDA") != NULL, "reason '%s' does not say why",
		      a.reason);
#endif
	if (a.ops == &backend_host_ops) {
		/* Falling back to host memory must always be explained (gpuqctl status shows it). */
		ck_assert_uint_gt(strlen(a.reason), 0);
		ck_assert_int_eq(a.ops->device_info(&a, 0, &info), 0);
		ck_assert_uint_eq(info.total_mem, 4u << 20);
	}
	backend_close(&a);
	ck_assert_ptr_null(a.ops);
}
END_TEST

START_TEST(test_open_cuda)
{
	struct backend c;
	int r;

	r = backend_open(&c, BACKEND_CUDA, HOST_MEM);
#ifndef HAVE_CUDA
	ck_assert_int_eq(r, -ENOTSUP);
	ck_assert_uint_gt(strlen(c.reason), 0);
#else
	/* Asking for cuda never silently falls back to host. */
	ck_assert_msg(r == 0 || r == -ENODEV, "backend_open(cuda) = %d", r);
	if (r == 0)
		ck_assert_ptr_ne(c.ops, &backend_host_ops);
#endif
	if (r == 0)
		backend_close(&c);
}
END_TEST

/* --- memory accounting --- */

START_TEST(test_free_mem_accounting)
{
	uint64_t a, b, c;

	ck_assert_uint_eq(free_mem(), HOST_MEM);
	a = alloc_ok(1000);
	ck_assert_uint_eq(free_mem(), HOST_MEM - 1000);
	b = alloc_ok(4096);
	ck_assert_uint_eq(free_mem(), HOST_MEM - 5096);
	c = alloc_ok(1);
	ck_assert_uint_eq(free_mem(), HOST_MEM - 5097);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_ne(b, c);

	ck_assert_int_eq(be.ops->mem_free(&be, 0, b), 0);
	ck_assert_uint_eq(free_mem(), HOST_MEM - 1001);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, a), 0);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, c), 0);
	ck_assert_uint_eq(free_mem(), HOST_MEM);
}
END_TEST

START_TEST(test_enomem)
{
	uint64_t addr = 0, all, half;

	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, HOST_MEM + 1, &addr), -ENOMEM);
	ck_assert_uint_eq(free_mem(), HOST_MEM);

	half = alloc_ok(HOST_MEM / 2);
	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, HOST_MEM / 2 + 1, &addr), -ENOMEM);
	ck_assert_uint_eq(free_mem(), HOST_MEM / 2);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, half), 0);

	/* Exactly all of it fits; then not one byte more. */
	all = alloc_ok(HOST_MEM);
	ck_assert_uint_eq(free_mem(), 0);
	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, 1, &addr), -ENOMEM);
	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, SIZE_MAX, &addr), -ENOMEM);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, all), 0);
	ck_assert_uint_eq(free_mem(), HOST_MEM);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, alloc_ok(1)), 0);
}
END_TEST

START_TEST(test_zero_size)
{
	uint64_t addr = 0;

	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, 0, &addr), -EINVAL);
	ck_assert_uint_eq(free_mem(), HOST_MEM);
}
END_TEST

/* --- contents --- */

START_TEST(test_alloc_zero_filled)
{
	const size_t n = 64 << 10;
	uint8_t *out = malloc(n), *zero = calloc(1, n);
	uint64_t addr;
	int i;

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(zero);
	/* Dirty memory, free it, allocate again: the new buffer must not show the old bytes. */
	for (i = 0; i < 4; i++) {
		addr = alloc_ok(n);
		memset(out, 0x5a, n);
		ck_assert_int_eq(be.ops->copy_from_dev(&be, 0, out, addr, n), 0);
		ck_assert_msg(memcmp(out, zero, n) == 0, "allocation %d not zero-filled", i);
		memset(out, 0xff, n);
		ck_assert_int_eq(be.ops->copy_to_dev(&be, 0, addr, out, n), 0);
		ck_assert_int_eq(be.ops->mem_free(&be, 0, addr), 0);
	}
	free(zero);
	free(out);
}
END_TEST

START_TEST(test_copy_roundtrip_odd_offsets)
{
	const size_t size = 8191;
	static const size_t offs[] = { 1, 3, 7, 1001, 4095 };
	static const size_t lens[] = { 1, 13, 999, 3001, 4096 };
	uint8_t *in = malloc(size), *out = malloc(size), *dev = malloc(size);
	unsigned seed = 1234;
	uint64_t addr;
	size_t i, j;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(dev);
	addr = alloc_ok(size);
	memset(dev, 0, size); /* what the device should hold */
	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		size_t off = offs[i], len = lens[i];

		ck_assert_uint_le(off + len, size);
		for (j = 0; j < len; j++)
			in[j] = (uint8_t)rand_r(&seed);
		ck_assert_int_eq(be.ops->copy_to_dev(&be, 0, addr + off, in, len), 0);
		memcpy(dev + off, in, len);

		memset(out, 0, size);
		ck_assert_int_eq(be.ops->copy_from_dev(&be, 0, out, addr + off, len), 0);
		ck_assert_mem_eq(out, in, len);
		/* And nothing outside [off, off+len) changed. */
		ck_assert_int_eq(be.ops->copy_from_dev(&be, 0, out, addr, size), 0);
		ck_assert_mem_eq(out, dev, size);
	}
	ck_assert_int_eq(be.ops->mem_free(&be, 0, addr), 0);
	free(dev);
	free(out);
	free(in);
}
END_TEST

/* --- bad arguments --- */

START_TEST(test_free_unknown_address)
{
	uint64_t fake[8] = { 0 };
	uint64_t addr;

	addr = alloc_ok(4096);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, 0), -EINVAL);
	/* An address inside an allocation is not the allocation. */
	ck_assert_int_eq(be.ops->mem_free(&be, 0, addr + 64), -EINVAL);
	/* Nor is some other readable memory. */
	ck_assert_int_eq(be.ops->mem_free(&be, 0, (uint64_t)(uintptr_t)&fake[4]), -EINVAL);
	ck_assert_uint_eq(free_mem(), HOST_MEM - 4096);
	/* The real allocation is intact and still frees. */
	ck_assert_int_eq(be.ops->mem_free(&be, 0, addr), 0);
	ck_assert_uint_eq(free_mem(), HOST_MEM);
}
END_TEST

START_TEST(test_no_device_1)
{
	struct backend_device_info info;
	uint64_t addr, a2 = 0;
	uint8_t byte = 0;

	ck_assert_int_eq(be.ops->device_info(&be, 1, &info), -ENODEV);
	ck_assert_int_eq(be.ops->mem_alloc(&be, 1, 4096, &a2), -ENODEV);
	ck_assert_uint_eq(free_mem(), HOST_MEM);

	addr = alloc_ok(16);
	ck_assert_int_eq(be.ops->copy_to_dev(&be, 1, addr, &byte, 1), -ENODEV);
	ck_assert_int_eq(be.ops->copy_from_dev(&be, 1, &byte, addr, 1), -ENODEV);
	/* Freeing on the wrong device fails and frees nothing. */
	ck_assert_int_lt(be.ops->mem_free(&be, 1, addr), 0);
	ck_assert_uint_eq(free_mem(), HOST_MEM - 16);
	ck_assert_int_eq(be.ops->mem_free(&be, 0, addr), 0);
}
END_TEST

static Suite *backend_host_suite(void)
{
	Suite *s = suite_create("backend_host");
	TCase *tc;

	tc = tcase_create("open");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_open_host);
	tcase_add_test(tc, test_open_auto);
	tcase_add_test(tc, test_open_cuda);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_free_mem_accounting);
	tcase_add_test(tc, test_enomem);
	tcase_add_test(tc, test_zero_size);
	suite_add_tcase(s, tc);

	tc = tcase_create("copy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_alloc_zero_filled);
	tcase_add_test(tc, test_copy_roundtrip_odd_offsets);
	suite_add_tcase(s, tc);

	tc = tcase_create("badargs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_free_unknown_address);
	tcase_add_test(tc, test_no_device_1);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(backend_host_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
