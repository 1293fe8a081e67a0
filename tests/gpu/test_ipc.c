/* test_ipc.c: a client's own kernel consumes what gpuq delivered, through CUDA IPC export; skips (77) without a GPU. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "gpuq/gpuq.h"
#include "gpuq/gpuq_cuda.h"
#include "gpu_test.h"
#include "harness.h"
#include "ipc_kernel.h"

/* An odd element count over 4 MiB: chunked sends, and a tail the kernel's grid must reach. */
#define NELEM ((size_t)(1u << 20) + 7)
#define NBYTES (NELEM * sizeof(uint32_t))

#define CK_CUDA(call)                                                                          \
	do {                                                                                   \
		cudaError_t err_ = (call);                                                     \
		ck_assert_msg(err_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(err_)); \
	} while (0)

static struct daemon_proc d;

/* Each test runs in its own process (Check forks): so does its gpuqd. */
static void start(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

/*
 * A client is done before its daemon stops: release this process's CUDA
 * contexts first. In mps mode gpuqd's shutdown asks its MPS control daemon
 * to quit, which waits for the MPS clients still connected (this process).
 */
static void stop(void)
{
	int i, n = 0;

	if (cudaGetDeviceCount(&n) == cudaSuccess) {
		for (i = 0; i < n; i++) {
			CK_CUDA(cudaSetDevice(i));
			CK_CUDA(cudaDeviceReset());
		}
	}
	ck_assert_int_eq(harness_stop(&d), 0);
}

/* Connects before this process's first CUDA call, as an MPS client must. */
static gpuq_t *connect_ok(const char *name)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = name };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	/* Before this process's first CUDA call: its context joins gpuqd's MPS server, if any. */
	ck_assert_int_ge(gpuq_mps_prepare_cuda(q), 0);
	ck_assert_str_eq(gpuq_backend(q), "cuda");
	return q;
}

/* Checks every element of out against in * 3 + 1; names the first that differs. */
static void check_transform(const uint32_t *in, const uint32_t *out, size_t n, const char *what)
{
	size_t i, bad = 0, first = 0;

	for (i = 0; i < n; i++) {
		if (out[i] != in[i] * 3u + 1u) {
			if (!bad)
				first = i;
			bad++;
		}
	}
	ck_assert_msg(bad == 0, "%s: %zu of %zu elements wrong, first [%zu] = %#x, want %#x", what,
		      bad, n, first, out[first], in[first] * 3u + 1u);
}

/*
 * On every device: gpuq delivers a random pattern into a buffer, the
 * client maps it and a second buffer into its own context, runs its own
 * kernel from one into the other, and reads the result both with
 * cudaMemcpy (what its kernel wrote) and with gpuq_recv (what gpuqd sees
 * of the client's writes). A second delivery into the same mapping shows
 * that a mapping is made once and serves every later transfer.
 */
