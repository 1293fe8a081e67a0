/* cuda.c: libgpuq-cuda: maps exported gpuq buffers (CUDA IPC) and channel rings (mapped host memory) into the caller's CUDA context. */
#include "build-config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cuda_runtime_api.h>

#include "gpuq/gpuq.h"
#include "gpuq/gpuq_chan.h"
#include "gpuq/gpuq_cuda.h"

static_assert(sizeof(cudaIpcMemHandle_t) == sizeof(((struct gpuq_buf_export *)0)->handle),
	      "gpuq_buf_export.handle holds a cudaIpcMemHandle_t");

/*
 * Turns a CUDA runtime error into -errno. The error itself stays with the
 * runtime (cudaGetLastError) for the caller, whose runtime instance this is.
 */
static int cuda_errno(cudaError_t err)
{
	switch (err) {
	case cudaSuccess: return 0;
	case cudaErrorNoDevice:
	case cudaErrorInvalidDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorDevicesUnavailable:
	case cudaErrorStubLibrary:
	case cudaErrorCallRequiresNewerDriver: return -ENODEV;
	case cudaErrorMemoryAllocation: return -ENOMEM;
	default: return -EIO;
	}
}

GPUQ_CUDA_API int gpuq_mps_prepare_cuda(gpuq_t *q)
{
	const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
	int n = gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX);

	for (int i = 0; i < n && i < GPUQ_MPS_ENV_MAX; i++)
		if (setenv(names[i], values[i], 0))
			return -errno;
	return n;
}

GPUQ_CUDA_API int gpuq_buf_map_cuda(gpuq_t *q, uint32_t id, void **devptr, size_t *size)
{
	struct gpuq_buf_export ex = { .struct_size = sizeof(ex) };
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

/*
 * How many mappings of each channel's memory this process holds: the
 * memory is registered with CUDA once, on the first, and unregistered on
 * the last unmap (a sender and a receiver mapping of one channel, say).
 * It is registered as its three regions (gpuq_chan.h, "Regions"), each as
 * the opener may use it: the fixed page always read-only, the receiver
 * page and the sender region read-only unless gpuqd granted that end
 * (cudaHostRegisterReadOnly; a region mapped read-only cannot be
 * registered otherwise).
 */
#define MAPPED_MAX 256
static struct {
	void *mem;
	unsigned refs;
	int ours; /* registered here (not by the caller before the first map) */
} mapped[MAPPED_MAX];
static pthread_mutex_t mapped_lock = PTHREAD_MUTEX_INITIALIZER;

/* The regions of a channel of size bytes: offset, length, and whether the opener may write it. */
static void regions(size_t size, int ends, size_t off[3], size_t len[3], int rw[3])
{
	off[0] = 0;
	len[0] = GPUQ_CHAN_FIXED_SIZE;
	rw[0] = 0;
	off[1] = GPUQ_CHAN_RX_OFF;
	len[1] = GPUQ_CHAN_RX_SIZE;
	rw[1] = !!(ends & (int)GPUQ_CHAN_RECV);
	off[2] = GPUQ_CHAN_TX_OFF;
	len[2] = size - GPUQ_CHAN_TX_OFF;
	rw[2] = !!(ends & (int)GPUQ_CHAN_SEND);
}

static void unregister_regions(void *mem, const size_t off[3], int n)
{
	while (n-- > 0)
		cudaHostUnregister((uint8_t *)mem + off[n]);
	(void)cudaGetLastError();
}

/*
 * Registers the regions of mem: the device reaches all three at one base
 * (the device code adds offsets to hdr), which holds where registered host
 * memory has the same address on the device; -EOPNOTSUPP where it does not,
 * or where a read-only region cannot be registered
 * (cudaDevAttrHostRegisterReadOnlySupported, checked on the current device).
 */
static int register_regions(void *mem, size_t size, int ends)
{
	size_t off[3], len[3];
	int rw[3], i, dev, ro_ok = 0;
	cudaError_t err;
	void *base = NULL, *p;

	regions(size, ends, off, len, rw);
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&ro_ok, cudaDevAttrHostRegisterReadOnlySupported, dev) !=
		    cudaSuccess) {
		(void)cudaGetLastError();
		ro_ok = 0;
	}
	if (!ro_ok)
		return -EOPNOTSUPP; /* the fixed page is read-only for everyone */
	for (i = 0; i < 3; i++) {
		unsigned flags = cudaHostRegisterMapped | cudaHostRegisterPortable;

		if (!rw[i])
			flags |= cudaHostRegisterReadOnly;
		err = cudaHostRegister((uint8_t *)mem + off[i], len[i], flags);
		if (err != cudaSuccess) {
			(void)cudaGetLastError();
			unregister_regions(mem, off, i);
			return cuda_errno(err);
		}
		err = cudaHostGetDevicePointer(&p, (uint8_t *)mem + off[i], 0);
		if (err != cudaSuccess) {
			(void)cudaGetLastError();
			unregister_regions(mem, off, i + 1);
			return cuda_errno(err);
		}
		if (i == 0)
			base = p;
		else if (p != (uint8_t *)base + off[i]) {
			unregister_regions(mem, off, i + 1);
			return -EOPNOTSUPP; /* the regions are not side by side on the device */
		}
	}
	return 0;
}

