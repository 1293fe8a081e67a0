/* xfer.c: libgpuq's data path: arena memory, requests, send/recv, completions, waiting (over ring.c). */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "ring.h"
#include "xfer.h"

/* How often a call that never sleeps looks whether gpuqd is still there. */
#define LIVENESS_NS 1000000ull
/* Chunk of a blocking transfer staged through the arena. */
#define STAGE_CHUNK (4u << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The throttle of the liveness look on every request: the coarse clock is
 * a load from the vDSO page (a few ns) where the precise one reads the TSC
 * (a tenth of a request's cost at the ring's rate). Its tick (1-4 ms)
 * only makes the look a little rarer.
 */
static uint64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct gpuq_req *req_at(struct gpuq *q, uint32_t idx);
static void fd_update(struct gpuq *q);

int xfer_open(struct gpuq *q, uint64_t shm_size, unsigned ndevices)
{
	int r = ring_init(q, shm_size, ndevices);

	if (r)
		return r;
	r = arena_init(&q->alloc, q->arena_size);
	if (r)
		return client_fail(q, r, "out of memory");
	if (!q->nreqblk)
		q->free_req = REQ_NONE;
	if (q->fd_mode) {
		pthread_mutex_lock(&q->dlock);
		fd_update(q);
		pthread_mutex_unlock(&q->dlock);
	}
	return 0;
}

void xfer_close(struct gpuq *q)
{
	unsigned i;

	for (i = 0; i < q->nreqblk; i++)
		free(q->reqblk[i]);
	free(q->reqblk);
	free(q->pollq);
	free(q->buf_dev);
	arena_fini(&q->alloc);
	ring_fini(q);
	ring_fd_close(q);
}

void xfer_reset(struct gpuq *q)
{
	uint32_t i;

	pthread_mutex_lock(&q->dlock);
	/* Every handle of the old session is refused from now on, none is followed. */
	q->free_req = REQ_NONE;
	for (i = q->nreqblk * REQ_BLOCK; i-- > 0;) {
		struct gpuq_req *r = req_at(q, i);

		r->state = REQ_FREE;
		r->bounce = -1;
		r->copy_out = NULL;
		r->next_free = q->free_req;
		q->free_req = r->index;
	}
	q->ndone_user = 0;
	q->pq_head = q->pq_tail = 0;
	if (q->buf_dev)
		memset(q->buf_dev, 0, q->nbuf_dev);
	arena_fini(&q->alloc);
	memset(&q->alloc, 0, sizeof(q->alloc));
	ring_fini(q);
	q->dead = 0;
	atomic_store_explicit(&q->next_check_ns, 0, memory_order_relaxed);
	pthread_mutex_unlock(&q->dlock);
}

void xfer_buf_note(struct gpuq *q, uint32_t id, int dev)
{
	pthread_mutex_lock(&q->dlock);
	if (id >= q->nbuf_dev && dev >= 0) {
		uint32_t n = q->nbuf_dev ? q->nbuf_dev : 64;
		uint8_t *p;

		while (n <= id)
			n *= 2;
		p = realloc(q->buf_dev, n);
		if (p) {
			memset(p + q->nbuf_dev, 0, n - q->nbuf_dev);
			q->buf_dev = p;
			q->nbuf_dev = n;
		}
	}
	if (id < q->nbuf_dev)
		q->buf_dev[id] = dev >= 0 ? (uint8_t)(dev + 1) : 0;
	pthread_mutex_unlock(&q->dlock);
}

/* The device of buffer id, or -ENOENT. Caller holds dlock. */
static int buf_device(struct gpuq *q, uint32_t id)
{
	if (id >= q->nbuf_dev || !q->buf_dev[id])
		return -ENOENT;
	return q->buf_dev[id] - 1;
}

/* ---- arena ---- */

