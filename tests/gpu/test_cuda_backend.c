/* test_cuda_backend.c: the cuda backend and the copy/pattern kernels on a real GPU; skips (77) without one. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "daemon/backend.h"
#include "kernels/kernels.h"

#define EXIT_SKIP 77
#define MIB (1024ULL * 1024)

#define CK_CUDA(call)                                                                          \
	do {                                                                                   \
		cudaError_t err_ = (call);                                                     \
		ck_assert_msg(err_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(err_)); \
	} while (0)

static uint32_t test_seed; /* printed by main; GPUQ_TEST_SEED repeats a run */
static uint64_t rng_state; /* reset from test_seed by setup, so each test repeats alone */
static struct backend be;  /* opened by setup, closed by teardown */

/* xorshift64*: fast, and the same sequence for the same seed everywhere. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void rnd_fill(uint8_t *p, size_t len)
{
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] = (uint8_t)rnd();
}

static void *xmalloc(size_t len)
{
	void *p = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(p);
	return p;
}

/* Offset of the first byte where a and b differ, or -1. */
static int64_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	if (memcmp(a, b, len) == 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (int64_t)i;
	return -1;
}

static int64_t first_nonzero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (int64_t)i;
	return -1;
}

/*
 * Runs in each test's own process (checked fixture): CUDA must not be
 * initialised before Check forks, or the child cannot use it.
 */
static void setup(void)
{
	struct backend_device_info info;
	int ret, ordinal = 0;

	memset(&be, 0, sizeof(be));
	ret = backend_open(&be, BACKEND_CUDA, 0);
	ck_assert_msg(ret == 0, "backend_open(cuda): %s (%s)", strerror(-ret), be.reason);
	ck_assert_uint_ge(be.ndevices, 1);

	/* The test's own CUDA calls (kernels, host allocations) go to backend device 0. */
	ck_assert_int_eq(be.ops->device_info(&be, 0, &info), 0);
	if (info.pci_bus_id[0])
		CK_CUDA(cudaDeviceGetByPCIBusId(&ordinal, info.pci_bus_id));
	CK_CUDA(cudaSetDevice(ordinal));

	rng_state = ((uint64_t)test_seed << 32 | test_seed) ^ 0x9e3779b97f4a7c15ULL;
	if (!rng_state)
		rng_state = 1;
}

static void teardown(void)
{
	backend_close(&be);
}

static uint64_t alloc(size_t size)
{
	uint64_t addr = 0;
	int ret = be.ops->mem_alloc(&be, 0, size, &addr);

	ck_assert_msg(ret == 0, "mem_alloc(%zu): %s", size, strerror(-ret));
	ck_assert_uint_ne(addr, 0);
	return addr;
}

static void release(uint64_t addr)
{
	ck_assert_int_eq(be.ops->mem_free(&be, 0, addr), 0);
}

static void to_dev(uint64_t dst, const void *src, size_t len)
{
	int ret = be.ops->copy_to_dev(&be, 0, dst, src, len);

	ck_assert_msg(ret == 0, "copy_to_dev(%zu bytes): %s", len, strerror(-ret));
}

static void from_dev(void *dst, uint64_t src, size_t len)
{
	int ret = be.ops->copy_from_dev(&be, 0, dst, src, len);

	ck_assert_msg(ret == 0, "copy_from_dev(%zu bytes): %s", len, strerror(-ret));
}

/* Mapped, pinned host memory and its device-side address. */
static void *host_mapped(size_t len, uint64_t *dev_addr)
{
	void *p = NULL, *d = NULL;

	CK_CUDA(cudaHostAlloc(&p, len, cudaHostAllocMapped | cudaHostAllocPortable));
	CK_CUDA(cudaHostGetDevicePointer(&d, p, 0));
	*dev_addr = (uint64_t)(uintptr_t)d;
	return p;
}

