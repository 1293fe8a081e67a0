/* dispatch.c: request handlers: handshake, devices, buffers, status, clients. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "account.h"
#include "backend.h"
#include "config.h"
#include "conn.h"
#include "dispatch.h"
#include "chan.h"
#include "engine.h"
#include "gpuqd.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "sharing.h"

static void reply_ok(struct conn *c, uint64_t seq, uint64_t value)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Ok ok = GPUQ__OK__INIT;

	ok.value = value;
	m.body_case = GPUQ__MSG__BODY_OK;
	m.ok = &ok;
	conn_send(c, &m, seq);
}

/* The arena a Hello gets: what it asks for, or the default, within arena_max. */
static uint64_t hello_arena(const struct config *cfg, const Gpuq__Hello *h)
{
	uint64_t arena = h->arena_size ? h->arena_size : cfg->arena_default;

	return arena > cfg->arena_max ? cfg->arena_max : arena;
}

/* The SQ entries per device a Hello gets asked for (shm_init rounds and clamps them). */
static uint32_t hello_depth(const Gpuq__Hello *h)
{
	return h->queue_depth ? h->queue_depth : 4096;
}

/*
 * Charges a new session and its shared memory to the uid's account: the
 * arena and the rings (up to 6 MiB per device at the deepest queue), all
 * of it pinned and registered. Returns 0, or
 * -1 after queuing the Error and closing c.
 */
static int charge_hello(struct conn *c, uint64_t seq, const Gpuq__Hello *h)
{
	struct gpuqd *gq = c->host->gq;
	struct config *cfg = gq->cfg;
	uint64_t arena = hello_arena(cfg, h), used;
	uint64_t pinned = shm_size_for(gq->be->ndevices, hello_depth(h), arena);

	c->acct = account_get(gq->accounts, c->uid);
	if (!c->acct) {
		conn_send_error(c, seq, -ENOMEM, "out of memory creating the session");
		goto refuse;
	}
	if (account_charge(gq->accounts, c->acct, ACCT_SESSIONS, 1, cfg->uid_max_sessions, &used)) {
		log_warn("refusing pid %d: uid %u has %llu sessions (uid_max_sessions %u)",
			 (int)c->pid, (unsigned)c->uid, (unsigned long long)used,
			 cfg->uid_max_sessions);
		conn_send_error(c, seq, -EDQUOT,
				"uid %u has %llu sessions, the limit (uid_max_sessions) is %u",
				(unsigned)c->uid, (unsigned long long)used, cfg->uid_max_sessions);
		goto refuse;
	}
	c->charged_session = 1;
	if (account_charge(gq->accounts, c->acct, ACCT_ARENA, pinned, cfg->uid_max_arena, &used)) {
		log_warn("refusing pid %d: uid %u has %llu arena bytes pinned (uid_max_arena %llu)",
			 (int)c->pid, (unsigned)c->uid, (unsigned long long)used,
			 (unsigned long long)cfg->uid_max_arena);
		conn_send_error(
			c, seq, -EDQUOT,
			"uid %u has %llu bytes of session memory (arenas, rings) pinned, %llu more asked, the "
			"limit (uid_max_arena) is %llu",
			(unsigned)c->uid, (unsigned long long)used, (unsigned long long)pinned,
			(unsigned long long)cfg->uid_max_arena);
		goto refuse;
	}
	c->charged_arena = pinned;
	c->arena_bytes = arena;
	return 0;
refuse:
	conn_close_after_flush(c);
	return -1;
}

static void hello_open(struct conn *c, const Gpuq__Msg *m);
static void hello_finish(struct conn *c, const Gpuq__Msg *m);

