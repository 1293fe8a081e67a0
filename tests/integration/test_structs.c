/* test_structs.c: structs that grow (gpuq.h): older, smaller sizes get what fits, nonsense sizes -EINVAL. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

static struct daemon_proc d;

static void start(void)
{
	static const char *const args[] = { "--host-devices", "3", NULL };

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
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

/* Asserts that len bytes at p are all b. */
static void assert_bytes(const void *p, size_t len, unsigned char b, const char *what)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < len; i++)
		ck_assert_msg(c[i] == b, "%s: byte %zu is 0x%02x, not 0x%02x", what, i, c[i], b);
}

/* The sizes every call refuses: not a multiple of 4, too small, too large. */
static const uint32_t bad_sizes[] = { 0, 2, 6, 13, GPUQ_STRUCT_SIZE_MAX + 4, UINT32_MAX };

/*
 * gpuq_status with a struct of an older, smaller layout fills the fields
 * that fit and writes nothing after them; a larger (newer) one has its
 * unknown tail zeroed; nonsense sizes are refused and nothing is written.
 */
START_TEST(status_sizes)
{
	gpuq_t *q = connect_ok("status");
	struct gpuq_status full = { .struct_size = sizeof(full) };
	size_t cut = offsetof(struct gpuq_status, xfers), big = sizeof(full) + 64;
	unsigned char *buf = malloc(big);
	struct gpuq_status *st = (struct gpuq_status *)buf;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(gpuq_status(q, &full), 0);
	ck_assert_uint_eq(full.struct_size, sizeof(full));
	ck_assert_uint_eq(full.devices, 3);

	memset(buf, 0xaa, big);
	st->struct_size = (uint32_t)cut;
	ck_assert_int_eq(gpuq_status(q, st), 0);
	ck_assert_uint_eq(st->struct_size, cut);
	ck_assert_str_eq(st->server_version, full.server_version);
	ck_assert_uint_eq(st->proto_version, full.proto_version);
	ck_assert_str_eq(st->backend, full.backend);
	ck_assert_str_eq(st->config_path, full.config_path);
	ck_assert_uint_eq(st->devices, 3);
	assert_bytes(buf + cut, big - cut, 0xaa, "past an older gpuq_status");

	memset(buf, 0xaa, big);
	st->struct_size = (uint32_t)big;
	ck_assert_int_eq(gpuq_status(q, st), 0);
	ck_assert_uint_eq(st->struct_size, big);
	ck_assert_str_eq(st->sharing, full.sharing);
	ck_assert_uint_eq(st->devices, 3);
	assert_bytes(buf + sizeof(full), big - sizeof(full), 0,
		     "the unknown tail of a newer gpuq_status");

	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		memset(buf, 0xaa, big);
		st->struct_size = bad_sizes[i];
		ck_assert_int_eq(gpuq_status(q, st), -EINVAL);
		ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "struct_size"));
		assert_bytes(buf + sizeof(uint32_t), big - sizeof(uint32_t), 0xaa,
			     "a refused gpuq_status");
	}
	free(buf);
	gpuq_close(q);
}
END_TEST

