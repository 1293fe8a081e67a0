/* chan-bench.cu: gpuq channels (kernel <-> host) beside a minimal raw ring in mapped pinned memory, in one run on one machine. */
/*
 * Each figure is measured twice in the same process, back to back: through
 * a gpuq channel (gpuqd-created ring, gpuq_device.cuh in the kernel,
 * libgpuq on the CPU) and through the raw ring below, written for this
 * benchmark only: one single-producer ring per warp in cudaHostAlloc'd
 * mapped memory, the tail kept in a register, the consumer's head read
 * only when the cached one says full. The raw ring uses the slot format
 * gpuq uses for the size (gpuq_chan.h: tagged words up to 256 B, no
 * fence; above, seq + payload written by the whole warp, one fence), so
 * the ratio shows what gpuq's generality costs: shared positions, credit,
 * claims, gpuqd. The raw ring is the ceiling; the ratio is gpuq / raw
 * (raw / gpuq for latencies).
 *
 * Throughput: kernel -> host, 64 B, 1 KiB and 16 KiB messages, from one
 * warp (gpuq_dev_send_warp) and from one warp on each SM; CPU receivers
 * copy every message out (gpuq_chan_recv_batch / memcpy), polling
 * (timeout 0: a receiver that polls makes no system call). With many
 * blocks, each receiver thread has its own channel (the blocks are dealt
 * out among them), as the raw rings are dealt out among the threads; one
 * extra row shows a single channel shared by every receiver thread.
 * Latency: a host <-> persistent-kernel ping-pong of 8 B messages (the
 * kernel's channels mapped with gpuq_chan_map_cuda_receiver/_sender, the
 * kernel receiving through a receiver handle, then again with
 * gpuq_dev_recv; the raw one is a tagged unit each way); one way is
 * RTT/2.
 *
 * Every cell and the ping-pong run --rounds times (raw and gpuq in turn);
 * the figures are the medians.
 *
 * gpuqd: --socket PATH uses a running one; otherwise the bench starts
 * $GPUQD or ../daemon/gpuqd beside itself with the host backend (channels
 * are host memory either way) on a private socket.
 */
#include <gpuq/gpuq_device.cuh>

#include <algorithm>
#include <atomic>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <time.h>
#include <unistd.h>
#include <vector>

#include <cuda_runtime.h>

#include <gpuq/gpuq.h>
#include <gpuq/gpuq_cuda.h>

#define CK(call)                                                                                \
	do {                                                                                    \
		cudaError_t e_ = (call);                                                        \
		if (e_ != cudaSuccess) {                                                        \
			fprintf(stderr, "chan-bench: %s: %s\n", #call, cudaGetErrorString(e_)); \
			exit(1);                                                                \
		}                                                                               \
	} while (0)

static struct {
	int quick, json, rx, rounds;
	const char *sock;
} O = { 0, 0, 0, 0, NULL };

static double now_s()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the raw ring: one per warp, single producer, single consumer ---- */

struct raw_ring {
	uint64_t head; /* written by the host consumer */
	uint8_t pad[120];
	/* slots follow: {uint64 seq; uint32 len; uint32 pad; payload} */
};

__device__ __forceinline__ void raw_store_unit(uint8_t *p, uint32_t d0, uint32_t d1, uint32_t tag)
{
	asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(d0),
		     "r"(tag), "r"(d1), "r"(tag)
		     : "memory");
}

/*
 * Tagged slots (sizes up to 256 B), no fence. The warp writes its 32
 * consecutive slots as one block (lane i writes unit i of each 512 bytes),
 * which is what a fast hand-made ring does and what gpuq does for a full
 * warp sending from global memory.
 */
__global__ void raw_produce_tag(uint8_t *rings, uint64_t ring_bytes, uint32_t nslots, uint32_t size,
				const uint8_t *src, uint32_t per_lane)
{
	uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
	raw_ring *r = (raw_ring *)(rings + warp * ring_bytes);
	uint8_t *slots = (uint8_t *)(r + 1);
	uint64_t stride = 2 * (uint64_t)size, tail = 0, head = 0;
	uint32_t shift = __ffs(nslots) - 1, per = size / 8;

	for (uint32_t i = 0; i < per_lane; i++, tail += 32) {
		if (lane == 0)
			while (tail + 32 - head > nslots)
				head = *(volatile uint64_t *)&r->head;
		__syncwarp();
		for (uint32_t q = lane; q < 32 * per; q += 32) {
			uint32_t m = q / per, u = q - m * per;
			uint64_t pos = tail + m;
			uint2 v = *(const uint2 *)(src + m * size + 8 * u);
			uint32_t lap = (uint32_t)((pos >> shift) + 1);
			raw_store_unit(slots + (pos & (nslots - 1)) * stride + 16 * u, v.x, v.y,
				       u ? lap : (lap << 9) | size);
		}
	}
}

