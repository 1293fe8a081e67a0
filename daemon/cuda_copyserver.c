/* cuda_copyserver.c: the copy server: a persistent block per device taking small batches from a ring. */
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

/*
 * A server gets a STOP once it is this old (at the next batch), and the
 * small lanes use their streams until its successor runs: calls that wait
 * for the whole device (cudaFree) then wait this long at most.
 */
#define CS_LIFE_NS 2000000LL

/* Does the running server take commands now (it started, and no STOP went to it)? */
static int cs_ready(struct cuda_cs *cs)
{
	cuda_cs_check(cs);
	return cs->running && !cs->stopping &&
	       atomic_load_explicit(&cs->gone[1], memory_order_acquire) == cs->launches;
}

/* Starts a server at the first command no server took. Device d is current. */
int cuda_cs_launch(struct cuda_dev *d)
{
	struct cuda_cs *cs = &d->xf.cs;
	int ret;

	atomic_store_explicit(cs->gone, 0, memory_order_relaxed);
	ret = kern_copy_server((const uint64_t *)(uintptr_t)cs->ring_dev, CS_SLOTS, cs->done,
			       cs->resume, (uint64_t *)(uintptr_t)cs->gone_dev, cs->launches + 1,
			       cs->stream);
	if (ret)
		return ret;
	cs->running = 1;
	cs->stopping = 0;
	cs->born = cuda_now_ns();
	cs->launches++;
	return 0;
}

/* Posts one command: its words with their tag, the header last (the server checks every tag anyway). */
static void cs_post(struct cuda_cs *cs, uint32_t op, unsigned lane, uint64_t seq,
		    const struct backend_xfer *x, unsigned n)
{
	uint32_t k = cs->next++, data[GPUQ_CS_WORDS], m = 0, w;
	_Atomic uint64_t *slot = cs->ring + (size_t)((k - 1) % CS_SLOTS) * GPUQ_CS_WORDS;
	uint64_t tag = (uint64_t)k << 32;

	for (unsigned i = 0; i < n; i++) {
		if (!x[i].len)
			continue;
		data[3 + 5 * m] = (uint32_t)x[i].src;
		data[4 + 5 * m] = (uint32_t)(x[i].src >> 32);
		data[5 + 5 * m] = (uint32_t)x[i].dst;
		data[6 + 5 * m] = (uint32_t)(x[i].dst >> 32);
		data[7 + 5 * m] = (uint32_t)x[i].len;
		m++;
	}
	data[0] = op | lane << 4 | m << 8;
	data[1] = (uint32_t)seq;
	data[2] = (uint32_t)(seq >> 32);
	w = op == GPUQ_CS_OP_BATCH ? 3 + 5 * m : 1;
	for (uint32_t i = w; i-- > 1;)
		atomic_store_explicit(&slot[i], tag | data[i], memory_order_relaxed);
	atomic_store_explicit(&slot[0], tag | data[0], memory_order_release);
}

/*
 * Hands a batch that cuda_cs_fits to the copy server if one runs and takes
 * commands: returns 1 (posted), or 0 (use the stream; a server is started
 * for the next batches if none runs). A server past CS_LIFE_NS gets a STOP
 * instead, and its successor starts with a later batch.
 */
int cuda_cs_submit(struct cuda_dev *d, unsigned lane, uint64_t seq, const struct backend_xfer *x,
		   unsigned n)
{
	struct cuda_cs *cs = &d->xf.cs;

	if (cs_ready(cs)) {
		if (cuda_now_ns() - cs->born < CS_LIFE_NS) {
			cs_post(cs, GPUQ_CS_OP_BATCH, lane, seq, x, n);
			return 1;
		}
		cs->stop_no = cs->next;
		cs_post(cs, GPUQ_CS_OP_STOP, 0, 0, NULL, 0);
		cs->stopping = 1;
		return 0;
	}
	if (!cs->running && cs->resume == cs->next)
		cuda_cs_launch(d); /* a failure: tried again at the next batch */
	return 0;
}

/* Lets the copy server finish every command posted, then frees it. Device d is current. */
void cuda_cs_release(struct cuda_dev *d)
{
	struct cuda_cs *cs = &d->xf.cs;
	cudaError_t err;

	if (cs->ring && cs->stream) {
		/* Until a server has taken every command, the STOP last (one may leave on its own first). */
		cuda_cs_check(cs);
		if (cs->running || cs->resume != cs->next)
			cs_post(cs, GPUQ_CS_OP_STOP, 0, 0, NULL, 0);
		for (;;) {
			cuda_cs_check(cs);
			if (!cs->running && (cs->resume == cs->next || cuda_cs_launch(d)))
				break;
			err = cudaStreamSynchronize(cs->stream);
			if (err != cudaSuccess) {
				cuda_fail("cudaStreamSynchronize", err);
				break;
			}
		}
		log_debug("cuda: device %d: copy server launched %llu times", d->ordinal,
			  (unsigned long long)cs->launches);
	}
	if (cs->stream && (err = cudaStreamDestroy(cs->stream)) != cudaSuccess)
		cuda_fail("cudaStreamDestroy", err);
	if (cs->ring && (err = cudaFreeHost((void *)cs->ring)) != cudaSuccess)
		cuda_fail("cudaFreeHost", err);
	memset(cs, 0, sizeof(*cs));
}

/*
 * Sets up the copy server of d (none runs until the first command): its
 * ring and gone word in mapped host memory, and its stream. On failure the
 * device goes on without one.
 */
void cuda_cs_setup(struct cuda_dev *d, unsigned dev)
{
	struct cuda_cs *cs = &d->xf.cs;
	const size_t ring_bytes = (size_t)CS_SLOTS * GPUQ_CS_WORDS * 8;
	uint8_t *host = NULL, *dp = NULL;
	cudaError_t err;

	err = cudaHostAlloc((void **)&host, ring_bytes + 64, cudaHostAllocMapped);
	if (err != cudaSuccess) {
		cuda_fail("cudaHostAlloc", err);
		goto off;
	}
	memset(host, 0, ring_bytes + 64);
	cs->ring = (_Atomic uint64_t *)host;
	cs->gone = (_Atomic uint64_t *)(host + ring_bytes);
	err = cudaHostGetDevicePointer((void **)&dp, host, 0);
	if (err != cudaSuccess) {
		cuda_fail("cudaHostGetDevicePointer", err);
		goto off;
	}
	cs->ring_dev = (uint64_t)(uintptr_t)dp;
	cs->gone_dev = (uint64_t)(uintptr_t)(dp + ring_bytes);
	err = cudaStreamCreateWithFlags(&cs->stream, cudaStreamNonBlocking);
	if (err != cudaSuccess) {
		cs->stream = NULL;
		cuda_fail("cudaStreamCreateWithFlags", err);
		goto off;
	}
	for (unsigned i = 0; i < LANE_COUNT && i < GPUQ_CS_LANES; i++)
		cs->done.word[i] = (uint64_t *)(uintptr_t)d->xf.lane[i].done_dev;
	cs->next = cs->resume = 1;
	log_info("cuda: device %u: small batches (up to %u copies, %u KiB) go to a copy server",
		 dev, GPUQ_CS_MAX_DESCS, CS_MAX_BYTES >> 10);
	return;
off:
	log_warn("cuda: device %u: no copy server", dev);
	cuda_cs_release(d);
}