/* Registers mem (size bytes, an opener granted ends) unless this process already has; counts the mapping. */
static int mapped_get(void *mem, size_t size, int ends)
{
	int i, slot = -1, r = 0;

	pthread_mutex_lock(&mapped_lock);
	for (i = 0; i < MAPPED_MAX; i++) {
		if (mapped[i].mem == mem) {
			mapped[i].refs++;
			goto out;
		}
		if (!mapped[i].mem && slot < 0)
			slot = i;
	}
	if (slot < 0) {
		r = -EMFILE;
		goto out;
	}
	/* Portable: kernels on any of the process's devices may use the ring. */
	r = register_regions(mem, size, ends);
	if (r)
		goto out;
	mapped[slot].mem = mem;
	mapped[slot].refs = 1;
	mapped[slot].ours = 1;
out:
	pthread_mutex_unlock(&mapped_lock);
	return r;
}

/* Drops one mapping of mem; unregisters it with the last. -EINVAL when this process has none. */
static int mapped_put(void *mem)
{
	static const size_t off[3] = { 0, GPUQ_CHAN_RX_OFF, GPUQ_CHAN_TX_OFF };
	int i, r = -EINVAL;

	pthread_mutex_lock(&mapped_lock);
	for (i = 0; i < MAPPED_MAX; i++) {
		if (mapped[i].mem != mem)
			continue;
		r = 0;
		if (--mapped[i].refs == 0) {
			if (mapped[i].ours)
				unregister_regions(mem, off, 3);
			mapped[i].mem = NULL;
		}
		break;
	}
	pthread_mutex_unlock(&mapped_lock);
	return r;
}

/* Why this thread's last mapping call failed, where -errno says too little. */
static _Thread_local char errmsg[160];

GPUQ_CUDA_API const char *gpuq_cuda_errmsg(void)
{
	return errmsg;
}

/*
 * The mapping calls' first step, before any CUDA call: the caller's
 * gpuq_device.cuh (through the gpuq_cuda.h macros) must implement the
 * channel layout this library fills struct gpuq_dev_chan for.
 */
static int check_version(const char *call, uint32_t chan_version)
{
	errmsg[0] = '\0';
	if (chan_version == GPUQ_CHAN_VERSION)
		return 0;
	snprintf(
		errmsg, sizeof(errmsg),
		"%s: the caller was built for channel layout %u, libgpuq-cuda implements layout %u; "
		"rebuild against this library's headers",
		call, chan_version, GPUQ_CHAN_VERSION);
	return -EPROTO;
}

