/* gpuq-bench.c: gpuq's throughput and latency beside in-process CUDA baselines, in one run on one machine. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include <gpuq/gpuq.h>

/*
 * Process layout. The parent never calls CUDA: it only orchestrates, so it
 * can fork gpuq client processes at any time without a CUDA context to
 * inherit. Everything that needs CUDA runs in a fresh exec of this program
 * (hidden --internal=MODE flag) that reports back through a pipe:
 *   baselines  the in-process CUDA figures, own context, idle GPU
 *   latency    the in-process 4 KiB copy+sync latency, run under --busy
 *   busy       the load: spin kernels on every SM, in its own context
 * gpuq clients are plain fork()s of the parent that use libgpuq only; they
 * take commands from, and report into, one shared anonymous mapping.
 */

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

#define MAX_CLIENTS 256
#define MAX_LIST 16
#define MAX_ROWS 512
#define MAX_GPUQD_ARGS 32
#define LAT_MAX 200000          /* latency samples kept per measurement */
#define LAT_MIN 100             /* fewest latency samples, even past the cell's time */
#define SMALL_LIMIT MiB         /* under this a size is "small": per-call and batch-API baselines */
#define BATCH 1024              /* copies per per-call batch and per cudaMemcpyBatchAsync call */
#define QD_MAX 64               /* copies queued per stream by the pinned baseline */
#define WINDOW_BYTES (16 * MiB) /* default window: this many bytes per client, 4..1024 requests */
#define WINDOW_MAX_BYTES (512 * MiB) /* ... but no more bytes than this (then 2 requests at least) */
#define SPIN_BLOCK 256          /* threads per block of the busy kernel */
#define LIFE_BPS 50e9           /* link rate assumed to size cells by the bytes in flight */
#define NS 1000000000.0

enum dir { D_H2D, D_D2H, D_BIDIR };
enum load { L_IDLE, L_BUSY };
enum kind {
	K_PINNED,        /* cudaMemcpyAsync, pinned host memory, large sizes */
	K_PAGEABLE,      /* cudaMemcpy, malloc memory */
	K_PERCALL,       /* one cudaMemcpyAsync per small transfer, one sync per 1024 */
	K_BATCH,         /* cudaMemcpyBatchAsync, 1024 per call */
	K_LAT_P50,       /* 4 KiB cudaMemcpyAsync + cudaStreamSynchronize */
	K_LAT_P99,
	K_GPUQ,          /* gpuq_isend/irecv from arena memory */
	K_GPUQ_MALLOC,   /* gpuq_isend/irecv from malloc memory (staged through the arena) */
	K_GPUQ_LAT_P50,  /* blocking gpuq_send/recv of 4 KiB from arena memory */
	K_GPUQ_LAT_P99,
};
enum verdict { V_NONE, V_PASS, V_MISS };

static const struct {
	const char *what; /* table label */
	const char *id;   /* JSON "kind" */
	const char *base; /* name when another row is compared with this one */
} kinds[] = {
	[K_PINNED] = { "cuda memcpyAsync pinned", "cuda_pinned_async", "pinned" },
	[K_PAGEABLE] = { "cuda memcpy pageable", "cuda_pageable_memcpy", "pageable" },
	[K_PERCALL] = { "cuda memcpyAsync per call", "cuda_async_per_call", "per-call" },
	[K_BATCH] = { "cuda memcpyBatchAsync", "cuda_batch_async", "batch API" },
	[K_LAT_P50] = { "cuda copy+sync p50", "cuda_latency_p50", "in-proc p50" },
	[K_LAT_P99] = { "cuda copy+sync p99", "cuda_latency_p99", "in-proc p99" },
	[K_GPUQ] = { "gpuq isend/irecv arena", "gpuq_arena", "gpuq" },
	[K_GPUQ_MALLOC] = { "gpuq isend/irecv malloc", "gpuq_malloc", "gpuq malloc" },
	[K_GPUQ_LAT_P50] = { "gpuq send/recv p50", "gpuq_latency_p50", "gpuq p50" },
	[K_GPUQ_LAT_P99] = { "gpuq send/recv p99", "gpuq_latency_p99", "gpuq p99" },
};
static const char *const dir_names[] = { "h2d", "d2h", "bidir" };
static const char *const load_names[] = { "idle", "busy" };

/* One comparison of a row with a baseline row of the same run. */
struct cmp {
	int kind, load;   /* the baseline row's */
	double base;      /* its value; NAN when it was not measured */
	double ratio;     /* value / base */
	char target[16];  /* "" when no target applies */
	int verdict;
};

/* One measurement. Plain data: internal children send rows through a pipe. */
struct row {
	int kind, dir, load, clients, window, skipped;
	uint64_t size;
	double value;   /* in unit_of(): GB/s, M/s or us */
	double rate;    /* transfers/s (throughput rows) */
	double gbps;    /* 1e9 bytes/s (throughput rows) */
	uint64_t count; /* transfers counted, or latency samples */
	double seconds; /* measured time */
	int ncmp;
	struct cmp cmp[2];
	char target[16]; /* absolute target, "" when none */
	int verdict;
	char note[96];
};

/* What the CUDA side learned about the card (sent by the baselines child). */
struct card {
	char name[256];
	char busid[32];
	char driver[64];
	int driver_api, runtime;
	int sm_count, cc_major, cc_minor;
	uint64_t total_mem;
	char link_idle[64], link_load[64], link_max[64];
};

/* Messages of the busy child. */
struct busy_msg {
	int32_t type; /* 1: ready (first kernel running), 2: final report */
	int32_t grid, block;
	double kernel_ms;
	uint64_t launches;
	double mean_ms, min_ms, max_ms;
};

struct opts {
	uint64_t sizes[MAX_LIST];
	int nsizes;
	int clients[MAX_LIST];
	int nclients;
	double warm, dur, busy_ms;
	int window, dev, quick, busy, json, smoke, quiet, no_gpuq;
	uint64_t mem_budget;
	const char *gpuqd, *socket;
	const char *gpuqd_args[MAX_GPUQD_ARGS];
	int ngpuqd_args;
	const char *internal, *internal_socket; /* set only in internal children */
	int internal_fd;
};

static struct opts O = { .warm = -1, .dur = -1, .busy_ms = 10, .mem_budget = 16 * GiB,
			 .internal_fd = -1 };
static struct row rows[MAX_ROWS];
static int nrows;

