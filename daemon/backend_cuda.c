/* backend_cuda.c: the cuda backend: real GPUs through the CUDA runtime API. */
#include "build-config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
/* Driver API types only: its functions are reached through the runtime's entry points. */
#include <cudaTypedefs.h>

#include "backend.h"
#include "kernels/kernels.h"
#include "log.h"

/* Batches one lane may have in flight; also the descriptor slots of a kernel lane. */
#define XFER_INFLIGHT 64
/* Most transfers in one xfer_submit, and the descriptors of one slot. */
#define XFER_MAX_BATCH 4096
/*
 * Small-lane batches of at most this many copies go to the copy engines:
 * one 4 KiB copy took 6.6 us from submit to done that way on an H100 and
 * 12.5 us through the kernel (launch, then two PCIe round trips: the
 * descriptors, then the data), while each extra call costs ~2.3 us.
 */
#define XFER_LONE_CE 2
/* Until calibrated, or when calibration fails. */
#define CROSSOVER_DEFAULT (256u << 10)

/* Calibration: H2D batches of CAL_MIN..CAL_MAX-byte transfers, at most CAL_BYTES each. */
#define CAL_MIN (4u << 10)
#define CAL_MAX (4u << 20)
#define CAL_BYTES (16u << 20)
#define CAL_MAX_N 1024u
#define CAL_REPS 2
#define CAL_BUDGET_NS 250000000LL
/*
 * Copy engines win a near tie: they leave the SMs to clients' kernels, and
 * a kernel's bandwidth from host memory suffers most when those run.
 */
#define CAL_CE_TIE 0.97
/* Done words sit a cache line apart: each is polled, and written by its own stream. */
#define DONE_STRIDE 64
/*
 * The copy server (kern_copy_server): small-lane batches of at most
 * GPUQ_CS_MAX_DESCS copies and CS_MAX_BYTES go to it when it is on. Its
 * ring holds a command for every batch the two small lanes may have in
 * flight, so a slot is never rewritten before the server took it.
 */
#define CS_SLOTS (4 * XFER_INFLIGHT) /* a power of two (command numbers wrap at 2^32), room for STOPs */
#define CS_MAX_BYTES (16u << 10)
/*
 * A server gets a STOP once it is this old (at the next batch), and the
 * small lanes use their streams until its successor runs: calls that wait
 * for the whole device (cudaFree) then wait this long at most.
 */
#define CS_LIFE_NS 2000000LL

static const char *const lane_names[LANE_COUNT] = {
	[LANE_H2D_SMALL] = "h2d-small",
	[LANE_H2D_LARGE] = "h2d-large",
	[LANE_D2H_SMALL] = "d2h-small",
	[LANE_D2H_LARGE] = "d2h-large",
	[LANE_D2D] = "d2d",
};

/*
 * One lane of the data path: a stream, and a word in mapped host memory
 * into which the stream writes each batch's sequence number once the
 * batch is done. Owned by its device's engine thread.
 */
struct cuda_lane {
	cudaStream_t stream;
	_Atomic uint64_t *done;       /* host view of the done word */
	uint64_t done_dev;            /* its device address */
	struct gpuq_copy_desc *slots; /* XFER_INFLIGHT slots of descriptors; NULL: no kernel */
	uint64_t slots_dev;           /* their device address */
	uint64_t seq;                 /* last batch submitted */
	uint64_t stream_last;         /* last batch submitted on the stream */
	uint64_t cs_last;             /* last batch submitted to the copy server */
	int broken;                   /* a failed submission left work queued: refuse more */
};

/* The copy server of a device: its commands, its stream, whether one runs. */
struct cuda_cs {
	_Atomic uint64_t *ring; /* CS_SLOTS commands of GPUQ_CS_WORDS words, host view */
	uint64_t ring_dev;
	_Atomic uint64_t *gone; /* [0]: where a server that left says from which command on; [1]: it runs */
	uint64_t gone_dev;
	cudaStream_t stream;
	uint32_t next;   /* number of the next command */
	uint32_t resume; /* first command no server took, while none runs */
	int running;     /* launched, and not known to have left */
	int stopping;    /* a STOP is posted to the running one: no more commands for it */
	uint32_t stop_no; /* that STOP's number */
	int64_t born;    /* when the running one was launched */
	struct gpuq_cs_done done;
	uint64_t launches; /* also the running one's generation (gone[1] once it runs) */
};

