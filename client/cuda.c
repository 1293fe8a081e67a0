/* cuda.c: libgpuq-cuda: maps exported gpuq buffers into the caller's CUDA context (CUDA IPC). */
#include "build-config.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "gpuq/gpuq.h"
#include "gpuq/gpuq_cuda.h"

#define GPUQ_CUDA_API __attribute__((visibility("default")))

static_assert(sizeof(cudaIpcMemHandle_t) == sizeof(((struct gpuq_buf_export *)0)->handle),
	      "gpuq_buf_export.handle holds a cudaIpcMemHandle_t");

/*
 * Turns a CUDA runtime error into -errno. The error itself stays with the
 * runtime (cudaGetLastError) for the caller, whose runtime instance this is.
 */
static int cuda_errno(cudaError_t err)
{
	switch (err) {
	case cudaSuccess:
		return 0;
	case cudaErrorNoDevice:
	case cudaErrorInvalidDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorDevicesUnavailable:
	case cudaErrorStubLibrary:
	case cudaErrorCallRequiresNewerDriver:
		return -ENODEV;
	case cudaErrorMemoryAllocation:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

GPUQ_CUDA_API int gpuq_buf_map_cuda(gpuq_t *q, uint32_t id, void **devptr, size_t *size)
{
	struct gpuq_buf_export ex;
	cudaIpcMemHandle_t h;
	cudaError_t err;
	void *p = NULL;
	int dev, r;

	if (!q || !devptr)
		return -EINVAL;
	r = gpuq_buf_export(q, id, &ex);
	if (r)
		return r;
	if (!ex.pci_bus_id[0])
		return -ENODEV;
	/* gpuqd's device numbers mean nothing here (CUDA_VISIBLE_DEVICES, MPS): go by PCI address. */
	err = cudaDeviceGetByPCIBusId(&dev, ex.pci_bus_id);
	if (err != cudaSuccess)
		return err == cudaErrorMemoryAllocation ? -ENOMEM : -ENODEV;
	err = cudaSetDevice(dev);
	if (err != cudaSuccess)
		return cuda_errno(err);
	memcpy(&h, ex.handle, sizeof(h));
	/* Lazy peer access: kernels on the caller's other GPUs may use it too, where peers can. */
	err = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
	if (err != cudaSuccess)
		return cuda_errno(err);
	*devptr = p;
	if (size)
		*size = (size_t)ex.size;
	return 0;
}

GPUQ_CUDA_API int gpuq_buf_unmap_cuda(void *devptr)
{
	struct cudaPointerAttributes attr;
	cudaError_t err;
	int cur, ret;

	if (!devptr)
		return -EINVAL;
	/* Close it in the context it was opened in, then give the caller its device back. */
	err = cudaPointerGetAttributes(&attr, devptr);
	if (err != cudaSuccess || attr.type != cudaMemoryTypeDevice)
		return -EINVAL;
	err = cudaGetDevice(&cur);
	if (err != cudaSuccess)
		return cuda_errno(err);
	if (cur != attr.device) {
		err = cudaSetDevice(attr.device);
		if (err != cudaSuccess)
			return cuda_errno(err);
	}
	err = cudaIpcCloseMemHandle(devptr);
	ret = err == cudaSuccess ? 0 : err == cudaErrorInvalidValue ? -EINVAL : cuda_errno(err);
	if (cur != attr.device) {
		err = cudaSetDevice(cur);
		if (err != cudaSuccess && !ret)
			ret = cuda_errno(err);
	}
	return ret;
}
