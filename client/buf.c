/* buf.c: libgpuq device buffers: alloc, free, the simple copy path, and CUDA IPC export. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "xfer.h"

/* Bytes of one BufWrite/BufRead chunk: the frame cap less room for the envelope. */
static size_t chunk_size(const struct gpuq *q)
{
	return q->max_frame - 256;
}

GPUQ_API int gpuq_buf_alloc(gpuq_t *q, unsigned device, size_t size, uint32_t *id)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__BufAlloc a = GPUQ__BUF_ALLOC__INIT;
	int r;

	if (!q || !id)
		return -EINVAL;
	a.device = device;
	a.size = size;
	req.body_case = GPUQ__MSG__BODY_BUF_ALLOC;
	req.buf_alloc = &a;
	pthread_mutex_lock(&q->lock);
	r = client_call(q, &req, GPUQ__MSG__BODY_BUF_ALLOC_REPLY, &rep);
	pthread_mutex_unlock(&q->lock);
	if (r)
		return r;
	*id = rep->buf_alloc_reply->buf_id;
	frame_free(rep);
	xfer_buf_note(q, *id, (int)device);
	return 0;
}

GPUQ_API int gpuq_buf_free(gpuq_t *q, uint32_t id)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__BufFree f = GPUQ__BUF_FREE__INIT;
	int r;

	if (!q)
		return -EINVAL;
	f.buf_id = id;
	req.body_case = GPUQ__MSG__BODY_BUF_FREE;
	req.buf_free = &f;
	for (unsigned backoff_us = 10;; backoff_us = backoff_us < 1000 ? backoff_us * 2 : 1000) {
		struct timespec ts = { .tv_nsec = (long)backoff_us * 1000 };

		pthread_mutex_lock(&q->lock);
		r = client_call(q, &req, GPUQ__MSG__BODY_OK, &rep);
		pthread_mutex_unlock(&q->lock);
		/*
		 * -EBUSY: gpuqd still moves data of ours to or from the buffer.
		 * Those transfers finish on their own; take in their completions
		 * meanwhile, and ask again until the buffer is gone.
		 */
		if (r != -EBUSY)
			break;
		xfer_reap(q);
		nanosleep(&ts, NULL);
	}
	if (!r) {
		frame_free(rep);
		xfer_buf_note(q, id, -1);
	}
	return r;
}

GPUQ_API ssize_t gpuq_buf_write(gpuq_t *q, uint32_t id, uint64_t offset, const void *src,
				size_t len)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__BufWrite w = GPUQ__BUF_WRITE__INIT;
	size_t done = 0;
	int r = 0;

	if (!q || (len && !src))
		return -EINVAL;
	req.body_case = GPUQ__MSG__BODY_BUF_WRITE;
	req.buf_write = &w;
	pthread_mutex_lock(&q->lock);
	do {
		size_t n = len - done < chunk_size(q) ? len - done : chunk_size(q);

		w.buf_id = id;
		w.offset = offset + done;
		w.data.data = (uint8_t *)src + done;
		w.data.len = n;
		r = client_call(q, &req, GPUQ__MSG__BODY_OK, &rep);
		if (r)
			break;
		frame_free(rep);
		done += n;
	} while (done < len);
	pthread_mutex_unlock(&q->lock);
	return r ? r : (ssize_t)len;
}

GPUQ_API ssize_t gpuq_buf_read(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__BufRead rd = GPUQ__BUF_READ__INIT;
	size_t done = 0;
	int r = 0;

	if (!q || (len && !dst))
		return -EINVAL;
	req.body_case = GPUQ__MSG__BODY_BUF_READ;
	req.buf_read = &rd;
	pthread_mutex_lock(&q->lock);
	do {
		size_t n = len - done < chunk_size(q) ? len - done : chunk_size(q);

		rd.buf_id = id;
		rd.offset = offset + done;
		rd.length = n;
		r = client_call(q, &req, GPUQ__MSG__BODY_BUF_DATA, &rep);
		if (r)
			break;
		if (rep->buf_data->data.len != n) {
			r = client_fail(q, -EPROTO, "gpuqd returned %zu bytes for a read of %zu",
					rep->buf_data->data.len, n);
			frame_free(rep);
			break;
		}
		if (n)
			memcpy((uint8_t *)dst + done, rep->buf_data->data.data, n);
		frame_free(rep);
		done += n;
	} while (done < len);
	pthread_mutex_unlock(&q->lock);
	return r ? r : (ssize_t)len;
}

GPUQ_API int gpuq_buf_export(gpuq_t *q, uint32_t id, struct gpuq_buf_export *out)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__BufExport e = GPUQ__BUF_EXPORT__INIT;
	const Gpuq__BufExportReply *x;
	struct gpuq_buf_export ex;
	uint32_t size;
	int r;

	if (!q || !out)
		return -EINVAL;
	size = out->struct_size;
	if (client_size_check(size))
		return client_fail(q, -EINVAL, "struct gpuq_buf_export: bad struct_size %u", size);
	e.buf_id = id;
	req.body_case = GPUQ__MSG__BODY_BUF_EXPORT;
	req.buf_export = &e;
	pthread_mutex_lock(&q->lock);
	r = client_call(q, &req, GPUQ__MSG__BODY_BUF_EXPORT_REPLY, &rep);
	if (r)
		goto out;
	x = rep->buf_export_reply;
	/* A reply for another buffer, or a handle we cannot pass on whole, is not one. */
	if (x->buf_id != id || x->handle.len != sizeof(ex.handle) ||
	    strlen(x->pci_bus_id ? x->pci_bus_id : "") >= sizeof(ex.pci_bus_id)) {
		r = client_fail(
			q, -EPROTO,
			"gpuqd's export of buffer %u is malformed (buffer %u, %zu-byte handle)", id,
			x->buf_id, x->handle.len);
		frame_free(rep);
		goto out;
	}
	memset(&ex, 0, sizeof(ex));
	ex.struct_size = size;
	ex.id = x->buf_id;
	ex.device = x->device;
	ex.size = x->size;
	memcpy(ex.handle, x->handle.data, sizeof(ex.handle));
	snprintf(ex.pci_bus_id, sizeof(ex.pci_bus_id), "%s", x->pci_bus_id ? x->pci_bus_id : "");
	frame_free(rep);
	client_fill(out, size, &ex, sizeof(ex));
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}
