/* measure.c: gpuq-bench's shared measurement helpers: the row table, progress notes, sizes, percentiles, payload patterns, pipes. */
#include "build-config.h"

#include "gpuq-bench.h"

struct row rows[MAX_ROWS];
int nrows;

const struct kind_name kinds[] = {
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
const char *const dir_names[] = { "h2d", "d2h", "bidir" };
const char *const load_names[] = { "idle", "busy" };

void note(const char *fmt, ...)
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

const char *fmt_size(uint64_t s, char *buf, size_t len)
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
int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		mul = KiB;
		end++;
		break;
	case 'm':
	case 'M':
		mul = MiB;
		end++;
		break;
	case 'g':
	case 'G':
		mul = GiB;
		end++;
		break;
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
double pct(const uint32_t *v, uint64_t n, double p)
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

void pattern_fill(void *p, uint64_t len, uint64_t seed)
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
int64_t pattern_check(const void *p, uint64_t len, uint64_t seed)
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

int is_latency(int kind)
{
	return kind == K_LAT_P50 || kind == K_LAT_P99 || kind == K_GPUQ_LAT_P50 ||
	       kind == K_GPUQ_LAT_P99;
}

int is_gpuq(int kind)
{
	return kind >= K_GPUQ;
}

const char *unit_of(const struct row *r)
{
	if (is_latency(r->kind))
		return "us";
	return r->size < SMALL_LIMIT ? "M/s" : "GB/s";
}

struct row *row_add(int kind, int dir, int load, uint64_t size, int clients, int window)
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

void row_tput(struct row *r, double transfers, double bytes, double secs)
{
	r->count = (uint64_t)(transfers + 0.5);
	r->seconds = secs;
	r->rate = transfers / secs;
	r->gbps = bytes / secs / 1e9;
	r->value = r->size < SMALL_LIMIT ? r->rate / 1e6 : r->gbps;
}

/* Sorts n samples (ns) and adds the p50 and p99 rows. */
void rows_latency(int k50, int k99, int dir, int load, uint32_t *smp, uint64_t n, double secs)
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
ssize_t read_full(int fd, void *buf, size_t len, int timeout_ms)
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

int write_full(int fd, const void *buf, size_t len)
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

void read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	out[0] = '\0';
	if (!f)
		return;
	if (fgets(out, (int)len, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}
