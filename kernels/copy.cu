/* copy.cu: the batched small-copy kernel and the test-pattern fill/check kernels. */
#include <errno.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels.h"

extern "C" {
#include "../daemon/log.h"
}

#define FULL_MASK 0xffffffffu

/* copy_batch: one block of CB_WARPS warps takes CB_WARPS descriptors at a time. */
#define CB_WARPS 8
#define CB_THREADS (CB_WARPS * 32)
/* Copies up to this many bytes get one warp; larger ones the whole block. */
#define CB_SMALL_MAX GPUQ_COPY_WARP_MAX
/* 16-byte chunks each thread has in flight: hides memory (and PCIe) latency. */
#define CB_UNROLL 4

/* fill/check pattern kernels. */
#define PAT_THREADS 256

/*
 * Grid cap: the kernels stride over their work, so more blocks than an H100
 * or H200 holds at once buys nothing; it also keeps launches cheap.
 */
#define MAX_BLOCKS 4096

/* Devices whose copy_batch grid size is remembered (ordinals beyond use MAX_BLOCKS). */
#define GRID_CACHE_DEVICES 64

/* The 16 bytes at byte offset k (1..15) of the 32 bytes a:b (little-endian). */
static __device__ __forceinline__ uint4 merge16(uint4 a, uint4 b, unsigned k)
{
	unsigned s = (k & 3) * 8;
	uint32_t x0, x1, x2, x3, x4;

	switch (k >> 2) {
	case 0: x0 = a.x, x1 = a.y, x2 = a.z, x3 = a.w, x4 = b.x; break;
	case 1: x0 = a.y, x1 = a.z, x2 = a.w, x3 = b.x, x4 = b.y; break;
	case 2: x0 = a.z, x1 = a.w, x2 = b.x, x3 = b.y, x4 = b.z; break;
	default: x0 = a.w, x1 = b.x, x2 = b.y, x3 = b.z, x4 = b.w; break;
	}
	return make_uint4(__funnelshift_r(x0, x1, s), __funnelshift_r(x1, x2, s),
			  __funnelshift_r(x2, x3, s), __funnelshift_r(x3, x4, s));
}

/*
 * Copies len bytes from src to dst with a team of nthr threads (a multiple
 * of 32; this thread is tid of them). Every lane of each warp of the team
 * must call it: the misaligned path passes data between lanes.
 *
 * dst is brought to 16-byte alignment with a few single bytes; then every
 * store is 16 bytes. When src is then 16-byte aligned too, every load is 16
 * bytes; otherwise each thread loads the aligned 16-byte block holding its
 * first source byte, takes the following block from its neighbour lane and
 * shifts the two into place, so a misaligned copy costs the same memory
 * traffic as an aligned one. No load touches a 16-byte block that holds no
 * byte of the source range.
 */
