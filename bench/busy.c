/* busy.c: gpuq-bench's busy load: spin kernels on every SM in an internal child, and the parent's side that starts, watches and stops it. */
#include "build-config.h"

#include "gpuq-bench.h"

pid_t busy_pid;
int busy_fd = -1;
struct busy_msg busy_ready, busy_report;
int busy_ran;

/*
 * The busy load's kernel, as PTX so that this C program needs no nvcc: every
 * thread spins on the global nanosecond timer for ns nanoseconds.
 */
static const char spin_ptx[] = ".version 7.0\n"
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
void internal_busy(int fd)
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

void busy_start(void)
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

void busy_check(void)
{
	int st;

	if (busy_pid > 0 && waitpid(busy_pid, &st, WNOHANG) == busy_pid) {
		busy_pid = 0;
		die("the busy-load process exited (%s %d): the figures under load would not be",
		    WIFSIGNALED(st) ? "signal" : "status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
}

void busy_finish(void)
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
