/* cuda_lanes.c: the cuda data path: a stream and a completion word per lane, batches onto them. */
#include "build-config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_priv.h"
#include "log.h"

static const char *const lane_names[LANE_COUNT] = {
	[LANE_H2D_SMALL] = "h2d-small",
	[LANE_H2D_LARGE] = "h2d-large",
	[LANE_D2H_SMALL] = "d2h-small",
	[LANE_D2H_LARGE] = "d2h-large",
	[LANE_D2D] = "d2d",
};

static int lane_has_kernel(unsigned lane)
{
	return lane == LANE_H2D_SMALL || lane == LANE_D2H_SMALL || lane == LANE_D2D;
}

/*
 * Fills a slot with the copies of x shorter than below (empty ones left
 * out) and returns how many descriptors it wrote. While the slot has room,
 * long copies become warp-sized pieces: a short batch of long copies would
 * otherwise run on a block each and leave most SMs idle. At most cap
 * descriptors whenever n <= cap.
 */
static unsigned descs_fill(struct gpuq_copy_desc *s, unsigned cap, const struct backend_xfer *x,
			   unsigned n, uint64_t below)
{
	unsigned m = 0, spare = cap - n;

	for (unsigned i = 0; i < n; i++) {
		uint64_t src = x[i].src, dst = x[i].dst, len = x[i].len;

		if (len == 0 || len >= below)
			continue;
		while (len > GPUQ_COPY_WARP_MAX && spare) {
			s[m].src = src;
			s[m].dst = dst;
			s[m].len = GPUQ_COPY_WARP_MAX;
			m++;
			src += GPUQ_COPY_WARP_MAX;
			dst += GPUQ_COPY_WARP_MAX;
			len -= GPUQ_COPY_WARP_MAX;
			spare--;
		}
		s[m].src = src;
		s[m].dst = dst;
		s[m].len = len;
		m++;
	}
	return m;
}

/* Launches one copy kernel for the copies of x shorter than below, from the slot of seq. */
int cuda_lane_kernel(struct cuda_lane *l, uint64_t seq, const struct backend_xfer *x, unsigned n,
		     uint64_t below, unsigned *issued)
{
	size_t first = (size_t)(seq % XFER_INFLIGHT) * XFER_MAX_BATCH;
	unsigned m = descs_fill(l->slots + first, XFER_MAX_BATCH, x, n, below);
	int ret;

	if (m == 0)
		return 0;
	ret = kern_copy_batch((const struct gpuq_copy_desc *)(uintptr_t)l->slots_dev + first, m,
			      l->stream);
	if (ret)
		return ret;
	(*issued)++;
	return 0;
}

/*
 * One cudaMemcpyAsync per copy of x at least from bytes long. Not cut into
 * chunks: the lane's stream runs them in order either way, so chunks would
 * let nothing overtake; the engine keeps big requests from holding up
 * others by spreading them over several batches.
 */
int cuda_lane_copies(struct cuda_lane *l, const struct backend_xfer *x, unsigned n, uint64_t from,
		     unsigned *issued)
{
	cudaError_t err;

	for (unsigned i = 0; i < n; i++) {
		if (x[i].len == 0 || x[i].len < from)
			continue;
		err = cudaMemcpyAsync((void *)(uintptr_t)x[i].dst,
				      (const void *)(uintptr_t)x[i].src, x[i].len,
				      cudaMemcpyDefault, l->stream);
		if (err != cudaSuccess)
			return cuda_fail("cudaMemcpyAsync", err);
		(*issued)++;
	}
	return 0;
}

/* Queues the write of seq into the lane's done word behind everything queued so far. */
static int done_write(const struct cuda_xfer *xf, struct cuda_lane *l, uint64_t seq)
{
	CUresult r;

	if (!xf->write_value64)
		return kern_write_u64((uint64_t *)(uintptr_t)l->done_dev, seq, l->stream);
	/* The default flags fence the stream's earlier writes before this one. */
	r = xf->write_value64((CUstream)l->stream, (CUdeviceptr)l->done_dev, seq,
			      CU_STREAM_WRITE_VALUE_DEFAULT);
	if (r != CUDA_SUCCESS) {
		log_err("cuStreamWriteValue64: CUresult %d", (int)r);
		return -EIO;
	}
	return 0;
}

/*
 * The data path's hot call: no allocation, no lock, no log on success.
 * The engine has validated every address; nothing is checked here but the
 * batch's shape. A failure after part of a batch was queued leaves the
 * lane refusing everything (-EIO) until xfer_stop: its slot may still be
 * read by the GPU, so it cannot be handed out again.
 */