/* Seq slots (larger sizes): the warp writes its 32 messages one after another, coalesced, then one fence. */
__global__ void raw_produce_seq(uint8_t *rings, uint64_t ring_bytes, uint32_t nslots, uint32_t size,
				const uint8_t *src, uint32_t per_lane)
{
	uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
	raw_ring *r = (raw_ring *)(rings + warp * ring_bytes);
	uint8_t *slots = (uint8_t *)(r + 1);
	uint64_t stride = 16 + (uint64_t)size, tail = 0, head = 0;

	for (uint32_t i = 0; i < per_lane; i++, tail += 32) {
		if (lane == 0)
			while (tail + 32 - head > nslots)
				head = *(volatile uint64_t *)&r->head;
		__syncwarp();
		for (uint32_t m = 0; m < 32; m++) {
			uint4 *d = (uint4 *)(slots + ((tail + m) & (nslots - 1)) * stride + 16);
			const uint4 *s = (const uint4 *)(src + m * size);
			for (uint32_t k = lane; k < size / 16; k += 32)
				d[k] = s[k];
		}
		uint8_t *slot = slots + ((tail + lane) & (nslots - 1)) * stride;
		*(uint32_t *)(slot + 8) = size;
		__syncwarp();
		__threadfence_system();
		*(volatile uint64_t *)slot = tail + lane + 1;
	}
}

/* Block b sends on channel b % nchan. */
__global__ void gq_produce(const gpuq_dev_chan *chans, uint32_t nchan, uint32_t size,
			   const uint8_t *src, uint32_t per_lane)
{
	const gpuq_dev_chan c = chans[blockIdx.x % nchan];
	const uint8_t *s = src + (threadIdx.x % 32) * size;

	for (uint32_t i = 0; i < per_lane; i++)
		gpuq_dev_send_warp(c, s, size);
}

/* The persistent kernel of the ping-pong: receives through a receiver handle, or with gpuq_dev_recv. */
__global__ void gq_echo(gpuq_dev_chan in, gpuq_dev_chan out, uint32_t n, int handle)
{
	gpuq_dev_receiver r = gpuq_dev_receiver_begin(in);
	uint64_t buf[8];

	for (uint32_t i = 0; i < n; i++) {
		int len = handle ? gpuq_dev_receiver_recv(&r, buf, sizeof(buf)) :
				   gpuq_dev_recv(in, buf, sizeof(buf));
		gpuq_dev_send(out, buf, (uint32_t)len);
	}
	gpuq_dev_receiver_end(&r);
}

/* The raw mailbox: one tagged 16-byte unit each way ({data, tag, data, tag}; tag = round). */
__global__ void raw_echo(uint8_t *ping, uint8_t *pong, uint32_t n)
{
	for (uint32_t i = 1; i <= n; i++) {
		uint32_t d0, t0, d1, t1;
		do
			asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
				     : "=r"(d0), "=r"(t0), "=r"(d1), "=r"(t1)
				     : "l"(ping)
				     : "memory");
		while (t0 != i || t1 != i);
		raw_store_unit(pong, d0, d1, i);
	}
}

/* ---- throughput cells ---- */

struct cell {
	const char *name;
	uint32_t size, blocks;
	double gq_mps, raw_mps;    /* messages per second, the median of the rounds */
	double ratio_lo, ratio_hi; /* gpuq / raw, the lowest and highest of the rounds */
};

static double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

static uint64_t cell_msgs(const cell &c, uint32_t warps)
{
	uint64_t bytes = c.blocks == 1 ? (2ull << 30) : (8ull << 30);
	uint64_t n = std::min<uint64_t>(c.blocks == 1 ? 4000000 : 16000000, bytes / c.size);
	if (O.quick)
		n /= 8;
	return std::max<uint64_t>(n / (warps * 32), 4) * warps * 32;
}

