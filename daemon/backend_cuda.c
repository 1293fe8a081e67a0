/* backend_cuda.c: the cuda backend: devices, memory, host registration and IPC; the ops table. */
#include "build-config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_priv.h"
#include "log.h"

/*
 * Logs a failed CUDA call and turns it into an errno. The runtime also
 * records the error as this thread's "last error", where a later kernel
 * launch check would find it and blame the launch: clear it here.
 */
int cuda_fail(const char *call, cudaError_t err)
{
	int ret;

	(void)cudaGetLastError();
	switch (err) {
	case cudaErrorMemoryAllocation: ret = -ENOMEM; break;
	case cudaErrorInvalidValue:
	case cudaErrorInvalidDevicePointer: ret = -EINVAL; break;
	case cudaErrorNoDevice:
	case cudaErrorInvalidDevice: ret = -ENODEV; break;
	case cudaErrorHostMemoryAlreadyRegistered: ret = -EEXIST; break;
	case cudaErrorHostMemoryNotRegistered: ret = -ENOENT; break;
	case cudaErrorNotSupported: ret = -ENOTSUP; break;
	default: ret = -EIO; break;
	}
	if (ret == -ENOMEM || ret == -EEXIST)
		log_warn("%s: %s", call, cudaGetErrorString(err));
	else
		log_err("%s: %s (%s)", call, cudaGetErrorString(err), cudaGetErrorName(err));
	return ret;
}

/* Where the kernels' launchers report a failed launch. */
static void kern_log(const char *kernel, const char *error)
{
	log_err("%s launch: cudaGetLastError: %s", kernel, error);
}

struct cuda_dev *cuda_dev_get(struct backend *be, unsigned dev)
{
	struct cuda_priv *priv = be->priv;

	if (!priv || dev >= priv->ndev)
		return NULL;
	return &priv->dev[dev];
}

/* Makes d current on this thread: every per-device call starts here. */
int cuda_dev_enter(struct cuda_dev *d)
{
	cudaError_t err = cudaSetDevice(d->ordinal);

	if (err != cudaSuccess)
		return cuda_fail("cudaSetDevice", err);
	return 0;
}

/* Rewrites CUDA's "0000:3B:00.0" (or an 8-digit domain) as sysfs names it. */
static void pci_bus_id_sysfs(const char *cuda_id, char *out, size_t outlen)
{
	unsigned domain, bus, slot, fn;

	if (sscanf(cuda_id, "%x:%x:%x.%x", &domain, &bus, &slot, &fn) == 4)
		snprintf(out, outlen, "%04x:%02x:%02x.%x", domain, bus, slot, fn);
	else
		snprintf(out, outlen, "%s", "");
}

/* Reads the first line of a sysfs attribute; -errno when unreadable. */
static int sysfs_read(const char *bus_id, const char *attr, char *buf, size_t len)
{
	char path[128];
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bus_id, attr);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f))
		ret = -EIO;
	fclose(f);
	return ret;
}

/* "32.0 GT/s PCIe" (or the older "8 GT/s") => 5 (3); 0 when unknown. */
static unsigned pcie_gen_from_speed(const char *s)
{
	static const struct {
		double gts;
		unsigned gen;
	} gens[] = { { 2.5, 1 }, { 5, 2 }, { 8, 3 }, { 16, 4 }, { 32, 5 }, { 64, 6 }, { 128, 7 } };
	char *end;
	double v = strtod(s, &end);

	if (end == s)
		return 0; /* "Unknown" */
	for (size_t i = 0; i < sizeof(gens) / sizeof(gens[0]); i++)
		if (v > gens[i].gts * 0.9 && v < gens[i].gts * 1.1)
			return gens[i].gen;
	return 0;
}

static void pcie_link_read(const char *bus_id, unsigned *gen, unsigned *width)
{
	char buf[64];
	char *end;
	unsigned long w;

	*gen = 0;
	*width = 0;
	if (!bus_id[0])
		return;
	if (sysfs_read(bus_id, "current_link_speed", buf, sizeof(buf)) == 0)
		*gen = pcie_gen_from_speed(buf);
	if (sysfs_read(bus_id, "current_link_width", buf, sizeof(buf)) == 0) {
		w = strtoul(buf, &end, 10);
		if (end != buf && w <= 64)
			*width = (unsigned)w;
	}
}

