/* cuda_calib.c: calibrating a device's small/large crossover, kernel against copy engines. */
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

/* Calibration: H2D batches of CAL_MIN..CAL_MAX-byte transfers, at most CAL_BYTES each. */
#define CAL_MIN (4u << 10)
#define CAL_MAX (4u << 20)
#define CAL_BYTES (16u << 20)
#define CAL_MAX_N 1024u
#define CAL_REPS 2
#define CAL_BUDGET_NS 250000000LL
/*
 * Copy engines win a near tie: they leave the SMs to clients' kernels, and
 * a kernel's bandwidth from host memory suffers most when those run.
 */
#define CAL_CE_TIE 0.97
/* Resources of one calibration run. */
struct cal {
	struct cuda_xfer *xf;
	struct backend_xfer *x;
	void *host, *dev;
	uint64_t host_dev;
	cudaEvent_t ev[2];
};

/*
 * Seconds one H2D batch x[0..n) takes through the kernel (kernel != 0) or
 * the copy engines, as the engine would issue it. The kernel's cost is the
 * larger of the CPU's (descriptors, launch) and the GPU's, as they overlap
 * from one batch to the next; the copy engines' GPU span already includes
 * the waits for the CPU's calls. 0 on failure.
 */
static double cal_time(struct cal *c, int kernel, unsigned n)
{
	struct cuda_lane *l = &c->xf->lane[kernel ? LANE_H2D_SMALL : LANE_H2D_LARGE];
	unsigned issued = 0;
	int64_t t0 = 0, t1 = 0;
	float ms = 0;
	int ret;

	if (cudaEventRecord(c->ev[0], l->stream) != cudaSuccess)
		return 0;
	if (kernel) {
		t0 = cuda_now_ns();
		ret = cuda_lane_kernel(l, 0, c->x, n, UINT64_MAX, &issued);
		t1 = cuda_now_ns();
	} else {
		ret = cuda_lane_copies(l, c->x, n, 0, &issued);
	}
	if (ret || cudaEventRecord(c->ev[1], l->stream) != cudaSuccess ||
	    cudaEventSynchronize(c->ev[1]) != cudaSuccess ||
	    cudaEventElapsedTime(&ms, c->ev[0], c->ev[1]) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	return ms * 1e-3 > (t1 - t0) * 1e-9 ? ms * 1e-3 : (t1 - t0) * 1e-9;
}

static const char *size_str(uint64_t v, char *buf, size_t len)
{
	if (v >= (1u << 20) && v % (1u << 20) == 0)
		snprintf(buf, len, "%" PRIu64 " MiB", v >> 20);
	else
		snprintf(buf, len, "%" PRIu64 " KiB", v >> 10);
	return buf;
}

#define CAL_SIZES 11 /* CAL_MIN << 0 .. CAL_MAX */

/*
 * Times H2D batches of many equal transfers, CAL_MIN to CAL_MAX bytes,
 * through the gather kernel and through the copy engines, and returns the
 * smallest size from which the copy engines keep up with the kernel
 * (CAL_CE_TIE); CAL_MAX when the kernel is faster throughout. Runs on the
 * lanes' own streams before any batch is submitted. Gives up (-ETIME) past
 * CAL_BUDGET_NS; -ENOMEM, -EIO.
 */
int cuda_calibrate(struct cuda_dev *d, unsigned dev, uint64_t *crossover)
{
	double bw_k[CAL_SIZES], bw_c[CAL_SIZES];
	struct cal c = { .xf = &d->xf };
	int64_t start = cuda_now_ns();
	cudaError_t err;
	char a[32], b[32];
	int ret = 0, i, pick;

	static_assert(CAL_MIN << (CAL_SIZES - 1) == CAL_MAX, "calibration sizes");
	c.x = malloc(CAL_MAX_N * sizeof(*c.x));
	if (!c.x)
		return -ENOMEM;
	err = cudaHostAlloc(&c.host, CAL_BYTES, cudaHostAllocMapped);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaHostAlloc", err);
		goto out;
	}
	memset(c.host, 0x5a, CAL_BYTES);
	err = cudaHostGetDevicePointer((void **)&c.host_dev, c.host, 0);
	if (err == cudaSuccess)
		err = cudaMalloc(&c.dev, CAL_BYTES);
	if (err == cudaSuccess)
		err = cudaEventCreate(&c.ev[0]);
	if (err == cudaSuccess)
		err = cudaEventCreate(&c.ev[1]);
	if (err != cudaSuccess) {
		ret = cuda_fail("calibration set-up", err);
		goto out;
	}

	for (i = -1; i < CAL_SIZES; i++) {
		/* Size -1: a warm-up, loading the kernel and waking the copy engines. */
		uint64_t size = i < 0 ? CAL_MIN : (uint64_t)CAL_MIN << i;
		unsigned n =
			CAL_BYTES / size < CAL_MAX_N ? (unsigned)(CAL_BYTES / size) : CAL_MAX_N;
		double tk = 0, tc = 0, t;

		if (i < 0)
			n = 16;
		for (unsigned j = 0; j < n; j++) {
			c.x[j].dst = (uint64_t)(uintptr_t)c.dev + j * size;
			c.x[j].src = c.host_dev + j * size;
			c.x[j].len = size;
		}
		for (int r = 0; r < CAL_REPS; r++) {
			t = cal_time(&c, 1, n);
			if (t <= 0)
				goto failed;
			tk = tk == 0 || t < tk ? t : tk;
			t = cal_time(&c, 0, n);
			if (t <= 0)
				goto failed;
			tc = tc == 0 || t < tc ? t : tc;
		}
		if (i < 0)
			continue;
		bw_k[i] = (double)n * size / tk;
		bw_c[i] = (double)n * size / tc;
		log_debug("cuda: device %u: %s x %u h2d: kernel %.1f GB/s, copy engines %.1f GB/s",
			  dev, size_str(size, a, sizeof(a)), n, bw_k[i] * 1e-9, bw_c[i] * 1e-9);
		if (cuda_now_ns() - start > CAL_BUDGET_NS) {
			ret = -ETIME;
			goto out;
		}
	}

	/* The smallest size from which the copy engines win at every larger size too. */
	for (pick = CAL_SIZES; pick > 0 && bw_c[pick - 1] >= CAL_CE_TIE * bw_k[pick - 1]; pick--)
		;
	if (pick == CAL_SIZES) {
		*crossover = CAL_MAX;
		log_info(
			"cuda: device %u (%s): small/large crossover %s: the kernel is faster "
			"throughout (%.1f GB/s vs copy engines %.1f GB/s at %s), calibrated in %.0f ms",
			dev, d->prop.name, size_str(CAL_MAX, a, sizeof(a)),
			bw_k[CAL_SIZES - 1] * 1e-9, bw_c[CAL_SIZES - 1] * 1e-9, a,
			(cuda_now_ns() - start) * 1e-6);
	} else {
		*crossover = (uint64_t)CAL_MIN << pick;
		if (pick > 0)
			log_info(
				"cuda: device %u (%s): small/large crossover %s (copy engines %.1f GB/s "
				"vs kernel %.1f GB/s there; kernel %.1f GB/s vs %.1f GB/s at %s), "
				"calibrated in %.0f ms",
				dev, d->prop.name, size_str(*crossover, a, sizeof(a)),
				bw_c[pick] * 1e-9, bw_k[pick] * 1e-9, bw_k[pick - 1] * 1e-9,
				bw_c[pick - 1] * 1e-9,
				size_str((uint64_t)CAL_MIN << (pick - 1), b, sizeof(b)),
				(cuda_now_ns() - start) * 1e-6);
		else
			log_info(
				"cuda: device %u (%s): small/large crossover %s: the copy engines "
				"win throughout (%.1f GB/s vs kernel %.1f GB/s there), calibrated in "
				"%.0f ms",
				dev, d->prop.name, size_str(*crossover, a, sizeof(a)),
				bw_c[0] * 1e-9, bw_k[0] * 1e-9, (cuda_now_ns() - start) * 1e-6);
	}
	goto out;

failed:
	ret = -EIO;
out:
	(void)cudaGetLastError();
	if (c.ev[1])
		cudaEventDestroy(c.ev[1]);
	if (c.ev[0])
		cudaEventDestroy(c.ev[0]);
	/* The lanes' streams may still be busy with a failed run: wait before freeing. */
	cudaStreamSynchronize(c.xf->lane[LANE_H2D_SMALL].stream);
	cudaStreamSynchronize(c.xf->lane[LANE_H2D_LARGE].stream);
	if (c.dev)
		cudaFree(c.dev);
	if (c.host)
		cudaFreeHost(c.host);
	(void)cudaGetLastError();
	free(c.x);
	return ret;
}