static int in_arena(struct gpuq *q, const void *p, size_t len)
{
	const uint8_t *b = p;

	return b >= q->arena && len <= q->arena_size &&
	       (size_t)(b - q->arena) <= q->arena_size - len;
}

GPUQ_API void *gpuq_mem_alloc(gpuq_t *q, size_t size)
{
	int64_t off;

	if (!q || !q->shm)
		return NULL;
	pthread_mutex_lock(&q->dlock);
	off = arena_get(&q->alloc, size);
	pthread_mutex_unlock(&q->dlock);
	return off < 0 ? NULL : q->arena + off;
}

GPUQ_API void gpuq_mem_free(gpuq_t *q, void *p)
{
	if (!q || !p || !in_arena(q, p, 1))
		return;
	pthread_mutex_lock(&q->dlock);
	arena_put(&q->alloc, (uint64_t)((uint8_t *)p - q->arena));
	pthread_mutex_unlock(&q->dlock);
}

GPUQ_API void *gpuq_arena(gpuq_t *q, size_t *size)
{
	if (size)
		*size = q && q->shm ? q->arena_size : 0;
	return q && q->shm ? q->arena : NULL;
}

/* ---- requests ---- */

static struct gpuq_req *req_at(struct gpuq *q, uint32_t idx)
{
	return &q->reqblk[idx / REQ_BLOCK][idx % REQ_BLOCK];
}

static struct gpuq_req *req_get(struct gpuq *q)
{
	struct gpuq_req *r;

	if (q->free_req == REQ_NONE) {
		struct gpuq_req **blk = realloc(q->reqblk, (q->nreqblk + 1) * sizeof(*blk));
		struct gpuq_req *b;
		uint32_t i;

		if (!blk)
			return NULL;
		q->reqblk = blk;
		b = calloc(REQ_BLOCK, sizeof(*b));
		if (!b)
			return NULL;
		blk[q->nreqblk] = b;
		for (i = REQ_BLOCK; i-- > 0;) {
			b[i].index = q->nreqblk * REQ_BLOCK + i;
			b[i].next_free = q->free_req;
			q->free_req = b[i].index;
		}
		q->nreqblk++;
	}
	r = req_at(q, q->free_req);
	q->free_req = r->next_free;
	r->gen++;
	r->state = REQ_PENDING;
	r->bounce = -1;
	r->copy_out = NULL;
	r->result = 0;
	return r;
}

static void req_put(struct gpuq *q, struct gpuq_req *r)
{
	r->state = REQ_FREE;
	r->next_free = q->free_req;
	q->free_req = r->index;
}

