/* test_chan_gpu.h: test_chan_gpu's kernels, which send and receive on gpuq channels (test_chan_gpu.cu). */
#ifndef GPUQ_TEST_CHAN_GPU_H
#define GPUQ_TEST_CHAN_GPU_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "gpuq/gpuq_dev_chan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The test's message: who sent it (a global thread id), its number, and checks of both. */
struct chan_test_msg {
	uint32_t sender;
	uint32_t seq;
	uint64_t sum;  /* chan_test_sum(sender, seq) */
	uint64_t nsum; /* ~sum: a torn write shows */
	uint64_t pad;
};

#ifdef __CUDACC__
__host__ __device__
#endif
	static inline uint64_t
	chan_test_sum(uint32_t sender, uint32_t seq)
{
	uint64_t x = ((uint64_t)sender << 32 | seq) * 0x9e3779b97f4a7c15ull;
	return x ^ (x >> 29);
}

/* Mode 4's messages: a chan_test_msg, then bytes chan_test_byte(), chan_test_big_len() long in all (256..1024). */
#define CHAN_TEST_BIG_MAX 1024u
#ifdef __CUDACC__
__host__ __device__
#endif
	static inline uint32_t
	chan_test_big_len(uint32_t sender, uint32_t seq)
{
	return 256u + (sender * 13u + seq * 37u) % 769u;
}
/* Mode 5's messages: like mode 4's, 32..64 bytes long (for slots of the TAG format). */
#ifdef __CUDACC__
__host__ __device__
#endif
	static inline uint32_t
	chan_test_small_len(uint32_t sender, uint32_t seq)
{
	return 32u + (sender * 13u + seq * 37u) % 33u;
}
#ifdef __CUDACC__
__host__ __device__
#endif
	static inline uint8_t
	chan_test_byte(uint32_t sender, uint32_t seq, uint32_t i)
{
	return (uint8_t)(sender * 31u + seq * 7u + i * 3u);
}

/* Work items and results of the persistent worker. id CHAN_TEST_STOP ends a worker. */
#define CHAN_TEST_STOP 0xffffffffu
struct chan_test_work {
	uint32_t id;
	uint32_t x;
};
struct chan_test_result {
	uint32_t id;
	uint32_t y; /* x * x + 1 */
	uint32_t worker;
	uint32_t pad;
};

/*
 * blocks x threads senders (threads a multiple of 32), each sending
 * per_thread messages. mode 0: gpuq_dev_send; 1: gpuq_dev_send_warp; 2:
 * even blocks warp, odd blocks single; 3: gpuq_dev_send_active from odd
 * lanes only; 4: gpuq_dev_send_warp of mode 4's long messages, built in
 * global memory (the warp copies them together); 5: the same with
 * chan_test_small_len() messages (the warp writes its slots as one block).
 * Thread 0 of each block
 * calls gpuq_dev_chan_done at the end.
 */
cudaError_t chan_test_produce(struct gpuq_dev_chan c, unsigned blocks, unsigned threads,
			      unsigned per_thread, int mode, cudaStream_t stream);
/*
 * A persistent grid of blocks x warps workers (lane 0 of each warp): work
 * in, results out, until STOP. handles: even workers receive through a
 * gpuq_dev_receiver handle.
 */
cudaError_t chan_test_worker(struct gpuq_dev_chan in, struct gpuq_dev_chan out, unsigned blocks,
			     unsigned warps, int handles, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
