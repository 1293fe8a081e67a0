/* conn.c: connection state machine: read frames, dispatch, queue replies, close cleanly. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "account.h"
#include "chan.h"
#include "config.h"
#include "conn.h"
#include "gpuqd.h"
#include "log.h"
#include "session.h"
#include "worker.h"

/* Unknown fields one frame may carry (at any depth) before it is refused unparsed. */
#define CONN_UNKNOWN_MAX 64
/* Messages without a known body in a row before the connection is closed. */
#define CONN_BODYLESS_MAX 16
/* Seconds a closing connection may take to drain its last replies. */
#define CONN_CLOSE_TIMEOUT 2
/* How deep the unknown-field scan follows nested messages. */
#define CONN_SCAN_DEPTH 8
/*
 * Descriptors unsent replies may hold, beyond one reply: each is a
 * duplicate in gpuqd's table (and keeps what it names alive), so a client
 * that never reads must not hold more than this, whatever the bytes.
 */
#define CONN_OUT_FDS_MAX 64

static void conn_out_free(struct conn_out *o);
static int conn_process(struct conn *c);
static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);
static void conn_on_timeout(evutil_socket_t fd, short what, void *arg);

struct conn *conn_create(struct conn_host *host, int fd)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct timeval tv = { .tv_sec = host->gq->cfg->handshake_timeout };
	struct conn *c;

	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->host = host;
	c->fd = fd;
	c->state = CONN_HANDSHAKE;
	STAILQ_INIT(&c->out);
	STAILQ_INIT(&c->pend_out);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
	} else {
		c->pid = -1;
		c->uid = (uid_t)-1;
		c->gid = (gid_t)-1;
	}
	c->rev = event_new(host->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->wev = event_new(host->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	c->timer = evtimer_new(host->base, conn_on_timeout, c);
	if (!c->rev || !c->wev || !c->timer)
		goto fail_events;
	if (event_add(c->rev, NULL) || evtimer_add(c->timer, &tv))
		goto fail_events;
	c->handshaking = 1;
	log_debug("connection from pid %d uid %u gid %u", (int)c->pid, (unsigned)c->uid,
		  (unsigned)c->gid);
	return c;

fail_events:
	if (c->timer)
		event_free(c->timer);
	if (c->wev)
		event_free(c->wev);
	if (c->rev)
		event_free(c->rev);
	free(c);
fail:
	log_err("dropping new connection: out of memory");
	close(fd);
	return NULL;
}

void conn_end_handshake(struct conn *c)
{
	if (c->handshaking) {
		c->handshaking = 0;
		c->host->handshake_done(c->host);
	}
}

/* A session ending on the worker, and what its uid gets back once it has. */
struct conn_teardown {
	struct worker_job job;
	struct conn_host *host;
	struct session *sess;
	struct account *acct;
	uint64_t used[ACCT_NRES];
};

static void teardown_run(struct worker_job *j)
{
	struct conn_teardown *t = (struct conn_teardown *)j;

	session_destroy(t->sess);
}

static void teardown_done(struct worker_job *j)
{
	struct conn_teardown *t = (struct conn_teardown *)j;
	unsigned r;

	if (t->acct) {
		for (r = 0; r < ACCT_NRES; r++)
			account_uncharge(t->host->gq->accounts, t->acct, (enum account_res)r,
					 t->used[r]);
		account_put(t->host->gq->accounts, t->acct);
	}
	t->host->session_done(t->host);
	t->host->status_changed(t->host);
	free(t);
}

/*
 * Ends c's session and gives back what c charged to its uid. The session's
 * memory is freed on the worker (here, when no job can be queued); its
 * charges, the session slot and the account reference go when that is done.
 */
static void conn_end_session(struct conn *c)
{
	struct conn_teardown local, *t;
	struct session *s = c->sess;
	unsigned i;

	t = s && c->host->worker ? calloc(1, sizeof(*t)) : NULL;
	if (!t) {
		memset(&local, 0, sizeof(local));
		t = &local;
	}
	t->host = c->host;
	t->sess = s;
	t->acct = c->acct;
	if (c->charged_session)
		t->used[ACCT_SESSIONS] = 1;
	t->used[ACCT_ARENA] = c->charged_arena;
	if (s) {
		t->used[ACCT_MEM] = s->bufs.bytes;
		for (i = 0; i < s->nchans; i++)
			if (s->chans[i]) {
				t->used[ACCT_CHANNELS]++;
				t->used[ACCT_CHANNEL_BYTES] += s->chans[i]->ring->size;
			}
	}
	c->sess = NULL;
	c->acct = NULL;
	c->charged_session = 0;
	c->charged_arena = 0;
	if (!s) {
		/* No session: only what a refused Hello charged. */
		if (t->acct) {
			for (i = 0; i < ACCT_NRES; i++)
				account_uncharge(t->host->gq->accounts, t->acct,
						 (enum account_res)i, t->used[i]);
			account_put(t->host->gq->accounts, t->acct);
		}
		return;
	}
	log_info("session %llu ended (pid %d uid %u, %llu requests)", (unsigned long long)s->id,
		 (int)c->pid, (unsigned)c->uid, (unsigned long long)s->requests);
	if (t == &local) {
		teardown_run(&t->job);
		/* teardown_done frees t: a copy on the heap is not there, so do its work here. */
		for (i = 0; t->acct && i < ACCT_NRES; i++)
			account_uncharge(t->host->gq->accounts, t->acct, (enum account_res)i,
					 t->used[i]);
		account_put(t->host->gq->accounts, t->acct);
		t->host->session_done(t->host);
		return;
	}
	t->job.run = teardown_run;
	t->job.done = teardown_done;
	worker_submit(c->host->worker, &t->job);
}

int conn_chan_charge(struct conn *c, uint64_t seq, uint64_t bytes)
{
	struct account_table *t = c->host->gq->accounts;
	struct config *cfg = c->host->gq->cfg;
	uint64_t used;

	if (!c->acct)
		return 0;
	if (account_charge(t, c->acct, ACCT_CHANNELS, 1, cfg->uid_max_channels, &used)) {
		conn_send_error(
			c, seq, -EDQUOT,
			"uid %u holds %llu channels open, the limit (uid_max_channels) is %u",
			(unsigned)c->uid, (unsigned long long)used, cfg->uid_max_channels);
		return -EDQUOT;
	}
	if (account_charge(t, c->acct, ACCT_CHANNEL_BYTES, bytes, cfg->uid_max_channel_bytes,
			   &used)) {
		account_uncharge(t, c->acct, ACCT_CHANNELS, 1);
		conn_send_error(c, seq, -EDQUOT,
				"uid %u holds %llu bytes of channels, %llu more asked, the limit "
				"(uid_max_channel_bytes) is %llu",
				(unsigned)c->uid, (unsigned long long)used,
				(unsigned long long)bytes,
				(unsigned long long)cfg->uid_max_channel_bytes);
		return -EDQUOT;
	}
	return 0;
}

void conn_chan_uncharge(struct conn *c, uint64_t bytes)
{
	if (!c->acct)
		return;
	account_uncharge(c->host->gq->accounts, c->acct, ACCT_CHANNELS, 1);
	account_uncharge(c->host->gq->accounts, c->acct, ACCT_CHANNEL_BYTES, bytes);
}

void conn_destroy(struct conn *c)
{
	struct conn_out *o;

	if (c->pending) {
		/* Its job still uses c: stop watching it and finish when the job is done. */
		c->zombie = 1;
		event_del(c->rev);
		event_del(c->wev);
		event_del(c->timer);
		return;
	}
	conn_end_handshake(c);
	conn_end_session(c);
	c->host->gone(c->host, c);
	event_free(c->rev);
	event_free(c->wev);
	event_free(c->timer);
	while ((o = STAILQ_FIRST(&c->out))) {
		STAILQ_REMOVE_HEAD(&c->out, link);
		conn_out_free(o);
	}
	free(c->in);
	close(c->fd);
	free(c);
}

/* Frees a queued frame and closes the descriptors it still owns. */
static void conn_out_drop_fds(struct conn_out *o)
{
	unsigned i;

	for (i = 0; i < o->nfds; i++)
		close(o->fds[i]);
	o->nfds = 0;
}

static void conn_out_free(struct conn_out *o)
{
	conn_out_drop_fds(o);
	free(o->buf);
	free(o);
}

static int conn_flush(struct conn *c)
{
	struct conn_out *o;
	ssize_t n;

	while ((o = STAILQ_FIRST(&c->out))) {
		n = frame_send(c->fd, o->buf + o->off, o->len - o->off, o->off ? NULL : o->fds,
			       o->off ? 0 : o->nfds);
		if (n == -EAGAIN)
			break;
		if (n < 0)
			return (int)n;
		/* The descriptors went with the first byte: the duplicates are done. */
		c->outfds -= o->nfds;
		conn_out_drop_fds(o);
		o->off += (size_t)n;
		c->outbytes -= (size_t)n;
		if (o->off < o->len)
			break;
		STAILQ_REMOVE_HEAD(&c->out, link);
		conn_out_free(o);
	}
	/* Ask for EV_WRITE only while output is queued. */
	if (STAILQ_EMPTY(&c->out))
		event_del(c->wev);
	else
		event_add(c->wev, NULL);
	return 0;
}

int conn_send(struct conn *c, Gpuq__Msg *m, uint64_t seq)
{
	return conn_send_fds(c, m, seq, NULL, 0);
}

int conn_send_fds(struct conn *c, Gpuq__Msg *m, uint64_t seq, const int *fds, unsigned nfds)
{
	struct conn_out *o;
	uint8_t *buf;
	unsigned i;
	size_t len;
	int r;

	m->seq = seq;
	r = frame_pack(m, c->host->gq->cfg->max_frame, &buf, &len);
	if (r == -EMSGSIZE)
		return conn_send_error(c, seq, -EMSGSIZE, "reply exceeds the %u-byte frame cap",
				       c->host->gq->cfg->max_frame);
	if (r)
		return r;
	/*
	 * One reply always fits; beyond that, unread output is bounded by
	 * max_output, and the descriptors it holds by CONN_OUT_FDS_MAX.
	 */
	if (!c->pending && c->outbytes &&
	    (c->outbytes + len > c->host->gq->cfg->max_output ||
	     c->outfds + nfds > CONN_OUT_FDS_MAX)) {
		free(buf);
		if (!c->drop)
			log_warn("pid %d leaves %zu bytes and %u descriptors of replies unread "
				 "(max_output %llu, at most %u descriptors); disconnecting",
				 (int)c->pid, c->outbytes, c->outfds,
				 (unsigned long long)c->host->gq->cfg->max_output,
				 CONN_OUT_FDS_MAX);
		c->state = CONN_CLOSING;
		c->drop = 1;
		return -ENOBUFS;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		free(buf);
		return -ENOMEM;
	}
	o->buf = buf;
	o->len = len;
	if (nfds > FRAME_MAX_FDS) {
		conn_out_free(o);
		return conn_send_error(c, seq, -EMSGSIZE, "reply carries too many descriptors");
	}
	/*
	 * The frame owns duplicates of what it carries: whatever the caller does
	 * with its descriptors before the client reads (a pipelined close), the
	 * numbers sent are the ones named here, never reused ones.
	 */
	for (i = 0; i < nfds; i++) {
		o->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (o->fds[i] < 0) {
			r = -errno;
			o->nfds = i;
			conn_out_free(o);
			log_warn("pid %d: duplicating a descriptor for a reply: %s", (int)c->pid,
				 strerror(-r));
			return conn_send_error(c, seq, r, "gpuqd is out of descriptors: %s",
					       strerror(-r));
		}
		o->nfds = i + 1;
	}
	if (c->pending) {
		/* From the worker's job: out belongs to the control thread meanwhile. */
		STAILQ_INSERT_TAIL(&c->pend_out, o, link);
		c->pend_bytes += len;
		c->pend_fds += o->nfds;
		return 0;
	}
	STAILQ_INSERT_TAIL(&c->out, o, link);
	c->outbytes += len;
	c->outfds += o->nfds;
	return 0;
}

int conn_send_error(struct conn *c, uint64_t seq, int code, const char *fmt, ...)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Error e = GPUQ__ERROR__INIT;
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	e.code = code;
	e.message = text;
	m.body_case = GPUQ__MSG__BODY_ERROR;
	m.error = &e;
	c->host->gq->errors++;
	return conn_send(c, &m, seq);
}