static int pollq_push(struct gpuq *q, uint64_t tag, int64_t res)
{
	if (q->pq_tail - q->pq_head == q->pq_cap) {
		uint32_t ncap = q->pq_cap ? q->pq_cap * 2 : 1024, i;
		struct gpuq_completion *n = malloc(ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (i = 0; i < q->pq_tail - q->pq_head; i++)
			n[i] = q->pollq[(q->pq_head + i) % q->pq_cap];
		free(q->pollq);
		q->pollq = n;
		q->pq_tail -= q->pq_head;
		q->pq_head = 0;
		q->pq_cap = ncap;
	}
	q->pollq[q->pq_tail++ % q->pq_cap] = (struct gpuq_completion){ .tag = tag, .result = res };
	return 0;
}

/* Consumes every posted completion. Returns how many. Caller holds dlock. */
static unsigned reap(struct gpuq *q)
{
	unsigned dev, n = 0;

	if (q->dead)
		return 0; /* every request was completed when the session ended */
	for (dev = 0; dev < q->ndevices; dev++) {
		struct shm_cqe *cq = ring_cq(q, dev);
		uint32_t tail = ring_cq_tail(q, dev);
		uint32_t head = q->cq_head[dev], mask = q->hdr->cq_entries - 1;

		if (tail == head)
			continue;
		for (; head != tail; head++) {
			struct shm_cqe c = cq[head & mask];
			uint32_t idx = (uint32_t)c.user_data, gen = (uint32_t)(c.user_data >> 32);
			struct gpuq_req *r;

			q->outstanding[dev]--;
			n++;
			if (idx >= q->nreqblk * REQ_BLOCK)
				continue; /* not ours: nothing to complete */
			r = req_at(q, idx);
			if (r->state != REQ_PENDING || r->gen != gen)
				continue;
			if (r->copy_out && c.res > 0)
				memcpy(r->copy_out, q->arena + r->bounce, r->len);
			if (r->bounce >= 0)
				arena_put(&q->alloc, (uint64_t)r->bounce);
			r->bounce = -1;
			r->result = c.res;
			r->state = REQ_DONE;
			if (r->has_handle == REQ_HANDLE_USER)
				q->ndone_user++;
			if (r->has_handle == REQ_HANDLE_NONE) {
				/* Completions nobody waits for by handle go to gpuq_poll. */
				if (pollq_push(q, r->tag, r->result) == 0)
					req_put(q, r);
			}
		}
		ring_cq_release(q, dev, head);
	}
	return n;
}

unsigned xfer_reap(struct gpuq *q)
{
	unsigned n = 0;

	if (!q->shm)
		return 0;
	pthread_mutex_lock(&q->dlock);
	n = reap(q);
	pthread_mutex_unlock(&q->dlock);
	return n;
}

/*
 * gpuqd has ended the session: records why (srv_state, which gpuqd set
 * before its end of the socket closed) and completes every pending
 * request with that error; nothing of gpuqd's will complete them now.
 * Caller holds dlock.
 */
static void set_dead(struct gpuq *q)
{
	uint32_t st, i, dev;

	if (q->dead)
		return;
	reap(q); /* what gpuqd finished before it went still counts */
	st = atomic_load_explicit(&q->hdr->srv_state.v, memory_order_acquire);
	q->dead = st == SHM_STATE_SHUTDOWN ? -ESHUTDOWN :
		  st == SHM_STATE_BROKEN   ? -EPROTO :
					     -ECONNRESET;
	for (i = 0; i < q->nreqblk * REQ_BLOCK; i++) {
		struct gpuq_req *r = req_at(q, i);

		if (r->state != REQ_PENDING)
			continue;
		if (r->bounce >= 0)
			arena_put(&q->alloc, (uint64_t)r->bounce);
		r->bounce = -1;
		r->copy_out = NULL;
		r->result = q->dead;
		r->lost = 1;
		r->state = REQ_DONE;
		if (r->has_handle == REQ_HANDLE_USER)
			q->ndone_user++;
		else if (r->has_handle == REQ_HANDLE_NONE && pollq_push(q, r->tag, r->result) == 0)
			req_put(q, r);
	}
	for (dev = 0; dev < q->ndevices; dev++)
		q->outstanding[dev] = 0;
}

/*
 * Empties our end of the session socket. EOF (or a socket error) means
 * gpuqd has ended the session. Caller holds dlock.
 */
static void drain_sock(struct gpuq *q)
{
	if (!q->dead && ring_drain(q))
		set_dead(q);
}

/* Throttled liveness look for calls that never sleep. Caller holds dlock. */
static int check_alive(struct gpuq *q)
{
	uint64_t t;

	if (q->dead)
		return q->dead;
	t = coarse_ns();
	if (t < atomic_load_explicit(&q->next_check_ns, memory_order_relaxed))
		return 0;
	atomic_store_explicit(&q->next_check_ns, t + LIVENESS_NS, memory_order_relaxed);
	if (ring_hup(q))
		set_dead(q);
	return q->dead;
}

int xfer_alive(struct gpuq *q)
{
	int r;

	if (!q)
		return 0;
	/* Most calls come back here within the millisecond: no lock for them. */
	if (coarse_ns() < atomic_load_explicit(&q->next_check_ns, memory_order_relaxed))
		return __atomic_load_n(&q->dead, __ATOMIC_RELAXED);
	pthread_mutex_lock(&q->dlock);
	r = q->shm ? check_alive(q) : -ENOTCONN;
	pthread_mutex_unlock(&q->dlock);
	return r;
}

/* ---- gpuq_fd ---- */

/*
 * Keeps gpuq_fd's promise; run at the end of every data-path call while
 * fd mode is on. Completions that libgpuq holds (gpuq_poll's queue, done
 * requests not yet collected) or that a CQ holds unreaped, and the end of
 * the session, make the private eventfd readable. With nothing pending it
 * is cleared and cq_waiting armed, so gpuqd's next completion sends a byte
 * on the socket; the CQ is looked at again after arming, so a completion
 * posted just before is not missed. A sleeper that took gpuqd's byte
 * leaves cq_waiting clear: it is armed here again. No system call unless
 * the eventfd's state changes. Caller holds dlock.
 */
static void fd_update(struct gpuq *q)
{
	if (!q->fd_mode || !q->shm)
		return;
	if (q->dead || q->pq_head != q->pq_tail || q->ndone_user || ring_cq_pending(q))
		ring_fd_raise(q);
	else
		ring_fd_arm(q);
}

/* Leaves a data-path call: gpuq_fd's state first, then the lock. */
static void data_unlock(struct gpuq *q)
{
	fd_update(q);
	pthread_mutex_unlock(&q->dlock);
}

/*
 * Sleeps until gpuqd posts a completion or ends the session (or timeout_ms
 * passes, -1 = no limit). Caller holds dlock; it is released while asleep.
 */
static void sleep_for_completion(struct gpuq *q, int timeout_ms)
{
	ring_sleep(q, timeout_ms);
	/* Another waiter may have drained it already: fine, the CQ is what counts. */
	drain_sock(q);
}

/*
 * Makes progress until cond(q, arg) holds: reaps, spins for spin_us, then
 * sleeps. deadline_ns 0 = none. Returns 0, -ETIMEDOUT, or why gpuqd ended
 * the session (then every pending request is complete, with that error).
 * Caller holds dlock.
 */
static int progress_until(struct gpuq *q, int (*cond)(struct gpuq *, void *), void *arg,
			  uint64_t deadline_ns)
{
	uint64_t spin_end = 0;

	for (;;) {
		uint64_t t;

		reap(q);
		if (cond(q, arg))
			return 0;
		if (q->dead)
			return q->dead;
		t = now_ns();
		if (deadline_ns && t >= deadline_ns)
			return -ETIMEDOUT;
		if (!spin_end)
			spin_end = t + (uint64_t)q->spin_us * 1000;
		if (t < spin_end) {
			pthread_mutex_unlock(&q->dlock);
			shm_cpu_relax();
			pthread_mutex_lock(&q->dlock);
			continue;
		}
		sleep_for_completion(q,
				     deadline_ns ? (int)((deadline_ns - t) / 1000000 + 1) : 1000);
		spin_end = 0;
	}
}

static int sq_has_room(struct gpuq *q, void *arg)
{
	return ring_has_room(q, (unsigned)(uintptr_t)arg);
}

/*
 * Queues one request on dev's ring and rings the doorbell if the engine
 * sleeps. Returns 0, or why gpuqd is gone. Holds dlock.
 */
static int push_sqe(struct gpuq *q, unsigned dev, const struct shm_sqe *e)
{
	int r;

	if (!ring_has_room(q, dev)) {
		r = progress_until(q, sq_has_room, (void *)(uintptr_t)dev, 0);
		if (r || q->dead)
			return r ? r :
				   q->dead; /* a dead session's ring has room: nobody reads it */
	}
	if (ring_push(q, dev, e))
		set_dead(q); /* gpuqd is gone: the request was completed with the error */
	return 0;
}

struct stage_wait {
	uint64_t len;
	int64_t off;
};

static int stage_possible(struct gpuq *q, void *arg)
{
	struct stage_wait *w = arg;

	w->off = arena_get(&q->alloc, w->len);
	if (w->off >= 0)
		return 1;
	/* Nothing in flight will free arena space: give up rather than wait forever. */
	for (unsigned dev = 0; dev < q->ndevices; dev++)
		if (q->outstanding[dev])
			return 0;
	return 1;
}

/*
 * Queues a transfer. host/len is the host side (NULL for D2D). handle is
 * REQ_HANDLE_*. Returns 0 with *out set (for a handle) or -errno. Caller
 * holds dlock.
 */
static int submit(struct gpuq *q, uint8_t op, uint32_t id, uint64_t off, const void *host,
		  size_t len, uint32_t src_id, uint64_t src_off, uint64_t tag, int handle,
		  struct gpuq_req **out)
{
	struct shm_sqe e = { .op = op, .buf = id, .buf_off = off, .len = len };
	struct gpuq_req *r;
	int dev, err;

	if (check_alive(q))
		return q->dead;
	dev = buf_device(q, id);
	if (dev < 0)
		return dev;
	if (op == SHM_OP_D2D) {
		int sdev = buf_device(q, src_id);

		if (sdev < 0)
			return sdev;
		if (sdev != dev)
			return -EXDEV;
		e.src_buf = src_id;
		e.src_off = src_off;
	}
	r = req_get(q);
	if (!r)
		return -ENOMEM;
	r->tag = tag;
	r->has_handle = (uint8_t)handle;
	r->lost = 0;
	r->len = len;
	if (op != SHM_OP_D2D && len) {
		if (in_arena(q, host, len)) {
			e.arena_off = (uint64_t)((const uint8_t *)host - q->arena);
		} else {
			struct stage_wait w = { .len = len, .off = -ENOMEM };

			if (len > q->arena_size / 2) {
				req_put(q, r);
				return -EMSGSIZE;
			}
			err = progress_until(q, stage_possible, &w, 0);
			if (!err)
				err = q->dead;
			if (err) {
				if (w.off >= 0)
					arena_put(&q->alloc, (uint64_t)w.off);
				req_put(q, r);
				return err;
			}
			if (w.off < 0) {
				req_put(q, r);
				return -ENOMEM;
			}
			r->bounce = w.off;
			e.arena_off = (uint64_t)w.off;
			if (op == SHM_OP_H2D)
				memcpy(q->arena + w.off, host, len);
			else
				r->copy_out = (void *)host;
		}
	}
	e.user_data = (uint64_t)r->gen << 32 | r->index;
	err = push_sqe(q, (unsigned)dev, &e);
	if (err) {
		if (r->bounce >= 0)
			arena_put(&q->alloc, (uint64_t)r->bounce);
		req_put(q, r);
		return err;
	}
	if (out)
		*out = r;
	return 0;
}

static int req_done(struct gpuq *q, void *arg)
{
	return ((struct gpuq_req *)arg)->state == REQ_DONE;
}

static void finish(struct gpuq *q, struct gpuq_req *r, struct gpuq_completion *c)
{
	if (c) {
		c->tag = r->tag;
		c->result = r->result;
	}
	if (r->has_handle == REQ_HANDLE_USER && q->ndone_user)
		q->ndone_user--;
	req_put(q, r);
}

static int check_args(gpuq_t *q, const void *host, size_t len)
{
	if (!q || !q->shm || (len && !host))
		return -EINVAL;
	return 0;
}

GPUQ_API int gpuq_isend(gpuq_t *q, uint32_t id, uint64_t offset, const void *src, size_t len,
			uint64_t tag, gpuq_req_t **req)
{
	int r = check_args(q, src, len);

	if (r)
		return r;
	pthread_mutex_lock(&q->dlock);
	r = submit(q, SHM_OP_H2D, id, offset, src, len, 0, 0, tag,
		   req ? REQ_HANDLE_USER : REQ_HANDLE_NONE, req);
	data_unlock(q);
	return r;
}

GPUQ_API int gpuq_irecv(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len,
			uint64_t tag, gpuq_req_t **req)
{
	int r = check_args(q, dst, len);

	if (r)
		return r;
	pthread_mutex_lock(&q->dlock);
	r = submit(q, SHM_OP_D2H, id, offset, dst, len, 0, 0, tag,
		   req ? REQ_HANDLE_USER : REQ_HANDLE_NONE, req);
	data_unlock(q);
	return r;
}

GPUQ_API int gpuq_icopy(gpuq_t *q, uint32_t dst_id, uint64_t dst_off, uint32_t src_id,
			uint64_t src_off, size_t len, uint64_t tag, gpuq_req_t **req)
{
	int r;

	if (!q || !q->shm)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	r = submit(q, SHM_OP_D2D, dst_id, dst_off, NULL, len, src_id, src_off, tag,
		   req ? REQ_HANDLE_USER : REQ_HANDLE_NONE, req);
	data_unlock(q);
	return r;
}

/* Is req a live handle of the caller's? Caller holds dlock. */
static int user_req_ok(const struct gpuq_req *req)
{
	return req && req->state != REQ_FREE && req->has_handle == REQ_HANDLE_USER;
}

GPUQ_API int gpuq_test(gpuq_t *q, gpuq_req_t *req, int *done, struct gpuq_completion *c)
{
	if (!q || !q->shm || !req || !done)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	if (!user_req_ok(req)) {
		pthread_mutex_unlock(&q->dlock);
		return -EINVAL;
	}
	reap(q);
	if (req->state != REQ_DONE)
		check_alive(q); /* a dead gpuqd completes it with the error */
	*done = req->state == REQ_DONE;
	if (*done)
		finish(q, req, c);
	data_unlock(q);
	return 0;
}

/* Waits for one checked handle. Caller holds dlock. */
static int wait_one(struct gpuq *q, struct gpuq_req *req, struct gpuq_completion *c)
{
	int r = progress_until(q, req_done, req, 0);

	if (req->state != REQ_DONE)
		return r;
	/* Completed by the session's end: the error is the wait's too. */
	r = req->lost ? (int)req->result : 0;
	finish(q, req, c);
	return r;
}

GPUQ_API int gpuq_wait(gpuq_t *q, gpuq_req_t *req, struct gpuq_completion *c)
{
	int r;

	if (!q || !q->shm || !req)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	r = user_req_ok(req) ? wait_one(q, req, c) : -EINVAL;
	data_unlock(q);
	return r;
}

GPUQ_API int gpuq_waitall(gpuq_t *q, gpuq_req_t **reqs, unsigned n, struct gpuq_completion *cs)
{
	unsigned i;
	int r = 0, e;

	if (!q || !q->shm || (n && !reqs))
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	/* All checked before any is waited for (and released). */
	for (i = 0; i < n; i++) {
		if (!user_req_ok(reqs[i])) {
			data_unlock(q);
			return -EINVAL;
		}
	}
	for (i = 0; i < n; i++) {
		e = wait_one(q, reqs[i], cs ? &cs[i] : NULL);
		if (e && !r)
			r = e; /* the session ended: the rest are complete already */
		if (e && reqs[i]->state == REQ_PENDING)
			break;
	}
	data_unlock(q);
	return r;
}

static int pollq_nonempty(struct gpuq *q, void *arg)
{
	return q->pq_head != q->pq_tail;
}

GPUQ_API int gpuq_poll(gpuq_t *q, struct gpuq_completion *out, unsigned max, int timeout_ms)
{
	unsigned n = 0;
	int r = 0;

	if (!q || !q->shm || (max && !out))
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	reap(q);
	if (q->pq_head == q->pq_tail) {
		if (timeout_ms != 0)
			r = progress_until(
				q, pollq_nonempty, NULL,
				timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000);
		else
			r = check_alive(q);
	}
	while (n < max && q->pq_head != q->pq_tail)
		out[n++] = q->pollq[q->pq_head++ % q->pq_cap];
	/*
	 * All taken: the fd's byte goes too, so a level-triggered loop stops
	 * waking. fd_update then looks at the CQ again and re-arms, so a
	 * completion whose byte this took is not missed.
	 */
	if (q->fd_mode && q->pq_head == q->pq_tail)
		drain_sock(q);
	data_unlock(q);
	if (n)
		return (int)n; /* the completions first; the session's end comes next time */
	if (r == -ETIMEDOUT)
		r = 0;
	return r;
}

GPUQ_API int gpuq_fd(gpuq_t *q)
{
	int r;

	if (!q || !q->shm)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	if (!q->fd_mode) {
		r = ring_fd_open(q);
		if (r) {
			pthread_mutex_unlock(&q->dlock);
			return r;
		}
	}
	data_unlock(q);
	return q->epfd;
}

/* ---- blocking transfers ---- */

/*
 * Moves len bytes in STAGE_CHUNK pieces with up to 4 in flight, staging
 * non-arena memory through the arena; arena memory goes in one request.
 */
static ssize_t blocking(gpuq_t *q, uint8_t op, uint32_t id, uint64_t offset, void *host, size_t len,
			uint32_t src_id, uint64_t src_off)
{
	struct gpuq_req *win[4];
	size_t chunk, done = 0, sent = 0;
	unsigned nwin = 0, i;
	int64_t err = 0;
	int r;

	if (!q || !q->shm || (op != SHM_OP_D2D && len && !host))
		return -EINVAL;
	if (op == SHM_OP_D2D || in_arena(q, host, len))
		chunk = len ? len : 1;
	else
		chunk = q->arena_size / 8 < STAGE_CHUNK ? q->arena_size / 8 : STAGE_CHUNK;
	pthread_mutex_lock(&q->dlock);
	do {
		while (nwin < 4 && sent < len + (len == 0) && !err) {
			size_t n = len - sent < chunk ? len - sent : chunk;

			r = submit(q, op, id, offset + sent, host ? (uint8_t *)host + sent : NULL,
				   n, src_id, src_off + sent, 0, REQ_HANDLE_INTERNAL, &win[nwin]);
			if (r) {
				err = r;
				break;
			}
			nwin++;
			sent += n ? n : 1;
		}
		if (!nwin)
			break;
		r = progress_until(q, req_done, win[0], 0);
		if (r) {
			/* gpuqd is gone: the window was completed with the error. */
			err = r;
			for (i = 0; i < nwin; i++)
				if (win[i]->state == REQ_DONE)
					finish(q, win[i], NULL);
			break;
		}
		if (win[0]->result < 0 && !err)
			err = win[0]->result;
		else if (win[0]->result > 0)
			done += (size_t)win[0]->result;
		finish(q, win[0], NULL);
		for (i = 1; i < nwin; i++)
			win[i - 1] = win[i];
		nwin--;
	} while (nwin || (sent < len && !err));
	data_unlock(q);
	if (err)
		return (ssize_t)err;
	return (ssize_t)done;
}

GPUQ_API ssize_t gpuq_send(gpuq_t *q, uint32_t id, uint64_t offset, const void *src, size_t len)
{
	return blocking(q, SHM_OP_H2D, id, offset, (void *)src, len, 0, 0);
}

GPUQ_API ssize_t gpuq_recv(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len)
{
	return blocking(q, SHM_OP_D2H, id, offset, dst, len, 0, 0);
}

GPUQ_API ssize_t gpuq_copy(gpuq_t *q, uint32_t dst_id, uint64_t dst_off, uint32_t src_id,
			   uint64_t src_off, size_t len)
{
	return blocking(q, SHM_OP_D2D, dst_id, dst_off, NULL, len, src_id, src_off);
}