/* ---------------------------------------------------------------- helpers */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double since(uint64_t t0)
{
	return (double)(now_ns() - t0) / NS;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	if (O.quiet)
		return;
	va_start(ap, fmt);
	fputs("gpuq-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static const char *fmt_size(uint64_t s, char *buf, size_t len)
{
	if (s >= GiB && s % GiB == 0)
		snprintf(buf, len, "%lluGiB", (unsigned long long)(s / GiB));
	else if (s >= MiB && s % MiB == 0)
		snprintf(buf, len, "%lluMiB", (unsigned long long)(s / MiB));
	else if (s >= KiB && s % KiB == 0)
		snprintf(buf, len, "%lluKiB", (unsigned long long)(s / KiB));
	else
		snprintf(buf, len, "%lluB", (unsigned long long)s);
	return buf;
}

/* "256", "4K", "4KiB", "64M", "1G": binary multiples. Returns 0 or -EINVAL. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mul = KiB; end++; break;
	case 'm': case 'M': mul = MiB; end++; break;
	case 'g': case 'G': mul = GiB; end++; break;
	default: break;
	}
	if (mul > 1 && (!strcmp(end, "iB") || !strcmp(end, "ib")))
		end += 2;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v == 0 || v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

/* Nearest-rank percentile of n sorted samples (ns), in us. */
static double pct(const uint32_t *v, uint64_t n, double p)
{
	uint64_t i = (uint64_t)(p * (double)n);

	if (n == 0)
		return NAN;
	if ((double)i < p * (double)n)
		i++;
	if (i < 1)
		i = 1;
	return v[i - 1] / 1000.0; /* ns -> us */
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* xorshift64: a payload that is neither zeros nor a repeating pattern. */
static uint64_t xs_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void pattern_fill(void *p, uint64_t len, uint64_t seed)
{
	uint64_t s = seed | 1, v, i;

	for (i = 0; i + 8 <= len; i += 8) {
		v = xs_next(&s);
		memcpy((uint8_t *)p + i, &v, 8);
	}
	if (i < len) {
		v = xs_next(&s);
		memcpy((uint8_t *)p + i, &v, len - i);
	}
}

/* Returns the offset of the first byte that differs from the pattern, or -1. */
static int64_t pattern_check(const void *p, uint64_t len, uint64_t seed)
{
	uint64_t s = seed | 1, v, i;

	for (i = 0; i + 8 <= len; i += 8) {
		v = xs_next(&s);
		if (memcmp((const uint8_t *)p + i, &v, 8))
			return (int64_t)i;
	}
	if (i < len) {
		v = xs_next(&s);
		if (memcmp((const uint8_t *)p + i, &v, len - i))
			return (int64_t)i;
	}
	return -1;
}

static int is_latency(int kind)
{
	return kind == K_LAT_P50 || kind == K_LAT_P99 || kind == K_GPUQ_LAT_P50 ||
	       kind == K_GPUQ_LAT_P99;
}

static int is_gpuq(int kind)
{
	return kind >= K_GPUQ;
}

static const char *unit_of(const struct row *r)
{
	if (is_latency(r->kind))
		return "us";
	return r->size < SMALL_LIMIT ? "M/s" : "GB/s";
}

static struct row *row_add(int kind, int dir, int load, uint64_t size, int clients, int window)
{
	struct row *r;

	if (nrows == MAX_ROWS) {
		fprintf(stderr, "gpuq-bench: more than %d rows\n", MAX_ROWS);
		exit(1);
	}
	r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->dir = dir;
	r->load = load;
	r->size = size;
	r->clients = clients;
	r->window = window;
	r->value = r->rate = r->gbps = NAN;
	return r;
}

static void row_tput(struct row *r, double transfers, double bytes, double secs)
{
	r->count = (uint64_t)(transfers + 0.5);
	r->seconds = secs;
	r->rate = transfers / secs;
	r->gbps = bytes / secs / 1e9;
	r->value = r->size < SMALL_LIMIT ? r->rate / 1e6 : r->gbps;
}

/* Sorts n samples (ns) and adds the p50 and p99 rows. */
static void rows_latency(int k50, int k99, int dir, int load, uint32_t *smp, uint64_t n, double secs)
{
	struct row *r;

	qsort(smp, n, sizeof(*smp), cmp_u32);
	int cl = is_gpuq(k50) ? 1 : 0;

	r = row_add(k50, dir, load, 4 * KiB, cl, 1);
	r->value = pct(smp, n, 0.50);
	r->count = n;
	r->seconds = secs;
	r->rate = (double)n / secs;
	r = row_add(k99, dir, load, 4 * KiB, cl, 1);
	r->value = pct(smp, n, 0.99);
	r->count = n;
	r->seconds = secs;
	r->rate = (double)n / secs;
}

/* Reads exactly len bytes within timeout_ms. Returns len, 0 at EOF before the first byte, or -errno. */
static ssize_t read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t t = now_ns();
		ssize_t n;
		int r;

		if (t >= deadline)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)((deadline - t) / 1000000ull + 1));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		n = read(fd, (uint8_t *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return got ? -EPIPE : 0;
		got += (size_t)n;
	}
	return (ssize_t)len;
}

static int write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

static void read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	out[0] = '\0';
	if (!f)
		return;
	if (fgets(out, (int)len, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

/* ------------------------------------------------------ CUDA (children only) */

#define CK(call) cuda_check((call), #call, __LINE__)

static void cuda_check(cudaError_t e, const char *call, int line)
{
	if (e == cudaSuccess)
		return;
	fprintf(stderr, "gpuq-bench: %s failed (gpuq-bench.c:%d): %s: %s\n", call, line,
		cudaGetErrorName(e), cudaGetErrorString(e));
	exit(1);
}

/* "32.0 GT/s PCIe x16" from sysfs; "unknown" where sysfs does not say (containers, gVisor). */
static void link_read(const char *busid, const char *which, char *out, size_t len)
{
	char path[256], speed[40], width[16];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s_link_speed", busid, which);
	read_line(path, speed, sizeof(speed));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s_link_width", busid, which);
	read_line(path, width, sizeof(width));
	if (speed[0] && width[0])
		snprintf(out, len, "%s x%s", speed, width);
	else
		snprintf(out, len, "unknown");
}

/* The kernel module's version, e.g. "580.159.04", from /proc/driver/nvidia/version. */
static void driver_read(char *out, size_t len)
{
	char line[512], *tok, *save = NULL;

	snprintf(out, len, "unknown");
	read_line("/proc/driver/nvidia/version", line, sizeof(line));
	for (tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (tok[0] >= '0' && tok[0] <= '9' && strchr(tok, '.')) {
			snprintf(out, len, "%s", tok);
			return;
		}
	}
}

static void card_read(struct card *c)
{
	struct cudaDeviceProp p;
	cudaError_t e;
	int n = 0;
	char *s;

	memset(c, 0, sizeof(*c));
	/* Any error here means "no usable GPU" (no driver, driver too old, no device node). */
	e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess) {
		fprintf(stderr, "gpuq-bench: no usable GPU: cudaGetDeviceCount: %s\n",
			cudaGetErrorString(e));
		exit(1);
	}
	if (O.dev >= n) {
		fprintf(stderr, "gpuq-bench: no GPU %d: CUDA sees %d device(s)\n", O.dev, n);
		exit(1);
	}
	CK(cudaSetDevice(O.dev));
	CK(cudaGetDeviceProperties(&p, O.dev));
	snprintf(c->name, sizeof(c->name), "%s", p.name);
	c->sm_count = p.multiProcessorCount;
	c->cc_major = p.major;
	c->cc_minor = p.minor;
	c->total_mem = p.totalGlobalMem;
	CK(cudaDeviceGetPCIBusId(c->busid, (int)sizeof(c->busid), O.dev));
	for (s = c->busid; *s; s++)
		if (*s >= 'A' && *s <= 'F')
			*s = (char)(*s - 'A' + 'a'); /* sysfs spells bus ids in lower case */
	CK(cudaDriverGetVersion(&c->driver_api));
	CK(cudaRuntimeGetVersion(&c->runtime));
	driver_read(c->driver, sizeof(c->driver));
	link_read(c->busid, "current", c->link_idle, sizeof(c->link_idle));
	link_read(c->busid, "max", c->link_max, sizeof(c->link_max));
}

/* Buffers and streams of the baselines child; owned by it for its whole life. */
struct bctx {
	cudaStream_t st[2];
	cudaEvent_t ev[2][QD_MAX];
	cudaEvent_t t_begin[2], t_end[2]; /* timing: each stream's measured stretch */
	uint8_t *hsrc, *hdst, *dsrc, *ddst; /* large: pinned host, device; big bytes each */
	uint8_t *psrc, *pdst;               /* large: pageable host */
	uint64_t big;
	uint8_t *hs, *ds; /* small: BATCH slots of small_max bytes, pinned and device */
	uint64_t small_max;
	uint8_t *hl, *dl; /* latency: 4 KiB pinned and device */
	struct card *card;
};

static void bctx_sync(struct bctx *b)
{
	CK(cudaStreamSynchronize(b->st[0]));
	CK(cudaStreamSynchronize(b->st[1]));
}

/*
 * Keeps up to depth copies queued on each stream (two for bidir) for secs.
 * n[] counts the copies issued per stream and carries on across calls.
 */
static void pinned_run(struct bctx *b, uint64_t s, int dir, unsigned depth, double secs,
		       uint64_t n[2])
{
	uint64_t nslot = b->big / s, t0 = now_ns();
	int lane, nl = dir == D_BIDIR ? 2 : 1;

	do {
		for (lane = 0; lane < nl; lane++) {
			int d = dir == D_BIDIR ? (lane ? D_D2H : D_H2D) : dir;
			uint64_t i = n[lane], off = (i % nslot) * s;
			cudaEvent_t ev = b->ev[lane][i % depth];

			if (i >= depth)
				CK(cudaEventSynchronize(ev)); /* copy i - depth is done */
			if (d == D_H2D)
				CK(cudaMemcpyAsync(b->dsrc + off, b->hsrc + off, s,
						   cudaMemcpyHostToDevice, b->st[lane]));
			else
				CK(cudaMemcpyAsync(b->hdst + off, b->ddst + off, s,
						   cudaMemcpyDeviceToHost, b->st[lane]));
			CK(cudaEventRecord(ev, b->st[lane]));
			n[lane]++;
		}
	} while (since(t0) < secs);
}

/*
 * Each stream is timed by its own events: a bidirectional figure is the sum
 * of both directions' rates, not diluted by one stream's tail.
 */
static void bl_pinned(struct bctx *b, uint64_t s, int dir)
{
	unsigned depth = (unsigned)(256 * MiB / s);
	uint64_t n[2] = { 0, 0 }, n0[2];
	double secs = 0, rate = 0;
	int lane, nl = dir == D_BIDIR ? 2 : 1;

	/* Four queued at least: one host thread feeds both streams in bidir. */
	depth = depth < 4 ? 4 : depth > QD_MAX ? QD_MAX : depth;
	pinned_run(b, s, dir, depth, O.warm, n);
	/* An idle link may run at a lower speed: read it while copies are queued. */
	if (!b->card->link_load[0])
		link_read(b->card->busid, "current", b->card->link_load,
			  sizeof(b->card->link_load));
	bctx_sync(b);
	for (lane = 0; lane < nl; lane++) {
		n0[lane] = n[lane];
		CK(cudaEventRecord(b->t_begin[lane], b->st[lane]));
	}
	pinned_run(b, s, dir, depth, O.dur, n);
	for (lane = 0; lane < nl; lane++)
		CK(cudaEventRecord(b->t_end[lane], b->st[lane]));
	bctx_sync(b);
	for (lane = 0; lane < nl; lane++) {
		float ms;

		CK(cudaEventElapsedTime(&ms, b->t_begin[lane], b->t_end[lane]));
		rate += (double)(n[lane] - n0[lane]) / (ms / 1e3);
		secs = ms / 1e3 > secs ? ms / 1e3 : secs;
	}
	row_tput(row_add(K_PINNED, dir, L_IDLE, s, 0, (int)depth), rate * secs,
		 rate * secs * (double)s, secs);
}

static void bl_pageable(struct bctx *b, uint64_t s, int dir)
{
	uint64_t nslot = b->big / s, i = 0, i0 = 0, t0 = now_ns();
	int measuring = 0;
	double secs;

	for (;;) {
		uint64_t off = (i % nslot) * s;

		if (dir == D_H2D)
			CK(cudaMemcpy(b->dsrc + off, b->psrc + off, s, cudaMemcpyHostToDevice));
		else
			CK(cudaMemcpy(b->pdst + off, b->ddst + off, s, cudaMemcpyDeviceToHost));
		i++;
		secs = since(t0);
		if (!measuring && secs >= O.warm) {
			measuring = 1;
			i0 = i;
			t0 = now_ns();
		} else if (measuring && secs >= O.dur) {
			break;
		}
	}
	row_tput(row_add(K_PAGEABLE, dir, L_IDLE, s, 0, 1), i - i0, (i - i0) * s, secs);
}

/* One batch of BATCH small copies, one cudaMemcpyAsync each, then one sync. */
static void percall_batch(struct bctx *b, uint64_t s, int dir)
{
	unsigned i;

	for (i = 0; i < BATCH; i++) {
		if (dir == D_H2D)
			CK(cudaMemcpyAsync(b->ds + i * s, b->hs + i * s, s, cudaMemcpyHostToDevice,
					   b->st[0]));
		else
			CK(cudaMemcpyAsync(b->hs + i * s, b->ds + i * s, s, cudaMemcpyDeviceToHost,
					   b->st[0]));
	}
	CK(cudaStreamSynchronize(b->st[0]));
}

struct batch_args {
	void *dst[BATCH];
	const void *src[BATCH];
	size_t sz[BATCH];
	struct cudaMemcpyAttributes attr;
	size_t attr_idx;
};

static void batch_setup(struct bctx *b, struct batch_args *a, uint64_t s, int dir)
{
	unsigned i;

	memset(&a->attr, 0, sizeof(a->attr));
	a->attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
	a->attr.srcLocHint.type = dir == D_H2D ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;
	a->attr.srcLocHint.id = dir == D_H2D ? 0 : O.dev;
	a->attr.dstLocHint.type = dir == D_H2D ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost;
	a->attr.dstLocHint.id = dir == D_H2D ? O.dev : 0;
	a->attr_idx = 0;
	for (i = 0; i < BATCH; i++) {
		a->dst[i] = dir == D_H2D ? b->ds + i * s : b->hs + i * s;
		a->src[i] = dir == D_H2D ? b->hs + i * s : b->ds + i * s;
		a->sz[i] = s;
	}
}

/* kind K_PERCALL or K_BATCH: whole batches of BATCH transfers, each ending in a sync. */
static void bl_small(struct bctx *b, struct batch_args *a, int kind, uint64_t s, int dir)
{
	uint64_t n = 0, t0;
	int phase;
	double secs = 0;

	if (kind == K_BATCH)
		batch_setup(b, a, s, dir);
	for (phase = 0; phase < 2; phase++) {
		double limit = phase ? O.dur : O.warm;

		n = 0;
		t0 = now_ns();
		do {
			if (kind == K_PERCALL) {
				percall_batch(b, s, dir);
			} else {
				CK(cudaMemcpyBatchAsync(a->dst, a->src, a->sz, BATCH, &a->attr,
							&a->attr_idx, 1, b->st[0]));
				CK(cudaStreamSynchronize(b->st[0]));
			}
			n += BATCH;
		} while ((secs = since(t0)) < limit);
	}
	row_tput(row_add(kind, dir, L_IDLE, s, 0, BATCH), n, n * s, secs);
}

/* 4 KiB cudaMemcpyAsync + cudaStreamSynchronize, one at a time: p50 and p99 rows. */
static void bl_latency(struct bctx *b, int dir, int load)
{
	uint32_t *smp = malloc(LAT_MAX * sizeof(*smp));
	uint64_t n = 0, t0, t;
	double secs = 0;

	if (!smp) {
		fprintf(stderr, "gpuq-bench: out of memory\n");
		exit(1);
	}
	for (int phase = 0; phase < 2; phase++) {
		n = 0;
		t0 = now_ns();
		for (;;) {
			t = now_ns();
			if (dir == D_H2D)
				CK(cudaMemcpyAsync(b->dl, b->hl, 4 * KiB, cudaMemcpyHostToDevice,
						   b->st[0]));
			else
				CK(cudaMemcpyAsync(b->hl, b->dl, 4 * KiB, cudaMemcpyDeviceToHost,
						   b->st[0]));
			CK(cudaStreamSynchronize(b->st[0]));
			if (phase) {
				uint64_t d = now_ns() - t;

				smp[n] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
			}
			n++;
			secs = since(t0);
			if (!phase && secs >= O.warm && n >= 10)
				break;
			if (phase && (n == LAT_MAX ||
				      (secs >= O.dur && n >= LAT_MIN) || secs >= O.dur + 30))
				break;
		}
	}
	rows_latency(K_LAT_P50, K_LAT_P99, dir, load, smp, n, secs);
	free(smp);
}

static void bctx_init(struct bctx *b, struct card *c, int all)
{
	int i, l;

	memset(b, 0, sizeof(*b));
	b->card = c;
	for (l = 0; l < 2; l++) {
		CK(cudaStreamCreateWithFlags(&b->st[l], cudaStreamNonBlocking));
		CK(cudaEventCreate(&b->t_begin[l]));
		CK(cudaEventCreate(&b->t_end[l]));
		for (i = 0; i < QD_MAX; i++)
			CK(cudaEventCreateWithFlags(&b->ev[l][i], cudaEventDisableTiming));
	}
	CK(cudaHostAlloc((void **)&b->hl, 4 * KiB, cudaHostAllocDefault));
	CK(cudaMalloc((void **)&b->dl, 4 * KiB));
	pattern_fill(b->hl, 4 * KiB, 0x1a7e);
	CK(cudaMemcpy(b->dl, b->hl, 4 * KiB, cudaMemcpyHostToDevice));
	if (!all)
		return;
	for (i = 0; i < O.nsizes; i++) {
		if (O.sizes[i] >= SMALL_LIMIT && O.sizes[i] > b->big)
			b->big = O.sizes[i];
		if (O.sizes[i] < SMALL_LIMIT && O.sizes[i] > b->small_max)
			b->small_max = O.sizes[i];
	}
	if (b->big) {
		CK(cudaHostAlloc((void **)&b->hsrc, b->big, cudaHostAllocDefault));
		CK(cudaHostAlloc((void **)&b->hdst, b->big, cudaHostAllocDefault));
		CK(cudaMalloc((void **)&b->dsrc, b->big));
		CK(cudaMalloc((void **)&b->ddst, b->big));
		b->psrc = malloc(b->big);
		b->pdst = malloc(b->big);
		if (!b->psrc || !b->pdst) {
			fprintf(stderr, "gpuq-bench: out of memory for %llu-byte buffers\n",
				(unsigned long long)b->big);
			exit(1);
		}
		pattern_fill(b->hsrc, b->big, 1);
		pattern_fill(b->hdst, b->big, 2);
		pattern_fill(b->psrc, b->big, 3);
		pattern_fill(b->pdst, b->big, 4); /* also faults the pages in */
		CK(cudaMemcpy(b->dsrc, b->hdst, b->big, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(b->ddst, b->hsrc, b->big, cudaMemcpyHostToDevice));
	}
	if (b->small_max) {
		CK(cudaHostAlloc((void **)&b->hs, BATCH * b->small_max, cudaHostAllocDefault));
		CK(cudaMalloc((void **)&b->ds, BATCH * b->small_max));
		pattern_fill(b->hs, BATCH * b->small_max, 5);
		CK(cudaMemcpy(b->ds, b->hs, BATCH * b->small_max, cudaMemcpyHostToDevice));
	}
	CK(cudaDeviceSynchronize());
}

static void internal_baselines(int fd, int latency_only)
{
	struct batch_args *a = malloc(sizeof(*a));
	struct card c;
	struct bctx b;
	int i, d;

	if (!a) {
		fprintf(stderr, "gpuq-bench: out of memory\n");
		exit(1);
	}
	card_read(&c);
	bctx_init(&b, &c, !latency_only);
	if (!latency_only) {
		for (i = 0; i < O.nsizes; i++) {
			if (O.sizes[i] < SMALL_LIMIT)
				continue;
			for (d = D_H2D; d <= D_BIDIR; d++)
				bl_pinned(&b, O.sizes[i], d);
			for (d = D_H2D; d <= D_D2H; d++)
				bl_pageable(&b, O.sizes[i], d);
		}
		for (i = 0; i < O.nsizes; i++) {
			if (O.sizes[i] >= SMALL_LIMIT)
				continue;
			for (d = D_H2D; d <= D_D2H; d++) {
				bl_small(&b, a, K_PERCALL, O.sizes[i], d);
				bl_small(&b, a, K_BATCH, O.sizes[i], d);
			}
		}
	}
	for (d = D_H2D; d <= D_D2H; d++)
		bl_latency(&b, d, latency_only ? L_BUSY : L_IDLE);
	CK(cudaDeviceSynchronize());
	if (write_full(fd, &c, sizeof(c)) || write_full(fd, rows, (size_t)nrows * sizeof(rows[0]))) {
		fprintf(stderr, "gpuq-bench: writing results to the parent: %s\n", strerror(errno));
		exit(1);
	}
	free(a);
}

/*
 * The busy load's kernel, as PTX so that this C program needs no nvcc: every
 * thread spins on the global nanosecond timer for ns nanoseconds.
 */
static const char spin_ptx[] =
	".version 7.0\n"
	".target sm_75\n"
	".address_size 64\n"
	".visible .entry gpuq_bench_spin(.param .u64 ns)\n"
	"{\n"
	"	.reg .pred %p;\n"
	"	.reg .b64 %rd<4>;\n"
	"	ld.param.u64 %rd0, [ns];\n"
	"	mov.u64 %rd1, %globaltimer;\n"
	"$Lspin:\n"
	"	mov.u64 %rd2, %globaltimer;\n"
	"	sub.u64 %rd3, %rd2, %rd1;\n"
	"	setp.lt.u64 %p, %rd3, %rd0;\n"
	"	@%p bra $Lspin;\n"
	"	ret;\n"
	"}\n";

static volatile sig_atomic_t busy_stop;

static void on_busy_term(int sig)
{
	(void)sig;
	busy_stop = 1;
}

/*
 * Keeps every SM of the device full of spin kernels, two launches queued so
 * there is no gap, until SIGTERM; then reports how many ran and how long.
 */
/*
 * Puts gpuqd's MPS environment (gpuq_mps_env) into this process's, keeping
 * what the user set, so that a CUDA context started after this, here or
 * in a program this process starts, joins gpuqd's MPS server.
 */
static void mps_env_apply(gpuq_t *q)
{
	const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
	int n = gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX);

	for (int i = 0; i < n && i < GPUQ_MPS_ENV_MAX; i++)
		setenv(names[i], values[i], 0);
}

static void internal_busy(int fd)
{
	struct sigaction sa = { .sa_handler = on_busy_term };
	struct busy_msg m = { .type = 1 };
	struct cudaDeviceProp p;
	cudaLibrary_t lib;
	cudaKernel_t k;
	cudaStream_t st;
	cudaEvent_t start[2], stop[2];
	unsigned long long ns = (unsigned long long)(O.busy_ms * 1e6);
	void *args[] = { &ns };
	uint64_t launched = 0, done = 0;
	double sum = 0, mn = INFINITY, mx = 0;
	dim3 grid = { 1, 1, 1 }, block = { SPIN_BLOCK, 1, 1 };
	int bps, i, n = 0;
	cudaError_t e;

	sigaction(SIGTERM, &sa, NULL);
	/*
	 * A client that computes beside gpuqd: connect first, so that this
	 * process joins gpuqd's MPS server before CUDA starts.
	 */
	if (O.internal_socket) {
		struct gpuq_options go = { .struct_size = sizeof(go),
					   .client_name = "gpuq-bench-busy",
					   .arena_size = MiB };
		gpuq_t *q = NULL;
		int r = gpuq_connect_opts(O.internal_socket, &go, &q);

		if (r) {
			fprintf(stderr, "gpuq-bench: busy load: connecting to %s: %s (%s)\n",
				O.internal_socket, gpuq_errmsg(NULL), strerror(-r));
			exit(1);
		}
		mps_env_apply(q);
		/* Kept open until exit: the session is what an MPS client holds. */
	}
	e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || O.dev >= n) {
		fprintf(stderr, "gpuq-bench: busy load: no GPU %d: %s\n", O.dev,
			e != cudaSuccess ? cudaGetErrorString(e) : "no such device");
		exit(1);
	}
	CK(cudaSetDevice(O.dev));
	/* Sleep in syncs: the clients being measured need the CPUs. */
	CK(cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync));
	CK(cudaGetDeviceProperties(&p, O.dev));
	CK(cudaLibraryLoadData(&lib, spin_ptx, NULL, NULL, 0, NULL, NULL, 0));
	CK(cudaLibraryGetKernel(&k, lib, "gpuq_bench_spin"));
	bps = p.maxThreadsPerMultiProcessor / SPIN_BLOCK;
	if (p.maxBlocksPerMultiProcessor > 0 && bps > p.maxBlocksPerMultiProcessor)
		bps = p.maxBlocksPerMultiProcessor;
	if (bps < 1)
		bps = 1;
	grid.x = (unsigned)(p.multiProcessorCount * bps);
	CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
	for (i = 0; i < 2; i++) {
		CK(cudaEventCreateWithFlags(&start[i], cudaEventBlockingSync));
		CK(cudaEventCreateWithFlags(&stop[i], cudaEventBlockingSync));
	}
	for (; launched < 2; launched++) {
		CK(cudaEventRecord(start[launched & 1], st));
		CK(cudaLaunchKernel((const void *)k, grid, block, args, 0, st));
		CK(cudaEventRecord(stop[launched & 1], st));
	}
	/* Ready once the first kernel has started. */
	while ((e = cudaEventQuery(start[0])) == cudaErrorNotReady)
		usleep(100);
	CK(e);
	m.grid = (int32_t)grid.x;
	m.block = SPIN_BLOCK;
	m.kernel_ms = O.busy_ms;
	if (write_full(fd, &m, sizeof(m)))
		exit(1);
	while (!busy_stop) {
		float ms;

		CK(cudaEventSynchronize(stop[done & 1]));
		CK(cudaEventElapsedTime(&ms, start[done & 1], stop[done & 1]));
		sum += ms;
		mn = ms < mn ? ms : mn;
		mx = ms > mx ? ms : mx;
		done++;
		/* Kernel done - 1 has finished: its events are free for the next launch. */
		CK(cudaEventRecord(start[launched & 1], st));
		CK(cudaLaunchKernel((const void *)k, grid, block, args, 0, st));
		CK(cudaEventRecord(stop[launched & 1], st));
		launched++;
	}
	CK(cudaStreamSynchronize(st));
	m.type = 2;
	m.launches = launched;
	m.mean_ms = done ? sum / (double)done : NAN;
	m.min_ms = done ? mn : NAN;
	m.max_ms = mx;
	if (write_full(fd, &m, sizeof(m)))
		exit(1);
	CK(cudaLibraryUnload(lib));
}