static __device__ __forceinline__ void copy_span(uint8_t *dst, const uint8_t *src, uint64_t len,
						 unsigned tid, unsigned nthr)
{
	const unsigned lane = tid & 31;
	uint64_t head, nchunks;
	unsigned k;

	head = (16 - ((uintptr_t)dst & 15)) & 15;
	if (head > len)
		head = len;
	if (tid < head)
		dst[tid] = src[tid];
	dst += head;
	src += head;
	len -= head;

	uint4 *d4 = (uint4 *)dst;
	k = (unsigned)((uintptr_t)src & 15);
	if (k == 0) {
		const uint4 *s4 = (const uint4 *)src;

		nchunks = len >> 4;
		for (uint64_t base = 0; base < nchunks; base += (uint64_t)CB_UNROLL * nthr) {
			uint4 v[CB_UNROLL];
#pragma unroll
			for (unsigned u = 0; u < CB_UNROLL; u++) {
				uint64_t c = base + u * nthr + tid;
				if (c < nchunks)
					v[u] = s4[c];
			}
#pragma unroll
			for (unsigned u = 0; u < CB_UNROLL; u++) {
				uint64_t c = base + u * nthr + tid;
				if (c < nchunks)
					d4[c] = v[u];
			}
		}
	} else {
		/* Block c of s4 holds source bytes 16c-k .. 16c+15-k; chunk c needs blocks c and c+1. */
		const uint4 *s4 = (const uint4 *)(src - k);

		/* Stop where block c+1 would run past the source's last byte. */
		nchunks = len + k >= 16 ? (len + k - 16) >> 4 : 0;
		for (uint64_t base = 0; base < nchunks; base += (uint64_t)CB_UNROLL * nthr) {
			uint4 a[CB_UNROLL], b;
#pragma unroll
			for (unsigned u = 0; u < CB_UNROLL; u++) {
				uint64_t c = base + u * nthr + tid;
				if (c < nchunks)
					a[u] = s4[c];
			}
#pragma unroll
			for (unsigned u = 0; u < CB_UNROLL; u++) {
				uint64_t c = base + u * nthr + tid;

				/* Lane l+1 holds chunk c+1 (uniform loop: all lanes are here). */
				b.x = __shfl_down_sync(FULL_MASK, a[u].x, 1);
				b.y = __shfl_down_sync(FULL_MASK, a[u].y, 1);
				b.z = __shfl_down_sync(FULL_MASK, a[u].z, 1);
				b.w = __shfl_down_sync(FULL_MASK, a[u].w, 1);
				if (c < nchunks) {
					if (lane == 31 || c + 1 >= nchunks)
						b = s4[c + 1];
					d4[c] = merge16(a[u], b, k);
				}
			}
		}
	}

	for (uint64_t i = nchunks * 16 + tid; i < len; i += nthr)
		dst[i] = src[i];
}

/*
 * Each block stages CB_WARPS descriptors in shared memory; each warp copies
 * its descriptor when small, then the whole block copies the large ones in
 * turn, so neither a 64-byte nor a 100-KiB copy leaves most lanes idle.
 * The descriptors usually sit in mapped host memory, a PCIe round trip
 * away: a block that strides to a second round loads that round's
 * descriptors before it copies the current ones.
 */
static __global__ void __launch_bounds__(CB_THREADS)
	copy_batch_kernel(const struct gpuq_copy_desc *__restrict__ descs, unsigned n)
{
	__shared__ uint64_t sd[CB_WARPS][3];
	const unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const uint64_t *raw = (const uint64_t *)descs;
	const uint64_t stride = (uint64_t)gridDim.x * CB_WARPS;
	uint64_t base = (uint64_t)blockIdx.x * CB_WARPS, next = 0;

	if (base < n && threadIdx.x < (n - base < CB_WARPS ? n - base : CB_WARPS) * 3)
		next = raw[base * 3 + threadIdx.x];
	for (; base < n; base += stride) {
		unsigned cnt = n - base < CB_WARPS ? (unsigned)(n - base) : CB_WARPS;
		uint64_t nb = base + stride;

		if (threadIdx.x < cnt * 3)
			(&sd[0][0])[threadIdx.x] = next;
		__syncthreads();
		if (nb < n && threadIdx.x < (n - nb < CB_WARPS ? n - nb : CB_WARPS) * 3)
			next = raw[nb * 3 + threadIdx.x];

		if (warp < cnt && sd[warp][2] <= CB_SMALL_MAX)
			copy_span((uint8_t *)sd[warp][1], (const uint8_t *)sd[warp][0], sd[warp][2],
				  lane, 32);
		for (unsigned i = 0; i < cnt; i++)
			if (sd[i][2] > CB_SMALL_MAX)
				copy_span((uint8_t *)sd[i][1], (const uint8_t *)sd[i][0], sd[i][2],
					  threadIdx.x, CB_THREADS);
		/* sd is overwritten next round. */
		__syncthreads();
	}
}

/*
 * The copy server's block. It leaves after CS_IDLE_NS without a command
 * (calls that wait for the whole device, cudaFree, cudaHostUnregister,
 * must not wait for ever); gpuqd also stops it now and then with a STOP.
 */
#define CS_THREADS 256
#define CS_IDLE_NS 200000ull
#define CS_OP_LEAVE 15u

static __device__ __forceinline__ uint64_t globaltimer(void)
{
	uint64_t t;

	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}