int conn_check_broken(struct conn *c)
{
	if (c->pending || c->state != CONN_READY || !c->sess || !atomic_load(&c->sess->port.broken))
		return 0;
	log_warn("session %llu (pid %d): its ring is corrupt; closing the connection",
		 (unsigned long long)c->sess->id, (int)c->pid);
	conn_send_error(
		c, 0, -EPROTO,
		"gpuqd found this session's ring corrupt (indices out of range) and stopped "
		"serving it");
	conn_close_after_flush(c);
	return 1;
}

void conn_close_after_flush(struct conn *c)
{
	struct timeval tv = { .tv_sec = CONN_CLOSE_TIMEOUT };

	if (c->state == CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	/* A client that does not read its last replies is not waited for long. */
	evtimer_add(c->timer, &tv);
}

void conn_settle(struct conn *c)
{
	if (c->zombie)
		return;
	if (c->drop || conn_flush(c) < 0) {
		conn_destroy(c);
		return;
	}
	if (c->state == CONN_CLOSING && STAILQ_EMPTY(&c->out))
		conn_destroy(c);
	else if (c->state == CONN_CLOSING)
		event_del(c->rev);
}

/* Reads a varint at *p (below end). Returns 0 or -1 when it runs past end or 10 bytes. */
static int scan_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 70) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
		shift += 7;
	}
	return -1;
}