/* ------------------------------------------------------------- the parent */

static char self_exe[PATH_MAX];
static char **saved_argv;
static int saved_argc;
static pid_t bench_pid;
static char tmpdir[64];
static char sock_path[PATH_MAX];
static char daemon_log[PATH_MAX];
static char conf_path[PATH_MAX];
static char gpuqd_path[PATH_MAX];
static pid_t daemon_pid, busy_pid, internal_pid;
static int daemon_started; /* its log is worth keeping when something fails */
static int busy_fd = -1;
static pid_t worker_pids[MAX_CLIENTS];
static int late_failure;
static struct card card;
static int have_card;
static struct busy_msg busy_ready, busy_report;
static int busy_ran;
static struct gpuq_status dstatus = { .struct_size = sizeof(dstatus) };
static struct gpuq_device_info ddev;
static int have_ddev;

static void daemon_log_tail(void)
{
	char *lines[40] = { 0 }, buf[1024];
	int n = 0, i;
	FILE *f;

	if (!daemon_log[0] || !(f = fopen(daemon_log, "r")))
		return;
	while (fgets(buf, sizeof(buf), f)) {
		free(lines[n % 40]);
		lines[n % 40] = strdup(buf);
		n++;
	}
	fclose(f);
	fprintf(stderr, "---- last lines of gpuqd's log (%s) ----\n", daemon_log);
	for (i = n > 40 ? n - 40 : 0; i < n; i++) {
		fputs(lines[i % 40] ? lines[i % 40] : "", stderr);
		free(lines[i % 40]);
		lines[i % 40] = NULL;
	}
	fprintf(stderr, "---- end of gpuqd's log ----\n");
}

/* Sends sig, then waits up to ms for pid; SIGKILL after that. Returns the wait status or -1. */
static int stop_child(pid_t pid, int sig, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000ull;
	int st;

	if (pid <= 0)
		return -1;
	kill(pid, sig);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0)
			return -1;
		if (now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(2000);
	}
}

static void remove_tmpdir(void)
{
	if (!tmpdir[0])
		return;
	unlink(conf_path);
	unlink(daemon_log);
	unlink(sock_path);
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

/* Ends every child this program started: workers, internal children, busy load, gpuqd. */
static void cleanup(int keep_dir)
{
	int i;

	for (i = 0; i < MAX_CLIENTS; i++) {
		if (worker_pids[i] > 0) {
			kill(worker_pids[i], SIGKILL);
			waitpid(worker_pids[i], NULL, 0);
			worker_pids[i] = 0;
		}
	}
	if (internal_pid > 0)
		stop_child(internal_pid, SIGKILL, 5000);
	internal_pid = 0;
	if (busy_pid > 0)
		stop_child(busy_pid, SIGTERM, 5000);
	busy_pid = 0;
	if (daemon_pid > 0)
		stop_child(daemon_pid, SIGTERM, 20000);
	daemon_pid = 0;
	if (!keep_dir)
		remove_tmpdir();
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	fputs("gpuq-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (daemon_pid > 0)
		daemon_log_tail(); /* else whoever saw it exit printed it */
	cleanup(daemon_started);
	if (tmpdir[0])
		fprintf(stderr, "gpuq-bench: kept %s for gpuqd's log\n", tmpdir);
	exit(1);
}

static void on_interrupt(int sig)
{
	int i;

	/* Only async-signal-safe calls: the children also die with us (PDEATHSIG). */
	for (i = 0; i < MAX_CLIENTS; i++)
		if (worker_pids[i] > 0)
			kill(worker_pids[i], SIGKILL);
	if (internal_pid > 0)
		kill(internal_pid, SIGKILL);
	if (busy_pid > 0)
		kill(busy_pid, SIGTERM);
	if (daemon_pid > 0) {
		/* gpuqd removes its socket as it exits; a second signal ends us at once (SA_RESETHAND). */
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
	}
	if (tmpdir[0]) {
		unlink(conf_path);
		unlink(daemon_log);
		unlink(sock_path);
		rmdir(tmpdir);
	}
	_exit(128 + sig);
}

/* In a freshly forked child: default signals, and die with the parent. */
static void child_init(int deathsig)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, deathsig);
	if (getppid() != bench_pid)
		_exit(1);
}