/* Returns 1 when m went to the worker with the connection (see dispatch_msg). */
static int on_hello(struct conn *c, Gpuq__Msg *m)
{
	const Gpuq__Hello *h = m->hello;
	uint64_t seq = m->seq;
	struct gpuqd *gq = c->host->gq;

	if (h->proto_version != GPUQ_PROTO_VERSION) {
		log_warn("pid %d speaks protocol %u, this gpuqd speaks %u; closing", (int)c->pid,
			 h->proto_version, GPUQ_PROTO_VERSION);
		conn_send_error(c, seq, -EPROTONOSUPPORT,
				"protocol version %u is not supported: gpuqd %s speaks version %u",
				h->proto_version, PACKAGE_VERSION, GPUQ_PROTO_VERSION);
		conn_close_after_flush(c);
		return 0;
	}
	conn_end_handshake(c);
	if (server_sessions_full(server_of(c))) {
		log_warn("refusing pid %d uid %u: %u sessions is the limit (max_clients)",
			 (int)c->pid, (unsigned)c->uid, gq->cfg->max_clients);
		conn_send_error(c, seq, -EUSERS, "gpuqd serves at most %u sessions (max_clients)",
				gq->cfg->max_clients);
		conn_close_after_flush(c);
		return 0;
	}
	if (charge_hello(c, seq, h))
		return 0;
	c->sess = session_create(++gq->next_session_id, gq->be, gq->cfg->max_session_mem, c->pid,
				 c->uid, c->gid, h->client_name);
	if (!c->sess) {
		conn_send_error(c, seq, -ENOMEM, "out of memory creating the session");
		conn_close_after_flush(c);
		return 0;
	}
	server_session_add(server_of(c));
	c->sess->port.uid_inflight = &c->acct->inflight;
	c->sess->port.uid_inflight_max = gq->cfg->uid_max_inflight;
	if (!c->sess->port.uid_inflight_max)
		c->sess->port.uid_inflight = NULL;
	c->sess->chreg = gq->chans;
	c->sess->port.broken_efd = server_of(c)->broken_efd;
	/* Populating and registering the arena takes seconds at 1 GiB: the worker does it. */
	conn_defer(c, m, hello_open, hello_finish);
	return 1;
}

/* On the worker: the session's shared memory, socket and engine attachment. */
static void hello_open(struct conn *c, const Gpuq__Msg *m)
{
	struct gpuqd *gq = c->host->gq;

	c->job_result = session_open_data(c->sess, gq->be, gq->engines, gq->nengines, gq->doorbell,
					  hello_depth(m->hello), c->arena_bytes);
}

/* Back on the control thread: the Welcome, or why there is none. */
static void hello_finish(struct conn *c, const Gpuq__Msg *msg)
{
	struct gpuqd *gq = c->host->gq;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Welcome w = GPUQ__WELCOME__INIT;
	uint64_t seq = msg->seq;
	int r = c->job_result;

	if (r) {
		log_err("session %llu: setting up %llu bytes of shared memory: %s",
			(unsigned long long)c->sess->id, (unsigned long long)c->charged_arena,
			strerror(-r));
		conn_send_error(c, seq, r, "cannot set up the session's shared memory: %s",
				strerror(-r));
		conn_close_after_flush(c);
		return;
	}
	c->state = CONN_READY;
	evtimer_del(c->timer);
	log_info("session %llu started: pid %d uid %u gid %u name '%s' arena %llu bytes",
		 (unsigned long long)c->sess->id, (int)c->pid, (unsigned)c->uid, (unsigned)c->gid,
		 c->sess->name, (unsigned long long)c->sess->shm.geom.arena_size);
	w.proto_version = GPUQ_PROTO_VERSION;
	w.server_version = (char *)PACKAGE_VERSION;
	w.session_id = c->sess->id;
	w.backend = (char *)gq->be->ops->name;
	w.max_frame = gq->cfg->max_frame;
	w.shm_size = c->sess->shm.size;
	w.sharing = (char *)sharing_mode_name(gq->sharing->mode);
	/*
	 * Only a client of the MPS server's uid may join it: any other uid's
	 * first CUDA call would block there while gpuqd runs. Others get no
	 * pipe directory, and their contexts stay their own.
	 */
	w.mps_pipe_dir = "";
	if (gq->sharing->mode == SHARING_MPS && c->uid == gq->sharing->server_uid) {
		w.mps_pipe_dir = gq->sharing->pipe_dir;
		w.mps_client_sm_percent = gq->cfg->mps_client_sm_percent;
	}
	w.ndevices = gq->nengines;
	m.body_case = GPUQ__MSG__BODY_WELCOME;
	m.welcome = &w;
	{
		/* Protocol 2: the memfd and the client's end of the session socket, whatever ndevices. */
		int fds[2] = { c->sess->shm.memfd, c->sess->client_sock };

		conn_send_fds(c, &m, seq, fds, 2);
	}
	server_notify_status(server_of(c));
}