START_TEST(test_open_info)
{
	struct backend_device_info info;

	ck_assert_str_eq(be.ops->name, "cuda");
	ck_assert_msg(strncmp(be.reason, "found ", 6) == 0, "reason: %s", be.reason);
	printf("cuda backend: %s\n", be.reason);

	for (unsigned dev = 0; dev < be.ndevices; dev++) {
		unsigned domain, bus, slot, fn;

		ck_assert_int_eq(be.ops->device_info(&be, dev, &info), 0);
		printf("device %u: %s, %s, cc %u.%u, %u SMs, %" PRIu64 "/%" PRIu64
		       " MiB free, PCIe gen %u x%u\n",
		       dev, info.name, info.pci_bus_id[0] ? info.pci_bus_id : "-", info.cc_major,
		       info.cc_minor, info.sm_count, info.free_mem >> 20, info.total_mem >> 20,
		       info.pcie_gen, info.pcie_width);
		ck_assert_str_ne(info.name, "");
		ck_assert_uint_gt(info.total_mem, 0);
		ck_assert_uint_le(info.free_mem, info.total_mem);
		ck_assert_uint_ge(info.cc_major, 7);
		ck_assert_uint_gt(info.sm_count, 0);
		ck_assert_uint_le(info.pcie_gen, 7);
		ck_assert_uint_le(info.pcie_width, 32);
		if (info.pci_bus_id[0]) {
			/* sysfs spelling: lowercase hex domain:bus:slot.fn */
			ck_assert_int_eq(
				sscanf(info.pci_bus_id, "%x:%x:%x.%x", &domain, &bus, &slot, &fn),
				4);
			for (const char *c = info.pci_bus_id; *c; c++)
				ck_assert_msg(*c < 'A' || *c > 'F', "not lowercase: %s",
					      info.pci_bus_id);
		}
	}
	ck_assert_int_eq(be.ops->device_info(&be, be.ndevices, &info), -ENODEV);
}
END_TEST

static const size_t sizes[] = { 1, 4096, 1000003, 64 * MIB };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

START_TEST(test_alloc_zeroed)
{
	enum { ROUNDS = 4 };
	uint8_t *host = xmalloc(64 * MIB);
	uint64_t addr[ROUNDS], old[ROUNDS], anchor;
	unsigned reused = 0;
	int64_t at;

	for (size_t i = 0; i < NSIZES; i++) {
		/*
		 * Leave data behind in freed memory first; the allocator hands
		 * the same addresses out again (counted below), so unzeroed
		 * memory would show it. The anchor keeps the allocator's chunk
		 * alive: a chunk given back to the driver returns scrubbed,
		 * which would hide a missing memset.
		 */
		anchor = alloc(sizes[i]);
		for (int r = 0; r < ROUNDS; r++) {
			old[r] = addr[r] = alloc(sizes[i]);
			ck_assert_int_eq(kern_fill_pattern((void *)(uintptr_t)addr[r], sizes[i],
							   test_seed, 0),
					 0);
		}
		CK_CUDA(cudaDeviceSynchronize());
		for (int r = 0; r < ROUNDS; r++)
			release(addr[r]);

		for (int r = 0; r < ROUNDS; r++) {
			addr[r] = alloc(sizes[i]);
			for (int o = 0; o < ROUNDS; o++)
				reused += addr[r] == old[o];
			memset(host, 0xa5, sizes[i]);
			from_dev(host, addr[r], sizes[i]);
			at = first_nonzero(host, sizes[i]);
			ck_assert_msg(at < 0, "new %zu-byte buffer has 0x%02x at %" PRId64,
				      sizes[i], at < 0 ? 0 : host[at], at);
		}
		for (int r = 0; r < ROUNDS; r++)
			release(addr[r]);
		release(anchor);
	}
	/* Without reuse this test would prove nothing. */
	ck_assert_msg(reused > 0, "no freed address was handed out again");
	printf("alloc_zeroed: %u of %zu new buffers reused a freed address\n", reused,
	       (size_t)ROUNDS * NSIZES);
	free(host);
}
END_TEST