/*
 * gpuq: nchan channels (block b sends on b % nchan), rx receiver threads;
 * thread k receives from channel k % nchan (shared when rx > nchan).
 */
static double run_gpuq(gpuq_t *q, const cell &c, const uint8_t *src, int rx, int nchan)
{
	uint32_t nslots = c.size >= 16384 ? 1024 : c.size >= 1024 ? 4096 : 8192;
	uint64_t total = cell_msgs(c, c.blocks);
	std::vector<gpuq_chan_t *> ch(nchan);
	std::vector<gpuq_dev_chan> dc(nchan);
	gpuq_dev_chan *ddc;
	std::atomic<uint64_t> got{ 0 };
	int r;

	for (int i = 0; i < nchan; i++) {
		char name[64];

		snprintf(name, sizeof(name), "bench.%u.%u.%d", c.size, c.blocks, i);
		if ((r = gpuq_chan_create(q, name, c.size, nslots, GPUQ_CHAN_GPU_TO_CPU, &ch[i])) ||
		    (r = gpuq_chan_map_cuda_sender(ch[i], &dc[i]))) {
			fprintf(stderr, "chan-bench: channel %s: %s\n", name, strerror(-r));
			exit(1);
		}
	}
	CK(cudaMalloc((void **)&ddc, nchan * sizeof(gpuq_dev_chan)));
	CK(cudaMemcpy(ddc, dc.data(), nchan * sizeof(gpuq_dev_chan), cudaMemcpyHostToDevice));
	double t0 = now_s();
	gq_produce<<<c.blocks, 32>>>(ddc, nchan, c.size, src, (uint32_t)(total / (c.blocks * 32)));
	CK(cudaGetLastError());
	std::vector<std::thread> th;
	for (int k = 0; k < rx; k++)
		th.emplace_back([&, k] {
			/* Batches of up to 256 KiB (the buffer stays in cache), polled like the raw rings. */
			unsigned batch = std::max(1u, std::min(64u, (256u << 10) / c.size));
			std::vector<uint8_t> buf((size_t)c.size * batch);
			size_t lens[64];
			gpuq_chan_t *mine = ch[k % nchan];
			while (got.load(std::memory_order_relaxed) < total) {
				int n = gpuq_chan_recv_batch(mine, buf.data(), c.size, lens, batch,
							     0);
				if (n > 0)
					got += n;
				else if (n != -ETIMEDOUT && n != -EAGAIN) {
					fprintf(stderr, "chan-bench: recv_batch: %s\n",
						strerror(-n));
					exit(1);
				}
			}
		});
	for (auto &t : th)
		t.join();
	double dt = now_s() - t0;
	CK(cudaDeviceSynchronize());
	CK(cudaFree(ddc));
	for (int i = 0; i < nchan; i++) {
		gpuq_chan_unmap_cuda_sender(ch[i], &dc[i]);
		gpuq_chan_close(ch[i]);
	}
	return total / dt;
}

/* Reads a tagged raw slot (what libgpuq does for the TAG format, without the claim). */
static bool raw_read_tag(const uint8_t *slot, uint64_t pos, uint32_t shift, uint32_t size,
			 uint8_t *buf)
{
	const uint64_t *w = (const uint64_t *)slot;
	uint32_t lap = (uint32_t)((pos >> shift) + 1), tag0 = (lap << 9) | size;

	for (uint32_t i = 0; i < size / 4; i++) {
		uint64_t v = __atomic_load_n(&w[i], __ATOMIC_ACQUIRE);
		uint32_t d = (uint32_t)v;
		if ((uint32_t)(v >> 32) != (i < 2 ? tag0 : lap))
			return false;
		memcpy(buf + 4 * i, &d, 4);
	}
	return true;
}

