/* chan_stream.cu: a kernel streams results to a CPU consumer process through a gpuq channel. */
/*
 * The producer creates channel "chan-stream.<pid>" (GPU to CPU), forks a
 * consumer before touching CUDA, maps the channel and launches a kernel in
 * which every warp computes results and sends them with one tail update
 * per 32 messages (gpuq_dev_send_warp). The consumer, a separate gpuq
 * client, opens the channel by name and prints its progress. The ring is
 * much smaller than the stream: the kernel waits whenever the consumer
 * falls behind.
 *
 * Usage: chan_stream [--socket PATH] (a running gpuqd; default socket otherwise)
 */
#include <gpuq/gpuq_device.cuh>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include <gpuq/gpuq.h>
#include <gpuq/gpuq_cuda.h>

#define BLOCKS 64
#define THREADS 256
#define PER_THREAD 64
#define TOTAL ((uint64_t)BLOCKS * THREADS * PER_THREAD)

/* One result: which element, and a value computed from it. */
struct result {
	uint64_t index;
	double value;
	uint32_t thread;
	uint32_t pad[3];
};

__global__ void produce(gpuq_dev_chan ch)
{
	uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;

	for (uint32_t i = 0; i < PER_THREAD; i++) {
		uint64_t index = (uint64_t)i * gridDim.x * blockDim.x + t;
		result r = { index, sqrt((double)index), t, { 0, 0, 0 } };
		gpuq_dev_send_warp(ch, &r, sizeof(r)); /* the loop keeps the warp converged */
	}
	__syncthreads();
	if (threadIdx.x == 0)
		gpuq_dev_chan_done(ch);
}

/* The consumer: its own gpuq session; finds the channel by name. */
static int consume(const char *sock, const char *name)
{
	gpuq_chan_t *ch = NULL;
	gpuq_t *q = NULL;
	uint64_t got = 0, bad = 0;
	struct result r[64];
	size_t lens[64];
	int n, i;

	if ((n = gpuq_connect(sock, &q)) || (n = gpuq_chan_open(q, name, GPUQ_CHAN_RECV, &ch))) {
		fprintf(stderr, "consumer: %s\n", strerror(-n));
		return 1;
	}
	while (got < TOTAL) {
		n = gpuq_chan_recv_batch(ch, r, sizeof(r[0]), lens, 64, 10000);
		if (n < 0) {
			fprintf(stderr, "consumer: recv: %s\n", strerror(-n));
			break;
		}
		for (i = 0; i < n; i++) {
			bad += lens[i] != sizeof(r[0]) ||
			       r[i].value * r[i].value - (double)r[i].index >
				       1e-6 * r[i].index + 1e-9;
			if (++got % (TOTAL / 8) == 0)
				printf("consumer: %llu of %llu results\n", (unsigned long long)got,
				       (unsigned long long)TOTAL);
		}
	}
	printf("consumer: done, %llu results, %llu wrong\n", (unsigned long long)got,
	       (unsigned long long)bad);
	gpuq_chan_close(ch);
	gpuq_close(q);
	return got == TOTAL && !bad ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *sock = argc == 3 && !strcmp(argv[1], "--socket") ? argv[2] : NULL;
	gpuq_chan_t *ch = NULL;
	struct gpuq_dev_chan dc;
	cudaError_t err;
	char name[64];
	gpuq_t *q = NULL;
	int r, status, rc = 1;
	pid_t pid;

	/* Connect and join gpuqd's MPS server (if any) before the first CUDA call (gpuq_cuda.h says why). */
	if ((r = gpuq_connect(sock, &q)) || (r = gpuq_mps_prepare_cuda(q)) < 0) {
		fprintf(stderr, "chan_stream: connect: %s\n", strerror(-r));
		gpuq_close(q);
		return 1;
	}
	snprintf(name, sizeof(name), "chan-stream.%d", (int)getpid());
	if ((r = gpuq_chan_create(q, name, sizeof(struct result), 1024, GPUQ_CHAN_GPU_TO_CPU,
				  &ch))) {
		fprintf(stderr, "chan_stream: create: %s\n", strerror(-r));
		goto out_close;
	}
	/* Fork before CUDA: the child is a plain CPU process with no GPU context. */
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		_exit(consume(sock, name));
	if (pid < 0)
		goto out_chan;
	/* This process's kernel is the only sender: keep the channel's tail in its device memory. */
	if ((r = gpuq_chan_map_cuda_sender(ch, &dc))) {
		fprintf(stderr, "chan_stream: map: %s\n", strerror(-r));
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		goto out_chan;
	}
	produce<<<BLOCKS, THREADS>>>(dc);
	if ((err = cudaGetLastError()) != cudaSuccess)
		fprintf(stderr, "chan_stream: launch: %s\n", cudaGetErrorString(err));
	else if ((err = cudaDeviceSynchronize()) != cudaSuccess)
		fprintf(stderr, "chan_stream: kernel: %s\n", cudaGetErrorString(err));
	if (err != cudaSuccess)
		kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	if (err == cudaSuccess && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("chan_stream: kernel sent %llu results; consumer got them all\n",
		       (unsigned long long)TOTAL);
		rc = 0;
	}
	gpuq_chan_unmap_cuda_sender(ch, &dc);
out_chan:
	gpuq_chan_close(ch);
out_close:
	gpuq_close(q);
	return rc;
}