START_TEST(test_copy_roundtrip)
{
	for (size_t i = 0; i < NSIZES; i++) {
		size_t size = sizes[i];
		uint8_t *shadow = calloc(1, size), *data = xmalloc(size), *back = xmalloc(size);
		uint64_t addr = alloc(size);
		int64_t at;

		ck_assert_ptr_nonnull(shadow);
		for (int round = 0; round < 8; round++) {
			/* Odd offsets (where there is room for one) and any length to the end. */
			size_t off = size > 1 ? (rnd_below(size - 1) | 1) : 0;
			size_t len = rnd_below(size - off + 1);

			if (round == 0)
				len = size - off; /* up to the very last byte */
			rnd_fill(data, len);
			to_dev(addr + off, data, len);
			memcpy(shadow + off, data, len);

			/* Read an odd-placed slice back, then the whole buffer. */
			off = rnd_below(size) | (size > 1);
			if (off >= size)
				off = 0;
			len = rnd_below(size - off + 1);
			from_dev(back, addr + off, len);
			at = first_diff(back, shadow + off, len);
			ck_assert_msg(at < 0, "size %zu: slice [%zu, +%zu) differs at %" PRId64,
				      size, off, len, at);
		}
		from_dev(back, addr, size);
		at = first_diff(back, shadow, size);
		ck_assert_msg(at < 0,
			      "size %zu: buffer differs at %" PRId64 " (overrun or lost write)",
			      size, at);
		release(addr);
		free(back);
		free(data);
		free(shadow);
	}
}
END_TEST

START_TEST(test_enomem)
{
	uint64_t addr = 0;

	ck_assert_int_eq(be.ops->mem_alloc(&be, 0, 1ULL << 50, &addr), -ENOMEM);
	/* The failure must leave nothing behind for the next call to trip over. */
	addr = alloc(4096);
	ck_assert_int_eq(kern_fill_pattern((void *)(uintptr_t)addr, 4096, test_seed, 0), 0);
	CK_CUDA(cudaDeviceSynchronize());
	release(addr);
	ck_assert_int_eq(be.ops->mem_alloc(&be, be.ndevices, 4096, &addr), -ENODEV);
}
END_TEST

/* A batch as offsets into a source and a destination region. */
struct plan {
	struct gpuq_copy_desc *d; /* src/dst are offsets until run_plan */
	unsigned n, cap;
	uint64_t bytes;
};

static void plan_add(struct plan *p, uint64_t src_off, uint64_t dst_off, uint64_t len)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 1024;
		p->d = realloc(p->d, p->cap * sizeof(*p->d));
		ck_assert_ptr_nonnull(p->d);
	}
	p->d[p->n++] = (struct gpuq_copy_desc){ .src = src_off, .dst = dst_off, .len = len };
	p->bytes += len;
}

/*
 * Every source/destination alignment pair with lengths around the 16-byte
 * boundaries, then random copies of 0..100000 bytes (most of them small, as
 * on the engine's path), anywhere in the source and each to its own place
 * in the destination with random gaps.
 */
static void plan_make(struct plan *p, size_t src_size, size_t dst_size)
{
	static const uint64_t edge_lens[] = { 0,  1,  2,  15, 16,  17,  31,
					      32, 33, 47, 48, 100, 511, 4097 };
	uint64_t cursor = 0, len, dst_off;

	memset(p, 0, sizeof(*p));
	for (unsigned sa = 0; sa < 16; sa++)
		for (unsigned da = 0; da < 16; da++)
			for (size_t l = 0; l < sizeof(edge_lens) / sizeof(edge_lens[0]); l++) {
				len = edge_lens[l];
				cursor = (cursor + 15) & ~15ULL;
				plan_add(p, rnd_below(src_size / 16 - 400) * 16 + sa, cursor + da,
					 len);
				cursor += da + len;
			}

	for (;;) {
		switch (rnd() % 4) {
		case 0: len = rnd_below(33); break;
		case 1: len = rnd_below(1025); break;
		case 2:
			len = rnd_below(8193 + 1024); /* both sides of the warp/block split */
			break;
		default: len = rnd_below(100001); break;
		}
		dst_off = cursor + rnd_below(64);
		if (dst_off + len > dst_size || p->n >= 20000)
			break;
		plan_add(p, rnd_below(src_size - len + 1), dst_off, len);
		cursor = dst_off + len;
	}
	/* The order of the descriptors must not matter. */
	for (unsigned i = p->n - 1; i > 0; i--) {
		unsigned j = (unsigned)rnd_below(i + 1);
		struct gpuq_copy_desc t = p->d[i];

		p->d[i] = p->d[j];
		p->d[j] = t;
	}
}

