/* backend_host.c: the backend interface over host memory, standing in for a GPU. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/*
 * One stand-in device with host_mem bytes of "device memory". Allocations are
 * kept on a list so mem_free returns their size to the pool and rejects any
 * address it never handed out without touching memory it does not own.
 */
struct host_alloc {
	struct host_alloc *next;
	uint64_t size;
	max_align_t data[];
};

struct host_priv {
	uint64_t used;
	struct host_alloc *allocs;
};

static int host_init(struct backend *be)
{
	struct host_priv *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	be->priv = p;
	be->ndevices = 1;
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
	h->next = p->allocs;
	p->allocs = h;
	p->used += size;
	*addr = (uint64_t)(uintptr_t)h->data;
	return 0;
}

static int host_mem_free(struct backend *be, unsigned dev, uint64_t addr)
{
	struct host_priv *p = be->priv;
	struct host_alloc **pp, *h;

	if (dev >= be->ndevices)
		return -EINVAL;
	for (pp = &p->allocs; (h = *pp); pp = &h->next) {
		if ((uint64_t)(uintptr_t)h->data != addr)
			continue;
		*pp = h->next;
		p->used -= h->size;
		free(h);
		return 0;
	}
	return -EINVAL;
}

static int host_copy_to_dev(struct backend *be, unsigned dev, uint64_t dst, const void *src, size_t len)
{
	if (dev >= be->ndevices)
		return -ENODEV;
	memcpy((void *)(uintptr_t)dst, src, len);
	return 0;
}

static int host_copy_from_dev(struct backend *be, unsigned dev, void *dst, uint64_t src, size_t len)
{
	if (dev >= be->ndevices)
		return -ENODEV;
	memcpy(dst, (const void *)(uintptr_t)src, len);
	return 0;
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
};