/*
 * The copy server (kernels.h). Warp 0 polls the next command's slot: each
 * lane reads one word, so a whole command arrives in one bus round trip,
 * and a word whose tag is not the command's is one still on its way. The
 * block then copies the command's descriptors in turn, every thread
 * fences system-wide, and thread 0 publishes the batch's sequence number.
 * One warp polls: four polling 300 ns apart were slower (a 4 KiB copy
 * through gpuqd took 9.8 us against 5.6 on an H200).
 */
static __global__ void __launch_bounds__(CS_THREADS)
	copy_server_kernel(const uint64_t *ring, unsigned nslots, struct gpuq_cs_done done, uint32_t first,
			   uint64_t *gone, uint64_t gen)
{
	__shared__ uint32_t w[GPUQ_CS_WORDS];
	const unsigned lane = threadIdx.x & 31;
	uint64_t last = __shfl_sync(FULL_MASK, globaltimer(), 0);

	/* Running: say so (gone[1]), so gpuqd hands commands to this server rather than waiting for it. */
	if (threadIdx.x == 0)
		asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(gone + 1), "l"(gen) : "memory");

	for (uint32_t c = first;; c++) {
		if (threadIdx.x < 32) {
			const uint64_t *slot = ring + (uint64_t)((c - 1) % nslots) * GPUQ_CS_WORDS;

			for (;;) {
				/* The warp's decisions follow lane 0's clock, so the shuffles see every lane. */
				uint64_t v, now = __shfl_sync(FULL_MASK, globaltimer(), 0);

				if (now - last > CS_IDLE_NS) {
					w[0] = CS_OP_LEAVE;
					break;
				}
				asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(v) : "l"(slot + lane) : "memory");
				uint32_t d = (uint32_t)v, hdr = __shfl_sync(FULL_MASK, d, 0);
				unsigned op = hdr & 15, need = op == GPUQ_CS_OP_BATCH ? 3 + 5 * (hdr >> 8) : 1;
				bool ok = (uint32_t)(v >> 32) == c;

				/* Lane 0's tag first: before it matches, hdr may be any earlier command's. */
				if (__shfl_sync(FULL_MASK, ok, 0) && need <= GPUQ_CS_WORDS &&
				    __all_sync(FULL_MASK, ok || lane >= need)) {
					w[lane] = d;
					break;
				}
			}
		}
		__syncthreads();
		const unsigned op = w[0] & 15, ln = (w[0] >> 4) & 15, n = w[0] >> 8;

		if (op == CS_OP_LEAVE || op == GPUQ_CS_OP_STOP) {
			/* Commands before this one (a STOP: and it) are done; the rest wait for the next server. */
			uint32_t from = op == GPUQ_CS_OP_STOP ? c + 1 : c;

			if (threadIdx.x == 0)
				asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(gone), "l"((1ull << 32) | from)
					     : "memory");
			return;
		}
		if (op == GPUQ_CS_OP_BATCH && n <= GPUQ_CS_MAX_DESCS && ln < GPUQ_CS_LANES) {
			/*
			 * Acquire before reading the sources: this block lives for
			 * many batches, and a line an earlier batch pulled into L1
			 * (the same arena bytes, since rewritten by the client)
			 * must not be read again. A kernel launch would start clean.
			 */
			__threadfence_system();
			for (unsigned i = 0; i < n; i++) {
				const uint32_t *e = &w[3 + 5 * i];

				copy_span((uint8_t *)(((uint64_t)e[3] << 32) | e[2]),
					  (const uint8_t *)(((uint64_t)e[1] << 32) | e[0]), e[4], threadIdx.x,
					  CS_THREADS);
			}
			__threadfence_system();
		}
		__syncthreads();
		if (threadIdx.x == 0 && ln < GPUQ_CS_LANES && done.word[ln])
			asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(done.word[ln]),
				     "l"(((uint64_t)w[2] << 32) | w[1])
				     : "memory");
		last = __shfl_sync(FULL_MASK, globaltimer(), 0);
		/* w is rewritten for the next command only after every thread has read it. */
		__syncthreads();
	}
}

