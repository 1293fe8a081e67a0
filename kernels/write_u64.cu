/* write_u64.cu: the one-thread kernel that writes a completion word (kern_write_u64). */
#include <errno.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels.h"
#include "launch.cuh"

/* One thread: the store is ordered after everything earlier on the stream by the stream itself. */
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