static double run_raw(const cell &c, const uint8_t *src, int rx)
{
	bool tag = c.size <= GPUQ_CHAN_TAG_MAX;
	uint32_t nslots = c.size >= 16384 ? 64 : 1024, shift = __builtin_ctz(nslots);
	uint64_t stride = tag ? 2 * (uint64_t)c.size : 16 + (uint64_t)c.size;
	uint64_t rb = (sizeof(raw_ring) + nslots * stride + 4095) & ~4095ull,
		 total = cell_msgs(c, c.blocks);
	uint8_t *host, *dev;
	std::atomic<uint64_t> got{ 0 };

	CK(cudaHostAlloc((void **)&host, rb * c.blocks,
			 cudaHostAllocMapped | cudaHostAllocPortable));
	memset(host, 0, rb * c.blocks);
	CK(cudaHostGetDevicePointer((void **)&dev, host, 0));
	double t0 = now_s();
	if (tag)
		raw_produce_tag<<<c.blocks, 32>>>(dev, rb, nslots, c.size, src,
						  (uint32_t)(total / (c.blocks * 32)));
	else
		raw_produce_seq<<<c.blocks, 32>>>(dev, rb, nslots, c.size, src,
						  (uint32_t)(total / (c.blocks * 32)));
	CK(cudaGetLastError());
	std::vector<std::thread> th;
	for (int k = 0; k < rx; k++)
		th.emplace_back([&, k] {
			std::vector<uint8_t> buf(c.size);
			std::vector<uint64_t> heads(c.blocks, 0);
			while (got.load(std::memory_order_relaxed) < total) {
				for (uint32_t w = k; w < c.blocks; w += rx) {
					raw_ring *r = (raw_ring *)(host + w * rb);
					uint8_t *slots = (uint8_t *)(r + 1);
					uint64_t h = heads[w], n = 0;
					for (;;) {
						uint8_t *slot = slots + (h & (nslots - 1)) * stride;
						if (tag) {
							if (!raw_read_tag(slot, h, shift, c.size,
									  buf.data()))
								break;
						} else {
							if (__atomic_load_n((uint64_t *)slot,
									    __ATOMIC_ACQUIRE) !=
							    h + 1)
								break;
							memcpy(buf.data(), slot + 16,
							       *(uint32_t *)(slot + 8));
						}
						h++;
						if (++n % 32 == 0)
							__atomic_store_n(&r->head, h,
									 __ATOMIC_RELEASE);
					}
					if (n) {
						__atomic_store_n(&r->head, h, __ATOMIC_RELEASE);
						heads[w] = h;
						got += n;
					}
				}
			}
		});
	for (auto &t : th)
		t.join();
	double dt = now_s() - t0;
	CK(cudaDeviceSynchronize());
	CK(cudaFreeHost(host));
	return total / dt;
}

/* ---- latency ---- */

struct lat {
	double p50, p99; /* RTT, microseconds */
};

static lat summarize(std::vector<double> &v)
{
	std::sort(v.begin(), v.end());
	return lat{ v[v.size() / 2] * 1e6, v[(size_t)(v.size() * 0.99)] * 1e6 };
}

static lat ping_gpuq(gpuq_t *q, uint32_t n, int handle)
{
	gpuq_chan_t *in = NULL, *out = NULL;
	gpuq_dev_chan din, dout;
	std::vector<double> v;
	int r;

	if ((r = gpuq_chan_create(q, "bench.ping", 64, 64, GPUQ_CHAN_CPU_TO_GPU, &in)) ||
	    (r = gpuq_chan_create(q, "bench.pong", 64, 64, GPUQ_CHAN_GPU_TO_CPU, &out)) ||
	    (r = gpuq_chan_map_cuda_receiver(in, &din)) ||
	    (r = gpuq_chan_map_cuda_sender(out, &dout))) {
		fprintf(stderr, "chan-bench: ping channels: %s\n", strerror(-r));
		exit(1);
	}
	gq_echo<<<1, 1>>>(din, dout, n, handle);
	CK(cudaGetLastError());
	for (uint32_t i = 0; i < n; i++) {
		uint64_t m = i, back = 0;
		double t0 = now_s();
		if (gpuq_chan_send(in, &m, sizeof(m), -1) < 0 ||
		    gpuq_chan_recv(out, &back, sizeof(back), 10000) < 0 || back != i) {
			fprintf(stderr, "chan-bench: ping-pong broke at %u\n", i);
			exit(1);
		}
		if (i >= n / 10)
			v.push_back(now_s() - t0);
	}
	CK(cudaDeviceSynchronize());
	gpuq_chan_unmap_cuda_receiver(in, &din);
	gpuq_chan_unmap_cuda_sender(out, &dout);
	gpuq_chan_close(in);
	gpuq_chan_close(out);
	return summarize(v);
}

