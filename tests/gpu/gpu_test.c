/* gpu_test.c: the common main of the GPU suites (gpu_test.h). */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "gpu_test.h"

int gpu_test_usable(const char *prog)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "%s: fork: %m\n", prog);
		exit(99);
	}
	if (pid == 0) {
		int count = 0;
		cudaError_t err = cudaGetDeviceCount(&count);

		if (err != cudaSuccess) {
			fprintf(stderr, "%s: no GPU: cudaGetDeviceCount: %s\n", prog,
				cudaGetErrorString(err));
			_exit(GPU_TEST_SKIP);
		}
		if (count < 1) {
			fprintf(stderr, "%s: no GPU: no CUDA devices\n", prog);
			_exit(GPU_TEST_SKIP);
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0) {
		fprintf(stderr, "%s: waitpid: %m\n", prog);
		exit(99);
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ENODEV;
}

int gpu_test_main(const char *prog, Suite *suite)
{
	SRunner *sr;
	int failed;

	if (gpu_test_usable(prog) != 0)
		return GPU_TEST_SKIP;
	setenv("GPUQ_TEST_BACKEND", "cuda", 1);
	sr = srunner_create(suite);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