/* Fills d for CUDA device ordinal and creates its primary context; 0 or -errno. */
static int cuda_dev_open(struct cuda_dev *d, int ordinal)
{
	char id[32];
	cudaError_t err;
	int ret;

	d->ordinal = ordinal;
	err = cudaGetDeviceProperties(&d->prop, ordinal);
	if (err != cudaSuccess)
		return cuda_fail("cudaGetDeviceProperties", err);
	err = cudaDeviceGetPCIBusId(id, sizeof(id), ordinal);
	if (err != cudaSuccess)
		return cuda_fail("cudaDeviceGetPCIBusId", err);
	pci_bus_id_sysfs(id, d->pci_bus_id, sizeof(d->pci_bus_id));

	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	/* Creates the primary context now, not on the first client's request. */
	err = cudaFree(NULL);
	if (err != cudaSuccess)
		return cuda_fail("cudaFree(0)", err);
	/*
	 * The control thread's zeroing and copies run on a private non-blocking
	 * stream: on the legacy default stream they would wait for, and hold
	 * up, whatever the engine has queued on the device.
	 */
	err = cudaStreamCreateWithFlags(&d->ctl, cudaStreamNonBlocking);
	if (err != cudaSuccess)
		return cuda_fail("cudaStreamCreateWithFlags", err);
	return 0;
}

static void cuda_dev_close(struct cuda_dev *d)
{
	cudaError_t err;

	if (!d->ctl || cuda_dev_enter(d))
		return;
	/* An engine that did not stop: nothing of it may outlive the backend. */
	cuda_xfer_release(d);
	err = cudaStreamDestroy(d->ctl);
	if (err != cudaSuccess)
		cuda_fail("cudaStreamDestroy", err);
	d->ctl = NULL;
}

/* "found 2 CUDA device(s): 2x NVIDIA H100 80GB HBM3", names in device order. */
static void cuda_reason(struct backend *be, const struct cuda_priv *priv, int skipped)
{
	size_t len, cap = sizeof(be->reason);
	unsigned i, j, same;

	len = (size_t)snprintf(be->reason, cap, "found %u CUDA device(s):", priv->ndev);
	for (i = 0; i < priv->ndev && len < cap; i += same) {
		for (same = 1, j = i + 1; j < priv->ndev; j++, same++)
			if (strcmp(priv->dev[j].prop.name, priv->dev[i].prop.name))
				break;
		if (same > 1)
			len += (size_t)snprintf(be->reason + len, cap - len, "%s %ux %s",
						i ? "," : "", same, priv->dev[i].prop.name);
		else
			len += (size_t)snprintf(be->reason + len, cap - len, "%s %s", i ? "," : "",
						priv->dev[i].prop.name);
	}
	if (skipped && len < cap)
		snprintf(be->reason + len, cap - len, " (%d unusable, skipped)", skipped);
}

/*
 * Discovers the CUDA devices and creates each one's primary context. A device
 * that fails to open (exclusive-process mode held elsewhere, a fault) is
 * logged and skipped, so backend device numbers count usable devices only.
 * Returns 0, or -ENODEV with be->reason saying why when no device is usable
 * (any cudaGetDeviceCount error counts as "no GPU"), or -ENOMEM.
 */
static int cuda_init(struct backend *be)
{
	struct cuda_priv *priv;
	cudaError_t err;
	int count = 0, i, ret, skipped = 0;
	char why[160] = "";

	kern_set_log(kern_log);
	err = cudaGetDeviceCount(&count);
	if (err != cudaSuccess) {
		(void)cudaGetLastError();
		snprintf(be->reason, sizeof(be->reason), "cudaGetDeviceCount: %s",
			 cudaGetErrorString(err));
		log_debug("cuda: %s", be->reason);
		return -ENODEV;
	}
	if (count <= 0) {
		snprintf(be->reason, sizeof(be->reason), "no CUDA devices");
		return -ENODEV;
	}

	priv = calloc(1, sizeof(*priv) + (size_t)count * sizeof(priv->dev[0]));
	if (!priv)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		struct cuda_dev *d = &priv->dev[priv->ndev];

		ret = cuda_dev_open(d, i);
		if (ret) {
			log_warn("cuda: skipping device %d (%s): %s", i,
				 d->prop.name[0] ? d->prop.name : "?", strerror(-ret));
			snprintf(why, sizeof(why), "device %d: %s", i, strerror(-ret));
			cuda_dev_close(d);
			memset(d, 0, sizeof(*d));
			skipped++;
			continue;
		}
		log_debug("cuda: device %u is CUDA device %d, %s, %s", priv->ndev, i, d->prop.name,
			  d->pci_bus_id[0] ? d->pci_bus_id : "no PCI id");
		priv->ndev++;
	}
	if (priv->ndev == 0) {
		snprintf(be->reason, sizeof(be->reason), "no usable CUDA device: %s", why);
		free(priv);
		return -ENODEV;
	}

	be->priv = priv;
	be->ndevices = priv->ndev;
	be->xfer_max_batch = XFER_MAX_BATCH;
	for (unsigned k = 0; k < BACKEND_MAX_DEVICES; k++)
		be->crossover[k] = CROSSOVER_DEFAULT;
	cuda_reason(be, priv, skipped);
	return 0;
}

