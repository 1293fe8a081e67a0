/* copy_server.cu: the copy server, a persistent block serving small batches (kern_copy_server). */
#include <errno.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels.h"
#include "copy_span.cuh"
#include "launch.cuh"

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
	copy_server_kernel(const uint64_t *ring, unsigned nslots, struct gpuq_cs_done done,
			   uint32_t first, uint64_t *gone, uint64_t gen)
{
	__shared__ uint32_t w[GPUQ_CS_WORDS];
	const unsigned lane = threadIdx.x & 31;
	uint64_t last = __shfl_sync(FULL_MASK, globaltimer(), 0);

	/* Running: say so (gone[1]), so gpuqd hands commands to this server rather than waiting for it. */
	if (threadIdx.x == 0)
		asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(gone + 1), "l"(gen)
			     : "memory");

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
				asm volatile("ld.volatile.global.u64 %0, [%1];"
					     : "=l"(v)
					     : "l"(slot + lane)
					     : "memory");
				uint32_t d = (uint32_t)v, hdr = __shfl_sync(FULL_MASK, d, 0);
				unsigned op = hdr & 15,
					 need = op == GPUQ_CS_OP_BATCH ? 3 + 5 * (hdr >> 8) : 1;
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
				asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(gone),
					     "l"((1ull << 32) | from)
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
					  (const uint8_t *)(((uint64_t)e[1] << 32) | e[0]), e[4],
					  threadIdx.x, CS_THREADS);
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

extern "C" int kern_copy_server(const uint64_t *ring, unsigned nslots, struct gpuq_cs_done done,
				uint32_t first, uint64_t *gone, uint64_t gen, cudaStream_t stream)
{
	if (!ring || ((uintptr_t)ring & 7) || !nslots || !gone || ((uintptr_t)gone & 7))
		return -EINVAL;
	clear_stale_error();
	copy_server_kernel<<<1, CS_THREADS, 0, stream>>>(ring, nslots, done, first, gone, gen);
	return launch_result("copy_server_kernel");
}
