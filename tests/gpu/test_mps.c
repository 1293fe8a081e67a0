/* test_mps.c: gpuqd in mps sharing mode: its own MPS server, clients steered into it, data moving. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "gpuq/gpuq.h"
#include "gpu_test.h"
#include "harness.h"

static struct daemon_proc d;

START_TEST(mps_mode_steers_clients)
{
	static const char *const args[] = { "--mps-client-sm-percent", "90", NULL };
	struct gpuq_status st = { .struct_size = sizeof(st) };
	uint8_t out[1 << 16], in[1 << 16];
	const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
	gpuq_t *q;
	uint32_t id;
	pid_t pid;
	int wst;

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_str_eq(st.sharing, "mps");
	ck_assert_str_ne(st.mps_pipe_dir, "");
	/* libgpuq leaves the environment alone and says what to set in it. */
	ck_assert_ptr_null(getenv("CUDA_MPS_PIPE_DIRECTORY"));
	ck_assert_ptr_null(getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"));
	ck_assert_int_eq(gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX), 2);
	ck_assert_str_eq(names[0], "CUDA_MPS_PIPE_DIRECTORY");
	ck_assert_str_eq(values[0], st.mps_pipe_dir);
	ck_assert_str_eq(names[1], "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
	ck_assert_str_eq(values[1], "90");
	ck_assert(harness_log_contains(&d, "sharing mps"));
	/* Set before the first CUDA call, it points this process's future context at gpuqd's server. */
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(setenv(names[i], values[i], 0), 0);
	/* A client context joins that server and computes beside gpuqd. */
	pid = fork();
	if (pid == 0) {
		void *p = NULL;

		_exit(cudaSetDevice(0) == cudaSuccess && cudaMalloc(&p, 1 << 20) == cudaSuccess &&
				      cudaMemset(p, 1, 1 << 20) == cudaSuccess &&
				      cudaDeviceSynchronize() == cudaSuccess ?
			      0 :
			      1);
	}
	ck_assert_int_eq(waitpid(pid, &wst, 0), pid);
	ck_assert_msg(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "a client context under MPS failed");
	harness_fill(out, sizeof(out), harness_seed());
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, sizeof(out), &id), 0);
	ck_assert_int_eq(gpuq_send(q, id, 0, out, sizeof(out)), (ssize_t)sizeof(out));
	ck_assert_int_eq(gpuq_recv(q, id, 0, in, sizeof(in)), (ssize_t)sizeof(in));
	ck_assert_mem_eq(in, out, sizeof(in));
	gpuq_close(q);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

/* Waits up to ms for pid; 1 and *wst when it ended, 0 when it still runs. */
static int wait_for(pid_t pid, int *wst, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, wst, WNOHANG) == pid)
			return 1;
		usleep(10000);
	}
	return 0;
}

/*
 * An MPS server serves one uid; a client of another uid pointed at it
 * blocks in its first CUDA call while the server lives. gpuqd (root here)
 * must point only its own uid's clients at its server: a client running as
 * nobody gets no MPS settings, and its own CUDA context starts at once.
 */
START_TEST(mps_other_uid_keeps_own_context)
{
	struct gpuq_status st = { .struct_size = sizeof(st) };
	gpuq_t *q;
	pid_t pid;
	int wst = 0;

	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_str_eq(st.sharing, "mps");
	ck_assert_uint_eq(st.mps_uid, 0);
	gpuq_close(q);
	/* Let nobody reach the socket. */
	ck_assert_int_eq(chmod(d.dir, 0711), 0);
	ck_assert_int_eq(chmod(d.sock, 0666), 0);
	pid = fork();
	if (pid == 0) {
		const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
		struct gpuq_status cst = { .struct_size = sizeof(cst) };
		uint8_t out[4096], in[4096];
		gpuq_t *cq;
		uint32_t id;
		void *p = NULL;
		int n;

		if (setgid(65534) || setuid(65534))
			_exit(10);
		if (gpuq_connect(d.sock, &cq))
			_exit(11);
		n = gpuq_mps_env(cq, names, values, GPUQ_MPS_ENV_MAX);
		for (int i = 0; i < n; i++)
			setenv(names[i], values[i], 0);
		if (gpuq_status(cq, &cst) || strcmp(cst.sharing, "mps") || n != 0)
			_exit(12);
		if (cudaSetDevice(0) != cudaSuccess || cudaMalloc(&p, 1 << 20) != cudaSuccess ||
		    cudaMemset(p, 1, 1 << 20) != cudaSuccess ||
		    cudaDeviceSynchronize() != cudaSuccess)
			_exit(13);
		memset(out, 0x5a, sizeof(out));
		if (gpuq_buf_alloc(cq, 0, sizeof(out), &id) ||
		    gpuq_send(cq, id, 0, out, sizeof(out)) != (ssize_t)sizeof(out) ||
		    gpuq_recv(cq, id, 0, in, sizeof(in)) != (ssize_t)sizeof(in) ||
		    memcmp(in, out, sizeof(in)))
			_exit(14);
		gpuq_close(cq);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	if (!wait_for(pid, &wst, 30000)) {
		kill(pid, SIGKILL);
		waitpid(pid, &wst, 0);
		ck_abort_msg(
			"a client running as nobody was still blocked after 30 s (in its first "
			"CUDA call, if gpuqd pointed it at an MPS server of another uid)");
	}
	ck_assert_msg(WIFEXITED(wst) && WEXITSTATUS(wst) == 0,
		      "the client running as nobody failed: exit status %d (10 setuid, 11 connect, "
		      "12 it was offered MPS settings, 13 CUDA, 14 transfer)",
		      WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
	ck_assert_int_eq(harness_stop(&d), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mps");
	TCase *tc = tcase_create("mps");

	setenv("GPUQ_TEST_SHARING", "mps", 1);
	unsetenv("CUDA_MPS_PIPE_DIRECTORY");
	unsetenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, mps_mode_steers_clients);
	if (geteuid() == 0)
		tcase_add_test(tc, mps_other_uid_keeps_own_context);
	else
		printf("test_mps: mps_other_uid_keeps_own_context needs root (it runs a client as "
		       "nobody): not run\n");
	suite_add_tcase(s, tc);
	harness_seed();
	return gpu_test_main("test_mps", s);
}