/*
 * Counts the fields of a message's wire bytes that its descriptor does not
 * know, following nested messages. Returns 0, or -1 when the bytes are
 * malformed or more than CONN_UNKNOWN_MAX unknown fields are found. No
 * allocation: unpacking unknown fields costs far more, so they are counted
 * here first.
 */
static int scan_unknown(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
			unsigned depth, unsigned *unknown)
{
	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t key, v;

		if (scan_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
			return -1;
		f = protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
		if (!f && ++*unknown > CONN_UNKNOWN_MAX)
			return -1;
		switch (key & 7) {
		case 0:
			if (scan_varint(&p, end, &v))
				return -1;
			break;
		case 1:
			if (end - p < 8)
				return -1;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -1;
			p += 4;
			break;
		case 2:
			if (scan_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return -1;
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < CONN_SCAN_DEPTH &&
			    scan_unknown(f->descriptor, p, p + v, depth + 1, unknown))
				return -1;
			p += v;
			break;
		default: /* groups are not part of gpuq's protocol */ return -1;
		}
	}
	return 0;
}

/*
 * Past the handshake the timer watches a frame that has started to
 * arrive: each read that brings bytes restarts it, and so does the end of
 * a job that the frame's first bytes waited behind.
 */
static void conn_frame_timer(struct conn *c)
{
	struct timeval tv = { .tv_sec = c->host->gq->cfg->frame_timeout };

	if (c->state != CONN_READY || c->pending)
		return;
	if (c->inlen)
		evtimer_add(c->timer, &tv);
	else
		evtimer_del(c->timer);
}