int64_t cuda_xfer_submit(struct backend *be, unsigned dev, unsigned lane,
			 const struct backend_xfer *x, unsigned n)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	unsigned issued = 0;
	struct cuda_lane *l;
	uint64_t seq;
	int cur = -1, ret;

	if (!d)
		return -ENODEV;
	if (lane >= LANE_COUNT || !d->xf.started || n > XFER_MAX_BATCH || (n && !x))
		return -EINVAL;
	l = &d->xf.lane[lane];
	if (l->broken)
		return -EIO;
	if (l->seq - atomic_load_explicit(l->done, memory_order_acquire) >= XFER_INFLIGHT) {
		cuda_cs_kick(d);
		return -EAGAIN;
	}
	/* Kernels go to the current device: the engine thread's unless someone switched it. */
	if (cudaGetDevice(&cur) != cudaSuccess || cur != d->ordinal) {
		ret = cuda_dev_enter(d);
		if (ret)
			return ret;
	}

	seq = l->seq + 1;
	switch (lane) {
	case LANE_H2D_SMALL:
	case LANE_D2H_SMALL:
		if (d->xf.cs.ring) {
			uint64_t done = atomic_load_explicit(l->done, memory_order_acquire);

			/* One way at a time per lane, so that its batches stay in order. */
			if (cuda_cs_fits(x, n) && done >= l->stream_last &&
			    cuda_cs_submit(d, lane, seq, x, n)) {
				l->cs_last = l->seq = seq;
				d->cs_batches++;
				return (int64_t)seq;
			}
			if (done < l->cs_last) {
				cuda_cs_kick(d);
				return -EAGAIN; /* the server's batches first */
			}
		}
		if (n <= XFER_LONE_CE)
			ret = cuda_lane_copies(l, x, n, 0, &issued);
		else
			ret = cuda_lane_kernel(l, seq, x, n, UINT64_MAX, &issued);
		break;
	case LANE_D2D:
		/* Many small device copies cost one kernel, not a call each. */
		ret = cuda_lane_kernel(l, seq, x, n, d->xf.crossover, &issued);
		if (!ret)
			ret = cuda_lane_copies(l, x, n, d->xf.crossover, &issued);
		break;
	default: ret = cuda_lane_copies(l, x, n, 0, &issued); break;
	}
	if (!ret)
		ret = done_write(&d->xf, l, seq);
	if (ret) {
		if (issued) {
			l->broken = 1;
			log_err("cuda: device %u lane %s: a batch failed half-queued; the lane stops",
				dev, lane_names[lane]);
			ret = -EIO;
		}
		return ret;
	}
	l->seq = seq;
	l->stream_last = seq;
	return (int64_t)seq;
}

/*
 * No CUDA call but when a copy server left with commands still to take:
 * then it launches the next one (the engine polls this while batches are
 * in flight, so a command posted as a server left waits one poll).
 */
uint64_t cuda_xfer_done(struct backend *be, unsigned dev, unsigned lane)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	struct cuda_lane *l;
	uint64_t done;

	if (!d || lane >= LANE_COUNT || !d->xf.lane[lane].done)
		return 0;
	l = &d->xf.lane[lane];
	done = atomic_load_explicit(l->done, memory_order_acquire);
	if (done < l->cs_last)
		cuda_cs_kick(d);
	return done;
}

/* Waits for and frees whatever xfer_start set up (also half of it). Device d is current. */
void cuda_xfer_release(struct cuda_dev *d)
{
	struct cuda_xfer *xf = &d->xf;
	cudaError_t err;

	cuda_cs_release(d);

	for (unsigned i = 0; i < LANE_COUNT; i++) {
		struct cuda_lane *l = &xf->lane[i];

		if (!l->stream)
			continue;
		err = cudaStreamSynchronize(l->stream);
		if (err != cudaSuccess)
			cuda_fail("cudaStreamSynchronize", err);
		err = cudaStreamDestroy(l->stream);
		if (err != cudaSuccess)
			cuda_fail("cudaStreamDestroy", err);
	}
	if (xf->host_mem) {
		err = cudaFreeHost(xf->host_mem);
		if (err != cudaSuccess)
			cuda_fail("cudaFreeHost", err);
	}
	memset(xf, 0, sizeof(*xf));
}

/*
 * Finds cuStreamWriteValue64 in the driver (the runtime hands out its entry
 * points, so gpuqd needs no libcuda at link time) and checks that it works
 * on this device; otherwise done words are written by a one-thread kernel.
 */