/* The data path of one device, between xfer_start and xfer_stop. */
struct cuda_xfer {
	int started;
	uint64_t crossover;                            /* D2D: shorter copies go to the kernel */
	PFN_cuStreamWriteValue64_v11070 write_value64; /* NULL: kern_write_u64 writes done words */
	void *host_mem;                                /* cudaHostAlloc: done words, then slots */
	struct cuda_lane lane[LANE_COUNT];
	struct cuda_cs cs;                             /* ring == NULL: no copy server */
};

/* One usable device. */
struct cuda_dev {
	int ordinal;                /* CUDA device number (after CUDA_VISIBLE_DEVICES) */
	struct cudaDeviceProp prop; /* read once at init */
	char pci_bus_id[32];        /* sysfs spelling: "0000:3b:00.0"; "" when unknown */
	cudaStream_t ctl;           /* control-plane stream, see cuda_init */
	struct cuda_xfer xf;        /* the engine thread's data path */
	uint64_t cs_batches;        /* batches the copy server was given (engine thread) */
};

/* be->priv of the cuda backend. Created by cuda_init, freed by cuda_fini. */
struct cuda_priv {
	int copy_server; /* serve small batches from a persistent block (set before xfer_start) */
	unsigned ndev;
	struct cuda_dev dev[];
};

/*
 * Logs a failed CUDA call and turns it into an errno. The runtime also
 * records the error as this thread's "last error", where a later kernel
 * launch check would find it and blame the launch: clear it here.
 */
static int cuda_fail(const char *call, cudaError_t err)
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

static struct cuda_dev *cuda_dev_get(struct backend *be, unsigned dev)
{
	struct cuda_priv *priv = be->priv;

	if (!priv || dev >= priv->ndev)
		return NULL;
	return &priv->dev[dev];
}

/* Makes d current on this thread: every per-device call starts here. */
static int cuda_dev_enter(struct cuda_dev *d)
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

static void xfer_release(struct cuda_dev *d);
static int64_t now_ns(void);