static void conn_job_run(struct worker_job *j)
{
	struct conn *c = (struct conn *)((char *)j - offsetof(struct conn, job));

	c->job_run(c, c->job_msg);
}

static void conn_job_done(struct worker_job *j)
{
	struct conn *c = (struct conn *)((char *)j - offsetof(struct conn, job));
	Gpuq__Msg *m = c->job_msg;

	c->pending = 0;
	STAILQ_CONCAT(&c->out, &c->pend_out);
	c->outbytes += c->pend_bytes;
	c->pend_bytes = 0;
	c->outfds += c->pend_fds;
	c->pend_fds = 0;
	if (c->job_after && !c->zombie)
		c->job_after(c, m);
	c->job_msg = NULL;
	frame_free(m);
	if (c->zombie) {
		conn_destroy(c);
		return;
	}
	/* A corrupt ring reported while the job ran (on_broken left c to us). */
	conn_check_broken(c);
	if (c->state != CONN_CLOSING)
		event_add(c->rev, NULL);
	/* Frames that arrived behind the job's, in order. */
	conn_process(c);
	conn_frame_timer(c);
	conn_settle(c);
}

void conn_defer(struct conn *c, Gpuq__Msg *m, void (*run)(struct conn *c, const Gpuq__Msg *m),
		void (*after)(struct conn *c, const Gpuq__Msg *m))
{
	c->job_msg = m;
	c->job_run = run;
	c->job_after = after;
	c->job.run = conn_job_run;
	c->job.done = conn_job_done;
	if (!c->host->worker) {
		run(c, m);
		if (after)
			after(c, m);
		c->job_msg = NULL;
		frame_free(m);
		return;
	}
	c->pending = 1;
	event_del(c->rev);
	worker_submit(c->host->worker, &c->job);
}

static int conn_grow(struct conn *c, size_t need)
{
	size_t cap = c->incap ? c->incap : 4096;
	uint8_t *p;

	while (cap < need)
		cap *= 2;
	if (cap == c->incap)
		return 0;
	p = realloc(c->in, cap);
	if (!p)
		return -ENOMEM;
	c->in = p;
	c->incap = cap;
	return 0;
}

