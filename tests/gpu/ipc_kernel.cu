/* ipc_kernel.cu: test_ipc's own kernel, run by the client process on memory gpuqd delivered. */
#include "ipc_kernel.h"

static __global__ void transform_kernel(const uint32_t *in, uint32_t *out, size_t n)
{
	size_t stride = (size_t)gridDim.x * blockDim.x;

	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
		out[i] = in[i] * 3u + 1u;
}

extern "C" cudaError_t test_ipc_transform(const uint32_t *in, uint32_t *out, size_t n,
					  cudaStream_t stream)
{
	const unsigned threads = 256;
	size_t blocks = (n + threads - 1) / threads;

	if (n == 0)
		return cudaSuccess;
	if (blocks > 4096)
		blocks = 4096;
	transform_kernel<<<(unsigned)blocks, threads, 0, stream>>>(in, out, n);
	return cudaGetLastError();
}
