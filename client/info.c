/* info.c: libgpuq daemon status and client listing, for operators. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "gpuq/gpuq_chan.h"

GPUQ_API int gpuq_status(gpuq_t *q, struct gpuq_status *out)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;
	struct gpuq_status full, *st = &full;
	const Gpuq__Status *s;
	uint32_t size;
	int r;

	if (!q || !out)
		return -EINVAL;
	size = out->struct_size;
	if (client_size_check(size))
		return client_fail(q, -EINVAL, "struct gpuq_status: bad struct_size %u", size);
	req.body_case = GPUQ__MSG__BODY_STATUS_REQ;
	req.status_req = &sr;
	pthread_mutex_lock(&q->lock);
	r = client_call(q, &req, GPUQ__MSG__BODY_STATUS, &rep);
	pthread_mutex_unlock(&q->lock);
	if (r)
		return r;
	s = rep->status;
	memset(st, 0, sizeof(*st));
	st->struct_size = size;
	snprintf(st->server_version, sizeof(st->server_version), "%s", s->server_version);
	st->proto_version = s->proto_version;
	snprintf(st->backend, sizeof(st->backend), "%s", s->backend);
	snprintf(st->backend_reason, sizeof(st->backend_reason), "%s", s->backend_reason);
	st->pid = s->pid;
	st->uptime_ms = s->uptime_ms;
	st->sessions = s->sessions;
	st->devices = s->devices;
	st->buffers = s->buffers;
	st->buffer_bytes = s->buffer_bytes;
	st->requests = s->requests;
	st->errors = s->errors;
	st->reloads = s->reloads;
	snprintf(st->socket_path, sizeof(st->socket_path), "%s", s->socket_path);
	snprintf(st->config_path, sizeof(st->config_path), "%s", s->config_path);
	st->xfers = s->xfers;
	st->xfer_bytes = s->xfer_bytes;
	st->xfer_errors = s->xfer_errors;
	st->batches = s->batches;
	snprintf(st->sharing, sizeof(st->sharing), "%s", s->sharing);
	snprintf(st->mps_pipe_dir, sizeof(st->mps_pipe_dir), "%s", s->mps_pipe_dir);
	st->foreign_contexts = (unsigned)s->n_foreign_contexts;
	st->channels = s->channels;
	st->mps_uid = s->mps_uid;
	for (size_t i = 0; i < s->n_foreign_contexts && i < 4; i++)
		snprintf(st->foreign[i], sizeof(st->foreign[i]), "%s", s->foreign_contexts[i]);
	frame_free(rep);
	client_fill(out, size, st, sizeof(*st));
	return 0;
}

GPUQ_API int gpuq_clients(gpuq_t *q, struct gpuq_client_info **out, size_t entry_size)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__ClientsReq cr = GPUQ__CLIENTS_REQ__INIT;
	unsigned char *arr;
	size_t i, n;
	int r;

	if (!q || !out)
		return -EINVAL;
	if (client_size_check(entry_size))
		return client_fail(q, -EINVAL, "struct gpuq_client_info: bad entry_size %zu",
				   entry_size);
	req.body_case = GPUQ__MSG__BODY_CLIENTS_REQ;
	req.clients_req = &cr;
	pthread_mutex_lock(&q->lock);
	r = client_call(q, &req, GPUQ__MSG__BODY_CLIENTS, &rep);
	pthread_mutex_unlock(&q->lock);
	if (r)
		return r;
	n = rep->clients->n_clients;
	arr = calloc(n ? n : 1, entry_size);
	if (!arr) {
		frame_free(rep);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		const Gpuq__ClientInfo *c = rep->clients->clients[i];
		struct gpuq_client_info e = { 0 };

		e.session_id = c->session_id;
		e.pid = c->pid;
		e.uid = c->uid;
		e.gid = c->gid;
		snprintf(e.name, sizeof(e.name), "%s", c->name);
		e.connected_ms = c->connected_ms;
		e.buffers = c->buffers;
		e.buffer_bytes = c->buffer_bytes;
		e.requests = c->requests;
		client_fill(arr + i * entry_size, entry_size, &e, sizeof(e));
	}
	frame_free(rep);
	*out = (struct gpuq_client_info *)arr;
	return (int)n;
}

GPUQ_API int gpuq_channels(gpuq_t *q, struct gpuq_channel_info **out, size_t entry_size)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__ChannelsReq cr = GPUQ__CHANNELS_REQ__INIT;
	unsigned char *arr;
	size_t i, n;
	int r;

	if (!q || !out)
		return -EINVAL;
	if (client_size_check(entry_size))
		return client_fail(q, -EINVAL, "struct gpuq_channel_info: bad entry_size %zu",
				   entry_size);
	req.body_case = GPUQ__MSG__BODY_CHANNELS_REQ;
	req.channels_req = &cr;
	pthread_mutex_lock(&q->lock);
	r = client_call(q, &req, GPUQ__MSG__BODY_CHANNELS, &rep);
	pthread_mutex_unlock(&q->lock);
	if (r)
		return r;
	n = rep->channels->n_channels;
	arr = calloc(n ? n : 1, entry_size);
	if (!arr) {
		frame_free(rep);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		const Gpuq__ChannelInfo *c = rep->channels->channels[i];
		struct gpuq_channel_info e = { 0 };

		snprintf(e.name, sizeof(e.name), "%s", c->name);
		e.uid = c->uid;
		e.gid = c->gid;
		e.mode = c->mode & 0777;
		e.slot_size = c->slot_size;
		e.nslots = c->nslots;
		e.direction = c->direction == GPUQ_CHAN_DIR_CPU_TO_GPU ? GPUQ_CHAN_CPU_TO_GPU :
									 GPUQ_CHAN_GPU_TO_CPU;
		e.users = c->users;
		e.head = c->head;
		e.tail = c->tail;
		e.gpu_sender = c->gpu_sender;
		e.gpu_receiver = c->gpu_receiver;
		e.receivers_asleep = c->receivers_asleep;
		e.senders_done = c->senders_done;
		client_fill(arr + i * entry_size, entry_size, &e, sizeof(e));
	}
	frame_free(rep);
	*out = (struct gpuq_channel_info *)arr;
	return (int)n;
}