/*
 * Runs plan p with one kern_copy_batch from src_dev to dst_dev and compares
 * the destination with the CPU's result. The destination is read back
 * through the backend, or straight from dst_mapped when it is mapped host
 * memory. The descriptors live in mapped host memory when descs_mapped,
 * otherwise in device memory.
 */
static void run_plan(const struct plan *p, uint64_t src_dev, const uint8_t *src_host,
		     uint64_t dst_dev, const uint8_t *dst_mapped, size_t dst_size, int descs_mapped)
{
	struct gpuq_copy_desc *descs_host, *descs_dev = NULL;
	size_t dbytes = p->n * sizeof(*p->d);
	uint8_t *ref = calloc(1, dst_size), *got;
	uint64_t descs_mapped_dev = 0;
	int64_t at;

	ck_assert_ptr_nonnull(ref);
	for (unsigned i = 0; i < p->n; i++)
		memcpy(ref + p->d[i].dst, src_host + p->d[i].src, p->d[i].len);

	if (descs_mapped) {
		descs_host = host_mapped(dbytes, &descs_mapped_dev);
		descs_dev = (struct gpuq_copy_desc *)(uintptr_t)descs_mapped_dev;
	} else {
		descs_host = xmalloc(dbytes);
		CK_CUDA(cudaMalloc((void **)&descs_dev, dbytes));
	}
	for (unsigned i = 0; i < p->n; i++) {
		descs_host[i].src = src_dev + p->d[i].src;
		descs_host[i].dst = dst_dev + p->d[i].dst;
		descs_host[i].len = p->d[i].len;
	}
	if (!descs_mapped)
		CK_CUDA(cudaMemcpy(descs_dev, descs_host, dbytes, cudaMemcpyHostToDevice));

	ck_assert_int_eq(kern_copy_batch(descs_dev, p->n, 0), 0);
	CK_CUDA(cudaDeviceSynchronize());

	if (dst_mapped) {
		got = (uint8_t *)dst_mapped;
	} else {
		got = xmalloc(dst_size);
		from_dev(got, dst_dev, dst_size);
	}
	at = first_diff(got, ref, dst_size);
	if (at >= 0) {
		for (unsigned i = 0; i < p->n; i++)
			if ((uint64_t)at >= p->d[i].dst && (uint64_t)at < p->d[i].dst + p->d[i].len)
				ck_abort_msg("copy %u (src +%" PRIu64 ", dst +%" PRIu64
					     ", len %" PRIu64 ") wrong at byte %" PRIu64
					     ": 0x%02x, want 0x%02x",
					     i, p->d[i].src, p->d[i].dst, p->d[i].len,
					     (uint64_t)at - p->d[i].dst, got[at], ref[at]);
		ck_abort_msg("byte %" PRId64 " outside every copy was written: 0x%02x", at,
			     got[at]);
	}

	if (!dst_mapped)
		free(got);
	if (descs_mapped) {
		CK_CUDA(cudaFreeHost(descs_host));
	} else {
		CK_CUDA(cudaFree(descs_dev));
		free(descs_host);
	}
	free(ref);
}

#define BATCH_SRC (16 * MIB)
#define BATCH_DST (64 * MIB)

