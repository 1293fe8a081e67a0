/* ipc_kernel.h: test_ipc's own kernel, standing in for a gpuq client's CUDA code. */
#ifndef GPUQ_TEST_IPC_KERNEL_H
#define GPUQ_TEST_IPC_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * out[i] = in[i] * 3 + 1 (mod 2^32) for i < n, launched on stream on the
 * calling thread's current device. in and out are device pointers of that
 * device (here: gpuq buffers mapped with gpuq_buf_map_cuda); they may be the
 * same. Returns the launch's error; completion is the caller's to wait for.
 */
cudaError_t test_ipc_transform(const uint32_t *in, uint32_t *out, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