/* Starts this program again as an internal child (fresh process: its own CUDA context). */
static pid_t spawn_internal(const char *mode, int *rfd)
{
	char **argv = calloc((size_t)saved_argc + 8, sizeof(*argv));
	char fdarg[32];
	int p[2], n = 0, i;
	pid_t pid;

	if (!argv || pipe2(p, O_CLOEXEC))
		die("spawning the %s process: %s", mode, strerror(errno));
	snprintf(fdarg, sizeof(fdarg), "--internal-fd=%d", p[1]);
	argv[n++] = self_exe;
	argv[n++] = (char *)(strcmp(mode, "busy") == 0 ? "--internal=busy"
				: strcmp(mode, "latency") == 0 ? "--internal=latency"
							       : "--internal=baselines");
	argv[n++] = fdarg;
	if (sock_path[0]) {
		argv[n++] = (char *)"--internal-socket";
		argv[n++] = sock_path;
	}
	for (i = 1; i < saved_argc; i++)
		argv[n++] = saved_argv[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		child_init(SIGKILL);
		if (fcntl(p[1], F_SETFD, 0) < 0)
			_exit(127);
		execv(self_exe, argv);
		fprintf(stderr, "gpuq-bench: exec %s: %s\n", self_exe, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	free(argv);
	*rfd = p[0];
	return pid;
}

static void wait_internal(pid_t pid, const char *what)
{
	int st;

	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		internal_pid = 0;
		die("the %s process failed (%s %d); its message is above", what,
		    WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	internal_pid = 0;
}

/* Runs the CUDA baselines (or, latency_only, the latency under load) in a child; adds its rows. */
static void run_cuda_child(int latency_only)
{
	const char *what = latency_only ? "latency baseline" : "baseline";
	struct card c;
	ssize_t n;
	int fd;

	note("%s: in-process CUDA %s in its own process", latency_only ? "busy" : "idle",
	     latency_only ? "4 KiB latency" : "baselines");
	internal_pid = spawn_internal(latency_only ? "latency" : "baselines", &fd);
	n = read_full(fd, &c, sizeof(c), 900000);
	if (n != (ssize_t)sizeof(c)) {
		close(fd);
		wait_internal(internal_pid, what);
		die("the %s process ended without results", what);
	}
	if (!latency_only) {
		card = c;
		have_card = 1;
		note("card: %s (%s), PCIe %s", card.name, card.busid, card.link_load);
	}
	for (;;) {
		struct row r;

		n = read_full(fd, &r, sizeof(r), 900000);
		if (n == 0)
			break;
		if (n != (ssize_t)sizeof(r)) {
			close(fd);
			wait_internal(internal_pid, what);
			die("reading the %s results: %s", what, strerror((int)-n));
		}
		if (nrows == MAX_ROWS)
			die("more than %d rows", MAX_ROWS);
		rows[nrows++] = r;
	}
	close(fd);
	wait_internal(internal_pid, what);
}

/* ---- gpuqd ---- */

static void gpuqd_resolve(void)
{
	const char *env = getenv("GPUQD");
	char dir[PATH_MAX], *slash;
	size_t l;

	if (O.gpuqd) {
		snprintf(gpuqd_path, sizeof(gpuqd_path), "%s", O.gpuqd);
	} else if (env && *env) {
		snprintf(gpuqd_path, sizeof(gpuqd_path), "%s", env);
	} else {
		snprintf(dir, sizeof(dir), "%s", self_exe);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		/* A libtool-wrapped build runs the real binary from .libs/. */
		l = strlen(dir);
		if (l >= 6 && !strcmp(dir + l - 6, "/.libs"))
			dir[l - 6] = '\0';
		snprintf(gpuqd_path, sizeof(gpuqd_path), "%s/../daemon/gpuqd", dir);
	}
	if (access(gpuqd_path, X_OK))
		die("no gpuqd at %s (%s): give --gpuqd PATH, set $GPUQD, or --socket PATH to use a "
		    "running one",
		    gpuqd_path, strerror(errno));
}

/* Connects once, checks the backend and the device, keeps what `gpuqctl status` would show. */
static void gpuqd_probe(gpuq_t *q)
{
	struct gpuq_device_info devs[16];
	int r, n;

	r = gpuq_status(q, &dstatus);
	if (r)
		die("gpuq_status: %s (%s)", gpuq_errmsg(q), strerror(-r));
	if (!O.smoke && strcmp(gpuq_backend(q), "cuda"))
		die("gpuqd runs the %s backend (%s): no GPU figures from it (--smoke runs the bench "
		    "on the host backend)",
		    gpuq_backend(q), dstatus.backend_reason);
	n = gpuq_devices(q, devs, sizeof(*devs), 16);
	if (n < 0)
		die("gpuq_devices: %s (%s)", gpuq_errmsg(q), strerror(-n));
	if (O.dev >= n)
		die("gpuqd has %d device(s); there is no device %d", n, O.dev);
	if (O.dev < 16) {
		ddev = devs[O.dev];
		have_ddev = 1;
	}
}

static void gpuqd_wait_ready(uint64_t timeout_ns)
{
	uint64_t deadline = now_ns() + timeout_ns;
	gpuq_t *q;
	int r, st;

	for (;;) {
		if (daemon_pid > 0 && waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			daemon_log_tail();
			die("gpuqd exited (%s %d) before it accepted a connection",
			    WIFSIGNALED(st) ? "signal" : "status",
			    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		}
		r = gpuq_connect_opts(
			sock_path,
			&(struct gpuq_options){ .struct_size = sizeof(struct gpuq_options),
						.client_name = "gpuq-bench" },
			&q);
		if (r == 0)
			break;
		if ((r != -ENOENT && r != -ECONNREFUSED) || daemon_pid <= 0)
			die("connecting to gpuqd at %s: %s", sock_path,
			    *gpuq_errmsg(NULL) ? gpuq_errmsg(NULL) : strerror(-r));
		if (now_ns() > deadline)
			die("gpuqd did not accept a connection on %s within %.0f s", sock_path,
			    (double)timeout_ns / NS);
		usleep(20000);
	}
	gpuqd_probe(q);
	/* The CUDA programs this one starts (baselines, busy load) inherit it. */
	mps_env_apply(q);
	gpuq_close(q);
}

static void gpuqd_start(void)
{
	const char *argv[MAX_GPUQD_ARGS + 16];
	int argc = 0, i, fd;
	FILE *f;

	gpuqd_resolve();
	snprintf(sock_path, sizeof(sock_path), "%s/gpuqd.sock", tmpdir);
	snprintf(daemon_log, sizeof(daemon_log), "%s/gpuqd.log", tmpdir);
	snprintf(conf_path, sizeof(conf_path), "%s/gpuqd.conf", tmpdir);
	/* An empty configuration of our own: a host's /etc/gpuq/gpuqd.conf must not change the run. */
	f = fopen(conf_path, "w");
	if (!f)
		die("creating %s: %s", conf_path, strerror(errno));
	fputs("# gpuq-bench: defaults and flags only\n", f);
	fclose(f);
	argv[argc++] = gpuqd_path;
	argv[argc++] = "--socket";
	argv[argc++] = sock_path;
	argv[argc++] = "--backend";
	argv[argc++] = O.smoke ? "host" : "cuda";
	argv[argc++] = "--config";
	argv[argc++] = conf_path;
	for (i = 0; i < O.ngpuqd_args; i++)
		argv[argc++] = O.gpuqd_args[i];
	argv[argc] = NULL;
	note("starting %s on %s", gpuqd_path, sock_path);
	fflush(NULL);
	daemon_pid = fork();
	if (daemon_pid < 0)
		die("fork: %s", strerror(errno));
	daemon_started = 1;
	if (daemon_pid == 0) {
		child_init(SIGTERM);
		fd = open(daemon_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		execv(gpuqd_path, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", gpuqd_path, strerror(errno));
		_exit(127);
	}
	/* The cuda backend initialises its devices first (and MPS when asked): allow time. */
	gpuqd_wait_ready(120 * 1000000000ull);
}

static void gpuqd_stop(void)
{
	int st;

	if (daemon_pid <= 0)
		return;
	st = stop_child(daemon_pid, SIGTERM, 20000);
	daemon_pid = 0;
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "gpuq-bench: gpuqd did not stop cleanly on SIGTERM (%s %d)\n",
			st == -1 ? "killed after 20 s" : WIFSIGNALED(st) ? "signal" : "status",
			st == -1 ? 0 : WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		daemon_log_tail();
		late_failure = 1;
	}
}

/* ---- the busy load ---- */

static void busy_start(void)
{
	ssize_t n;

	note("busy: starting the load (spin kernels of %.1f ms on every SM, own process)",
	     O.busy_ms);
	busy_pid = spawn_internal("busy", &busy_fd);
	n = read_full(busy_fd, &busy_ready, sizeof(busy_ready), 120000);
	if (n != (ssize_t)sizeof(busy_ready) || busy_ready.type != 1) {
		int st;

		waitpid(busy_pid, &st, 0);
		busy_pid = 0;
		die("the busy-load process did not start its kernels; its message is above");
	}
	note("busy: %d blocks x %d threads running", busy_ready.grid, busy_ready.block);
}

static void busy_check(void)
{
	int st;

	if (busy_pid > 0 && waitpid(busy_pid, &st, WNOHANG) == busy_pid) {
		busy_pid = 0;
		die("the busy-load process exited (%s %d): the figures under load would not be",
		    WIFSIGNALED(st) ? "signal" : "status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
}

static void busy_finish(void)
{
	ssize_t n;
	int st;

	busy_check();
	kill(busy_pid, SIGTERM);
	n = read_full(busy_fd, &busy_report, sizeof(busy_report), 30000);
	st = stop_child(busy_pid, SIGTERM, 30000);
	busy_pid = 0;
	close(busy_fd);
	busy_fd = -1;
	if (n != (ssize_t)sizeof(busy_report) || busy_report.type != 2 || st == -1 ||
	    !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "gpuq-bench: the busy-load process did not stop cleanly\n");
		late_failure = 1;
		return;
	}
	busy_ran = 1;
	note("busy: stopped after %llu kernels (mean %.2f ms)",
	     (unsigned long long)busy_report.launches, busy_report.mean_ms);
}

/* ---- gpuq client processes ---- */

enum { OP_RUN = 1, OP_LAT, OP_EXIT };

/* A command to all clients of a group; written by the parent before it bumps seq. */
struct wcmd {
	int32_t op, dir;
	uint64_t t_go, t_start, t_end; /* CLOCK_MONOTONIC ns: start, measure from, until */
};

/* One client's report; written by that client only, before it stores ack. */
struct wres {
	_Atomic uint32_t ack; /* seq of the last command finished (setup: the group's first seq) */
	int32_t status;       /* 0 or -errno */
	double xfers;         /* throughput: transfers credited to the measured window */
	uint64_t samples;     /* latency: samples in lat_ns[] ... */
	uint64_t elapsed_ns;  /* ... taken over this long */
	char err[256];
};

/* The shared anonymous mapping between the parent and its clients; the parent owns it. */
struct shared {
	_Atomic uint32_t seq;
	struct wcmd cmd;
	struct wres res[MAX_CLIENTS];
	uint32_t lat_ns[LAT_MAX];
};

static struct shared *sh;

enum { MODE_ARENA, MODE_MALLOC };

/* One set of clients with the same sessions, over several cells. */
struct group {
	uint64_t size;
	int clients, window, mode, load;
	uint64_t arena;
};

static struct group G; /* the current group; clients read their copy after fork */

static void futex_wait_u32(_Atomic uint32_t *addr, uint32_t val, long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void wack(struct wres *me, uint32_t seq, int status)
{
	me->status = status;
	atomic_store_explicit(&me->ack, seq, memory_order_release);
}

static void wfail(struct wres *me, uint32_t seq, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5), noreturn));
static void wfail(struct wres *me, uint32_t seq, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(me->err, sizeof(me->err), fmt, ap);
	va_end(ap);
	wack(me, seq, status < 0 ? status : -EIO);
	_exit(1);
}

/* A client's session and memory for its group. */
struct wctx {
	int idx;
	struct wres *me;
	gpuq_t *q;
	uint8_t *payload; /* window slots of size bytes: arena or malloc memory */
	uint32_t buf;     /* device buffer of the same layout */
	struct gpuq_completion *comp;
	uint64_t *sub; /* per slot: when its request was submitted */
	uint32_t seq;
};

static int slot_dir(const struct wctx *w, int dir, unsigned j)
{
	if (dir != D_BIDIR)
		return dir;
	/* Alternate over all slots of all clients: half the requests go each way. */
	return ((unsigned)w->idx * (unsigned)G.window + j) % 2 ? D_D2H : D_H2D;
}

static void wsubmit(struct wctx *w, int dir, unsigned j, uint64_t t)
{
	uint64_t off = (uint64_t)j * G.size;
	int r;

	w->sub[j] = t;
	if (slot_dir(w, dir, j) == D_H2D)
		r = gpuq_isend(w->q, w->buf, off, w->payload + off, G.size, j, NULL);
	else
		r = gpuq_irecv(w->q, w->buf, off, w->payload + off, G.size, j, NULL);
	if (r)
		wfail(w->me, w->seq, r, "client %d: gpuq_%s: %s (%s)", w->idx,
		      slot_dir(w, dir, j) == D_H2D ? "isend" : "irecv", gpuq_errmsg(w->q),
		      strerror(-r));
}

/*
 * One throughput cell: keeps the window full from t_go and credits each
 * finished request with the share of its life (submission to completion)
 * that lies in [t_start, t_end). Counting completions instead would be off
 * by a whole burst where many large requests progress side by side and
 * finish together. After t_end the load stays as it was until every request
 * submitted before t_end has finished (a draining queue would speed up the
 * last ones), then the rest drain uncredited.
 */
static void wrun(struct wctx *w, const struct wcmd *c)
{
	unsigned W = (unsigned)G.window, inflight = 0, old = 0, j;
	uint64_t last, t0, stall_ns = 30 * 1000000000ull;
	double xfers = 0;

	if (c->dir == D_BIDIR && G.clients * G.window < 2)
		wfail(w->me, w->seq, -EINVAL, "bidir needs two requests in flight");
	sleep_until(c->t_go);
	t0 = now_ns();
	for (j = 0; j < W; j++, inflight++, old++)
		wsubmit(w, c->dir, j, t0);
	last = now_ns();
	while (inflight) {
		int n = gpuq_poll(w->q, w->comp, W, 100), k;
		uint64_t t = now_ns();

		if (n < 0)
			wfail(w->me, w->seq, n, "client %d: gpuq_poll: %s (%s)", w->idx,
			      gpuq_errmsg(w->q), strerror(-n));
		if (n == 0 && t - last > stall_ns)
			wfail(w->me, w->seq, -ETIMEDOUT,
			      "client %d: no completion for %.0f s with %u request(s) of %llu bytes "
			      "outstanding",
			      w->idx, (double)stall_ns / NS, inflight, (unsigned long long)G.size);
		if (n > 0)
			last = t;
		for (k = 0; k < n; k++) {
			uint64_t tag = w->comp[k].tag, s0, lo, hi;

			if (tag >= W)
				wfail(w->me, w->seq, -EPROTO, "client %d: completion with unknown tag %llu",
				      w->idx, (unsigned long long)tag);
			if (w->comp[k].result != (int64_t)G.size)
				wfail(w->me, w->seq,
				      w->comp[k].result < 0 ? (int)w->comp[k].result : -EIO,
				      "client %d: a %llu-byte %s completed with %lld%s%s", w->idx,
				      (unsigned long long)G.size,
				      slot_dir(w, c->dir, (unsigned)tag) == D_H2D ? "send" : "recv",
				      (long long)w->comp[k].result, w->comp[k].result < 0 ? ": " : "",
				      w->comp[k].result < 0 ? strerror((int)-w->comp[k].result) : "");
			inflight--;
			s0 = w->sub[tag];
			if (s0 < c->t_end)
				old--;
			lo = s0 > c->t_start ? s0 : c->t_start;
			hi = t < c->t_end ? t : c->t_end;
			if (t <= s0)
				xfers += t >= c->t_start && t < c->t_end;
			else if (hi > lo)
				xfers += (double)(hi - lo) / (double)(t - s0);
			if (t < c->t_end || old) {
				wsubmit(w, c->dir, (unsigned)tag, t);
				inflight++;
				old += t < c->t_end;
			}
		}
	}
	w->me->xfers = xfers;
}

/* Blocking 4 KiB gpuq_send (or gpuq_recv) from arena memory, one at a time. */
static void wlat(struct wctx *w, const struct wcmd *c)
{
	uint64_t n = 0, t0, t;
	double secs = 0;
	int phase;

	for (phase = 0; phase < 2; phase++) {
		n = 0;
		t0 = now_ns();
		for (;;) {
			ssize_t r;

			t = now_ns();
			r = c->dir == D_H2D ? gpuq_send(w->q, w->buf, 0, w->payload, G.size)
					    : gpuq_recv(w->q, w->buf, 0, w->payload, G.size);
			if (r != (ssize_t)G.size)
				wfail(w->me, w->seq, r < 0 ? (int)r : -EIO,
				      "client %d: gpuq_%s returned %zd: %s", w->idx,
				      c->dir == D_H2D ? "send" : "recv", r, gpuq_errmsg(w->q));
			if (phase) {
				uint64_t d = now_ns() - t;

				sh->lat_ns[n] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
			}
			n++;
			secs = since(t0);
			if (!phase && secs >= O.warm && n >= 10)
				break;
			if (phase && (n == LAT_MAX || (secs >= O.dur && n >= LAT_MIN) ||
				      secs >= O.dur + 30))
				break;
		}
	}
	w->me->samples = n;
	w->me->elapsed_ns = (uint64_t)(secs * 1e9);
}

static void worker_main(int idx, uint32_t seq0)
{
	struct wctx w = { .idx = idx, .me = &sh->res[idx], .seq = seq0 };
	struct gpuq_options go = { .struct_size = sizeof(go) };
	uint64_t need = (uint64_t)G.window * G.size, seed = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1);
	char name[64], sz[32];
	size_t asz = 0;
	ssize_t n;
	int64_t bad;
	int r;

	child_init(SIGKILL);
	snprintf(name, sizeof(name), "gpuq-bench/%d", idx);
	go.client_name = name;
	go.arena_size = G.arena;
	if (G.window > 2048) {
		unsigned qd = 4096;

		while (qd < 2u * (unsigned)G.window)
			qd *= 2;
		go.queue_depth = qd;
	}
	r = gpuq_connect_opts(sock_path, &go, &w.q);
	if (r)
		wfail(w.me, w.seq, r, "client %d: connecting to %s: %s (%s)", idx, sock_path,
		      gpuq_errmsg(NULL), strerror(-r));
	if (!O.smoke && strcmp(gpuq_backend(w.q), "cuda"))
		wfail(w.me, w.seq, -EPROTO, "client %d: gpuqd runs the %s backend, not cuda", idx,
		      gpuq_backend(w.q));
	if (G.mode == MODE_ARENA) {
		gpuq_arena(w.q, &asz);
		w.payload = gpuq_mem_alloc(w.q, need);
		if (!w.payload)
			wfail(w.me, w.seq, -ENOMEM,
			      "client %d: gpuq_mem_alloc(%s) failed in an arena of %llu bytes (asked "
			      "%llu): raise gpuqd's --arena-max or lower --window",
			      idx, fmt_size(need, sz, sizeof(sz)), (unsigned long long)asz,
			      (unsigned long long)G.arena);
	} else if (posix_memalign((void **)&w.payload, 4096, need)) {
		wfail(w.me, w.seq, -ENOMEM, "client %d: out of memory", idx);
	}
	r = gpuq_buf_alloc(w.q, (unsigned)O.dev, need, &w.buf);
	if (r)
		wfail(w.me, w.seq, r, "client %d: gpuq_buf_alloc(%s): %s (%s)", idx,
		      fmt_size(need, sz, sizeof(sz)), gpuq_errmsg(w.q), strerror(-r));
	w.comp = calloc((size_t)G.window, sizeof(*w.comp));
	w.sub = calloc((size_t)G.window, sizeof(*w.sub));
	if (!w.comp || !w.sub)
		wfail(w.me, w.seq, -ENOMEM, "client %d: out of memory", idx);
	/* Real data, checked once end to end, so that the figures move real bytes. */
	pattern_fill(w.payload, need, seed);
	n = gpuq_send(w.q, w.buf, 0, w.payload, need);
	if (n != (ssize_t)need)
		wfail(w.me, w.seq, n < 0 ? (int)n : -EIO, "client %d: gpuq_send(%s) returned %zd: %s",
		      idx, fmt_size(need, sz, sizeof(sz)), n, gpuq_errmsg(w.q));
	memset(w.payload, 0, need);
	n = gpuq_recv(w.q, w.buf, 0, w.payload, need);
	if (n != (ssize_t)need)
		wfail(w.me, w.seq, n < 0 ? (int)n : -EIO, "client %d: gpuq_recv(%s) returned %zd: %s",
		      idx, fmt_size(need, sz, sizeof(sz)), n, gpuq_errmsg(w.q));
	bad = pattern_check(w.payload, need, seed);
	if (bad >= 0)
		wfail(w.me, w.seq, -EIO,
		      "client %d: data read back from the device differs from what was sent, at "
		      "byte %lld of %llu",
		      idx, (long long)bad, (unsigned long long)need);
	wack(w.me, w.seq, 0);

	for (;;) {
		uint32_t s;
		struct wcmd c;

		while ((s = atomic_load_explicit(&sh->seq, memory_order_acquire)) == w.seq)
			futex_wait_u32(&sh->seq, w.seq, 1000);
		w.seq = s;
		c = sh->cmd;
		w.me->xfers = 0;
		w.me->samples = w.me->elapsed_ns = 0;
		if (c.op == OP_RUN) {
			wrun(&w, &c);
		} else if (c.op == OP_LAT) {
			if (idx == 0)
				wlat(&w, &c);
		} else {
			gpuq_buf_free(w.q, w.buf);
			if (G.mode == MODE_ARENA)
				gpuq_mem_free(w.q, w.payload);
			else
				free(w.payload);
			gpuq_close(w.q);
			wack(w.me, w.seq, 0);
			_exit(0);
		}
		wack(w.me, w.seq, 0);
	}
}

/* Waits until every client acked seq; dies with the clients' messages otherwise. */
static void acks_wait(uint32_t seq, uint64_t deadline, const char *what)
{
	int i, st, dead_st = 0, n = G.clients;

	for (;;) {
		int ok = 0, dead = -1;

		for (i = 0; i < n; i++) {
			if (atomic_load_explicit(&sh->res[i].ack, memory_order_acquire) != seq)
				continue;
			if (sh->res[i].status)
				die("%s: %s", what, sh->res[i].err[0] ? sh->res[i].err : "failed");
			ok++;
		}
		if (ok == n)
			return;
		for (i = 0; i < n; i++) {
			if (worker_pids[i] > 0 && waitpid(worker_pids[i], &st, WNOHANG) == worker_pids[i]) {
				worker_pids[i] = 0;
				if (atomic_load_explicit(&sh->res[i].ack, memory_order_acquire) != seq) {
					dead = i;
					dead_st = st;
				}
			}
		}
		if (dead >= 0) {
			if (atomic_load_explicit(&sh->res[dead].ack, memory_order_acquire) == seq &&
			    sh->res[dead].status)
				die("%s: %s", what, sh->res[dead].err);
			die("%s: client %d exited without reporting (%s %d)", what, dead,
			    WIFSIGNALED(dead_st) ? "signal" : "status",
			    WIFSIGNALED(dead_st) ? WTERMSIG(dead_st) : WEXITSTATUS(dead_st));
		}
		if (now_ns() > deadline)
			die("%s: %d of %d client(s) did not finish within the time allowed: is gpuqd "
			    "completing requests?",
			    what, n - ok, n);
		if (daemon_pid > 0 && waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			daemon_log_tail();
			die("%s: gpuqd exited (%s %d)", what, WIFSIGNALED(st) ? "signal" : "status",
			    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		}
		usleep(1000);
	}
}

static uint32_t cmd_post(int op, int dir, double warm, double dur)
{
	uint64_t go = now_ns() + 20000000ull; /* time for every client to wake */
	uint32_t s = atomic_load_explicit(&sh->seq, memory_order_relaxed) + 1;

	sh->cmd.op = op;
	sh->cmd.dir = dir;
	sh->cmd.t_go = go;
	sh->cmd.t_start = go + (uint64_t)(warm * NS);
	sh->cmd.t_end = sh->cmd.t_start + (uint64_t)(dur * NS);
	atomic_store_explicit(&sh->seq, s, memory_order_release);
	futex_wake_all(&sh->seq);
	return s;
}

static void group_label(char *buf, size_t len, const char *verb)
{
	char sz[32];

	snprintf(buf, len, "%s %s gpuq %s x%d%s", load_names[G.load], verb,
		 fmt_size(G.size, sz, sizeof(sz)), G.clients,
		 G.mode == MODE_MALLOC ? " (malloc)" : "");
}

/* Starts the group's clients and waits until each has its session, memory and a checked round trip. */
static void group_open(void)
{
	uint64_t total = (uint64_t)G.clients * (uint64_t)G.window * G.size;
	uint32_t seq0 = atomic_fetch_add(&sh->seq, 1) + 1;
	char what[96];
	int i;

	group_label(what, sizeof(what), "setup of");
	for (i = 0; i < G.clients; i++) {
		memset(&sh->res[i], 0, sizeof(sh->res[i]));
		atomic_store(&sh->res[i].ack, 0);
	}
	fflush(NULL);
	for (i = 0; i < G.clients; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0)
			worker_main(i, seq0);
		worker_pids[i] = pid;
	}
	/* Registration and the checked round trip move every byte twice. */
	acks_wait(seq0, now_ns() + 120000000000ull + total, what);
}

static void group_close(void)
{
	uint32_t s = cmd_post(OP_EXIT, 0, 0, 0);
	uint64_t deadline = now_ns() + 30000000000ull;
	char what[96];
	int i, st;

	group_label(what, sizeof(what), "end of");
	acks_wait(s, deadline, what);
	for (i = 0; i < G.clients; i++) {
		while (worker_pids[i] > 0) {
			pid_t r = waitpid(worker_pids[i], &st, WNOHANG);

			if (r == worker_pids[i] || r < 0) {
				worker_pids[i] = 0;
				break;
			}
			if (now_ns() > deadline)
				die("%s: client %d did not exit", what, i);
			usleep(1000);
		}
	}
}

static void group_cell(int dir)
{
	double xfers = 0, life, warm, dur;
	char what[128], sz[32];
	struct row *r;
	uint32_t s;
	int i;

	if (dir == D_BIDIR && G.clients * G.window < 2) {
		r = row_add(G.mode == MODE_MALLOC ? K_GPUQ_MALLOC : K_GPUQ, dir, G.load, G.size,
			    G.clients, G.window);
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "skipped: one request in flight");
		return;
	}
	snprintf(what, sizeof(what), "%s gpuq %s x%d %s%s", load_names[G.load],
		 fmt_size(G.size, sz, sizeof(sz)), G.clients, dir_names[dir],
		 G.mode == MODE_MALLOC ? " (malloc)" : "");
	/*
	 * Many clients of large transfers keep gigabytes in flight, and one round
	 * of them takes a while: warm up past the first round and measure over
	 * many, so that the window's edges don't matter.
	 */
	life = (double)G.clients * G.window * (double)G.size / LIFE_BPS;
	warm = O.warm > 1.5 * life ? O.warm : 1.5 * life;
	dur = O.dur > 10 * life ? O.dur : 10 * life;
	if (G.load == L_BUSY)
		busy_check();
	s = cmd_post(OP_RUN, dir, warm, dur);
	sleep_until(sh->cmd.t_end);
	/* The window ended; draining may take a few transfers more. */
	acks_wait(s, sh->cmd.t_end + 60000000000ull + (uint64_t)G.window * G.size, what);
	for (i = 0; i < G.clients; i++)
		xfers += sh->res[i].xfers;
	if (!(xfers > 0))
		die("%s: no transfer completed in %.2f s", what, dur);
	r = row_add(G.mode == MODE_MALLOC ? K_GPUQ_MALLOC : K_GPUQ, dir, G.load, G.size, G.clients,
		    G.window);
	row_tput(r, xfers, xfers * (double)G.size, (double)(sh->cmd.t_end - sh->cmd.t_start) / NS);
	note("%s: %.3g %s (%.2f GB/s, %.3g transfers/s)", what, r->value, unit_of(r), r->gbps,
	     r->rate);
}

static void group_latency(int dir)
{
	char what[96];
	uint32_t s;

	snprintf(what, sizeof(what), "%s gpuq 4KiB latency %s", load_names[G.load], dir_names[dir]);
	if (G.load == L_BUSY)
		busy_check();
	s = cmd_post(OP_LAT, dir, O.warm, O.dur);
	acks_wait(s, now_ns() + (uint64_t)((O.warm + O.dur + 120) * NS), what);
	if (sh->res[0].samples == 0)
		die("%s: no samples", what);
	rows_latency(K_GPUQ_LAT_P50, K_GPUQ_LAT_P99, dir, G.load, sh->lat_ns, sh->res[0].samples,
		     (double)sh->res[0].elapsed_ns / NS);
	note("%s: p50 %.2f us, p99 %.2f us (%llu samples)", what, rows[nrows - 2].value,
	     rows[nrows - 1].value, (unsigned long long)sh->res[0].samples);
}

/* Sets G for a size and client count; returns 0, or -1 when over --mem-budget (rows say so). */
static int group_plan(uint64_t size, int clients, int mode, int load, int window)
{
	uint64_t per = (uint64_t)clients * size;
	int w = window;

	if (!w) {
		uint64_t d = WINDOW_BYTES / size;

		/* Four at least, so that bidir keeps two each way; within gpuqd's default --arena-max. */
		w = d < 4 ? 4 : d > 1024 ? 1024 : (int)d;
		while (w > 2 && (uint64_t)w * size > WINDOW_MAX_BYTES)
			w /= 2;
	}
	if (per * (uint64_t)w > O.mem_budget)
		w = (int)(O.mem_budget / per);
	memset(&G, 0, sizeof(G));
	G.size = size;
	G.clients = clients;
	G.mode = mode;
	G.load = load;
	G.window = w;
	/* The payload, plus room for the library's own use; malloc memory is staged: two in flight. */
	G.arena = mode == MODE_ARENA ? (uint64_t)w * size + MiB : 2 * size + 2 * MiB;
	G.arena = (G.arena + MiB - 1) / MiB * MiB;
	return w > 0 ? 0 : -1;
}

static void group_skip(const int *dirs, int ndirs, int kind)
{
	char a[32], b[32];
	int d;

	for (d = 0; d < ndirs; d++) {
		struct row *r = row_add(kind, dirs[d], G.load, G.size, G.clients, 0);

		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "skipped: %d x %s over --mem-budget %s", G.clients,
			 fmt_size(G.size, a, sizeof(a)), fmt_size(O.mem_budget, b, sizeof(b)));
	}
	note("%s gpuq %s x%d: skipped (over --mem-budget)", load_names[G.load],
	     fmt_size(G.size, a, sizeof(a)), G.clients);
}

static void run_matrix(int load)
{
	static const int small_dirs[] = { D_H2D, D_D2H }, large_dirs[] = { D_H2D, D_D2H, D_BIDIR };
	int si, ci, d, has64 = 0;

	for (si = 0; si < O.nsizes; si++) {
		uint64_t s = O.sizes[si];
		const int *dirs = s < SMALL_LIMIT ? small_dirs : large_dirs;
		int ndirs = s < SMALL_LIMIT ? 2 : 3;

		has64 |= s == 64 * MiB;
		for (ci = 0; ci < O.nclients; ci++) {
			if (group_plan(s, O.clients[ci], MODE_ARENA, load, O.window)) {
				group_skip(dirs, ndirs, K_GPUQ);
				continue;
			}
			group_open();
			for (d = 0; d < ndirs; d++)
				group_cell(dirs[d]);
			group_close();
		}
	}
	/* The staging cost: the same 64 MiB from malloc memory, copied through the arena. */
	if (has64) {
		if (group_plan(64 * MiB, 1, MODE_MALLOC, load, 2)) {
			group_skip(small_dirs, 2, K_GPUQ_MALLOC);
		} else {
			group_open();
			for (d = 0; d < 2; d++)
				group_cell(small_dirs[d]);
			group_close();
		}
	}
	/* One 4 KiB slot: no budget applies. */
	group_plan(4 * KiB, 1, MODE_ARENA, load, 1);
	G.window = 1;
	G.arena = 2 * MiB;
	group_open();
	group_latency(D_H2D);
	group_latency(D_D2H);
	group_close();
}

/* ---- comparisons and targets ---- */

static const struct row *find_row(int kind, int load, uint64_t size, int dir)
{
	int i;

	for (i = 0; i < nrows; i++)
		if (rows[i].kind == kind && rows[i].load == load && rows[i].size == size &&
		    rows[i].dir == dir && !rows[i].skipped)
			return &rows[i];
	return NULL;
}

static void cmp_add(struct row *r, int kind, int load)
{
	const struct row *b = find_row(kind, load, r->size, r->dir);
	struct cmp *c;

	if (r->ncmp == 2)
		return;
	c = &r->cmp[r->ncmp++];
	c->kind = kind;
	c->load = load;
	c->base = b ? b->value : NAN;
	c->ratio = b && b->value > 0 ? r->value / b->value : NAN;
}

/* The targets of the project's issue. Ratios are gpuq / baseline of the same run. */
static const struct target {
	int kind;
	uint64_t size;
	int clients, dir;
	int cmp;   /* -1: on the value itself; else the comparison's index */
	int at_most;
	double limit;
	const char *text;
} targets[] = {
	{ K_GPUQ, 64 * MiB, 1, D_H2D, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 1, D_D2H, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 1, D_BIDIR, 0, 0, 0.95, ">=95%" },
	{ K_GPUQ, 64 * MiB, 8, D_H2D, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 8, D_D2H, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 8, D_BIDIR, 0, 0, 0.95, ">=95%" },
	{ K_GPUQ, 4 * KiB, 8, D_H2D, -1, 0, 10.0, ">=10M/s" },
	{ K_GPUQ, 4 * KiB, 8, D_H2D, 0, 0, 25.0, ">=25x" },
	{ K_GPUQ, 4 * KiB, 8, D_H2D, 1, 0, 8.0, ">=8x" },
	{ K_GPUQ, 256, 8, D_H2D, -1, 0, 20.0, ">=20M/s" },
	{ K_GPUQ_LAT_P50, 4 * KiB, 1, D_H2D, -1, 1, 4.0, "<=4us" },
	{ K_GPUQ_LAT_P99, 4 * KiB, 1, D_H2D, -1, 1, 10.0, "<=10us" },
};
#define NTARGETS ((int)(sizeof(targets) / sizeof(targets[0])))

static int target_hits(const struct target *t, const struct row *r)
{
	return r->kind == t->kind && r->size == t->size && r->clients == t->clients &&
	       r->dir == t->dir && !r->skipped;
}

static void compare_all(void)
{
	int i, t;

	for (i = 0; i < nrows; i++) {
		struct row *r = &rows[i];

		if (!is_gpuq(r->kind) || r->skipped || O.smoke)
			continue;
		if (r->kind == K_GPUQ && r->size >= SMALL_LIMIT) {
			cmp_add(r, K_PINNED, L_IDLE);
		} else if (r->kind == K_GPUQ) {
			cmp_add(r, K_PERCALL, L_IDLE);
			cmp_add(r, K_BATCH, L_IDLE);
		} else if (r->kind == K_GPUQ_MALLOC) {
			cmp_add(r, K_PINNED, L_IDLE);
			cmp_add(r, K_PAGEABLE, L_IDLE);
		} else {
			int k = r->kind == K_GPUQ_LAT_P50 ? K_LAT_P50 : K_LAT_P99;

			cmp_add(r, k, r->load);
			if (r->load == L_BUSY)
				cmp_add(r, k, L_IDLE);
		}
		for (t = 0; t < NTARGETS; t++) {
			const struct target *g = &targets[t];
			double v;
			char *text;
			int *verdict;

			if (!target_hits(g, r))
				continue;
			if (g->cmp < 0) {
				v = r->value;
				text = r->target;
				verdict = &r->verdict;
			} else {
				if (g->cmp >= r->ncmp)
					continue;
				v = r->cmp[g->cmp].ratio;
				text = r->cmp[g->cmp].target;
				verdict = &r->cmp[g->cmp].verdict;
			}
			snprintf(text, 16, "%s", g->text);
			if (isnan(v))
				*verdict = V_NONE;
			else
				*verdict = (g->at_most ? v <= g->limit : v >= g->limit) ? V_PASS : V_MISS;
		}
	}
}

/* ---- output ---- */

static const char *fmt_num(double v, char *buf, size_t len)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (v >= 1000)
		snprintf(buf, len, "%.0f", v);
	else if (v >= 100)
		snprintf(buf, len, "%.1f", v);
	else if (v >= 10)
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "%.3f", v);
	return buf;
}