/* Consumes every complete frame in the input buffer. Returns 0 or -1 when c must close. */
static int conn_process(struct conn *c)
{
	uint32_t max = c->host->gq->cfg->max_frame;
	size_t off = 0;

	while (c->state != CONN_CLOSING && !c->pending) {
		ssize_t n = frame_check(c->in + off, c->inlen - off, max);
		Gpuq__Msg *m;

		if (n == 0)
			break;
		if (n < 0) {
			const uint8_t *h = c->in + off;

			log_warn("pid %d sent a frame of %u bytes, over the %u-byte cap; closing",
				 (int)c->pid,
				 (unsigned)h[0] << 24 | (unsigned)h[1] << 16 | (unsigned)h[2] << 8 |
					 h[3],
				 max);
			conn_send_error(c, 0, -EMSGSIZE, "frame exceeds the %u-byte cap", max);
			conn_close_after_flush(c);
			break;
		}
		{
			unsigned unknown = 0;

			if (scan_unknown(&gpuq__msg__descriptor, c->in + off + FRAME_HDR,
					 c->in + off + n, 0, &unknown)) {
				log_warn("pid %d sent a malformed frame or one of unknown fields; "
					 "closing",
					 (int)c->pid);
				conn_send_error(c, 0, -EBADMSG,
						"malformed frame or more than %u unknown fields",
						CONN_UNKNOWN_MAX);
				conn_close_after_flush(c);
				off += (size_t)n;
				break;
			}
		}
		m = frame_unpack(c->in + off, (size_t)n);
		off += (size_t)n;
		if (!m) {
			log_warn("pid %d sent a malformed frame; closing", (int)c->pid);
			conn_send_error(c, 0, -EBADMSG, "malformed frame: not a gpuq message");
			conn_close_after_flush(c);
			break;
		}
		c->host->gq->requests++;
		if (m->body_case == GPUQ__MSG__BODY__NOT_SET && ++c->bodyless > CONN_BODYLESS_MAX) {
			log_warn("pid %d sent %u messages in a row with no known body; closing",
				 (int)c->pid, c->bodyless);
			conn_send_error(c, m->seq, -EPROTO,
					"%u messages in a row with no known body", c->bodyless);
			conn_close_after_flush(c);
			frame_free(m);
			break;
		}
		if (m->body_case != GPUQ__MSG__BODY__NOT_SET)
			c->bodyless = 0;
		if (!c->host->handle(c, m))
			frame_free(m);
	}
	if (off) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
	return 0;
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	/*
	 * Frames are processed after every read, so the buffer never holds more
	 * than one capped frame plus one read: its size stays bounded.
	 */
	if (conn_grow(c, c->inlen + 65536) < 0) {
		log_err("out of memory reading from pid %d; closing", (int)c->pid);
		conn_destroy(c);
		return;
	}
	/* Descriptors are not part of any request yet: frame_recv closes any sent. */
	n = frame_recv(fd, c->in + c->inlen, c->incap - c->inlen, NULL, NULL, 0);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		if (n < 0)
			log_debug("read from pid %d: %s", (int)c->pid, strerror((int)-n));
		else if (c->inlen)
			log_info("pid %d disconnected mid-frame (%zu bytes pending)", (int)c->pid,
				 c->inlen);
		conn_destroy(c);
		return;
	}
	c->inlen += (size_t)n;
	conn_process(c);
	conn_frame_timer(c);
	conn_settle(c);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	conn_settle(arg);
}

static void conn_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->pending)
		return; /* slow work of gpuqd's own is not the client's delay */
	if (c->state == CONN_CLOSING) {
		log_info("pid %d did not read its last replies within %d s; closing", (int)c->pid,
			 CONN_CLOSE_TIMEOUT);
		conn_destroy(c);
		return;
	}
	if (c->state == CONN_READY) {
		if (!c->inlen)
			return;
		log_warn("pid %d stopped for %u s in the middle of a %zu-byte message; closing",
			 (int)c->pid, c->host->gq->cfg->frame_timeout, c->inlen);
		conn_send_error(c, 0, -ETIMEDOUT, "no progress on a message for %u s",
				c->host->gq->cfg->frame_timeout);
		conn_close_after_flush(c);
		conn_settle(c);
		return;
	}
	if (c->state != CONN_HANDSHAKE)
		return;
	log_info("pid %d sent no hello within %u s; closing", (int)c->pid,
		 c->host->gq->cfg->handshake_timeout);
	conn_send_error(c, 0, -ETIMEDOUT, "no hello within %u s",
			c->host->gq->cfg->handshake_timeout);
	conn_close_after_flush(c);
	conn_settle(c);
}