static lat ping_raw(uint32_t n)
{
	uint64_t *host, *dev;
	std::vector<double> v;

	CK(cudaHostAlloc((void **)&host, 4096, cudaHostAllocMapped));
	memset(host, 0, 4096);
	CK(cudaHostGetDevicePointer((void **)&dev, host, 0));
	raw_echo<<<1, 1>>>((uint8_t *)dev, (uint8_t *)(dev + 16), n);
	CK(cudaGetLastError());
	for (uint64_t i = 1; i <= n; i++) {
		double t0 = now_s();
		/* 8 bytes of payload, 4 in each tagged word. */
		__atomic_store_n(&host[1], i << 32 | 0xbeef, __ATOMIC_RELAXED);
		__atomic_store_n(&host[0], i << 32 | (uint32_t)i, __ATOMIC_RELEASE);
		while ((__atomic_load_n(&host[16], __ATOMIC_ACQUIRE) >> 32) != i ||
		       (__atomic_load_n(&host[17], __ATOMIC_ACQUIRE) >> 32) != i)
			;
		if ((uint32_t)host[16] != (uint32_t)i || (uint32_t)host[17] != 0xbeef) {
			fprintf(stderr, "chan-bench: raw ping-pong broke at %llu\n",
				(unsigned long long)i);
			exit(1);
		}
		if (i > n / 10)
			v.push_back(now_s() - t0);
	}
	CK(cudaDeviceSynchronize());
	CK(cudaFreeHost(host));
	return summarize(v);
}

/* ---- gpuqd ---- */

static pid_t daemon_pid;
static char daemon_dir[64];

static void stop_daemon()
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
		daemon_pid = 0;
	}
	if (daemon_dir[0]) {
		char p[128];
		snprintf(p, sizeof(p), "rm -rf '%s'", daemon_dir);
		if (system(p))
			(void)0;
	}
}

static gpuq_t *connect_gpuqd()
{
	static char sock[128];
	gpuq_t *q = NULL;

	if (O.sock) {
		int r = gpuq_connect(O.sock, &q);
		/* Before the first CUDA call: this process joins gpuqd's MPS server, if any. */
		if (!r)
			r = gpuq_mps_prepare_cuda(q);
		if (r < 0) {
			fprintf(stderr, "chan-bench: connect %s: %s\n", O.sock, strerror(-r));
			exit(1);
		}
		return q;
	}
	char exe[PATH_MAX], path[PATH_MAX + 32], conf[128];
	const char *gpuqd = getenv("GPUQD");
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (!gpuqd) {
		exe[len > 0 ? len : 0] = 0;
		snprintf(path, sizeof(path), "%s/../daemon/gpuqd", dirname(exe));
		gpuqd = path;
	}
	strcpy(daemon_dir, "/tmp/chan-bench.XXXXXX");
	if (!mkdtemp(daemon_dir)) {
		perror("chan-bench: mkdtemp");
		exit(1);
	}
	snprintf(sock, sizeof(sock), "%s/sock", daemon_dir);
	snprintf(conf, sizeof(conf), "%s/gpuqd.conf", daemon_dir);
	FILE *f = fopen(conf, "w");
	if (f)
		fclose(f);
	fflush(NULL);
	daemon_pid = fork();
	if (daemon_pid == 0) {
		execl(gpuqd, gpuqd, "--backend", "host", "--socket", sock, "--config", conf,
		      "--log-level", "warn", (char *)NULL);
		fprintf(stderr, "chan-bench: exec %s: %s\n", gpuqd, strerror(errno));
		_exit(127);
	}
	atexit(stop_daemon);
	for (int i = 0; i < 500; i++) {
		if (gpuq_connect(sock, &q) == 0)
			return q;
		usleep(10000);
	}
	fprintf(stderr, "chan-bench: gpuqd (%s) did not come up on %s\n", gpuqd, sock);
	exit(1);
}

/* ---- report ---- */