/* Maps ch's ring for this process's kernels and fills *out (no end taken). */
static int map_ring(gpuq_chan_t *ch, struct gpuq_dev_chan *out)
{
	size_t slot_size, mem_size;
	unsigned nslots, dir;
	cudaError_t err;
	void *mem, *dev;
	int r;

	r = gpuq_chan_info(ch, &slot_size, &nslots, &dir, &mem, &mem_size);
	if (r)
		return r;
	/*
	 * The geometry libgpuq checked when it opened the channel; the shared
	 * header is writable by every user of the channel and is not re-read.
	 */
	if (mem_size < gpuq_chan_size((uint32_t)slot_size, nslots))
		return -EPROTO;
	r = mapped_get(mem, mem_size, gpuq_chan_ends(ch));
	if (r)
		return r;
	err = cudaHostGetDevicePointer(&dev, mem, 0);
	if (err != cudaSuccess) {
		mapped_put(mem);
		return cuda_errno(err);
	}
	out->hdr = dev;
	out->slots = (uint8_t *)dev + GPUQ_CHAN_HDR_SIZE;
	out->slot_size = (uint32_t)slot_size;
	out->nslots = nslots;
	out->stride = gpuq_chan_stride((uint32_t)slot_size);
	out->format = gpuq_chan_format((uint32_t)slot_size);
	out->lap_shift = gpuq_chan_lap_shift(nslots);
	out->dev_tail = NULL;
	out->dev_head = NULL;
	out->dev_rx = NULL;
	return 0;
}

GPUQ_CUDA_API int gpuq_chan_map_cuda_versioned(gpuq_chan_t *ch, struct gpuq_dev_chan *out,
					       uint32_t chan_version)
{
	int r;

	r = check_version("gpuq_chan_map_cuda", chan_version);
	if (r)
		return r;
	if (!ch || !out)
		return -EINVAL;
	return map_ring(ch, out);
}

/*
 * Takes end (GPUQ_CHAN_SEND or _RECV) of ch for this process's kernels
 * (gpuqd keeps the mark), maps the ring and puts the end's two counters in
 * device memory: for the send end the next position to take and the last
 * head seen, for the receive end the next position to claim and to free.
 */
static int map_end(gpuq_chan_t *ch, unsigned end, struct gpuq_dev_chan *out, uint64_t **dev)
{
	struct gpuq_chan_hdr *h;
	uint64_t init[2], *word, cur;
	cudaError_t err;
	void *mem, *d;
	int r;

	r = gpuq_chan_info(ch, NULL, NULL, NULL, &mem, NULL);
	if (r)
		return r;
	h = mem;
	r = gpuq_chan_own(ch, end, 1);
	if (r)
		return r;
	r = map_ring(ch, out);
	if (r)
		goto fail_owner;
	err = cudaMalloc(&d, sizeof(init));
	if (err != cudaSuccess) {
		r = cuda_errno(err);
		goto fail_map;
	}
	/*
	 * Hold the end's word (GPUQ_CHAN_HELD, gpuq_chan.h): a CPU user that
	 * read it before gpuqd recorded us cannot take a position any more.
	 */
	word = end == GPUQ_CHAN_SEND ? &h->tail : &h->head;
	cur = __atomic_load_n(word, __ATOMIC_ACQUIRE);
	while (!(cur & GPUQ_CHAN_HELD) &&
	       !__atomic_compare_exchange_n(word, &cur, cur | GPUQ_CHAN_HELD, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE))
		;
	/* Already held: left so by an owner gone before us (gpuqd gave us the end); it is ours now. */
	cur &= ~GPUQ_CHAN_HELD;
	init[1] = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;
	init[0] = end == GPUQ_CHAN_SEND ? cur : init[1];
	err = cudaMemcpy(d, init, sizeof(init), cudaMemcpyHostToDevice);
	if (err != cudaSuccess) {
		r = cuda_errno(err);
		cudaFree(d);
		/* No kernel has the counters: the word is as we held it; let it go. */
		__atomic_store_n(word, cur, __ATOMIC_RELEASE);
		goto fail_map;
	}
	*dev = d;
	return 0;
fail_map:
	gpuq_chan_unmap_cuda(ch);
fail_owner:
	gpuq_chan_own(ch, end, 0);
	return r;
}

/*
 * Undoes map_end once the kernels finished: hands the end's position back
 * to the ring (the send end's tail; the receive end's head, which the
 * kernels kept up to date, raised to the last position they freed), frees
 * the counters, gives the end back and unmaps.
 */