static void cuda_dev_close(struct cuda_dev *d)
{
	cudaError_t err;

	if (!d->ctl || cuda_dev_enter(d))
		return;
	/* An engine that did not stop: nothing of it may outlive the backend. */
	xfer_release(d);
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

static int lane_has_kernel(unsigned lane)
{
	return lane == LANE_H2D_SMALL || lane == LANE_D2H_SMALL || lane == LANE_D2D;
}

/*
 * Fills a slot with the copies of x shorter than below (empty ones left
 * out) and returns how many descriptors it wrote. While the slot has room,
 * long copies become warp-sized pieces: a short batch of long copies would
 * otherwise run on a block each and leave most SMs idle. At most cap
 * descriptors whenever n <= cap.
 */
static unsigned descs_fill(struct gpuq_copy_desc *s, unsigned cap, const struct backend_xfer *x,
			   unsigned n, uint64_t below)
{
	unsigned m = 0, spare = cap - n;

	for (unsigned i = 0; i < n; i++) {
		uint64_t src = x[i].src, dst = x[i].dst, len = x[i].len;

		if (len == 0 || len >= below)
			continue;
		while (len > GPUQ_COPY_WARP_MAX && spare) {
			s[m].src = src;
			s[m].dst = dst;
			s[m].len = GPUQ_COPY_WARP_MAX;
			m++;
			src += GPUQ_COPY_WARP_MAX;
			dst += GPUQ_COPY_WARP_MAX;
			len -= GPUQ_COPY_WARP_MAX;
			spare--;
		}
		s[m].src = src;
		s[m].dst = dst;
		s[m].len = len;
		m++;
	}
	return m;
}

/* Launches one copy kernel for the copies of x shorter than below, from the slot of seq. */
static int lane_kernel(struct cuda_lane *l, uint64_t seq, const struct backend_xfer *x, unsigned n,
		       uint64_t below, unsigned *issued)
{
	size_t first = (size_t)(seq % XFER_INFLIGHT) * XFER_MAX_BATCH;
	unsigned m = descs_fill(l->slots + first, XFER_MAX_BATCH, x, n, below);
	int ret;

	if (m == 0)
		return 0;
	ret = kern_copy_batch((const struct gpuq_copy_desc *)(uintptr_t)l->slots_dev + first, m,
			      l->stream);
	if (ret)
		return ret;
	(*issued)++;
	return 0;
}

/*
 * One cudaMemcpyAsync per copy of x at least from bytes long. Not cut into
 * chunks: the lane's stream runs them in order either way, so chunks would
 * let nothing overtake; the engine keeps big requests from holding up
 * others by spreading them over several batches.
 */
static int lane_copies(struct cuda_lane *l, const struct backend_xfer *x, unsigned n, uint64_t from,
		       unsigned *issued)
{
	cudaError_t err;

	for (unsigned i = 0; i < n; i++) {
		if (x[i].len == 0 || x[i].len < from)
			continue;
		err = cudaMemcpyAsync((void *)(uintptr_t)x[i].dst,
				      (const void *)(uintptr_t)x[i].src, x[i].len,
				      cudaMemcpyDefault, l->stream);
		if (err != cudaSuccess)
			return cuda_fail("cudaMemcpyAsync", err);
		(*issued)++;
	}
	return 0;
}

/* Queues the write of seq into the lane's done word behind everything queued so far. */
static int done_write(const struct cuda_xfer *xf, struct cuda_lane *l, uint64_t seq)
{
	CUresult r;

	if (!xf->write_value64)
		return kern_write_u64((uint64_t *)(uintptr_t)l->done_dev, seq, l->stream);
	/* The default flags fence the stream's earlier writes before this one. */
	r = xf->write_value64((CUstream)l->stream, (CUdeviceptr)l->done_dev, seq,
			      CU_STREAM_WRITE_VALUE_DEFAULT);
	if (r != CUDA_SUCCESS) {
		log_err("cuStreamWriteValue64: CUresult %d", (int)r);
		return -EIO;
	}
	return 0;
}

/* Does the batch go to the copy server: few copies, few bytes (empty ones count for nothing). */
static int cs_fits(const struct backend_xfer *x, unsigned n)
{
	uint64_t bytes = 0;
	unsigned m = 0;

	for (unsigned i = 0; i < n; i++) {
		if (!x[i].len)
			continue;
		bytes += x[i].len;
		m++;
	}
	return m <= GPUQ_CS_MAX_DESCS && bytes <= CS_MAX_BYTES;
}

/* Notes that the running server left: from which command the next one starts. */
static void cs_check(struct cuda_cs *cs)
{
	uint64_t g;

	if (!cs->running)
		return;
	g = atomic_load_explicit(cs->gone, memory_order_acquire);
	if (!g)
		return;
	cs->running = 0;
	cs->resume = (uint32_t)g;
	/* It left idle just before our STOP, the last command: nobody need take that one. */
	if (cs->stopping && cs->resume == cs->stop_no && cs->stop_no + 1 == cs->next)
		cs->resume = cs->next;
	cs->stopping = 0;
}

/* Does the running server take commands now (it started, and no STOP went to it)? */
static int cs_ready(struct cuda_cs *cs)
{
	cs_check(cs);
	return cs->running && !cs->stopping && atomic_load_explicit(&cs->gone[1], memory_order_acquire) == cs->launches;
}

/* Starts a server at the first command no server took. Device d is current. */
static int cs_launch(struct cuda_dev *d)
{
	struct cuda_cs *cs = &d->xf.cs;
	int ret;

	atomic_store_explicit(cs->gone, 0, memory_order_relaxed);
	ret = kern_copy_server((const uint64_t *)(uintptr_t)cs->ring_dev, CS_SLOTS, cs->done, cs->resume,
			       (uint64_t *)(uintptr_t)cs->gone_dev, cs->launches + 1, cs->stream);
	if (ret)
		return ret;
	cs->running = 1;
	cs->stopping = 0;
	cs->born = now_ns();
	cs->launches++;
	return 0;
}

/* Starts a server if none runs and commands wait: after one left on its own (the engine polls here). */
static void cs_kick(struct cuda_dev *d)
{
	struct cuda_cs *cs = &d->xf.cs;

	if (!cs->ring)
		return;
	cs_check(cs);
	if (!cs->running && cs->resume != cs->next && cuda_dev_enter(d) == 0)
		cs_launch(d); /* a failure is retried at the next poll */
}

/* Posts one command: its words with their tag, the header last (the server checks every tag anyway). */
static void cs_post(struct cuda_cs *cs, uint32_t op, unsigned lane, uint64_t seq, const struct backend_xfer *x,
		    unsigned n)
{
	uint32_t k = cs->next++, data[GPUQ_CS_WORDS], m = 0, w;
	_Atomic uint64_t *slot = cs->ring + (size_t)((k - 1) % CS_SLOTS) * GPUQ_CS_WORDS;
	uint64_t tag = (uint64_t)k << 32;

	for (unsigned i = 0; i < n; i++) {
		if (!x[i].len)
			continue;
		data[3 + 5 * m] = (uint32_t)x[i].src;
		data[4 + 5 * m] = (uint32_t)(x[i].src >> 32);
		data[5 + 5 * m] = (uint32_t)x[i].dst;
		data[6 + 5 * m] = (uint32_t)(x[i].dst >> 32);
		data[7 + 5 * m] = (uint32_t)x[i].len;
		m++;
	}
	data[0] = op | lane << 4 | m << 8;
	data[1] = (uint32_t)seq;
	data[2] = (uint32_t)(seq >> 32);
	w = op == GPUQ_CS_OP_BATCH ? 3 + 5 * m : 1;
	for (uint32_t i = w; i-- > 1;)
		atomic_store_explicit(&slot[i], tag | data[i], memory_order_relaxed);
	atomic_store_explicit(&slot[0], tag | data[0], memory_order_release);
}

/*
 * Hands a batch that cs_fits to the copy server if one runs and takes
 * commands: returns 1 (posted), or 0 (use the stream; a server is started
 * for the next batches if none runs). A server past CS_LIFE_NS gets a STOP
 * instead, and its successor starts with a later batch.
 */
static int cs_submit(struct cuda_dev *d, unsigned lane, uint64_t seq, const struct backend_xfer *x, unsigned n)
{
	struct cuda_cs *cs = &d->xf.cs;

	if (cs_ready(cs)) {
		if (now_ns() - cs->born < CS_LIFE_NS) {
			cs_post(cs, GPUQ_CS_OP_BATCH, lane, seq, x, n);
			return 1;
		}
		cs->stop_no = cs->next;
		cs_post(cs, GPUQ_CS_OP_STOP, 0, 0, NULL, 0);
		cs->stopping = 1;
		return 0;
	}
	if (!cs->running && cs->resume == cs->next)
		cs_launch(d); /* a failure: tried again at the next batch */
	return 0;
}

/*
 * The data path's hot call: no allocation, no lock, no log on success.
 * The engine has validated every address; nothing is checked here but the
 * batch's shape. A failure after part of a batch was queued leaves the
 * lane refusing everything (-EIO) until xfer_stop: its slot may still be
 * read by the GPU, so it cannot be handed out again.
 */
static int64_t cuda_xfer_submit(struct backend *be, unsigned dev, unsigned lane,
				const struct backend_xfer *x, unsigned n)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	unsigned issued = 0;
	struct cuda_lane *l;
	uint64_t seq;
	int cur = -1, ret;

	if (!d)
		return -ENODEV;
	if (lane >= LANE_COUNT || !d->xf.started || n > XFER_MAX_BATCH || (n && !x))
		return -EINVAL;
	l = &d->xf.lane[lane];
	if (l->broken)
		return -EIO;
	if (l->seq - atomic_load_explicit(l->done, memory_order_acquire) >= XFER_INFLIGHT) {
		cs_kick(d);
		return -EAGAIN;
	}
	/* Kernels go to the current device: the engine thread's unless someone switched it. */
	if (cudaGetDevice(&cur) != cudaSuccess || cur != d->ordinal) {
		ret = cuda_dev_enter(d);
		if (ret)
			return ret;
	}

	seq = l->seq + 1;
	switch (lane) {
	case LANE_H2D_SMALL:
	case LANE_D2H_SMALL:
		if (d->xf.cs.ring) {
			uint64_t done = atomic_load_explicit(l->done, memory_order_acquire);

			/* One way at a time per lane, so that its batches stay in order. */
			if (cs_fits(x, n) && done >= l->stream_last && cs_submit(d, lane, seq, x, n)) {
				l->cs_last = l->seq = seq;
				d->cs_batches++;
				return (int64_t)seq;
			}
			if (done < l->cs_last) {
				cs_kick(d);
				return -EAGAIN; /* the server's batches first */
			}
		}
		if (n <= XFER_LONE_CE)
			ret = lane_copies(l, x, n, 0, &issued);
		else
			ret = lane_kernel(l, seq, x, n, UINT64_MAX, &issued);
		break;
	case LANE_D2D:
		/* Many small device copies cost one kernel, not a call each. */
		ret = lane_kernel(l, seq, x, n, d->xf.crossover, &issued);
		if (!ret)
			ret = lane_copies(l, x, n, d->xf.crossover, &issued);
		break;
	default: ret = lane_copies(l, x, n, 0, &issued); break;
	}
	if (!ret)
		ret = done_write(&d->xf, l, seq);
	if (ret) {
		if (issued) {
			l->broken = 1;
			log_err("cuda: device %u lane %s: a batch failed half-queued; the lane stops",
				dev, lane_names[lane]);
			ret = -EIO;
		}
		return ret;
	}
	l->seq = seq;
	l->stream_last = seq;
	return (int64_t)seq;
}

