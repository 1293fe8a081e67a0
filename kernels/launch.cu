/* launch.cu: where a failed kernel launch is reported (kern_set_log). */
#include <stdio.h>

#include <cuda_runtime.h>

#include "launch.cuh"

/* Set once, before the first launch (the daemon's backend init); NULL: stderr. */
static void (*log_fn)(const char *kernel, const char *error);

extern "C" void kern_set_log(void (*fn)(const char *kernel, const char *error))
{
	log_fn = fn;
}

void kern_report_launch(const char *kernel, cudaError_t err)
{
	if (log_fn)
		log_fn(kernel, cudaGetErrorString(err));
	else
		fprintf(stderr, "%s launch: cudaGetLastError: %s\n", kernel,
			cudaGetErrorString(err));
}