static void on_device_list(struct conn *c, uint64_t seq)
{
	struct backend *be = c->host->gq->be;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__DeviceList dl = GPUQ__DEVICE_LIST__INIT;
	Gpuq__DeviceInfo *infos, **ptrs;
	struct backend_device_info *bi;
	unsigned i, n = be->ndevices;
	int r;

	infos = calloc(n ? n : 1, sizeof(*infos));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	bi = calloc(n ? n : 1, sizeof(*bi));
	if (!infos || !ptrs || !bi) {
		conn_send_error(c, seq, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		Gpuq__DeviceInfo *d = &infos[i];

		r = be->ops->device_info(be, i, &bi[i]);
		if (r) {
			conn_send_error(c, seq, r, "device %u: %s", i, strerror(-r));
			goto out;
		}
		gpuq__device_info__init(d);
		d->index = i;
		d->name = bi[i].name;
		d->total_mem = bi[i].total_mem;
		d->free_mem = bi[i].free_mem;
		d->pci_bus_id = bi[i].pci_bus_id;
		d->pcie_gen = bi[i].pcie_gen;
		d->pcie_width = bi[i].pcie_width;
		d->cc_major = bi[i].cc_major;
		d->cc_minor = bi[i].cc_minor;
		d->sm_count = bi[i].sm_count;
		d->backend = (char *)be->ops->name;
		ptrs[i] = d;
	}
	dl.n_devices = n;
	dl.devices = ptrs;
	m.body_case = GPUQ__MSG__BODY_DEVICE_LIST;
	m.device_list = &dl;
	conn_send(c, &m, seq);
out:
	free(bi);
	free(ptrs);
	free(infos);
}

static void on_buf_alloc(struct conn *c, uint64_t seq, const Gpuq__BufAlloc *a)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__BufAllocReply rep = GPUQ__BUF_ALLOC_REPLY__INIT;
	uint64_t used, before;
	int id;

	if (account_charge(c->host->gq->accounts, c->acct, ACCT_MEM, a->size,
			   c->host->gq->cfg->uid_max_mem, &used)) {
		/* -ENOMEM, as for the session quota: what gpuq_buf_alloc documents. */
		conn_send_error(
			c, seq, -ENOMEM,
			"uid %u has %llu bytes of device memory, %llu more asked, the limit "
			"(uid_max_mem) is %llu",
			(unsigned)c->uid, (unsigned long long)used, (unsigned long long)a->size,
			(unsigned long long)c->host->gq->cfg->uid_max_mem);
		return;
	}
	pthread_mutex_lock(&c->sess->lock);
	before = c->sess->bufs.bytes;
	id = buf_alloc(&c->sess->bufs, a->device, a->size);
	/* The account holds exactly what the table counts. */
	account_uncharge(c->host->gq->accounts, c->acct, ACCT_MEM, a->size);
	account_charge(c->host->gq->accounts, c->acct, ACCT_MEM, c->sess->bufs.bytes - before, 0,
		       NULL);
	pthread_mutex_unlock(&c->sess->lock);
	if (id < 0) {
		switch (id) {
		case -EINVAL:
			conn_send_error(c, seq, id,
					a->size ? "no device %u (gpuqd has %u)" :
						  "size must be at least 1 byte (device %u of %u)",
					a->device, c->host->gq->be->ndevices);
			break;
		case -EDQUOT:
			conn_send_error(
				c, seq, -ENOMEM,
				"session quota: %llu bytes in use, %llu more asked, limit %llu",
				(unsigned long long)c->sess->bufs.bytes,
				(unsigned long long)a->size,
				(unsigned long long)c->sess->bufs.quota);
			break;
		default:
			conn_send_error(c, seq, id, "allocating %llu bytes on device %u: %s",
					(unsigned long long)a->size, a->device, strerror(-id));
		}
		return;
	}
	log_debug("session %llu: buffer %d, %llu bytes on device %u",
		  (unsigned long long)c->sess->id, id, (unsigned long long)a->size, a->device);
	rep.buf_id = (uint32_t)id;
	rep.size = a->size;
	m.body_case = GPUQ__MSG__BODY_BUF_ALLOC_REPLY;
	m.buf_alloc_reply = &rep;
	conn_send(c, &m, seq);
}

static void on_buf_free(struct conn *c, uint64_t seq, const Gpuq__BufFree *f)
{
	uint64_t before;
	int r;

	pthread_mutex_lock(&c->sess->lock);
	before = c->sess->bufs.bytes;
	r = buf_free(&c->sess->bufs, f->buf_id);
	account_uncharge(c->host->gq->accounts, c->acct, ACCT_MEM, before - c->sess->bufs.bytes);
	pthread_mutex_unlock(&c->sess->lock);
	if (r == -EBUSY)
		conn_send_error(c, seq, r,
				"buffer %u has transfers in flight; free it once they complete",
				f->buf_id);
	else if (r)
		conn_send_error(c, seq, r, "no buffer %u in this session", f->buf_id);
	else
		reply_ok(c, seq, 0);
}

static void buf_error(struct conn *c, uint64_t seq, int err, uint32_t id, uint64_t off,
		      uint64_t len)
{
	if (err == -ENOENT)
		conn_send_error(c, seq, err, "no buffer %u in this session", id);
	else
		conn_send_error(c, seq, err, "range %llu+%llu is outside buffer %u",
				(unsigned long long)off, (unsigned long long)len, id);
}