/*
 * No CUDA call but when a copy server left with commands still to take:
 * then it launches the next one (the engine polls this while batches are
 * in flight, so a command posted as a server left waits one poll).
 */
static uint64_t cuda_xfer_done(struct backend *be, unsigned dev, unsigned lane)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);
	struct cuda_lane *l;
	uint64_t done;

	if (!d || lane >= LANE_COUNT || !d->xf.lane[lane].done)
		return 0;
	l = &d->xf.lane[lane];
	done = atomic_load_explicit(l->done, memory_order_acquire);
	if (done < l->cs_last)
		cs_kick(d);
	return done;
}

/* Lets the copy server finish every command posted, then frees it. Device d is current. */
static void cs_release(struct cuda_dev *d)
{
	struct cuda_cs *cs = &d->xf.cs;
	cudaError_t err;

	if (cs->ring && cs->stream) {
		/* Until a server has taken every command, the STOP last (one may leave on its own first). */
		cs_check(cs);
		if (cs->running || cs->resume != cs->next)
			cs_post(cs, GPUQ_CS_OP_STOP, 0, 0, NULL, 0);
		for (;;) {
			cs_check(cs);
			if (!cs->running && (cs->resume == cs->next || cs_launch(d)))
				break;
			err = cudaStreamSynchronize(cs->stream);
			if (err != cudaSuccess) {
				cuda_fail("cudaStreamSynchronize", err);
				break;
			}
		}
		log_debug("cuda: device %d: copy server launched %llu times", d->ordinal,
			  (unsigned long long)cs->launches);
	}
	if (cs->stream && (err = cudaStreamDestroy(cs->stream)) != cudaSuccess)
		cuda_fail("cudaStreamDestroy", err);
	if (cs->ring && (err = cudaFreeHost((void *)cs->ring)) != cudaSuccess)
		cuda_fail("cudaFreeHost", err);
	memset(cs, 0, sizeof(*cs));
}