/* The pattern's 16 bytes at range offset o (any o). */
static __device__ __forceinline__ uint4 pattern16(uint64_t o, uint32_t seed)
{
	uint64_t w = o >> 2;
	unsigned s = (unsigned)(o & 3) * 8;
	uint32_t h0, h1, h2, h3, h4;

	h0 = gpuq_pattern_word(w, seed);
	h1 = gpuq_pattern_word(w + 1, seed);
	h2 = gpuq_pattern_word(w + 2, seed);
	h3 = gpuq_pattern_word(w + 3, seed);
	if (s == 0)
		return make_uint4(h0, h1, h2, h3);
	h4 = gpuq_pattern_word(w + 4, seed);
	return make_uint4(__funnelshift_r(h0, h1, s), __funnelshift_r(h1, h2, s),
			  __funnelshift_r(h2, h3, s), __funnelshift_r(h3, h4, s));
}

/* Splits [p, p+len) into single head bytes, 16-byte aligned chunks and tail bytes. */
static __device__ __forceinline__ void split16(uintptr_t p, uint64_t len, uint64_t *head,
					       uint64_t *nchunks)
{
	uint64_t h = (16 - (p & 15)) & 15;

	if (h > len)
		h = len;
	*head = h;
	*nchunks = (len - h) >> 4;
}

static __global__ void __launch_bounds__(PAT_THREADS)
	fill_kernel(uint8_t *dst, uint64_t len, uint32_t seed)
{
	const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	const uint64_t nthr = (uint64_t)gridDim.x * blockDim.x;
	uint64_t head, nchunks, body_end;

	split16((uintptr_t)dst, len, &head, &nchunks);
	body_end = head + nchunks * 16;
	if (tid < head)
		dst[tid] = gpuq_pattern_byte(tid, seed);
	if (tid < len - body_end)
		dst[body_end + tid] = gpuq_pattern_byte(body_end + tid, seed);

	uint4 *d4 = (uint4 *)(dst + head);
	for (uint64_t c = tid; c < nchunks; c += nthr)
		d4[c] = pattern16(head + c * 16, seed);
}

static __device__ __forceinline__ unsigned bytes_differing(uint32_t a, uint32_t b)
{
	/* __vcmpne4 sets each differing byte to 0xff. */
	return (unsigned)__popc(__vcmpne4(a, b)) >> 3;
}

static __global__ void __launch_bounds__(PAT_THREADS)
	check_kernel(const uint8_t *src, uint64_t len, uint32_t seed,
		     unsigned long long *mismatches)
{
	const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	const uint64_t nthr = (uint64_t)gridDim.x * blockDim.x;
	uint64_t head, nchunks, body_end;
	unsigned long long bad = 0;

	split16((uintptr_t)src, len, &head, &nchunks);
	body_end = head + nchunks * 16;
	if (tid < head)
		bad += src[tid] != gpuq_pattern_byte(tid, seed);
	if (tid < len - body_end)
		bad += src[body_end + tid] != gpuq_pattern_byte(body_end + tid, seed);

	const uint4 *s4 = (const uint4 *)(src + head);
	for (uint64_t c = tid; c < nchunks; c += nthr) {
		uint4 v = s4[c], e = pattern16(head + c * 16, seed);

		bad += bytes_differing(v.x, e.x) + bytes_differing(v.y, e.y) +
		       bytes_differing(v.z, e.z) + bytes_differing(v.w, e.w);
	}

	/* One atomic per warp, and none from clean warps. */
	for (unsigned off = 16; off > 0; off >>= 1)
		bad += __shfl_down_sync(FULL_MASK, bad, off);
	if ((threadIdx.x & 31) == 0 && bad != 0)
		atomicAdd(mismatches, bad);
}

/*
 * Clears an error left by an unrelated earlier call on this thread, so the
 * check after the launch blames the launch only for its own failure. A
 * sticky error (a crashed context) is not cleared: the launch reports it.
 */
static void clear_stale_error(void)
{
	(void)cudaGetLastError();
}

static int launch_result(const char *kernel)
{
	cudaError_t err = cudaGetLastError();

	if (err != cudaSuccess) {
		log_err("%s launch: cudaGetLastError: %s", kernel, cudaGetErrorString(err));
		return -EIO;
	}
	return 0;
}

