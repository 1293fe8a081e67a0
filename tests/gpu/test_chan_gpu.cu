/* test_chan_gpu.cu: test_chan_gpu's kernels: many warps sending checksummed messages, and a persistent worker. */
#include <gpuq/gpuq_device.cuh>

#include "test_chan_gpu.h"

__global__ void produce_kernel(gpuq_dev_chan c, unsigned per_thread, int mode)
{
	uint32_t sender = blockIdx.x * blockDim.x + threadIdx.x;
	bool warp = mode == 1 || (mode == 2 && !(blockIdx.x & 1));

	for (uint32_t i = 0; i < per_thread; i++) {
		chan_test_msg m;
		m.sender = sender;
		m.seq = i;
		m.sum = chan_test_sum(sender, i);
		m.nsum = ~m.sum;
		m.pad = 0;
		if (mode == 3) {
			if (threadIdx.x & 1)
				gpuq_dev_send_active(c, &m, sizeof(m));
			else
				gpuq_dev_send(c, &m, sizeof(m));
		} else if (warp) {
			gpuq_dev_send_warp(c, &m, sizeof(m));
		} else {
			gpuq_dev_send(c, &m, sizeof(m));
		}
	}
	__syncthreads();
	if (threadIdx.x == 0)
		gpuq_dev_chan_done(c);
}

__global__ void produce_big_kernel(gpuq_dev_chan c, unsigned per_thread, uint8_t *scratch,
				   int small)
{
	uint32_t sender = blockIdx.x * blockDim.x + threadIdx.x;
	uint8_t *my = scratch + (size_t)sender * CHAN_TEST_BIG_MAX;

	for (uint32_t i = 0; i < per_thread; i++) {
		chan_test_msg m;
		uint32_t len =
			small ? chan_test_small_len(sender, i) : chan_test_big_len(sender, i);

		m.sender = sender;
		m.seq = i;
		m.sum = chan_test_sum(sender, i);
		m.nsum = ~m.sum;
		m.pad = 0;
		memcpy(my, &m, sizeof(m));
		for (uint32_t j = sizeof(m); j < len; j++)
			my[j] = chan_test_byte(sender, i, j);
		gpuq_dev_send_warp(c, my, len);
	}
	__syncthreads();
	if (threadIdx.x == 0)
		gpuq_dev_chan_done(c);
}

/* Lane 0 of each warp is a worker; with handles, even workers receive through a receiver handle (some never end it). */
__global__ void worker_kernel(gpuq_dev_chan in, gpuq_dev_chan out, int handles)
{
	uint32_t worker = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	bool handle = handles && worker % 2 == 0;
	gpuq_dev_receiver hr = gpuq_dev_receiver_begin(in);

	if (threadIdx.x % 32)
		return;
	for (;;) {
		chan_test_work w;
		int n = handle ? gpuq_dev_receiver_recv(&hr, &w, sizeof(w)) :
				 gpuq_dev_recv(in, &w, sizeof(w));
		if (n != (int)sizeof(w) || w.id == CHAN_TEST_STOP)
			break;
		chan_test_result r = { w.id, w.x * w.x + 1, worker, 0 };
		gpuq_dev_send(out, &r, sizeof(r));
	}
	if (worker % 4 == 0)
		gpuq_dev_receiver_end(&hr);
}

extern "C" cudaError_t chan_test_produce(struct gpuq_dev_chan c, unsigned blocks, unsigned threads,
					 unsigned per_thread, int mode, cudaStream_t stream)
{
	if (mode == 4 || mode == 5) {
		static uint8_t *scratch;
		static size_t have;
		size_t need = (size_t)blocks * threads * CHAN_TEST_BIG_MAX;

		if (have < need) {
			cudaFree(scratch);
			scratch = NULL;
			have = 0;
			cudaError_t e = cudaMalloc(&scratch, need);
			if (e != cudaSuccess)
				return e;
			have = need;
		}
		produce_big_kernel<<<blocks, threads, 0, stream>>>(c, per_thread, scratch,
								   mode == 5);
		return cudaGetLastError();
	}
	produce_kernel<<<blocks, threads, 0, stream>>>(c, per_thread, mode);
	return cudaGetLastError();
}

extern "C" cudaError_t chan_test_worker(struct gpuq_dev_chan in, struct gpuq_dev_chan out,
					unsigned blocks, unsigned warps, int handles,
					cudaStream_t stream)
{
	worker_kernel<<<blocks, warps * 32, 0, stream>>>(in, out, handles);
	return cudaGetLastError();
}
