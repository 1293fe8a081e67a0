/* baselines.c: gpuq-bench's in-process CUDA baselines (an internal child with its own context) and the parent's side that collects their rows. */
#include "build-config.h"

#include "gpuq-bench.h"

struct card card;
int have_card;

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
	cudaEvent_t t_begin[2], t_end[2];   /* timing: each stream's measured stretch */
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
	a->attr.srcLocHint.type =
		dir == D_H2D ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;
	a->attr.srcLocHint.id = dir == D_H2D ? 0 : O.dev;
	a->attr.dstLocHint.type =
		dir == D_H2D ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost;
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
			if (phase &&
			    (n == LAT_MAX || (secs >= O.dur && n >= LAT_MIN) || secs >= O.dur + 30))
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

void internal_baselines(int fd, int latency_only)
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
	if (write_full(fd, &c, sizeof(c)) ||
	    write_full(fd, rows, (size_t)nrows * sizeof(rows[0]))) {
		fprintf(stderr, "gpuq-bench: writing results to the parent: %s\n", strerror(errno));
		exit(1);
	}
	free(a);
}

/* Runs the CUDA baselines (or, latency_only, the latency under load) in a child; adds its rows. */
void run_cuda_child(int latency_only)
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