START_TEST(client_kernel_consumes_delivered_buffer)
{
	gpuq_t *q = connect_ok("test_ipc");
	struct gpuq_device_info devs[16];
	uint64_t seed = harness_seed();
	uint32_t *src = malloc(NBYTES), *res = malloc(NBYTES), *back = malloc(NBYTES);
	int ndev, dev;

	ck_assert_ptr_nonnull(src);
	ck_assert_ptr_nonnull(res);
	ck_assert_ptr_nonnull(back);
	ndev = gpuq_devices(q, devs, sizeof(*devs), 16);
	ck_assert_int_ge(ndev, 1);
	if (ndev > 16)
		ndev = 16;
	for (dev = 0; dev < ndev; dev++) {
		uint32_t in_id, out_id;
		void *din = NULL, *dout = NULL;
		size_t in_size = 0, out_size = 0;
		int ordinal = -1, want = -1, round;

		ck_assert_int_eq(gpuq_buf_alloc(q, (unsigned)dev, NBYTES, &in_id), 0);
		ck_assert_int_eq(gpuq_buf_alloc(q, (unsigned)dev, NBYTES, &out_id), 0);
		ck_assert_int_eq(gpuq_buf_map_cuda(q, in_id, &din, &in_size), 0);
		ck_assert_int_eq(gpuq_buf_map_cuda(q, out_id, &dout, &out_size), 0);
		ck_assert_ptr_nonnull(din);
		ck_assert_ptr_nonnull(dout);
		ck_assert_uint_eq(in_size, NBYTES);
		ck_assert_uint_eq(out_size, NBYTES);
		/* The mapping made gpuqd's device (found by PCI address) current. */
		CK_CUDA(cudaGetDevice(&ordinal));
		CK_CUDA(cudaDeviceGetByPCIBusId(&want, devs[dev].pci_bus_id));
		ck_assert_int_eq(ordinal, want);

		for (round = 0; round < 2; round++) {
			harness_fill(src, NBYTES, seed + (uint64_t)dev * 2 + (uint64_t)round);
			ck_assert_int_eq(gpuq_send(q, in_id, 0, src, NBYTES), (ssize_t)NBYTES);

			/* The client's own kernel, in its own context, on the delivered data. */
			CK_CUDA(test_ipc_transform(din, dout, NELEM, 0));
			CK_CUDA(cudaDeviceSynchronize());

			memset(res, 0, NBYTES);
			CK_CUDA(cudaMemcpy(res, dout, NBYTES, cudaMemcpyDeviceToHost));
			check_transform(src, res, NELEM,
					"cudaMemcpy of the client kernel's output");

			/* gpuqd reads the buffer the client's kernel wrote through the mapping. */
			memset(back, 0, NBYTES);
			ck_assert_int_eq(gpuq_recv(q, out_id, 0, back, NBYTES), (ssize_t)NBYTES);
			check_transform(src, back, NELEM,
					"gpuq_recv of the client kernel's output");
		}

		/* In place, and a read at an offset: the daemon sees the tail the kernel rewrote. */
		CK_CUDA(test_ipc_transform(dout, dout, NELEM, 0));
		CK_CUDA(cudaDeviceSynchronize());
		ck_assert_int_eq(gpuq_recv(q, out_id, 4 * 1001, back, NBYTES - 4 * 1001),
				 (ssize_t)(NBYTES - 4 * 1001));
		check_transform(res + 1001, back, NELEM - 1001,
				"gpuq_recv at an offset after in-place");

		ck_assert_int_eq(gpuq_buf_unmap_cuda(din), 0);
		ck_assert_int_eq(gpuq_buf_unmap_cuda(dout), 0);
		ck_assert_int_eq(gpuq_buf_free(q, in_id), 0);
		ck_assert_int_eq(gpuq_buf_free(q, out_id), 0);
	}
	free(back);
	free(res);
	free(src);
	gpuq_close(q);
}
END_TEST