/* gpuq_devices writes entries entry_size bytes apart, each cut to it, and nothing past max. */
START_TEST(device_entry_sizes)
{
	gpuq_t *q = connect_ok("devices");
	struct gpuq_device_info full[3];
	size_t entry = offsetof(struct gpuq_device_info, total_mem), len = 3 * entry + 64;
	unsigned char *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(gpuq_devices(q, full, sizeof(full[0]), 3), 3);
	memset(buf, 0xaa, len);
	ck_assert_int_eq(gpuq_devices(q, (struct gpuq_device_info *)buf, entry, 2), 3);
	for (unsigned i = 0; i < 2; i++) {
		struct gpuq_device_info e;

		memset(&e, 0, sizeof(e));
		memcpy(&e, buf + i * entry, entry);
		ck_assert_uint_eq(e.index, i);
		ck_assert_str_eq(e.name, full[i].name);
		ck_assert_str_eq(e.pci_bus_id, full[i].pci_bus_id);
		ck_assert_str_eq(e.backend, full[i].backend);
	}
	assert_bytes(buf + 2 * entry, len - 2 * entry, 0xaa,
		     "past max older gpuq_device_info entries");

	/* A larger entry: the library's fields, then zeros, at the caller's stride. */
	{
		size_t bigent = sizeof(full[0]) + 8;
		unsigned char *b2 = malloc(3 * bigent);

		ck_assert_ptr_nonnull(b2);
		memset(b2, 0xaa, 3 * bigent);
		ck_assert_int_eq(gpuq_devices(q, (struct gpuq_device_info *)b2, bigent, 3), 3);
		for (unsigned i = 0; i < 3; i++) {
			ck_assert_int_eq(memcmp(b2 + i * bigent, &full[i],
						offsetof(struct gpuq_device_info, free_mem)),
					 0);
			assert_bytes(b2 + i * bigent + sizeof(full[0]), 8, 0,
				     "the tail of a newer entry");
		}
		free(b2);
	}

	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		memset(buf, 0xaa, len);
		ck_assert_int_eq(gpuq_devices(q, (struct gpuq_device_info *)buf, bad_sizes[i], 1),
				 -EINVAL);
		assert_bytes(buf, len, 0xaa, "a refused gpuq_devices");
	}
	/* Counting only: entry_size does not matter. */
	ck_assert_int_eq(gpuq_devices(q, NULL, 0, 0), 3);
	free(buf);
	gpuq_close(q);
}
END_TEST

/* gpuq_clients allocates its array at the caller's stride. */
START_TEST(client_entry_sizes)
{
	gpuq_t *a = connect_ok("alpha"), *b = connect_ok("beta");
	size_t entry = offsetof(struct gpuq_client_info, buffers);
	unsigned char *arr = NULL;
	struct gpuq_client_info *ci;
	int n, seen = 0;

	n = gpuq_clients(a, (struct gpuq_client_info **)&arr, entry);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++) {
		struct gpuq_client_info e;

		memset(&e, 0, sizeof(e));
		memcpy(&e, arr + (size_t)i * entry, entry);
		if (!strcmp(e.name, "alpha")) {
			ck_assert_uint_eq(e.session_id, gpuq_session_id(a));
			seen |= 1;
		} else if (!strcmp(e.name, "beta")) {
			ck_assert_uint_eq(e.session_id, gpuq_session_id(b));
			seen |= 2;
		}
		ck_assert_uint_eq(e.pid, (unsigned)getpid());
	}
	ck_assert_int_eq(seen, 3);
	free(arr);
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		ci = (struct gpuq_client_info *)1;
		ck_assert_int_eq(gpuq_clients(a, &ci, bad_sizes[i]), -EINVAL);
		ck_assert_ptr_eq(ci, (struct gpuq_client_info *)1);
	}
	gpuq_close(b);
	gpuq_close(a);
}
END_TEST

/* gpuq_channels allocates its array at the caller's stride too. */
START_TEST(channel_entry_sizes)
{
	gpuq_t *q = connect_ok("channels");
	size_t entry = offsetof(struct gpuq_channel_info, head);
	struct gpuq_channel_info *ci;
	gpuq_chan_t *c1, *c2;
	unsigned char *arr = NULL;
	int n, seen = 0;

	ck_assert_int_eq(gpuq_chan_create(q, "grow-one", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &c1), 0);
	ck_assert_int_eq(gpuq_chan_create(q, "grow-two", 128, 16, GPUQ_CHAN_CPU_TO_GPU, &c2), 0);
	n = gpuq_channels(q, (struct gpuq_channel_info **)&arr, entry);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++) {
		struct gpuq_channel_info e;

		memset(&e, 0, sizeof(e));
		memcpy(&e, arr + (size_t)i * entry, entry);
		if (!strcmp(e.name, "grow-one")) {
			ck_assert_uint_eq(e.slot_size, 64);
			ck_assert_uint_eq(e.nslots, 8);
			ck_assert_uint_eq(e.direction, GPUQ_CHAN_GPU_TO_CPU);
			seen |= 1;
		} else if (!strcmp(e.name, "grow-two")) {
			ck_assert_uint_eq(e.slot_size, 128);
			ck_assert_uint_eq(e.nslots, 16);
			ck_assert_uint_eq(e.direction, GPUQ_CHAN_CPU_TO_GPU);
			seen |= 2;
		}
	}
	ck_assert_int_eq(seen, 3);
	free(arr);
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		ci = (struct gpuq_channel_info *)1;
		ck_assert_int_eq(gpuq_channels(q, &ci, bad_sizes[i]), -EINVAL);
		ck_assert_ptr_eq(ci, (struct gpuq_channel_info *)1);
	}
	gpuq_chan_close(c2);
	gpuq_chan_close(c1);
	gpuq_close(q);
}
END_TEST

