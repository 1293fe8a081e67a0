/* copy_batch.cu: the batched small-copy kernel (kern_copy_batch). */
#include <errno.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels.h"
#include "copy_span.cuh"
#include "launch.cuh"

/* copy_batch: one block of CB_WARPS warps takes CB_WARPS descriptors at a time. */
#define CB_WARPS 8
#define CB_THREADS (CB_WARPS * 32)
/* Copies up to this many bytes get one warp; larger ones the whole block. */
#define CB_SMALL_MAX GPUQ_COPY_WARP_MAX

/* Devices whose copy_batch grid size is remembered (ordinals beyond use MAX_BLOCKS). */
#define GRID_CACHE_DEVICES 64

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