/* Releases the backend's state. Devices are not reset: other processes may use them. */
static void cuda_fini(struct backend *be)
{
	struct cuda_priv *priv = be->priv;

	if (!priv)
		return;
	for (unsigned i = 0; i < priv->ndev; i++)
		cuda_dev_close(&priv->dev[i]);
	free(priv);
	be->priv = NULL;
	be->ndevices = 0;
}

static int cuda_device_info(struct backend *be, unsigned dev, struct backend_device_info *info)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	size_t free_b = 0, total_b = 0;
	cudaError_t err;
	int ret;

	if (!d)
		return -ENODEV;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	err = cudaMemGetInfo(&free_b, &total_b);
	if (err != cudaSuccess)
		return cuda_fail("cudaMemGetInfo", err);

	memset(info, 0, sizeof(*info));
	/* Truncated to fit: CUDA allows 256 bytes, the interface 128. */
	snprintf(info->name, sizeof(info->name), "%.*s", (int)sizeof(info->name) - 1, d->prop.name);
	snprintf(info->pci_bus_id, sizeof(info->pci_bus_id), "%s", d->pci_bus_id);
	info->total_mem = total_b;
	info->free_mem = free_b;
	info->cc_major = (unsigned)d->prop.major;
	info->cc_minor = (unsigned)d->prop.minor;
	info->sm_count = (unsigned)d->prop.multiProcessorCount;
	/* Read each time: the link retrains (idle GPUs often drop to a lower speed). */
	pcie_link_read(d->pci_bus_id, &info->pcie_gen, &info->pcie_width);
	return 0;
}

/*
 * Allocates size bytes of device memory, zero-filled before this returns so
 * that a session never sees what an earlier session left there. -ENODEV for
 * a bad device, -EINVAL for size 0, -ENOMEM when the device has no room.
 */
static int cuda_mem_alloc(struct backend *be, unsigned dev, size_t size, uint64_t *addr)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	cudaError_t err;
	void *p = NULL;
	int ret;

	if (!d)
		return -ENODEV;
	if (size == 0)
		return -EINVAL;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	err = cudaMalloc(&p, size);
	if (err != cudaSuccess)
		return cuda_fail("cudaMalloc", err);
	err = cudaMemsetAsync(p, 0, size, d->ctl);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaMemsetAsync", err);
		goto err_free;
	}
	/* The buffer must be zero before its id reaches anyone. */
	err = cudaStreamSynchronize(d->ctl);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaStreamSynchronize", err);
		goto err_free;
	}
	*addr = (uint64_t)(uintptr_t)p;
	return 0;

err_free:
	err = cudaFree(p);
	if (err != cudaSuccess)
		cuda_fail("cudaFree", err);
	return ret;
}

static int cuda_mem_free(struct backend *be, unsigned dev, uint64_t addr)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	cudaError_t err;
	int ret;

	if (!d)
		return -ENODEV;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	err = cudaFree((void *)(uintptr_t)addr);
	if (err != cudaSuccess)
		return cuda_fail("cudaFree", err);
	return 0;
}

/* One synchronous copy on the device's control stream; kind says the direction. */
static int cuda_copy(struct cuda_dev *d, void *dst, const void *src, size_t len,
		     enum cudaMemcpyKind kind)
{
	cudaError_t err;
	int ret;

	if (len == 0)
		return 0;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	err = cudaMemcpyAsync(dst, src, len, kind, d->ctl);
	if (err != cudaSuccess)
		return cuda_fail(kind == cudaMemcpyHostToDevice ? "cudaMemcpyAsync(H2D)" :
								  "cudaMemcpyAsync(D2H)",
				 err);
	/* Pageable host memory: only the sync says the data has landed. */
	err = cudaStreamSynchronize(d->ctl);
	if (err != cudaSuccess)
		return cuda_fail("cudaStreamSynchronize", err);
	return 0;
}

static int cuda_copy_to_dev(struct backend *be, unsigned dev, uint64_t dst, const void *src,
			    size_t len)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);

	if (!d)
		return -ENODEV;
	return cuda_copy(d, (void *)(uintptr_t)dst, src, len, cudaMemcpyHostToDevice);
}