/*
 * Options: an older, smaller struct is read only as far as it goes (a
 * field past it is not seen); a newer one is fine while the options this
 * libgpuq does not know are zero, and refused (-E2BIG) otherwise.
 */
START_TEST(option_sizes)
{
	size_t big = sizeof(struct gpuq_options) + 16, arena = 0;
	unsigned char *buf = calloc(1, big);
	struct gpuq_options *o = (struct gpuq_options *)buf;
	gpuq_t *q = NULL;

	ck_assert_ptr_nonnull(buf);
	o->client_name = "options";
	o->arena_size = 1u << 20;
	o->struct_size = sizeof(*o);
	ck_assert_int_eq(gpuq_connect_opts(d.sock, o, &q), 0);
	ck_assert_ptr_nonnull(gpuq_arena(q, &arena));
	ck_assert_uint_eq(arena, 1u << 20);
	gpuq_close(q);

	/* Older: arena_size lies past its end, so the default arena it is. */
	o->struct_size = offsetof(struct gpuq_options, arena_size);
	ck_assert_int_eq(gpuq_connect_opts(d.sock, o, &q), 0);
	ck_assert_ptr_nonnull(gpuq_arena(q, &arena));
	ck_assert_uint_ne(arena, 1u << 20);
	gpuq_close(q);

	/* Newer, unknown options zero: fine. */
	o->struct_size = (uint32_t)big;
	ck_assert_int_eq(gpuq_connect_opts(d.sock, o, &q), 0);
	ck_assert_ptr_nonnull(gpuq_arena(q, &arena));
	ck_assert_uint_eq(arena, 1u << 20);
	gpuq_close(q);

	/* Newer, with an option set that this libgpuq cannot honour. */
	buf[big - 1] = 1;
	q = (gpuq_t *)1;
	ck_assert_int_eq(gpuq_connect_opts(d.sock, o, &q), -E2BIG);
	ck_assert_ptr_null(q);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(NULL), "byte"));

	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		o->struct_size = bad_sizes[i];
		ck_assert_int_eq(gpuq_connect_opts(d.sock, o, &q), -EINVAL);
		ck_assert_ptr_null(q);
		ck_assert_ptr_nonnull(strstr(gpuq_errmsg(NULL), "struct_size"));
	}
	free(buf);
}
END_TEST

/* gpuq_buf_export checks the size before asking gpuqd (which refuses on the host backend). */
START_TEST(export_sizes)
{
	gpuq_t *q = connect_ok("export");
	struct gpuq_buf_export ex = { .struct_size = sizeof(ex) };
	uint32_t id;

	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id), 0);
	ck_assert_int_eq(gpuq_buf_export(q, id, &ex), -ENOTSUP);
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		ex.struct_size = bad_sizes[i];
		ck_assert_int_eq(gpuq_buf_export(q, id, &ex), -EINVAL);
	}
	gpuq_close(q);
}
END_TEST

static Suite *structs_suite(void)
{
	Suite *s = suite_create("structs");
	TCase *tc = tcase_create("sizes");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, status_sizes);
	tcase_add_test(tc, device_entry_sizes);
	tcase_add_test(tc, client_entry_sizes);
	tcase_add_test(tc, channel_entry_sizes);
	tcase_add_test(tc, option_sizes);
	tcase_add_test(tc, export_sizes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* Three devices and the host backend's refusal to export. */
	setenv("GPUQ_TEST_BACKEND", "host", 1);
	unsetenv("GPUQ_ARENA_SIZE");
	return harness_run_suite(structs_suite());
}