/* What the export says about a buffer, and the ids it refuses. */
START_TEST(export_describes_buffer_and_refuses_unknown_ids)
{
	gpuq_t *q = connect_ok("test_ipc-export");
	struct gpuq_device_info dev0;
	struct gpuq_buf_export ex = { .struct_size = sizeof(ex) },
			       ex2 = { .struct_size = sizeof(ex2) };
	unsigned char zero[sizeof(ex.handle)] = { 0 };
	void *p = (void *)1;
	uint32_t id, id2;

	ck_assert_int_ge(gpuq_devices(q, &dev0, sizeof(dev0), 1), 1);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 12345, &id), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 4096, &id2), 0);
	memset(&ex, 0xff, sizeof(ex));
	ex.struct_size = sizeof(ex);
	ck_assert_int_eq(gpuq_buf_export(q, id, &ex), 0);
	ck_assert_uint_eq(ex.struct_size, sizeof(ex));
	ck_assert_uint_eq(ex.id, id);
	ck_assert_uint_eq(ex.device, 0);
	ck_assert_uint_eq(ex.size, 12345);
	ck_assert_str_eq(ex.pci_bus_id, dev0.pci_bus_id);
	ck_assert_msg(memcmp(ex.handle, zero, sizeof(zero)) != 0, "all-zero IPC handle");
	ck_assert_int_eq(gpuq_buf_export(q, id2, &ex2), 0);
	ck_assert_msg(memcmp(ex.handle, ex2.handle, sizeof(ex.handle)) != 0,
		      "two buffers exported with the same handle");

	/* Unknown ids, freed ids: -ENOENT with a message, and nothing mapped. */
	ck_assert_int_eq(gpuq_buf_export(q, 999, &ex2), -ENOENT);
	ck_assert_msg(strstr(gpuq_errmsg(q), "999") != NULL, "errmsg: %s", gpuq_errmsg(q));
	ck_assert_int_eq(gpuq_buf_export(q, 0, &ex2), -ENOENT);
	ck_assert_int_eq(gpuq_buf_free(q, id2), 0);
	ck_assert_int_eq(gpuq_buf_export(q, id2, &ex2), -ENOENT);
	ck_assert_int_eq(gpuq_buf_map_cuda(q, 999, &p, NULL), -ENOENT);
	ck_assert_ptr_eq(p, (void *)1);
	ck_assert_int_eq(gpuq_buf_export(q, id, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_buf_map_cuda(q, id, NULL, NULL), -EINVAL);
	ck_assert_int_eq(gpuq_buf_unmap_cuda(NULL), -EINVAL);

	/* The session is still good after the refusals. */
	ck_assert_int_eq(gpuq_buf_map_cuda(q, id, &p, NULL), 0);
	CK_CUDA(cudaMemset(p, 0x5a, 12345));
	CK_CUDA(cudaDeviceSynchronize());
	{
		unsigned char buf[12345];
		size_t i;

		ck_assert_int_eq(gpuq_recv(q, id, 0, buf, sizeof(buf)), (ssize_t)sizeof(buf));
		for (i = 0; i < sizeof(buf); i++)
			ck_assert_uint_eq(buf[i], 0x5a);
	}
	ck_assert_int_eq(gpuq_buf_unmap_cuda(p), 0);
	ck_assert_int_eq(gpuq_buf_free(q, id), 0);
	gpuq_close(q);
}
END_TEST

/*
 * A client that ends its session while it still has buffers mapped (it
 * crashed, or forgot to unmap) costs gpuqd nothing: the buffers are freed
 * and the next session is served.
 */
START_TEST(session_end_with_mappings_open)
{
	gpuq_t *q = connect_ok("test_ipc-leaky");
	unsigned char in[4096], out[4096];
	uint32_t id;
	void *p = NULL;

	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 1u << 20, &id), 0);
	ck_assert_int_eq(gpuq_buf_map_cuda(q, id, &p, NULL), 0);
	gpuq_close(q);
	ck_assert(harness_alive(&d));

	q = connect_ok("test_ipc-after");
	harness_fill(in, sizeof(in), harness_seed());
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, sizeof(in), &id), 0);
	ck_assert_int_eq(gpuq_send(q, id, 0, in, sizeof(in)), (ssize_t)sizeof(in));
	ck_assert_int_eq(gpuq_recv(q, id, 0, out, sizeof(out)), (ssize_t)sizeof(out));
	ck_assert_mem_eq(in, out, sizeof(in));
	gpuq_close(q);
	ck_assert(harness_alive(&d));
	/*
	 * Only now, after gpuqd freed the memory: CUDA decides whether closing
	 * this stale view succeeds; it must not crash. Printed, for the record.
	 */
	{
		int r = gpuq_buf_unmap_cuda(p);

		fprintf(stderr, "test_ipc: unmap after the session ended: %s\n",
			r ? strerror(-r) : "ok");
		ck_assert(r == 0 || r == -EINVAL || r == -EIO);
	}
}
END_TEST

static Suite *ipc_suite(void)
{
	Suite *s = suite_create("ipc");
	TCase *tc = tcase_create("ipc");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, client_kernel_consumes_delivered_buffer);
	tcase_add_test(tc, export_describes_buffer_and_refuses_unknown_ids);
	tcase_add_test(tc, session_end_with_mappings_open);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	harness_seed();
	return gpu_test_main("test_ipc", ipc_suite());
}