static void on_buf_write(struct conn *c, uint64_t seq, const Gpuq__BufWrite *w)
{
	struct backend *be = c->host->gq->be;
	struct buf *b;
	int r;

	b = buf_get(&c->sess->bufs, w->buf_id, w->offset, w->data.len, &r);
	if (!b) {
		buf_error(c, seq, r, w->buf_id, w->offset, w->data.len);
		return;
	}
	/* An empty write has no bytes to copy (and protobuf gives no pointer for it). */
	r = w->data.len ? be->ops->copy_to_dev(be, b->device, b->addr + w->offset, w->data.data,
					       w->data.len) :
			  0;
	if (r)
		conn_send_error(c, seq, r, "copy to device %u failed", b->device);
	else
		reply_ok(c, seq, w->data.len);
}

static void on_buf_read(struct conn *c, uint64_t seq, const Gpuq__BufRead *rd)
{
	struct backend *be = c->host->gq->be;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__BufData data = GPUQ__BUF_DATA__INIT;
	/* Room for the envelope around the bytes. */
	uint64_t maxlen = c->host->gq->cfg->max_frame - 64;
	struct buf *b;
	uint8_t *tmp;
	int r;

	b = buf_get(&c->sess->bufs, rd->buf_id, rd->offset, rd->length, &r);
	if (!b) {
		buf_error(c, seq, r, rd->buf_id, rd->offset, rd->length);
		return;
	}
	if (rd->length > maxlen) {
		conn_send_error(c, seq, -EMSGSIZE, "read of %llu bytes exceeds %llu per request",
				(unsigned long long)rd->length, (unsigned long long)maxlen);
		return;
	}
	tmp = malloc(rd->length ? rd->length : 1);
	if (!tmp) {
		conn_send_error(c, seq, -ENOMEM, "out of memory");
		return;
	}
	r = be->ops->copy_from_dev(be, b->device, tmp, b->addr + rd->offset, rd->length);
	if (r) {
		conn_send_error(c, seq, r, "copy from device %u failed", b->device);
	} else {
		data.data.data = tmp;
		data.data.len = rd->length;
		m.body_case = GPUQ__MSG__BODY_BUF_DATA;
		m.buf_data = &data;
		conn_send(c, &m, seq);
	}
	free(tmp);
}

/*
 * Hands the client a CUDA IPC handle for one of its own buffers, so that its
 * kernels can use the memory in place. Only ids of the asking session are
 * found, so no session can reach another's memory this way. The handle
 * stays valid while the buffer exists; freeing the buffer (or ending the
 * session) makes every mapping of it dangle, which is the client's concern.
 */
static void on_buf_export(struct conn *c, uint64_t seq, const Gpuq__BufExport *e)
{
	struct backend *be = c->host->gq->be;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__BufExportReply rep = GPUQ__BUF_EXPORT_REPLY__INIT;
	uint8_t handle[BACKEND_IPC_HANDLE_SIZE];
	struct backend_device_info info;
	struct buf *b;
	int r;

	b = buf_get(&c->sess->bufs, e->buf_id, 0, 0, &r);
	if (!b) {
		buf_error(c, seq, r, e->buf_id, 0, 0);
		return;
	}
	r = be->ops->ipc_export(be, b->device, b->addr, handle);
	if (r == -ENOTSUP) {
		conn_send_error(
			c, seq, r,
			"buffer %u cannot be exported: gpuqd runs the %s backend, which has no "
			"device memory to share; CUDA IPC export needs the cuda backend",
			e->buf_id, be->ops->name);
		return;
	}
	if (r) {
		log_warn("session %llu: exporting buffer %u on device %u: %s",
			 (unsigned long long)c->sess->id, e->buf_id, b->device, strerror(-r));
		conn_send_error(c, seq, r, "exporting buffer %u on device %u failed: %s", e->buf_id,
				b->device, strerror(-r));
		return;
	}
	r = be->ops->device_info(be, b->device, &info);
	if (r) {
		conn_send_error(c, seq, r, "device %u: %s", b->device, strerror(-r));
		return;
	}
	log_debug("session %llu: exported buffer %u (%llu bytes on device %u, %s)",
		  (unsigned long long)c->sess->id, e->buf_id, (unsigned long long)b->size,
		  b->device, info.pci_bus_id);
	rep.buf_id = b->id;
	rep.device = b->device;
	rep.size = b->size;
	rep.handle.data = handle;
	rep.handle.len = sizeof(handle);
	rep.pci_bus_id = info.pci_bus_id;
	m.body_case = GPUQ__MSG__BODY_BUF_EXPORT_REPLY;
	m.buf_export_reply = &rep;
	conn_send(c, &m, seq);
}