static const char *fmt_ratio(const struct cmp *c, char *buf, size_t len)
{
	if (isnan(c->ratio))
		snprintf(buf, len, "-");
	else if (c->kind == K_PINNED || c->kind == K_PAGEABLE)
		snprintf(buf, len, "%.1f%%", c->ratio * 100);
	else if (c->ratio >= 100)
		snprintf(buf, len, "%.0fx", c->ratio);
	else
		snprintf(buf, len, "%.3gx", c->ratio);
	return buf;
}

static const char *verdict_name(int v)
{
	return v == V_PASS ? "PASS" : v == V_MISS ? "MISS" : "n/a";
}

/* "target PASS", in parentheses under load: the issue states its targets for an idle GPU. */
static void fmt_verdict(char *buf, size_t len, const char *target, int verdict, int load)
{
	if (!target[0])
		buf[0] = '\0';
	else if (load == L_BUSY)
		snprintf(buf, len, "(%s %s)", target, verdict_name(verdict));
	else
		snprintf(buf, len, "%s %s", target, verdict_name(verdict));
}

static void print_header(FILE *f)
{
	int i;

	fprintf(f, "gpuq-bench %s (libgpuq %s)\n", PACKAGE_VERSION, gpuq_version());
	if (have_card) {
		fprintf(f, "card:    %s, device %d, %s, %d SMs, cc %d.%d, %.0f GiB\n", card.name, O.dev,
			card.busid, card.sm_count, card.cc_major, card.cc_minor,
			(double)card.total_mem / (double)GiB);
		if (card.link_load[0])
			fprintf(f, "PCIe:    %s under load (idle %s; max %s)\n", card.link_load,
				card.link_idle, card.link_max);
		else
			fprintf(f, "PCIe:    %s idle (max %s)\n", card.link_idle, card.link_max);
		fprintf(f, "driver:  %s (CUDA driver API %d.%d, runtime %d.%d)\n", card.driver,
			card.driver_api / 1000, card.driver_api % 1000 / 10, card.runtime / 1000,
			card.runtime % 1000 / 10);
	} else {
		fprintf(f, "card:    none: --smoke runs gpuqd's host backend; no figure here is a GPU's\n");
	}
	if (O.no_gpuq)
		fprintf(f, "gpuqd:   not used (--no-gpuq)");
	else
		fprintf(f, "gpuqd:   %s, backend %s, %s %s", dstatus.server_version, dstatus.backend,
			O.socket ? "running at" : "started from", O.socket ? O.socket : gpuqd_path);
	if (!O.socket && !O.no_gpuq) {
		fprintf(f, " with --backend %s", O.smoke ? "host" : "cuda");
		for (i = 0; i < O.ngpuqd_args; i++)
			fprintf(f, " %s", O.gpuqd_args[i]);
	}
	fputc('\n', f);
	if (have_ddev)
		fprintf(f, "         its device %u: %s, PCIe gen %u x%u\n", ddev.index, ddev.name,
			ddev.pcie_gen, ddev.pcie_width);
	if (busy_ran)
		fprintf(f, "busy:    another process ran %llu spin kernels of %d x %d threads on every SM, "
			   "%.2f ms each (min %.2f, max %.2f)\n",
			(unsigned long long)busy_report.launches, busy_ready.grid, busy_ready.block,
			busy_report.mean_ms, busy_report.min_ms, busy_report.max_ms);
	fprintf(f, "cells:   %.2f s warm-up + %.2f s measured (longer where gigabytes are in flight); GB/s = 1e9 bytes/s, M/s = 1e6 "
		   "transfers/s; ratio = value / baseline (latency: lower is better)\n\n",
		O.warm, O.dur);
}

