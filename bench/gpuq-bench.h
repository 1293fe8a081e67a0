/* gpuq-bench.h: what gpuq-bench's files share: limits, rows, options, the parent's state, and who does what. */
#ifndef GPUQ_BENCH_GPUQ_BENCH_H
#define GPUQ_BENCH_GPUQ_BENCH_H

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
 *
 * Files: gpuq-bench.c (options, main), measure.c (helpers every part uses:
 * the row table, sizes, percentiles, patterns, pipes), baselines.c and
 * busy.c (the CUDA children, with the parent's side of each), spawn.c
 * (children, gpuqd, cleanup), clients.c (the gpuq clients and the matrix),
 * report.c (comparisons, targets, the table and JSON).
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
#define WINDOW_MAX_BYTES \
	(512 * MiB)    /* ... but no more bytes than this (then 2 requests at least) */
#define SPIN_BLOCK 256 /* threads per block of the busy kernel */
#define LIFE_BPS 50e9  /* link rate assumed to size cells by the bytes in flight */
#define NS 1000000000.0

enum dir { D_H2D, D_D2H, D_BIDIR };
enum load { L_IDLE, L_BUSY };
enum kind {
	K_PINNED,   /* cudaMemcpyAsync, pinned host memory, large sizes */
	K_PAGEABLE, /* cudaMemcpy, malloc memory */
	K_PERCALL,  /* one cudaMemcpyAsync per small transfer, one sync per 1024 */
	K_BATCH,    /* cudaMemcpyBatchAsync, 1024 per call */
	K_LAT_P50,  /* 4 KiB cudaMemcpyAsync + cudaStreamSynchronize */
	K_LAT_P99,
	K_GPUQ,         /* gpuq_isend/irecv from arena memory */
	K_GPUQ_MALLOC,  /* gpuq_isend/irecv from malloc memory (staged through the arena) */
	K_GPUQ_LAT_P50, /* blocking gpuq_send/recv of 4 KiB from arena memory */
	K_GPUQ_LAT_P99,
};
enum verdict { V_NONE, V_PASS, V_MISS };

/* Names of a kind of row. */
struct kind_name {
	const char *what; /* table label */
	const char *id;   /* JSON "kind" */
	const char *base; /* name when another row is compared with this one */
};
extern const struct kind_name kinds[];
extern const char *const dir_names[];
extern const char *const load_names[];

/* One comparison of a row with a baseline row of the same run. */
struct cmp {
	int kind, load;  /* the baseline row's */
	double base;     /* its value; NAN when it was not measured */
	double ratio;    /* value / base */
	char target[16]; /* "" when no target applies */
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

/* ---- measure.c: the row table, progress, sizes, percentiles, patterns, pipes ---- */

extern struct opts O; /* gpuq-bench.c: set once by parse_opts, read everywhere */
extern struct row rows[MAX_ROWS];
extern int nrows;

/* CLOCK_MONOTONIC: inline, as the measurement loops read it around every call. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double since(uint64_t t0)
{
	return (double)(now_ns() - t0) / NS;
}

static inline void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *fmt_size(uint64_t s, char *buf, size_t len);
int parse_size(const char *s, uint64_t *out);
double pct(const uint32_t *v, uint64_t n, double p);
void pattern_fill(void *p, uint64_t len, uint64_t seed);
int64_t pattern_check(const void *p, uint64_t len, uint64_t seed);
int is_latency(int kind);
int is_gpuq(int kind);
const char *unit_of(const struct row *r);
struct row *row_add(int kind, int dir, int load, uint64_t size, int clients, int window);
void row_tput(struct row *r, double transfers, double bytes, double secs);
void rows_latency(int k50, int k99, int dir, int load, uint32_t *smp, uint64_t n, double secs);
ssize_t read_full(int fd, void *buf, size_t len, int timeout_ms);
int write_full(int fd, const void *buf, size_t len);
void read_line(const char *path, char *out, size_t len);

/* ---- CUDA: only internal children call it (baselines.c, busy.c) ---- */

/* Exits with the call, where it is and CUDA's error, unless e is cudaSuccess. */
#ifdef __FILE_NAME__
#define CK(call) cuda_check((call), #call, __FILE_NAME__, __LINE__)
#else
#define CK(call) cuda_check((call), #call, __FILE__, __LINE__)
#endif

static inline void cuda_check(cudaError_t e, const char *call, const char *file, int line)
{
	if (e == cudaSuccess)
		return;
	fprintf(stderr, "gpuq-bench: %s failed (%s:%d): %s: %s\n", call, file, line,
		cudaGetErrorName(e), cudaGetErrorString(e));
	exit(1);
}

/* ---- baselines.c: in-process CUDA baselines ---- */

extern struct card card; /* the parent's copy, from the baselines child */
extern int have_card;
void internal_baselines(int fd, int latency_only);
void run_cuda_child(int latency_only);

/* ---- busy.c: the busy load ---- */

extern pid_t busy_pid;
extern int busy_fd;
extern struct busy_msg busy_ready, busy_report;
extern int busy_ran;
void internal_busy(int fd);
void busy_start(void);
void busy_check(void);
void busy_finish(void);

/* ---- spawn.c: child processes and gpuqd (the parent) ---- */

extern char self_exe[PATH_MAX];
extern char **saved_argv;
extern int saved_argc;
extern pid_t bench_pid;
extern char tmpdir[64];
extern char sock_path[PATH_MAX];
extern char gpuqd_path[PATH_MAX];
extern pid_t daemon_pid, internal_pid;
extern pid_t worker_pids[MAX_CLIENTS];
extern int late_failure;
extern struct gpuq_status dstatus;
void mps_env_apply(gpuq_t *q);
extern struct gpuq_device_info ddev;
extern int have_ddev;
void daemon_log_tail(void);
int stop_child(pid_t pid, int sig, int ms);
void cleanup(int keep_dir);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void on_interrupt(int sig);
void child_init(int deathsig);
pid_t spawn_internal(const char *mode, int *rfd);
void wait_internal(pid_t pid, const char *what);
void gpuqd_wait_ready(uint64_t timeout_ns);
void gpuqd_start(void);
void gpuqd_stop(void);

/* ---- clients.c: gpuq client processes and the matrix ---- */

void clients_map(void);
void run_matrix(int load);

/* ---- report.c: comparisons, the table, JSON ---- */

void compare_all(void);
void print_table(FILE *f);
void print_json(FILE *f);

#endif