static void reply_chan(struct conn *c, uint64_t seq, struct chan *ch)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__ChanReply rep = GPUQ__CHAN_REPLY__INIT;
	int fds[4], id;

	if (conn_chan_charge(c, seq, ch->ring->size)) {
		chan_unref(c->host->gq->chans, ch);
		return;
	}
	id = session_chan_add(c->sess, ch);
	if (id < 0) {
		conn_chan_uncharge(c, ch->ring->size);
		chan_unref(c->host->gq->chans, ch);
		conn_send_error(c, seq, id, "too many open channels in this session");
		return;
	}
	rep.chan_id = (uint32_t)id;
	rep.slot_size = ch->ring->slot_size;
	rep.nslots = ch->ring->nslots;
	rep.direction = ch->ring->direction;
	rep.size = ch->ring->size;
	rep.sender_row = ch->row >= 0 ? (uint32_t)ch->row : 0;
	rep.can_send = !!(ch->ends & CHAN_END_SEND);
	rep.can_recv = !!(ch->ends & CHAN_END_RECV);
	m.body_case = GPUQ__MSG__BODY_CHAN_REPLY;
	m.chan_reply = &rep;
	chan_reply_fds(ch, fds);
	conn_send_fds(c, &m, seq, fds, 4);
}

/*
 * The peer's credentials for a channel check: uid and gid from
 * SO_PEERCRED, supplementary groups from SO_PEERGROUPS (Linux >= 4.13),
 * which the kernel recorded at connect(): race-free, unlike reading
 * /proc/<pid>/status of a pid that may be gone or reused. *buf (free())
 * holds the groups when they did not fit in small.
 */
static void peer_cred(struct conn *c, struct chan_cred *who, gid_t *small, unsigned nsmall,
		      gid_t **buf)
{
	socklen_t len = (socklen_t)(nsmall * sizeof(gid_t));

	who->uid = c->uid;
	who->gid = c->gid;
	who->groups = small;
	who->ngroups = 0;
	*buf = NULL;
#ifdef SO_PEERGROUPS
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, small, &len) == 0) {
		who->ngroups = (unsigned)(len / sizeof(gid_t));
		return;
	}
	if (errno == ERANGE && len > 0 && (*buf = malloc(len)) &&
	    getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, *buf, &len) == 0) {
		who->groups = *buf;
		who->ngroups = (unsigned)(len / sizeof(gid_t));
		return;
	}
#endif
	log_info("pid %d: no supplementary groups (SO_PEERGROUPS: %s); primary group only",
		 (int)c->pid, strerror(errno));
}

/* A channel name from the wire, for messages: printable, truncated, NUL shown as \0. */
static void name_for_log(const ProtobufCBinaryData *n, char *out, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < n->len && o + 3 < cap; i++) {
		unsigned char ch = n->data[i];

		if (ch == 0) {
			out[o++] = '\\';
			out[o++] = '0';
		} else
			out[o++] = ch >= 32 && ch < 127 ? (char)ch : '?';
	}
	out[o] = 0;
}

static const char name_rule[] =
	"name must be 1-63 of [A-Za-z0-9._-], not starting with '.', no NUL";

static void on_chan_create(struct conn *c, uint64_t seq, const Gpuq__ChanCreate *cc)
{
	gid_t small[64], *big;
	struct chan_cred who;
	char shown[80];
	struct chan *ch;
	int err;

	name_for_log(&cc->name, shown, sizeof(shown));
	if (!chan_name_valid((const char *)cc->name.data, cc->name.len)) {
		conn_send_error(c, seq, -EINVAL, "invalid channel name '%s' (%zu bytes): %s", shown,
				cc->name.len, name_rule);
		return;
	}
	peer_cred(c, &who, small, 64, &big);
	ch = chan_create(c->host->gq->chans, (const char *)cc->name.data, cc->name.len,
			 cc->slot_size, cc->nslots, cc->direction, cc->mode, &who, &err);
	free(big);
	if (!ch) {
		if (err == -EEXIST)
			conn_send_error(c, seq, err, "a channel named '%s' exists", shown);
		else if (err == -EINVAL)
			conn_send_error(
				c, seq, err,
				"invalid channel '%s': slot size 1..1 MiB, slots a power of two 2..1M, "
				"one direction, mode <= 0777",
				shown);
		else if (err == -E2BIG)
			conn_send_error(c, seq, err, "channel of %u x %u bytes exceeds the limit",
					cc->nslots, cc->slot_size);
		else
			conn_send_error(c, seq, err, "creating channel '%s': %s", shown,
					strerror(-err));
		return;
	}
	reply_chan(c, seq, ch);
}

