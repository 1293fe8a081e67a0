/* device.c: libgpuq device listing. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client.h"

GPUQ_API int gpuq_devices(gpuq_t *q, struct gpuq_device_info *devs, size_t entry_size, unsigned max)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__DeviceListReq dl = GPUQ__DEVICE_LIST_REQ__INIT;
	size_t i;
	int r;

	if (!q || (max && !devs))
		return -EINVAL;
	if (max && client_size_check(entry_size))
		return client_fail(q, -EINVAL, "struct gpuq_device_info: bad entry_size %zu",
				   entry_size);
	req.body_case = GPUQ__MSG__BODY_DEVICE_LIST_REQ;
	req.device_list_req = &dl;
	pthread_mutex_lock(&q->lock);
	r = client_call(q, &req, GPUQ__MSG__BODY_DEVICE_LIST, &rep);
	pthread_mutex_unlock(&q->lock);
	if (r)
		return r;
	for (i = 0; i < rep->device_list->n_devices && i < max; i++) {
		const Gpuq__DeviceInfo *d = rep->device_list->devices[i];
		struct gpuq_device_info e = { 0 }, *o = &e;

		o->index = d->index;
		snprintf(o->name, sizeof(o->name), "%s", d->name);
		snprintf(o->pci_bus_id, sizeof(o->pci_bus_id), "%s", d->pci_bus_id);
		snprintf(o->backend, sizeof(o->backend), "%s", d->backend);
		o->total_mem = d->total_mem;
		o->free_mem = d->free_mem;
		o->pcie_gen = d->pcie_gen;
		o->pcie_width = d->pcie_width;
		o->cc_major = d->cc_major;
		o->cc_minor = d->cc_minor;
		o->sm_count = d->sm_count;
		client_fill((unsigned char *)devs + i * entry_size, entry_size, o, sizeof(*o));
	}
	r = (int)rep->device_list->n_devices;
	frame_free(rep);
	return r;
}