START_TEST(test_copy_batch_d2d)
{
	uint8_t *src = xmalloc(BATCH_SRC);
	uint64_t src_dev = alloc(BATCH_SRC), dst_dev = alloc(BATCH_DST);
	struct plan p;

	rnd_fill(src, BATCH_SRC);
	to_dev(src_dev, src, BATCH_SRC);
	plan_make(&p, BATCH_SRC, BATCH_DST);
	printf("copy_batch d2d: %u copies, %" PRIu64 " bytes\n", p.n, p.bytes);
	run_plan(&p, src_dev, src, dst_dev, NULL, BATCH_DST, 0);

	/* An empty batch launches nothing and succeeds. */
	ck_assert_int_eq(kern_copy_batch(NULL, 0, 0), 0);

	free(p.d);
	release(dst_dev);
	release(src_dev);
	free(src);
}
END_TEST

/* The engine's gather: client pages mapped for the GPU, descriptors in mapped memory too. */
START_TEST(test_copy_batch_h2d_mapped)
{
	uint64_t src_dev, dst_dev = alloc(BATCH_DST);
	uint8_t *src = host_mapped(BATCH_SRC, &src_dev);
	struct plan p;

	rnd_fill(src, BATCH_SRC);
	plan_make(&p, BATCH_SRC, BATCH_DST);
	printf("copy_batch h2d (mapped): %u copies, %" PRIu64 " bytes\n", p.n, p.bytes);
	run_plan(&p, src_dev, src, dst_dev, NULL, BATCH_DST, 1);

	free(p.d);
	CK_CUDA(cudaFreeHost(src));
	release(dst_dev);
}
END_TEST

/* The engine's scatter: device memory into mapped client pages. */
START_TEST(test_copy_batch_d2h_mapped)
{
	uint8_t *src = xmalloc(BATCH_SRC);
	uint64_t src_dev = alloc(BATCH_SRC), dst_dev;
	uint8_t *dst = host_mapped(BATCH_DST, &dst_dev);
	struct plan p;

	memset(dst, 0, BATCH_DST);
	rnd_fill(src, BATCH_SRC);
	to_dev(src_dev, src, BATCH_SRC);
	plan_make(&p, BATCH_SRC, BATCH_DST);
	printf("copy_batch d2h (mapped): %u copies, %" PRIu64 " bytes\n", p.n, p.bytes);
	run_plan(&p, src_dev, src, dst_dev, dst, BATCH_DST, 0);

	free(p.d);
	CK_CUDA(cudaFreeHost(dst));
	release(src_dev);
	free(src);
}
END_TEST

static unsigned long long check_pattern(unsigned long long *counter, uint64_t addr, uint64_t len,
					uint32_t seed)
{
	unsigned long long n = ~0ULL;

	CK_CUDA(cudaMemset(counter, 0, sizeof(*counter)));
	ck_assert_int_eq(kern_check_pattern((const void *)(uintptr_t)addr, len, seed, counter, 0),
			 0);
	CK_CUDA(cudaMemcpy(&n, counter, sizeof(n), cudaMemcpyDeviceToHost));
	return n;
}