/*
 * Sets up the copy server of d (none runs until the first command): its
 * ring and gone word in mapped host memory, and its stream. On failure the
 * device goes on without one.
 */
static void cs_setup(struct cuda_dev *d, unsigned dev)
{
	struct cuda_cs *cs = &d->xf.cs;
	const size_t ring_bytes = (size_t)CS_SLOTS * GPUQ_CS_WORDS * 8;
	uint8_t *host = NULL, *dp = NULL;
	cudaError_t err;

	err = cudaHostAlloc((void **)&host, ring_bytes + 64, cudaHostAllocMapped);
	if (err != cudaSuccess) {
		cuda_fail("cudaHostAlloc", err);
		goto off;
	}
	memset(host, 0, ring_bytes + 64);
	cs->ring = (_Atomic uint64_t *)host;
	cs->gone = (_Atomic uint64_t *)(host + ring_bytes);
	err = cudaHostGetDevicePointer((void **)&dp, host, 0);
	if (err != cudaSuccess) {
		cuda_fail("cudaHostGetDevicePointer", err);
		goto off;
	}
	cs->ring_dev = (uint64_t)(uintptr_t)dp;
	cs->gone_dev = (uint64_t)(uintptr_t)(dp + ring_bytes);
	err = cudaStreamCreateWithFlags(&cs->stream, cudaStreamNonBlocking);
	if (err != cudaSuccess) {
		cs->stream = NULL;
		cuda_fail("cudaStreamCreateWithFlags", err);
		goto off;
	}
	for (unsigned i = 0; i < LANE_COUNT && i < GPUQ_CS_LANES; i++)
		cs->done.word[i] = (uint64_t *)(uintptr_t)d->xf.lane[i].done_dev;
	cs->next = cs->resume = 1;
	log_info("cuda: device %u: small batches (up to %u copies, %u KiB) go to a copy server", dev,
		 GPUQ_CS_MAX_DESCS, CS_MAX_BYTES >> 10);
	return;
off:
	log_warn("cuda: device %u: no copy server", dev);
	cs_release(d);
}

/* Waits for and frees whatever xfer_start set up (also half of it). Device d is current. */
static void xfer_release(struct cuda_dev *d)
{
	struct cuda_xfer *xf = &d->xf;
	cudaError_t err;

	cs_release(d);

	for (unsigned i = 0; i < LANE_COUNT; i++) {
		struct cuda_lane *l = &xf->lane[i];

		if (!l->stream)
			continue;
		err = cudaStreamSynchronize(l->stream);
		if (err != cudaSuccess)
			cuda_fail("cudaStreamSynchronize", err);
		err = cudaStreamDestroy(l->stream);
		if (err != cudaSuccess)
			cuda_fail("cudaStreamDestroy", err);
	}
	if (xf->host_mem) {
		err = cudaFreeHost(xf->host_mem);
		if (err != cudaSuccess)
			cuda_fail("cudaFreeHost", err);
	}
	memset(xf, 0, sizeof(*xf));
}

