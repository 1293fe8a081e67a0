/* chan_persistent.cu: a persistent kernel fed with work from the CPU through one channel, results back through another. */
/*
 * The kernel is launched once and stays: lane 0 of each of its warps
 * receives work items from channel "work" (CPU to GPU), the warp computes
 * together, and lane 0 sends the result on "results" (GPU to CPU). The CPU
 * keeps the work ring full while it collects results, then sends one stop
 * item per worker. No launch per item: a work item reaches a waiting
 * kernel in about a microsecond.
 *
 * Usage: chan_persistent [--socket PATH]
 */
#include <gpuq/gpuq_device.cuh>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include <gpuq/gpuq.h>
#include <gpuq/gpuq_cuda.h>

#define BLOCKS 8
#define WARPS 4
#define WORKERS (BLOCKS * WARPS)
#define ITEMS 20000u
#define STOP 0xffffffffu

struct work {
	uint32_t id;
	uint32_t n; /* sum 1..n of k*k */
};
struct answer {
	uint32_t id;
	uint32_t worker;
	uint64_t sum;
};

__global__ void worker(gpuq_dev_chan in, gpuq_dev_chan out)
{
	unsigned lane = threadIdx.x % 32, w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;

	for (;;) {
		work item;
		if (lane == 0 && gpuq_dev_recv(in, &item, sizeof(item)) != (int)sizeof(item))
			item.id = STOP;
		item.id = __shfl_sync(0xffffffffu, item.id, 0);
		item.n = __shfl_sync(0xffffffffu, item.n, 0);
		if (item.id == STOP)
			return;
		uint64_t s = 0;
		for (uint32_t k = lane + 1; k <= item.n; k += 32)
			s += (uint64_t)k * k;
		for (int o = 16; o; o /= 2)
			s += __shfl_down_sync(0xffffffffu, s, o);
		if (lane == 0) {
			answer a = { item.id, w, s };
			gpuq_dev_send(out, &a, sizeof(a));
		}
	}
}

int main(int argc, char **argv)
{
	const char *sock = argc == 3 && !strcmp(argv[1], "--socket") ? argv[2] : NULL;
	gpuq_chan_t *in = NULL, *out = NULL;
	struct gpuq_dev_chan din = {}, dout = {};
	uint32_t sent = 0, got = 0, wrong = 0, i;
	unsigned per_worker[WORKERS] = { 0 };
	char wname[64], rname[64];
	cudaError_t err;
	gpuq_t *q = NULL;
	int r, rc = 1;

	/* Connect and join gpuqd's MPS server (if any) before the first CUDA call. */
	if ((r = gpuq_connect(sock, &q)) || (r = gpuq_mps_prepare_cuda(q)) < 0) {
		fprintf(stderr, "chan_persistent: connect: %s\n", strerror(-r));
		gpuq_close(q);
		return 1;
	}
	snprintf(wname, sizeof(wname), "work.%d", (int)getpid());
	snprintf(rname, sizeof(rname), "results.%d", (int)getpid());
	if ((r = gpuq_chan_create(q, wname, sizeof(struct work), 256, GPUQ_CHAN_CPU_TO_GPU, &in)) ||
	    (r = gpuq_chan_create(q, rname, sizeof(struct answer), 256, GPUQ_CHAN_GPU_TO_CPU,
				  &out)) ||
	    /* This process's kernels are the work channel's only receivers and the results' only senders. */
	    (r = gpuq_chan_map_cuda_receiver(in, &din)) ||
	    (r = gpuq_chan_map_cuda_sender(out, &dout))) {
		fprintf(stderr, "chan_persistent: set-up: %s\n", strerror(-r));
		goto out;
	}
	worker<<<BLOCKS, WARPS * 32>>>(din, dout);
	if ((err = cudaGetLastError()) != cudaSuccess) {
		fprintf(stderr, "chan_persistent: launch: %s\n", cudaGetErrorString(err));
		goto out;
	}
	while (got < ITEMS) {
		struct answer a;
		ssize_t n;

		/* Top up the work ring without waiting, then take whatever results are there. */
		while (sent < ITEMS) {
			struct work w = { sent, 1000 + sent % 1000 };
			if (gpuq_chan_send(in, &w, sizeof(w), 0) < 0)
				break;
			sent++;
		}
		n = gpuq_chan_recv(out, &a, sizeof(a), sent < ITEMS ? 0 : 10000);
		if (n == -EAGAIN)
			continue;
		if (n != (ssize_t)sizeof(a)) {
			fprintf(stderr, "chan_persistent: recv: %s\n",
				n < 0 ? strerror((int)-n) : "short message");
			break;
		}
		uint64_t m = 1000 + a.id % 1000;
		wrong += a.sum != m * (m + 1) * (2 * m + 1) / 6;
		per_worker[a.worker % WORKERS]++;
		got++;
	}
	for (i = 0; i < WORKERS; i++) {
		struct work w = { STOP, 0 };
		gpuq_chan_send(in, &w, sizeof(w), -1);
	}
	if ((err = cudaDeviceSynchronize()) != cudaSuccess)
		fprintf(stderr, "chan_persistent: kernel: %s\n", cudaGetErrorString(err));
	printf("chan_persistent: %u results from %d workers, %u wrong\n", got, WORKERS, wrong);
	for (i = 0; i < WORKERS; i += 8)
		printf("  workers %2u-%2u handled %u %u %u %u %u %u %u %u\n", i, i + 7,
		       per_worker[i], per_worker[i + 1], per_worker[i + 2], per_worker[i + 3],
		       per_worker[i + 4], per_worker[i + 5], per_worker[i + 6], per_worker[i + 7]);
	rc = got == ITEMS && !wrong && err == cudaSuccess ? 0 : 1;
out:
	if (din.dev_rx)
		gpuq_chan_unmap_cuda_receiver(in, &din);
	if (dout.dev_tail)
		gpuq_chan_unmap_cuda_sender(out, &dout);
	gpuq_chan_close(in);
	gpuq_chan_close(out);
	gpuq_close(q);
	return rc;
}
