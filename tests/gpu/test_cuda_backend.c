/* test_cuda_backend.c: the cuda backend, its data path and the copy/pattern kernels on a real GPU; skips (77) without one. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "daemon/backend.h"
#include "daemon/log.h"
#include "kernels/kernels.h"
#include "pattern.h"
#include "tests/gpu/gpu_test.h"

#define MIB (1024ULL * 1024)

#define CK_CUDA(call)                                                                          \
	do {                                                                                   \
		cudaError_t err_ = (call);                                                     \
		ck_assert_msg(err_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(err_)); \
	} while (0)

static uint32_t test_seed; /* printed by main; GPUQ_TEST_SEED repeats a run */
static uint64_t rng_state; /* reset from test_seed by setup, so each test repeats alone */
static struct backend be;  /* opened by setup, closed by teardown */

/* Batches device 0's copy server was given since setup. */
static uint64_t cs_batches(void)
{
	struct backend_stats st;

	ck_assert_int_eq(backend_stats(&be, 0, &st), 0);
	return st.copy_server_batches;
}

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
			ck_assert_int_eq(gpu_pattern_fill((void *)(uintptr_t)addr[r], sizes[i],
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
	ck_assert_int_eq(gpu_pattern_fill((void *)(uintptr_t)addr, 4096, test_seed, 0), 0);
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

/* ---- the data path: host_register, xfer_*, ipc_export ---- */

#define REGION (64 * MIB)
#define HALF (REGION / 2)
#define WAIT_NS (10 * 1000000000LL)

static const char *const lane_name[LANE_COUNT] = { "h2d-small", "h2d-large", "d2h-small",
						   "d2h-large", "d2d" };

/* A client arena stand-in: a MAP_SHARED memfd mapping, registered with the backend. */
struct region {
	uint8_t *p;
	uint64_t dev; /* host_devptr of p */
	int fd;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void region_open(struct region *r)
{
	int ret;

	r->fd = memfd_create("gpuq-test-arena", MFD_CLOEXEC);
	ck_assert_int_ge(r->fd, 0);
	ck_assert_int_eq(ftruncate(r->fd, REGION), 0);
	r->p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	ck_assert_ptr_ne(r->p, MAP_FAILED);
	ret = be.ops->host_register(&be, r->p, REGION);
	ck_assert_msg(ret == 0, "host_register(memfd, 64 MiB): %s", strerror(-ret));
	ret = be.ops->host_devptr(&be, 0, r->p, &r->dev);
	ck_assert_msg(ret == 0, "host_devptr: %s", strerror(-ret));
	ck_assert_uint_ne(r->dev, 0);
}

static void region_close(struct region *r)
{
	be.ops->host_unregister(&be, r->p);
	ck_assert_int_eq(munmap(r->p, REGION), 0);
	close(r->fd);
}

/* Polls lane until batch seq is done; fails the test after WAIT_NS. */
static void wait_done(unsigned lane, uint64_t seq)
{
	int64_t deadline = now_ns() + WAIT_NS;
	uint64_t done;

	while ((done = be.ops->xfer_done(&be, 0, lane)) < seq)
		ck_assert_msg(now_ns() < deadline,
			      "lane %s: batch %" PRIu64 " not done after 10 s (done %" PRIu64 ")",
			      lane_name[lane], seq, done);
}

/* Submits a batch, waiting while the lane is full; returns its sequence number. */
static uint64_t submit(unsigned lane, const struct backend_xfer *x, unsigned n)
{
	int64_t deadline = now_ns() + WAIT_NS, seq;

	while ((seq = be.ops->xfer_submit(&be, 0, lane, x, n)) == -EAGAIN)
		ck_assert_msg(now_ns() < deadline, "lane %s: full for 10 s", lane_name[lane]);
	ck_assert_msg(seq > 0, "xfer_submit(%s, %u): %s", lane_name[lane], n, strerror((int)-seq));
	return (uint64_t)seq;
}

static void xfer_start0(void)
{
	int ret = be.ops->xfer_start(&be, 0);

	ck_assert_msg(ret == 0, "xfer_start: %s", strerror(-ret));
	ck_assert_uint_eq(be.xfer_max_batch, 4096);
}

/*
 * Copies with disjoint destinations in [0, dst_size) and sources anywhere in
 * [0, src_size): every alignment pair at the 16-byte edges, then random
 * lengths from 0 to a few times the crossover, most of them small.
 */
static void xplan_make(struct plan *p, size_t src_size, size_t dst_size, uint64_t crossover)
{
	static const uint64_t edge_lens[] = { 0, 1, 15, 16, 17, 33, 255, 256, 4095, 4097, 8193 };
	uint64_t cursor = 0, len, dst_off, big_bytes = 0;
	uint64_t spread = crossover < MIB ? crossover : MIB;

	memset(p, 0, sizeof(*p));
	for (unsigned sa = 0; sa < 16; sa++)
		for (unsigned da = 0; da < 16; da++)
			for (size_t l = 0; l < sizeof(edge_lens) / sizeof(edge_lens[0]); l++) {
				len = edge_lens[l];
				cursor = (cursor + 15) & ~15ULL;
				plan_add(p, rnd_below(src_size / 16 - 1024) * 16 + sa, cursor + da,
					 len);
				cursor += da + len;
			}
	for (;;) {
		/* Copies around the crossover take at most half the room, so small ones abound. */
		unsigned cls = (unsigned)(rnd() % 16);

		if (cls >= 12 && big_bytes > dst_size / 2)
			cls %= 12;
		switch (cls) {
		case 0:
		case 1:
		case 2: len = rnd_below(257); break;
		case 3:
		case 4:
		case 5:
		case 6: len = 4096; break;
		case 7:
		case 8:
		case 9: len = rnd_below(8193 + 1024); break;
		case 10:
		case 11: len = rnd_below(100001); break;
		case 12: len = crossover - 1 - rnd_below(spread / 4); break; /* just small */
		case 13: len = crossover; break;
		default: len = crossover + rnd_below(spread); break;
		}
		dst_off = cursor + rnd_below(64);
		if (dst_off + len > dst_size || len > src_size || p->n >= 20000)
			break;
		if (cls >= 12)
			big_bytes += len;
		plan_add(p, rnd_below(src_size - len + 1), dst_off, len);
		cursor = dst_off + len;
	}
	for (unsigned i = p->n - 1; i > 0; i--) {
		unsigned j = (unsigned)rnd_below(i + 1);
		struct gpuq_copy_desc t = p->d[i];

		p->d[i] = p->d[j];
		p->d[j] = t;
	}
}

/* Batch sizes as an engine makes them: often full, often a handful; tiny: 1 to 8. */
static unsigned batch_target(int tiny)
{
	if (tiny)
		return 1 + (unsigned)rnd_below(8);
	switch (rnd() % 4) {
	case 0: return be.xfer_max_batch;
	case 1: return 1 + (unsigned)rnd_below(16);
	default: return 1 + (unsigned)rnd_below(be.xfer_max_batch);
	}
}

/*
 * Runs plan p from src_base to dst_base through lanes small/large (split at
 * the crossover; one lane for both when they are equal) in randomly sized
 * batches, interleaved, and waits until all are done; applies it to ref.
 * Tiny batches make hundreds of them: the lanes' descriptor slots are
 * reused many times over while earlier batches are still in flight.
 */
static void xplan_run(const struct plan *p, int tiny, unsigned small, unsigned large,
		      uint64_t src_base, uint64_t dst_base, const uint8_t *src_ref,
		      uint8_t *dst_ref)
{
	struct backend_xfer *pend[2];
	unsigned npend[2] = { 0, 0 }, target[2], lanes[2] = { small, large },
		 nbatches[2] = { 0, 0 };
	uint64_t last[2] = { 0, 0 };

	for (int k = 0; k < 2; k++) {
		pend[k] = xmalloc(be.xfer_max_batch * sizeof(*pend[k]));
		target[k] = batch_target(tiny);
	}
	for (unsigned i = 0; i <= p->n; i++) {
		int k = 0;

		if (i < p->n) {
			const struct gpuq_copy_desc *c = &p->d[i];

			memcpy(dst_ref + c->dst, src_ref + c->src, c->len);
			k = small != large && c->len >= be.crossover[0];
			pend[k][npend[k]++] = (struct backend_xfer){ .dst = dst_base + c->dst,
								     .src = src_base + c->src,
								     .len = c->len };
			if (npend[k] < target[k])
				continue;
		}
		for (int j = 0; j < 2; j++) {
			if (npend[j] == 0 || (i < p->n && j != k))
				continue;
			last[j] = submit(lanes[j], pend[j], npend[j]);
			nbatches[j]++;
			npend[j] = 0;
			target[j] = batch_target(tiny);
		}
	}
	for (int k = 0; k < 2; k++) {
		if (last[k])
			wait_done(lanes[k], last[k]);
		free(pend[k]);
	}
	printf("xfer: %u copies, %" PRIu64 " bytes: %u batches on %s, %u on %s\n", p->n, p->bytes,
	       nbatches[0], lane_name[small], nbatches[1], lane_name[large]);
}

/* Compares got with ref and names the copy of p that went wrong. */
static void xplan_check(const struct plan *p, const uint8_t *got, const uint8_t *ref, size_t size,
			const char *what)
{
	int64_t at = first_diff(got, ref, size);

	if (at < 0)
		return;
	for (unsigned i = 0; i < p->n; i++)
		if ((uint64_t)at >= p->d[i].dst && (uint64_t)at < p->d[i].dst + p->d[i].len)
			ck_abort_msg("%s: copy %u (src +%" PRIu64 ", dst +%" PRIu64 ", len %" PRIu64
				     ") wrong at byte %" PRIu64 ": 0x%02x, want 0x%02x",
				     what, i, p->d[i].src, p->d[i].dst, p->d[i].len,
				     (uint64_t)at - p->d[i].dst, got[at], ref[at]);
	ck_abort_msg("%s: byte %" PRId64 " outside every copy is 0x%02x", what, at, got[at]);
}

/*
 * The engine's path end to end: a memfd arena registered with the backend,
 * randomized batches on every lane (H2D small and large from the arena into
 * device buffers, D2D between them, D2H small and large back into the
 * arena), completion seen only through xfer_done, every byte checked. The
 * D2H result is read straight from the arena once xfer_done says so: the
 * done word must not overtake the data.
 */
/* _i: the copy server on (it takes the small lanes' small batches) or off. */
START_TEST(test_xfer_lanes)
{
	uint8_t *ref1 = calloc(1, HALF), *ref2 = calloc(1, HALF), *ref3 = calloc(1, HALF);
	uint8_t *got = xmalloc(HALF), handle[BACKEND_IPC_HANDLE_SIZE];
	uint64_t d1 = alloc(HALF), d2 = alloc(HALF), seq;
	struct backend_xfer x[2];
	struct region r;
	struct plan p;
	int ret;

	ck_assert_ptr_nonnull(ref1);
	ck_assert_ptr_nonnull(ref2);
	ck_assert_ptr_nonnull(ref3);
	region_open(&r);
	if (r.dev != (uint64_t)(uintptr_t)r.p)
		printf("host_devptr: %p maps to 0x%" PRIx64 "\n", (void *)r.p, r.dev);
	/* Inside the registration (the engine asks for the arena, past the header). */
	ck_assert_int_eq(be.ops->host_devptr(&be, 0, r.p + 2 * MIB + 5, &seq), 0);
	ck_assert_uint_eq(seq, r.dev + 2 * MIB + 5);
	/* A second registration of the same pages is refused, not stacked. */
	ck_assert_int_eq(be.ops->host_register(&be, r.p, REGION), -EEXIST);
	rnd_fill(r.p, HALF);

	ck_assert_int_eq(backend_set_option(&be, BACKEND_OPT_COPY_SERVER, _i), 0);
	xfer_start0();
	printf("xfer: crossover %" PRIu64 " KiB\n", be.crossover[0] >> 10);
	ck_assert_uint_ge(be.crossover[0], 4096);
	ck_assert_uint_le(be.crossover[0], 64 * MIB);

	/* Shapes refused before anything is queued. */
	memset(x, 0, sizeof(x));
	ck_assert_int_eq(be.ops->xfer_submit(&be, 0, LANE_H2D_SMALL, x, be.xfer_max_batch + 1),
			 -EINVAL);
	ck_assert_int_eq(be.ops->xfer_submit(&be, 0, LANE_COUNT, x, 1), -EINVAL);
	ck_assert_int_eq(be.ops->xfer_submit(&be, be.ndevices, LANE_D2D, x, 1), -ENODEV);
	/* An empty batch is a batch: it gets a number and completes. */
	for (unsigned l = 0; l < LANE_COUNT; l++) {
		ck_assert_uint_eq(be.ops->xfer_done(&be, 0, l), 0);
		seq = submit(l, x, l % 2);
		ck_assert_uint_eq(seq, 1);
		wait_done(l, seq);
	}

	/* Each direction twice: batches of any size, then tiny ones over new data. */
	for (int tiny = 0; tiny < 2; tiny++) {
		xplan_make(&p, HALF, HALF, be.crossover[0]);
		xplan_run(&p, tiny, LANE_H2D_SMALL, LANE_H2D_LARGE, r.dev, d1, r.p, ref1);
		from_dev(got, d1, HALF);
		xplan_check(&p, got, ref1, HALF, "h2d");
		free(p.d);
	}
	for (int tiny = 0; tiny < 2; tiny++) {
		xplan_make(&p, HALF, HALF, be.crossover[0]);
		xplan_run(&p, tiny, LANE_D2D, LANE_D2D, d1, d2, ref1, ref2);
		from_dev(got, d2, HALF);
		xplan_check(&p, got, ref2, HALF, "d2d");
		free(p.d);
	}
	for (int tiny = 0; tiny < 2; tiny++) {
		xplan_make(&p, HALF, HALF, be.crossover[0]);
		xplan_run(&p, tiny, LANE_D2H_SMALL, LANE_D2H_LARGE, d2, r.dev + HALF, ref2, ref3);
		xplan_check(&p, r.p + HALF, ref3, HALF, "d2h");
		free(p.d);
	}

	memset(handle, 0, sizeof(handle));
	ret = be.ops->ipc_export(&be, 0, d1, handle);
	ck_assert_msg(ret == 0, "ipc_export: %s", strerror(-ret));
	ck_assert_msg(first_nonzero(handle, sizeof(handle)) >= 0,
		      "ipc_export left the handle zero");
	ck_assert_int_eq(be.ops->ipc_export(&be, be.ndevices, d1, handle), -ENODEV);

	if (_i)
		ck_assert_msg(cs_batches() > 0, "no batch went to the copy server");
	/* Stopped, the lanes refuse work and report nothing; started again, they count from 1. */
	be.ops->xfer_stop(&be, 0);
	ck_assert_int_eq(be.ops->xfer_submit(&be, 0, LANE_H2D_SMALL, x, 0), -EINVAL);
	ck_assert_uint_eq(be.ops->xfer_done(&be, 0, LANE_H2D_SMALL), 0);
	xfer_start0();
	x[0] = (struct backend_xfer){ .dst = d1, .src = r.dev, .len = 4096 };
	seq = submit(LANE_H2D_SMALL, x, 1);
	ck_assert_uint_eq(seq, 1);
	wait_done(LANE_H2D_SMALL, seq);
	be.ops->xfer_stop(&be, 0);
	be.ops->xfer_stop(&be, 0); /* twice is harmless */

	/* Unregistered for real: the same pages register again. */
	be.ops->host_unregister(&be, r.p);
	ck_assert_int_eq(be.ops->host_register(&be, r.p, REGION), 0);
	region_close(&r);
	release(d2);
	release(d1);
	free(got);
	free(ref3);
	free(ref2);
	free(ref1);
}
END_TEST

/*
 * The copy server: small batches and big ones take turns on both small
 * lanes without waiting for each other, all to one destination, so the
 * last batch's data must be what stays (a batch overtaking an earlier one
 * shows); then a server that left after going idle is replaced.
 */
START_TEST(test_xfer_server)
{
	enum { ROUNDS = 3000, SRC = 4096 };
	struct backend_xfer x[8];
	uint8_t *got = xmalloc(SRC);
	uint64_t d1 = alloc(HALF), seq, last[LANE_COUNT] = { 0 };
	unsigned big = 0;
	struct region r;

	region_open(&r);
	for (unsigned k = 0; k < 64; k++)
		memset(r.p + (size_t)k * SRC, (int)(k * 7 + 1), SRC);
	ck_assert_int_eq(backend_set_option(&be, BACKEND_OPT_COPY_SERVER, 1), 0);
	xfer_start0();
	for (unsigned k = 0; k < ROUNDS; k++) {
		unsigned lane = k % 2 ? LANE_D2H_SMALL : LANE_H2D_SMALL, n = 1;
		uint64_t src = r.dev + (uint64_t)(k % 64) * SRC;

		if (lane == LANE_H2D_SMALL) {
			/* Every 5th: eight copies, past what the server takes; the last one counts. */
			if (k % 5 == 4) {
				n = 8;
				big++;
				for (unsigned i = 0; i < 7; i++)
					x[i] = (struct backend_xfer){ .dst = d1 + SRC + i * SRC,
								      .src = src,
								      .len = SRC };
			}
			x[n - 1] = (struct backend_xfer){ .dst = d1, .src = src, .len = SRC };
		} else {
			/* Device to host: a copy of what d1 holds, to a spare page. */
			x[0] = (struct backend_xfer){ .dst = r.dev + HALF,
						      .src = d1 + 8 * SRC,
						      .len = SRC };
		}
		seq = submit(lane, x, n);
		ck_assert_uint_eq(seq, last[lane] + 1);
		last[lane] = seq;
		(void)be.ops->xfer_done(&be, 0, LANE_H2D_SMALL);
		(void)be.ops->xfer_done(&be, 0, LANE_D2H_SMALL);
	}
	wait_done(LANE_H2D_SMALL, last[LANE_H2D_SMALL]);
	wait_done(LANE_D2H_SMALL, last[LANE_D2H_SMALL]);
	from_dev(got, d1, SRC);
	/* The last h2d round was ROUNDS - 2. */
	ck_assert_msg(first_diff(got, r.p + (size_t)((ROUNDS - 2) % 64) * SRC, SRC) < 0,
		      "the last batch's data did not stay (%u big batches among them)", big);

	/*
	 * Not all of them: a lane busy on its stream stays there until it
	 * drains (one way at a time), and the server is replaced every 2 ms.
	 */
	printf("copy server: %" PRIu64 " of %u batches\n", cs_batches(), ROUNDS);
	ck_assert_msg(cs_batches() >= 100, "only %" PRIu64 " of %u batches went to the server",
		      cs_batches(), ROUNDS);

	/* Idle long enough for the server to leave: a batch starts another, and later batches go to it. */
	usleep(5000);
	{
		uint64_t before = cs_batches();
		int64_t deadline = now_ns() + WAIT_NS;

		while (cs_batches() == before) {
			ck_assert_msg(now_ns() < deadline,
				      "no server took batches again after it left");
			x[0] = (struct backend_xfer){ .dst = d1,
						      .src = r.dev + 5 * SRC,
						      .len = SRC };
			wait_done(LANE_H2D_SMALL, submit(LANE_H2D_SMALL, x, 1));
		}
	}
	from_dev(got, d1, SRC);
	ck_assert_msg(first_diff(got, r.p + 5 * SRC, SRC) < 0, "after the server left");

	/*
	 * One source and one destination, new bytes every time: the server
	 * lives for many batches, and must never copy what an earlier batch
	 * saw there (a stale cache line).
	 */
	for (unsigned k = 0; k < 300; k++) {
		memset(r.p, (int)(k * 13 + 5), SRC);
		x[0] = (struct backend_xfer){ .dst = d1, .src = r.dev, .len = SRC };
		wait_done(LANE_H2D_SMALL, submit(LANE_H2D_SMALL, x, 1));
		x[0] = (struct backend_xfer){ .dst = r.dev + HALF, .src = d1, .len = SRC };
		wait_done(LANE_D2H_SMALL, submit(LANE_D2H_SMALL, x, 1));
		ck_assert_msg(first_diff(r.p + HALF, r.p, SRC) < 0,
			      "round %u: stale bytes came through", k);
		memset(r.p + HALF, 0, SRC);
	}
	be.ops->xfer_stop(&be, 0);
	region_close(&r);
	release(d1);
	free(got);
}
END_TEST

/* An engine stand-in: one small H2D batch after another, each waited for, until stop. */
struct traffic {
	volatile int stop;
	struct backend_xfer x;
	uint64_t batches, errors;
};

static void *traffic_run(void *arg)
{
	struct traffic *t = arg;

	while (!t->stop) {
		int64_t seq = be.ops->xfer_submit(&be, 0, LANE_H2D_SMALL, &t->x, 1), deadline;

		if (seq == -EAGAIN) {
			(void)be.ops->xfer_done(&be, 0, LANE_H2D_SMALL);
			continue;
		}
		if (seq < 0) {
			t->errors++;
			return NULL;
		}
		deadline = now_ns() + WAIT_NS;
		while (be.ops->xfer_done(&be, 0, LANE_H2D_SMALL) < (uint64_t)seq)
			if (now_ns() > deadline) {
				t->errors++;
				return NULL;
			}
		t->batches++;
	}
	return NULL;
}

/*
 * Calls that wait for the whole device (cudaFree, cudaHostUnregister) made
 * while small batches keep the copy server busy: they wait for the server
 * of the moment, which is replaced every few ms, not for ever.
 */
START_TEST(test_xfer_server_waits)
{
	struct traffic t = { 0 };
	struct region r, r2;
	uint64_t d1 = alloc(HALF);
	int64_t worst_free = 0, worst_unreg = 0;
	pthread_t th;

	region_open(&r);
	ck_assert_int_eq(backend_set_option(&be, BACKEND_OPT_COPY_SERVER, 1), 0);
	xfer_start0();
	t.x = (struct backend_xfer){ .dst = d1, .src = r.dev, .len = 4096 };
	ck_assert_int_eq(pthread_create(&th, NULL, traffic_run, &t), 0);
	usleep(5000);
	for (int i = 0; i < 20; i++) {
		uint64_t a = alloc(1 * MIB);
		int64_t t0 = now_ns(), dt;

		release(a);
		dt = now_ns() - t0;
		worst_free = dt > worst_free ? dt : worst_free;
		if (i % 5 == 0) {
			region_open(&r2);
			t0 = now_ns();
			be.ops->host_unregister(&be, r2.p);
			dt = now_ns() - t0;
			worst_unreg = dt > worst_unreg ? dt : worst_unreg;
			ck_assert_int_eq(munmap(r2.p, REGION), 0);
			close(r2.fd);
		}
	}
	t.stop = 1;
	pthread_join(th, NULL);
	printf("copy server busy: %" PRIu64
	       " batches meanwhile; slowest mem_free %.2f ms, host_unregister %.2f ms\n",
	       t.batches, worst_free * 1e-6, worst_unreg * 1e-6);
	ck_assert_msg(!t.errors, "a batch failed or hung while memory was freed");
	ck_assert_uint_ge(t.batches, 100);
	ck_assert_uint_gt(cs_batches(), 100);
	ck_assert_msg(worst_free < 20000000LL && worst_unreg < 20000000LL,
		      "a device-wide wait took %.1f / %.1f ms beside the copy server",
		      worst_free * 1e-6, worst_unreg * 1e-6);
	be.ops->xfer_stop(&be, 0);
	region_close(&r);
	release(d1);
}
END_TEST

/*
 * A lane that is not polled fills up: xfer_submit says -EAGAIN instead of
 * queueing without bound, and everything queued still completes.
 */
START_TEST(test_xfer_full)
{
	const unsigned n = be.xfer_max_batch;
	struct backend_xfer *x = xmalloc(n * sizeof(*x));
	uint64_t d1 = alloc(HALF), d2 = alloc(HALF);
	struct region r;

	region_open(&r);
	xfer_start0();
	for (unsigned lane = 0; lane < LANE_COUNT; lane++) {
		/* Batches the GPU needs far longer for than xfer_submit does. */
		int small = lane == LANE_H2D_SMALL || lane == LANE_D2H_SMALL;
		unsigned m = small ? n : 1, accepted = 0;
		uint64_t len = small ? 4096 : 16 * MIB, src, dst;
		int64_t seq = 0, last = 0;

		switch (lane) {
		case LANE_H2D_SMALL:
		case LANE_H2D_LARGE: src = r.dev, dst = d1; break;
		case LANE_D2H_SMALL:
		case LANE_D2H_LARGE: src = d1, dst = r.dev + HALF; break;
		default: src = d1, dst = d2, len = HALF; break;
		}
		for (unsigned i = 0; i < m; i++)
			x[i] = (struct backend_xfer){ .dst = dst + i * len,
						      .src = src + i * len,
						      .len = len };
		while (accepted < 10000 && (seq = be.ops->xfer_submit(&be, 0, lane, x, m)) > 0) {
			ck_assert_int_eq(seq, last + 1);
			last = seq;
			accepted++;
		}
		ck_assert_msg(seq == -EAGAIN, "lane %s: %u batches accepted, then %s",
			      lane_name[lane], accepted, seq > 0 ? "more" : strerror((int)-seq));
		ck_assert_uint_ge(accepted, 2);
		printf("xfer: lane %s full after %u batches without polling\n", lane_name[lane],
		       accepted);
		wait_done(lane, (uint64_t)last);
		/* Drained, it takes work again. */
		wait_done(lane, submit(lane, x, 1));
	}
	be.ops->xfer_stop(&be, 0);
	region_close(&r);
	release(d2);
	release(d1);
	free(x);
}
END_TEST

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Median nanoseconds from submit to done of a lone batch (the lane idle before each). */
static double lone_batch_ns(unsigned lane, const struct backend_xfer *x, unsigned n, int reps)
{
	int64_t t[64];

	ck_assert_int_le(reps, 64);
	for (int i = 0; i < reps; i++) {
		int64_t t0 = now_ns();

		wait_done(lane, submit(lane, x, n));
		t[i] = now_ns() - t0;
	}
	qsort(t, (size_t)reps, sizeof(t[0]), cmp_i64);
	return (double)t[reps / 2];
}

/* GB/s of batches submitted back to back, the lane kept full. */
static double stream_gbs(unsigned lane, const struct backend_xfer *x, unsigned n, int batches)
{
	uint64_t bytes = 0, last = 0;
	int64_t t0;

	for (unsigned i = 0; i < n; i++)
		bytes += x[i].len;
	wait_done(lane, submit(lane, x, n)); /* warm */
	t0 = now_ns();
	for (int b = 0; b < batches; b++)
		last = submit(lane, x, n);
	wait_done(lane, last);
	return (double)bytes * batches / (double)(now_ns() - t0);
}

/* Fills x with n copies of len bytes, src and dst packed from their bases. */
static void xfill(struct backend_xfer *x, unsigned n, uint64_t src, uint64_t dst, uint64_t len)
{
	for (unsigned i = 0; i < n; i++)
		x[i] = (struct backend_xfer){ .dst = dst + i * len,
					      .src = src + i * len,
					      .len = len };
}

/* Figures, not assertions: what the lanes deliver on this GPU. */
START_TEST(test_xfer_perf)
{
	const unsigned n = be.xfer_max_batch;
	struct backend_xfer *x = xmalloc(n * sizeof(*x));
	struct backend_device_info info;
	uint64_t d1 = alloc(HALF);
	struct region r;
	double one, split;

	ck_assert_int_eq(be.ops->device_info(&be, 0, &info), 0);
	region_open(&r);
	/* The calibration's table, size by size. */
	log_set_level(LOG_DEBUG);
	xfer_start0();
	log_set_level(LOG_INFO);
	printf("perf (%s): crossover %" PRIu64 " KiB\n", info.name, be.crossover[0] >> 10);

	static const uint64_t lens[] = { 256, 4096, 65536 };
	for (size_t i = 0; i < 3; i++) {
		unsigned m = lens[i] * n > HALF ? (unsigned)(HALF / lens[i]) : n;

		xfill(x, m, r.dev, d1, lens[i]);
		printf("perf: h2d-small %5" PRIu64
		       " B x %u: %6.1f GB/s streaming, lone batch %6.1f us\n",
		       lens[i], m, stream_gbs(LANE_H2D_SMALL, x, m, 32),
		       lone_batch_ns(LANE_H2D_SMALL, x, m, 15) * 1e-3);
		xfill(x, m, d1, r.dev + HALF, lens[i]);
		printf("perf: d2h-small %5" PRIu64
		       " B x %u: %6.1f GB/s streaming, lone batch %6.1f us\n",
		       lens[i], m, stream_gbs(LANE_D2H_SMALL, x, m, 32),
		       lone_batch_ns(LANE_D2H_SMALL, x, m, 15) * 1e-3);
	}
	xfill(x, 16, r.dev, d1, 4096);
	/* 1 and 2 go to the copy engines, 3 and more through the kernel. */
	static const unsigned few[] = { 1, 2, 3, 8, 16 };
	for (size_t i = 0; i < sizeof(few) / sizeof(few[0]); i++)
		printf("perf: h2d-small batch of %2u x 4 KiB: %.1f us submit to done\n", few[i],
		       lone_batch_ns(LANE_H2D_SMALL, x, few[i], 63) * 1e-3);
	xfill(x, 16, d1, r.dev + HALF, 4096);
	printf("perf: d2h-small batch of  1 x 4 KiB: %.1f us, of 3: %.1f us submit to done\n",
	       lone_batch_ns(LANE_D2H_SMALL, x, 1, 63) * 1e-3,
	       lone_batch_ns(LANE_D2H_SMALL, x, 3, 63) * 1e-3);
	xfill(x, 1, r.dev, d1, 4096);
	xfill(x, 1, r.dev, d1, 256);
	printf("perf: h2d-small one 256 B copy: %.1f us submit to done\n",
	       lone_batch_ns(LANE_H2D_SMALL, x, 1, 63) * 1e-3);
	xfill(x, 1, r.dev, d1, 4096);
	printf("perf: h2d-large one 4 KiB copy: %.1f us submit to done\n",
	       lone_batch_ns(LANE_H2D_LARGE, x, 1, 63) * 1e-3);

	/* Does cutting a big copy into chunks on one stream buy anything? */
	xfill(x, 1, r.dev, d1, HALF);
	one = stream_gbs(LANE_H2D_LARGE, x, 1, 8);
	xfill(x, 8, r.dev, d1, HALF / 8);
	split = stream_gbs(LANE_H2D_LARGE, x, 8, 8);
	printf("perf: h2d-large 32 MiB: one copy %.1f GB/s, as 8 x 4 MiB %.1f GB/s\n", one, split);
	xfill(x, 1, d1, r.dev + HALF, HALF);
	printf("perf: d2h-large 32 MiB: %.1f GB/s\n", stream_gbs(LANE_D2H_LARGE, x, 1, 8));
	be.ops->xfer_stop(&be, 0);

	/* The same lone small batches through the copy server. */
	ck_assert_int_eq(backend_set_option(&be, BACKEND_OPT_COPY_SERVER, 1), 0);
	xfer_start0();
	xfill(x, 1, r.dev, d1, 4096);
	(void)lone_batch_ns(LANE_H2D_SMALL, x, 1, 7); /* the first launch */
	printf("perf: copy server: h2d-small one 4 KiB copy: %.1f us submit to done\n",
	       lone_batch_ns(LANE_H2D_SMALL, x, 1, 63) * 1e-3);
	xfill(x, 3, r.dev, d1, 4096);
	printf("perf: copy server: h2d-small batch of 3 x 4 KiB: %.1f us submit to done\n",
	       lone_batch_ns(LANE_H2D_SMALL, x, 3, 63) * 1e-3);
	xfill(x, 1, d1, r.dev + HALF, 4096);
	printf("perf: copy server: d2h-small one 4 KiB copy: %.1f us submit to done\n",
	       lone_batch_ns(LANE_D2H_SMALL, x, 1, 63) * 1e-3);
	xfill(x, 1, r.dev, d1, 256);
	printf("perf: copy server: h2d-small one 256 B copy: %.1f us submit to done\n",
	       lone_batch_ns(LANE_H2D_SMALL, x, 1, 63) * 1e-3);

	be.ops->xfer_stop(&be, 0);
	region_close(&r);
	release(d1);
	free(x);
}
END_TEST

static unsigned long long check_pattern(unsigned long long *counter, uint64_t addr, uint64_t len,
					uint32_t seed)
{
	unsigned long long n = ~0ULL;

	CK_CUDA(cudaMemset(counter, 0, sizeof(*counter)));
	ck_assert_int_eq(gpu_pattern_check((const void *)(uintptr_t)addr, len, seed, counter, 0),
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
	ck_assert_int_eq(gpu_pattern_fill((void *)(uintptr_t)(addr + off), len, pseed, 0), 0);
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

			ck_assert_int_eq(gpu_pattern_fill((void *)(uintptr_t)p, l, pseed ^ a, 0),
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

	tc = tcase_create("xfer");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_xfer_lanes, 0, 2);
	tcase_add_test(tc, test_xfer_server);
	tcase_add_test(tc, test_xfer_server_waits);
	tcase_add_test(tc, test_xfer_full);
	tcase_add_test(tc, test_xfer_perf);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *env = getenv("GPUQ_TEST_SEED");

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
	return gpu_test_main("test_cuda_backend", cuda_backend_suite());
}