static void on_chan_open(struct conn *c, uint64_t seq, const Gpuq__ChanOpen *co)
{
	gid_t small[64], *big;
	struct chan_cred who;
	char shown[80];
	struct chan *ch;
	int err;

	name_for_log(&co->name, shown, sizeof(shown));
	if (!chan_name_valid((const char *)co->name.data, co->name.len)) {
		conn_send_error(c, seq, -EINVAL, "invalid channel name '%s' (%zu bytes): %s", shown,
				co->name.len, name_rule);
		return;
	}
	if (!co->send && !co->recv) {
		conn_send_error(c, seq, -EINVAL,
				"opening channel '%s': ask for send, receive or both", shown);
		return;
	}
	peer_cred(c, &who, small, 64, &big);
	ch = chan_open(c->host->gq->chans, (const char *)co->name.data, co->name.len, co->send,
		       co->recv, &who, &err);
	free(big);
	if (!ch) {
		if (err == -EACCES) {
			log_info("pid %d uid %u denied %s on channel '%s'", (int)c->pid,
				 (unsigned)c->uid,
				 co->send && co->recv ? "send+receive" :
				 co->send             ? "send" :
							"receive",
				 shown);
			conn_send_error(c, seq, err, "permission denied on channel '%s'", shown);
		} else if (err == -EUSERS)
			conn_send_error(c, seq, err, "channel '%s' has %u sending openers already",
					shown, GPUQ_CHAN_SENDERS_MAX);
		else if (err == -ENOENT)
			conn_send_error(c, seq, err, "no channel named '%s'", shown);
		else
			conn_send_error(c, seq, err, "opening channel '%s': %s", shown,
					strerror(-err));
		return;
	}
	reply_chan(c, seq, ch);
}

static void on_chan_close(struct conn *c, uint64_t seq, const Gpuq__ChanClose *cl)
{
	struct chan *ch = session_chan_take(c->sess, cl->chan_id);

	if (!ch) {
		conn_send_error(c, seq, -ENOENT, "no channel %u open in this session", cl->chan_id);
		return;
	}
	conn_chan_uncharge(c, ch->ring->size);
	chan_unref(c->host->gq->chans, ch);
	reply_ok(c, seq, 0);
}

static void on_chan_own(struct conn *c, uint64_t seq, const Gpuq__ChanOwn *co)
{
	uint8_t *own;
	struct chan *ch = session_chan_get(c->sess, co->chan_id, &own);
	int r;

	if (!ch) {
		conn_send_error(c, seq, -ENOENT, "no channel %u open in this session", co->chan_id);
		return;
	}
	if (co->end != CHAN_END_SEND && co->end != CHAN_END_RECV) {
		conn_send_error(c, seq, -EINVAL, "channel end %u: 1 (send) or 2 (receive)",
				co->end);
		return;
	}
	if (!co->own) {
		if (!(*own & co->end)) {
			conn_send_error(c, seq, -EINVAL,
					"this session does not own that end of channel %u",
					co->chan_id);
			return;
		}
		chan_disown(ch, co->end, 0);
		*own &= (uint8_t)~co->end;
		reply_ok(c, seq, 0);
		return;
	}
	r = *own & co->end ? -EBUSY : chan_own(ch, co->end, c->pid > 0 ? (uint32_t)c->pid : 1u);
	if (r == -EACCES) {
		log_info("pid %d uid %u denied the %s end of channel '%s' (not opened for it)",
			 (int)c->pid, (unsigned)c->uid,
			 co->end == CHAN_END_SEND ? "send" : "receive", ch->ring->name);
		conn_send_error(c, seq, r,
				"channel %u was not opened for %s: its GPU cannot take that end",
				co->chan_id, co->end == CHAN_END_SEND ? "sending" : "receiving");
		return;
	}
	if (r) {
		conn_send_error(c, seq, r, "that end of channel %u is already kept by a GPU",
				co->chan_id);
		return;
	}
	*own |= (uint8_t)co->end;
	reply_ok(c, seq, 0);
}

