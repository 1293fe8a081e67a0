/* backend_host.c: the backend interface over host memory, standing in for a GPU. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/*
 * host_devices stand-in devices (1..16, so multi-GPU sessions can be tested
 * without GPUs) sharing host_mem bytes of "device memory". Allocations are
 * kept on a doubly linked list so mem_free gives their size back in O(1)
 * and fini frees what is left; each carries a magic and its own address,
 * checked before mem_free trusts it.
 */
#define HOST_ALLOC_MAGIC 0x67707568616c6cull

struct host_alloc {
	struct host_alloc *next, *prev;
	uint64_t magic;
	uint64_t size;
	unsigned dev;
	max_align_t data[];
};

struct host_priv {
	uint64_t used;
	struct host_alloc *allocs;
	uint64_t seq[BACKEND_MAX_DEVICES][LANE_COUNT]; /* seq[dev]: that engine's thread only */
	/*
	 * A test knob (GPUQD_HOST_HANG=1, see HACKING.md): batches run but are
	 * never reported done, like a hung GPU, so the deadlines can be tested.
	 */
	int hang;
};

static int host_init(struct backend *be)
{
	struct host_priv *p = calloc(1, sizeof(*p));
	unsigned dev;

	if (!p)
		return -ENOMEM;
	be->priv = p;
	p->hang = getenv("GPUQD_HOST_HANG") && atoi(getenv("GPUQD_HOST_HANG")) > 0;
	be->ndevices = be->host_devices ? be->host_devices : 1;
	if (be->ndevices > BACKEND_MAX_DEVICES)
		be->ndevices = BACKEND_MAX_DEVICES;
	be->xfer_max_batch = 4096;
	/* Same split as a GPU would likely pick, so both paths get exercised. */
	for (dev = 0; dev < be->ndevices; dev++)
		be->crossover[dev] = 256u << 10;
	return 0;
}

static void host_fini(struct backend *be)
{
	struct host_priv *p = be->priv;
	struct host_alloc *h;

	while ((h = p->allocs)) {
		p->allocs = h->next;
		free(h);
	}
	free(p);
}

static int host_device_info(struct backend *be, unsigned dev, struct backend_device_info *info)
{
	struct host_priv *p = be->priv;

	if (dev >= be->ndevices)
		return -ENODEV;
	memset(info, 0, sizeof(*info));
	if (be->ndevices > 1)
		snprintf(info->name, sizeof(info->name), "host memory (no GPU) #%u", dev);
	else
		snprintf(info->name, sizeof(info->name), "host memory (no GPU)");
	info->total_mem = be->host_mem;
	info->free_mem = be->host_mem - p->used;
	return 0;
}

static int host_mem_alloc(struct backend *be, unsigned dev, size_t size, uint64_t *addr)
{
	struct host_priv *p = be->priv;
	struct host_alloc *h;

	if (dev >= be->ndevices)
		return -ENODEV;
	if (size == 0)
		return -EINVAL;
	if (size > be->host_mem - p->used)
		return -ENOMEM;
	/* Zeroed, like the cuda backend: no session sees another's old bytes. */
	h = calloc(1, sizeof(*h) + size);
	if (!h)
		return -ENOMEM;
	h->size = size;
	h->magic = HOST_ALLOC_MAGIC;
	h->dev = dev;
	h->next = p->allocs;
	if (h->next)
		h->next->prev = h;
	p->allocs = h;
	p->used += size;
	*addr = (uint64_t)(uintptr_t)h->data;
	return 0;
}

static int host_mem_free(struct backend *be, unsigned dev, uint64_t addr)
{
	struct host_priv *p = be->priv;
	struct host_alloc *h;

	/* addr comes from gpuqd's own buffer table, never from a client. */
	if (dev >= be->ndevices || !addr || addr < offsetof(struct host_alloc, data))
		return -EINVAL;
	h = (struct host_alloc *)(uintptr_t)(addr - offsetof(struct host_alloc, data));
	if (h->magic != HOST_ALLOC_MAGIC || h->dev != dev)
		return -EINVAL;
	h->magic = 0;
	if (h->prev)
		h->prev->next = h->next;
	else
		p->allocs = h->next;
	if (h->next)
		h->next->prev = h->prev;
	p->used -= h->size;
	free(h);
	return 0;
}

static int host_copy_to_dev(struct backend *be, unsigned dev, uint64_t dst, const void *src,
			    size_t len)
{
	if (dev >= be->ndevices)
		return -ENODEV;
	if (len)
		memcpy((void *)(uintptr_t)dst, src, len);
	return 0;
}

static int host_copy_from_dev(struct backend *be, unsigned dev, void *dst, uint64_t src, size_t len)
{
	if (dev >= be->ndevices)
		return -ENODEV;
	if (len)
		memcpy(dst, (const void *)(uintptr_t)src, len);
	return 0;
}

/* Host memory is already visible to the stand-in device: nothing to pin. */
static int host_host_register(struct backend *be, void *p, size_t len)
{
	return 0;
}

static void host_host_unregister(struct backend *be, void *p)
{
}

static int host_host_devptr(struct backend *be, unsigned dev, void *p, uint64_t *devaddr)
{
	if (dev >= be->ndevices)
		return -ENODEV;
	*devaddr = (uint64_t)(uintptr_t)p;
	return 0;
}

static int host_xfer_start(struct backend *be, unsigned dev)
{
	struct host_priv *p = be->priv;

	if (dev >= be->ndevices)
		return -ENODEV;
	memset(p->seq[dev], 0, sizeof(p->seq[dev]));
	return 0;
}

static void host_xfer_stop(struct backend *be, unsigned dev)
{
}

/* Copies run here and now, so every batch is complete when submit returns. */
static int64_t host_xfer_submit(struct backend *be, unsigned dev, unsigned lane,
				const struct backend_xfer *x, unsigned n)
{
	struct host_priv *p = be->priv;
	unsigned i;

	if (dev >= be->ndevices || lane >= LANE_COUNT || n > be->xfer_max_batch)
		return -EINVAL;
	for (i = 0; i < n; i++)
		memmove((void *)(uintptr_t)x[i].dst, (const void *)(uintptr_t)x[i].src, x[i].len);
	return (int64_t)++p->seq[dev][lane];
}

static uint64_t host_xfer_done(struct backend *be, unsigned dev, unsigned lane)
{
	struct host_priv *p = be->priv;

	if (p->hang)
		return 0;
	return dev < be->ndevices && lane < LANE_COUNT ? p->seq[dev][lane] : 0;
}

static int host_ipc_export(struct backend *be, unsigned dev, uint64_t addr, void *handle)
{
	return -ENOTSUP;
}

const struct backend_ops backend_host_ops = {
	.name = "host",
	.init = host_init,
	.fini = host_fini,
	.device_info = host_device_info,
	.mem_alloc = host_mem_alloc,
	.mem_free = host_mem_free,
	.copy_to_dev = host_copy_to_dev,
	.copy_from_dev = host_copy_from_dev,
	.host_register = host_host_register,
	.host_unregister = host_host_unregister,
	.host_devptr = host_host_devptr,
	.xfer_start = host_xfer_start,
	.xfer_stop = host_xfer_stop,
	.xfer_submit = host_xfer_submit,
	.xfer_done = host_xfer_done,
	.ipc_export = host_ipc_export,
};