static int unmap_end(gpuq_chan_t *ch, unsigned end, uint64_t *dev)
{
	struct gpuq_chan_hdr *h;
	uint64_t pos[2], cur;
	cudaError_t err;
	void *mem;
	int r;

	r = gpuq_chan_info(ch, NULL, NULL, NULL, &mem, NULL);
	if (r)
		return r;
	h = mem;
	err = cudaMemcpy(pos, dev, sizeof(pos), cudaMemcpyDeviceToHost);
	if (err == cudaSuccess && end == GPUQ_CHAN_SEND) {
		__atomic_store_n(&h->tail, pos[0], __ATOMIC_RELEASE);
	} else if (err == cudaSuccess) {
		pos[1] &= ~GPUQ_DEV_RX_UNFENCED; /* the kernels ended: their stores are all in */
		/* Head, released: the last position the kernels freed, or later if their last store beat ours. */
		cur = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
		while (!__atomic_compare_exchange_n(
			&h->head, &cur,
			(cur & ~GPUQ_CHAN_HELD) > pos[1] ? cur & ~GPUQ_CHAN_HELD : pos[1], 0,
			__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			;
	}
	cudaFree(dev);
	if (err != cudaSuccess) {
		/*
		 * The position could not be handed back (the context is broken):
		 * keep the end marked; gpuqd repairs the ring when this session
		 * ends. Giving it back now would let CPU users work from a stale
		 * tail or head.
		 */
		gpuq_chan_unmap_cuda(ch);
		return cuda_errno(err);
	}
	r = gpuq_chan_own(ch, end, 0);
	if (!r)
		r = gpuq_chan_unmap_cuda(ch);
	else
		gpuq_chan_unmap_cuda(ch);
	return r;
}

GPUQ_CUDA_API int gpuq_chan_map_cuda_sender_versioned(gpuq_chan_t *ch, struct gpuq_dev_chan *out,
						      uint32_t chan_version)
{
	uint64_t *d;
	int r;

	r = check_version("gpuq_chan_map_cuda_sender", chan_version);
	if (r)
		return r;
	if (!ch || !out)
		return -EINVAL;
	r = map_end(ch, GPUQ_CHAN_SEND, out, &d);
	if (r)
		return r;
	out->dev_tail = d;
	out->dev_head = d + 1;
	return 0;
}

GPUQ_CUDA_API int gpuq_chan_unmap_cuda_sender(gpuq_chan_t *ch, struct gpuq_dev_chan *dc)
{
	uint64_t *d;

	if (!ch || !dc || !dc->dev_tail)
		return -EINVAL;
	d = dc->dev_tail;
	dc->dev_tail = dc->dev_head = NULL;
	return unmap_end(ch, GPUQ_CHAN_SEND, d);
}

GPUQ_CUDA_API int gpuq_chan_map_cuda_receiver_versioned(gpuq_chan_t *ch, struct gpuq_dev_chan *out,
							uint32_t chan_version)
{
	uint64_t *d;
	int r;

	r = check_version("gpuq_chan_map_cuda_receiver", chan_version);
	if (r)
		return r;
	if (!ch || !out)
		return -EINVAL;
	r = map_end(ch, GPUQ_CHAN_RECV, out, &d);
	if (r)
		return r;
	out->dev_rx = d;
	return 0;
}

GPUQ_CUDA_API int gpuq_chan_unmap_cuda_receiver(gpuq_chan_t *ch, struct gpuq_dev_chan *dc)
{
	uint64_t *d;

	if (!ch || !dc || !dc->dev_rx)
		return -EINVAL;
	d = dc->dev_rx;
	dc->dev_rx = NULL;
	return unmap_end(ch, GPUQ_CHAN_RECV, d);
}

GPUQ_CUDA_API int gpuq_chan_unmap_cuda(gpuq_chan_t *ch)
{
	void *mem;
	int r;

	if (!ch)
		return -EINVAL;
	r = gpuq_chan_info(ch, NULL, NULL, NULL, &mem, NULL);
	if (r)
		return r;
	return mapped_put(mem);
}