#define ROWFMT "%-25s %7s %3s %-5s %-4s %9s %-4s %-13s| %-16s %9s %7s | %s\n"

/* Baseline name, with its load when it differs from the row's. */
static const char *cmp_label(const struct row *r, const struct cmp *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", kinds[c->kind].base, c->load != r->load ? " idle" : "");
	return buf;
}

/* Counts the verdicts of the idle rows (the targets are for an idle GPU). */
static void count_verdicts(int *pass, int *miss)
{
	int i, j;

	*pass = *miss = 0;
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		if (r->load != L_IDLE)
			continue;
		*pass += r->verdict == V_PASS;
		*miss += r->verdict == V_MISS;
		for (j = 0; j < r->ncmp; j++) {
			*pass += r->cmp[j].verdict == V_PASS;
			*miss += r->cmp[j].verdict == V_MISS;
		}
	}
}

static int target_measured(const struct target *g)
{
	int i;

	for (i = 0; i < nrows; i++)
		if (rows[i].load == L_IDLE && target_hits(g, &rows[i]))
			return 1;
	return 0;
}

static void print_table(FILE *f)
{
	int i, j, pass = 0, miss = 0, t;

	print_header(f);
	fprintf(f, ROWFMT, "what", "size", "cl", "dir", "load", "value", "unit", " also", "baseline",
		"value", "ratio", "target");
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char sz[32], cl[8], val[32], also[32], bv[32], ra[32], tg[64], tg2[32], bl[32];

		fmt_size(r->size, sz, sizeof(sz));
		if (r->clients)
			snprintf(cl, sizeof(cl), "%d", r->clients);
		else
			snprintf(cl, sizeof(cl), "-");
		if (r->skipped) {
			fprintf(f, "%-25s %7s %3s %-5s %-4s %9s %-4s %-13s| %s\n", kinds[r->kind].what, sz, cl,
				dir_names[r->dir], load_names[r->load], "-", "", "", r->note);
			continue;
		}
		fmt_num(r->value, val, sizeof(val));
		if (is_latency(r->kind))
			snprintf(also, sizeof(also), " n=%llu", (unsigned long long)r->count);
		else if (r->size < SMALL_LIMIT)
			snprintf(also, sizeof(also), " %.2f GB/s", r->gbps);
		else
			snprintf(also, sizeof(also), " %.0f/s", r->rate);
		fmt_verdict(tg, sizeof(tg), r->target, r->verdict, r->load);
		if (r->ncmp) {
			const struct cmp *c = &r->cmp[0];

			fmt_verdict(tg2, sizeof(tg2), c->target, c->verdict, r->load);
			if (tg[0] && tg2[0])
				strncat(tg, ", ", sizeof(tg) - strlen(tg) - 1);
			strncat(tg, tg2, sizeof(tg) - strlen(tg) - 1);
			fprintf(f, ROWFMT,
				kinds[r->kind].what, sz, cl, dir_names[r->dir], load_names[r->load], val,
				unit_of(r), also, cmp_label(r, c, bl, sizeof(bl)), fmt_num(c->base, bv, sizeof(bv)),
				fmt_ratio(c, ra, sizeof(ra)), tg);
		} else {
			fprintf(f, ROWFMT,
				kinds[r->kind].what, sz, cl, dir_names[r->dir], load_names[r->load], val,
				unit_of(r), also, "", "", "", tg);
		}
		for (j = 1; j < r->ncmp; j++) {
			const struct cmp *c = &r->cmp[j];
			fmt_verdict(tg2, sizeof(tg2), c->target, c->verdict, r->load);
			fprintf(f, ROWFMT, "", "", "",
				"", "", "", "", "", cmp_label(r, c, bl, sizeof(bl)), fmt_num(c->base, bv, sizeof(bv)),
				fmt_ratio(c, ra, sizeof(ra)), tg2);
		}
	}
	if (O.smoke) {
		fprintf(f, "\nsmoke run on the host backend: no baselines, no targets.\n");
		return;
	}
	if (O.no_gpuq)
		return;
	count_verdicts(&pass, &miss);
	fprintf(f, "\ntargets (idle GPU): %d PASS, %d MISS", pass, miss);
	for (t = 0, j = 0; t < NTARGETS; t++) {
		const struct target *g = &targets[t];
		char sz[32];

		if (target_measured(g))
			continue;
		fprintf(f, "%s%s %s x%d %s %s", j++ ? "; " : "; not measured: ", kinds[g->kind].base,
			fmt_size(g->size, sz, sizeof(sz)), g->clients, dir_names[g->dir], g->text);
	}
	fputc('\n', f);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