static int cuda_copy_from_dev(struct backend *be, unsigned dev, void *dst, uint64_t src, size_t len)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);

	if (!d)
		return -ENODEV;
	return cuda_copy(d, dst, (const void *)(uintptr_t)src, len, cudaMemcpyDeviceToHost);
}

/*
 * Pins and maps len bytes at p (a client's memfd mapping) for every device:
 * portable, so each device's copy engines may use it, and mapped, so its
 * kernels can too. -EINVAL for an empty range, -EEXIST when any of it is
 * registered already, -ENOMEM when it cannot be pinned, -EIO.
 */
static int cuda_host_register(struct backend *be, void *p, size_t len)
{
	struct cuda_priv *priv = be->priv;
	cudaError_t err;
	int ret;

	if (!priv || !p || len == 0)
		return -EINVAL;
	ret = cuda_dev_enter(&priv->dev[0]);
	if (ret)
		return ret;
	err = cudaHostRegister(p, len, cudaHostRegisterPortable | cudaHostRegisterMapped);
	if (err != cudaSuccess)
		return cuda_fail("cudaHostRegister", err);
	return 0;
}

/* Unpins what host_register pinned at p. Nothing may still be copying to or from it. */
static void cuda_host_unregister(struct backend *be, void *p)
{
	struct cuda_priv *priv = be->priv;
	cudaError_t err;

	if (!priv || !p || cuda_dev_enter(&priv->dev[0]))
		return;
	err = cudaHostUnregister(p);
	if (err != cudaSuccess)
		cuda_fail("cudaHostUnregister", err);
}

/* The address dev's kernels and copy engines use for registered p (with UVA: p itself). */
static int cuda_host_devptr(struct backend *be, unsigned dev, void *p, uint64_t *devaddr)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	void *dp = NULL;
	cudaError_t err;
	int ret;

	if (!d)
		return -ENODEV;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	err = cudaHostGetDevicePointer(&dp, p, 0);
	if (err != cudaSuccess)
		return cuda_fail("cudaHostGetDevicePointer", err);
	*devaddr = (uint64_t)(uintptr_t)dp;
	return 0;
}

/* Fills handle with a CUDA IPC handle of the allocation at addr. */
static int cuda_ipc_export(struct backend *be, unsigned dev, uint64_t addr, void *handle)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	cudaIpcMemHandle_t h;
	cudaError_t err;
	int ret;

	static_assert(sizeof(h) == BACKEND_IPC_HANDLE_SIZE, "IPC handle size");
	if (!d)
		return -ENODEV;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	err = cudaIpcGetMemHandle(&h, (void *)(uintptr_t)addr);
	if (err != cudaSuccess)
		return cuda_fail("cudaIpcGetMemHandle", err);
	memcpy(handle, &h, sizeof(h));
	return 0;
}

static int cuda_set_option(struct backend *be, enum backend_option opt, int value)
{
	struct cuda_priv *priv = be->priv;
	const char *env;

	if (!priv)
		return -ENODEV;
	switch (opt) {
	case BACKEND_OPT_MPS:
		/*
		 * A copy server keeps one block running on each GPU. Under MPS it
		 * shares the GPU with clients' kernels; in a context of its own it
		 * would take time slices from theirs. GPUQD_COPY_SERVER=0/1 overrides.
		 */
		priv->copy_server = value != 0;
		env = getenv("GPUQD_COPY_SERVER");
		if (env)
			priv->copy_server = atoi(env) != 0;
		return 0;
	case BACKEND_OPT_COPY_SERVER: priv->copy_server = value != 0; return 0;
	}
	return -ENOTSUP;
}

static int cuda_stats(struct backend *be, unsigned dev, struct backend_stats *st)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);

	if (!d)
		return -ENODEV;
	st->copy_server_batches = d->cs_batches;
	return 0;
}

const struct backend_ops backend_cuda_ops = {
	.name = "cuda",
	.init = cuda_init,
	.fini = cuda_fini,
	.device_info = cuda_device_info,
	.mem_alloc = cuda_mem_alloc,
	.mem_free = cuda_mem_free,
	.copy_to_dev = cuda_copy_to_dev,
	.copy_from_dev = cuda_copy_from_dev,
	.host_register = cuda_host_register,
	.host_unregister = cuda_host_unregister,
	.host_devptr = cuda_host_devptr,
	.xfer_start = cuda_xfer_start,
	.xfer_stop = cuda_xfer_stop,
	.xfer_submit = cuda_xfer_submit,
	.xfer_done = cuda_xfer_done,
	.ipc_export = cuda_ipc_export,
	.set_option = cuda_set_option,
	.stats = cuda_stats,
};