START_TEST(test_pattern)
{
	const size_t size = 64 * MIB + 3, off = 5, len = size - off - 3;
	const uint32_t pseed = (uint32_t)rnd();
	uint64_t addr = alloc(size), pos[3];
	uint8_t *host = xmalloc(size);
	unsigned long long *counter = NULL, n;

	CK_CUDA(cudaMalloc((void **)&counter, sizeof(*counter)));

	/* Misaligned at both ends: head bytes, 16-byte body, tail bytes. */
	ck_assert_int_eq(kern_fill_pattern((void *)(uintptr_t)(addr + off), len, pseed, 0), 0);
	CK_CUDA(cudaDeviceSynchronize());
	ck_assert_uint_eq(check_pattern(counter, addr + off, len, pseed), 0);

	/* The device wrote what the header's host-side definition says, and nothing else. */
	from_dev(host, addr, size);
	ck_assert_msg(first_nonzero(host, off) < 0 &&
			      first_nonzero(host + off + len, size - off - len) < 0,
		      "fill wrote outside its range");
	for (size_t i = 0; i < len; i++)
		if (host[off + i] != gpuq_pattern_byte(i, pseed))
			ck_abort_msg("pattern byte %zu is 0x%02x, want 0x%02x", i, host[off + i],
				     gpuq_pattern_byte(i, pseed));

	/* Another seed's pattern disagrees almost everywhere. */
	n = check_pattern(counter, addr + off, len, pseed + 1);
	ck_assert_msg(n > len / 2, "wrong seed: only %llu mismatches of %zu", n, len);

	/* Planted corruption: the first, the last and one byte in between. */
	pos[0] = 0;
	pos[1] = len - 1;
	pos[2] = 1 + rnd_below(len - 2);
	for (int i = 0; i < 3; i++) {
		uint8_t bad = (uint8_t)~gpuq_pattern_byte(pos[i], pseed);

		to_dev(addr + off + pos[i], &bad, 1);
		n = check_pattern(counter, addr + off, len, pseed);
		ck_assert_msg(n == (unsigned long long)i + 1, "%d planted, %llu found", i + 1, n);
	}

	/* Every start alignment, lengths across the 16-byte boundaries. */
	for (unsigned a = 0; a < 16; a++)
		for (uint64_t l = 0; l < 70; l += 1 + (l > 34) * 6) {
			uint64_t p = addr + 4096 + a;

			ck_assert_int_eq(kern_fill_pattern((void *)(uintptr_t)p, l, pseed ^ a, 0),
					 0);
			ck_assert_uint_eq(check_pattern(counter, p, l, pseed ^ a), 0);
			if (l > 0) {
				uint8_t bad = (uint8_t)~gpuq_pattern_byte(l - 1, pseed ^ a);

				to_dev(p + l - 1, &bad, 1);
				ck_assert_uint_eq(check_pattern(counter, p, l, pseed ^ a), 1);
			}
		}

	CK_CUDA(cudaFree(counter));
	free(host);
	release(addr);
}
END_TEST

static Suite *cuda_backend_suite(void)
{
	Suite *s = suite_create("cuda_backend");
	TCase *tc;

	tc = tcase_create("backend");
	tcase_add_checked_fixture(tc, setup, teardown);
	/* Context creation alone can take a second or two on a large GPU. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_open_info);
	tcase_add_test(tc, test_alloc_zeroed);
	tcase_add_test(tc, test_copy_roundtrip);
	tcase_add_test(tc, test_enomem);
	suite_add_tcase(s, tc);

	tc = tcase_create("kernels");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_copy_batch_d2d);
	tcase_add_test(tc, test_copy_batch_h2d_mapped);
	tcase_add_test(tc, test_copy_batch_d2h_mapped);
	tcase_add_test(tc, test_pattern);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * 0 when a GPU is usable. Asked in a child process: CUDA initialised in this
 * process before Check forks each test would be unusable in the tests.
 */
static int gpu_usable(void)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("test_cuda_backend: fork");
		exit(99);
	}
	if (pid == 0) {
		int count = 0;
		cudaError_t err = cudaGetDeviceCount(&count);

		if (err != cudaSuccess) {
			fprintf(stderr, "test_cuda_backend: no GPU: cudaGetDeviceCount: %s\n",
				cudaGetErrorString(err));
			_exit(EXIT_SKIP);
		}
		if (count < 1) {
			fprintf(stderr, "test_cuda_backend: no GPU: no CUDA devices\n");
			_exit(EXIT_SKIP);
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0) {
		perror("test_cuda_backend: waitpid");
		exit(99);
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ENODEV;
}

int main(void)
{
	const char *env = getenv("GPUQ_TEST_SEED");
	SRunner *sr;
	int failed;

	if (gpu_usable() != 0)
		return EXIT_SKIP;

	if (env && *env) {
		test_seed = (uint32_t)strtoul(env, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		test_seed = (uint32_t)(ts.tv_nsec ^ ts.tv_sec ^ ((uint64_t)getpid() << 16));
	}
	printf("test_cuda_backend: seed %u (GPUQ_TEST_SEED=%u repeats this run)\n", test_seed,
	       test_seed);
	fflush(stdout);

	sr = srunner_create(cuda_backend_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
