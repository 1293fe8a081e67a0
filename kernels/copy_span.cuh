/* copy_span.cuh: the device-side copy loop the batch kernel and the copy server share. */
#ifndef GPUQ_KERNELS_COPY_SPAN_CUH
#define GPUQ_KERNELS_COPY_SPAN_CUH

#include <stdint.h>

#define FULL_MASK 0xffffffffu
/* 16-byte chunks each thread has in flight: hides memory (and PCIe) latency. */
#define CB_UNROLL 4

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

#endif
