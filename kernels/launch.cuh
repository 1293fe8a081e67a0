/* launch.cuh: launch checks and grid sizing shared by gpuq's kernel launchers. */
#ifndef GPUQ_KERNELS_LAUNCH_CUH
#define GPUQ_KERNELS_LAUNCH_CUH

#include <errno.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels.h"

/*
 * Grid cap: the kernels stride over their work, so more blocks than an H100
 * or H200 holds at once buys nothing; it also keeps launches cheap.
 */
#define MAX_BLOCKS 4096

/* Reports a failed launch through kern_set_log's function (launch.cu). */
void kern_report_launch(const char *kernel, cudaError_t err);

/*
 * Clears an error left by an unrelated earlier call on this thread, so the
 * check after the launch blames the launch only for its own failure. A
 * sticky error (a crashed context) is not cleared: the launch reports it.
 */
static inline void clear_stale_error(void)
{
	(void)cudaGetLastError();
}

static inline int launch_result(const char *kernel)
{
	cudaError_t err = cudaGetLastError();

	if (err != cudaSuccess) {
		kern_report_launch(kernel, err);
		return -EIO;
	}
	return 0;
}

static inline unsigned grid_for(uint64_t units, unsigned per_block, unsigned cap)
{
	uint64_t blocks = (units + per_block - 1) / per_block;

	if (blocks == 0)
		blocks = 1;
	return blocks > cap ? cap : (unsigned)blocks;
}

#endif