static void json_verdict(FILE *f, const char *target, int verdict, int load)
{
	if (!target[0]) {
		fputs("\"target\":null,\"verdict\":null", f);
		return;
	}
	fputs("\"target\":", f);
	json_str(f, target);
	fprintf(f, ",\"verdict\":\"%s\",\"verdict_informational\":%s", verdict_name(verdict),
		load == L_BUSY ? "true" : "false");
}

static void print_json(FILE *f)
{
	int i, j;

	fprintf(f, "{\"schema_version\":1,\"tool\":\"gpuq-bench\",\"version\":");
	json_str(f, PACKAGE_VERSION);
	fputs(",\"card\":", f);
	if (have_card)
		json_str(f, card.name);
	else
		fputs("null", f);
	fputs(",\"driver\":", f);
	if (have_card)
		json_str(f, card.driver);
	else
		fputs("null", f);
	if (have_card) {
		fprintf(f, ",\"cuda_driver_api\":%d,\"cuda_runtime\":%d,\"device\":%d,\"pci_bus_id\":",
			card.driver_api, card.runtime, O.dev);
		json_str(f, card.busid);
		fprintf(f, ",\"sm_count\":%d,\"pcie\":{\"under_load\":", card.sm_count);
		json_str(f, card.link_load);
		fputs(",\"idle\":", f);
		json_str(f, card.link_idle);
		fputs(",\"max\":", f);
		json_str(f, card.link_max);
		fputc('}', f);
	}
	if (O.no_gpuq) {
		fputs(",\"gpuqd\":null", f);
		goto busy;
	}
	fputs(",\"gpuqd\":{\"version\":", f);
	json_str(f, dstatus.server_version);
	fputs(",\"backend\":", f);
	json_str(f, dstatus.backend);
	fprintf(f, ",\"started\":%s,\"path\":", O.socket ? "false" : "true");
	json_str(f, O.socket ? O.socket : gpuqd_path);
	fputs(",\"args\":[", f);
	for (i = 0; i < O.ngpuqd_args; i++) {
		if (i)
			fputc(',', f);
		json_str(f, O.gpuqd_args[i]);
	}
	fputs("]}", f);
busy:
	if (busy_ran)
		fprintf(f,
			",\"busy\":{\"kernel_ms\":%.3f,\"grid\":%d,\"block\":%d,\"launches\":%llu,"
			"\"mean_ms\":%.4f,\"min_ms\":%.4f,\"max_ms\":%.4f}",
			busy_ready.kernel_ms, busy_ready.grid, busy_ready.block,
			(unsigned long long)busy_report.launches, busy_report.mean_ms,
			busy_report.min_ms, busy_report.max_ms);
	else
		fputs(",\"busy\":null", f);
	fprintf(f, ",\"smoke\":%s,\"warmup_s\":%.3f,\"duration_s\":%.3f,\"mem_budget\":%llu,\"rows\":[",
		O.smoke ? "true" : "false", O.warm, O.dur, (unsigned long long)O.mem_budget);
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		fprintf(f, "%s\n{\"what\":", i ? "," : "");
		json_str(f, kinds[r->kind].what);
		fprintf(f, ",\"kind\":\"%s\",\"size\":%llu,\"clients\":%d,\"direction\":\"%s\","
			   "\"load\":\"%s\",\"window\":%d",
			kinds[r->kind].id, (unsigned long long)r->size, r->clients, dir_names[r->dir],
			load_names[r->load], r->window);
		if (r->skipped) {
			fputs(",\"skipped\":", f);
			json_str(f, r->note);
			fputc('}', f);
			continue;
		}
		fputs(",\"value\":", f);
		json_num(f, r->value);
		fprintf(f, ",\"unit\":\"%s\"", unit_of(r));
		if (is_latency(r->kind)) {
			fprintf(f, ",\"samples\":%llu", (unsigned long long)r->count);
		} else {
			fputs(",\"transfers_per_s\":", f);
			json_num(f, r->rate);
			fputs(",\"gbytes_per_s\":", f);
			json_num(f, r->gbps);
			fprintf(f, ",\"transfers\":%llu", (unsigned long long)r->count);
		}
		fputs(",\"seconds\":", f);
		json_num(f, r->seconds);
		fputc(',', f);
		json_verdict(f, r->target, r->verdict, r->load);
		fputs(",\"comparisons\":[", f);
		for (j = 0; j < r->ncmp; j++) {
			const struct cmp *c = &r->cmp[j];

			fprintf(f, "%s{\"baseline\":\"%s\",\"baseline_load\":\"%s\",\"baseline_value\":",
				j ? "," : "", kinds[c->kind].id, load_names[c->load]);
			json_num(f, c->base);
			fputs(",\"ratio\":", f);
			json_num(f, c->ratio);
			fputc(',', f);
			json_verdict(f, c->target, c->verdict, r->load);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("\n]", f);
	if (!O.smoke && !O.no_gpuq) {
		int pass, miss, t, n = 0;

		count_verdicts(&pass, &miss);
		fprintf(f, ",\"targets\":{\"pass\":%d,\"miss\":%d,\"not_measured\":[", pass, miss);
		for (t = 0; t < NTARGETS; t++) {
			const struct target *g = &targets[t];

			if (target_measured(g))
				continue;
			fprintf(f, "%s{\"kind\":\"%s\",\"size\":%llu,\"clients\":%d,\"direction\":\"%s\","
				   "\"target\":",
				n++ ? "," : "", kinds[g->kind].id, (unsigned long long)g->size, g->clients,
				dir_names[g->dir]);
			json_str(f, g->text);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("}\n", f);
}

/* ---- options ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gpuq-bench [OPTION]...\n"
		"Measures gpuq (through gpuqd) beside in-process CUDA baselines, in one run.\n\n"
		"  --quick              4KiB and 64MiB, 1 and 8 clients, short cells (under a minute)\n"
		"  --busy               also measure beside a process that keeps every SM busy\n"
		"  --busy-ms MS         length of each busy kernel (default 10)\n"
		"  --sizes LIST         transfer sizes (default 256,4K,64K,1M,64M,256M)\n"
		"  --clients LIST       client process counts (default 1,8,64)\n"
		"  --duration S         measured seconds per cell (default 0.8; --quick 0.3)\n"
		"  --warmup S           warm-up seconds per cell (default 0.2; --quick 0.1)\n"
		"  --window N           requests in flight per client (default 16MiB/size within\n"
		"                       4..1024, at most 512MiB: 2 for 256MiB)\n"
		"  --mem-budget BYTES   arena (and device) memory of all clients of a cell (default 16G)\n"
		"  --device N           the GPU: CUDA ordinal and gpuqd device index (default 0)\n"
		"  --gpuqd PATH         the gpuqd to start (default $GPUQD, else ../daemon/gpuqd\n"
		"                       beside this program)\n"
		"  --gpuqd-arg ARG      pass ARG to that gpuqd (repeat), e.g. --gpuqd-arg=--sharing=mps\n"
		"  --socket PATH        use the gpuqd already listening on PATH; start none\n"
		"  --json               print one JSON object instead of the table\n"
		"  --no-gpuq            in-process CUDA baselines only (with --busy: and the latency\n"
		"                       under load); starts no gpuqd\n"
		"  --smoke              run the gpuq part on gpuqd's host backend: no CUDA, no GPU\n"
		"                       figures; checks the bench and the data path on any machine\n"
		"  -q, --quiet          no progress lines on stderr\n"
		"  -h, --help           print this help and exit\n\n"
		"Needs a GPU (except --smoke). Exits 1 with a message when anything fails.\n");
}

enum {
	OPT_SIZES = 256, OPT_CLIENTS, OPT_DURATION, OPT_WARMUP, OPT_WINDOW, OPT_MEM_BUDGET,
	OPT_DEVICE, OPT_GPUQD, OPT_GPUQD_ARG, OPT_SOCKET, OPT_JSON, OPT_SMOKE, OPT_BUSY,
	OPT_BUSY_MS, OPT_QUICK, OPT_NO_GPUQ, OPT_INTERNAL, OPT_INTERNAL_FD, OPT_INTERNAL_SOCKET,
};

static void bad_arg(const char *opt, const char *val)
{
	fprintf(stderr, "gpuq-bench: bad value for %s: '%s'\n", opt, val);
	usage(stderr);
	exit(2);
}

static double parse_secs(const char *opt, const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 3600)
		bad_arg(opt, s);
	return v;
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		bad_arg(opt, s);
	return v;
}

static void parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, OPT_QUICK },
		{ "busy", no_argument, NULL, OPT_BUSY },
		{ "busy-ms", required_argument, NULL, OPT_BUSY_MS },
		{ "sizes", required_argument, NULL, OPT_SIZES },
		{ "clients", required_argument, NULL, OPT_CLIENTS },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "mem-budget", required_argument, NULL, OPT_MEM_BUDGET },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "gpuqd", required_argument, NULL, OPT_GPUQD },
		{ "gpuqd-arg", required_argument, NULL, OPT_GPUQD_ARG },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "smoke", no_argument, NULL, OPT_SMOKE },
		{ "no-gpuq", no_argument, NULL, OPT_NO_GPUQ },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		/* Hidden: how this program starts itself as an internal child. */
		{ "internal", required_argument, NULL, OPT_INTERNAL },
		{ "internal-fd", required_argument, NULL, OPT_INTERNAL_FD },
		{ "internal-socket", required_argument, NULL, OPT_INTERNAL_SOCKET },
		{ NULL, 0, NULL, 0 },
	};
	char *list, *tok, *save;
	int o, i;

	while ((o = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
		switch (o) {
		case OPT_QUICK: O.quick = 1; break;
		case OPT_BUSY: O.busy = 1; break;
		case OPT_BUSY_MS:
			O.busy_ms = parse_secs("--busy-ms", optarg);
			if (O.busy_ms < 0.01)
				bad_arg("--busy-ms", optarg);
			break;
		case OPT_SIZES:
		case OPT_CLIENTS:
			list = strdup(optarg);
			if (!list)
				exit(1);
			if (o == OPT_SIZES)
				O.nsizes = 0;
			else
				O.nclients = 0;
			for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (o == OPT_SIZES) {
					if (O.nsizes == MAX_LIST || parse_size(tok, &O.sizes[O.nsizes]) ||
					    O.sizes[O.nsizes] > 4 * GiB)
						bad_arg("--sizes", optarg);
					O.nsizes++;
				} else {
					if (O.nclients == MAX_LIST)
						bad_arg("--clients", optarg);
					O.clients[O.nclients++] =
						(int)parse_long("--clients", tok, 1, MAX_CLIENTS);
				}
			}
			free(list);
			if ((o == OPT_SIZES && !O.nsizes) || (o == OPT_CLIENTS && !O.nclients))
				bad_arg(o == OPT_SIZES ? "--sizes" : "--clients", optarg);
			break;
		case OPT_DURATION:
			O.dur = parse_secs("--duration", optarg);
			if (O.dur < 0.01)
				bad_arg("--duration", optarg);
			break;
		case OPT_WARMUP: O.warm = parse_secs("--warmup", optarg); break;
		case OPT_WINDOW: O.window = (int)parse_long("--window", optarg, 1, 65536); break;
		case OPT_MEM_BUDGET:
			if (parse_size(optarg, &O.mem_budget))
				bad_arg("--mem-budget", optarg);
			break;
		case OPT_DEVICE: O.dev = (int)parse_long("--device", optarg, 0, 255); break;
		case OPT_GPUQD: O.gpuqd = optarg; break;
		case OPT_GPUQD_ARG:
			if (O.ngpuqd_args == MAX_GPUQD_ARGS)
				bad_arg("--gpuqd-arg", optarg);
			O.gpuqd_args[O.ngpuqd_args++] = optarg;
			break;
		case OPT_SOCKET: O.socket = optarg; break;
		case OPT_JSON: O.json = 1; break;
		case OPT_SMOKE: O.smoke = 1; break;
		case OPT_NO_GPUQ: O.no_gpuq = 1; break;
		case 'q': O.quiet = 1; break;
		case 'h': usage(stdout); exit(0);
		case OPT_INTERNAL: O.internal = optarg; break;
		case OPT_INTERNAL_FD: O.internal_fd = (int)parse_long("--internal-fd", optarg, 0, 65535); break;
		case OPT_INTERNAL_SOCKET: O.internal_socket = optarg; break;
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gpuq-bench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	if (O.smoke && (O.busy || O.no_gpuq)) {
		fprintf(stderr, "gpuq-bench: --smoke has no GPU: no --busy, no --no-gpuq\n");
		exit(2);
	}
	if (!O.nsizes) {
		static const uint64_t full[] = { 256, 4 * KiB, 64 * KiB, MiB, 64 * MiB, 256 * MiB };
		static const uint64_t quick[] = { 4 * KiB, 64 * MiB }, smoke[] = { 4 * KiB, MiB };
		const uint64_t *l = O.smoke ? smoke : O.quick ? quick : full;

		O.nsizes = O.smoke || O.quick ? 2 : 6;
		for (i = 0; i < O.nsizes; i++)
			O.sizes[i] = l[i];
	}
	if (!O.nclients) {
		O.nclients = O.smoke || O.quick ? 2 : 3;
		O.clients[0] = 1;
		O.clients[1] = O.smoke ? 2 : 8;
		O.clients[2] = 64;
	}
	if (O.dur < 0)
		O.dur = O.smoke ? 0.2 : O.quick ? 0.3 : 0.8;
	if (O.warm < 0)
		O.warm = O.smoke ? 0.05 : O.quick ? 0.1 : 0.2;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_interrupt, .sa_flags = SA_RESETHAND };
	ssize_t l;

	parse_opts(argc, argv);
	if (O.internal) {
		if (O.internal_fd < 0)
			return 2;
		if (!strcmp(O.internal, "busy"))
			internal_busy(O.internal_fd);
		else
			internal_baselines(O.internal_fd, !strcmp(O.internal, "latency"));
		return 0;
	}

	saved_argc = argc;
	saved_argv = argv;
	bench_pid = getpid();
	l = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (l <= 0) {
		fprintf(stderr, "gpuq-bench: readlink /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self_exe[l] = '\0';
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));

	/* 1. In-process baselines first: without a GPU this fails before anything starts. */
	if (!O.smoke)
		run_cuda_child(0);

	if (O.no_gpuq) {
		if (O.busy) {
			busy_start();
			run_cuda_child(1);
			busy_finish();
		}
		goto report;
	}

	/* 2. gpuqd: our own on a private socket, or the one named by --socket. */
	if (O.socket) {
		snprintf(sock_path, sizeof(sock_path), "%s", O.socket);
		gpuqd_wait_ready(0);
	} else {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/gpuq-bench.XXXXXX");
		if (!mkdtemp(tmpdir)) {
			tmpdir[0] = '\0';
			die("mkdtemp: %s", strerror(errno));
		}
		gpuqd_start();
	}
	note("gpuqd %s, backend %s", dstatus.server_version, dstatus.backend);

	/* 3. gpuq on an idle GPU. */
	run_matrix(L_IDLE);

	/* 4. The same beside a process that keeps every SM busy. */
	if (O.busy) {
		busy_start();
		run_cuda_child(1);
		run_matrix(L_BUSY);
		busy_finish();
	}

	gpuqd_stop();
report:
	compare_all();
	if (O.json)
		print_json(stdout);
	else
		print_table(stdout);
	fflush(stdout);
	cleanup(late_failure);
	if (late_failure && tmpdir[0])
		fprintf(stderr, "gpuq-bench: kept %s for gpuqd's log\n", tmpdir);
	return late_failure ? 1 : 0;
}
