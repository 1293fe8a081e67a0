/* gpu_test.h: the common main of the GPU suites: skip (77) without a usable GPU, else run on the cuda backend. */
#ifndef GPUQ_GPU_TEST_H
#define GPUQ_GPU_TEST_H

#include <check.h>

#define GPU_TEST_SKIP 77

/*
 * 0 when a GPU is usable, else -ENODEV (having said why on stderr, as
 * prog). Asked in a child process: the caller must not touch CUDA before it
 * connects to gpuqd (MPS) nor before Check forks.
 */
int gpu_test_usable(const char *prog);

/*
 * The main of a GPU suite: returns GPU_TEST_SKIP without a GPU; otherwise
 * points the integration harness at the cuda backend, runs suite and
 * returns EXIT_SUCCESS or EXIT_FAILURE.
 */
int gpu_test_main(const char *prog, Suite *suite);

#endif