static void on_channels(struct conn *c, uint64_t seq)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Channels ch = GPUQ__CHANNELS__INIT;
	Gpuq__ChannelInfo *infos = NULL, **ptrs = NULL;
	struct chan_info *list = NULL;
	gid_t small[64], *big;
	struct chan_cred who;
	int n, i;

	peer_cred(c, &who, small, 64, &big);
	n = chan_list(c->host->gq->chans, &who, &list);
	free(big);

	if (n < 0) {
		conn_send_error(c, seq, n, "listing channels: %s", strerror(-n));
		return;
	}
	infos = calloc((size_t)n + 1, sizeof(*infos));
	ptrs = calloc((size_t)n + 1, sizeof(*ptrs));
	if (!infos || !ptrs) {
		conn_send_error(c, seq, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		Gpuq__ChannelInfo *ci = &infos[i];

		gpuq__channel_info__init(ci);
		ci->name = list[i].name;
		ci->uid = (uint32_t)list[i].uid;
		ci->gid = (uint32_t)list[i].gid;
		ci->mode = list[i].mode;
		ci->slot_size = list[i].slot_size;
		ci->nslots = list[i].nslots;
		ci->direction = list[i].direction;
		ci->users = list[i].users;
		ci->head = list[i].head;
		ci->tail = list[i].tail;
		ci->gpu_sender = list[i].tail_owner;
		ci->gpu_receiver = list[i].rx_owner;
		ci->receivers_asleep = list[i].rx_waiting != 0;
		ci->senders_done = list[i].senders_done;
		ptrs[i] = ci;
	}
	ch.n_channels = (size_t)n;
	ch.channels = ptrs;
	m.body_case = GPUQ__MSG__BODY_CHANNELS;
	m.channels = &ch;
	conn_send(c, &m, seq);
out:
	free(ptrs);
	free(infos);
	free(list);
}

static void on_status(struct conn *c, uint64_t seq)
{
	struct gpuqd *gq = c->host->gq;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Status st = GPUQ__STATUS__INIT;
	struct engine_stats es = { 0 };
	uint64_t nbufs, nbytes;

	char foreign[SHARING_MAX_FOREIGN][64], *fptr[SHARING_MAX_FOREIGN];
	unsigned nf, i;

	server_buffer_totals(server_of(c), &nbufs, &nbytes);
	nf = sharing_foreign(gq->sharing, foreign, SHARING_MAX_FOREIGN);
	for (i = 0; i < nf; i++)
		fptr[i] = foreign[i];
	st.sharing = (char *)sharing_mode_name(gq->sharing->mode);
	st.mps_pipe_dir = gq->sharing->pipe_dir;
	st.mps_uid = gq->sharing->mode == SHARING_MPS ? gq->sharing->server_uid : 0;
	st.n_foreign_contexts = nf;
	st.foreign_contexts = fptr;
	st.server_version = (char *)PACKAGE_VERSION;
	st.proto_version = GPUQ_PROTO_VERSION;
	st.backend = (char *)gq->be->ops->name;
	st.backend_reason = gq->be->reason;
	st.channels = gq->chans->count;
	for (i = 0; i < gq->nengines; i++)
		engine_stats_add(gq->engines[i], &es);
	st.xfers = es.xfers;
	st.xfer_bytes = es.xfer_bytes;
	st.xfer_errors = es.xfer_errors;
	st.batches = es.batches;
	st.pid = (uint32_t)getpid();
	st.uptime_ms = session_now_ms() - gq->started_ms;
	st.sessions = server_of(c)->nsessions;
	st.devices = gq->be->ndevices;
	st.buffers = nbufs;
	st.buffer_bytes = nbytes;
	st.requests = gq->requests;
	st.errors = gq->errors;
	st.reloads = server_of(c)->reloads;
	st.socket_path = server_of(c)->socket_path;
	st.config_path = (char *)(gq->config_path ? gq->config_path : "");
	m.body_case = GPUQ__MSG__BODY_STATUS;
	m.status = &st;
	conn_send(c, &m, seq);
}

/* On the worker: the requests that call the backend. */
static void run_backend_request(struct conn *c, const Gpuq__Msg *m)
{
	switch (m->body_case) {
	case GPUQ__MSG__BODY_DEVICE_LIST_REQ: on_device_list(c, m->seq); break;
	case GPUQ__MSG__BODY_BUF_ALLOC: on_buf_alloc(c, m->seq, m->buf_alloc); break;
	case GPUQ__MSG__BODY_BUF_FREE: on_buf_free(c, m->seq, m->buf_free); break;
	case GPUQ__MSG__BODY_BUF_WRITE: on_buf_write(c, m->seq, m->buf_write); break;
	case GPUQ__MSG__BODY_BUF_READ: on_buf_read(c, m->seq, m->buf_read); break;
	case GPUQ__MSG__BODY_BUF_EXPORT: on_buf_export(c, m->seq, m->buf_export); break;
	default: break;
	}
}

/*
 * On the worker: ChanClose. Giving back an end the session owned repairs
 * the ring (chan_disown), which can rewrite hundreds of MiB; the control
 * thread must not stand still for it. Only this connection's channel table
 * and the locked registry and accounts are touched.
 */
static void run_chan_close(struct conn *c, const Gpuq__Msg *m)
{
	on_chan_close(c, m->seq, m->chan_close);
}