static unsigned grid_for(uint64_t units, unsigned per_block, unsigned cap)
{
	uint64_t blocks = (units + per_block - 1) / per_block;

	if (blocks == 0)
		blocks = 1;
	return blocks > cap ? cap : (unsigned)blocks;
}

/*
 * The most copy_batch blocks the current device runs at once (SMs times
 * resident blocks per SM), asked once per device: a larger grid only
 * queues blocks behind the first wave. MAX_BLOCKS when unknown.
 */
static unsigned copy_batch_grid_cap(void)
{
	static unsigned cache[GRID_CACHE_DEVICES];
	int dev = -1, sms = 0, per_sm = 0;
	unsigned cap;

	if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= GRID_CACHE_DEVICES) {
		clear_stale_error();
		return MAX_BLOCKS;
	}
	cap = __atomic_load_n(&cache[dev], __ATOMIC_RELAXED);
	if (cap)
		return cap;
	if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
	    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, copy_batch_kernel, CB_THREADS,
							  0) != cudaSuccess ||
	    sms <= 0 || per_sm <= 0) {
		clear_stale_error();
		return MAX_BLOCKS;
	}
	cap = (unsigned)sms * (unsigned)per_sm;
	if (cap > MAX_BLOCKS)
		cap = MAX_BLOCKS;
	/* Threads racing here compute the same value. */
	__atomic_store_n(&cache[dev], cap, __ATOMIC_RELAXED);
	return cap;
}

extern "C" int kern_copy_batch(const struct gpuq_copy_desc *descs, unsigned n, cudaStream_t stream)
{
	unsigned grid;

	if (n == 0)
		return 0;
	if (!descs || ((uintptr_t)descs & 7))
		return -EINVAL;
	grid = grid_for(n, CB_WARPS, copy_batch_grid_cap());
	clear_stale_error();
	copy_batch_kernel<<<grid, CB_THREADS, 0, stream>>>(descs, n);
	return launch_result("copy_batch_kernel");
}

/* One thread: the store is ordered after everything earlier on the stream by the stream itself. */
extern "C" int kern_copy_server(const uint64_t *ring, unsigned nslots, struct gpuq_cs_done done, uint32_t first,
				uint64_t *gone, uint64_t gen, cudaStream_t stream)
{
	if (!ring || ((uintptr_t)ring & 7) || !nslots || !gone || ((uintptr_t)gone & 7))
		return -EINVAL;
	clear_stale_error();
	copy_server_kernel<<<1, CS_THREADS, 0, stream>>>(ring, nslots, done, first, gone, gen);
	return launch_result("copy_server_kernel");
}

static __global__ void write_u64_kernel(volatile uint64_t *dst, uint64_t value)
{
	__threadfence_system();
	*dst = value;
	__threadfence_system();
}

extern "C" int kern_write_u64(uint64_t *dst, uint64_t value, cudaStream_t stream)
{
	if (!dst || ((uintptr_t)dst & 7))
		return -EINVAL;
	clear_stale_error();
	write_u64_kernel<<<1, 1, 0, stream>>>(dst, value);
	return launch_result("write_u64_kernel");
}

extern "C" int kern_fill_pattern(void *dst, uint64_t len, uint32_t seed, cudaStream_t stream)
{
	if (len == 0)
		return 0;
	if (!dst)
		return -EINVAL;
	clear_stale_error();
	fill_kernel<<<grid_for(len / 16, PAT_THREADS, MAX_BLOCKS), PAT_THREADS, 0, stream>>>(
		(uint8_t *)dst, len, seed);
	return launch_result("fill_kernel");
}

extern "C" int kern_check_pattern(const void *src, uint64_t len, uint32_t seed,
				  unsigned long long *mismatches, cudaStream_t stream)
{
	if (len == 0)
		return 0;
	if (!src || !mismatches || ((uintptr_t)mismatches & 7))
		return -EINVAL;
	clear_stale_error();
	check_kernel<<<grid_for(len / 16, PAT_THREADS, MAX_BLOCKS), PAT_THREADS, 0, stream>>>(
		(const uint8_t *)src, len, seed, mismatches);
	return launch_result("check_kernel");
}