/*
 * Finds cuStreamWriteValue64 in the driver (the runtime hands out its entry
 * points, so gpuqd needs no libcuda at link time) and checks that it works
 * on this device; otherwise done words are written by a one-thread kernel.
 */
static void done_writer_pick(struct cuda_xfer *xf, unsigned dev)
{
	enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
	struct cuda_lane *l = &xf->lane[LANE_H2D_SMALL];
	void *fn = NULL;
	cudaError_t err;

	err = cudaGetDriverEntryPointByVersion("cuStreamWriteValue64", &fn, 11070,
					       cudaEnableDefault, &q);
	if (err != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
		(void)cudaGetLastError();
		log_info("cuda: device %u: no cuStreamWriteValue64 (%s), kernels write completions",
			 dev, err != cudaSuccess ? cudaGetErrorString(err) : "not found");
		return;
	}
	xf->write_value64 = (PFN_cuStreamWriteValue64_v11070)fn;
	if (done_write(xf, l, 0x5eedull) == 0 && cudaStreamSynchronize(l->stream) == cudaSuccess &&
	    atomic_load(l->done) == 0x5eedull) {
		atomic_store(l->done, 0);
		return;
	}
	(void)cudaGetLastError();
	atomic_store(l->done, 0);
	xf->write_value64 = NULL;
	log_info(
		"cuda: device %u: cuStreamWriteValue64 does not work here, kernels write completions",
		dev);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Resources of one calibration run. */
struct cal {
	struct cuda_xfer *xf;
	struct backend_xfer *x;
	void *host, *dev;
	uint64_t host_dev;
	cudaEvent_t ev[2];
};

/*
 * Seconds one H2D batch x[0..n) takes through the kernel (kernel != 0) or
 * the copy engines, as the engine would issue it. The kernel's cost is the
 * larger of the CPU's (descriptors, launch) and the GPU's, as they overlap
 * from one batch to the next; the copy engines' GPU span already includes
 * the waits for the CPU's calls. 0 on failure.
 */
static double cal_time(struct cal *c, int kernel, unsigned n)
{
	struct cuda_lane *l = &c->xf->lane[kernel ? LANE_H2D_SMALL : LANE_H2D_LARGE];
	unsigned issued = 0;
	int64_t t0 = 0, t1 = 0;
	float ms = 0;
	int ret;

	if (cudaEventRecord(c->ev[0], l->stream) != cudaSuccess)
		return 0;
	if (kernel) {
		t0 = now_ns();
		ret = lane_kernel(l, 0, c->x, n, UINT64_MAX, &issued);
		t1 = now_ns();
	} else {
		ret = lane_copies(l, c->x, n, 0, &issued);
	}
	if (ret || cudaEventRecord(c->ev[1], l->stream) != cudaSuccess ||
	    cudaEventSynchronize(c->ev[1]) != cudaSuccess ||
	    cudaEventElapsedTime(&ms, c->ev[0], c->ev[1]) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	return ms * 1e-3 > (t1 - t0) * 1e-9 ? ms * 1e-3 : (t1 - t0) * 1e-9;
}

static const char *size_str(uint64_t v, char *buf, size_t len)
{
	if (v >= (1u << 20) && v % (1u << 20) == 0)
		snprintf(buf, len, "%" PRIu64 " MiB", v >> 20);
	else
		snprintf(buf, len, "%" PRIu64 " KiB", v >> 10);
	return buf;
}

#define CAL_SIZES 11 /* CAL_MIN << 0 .. CAL_MAX */

/*
 * Times H2D batches of many equal transfers, CAL_MIN to CAL_MAX bytes,
 * through the gather kernel and through the copy engines, and returns the
 * smallest size from which the copy engines keep up with the kernel
 * (CAL_CE_TIE); CAL_MAX when the kernel is faster throughout. Runs on the
 * lanes' own streams before any batch is submitted. Gives up (-ETIME) past
 * CAL_BUDGET_NS; -ENOMEM, -EIO.
 */
static int calibrate(struct cuda_dev *d, unsigned dev, uint64_t *crossover)
{
	double bw_k[CAL_SIZES], bw_c[CAL_SIZES];
	struct cal c = { .xf = &d->xf };
	int64_t start = now_ns();
	cudaError_t err;
	char a[32], b[32];
	int ret = 0, i, pick;

	static_assert(CAL_MIN << (CAL_SIZES - 1) == CAL_MAX, "calibration sizes");
	c.x = malloc(CAL_MAX_N * sizeof(*c.x));
	if (!c.x)
		return -ENOMEM;
	err = cudaHostAlloc(&c.host, CAL_BYTES, cudaHostAllocMapped);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaHostAlloc", err);
		goto out;
	}
	memset(c.host, 0x5a, CAL_BYTES);
	err = cudaHostGetDevicePointer((void **)&c.host_dev, c.host, 0);
	if (err == cudaSuccess)
		err = cudaMalloc(&c.dev, CAL_BYTES);
	if (err == cudaSuccess)
		err = cudaEventCreate(&c.ev[0]);
	if (err == cudaSuccess)
		err = cudaEventCreate(&c.ev[1]);
	if (err != cudaSuccess) {
		ret = cuda_fail("calibration set-up", err);
		goto out;
	}

	for (i = -1; i < CAL_SIZES; i++) {
		/* Size -1: a warm-up, loading the kernel and waking the copy engines. */
		uint64_t size = i < 0 ? CAL_MIN : (uint64_t)CAL_MIN << i;
		unsigned n =
			CAL_BYTES / size < CAL_MAX_N ? (unsigned)(CAL_BYTES / size) : CAL_MAX_N;
		double tk = 0, tc = 0, t;

		if (i < 0)
			n = 16;
		for (unsigned j = 0; j < n; j++) {
			c.x[j].dst = (uint64_t)(uintptr_t)c.dev + j * size;
			c.x[j].src = c.host_dev + j * size;
			c.x[j].len = size;
		}
		for (int r = 0; r < CAL_REPS; r++) {
			t = cal_time(&c, 1, n);
			if (t <= 0)
				goto failed;
			tk = tk == 0 || t < tk ? t : tk;
			t = cal_time(&c, 0, n);
			if (t <= 0)
				goto failed;
			tc = tc == 0 || t < tc ? t : tc;
		}
		if (i < 0)
			continue;
		bw_k[i] = (double)n * size / tk;
		bw_c[i] = (double)n * size / tc;
		log_debug("cuda: device %u: %s x %u h2d: kernel %.1f GB/s, copy engines %.1f GB/s",
			  dev, size_str(size, a, sizeof(a)), n, bw_k[i] * 1e-9, bw_c[i] * 1e-9);
		if (now_ns() - start > CAL_BUDGET_NS) {
			ret = -ETIME;
			goto out;
		}
	}

	/* The smallest size from which the copy engines win at every larger size too. */
	for (pick = CAL_SIZES; pick > 0 && bw_c[pick - 1] >= CAL_CE_TIE * bw_k[pick - 1]; pick--)
		;
	if (pick == CAL_SIZES) {
		*crossover = CAL_MAX;
		log_info(
			"cuda: device %u (%s): small/large crossover %s: the kernel is faster "
			"throughout (%.1f GB/s vs copy engines %.1f GB/s at %s), calibrated in %.0f ms",
			dev, d->prop.name, size_str(CAL_MAX, a, sizeof(a)),
			bw_k[CAL_SIZES - 1] * 1e-9, bw_c[CAL_SIZES - 1] * 1e-9, a,
			(now_ns() - start) * 1e-6);
	} else {
		*crossover = (uint64_t)CAL_MIN << pick;
		if (pick > 0)
			log_info(
				"cuda: device %u (%s): small/large crossover %s (copy engines %.1f GB/s "
				"vs kernel %.1f GB/s there; kernel %.1f GB/s vs %.1f GB/s at %s), "
				"calibrated in %.0f ms",
				dev, d->prop.name, size_str(*crossover, a, sizeof(a)),
				bw_c[pick] * 1e-9, bw_k[pick] * 1e-9, bw_k[pick - 1] * 1e-9,
				bw_c[pick - 1] * 1e-9,
				size_str((uint64_t)CAL_MIN << (pick - 1), b, sizeof(b)),
				(now_ns() - start) * 1e-6);
		else
			log_info(
				"cuda: device %u (%s): small/large crossover %s: the copy engines "
				"win throughout (%.1f GB/s vs kernel %.1f GB/s there), calibrated in "
				"%.0f ms",
				dev, d->prop.name, size_str(*crossover, a, sizeof(a)),
				bw_c[0] * 1e-9, bw_k[0] * 1e-9, (now_ns() - start) * 1e-6);
	}
	goto out;

failed:
	ret = -EIO;
out:
	(void)cudaGetLastError();
	if (c.ev[1])
		cudaEventDestroy(c.ev[1]);
	if (c.ev[0])
		cudaEventDestroy(c.ev[0]);
	/* The lanes' streams may still be busy with a failed run: wait before freeing. */
	cudaStreamSynchronize(c.xf->lane[LANE_H2D_SMALL].stream);
	cudaStreamSynchronize(c.xf->lane[LANE_H2D_LARGE].stream);
	if (c.dev)
		cudaFree(c.dev);
	if (c.host)
		cudaFreeHost(c.host);
	(void)cudaGetLastError();
	free(c.x);
	return ret;
}

/*
 * Sets up dev's data path on the calling thread, which becomes the only one
 * to submit to dev: makes dev current, creates a stream per lane (the small
 * lanes at the highest priority, so their short batches overtake big copies
 * queued on the GPU), the done words and descriptor slots in mapped host
 * memory, picks the completion writer and calibrates be->crossover[dev]
 * (under 300 ms). -EBUSY when started already, -ENOMEM, -EIO.
 */
static int cuda_xfer_start(struct backend *be, unsigned dev)
{
	const size_t slot_bytes =
		(size_t)XFER_INFLIGHT * XFER_MAX_BATCH * sizeof(struct gpuq_copy_desc);
	const size_t words = 4096; /* the done words, a cache line each */
	struct cuda_dev *d = cuda_dev_get(be, dev);
	struct cuda_xfer *xf;
	uint64_t crossover = CROSSOVER_DEFAULT;
	int least = 0, greatest = 0, ret;
	unsigned nk = 0, i;
	uint8_t *base_dev = NULL;
	cudaError_t err;
	size_t size;

	static_assert(LANE_COUNT * DONE_STRIDE <= 4096, "done words");
	if (!d)
		return -ENODEV;
	xf = &d->xf;
	if (xf->started)
		return -EBUSY;
	ret = cuda_dev_enter(d);
	if (ret)
		return ret;
	memset(xf, 0, sizeof(*xf));

	err = cudaDeviceGetStreamPriorityRange(&least, &greatest);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaDeviceGetStreamPriorityRange", err);
		goto err;
	}
	for (i = 0; i < LANE_COUNT; i++) {
		int prio = i == LANE_H2D_SMALL || i == LANE_D2H_SMALL ? greatest : least;

		err = cudaStreamCreateWithPriority(&xf->lane[i].stream, cudaStreamNonBlocking,
						   prio);
		if (err != cudaSuccess) {
			xf->lane[i].stream = NULL;
			ret = cuda_fail("cudaStreamCreateWithPriority", err);
			goto err;
		}
		nk += lane_has_kernel(i);
	}

	size = words + nk * slot_bytes;
	err = cudaHostAlloc(&xf->host_mem, size, cudaHostAllocMapped);
	if (err != cudaSuccess) {
		xf->host_mem = NULL;
		ret = cuda_fail("cudaHostAlloc", err);
		goto err;
	}
	memset(xf->host_mem, 0, words);
	err = cudaHostGetDevicePointer((void **)&base_dev, xf->host_mem, 0);
	if (err != cudaSuccess) {
		ret = cuda_fail("cudaHostGetDevicePointer", err);
		goto err;
	}
	for (i = 0, nk = 0; i < LANE_COUNT; i++) {
		struct cuda_lane *l = &xf->lane[i];
		size_t off = (size_t)i * DONE_STRIDE;

		l->done = (_Atomic uint64_t *)((uint8_t *)xf->host_mem + off);
		l->done_dev = (uint64_t)(uintptr_t)(base_dev + off);
		if (lane_has_kernel(i)) {
			off = words + nk++ * slot_bytes;
			l->slots = (struct gpuq_copy_desc *)((uint8_t *)xf->host_mem + off);
			l->slots_dev = (uint64_t)(uintptr_t)(base_dev + off);
		}
	}

	done_writer_pick(xf, dev);
	ret = calibrate(d, dev, &crossover);
	if (ret) {
		crossover = CROSSOVER_DEFAULT;
		log_warn("cuda: device %u: crossover calibration failed (%s), using %u KiB", dev,
			 strerror(-ret), CROSSOVER_DEFAULT >> 10);
	}
	xf->crossover = crossover;
	if (dev < BACKEND_MAX_DEVICES)
		be->crossover[dev] = crossover;
	if (((struct cuda_priv *)be->priv)->copy_server)
		cs_setup(d, dev);
	xf->started = 1;
	return 0;

err:
	xfer_release(d);
	return ret;
}

/* Waits for every lane, then frees the data path. The engine thread, after its last submit. */
static void cuda_xfer_stop(struct backend *be, unsigned dev)
{
	struct cuda_dev *d = cuda_dev_get(be, dev);

	if (!d || !d->xf.started || cuda_dev_enter(d))
		return;
	xfer_release(d);
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
	case BACKEND_OPT_COPY_SERVER:
		priv->copy_server = value != 0;
		return 0;
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