static void done_writer_pick(struct cuda_xfer *xf, unsigned dev)
{
	enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
	struct cuda_lane *l = &xf->lane[LANE_H2D_SMALL];
	void *fn = NULL;
	cudaError_t err;

	err = cudaGetDriverEntryPointByVersion("cuStreamWriteValue64", &fn, 11070,
					       cudaEnableDefault, &q);
	if (err != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
		(void)cudaGetLastError();
		log_info("cuda: device %u: no cuStreamWriteValue64 (%s), kernels write completions",
			 dev, err != cudaSuccess ? cudaGetErrorString(err) : "not found");
		return;
	}
	xf->write_value64 = (PFN_cuStreamWriteValue64_v11070)fn;
	if (done_write(xf, l, 0x5eedull) == 0 && cudaStreamSynchronize(l->stream) == cudaSuccess &&
	    atomic_load(l->done) == 0x5eedull) {
		atomic_store(l->done, 0);
		return;
	}
	(void)cudaGetLastError();
	atomic_store(l->done, 0);
	xf->write_value64 = NULL;
	log_info(
		"cuda: device %u: cuStreamWriteValue64 does not work here, kernels write completions",
		dev);
}

/*
 * Sets up dev's data path on the calling thread, which becomes the only one
 * to submit to dev: makes dev current, creates a stream per lane (the small
 * lanes at the highest priority, so their short batches overtake big copies
 * queued on the GPU), the done words and descriptor slots in mapped host
 * memory, picks the completion writer and calibrates be->crossover[dev]
 * (under 300 ms). -EBUSY when started already, -ENOMEM, -EIO.
 */
int cuda_xfer_start(struct backend *be, unsigned dev)
{
	const size_t slot_bytes =
		(size_t)XFER_INFLIGHT * XFER_MAX_BATCH * sizeof(struct gpuq_copy_desc);
	const size_t words = 4096; /* the done words, a cache line each */
	struct cuda_dev *d = cuda_dev_get(be, dev);
	struct cuda_xfer *xf;
	uint64_t crossover = CROSSOVER_DEFAULT;
	int least = 0, greatest = 0, ret;
	unsigned nk = 0, i;
	uint8_t *base_dev = NULL;
	cudaError_t err;
	size_t size;

	static_assert(LANE_COUNT * DONE_STRIDE <= 4096, "done words");
	if (!d)
		return -ENODEV;
	xf = &d->xf;
	if (xf->started)
		return -EBUSY;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	memset(xf, 0, sizeof(*xf));

	err = cudaDeviceGetStreamPriorityRange(&least, &greatest);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaDeviceGetStreamPriorityRange", err);
		goto err;
	}
	for (i = 0; i < LANE_COUNT; i++) {
		int prio = i == LANE_H2D_SMALL || i == LANE_D2H_SMALL ? greatest : least;

		err = cudaStreamCreateWithPriority(&xf->lane[i].stream, cudaStreamNonBlocking,
						   prio);
		if (err != cudaSuccess) {
			xf->lane[i].stream = NULL;
			ret = cuda_fail("cudaStreamCreateWithPriority", err);
			goto err;
		}
		nk += lane_has_kernel(i);
	}

	size = words + nk * slot_bytes;
	err = cudaHostAlloc(&xf->host_mem, size, cudaHostAllocMapped);
	if (err != cudaSuccess) {
		xf->host_mem = NULL;
		ret = cuda_fail("cudaHostAlloc", err);
		goto err;
	}
	memset(xf->host_mem, 0, words);
	err = cudaHostGetDevicePointer((void **)&base_dev, xf->host_mem, 0);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaHostGetDevicePointer", err);
		goto err;
	}
	for (i = 0, nk = 0; i < LANE_COUNT; i++) {
		struct cuda_lane *l = &xf->lane[i];
		size_t off = (size_t)i * DONE_STRIDE;

		l->done = (_Atomic uint64_t *)((uint8_t *)xf->host_mem + off);
		l->done_dev = (uint64_t)(uintptr_t)(base_dev + off);
		if (lane_has_kernel(i)) {
			off = words + nk++ * slot_bytes;
			l->slots = (struct gpuq_copy_desc *)((uint8_t *)xf->host_mem + off);
			l->slots_dev = (uint64_t)(uintptr_t)(base_dev + off);
		}
	}

	done_writer_pick(xf, dev);
	ret = cuda_calibrate(d, dev, &crossover);
	if (ret) {
		crossover = CROSSOVER_DEFAULT;
		log_warn("cuda: device %u: crossover calibration failed (%s), using %u KiB", dev,
			 strerror(-ret), CROSSOVER_DEFAULT >> 10);
	}
	xf->crossover = crossover;
	if (dev < BACKEND_MAX_DEVICES)
		be->crossover[dev] = crossover;
	if (((struct cuda_priv *)be->priv)->copy_server)
		cuda_cs_setup(d, dev);
	xf->started = 1;
	return 0;

err:
	cuda_xfer_release(d);
	return ret;
}

/* Waits for every lane, then frees the data path. The engine thread, after its last submit. */
void cuda_xfer_stop(struct backend *be, unsigned dev)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);

	if (!d || !d->xf.started || cuda_dev_enter(d))
		return;
	cuda_xfer_release(d);
}