struct target {
	char what[96];
	double value, limit;
	bool higher_better, pass;
};

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "quick", no_argument, NULL, 'q' },
					      { "json", no_argument, NULL, 'j' },
					      { "socket", required_argument, NULL, 's' },
					      { "rx-threads", required_argument, NULL, 'r' },
					      { "rounds", required_argument, NULL, 'n' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'q': O.quick = 1; break;
		case 'j': O.json = 1; break;
		case 's': O.sock = optarg; break;
		case 'r': O.rx = atoi(optarg); break;
		case 'n': O.rounds = atoi(optarg); break;
		default:
			fprintf(stderr,
				"usage: chan-bench [--quick] [--json] [--socket PATH] [--rx-threads N] [--rounds N]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (O.rx <= 0)
		O.rx = std::max(1, std::min(8, (int)sysconf(_SC_NPROCESSORS_ONLN) - 2));
	if (O.rounds <= 0)
		O.rounds = O.quick ? 3 : 5;

	gpuq_t *q = connect_gpuqd(); /* before the first CUDA call */
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	uint8_t *src;
	CK(cudaMalloc((void **)&src, 32 * 16384));
	CK(cudaMemset(src, 0x5a, 32 * 16384));

	std::vector<cell> cells;
	for (uint32_t size : { 64u, 1024u, 16384u }) {
		cells.push_back(cell{ "one warp", size, 1, 0, 0, 0, 0 });
		cells.push_back(cell{ "one warp per SM", size, (uint32_t)prop.multiProcessorCount,
				      0, 0, 0, 0 });
	}
	{
		/* Warm-up: first launches, first registrations. */
		cell w{ "warm", 64, 1, 0, 0, 0, 0 };
		int quick = O.quick;
		O.quick = 1;
		run_gpuq(q, w, src, 1, 1);
		run_raw(w, src, 1);
		O.quick = quick;
	}
	/*
	 * Each cell runs O.rounds times, raw and gpuq in turn, and reports
	 * the medians: one run of either swings by a fifth from run to run
	 * (on the same machine, for reasons outside both), which a single
	 * pair turns into a ratio that swings as much.
	 */
	for (auto &c : cells) {
		int rx = c.blocks == 1 ? 1 : O.rx;
		std::vector<double> raw, gq;
		c.ratio_lo = 1e9;
		c.ratio_hi = 0;
		for (int r = 0; r < O.rounds; r++) {
			raw.push_back(run_raw(c, src, rx));
			gq.push_back(run_gpuq(q, c, src, rx, rx));
			c.ratio_lo = std::min(c.ratio_lo, gq.back() / raw.back());
			c.ratio_hi = std::max(c.ratio_hi, gq.back() / raw.back());
		}
		c.raw_mps = median(raw);
		c.gq_mps = median(gq);
	}
	/* For the record: one channel that every receiver thread shares (they contend for its head). */
	cell shared{ "one warp per SM", 16384, (uint32_t)prop.multiProcessorCount, 0, 0, 0, 0 };
	shared.gq_mps = run_gpuq(q, shared, src, O.rx, 1);
	uint32_t n = O.quick ? 2000 : 20000;
	std::vector<double> p50[3], p99[3];
	for (int r = 0; r < O.rounds; r++) {
		lat l[3] = { ping_raw(n), ping_gpuq(q, n, 1), ping_gpuq(q, n, 0) };
		for (int k = 0; k < 3; k++) {
			p50[k].push_back(l[k].p50);
			p99[k].push_back(l[k].p99);
		}
	}
	lat lr = { median(p50[0]), median(p99[0]) }, lg = { median(p50[1]), median(p99[1]) },
	    ls = { median(p50[2]), median(p99[2]) };

	std::vector<target> t;
	auto add = [&](const char *what, double v, double limit, bool higher) {
		target x;
		snprintf(x.what, sizeof(x.what), "%s", what);
		x.value = v;
		x.limit = limit;
		x.higher_better = higher;
		x.pass = higher ? v >= limit : v <= limit;
		t.push_back(x);
	};
	add("64 B from one warp >= 30 M msgs/s", cells[0].gq_mps / 1e6, 30, true);
	add("16 KiB from many blocks >= 40 GB/s", cells[5].gq_mps * 16384 / 1e9, 40, true);
	add("one-way p50 (RTT/2) <= 2 us, receiver handle", lg.p50 / 2, 2, false);
	add("  the same with gpuq_dev_recv", ls.p50 / 2, 2, false);
	for (auto &c : cells) {
		char w[96];
		snprintf(w, sizeof(w), "%u B %s >= 85%% of raw ring", c.size, c.name);
		add(w, 100 * c.gq_mps / c.raw_mps, 85, true);
	}
	add("latency p50 >= 85% of raw (raw/gpuq), handle", 100 * lr.p50 / lg.p50, 85, true);
	add("  the same with gpuq_dev_recv", 100 * lr.p50 / ls.p50, 85, true);

	if (O.json) {
		printf("{\"device\":\"%s\",\"quick\":%s,\"rx_threads\":%d,\"rounds\":%d,\"throughput\":[",
		       prop.name, O.quick ? "true" : "false", O.rx, O.rounds);
		for (size_t i = 0; i < cells.size(); i++)
			printf("%s{\"size\":%u,\"senders\":\"%s\",\"warps\":%u,\"gpuq_msgs_per_s\":%.0f,"
			       "\"raw_msgs_per_s\":%.0f,\"gpuq_gb_per_s\":%.3f,\"raw_gb_per_s\":%.3f,\"ratio\":%.3f,"
			       "\"ratio_lowest\":%.3f,\"ratio_highest\":%.3f}",
			       i ? "," : "", cells[i].size, cells[i].name, cells[i].blocks,
			       cells[i].gq_mps, cells[i].raw_mps,
			       cells[i].gq_mps * cells[i].size / 1e9,
			       cells[i].raw_mps * cells[i].size / 1e9,
			       cells[i].gq_mps / cells[i].raw_mps, cells[i].ratio_lo,
			       cells[i].ratio_hi);
		printf("],\"shared_channel_16k_gb_per_s\":%.3f", shared.gq_mps * 16384 / 1e9);
		printf(",\"latency_us\":{\"gpuq_rtt_p50\":%.3f,\"gpuq_rtt_p99\":%.3f,\"gpuq_shared_recv_rtt_p50\":%.3f,"
		       "\"gpuq_shared_recv_rtt_p99\":%.3f,\"raw_rtt_p50\":%.3f,\"raw_rtt_p99\":%.3f},\"targets\":[",
		       lg.p50, lg.p99, ls.p50, ls.p99, lr.p50, lr.p99);
		for (size_t i = 0; i < t.size(); i++)
			printf("%s{\"target\":\"%s\",\"value\":%.3f,\"verdict\":\"%s\"}",
			       i ? "," : "", t[i].what, t[i].value, t[i].pass ? "PASS" : "MISS");
		printf("]}\n");
	} else {
		printf("chan-bench on %s (%d SMs), %d receiver threads for many-block cells%s\n",
		       prop.name, prop.multiProcessorCount, O.rx, O.quick ? ", --quick" : "");
		printf("medians of %d rounds, raw and gpuq in turn; range: the rounds' lowest and highest ratio\n\n",
		       O.rounds);
		printf("%-8s %-16s %12s %12s %10s %10s %7s %11s\n", "size", "senders", "gpuq M/s",
		       "raw M/s", "gpuq GB/s", "raw GB/s", "ratio", "range");
		for (auto &c : cells)
			printf("%-8u %-16s %12.2f %12.2f %10.2f %10.2f %6.0f%% %4.0f-%3.0f%%\n",
			       c.size, c.name, c.gq_mps / 1e6, c.raw_mps / 1e6,
			       c.gq_mps * c.size / 1e9, c.raw_mps * c.size / 1e9,
			       100 * c.gq_mps / c.raw_mps, 100 * c.ratio_lo, 100 * c.ratio_hi);
		printf("%-8u %-16s %12.2f %12s %10.2f   (one channel shared by %d receiver threads)\n",
		       16384u, "one warp per SM", shared.gq_mps / 1e6, "",
		       shared.gq_mps * 16384 / 1e9, O.rx);
		printf("\nping-pong, 8 B each way (us)   RTT p50   RTT p99   one-way p50 (RTT/2)   (medians of the rounds)\n");
		printf("  gpuq, receiver handle      %8.2f  %8.2f  %8.2f\n", lg.p50, lg.p99,
		       lg.p50 / 2);
		printf("  gpuq, gpuq_dev_recv        %8.2f  %8.2f  %8.2f\n", ls.p50, ls.p99,
		       ls.p50 / 2);
		printf("  raw tagged mailbox         %8.2f  %8.2f  %8.2f\n", lr.p50, lr.p99,
		       lr.p50 / 2);
		printf("  (host->kernel and kernel->host are each taken as RTT/2: no shared clock)\n\n");
		for (auto &x : t)
			printf("%s  %-48s %10.2f\n", x.pass ? "PASS" : "MISS", x.what, x.value);
	}
	CK(cudaFree(src));
	gpuq_close(q);
	return 0;
}
