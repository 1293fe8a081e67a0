/* pattern.cu: kernels that fill device memory with the test pattern and count bytes off it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include <cuda_runtime.h>

#include "pattern.h"

#define FULL_MASK 0xffffffffu
#define PAT_THREADS 256
/* The kernels stride over their work: more blocks than a GPU holds at once buy nothing. */
#define MAX_BLOCKS 4096

static unsigned grid_for(uint64_t units, unsigned per_block, unsigned cap)
{
	uint64_t blocks = (units + per_block - 1) / per_block;

	if (blocks == 0)
		blocks = 1;
	return blocks > cap ? cap : (unsigned)blocks;
}

/* Clears an earlier call's error, so the check after a launch sees the launch's own. */
static void clear_stale_error(void)
{
	(void)cudaGetLastError();
}

static int launch_result(const char *kernel)
{
	cudaError_t err = cudaGetLastError();

	if (err != cudaSuccess) {
		fprintf(stderr, "%s launch: cudaGetLastError: %s\n", kernel,
			cudaGetErrorString(err));
		return -EIO;
	}
	return 0;
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

extern "C" int gpu_pattern_fill(void *dst, uint64_t len, uint32_t seed, cudaStream_t stream)
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

extern "C" int gpu_pattern_check(const void *src, uint64_t len, uint32_t seed,
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