/* Root and the daemon's own user see every session; others only their own uid's. */
static int may_see(const struct conn *asker, const struct conn *other)
{
	return asker->uid == 0 || asker->uid == getuid() || asker->uid == other->uid;
}

/* What on_clients gathers, one connection at a time. */
struct clients_walk {
	struct conn *asker;
	Gpuq__ClientInfo *infos, **ptrs;
	size_t n, max;
	uint64_t now;
};

static void client_info(struct conn *o, void *arg)
{
	struct clients_walk *w = arg;
	Gpuq__ClientInfo *ci = &w->infos[w->n];

	if (!o->sess || !may_see(w->asker, o) || w->n > w->max)
		return;
	gpuq__client_info__init(ci);
	ci->session_id = o->sess->id;
	ci->pid = (uint32_t)o->pid;
	ci->uid = (uint32_t)o->uid;
	ci->gid = (uint32_t)o->gid;
	ci->name = o->sess->name;
	ci->connected_ms = w->now - o->sess->started_ms;
	ci->buffers = o->sess->bufs.count;
	ci->buffer_bytes = o->sess->bufs.bytes;
	ci->requests = o->sess->requests;
	w->ptrs[w->n++] = ci;
}

static void on_clients(struct conn *c, uint64_t seq)
{
	struct server *srv = server_of(c);
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Clients cl = GPUQ__CLIENTS__INIT;
	struct clients_walk w = { .asker = c, .now = session_now_ms(), .max = srv->nsessions };

	w.infos = calloc(srv->nsessions + 1, sizeof(*w.infos));
	w.ptrs = calloc(srv->nsessions + 1, sizeof(*w.ptrs));
	if (!w.infos || !w.ptrs) {
		conn_send_error(c, seq, -ENOMEM, "out of memory");
		goto out;
	}
	server_foreach_conn(srv, client_info, &w);
	cl.n_clients = w.n;
	cl.clients = w.ptrs;
	m.body_case = GPUQ__MSG__BODY_CLIENTS;
	m.clients = &cl;
	conn_send(c, &m, seq);
out:
	free(w.ptrs);
	free(w.infos);
}

int dispatch_msg(struct conn *c, Gpuq__Msg *m)
{
	uint64_t seq = m->seq;

	if (c->state == CONN_HANDSHAKE) {
		if (m->body_case != GPUQ__MSG__BODY_HELLO) {
			log_warn("pid %d sent '%s' before hello; closing", (int)c->pid,
				 frame_body_name(m->body_case));
			conn_send_error(c, seq, -EPROTO, "expected hello, got '%s'",
					frame_body_name(m->body_case));
			conn_close_after_flush(c);
			return 0;
		}
		return on_hello(c, m);
	}
	c->sess->requests++;
	switch (m->body_case) {
	/* What calls the backend (allocation, copies, device queries) runs on the worker. */
	case GPUQ__MSG__BODY_DEVICE_LIST_REQ:
	case GPUQ__MSG__BODY_BUF_ALLOC:
	case GPUQ__MSG__BODY_BUF_FREE:
	case GPUQ__MSG__BODY_BUF_WRITE:
	case GPUQ__MSG__BODY_BUF_READ:
	case GPUQ__MSG__BODY_BUF_EXPORT: conn_defer(c, m, run_backend_request, NULL); return 1;
	case GPUQ__MSG__BODY_CHAN_CREATE: on_chan_create(c, seq, m->chan_create); break;
	case GPUQ__MSG__BODY_CHAN_OPEN: on_chan_open(c, seq, m->chan_open); break;
	case GPUQ__MSG__BODY_CHAN_CLOSE:
		/* Closing an owned send end repairs the ring: up to a lap of slots rewritten. */
		conn_defer(c, m, run_chan_close, NULL);
		return 1;
	case GPUQ__MSG__BODY_CHAN_OWN: on_chan_own(c, seq, m->chan_own); break;
	case GPUQ__MSG__BODY_STATUS_REQ: on_status(c, seq); break;
	case GPUQ__MSG__BODY_CLIENTS_REQ: on_clients(c, seq); break;
	case GPUQ__MSG__BODY_CHANNELS_REQ: on_channels(c, seq); break;
	case GPUQ__MSG__BODY__NOT_SET:
		log_info("pid %d sent an unknown message", (int)c->pid);
		conn_send_error(c, seq, -EPROTO, "unknown message");
		break;
	default:
		log_info("pid %d sent '%s', which is not a request", (int)c->pid,
			 frame_body_name(m->body_case));
		conn_send_error(c, seq, -EPROTO, "'%s' is not a request",
				frame_body_name(m->body_case));
		break;
	}
	return 0;
}
