/* gpu-probe.c: exits 0 and names the CUDA devices when there is one, else says why and exits 77 (skip). */
#include "build-config.h"

#include <stdio.h>

#include <cuda_runtime_api.h>

#define EXIT_SKIP 77

int main(void)
{
	cudaError_t err;
	int count = 0;

	/* Any error here means "no usable GPU" (no driver, driver too old, no device node). */
	err = cudaGetDeviceCount(&count);
	if (err != cudaSuccess) {
		fprintf(stderr, "gpu-probe: no GPU: cudaGetDeviceCount: %s\n",
			cudaGetErrorString(err));
		return EXIT_SKIP;
	}
	if (count < 1) {
		fprintf(stderr, "gpu-probe: no GPU: no CUDA devices\n");
		return EXIT_SKIP;
	}

	for (int i = 0; i < count; i++) {
		struct cudaDeviceProp prop;

		err = cudaGetDeviceProperties(&prop, i);
		if (err != cudaSuccess)
			printf("gpu-probe: device %d: (cudaGetDeviceProperties: %s)\n", i,
			       cudaGetErrorString(err));
		else
			printf("gpu-probe: device %d: %s, sm_%d%d, %d SMs, %zu MiB\n", i, prop.name,
			       prop.major, prop.minor, prop.multiProcessorCount,
			       prop.totalGlobalMem >> 20);
	}
	return 0;
}
