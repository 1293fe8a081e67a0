/* xfer.c: libgpuq's data path: shared rings, arena memory, send/recv, completions, waiting. */
#include "build-config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

/* How long a waiter spins on its CQ before it sleeps on the eventfd. */
#define SPIN_US_DEFAULT 50
/* Chunk of a blocking transfer staged through the arena. */
#define STAGE_CHUNK (4u << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct shm_sqe *sq_of(struct gpuq *q, unsigned dev)
{
	return (struct shm_sqe *)((uint8_t *)q->shm + q->hdr->rings_off +
				  q->hdr->ringset_size * dev + shm_sq_off());
}

static struct shm_cqe *cq_of(struct gpuq *q, unsigned dev)
{
	return (struct shm_cqe *)((uint8_t *)q->shm + q->hdr->rings_off +
				  q->hdr->ringset_size * dev + shm_cq_off(q->hdr->sq_entries));
}

int client_data_open(struct gpuq *q, uint64_t shm_size, unsigned ndevices)
{
	struct stat st;
	struct shm_hdr *h;
	unsigned i;
	int r;

	q->sock = -1;
	/* Protocol 2: the session memfd and our end of the session socket. */
	if (q->rx_nfds < 2 || ndevices > SHM_MAX_DEVICES || ndevices == 0)
		return client_fail(q, -EPROTO, "gpuqd sent %u descriptors for %u device(s)",
				   q->rx_nfds, ndevices);
	if (fstat(q->rx_fds[0], &st) < 0 || (uint64_t)st.st_size < shm_size ||
	    shm_size < sizeof(struct shm_hdr))
		return client_fail(q, -EPROTO, "the session memory is smaller than announced");
	q->shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, q->rx_fds[0], 0);
	if (q->shm == MAP_FAILED) {
		q->shm = NULL;
		r = -errno;
		return client_fail(q, r, "mapping the session memory: %s", strerror(-r));
	}
	q->shm_size = shm_size;
	h = q->hdr = q->shm;
	if (h->magic != SHM_MAGIC || h->version != SHM_VERSION || h->ndevices != ndevices ||
	    h->total_size > shm_size || h->arena_off + h->arena_size > shm_size ||
	    !h->sq_entries || (h->sq_entries & (h->sq_entries - 1)) || !h->cq_entries ||
	    (h->cq_entries & (h->cq_entries - 1)))
		return client_fail(q, -EPROTO, "the session memory has an unknown layout");
	q->arena = (uint8_t *)q->shm + h->arena_off;
	q->arena_size = h->arena_size;
	q->ndevices = ndevices;
	/* The memfd's mapping keeps the memory; the fd itself is not needed. */
	close(q->rx_fds[0]);
	q->sock = q->rx_fds[1];
	for (i = 2; i < q->rx_nfds; i++)
		close(q->rx_fds[i]);
	q->rx_nfds = 0;
	r = arena_init(&q->alloc, q->arena_size);
	if (r)
		return client_fail(q, r, "out of memory");
	q->free_req = REQ_NONE;
	q->spin_us = SPIN_US_DEFAULT;
	if (getenv("GPUQ_SPIN_US"))
		q->spin_us = (unsigned)strtoul(getenv("GPUQ_SPIN_US"), NULL, 10);
	return 0;
}

void client_data_close(struct gpuq *q)
{
	unsigned i;

	for (i = 0; i < q->nreqblk; i++)
		free(q->reqblk[i]);
	free(q->reqblk);
	free(q->pollq);
	free(q->buf_dev);
	arena_fini(&q->alloc);
	if (q->sock >= 0)
		close(q->sock);
	q->sock = -1;
	if (q->shm)
		munmap(q->shm, q->shm_size);
	q->shm = NULL;
}

void client_buf_note(struct gpuq *q, uint32_t id, int dev)
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

	return b >= q->arena && len <= q->arena_size && (size_t)(b - q->arena) <= q->arena_size - len;
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

	for (dev = 0; dev < q->ndevices; dev++) {
		struct shm_ringctl *ctl = &q->hdr->ctl[dev];
		struct shm_cqe *cq = cq_of(q, dev);
		uint32_t tail = atomic_load_explicit(&ctl->cq_tail.v, memory_order_acquire);
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
			if (!r->has_handle) {
				/* Completions nobody waits for by handle go to gpuq_poll. */
				if (pollq_push(q, r->tag, r->result) == 0)
					req_put(q, r);
			}
		}
		q->cq_head[dev] = head;
		atomic_store_explicit(&ctl->cq_head.v, head, memory_order_release);
	}
	return n;
}

unsigned client_reap(struct gpuq *q)
{
	unsigned n = 0;

	if (!q->shm)
		return 0;
	pthread_mutex_lock(&q->dlock);
	n = reap(q);
	pthread_mutex_unlock(&q->dlock);
	return n;
}

/* Is any completion posted and not yet reaped? Caller holds dlock. */
static int cq_pending(struct gpuq *q)
{
	unsigned dev;

	for (dev = 0; dev < q->ndevices; dev++)
		if (atomic_load_explicit(&q->hdr->ctl[dev].cq_tail.v, memory_order_acquire) !=
		    q->cq_head[dev])
			return 1;
	return 0;
}

/*
 * Empties our end of the session socket. On EOF gpuqd has ended the
 * session: q->dead says why (from srv_state, which gpuqd set first).
 * Caller holds dlock.
 */
static void drain_sock(struct gpuq *q)
{
	char buf[64];

	for (;;) {
		ssize_t n = recv(q->sock, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (!q->dead) {
			uint32_t st = atomic_load_explicit(&q->hdr->srv_state.v, memory_order_acquire);

			q->dead = st == SHM_STATE_SHUTDOWN ? -ESHUTDOWN
				  : st == SHM_STATE_BROKEN ? -EPROTO
							   : -ECONNRESET;
		}
		return;
	}
}

/*
 * Sleeps until gpuqd posts a completion (or timeout_ms passes, -1 = no
 * limit). Caller holds dlock; it is released while asleep.
 */
static void sleep_for_completion(struct gpuq *q, int timeout_ms)
{
	struct pollfd p = { .fd = q->sock, .events = POLLIN };

	atomic_store_explicit(&q->hdr->cq_waiting.v, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (cq_pending(q))
		return;
	pthread_mutex_unlock(&q->dlock);
	poll(&p, 1, timeout_ms);
	pthread_mutex_lock(&q->dlock);
	/* Another waiter may have drained it already: fine, the CQ is what counts. */
	drain_sock(q);
}

/*
 * Makes progress until cond(q, arg) holds: reaps, spins for spin_us, then
 * sleeps. deadline_ns 0 = none. Returns 0, or -ETIMEDOUT. Caller holds dlock.
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
		sleep_for_completion(q, deadline_ns ? (int)((deadline_ns - t) / 1000000 + 1) : 1000);
		spin_end = 0;
	}
}

static int ring_has_room(struct gpuq *q, void *arg)
{
	unsigned dev = (unsigned)(uintptr_t)arg;
	uint32_t head = atomic_load_explicit(&q->hdr->ctl[dev].sq_head.v, memory_order_acquire);

	return q->outstanding[dev] < q->hdr->cq_entries &&
	       q->sq_tail[dev] - head < q->hdr->sq_entries;
}

/*
 * Queues one request on dev's ring and rings the doorbell if the engine
 * sleeps. Returns 0, or why gpuqd is gone. Holds dlock.
 */
static int push_sqe(struct gpuq *q, unsigned dev, const struct shm_sqe *e)
{
	struct shm_ringctl *ctl = &q->hdr->ctl[dev];

	if (!ring_has_room(q, (void *)(uintptr_t)dev) &&
	    progress_until(q, ring_has_room, (void *)(uintptr_t)dev, 0))
		return q->dead;
	sq_of(q, dev)[q->sq_tail[dev] & (q->hdr->sq_entries - 1)] = *e;
	q->sq_tail[dev]++;
	q->outstanding[dev]++;
	atomic_store_explicit(&ctl->sq_tail.v, q->sq_tail[dev], memory_order_release);
	/* Pairs with the engine's fence between raising NEED_WAKEUP and its last look. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&ctl->sq_flags.v, memory_order_relaxed) & SHM_NEED_WAKEUP) {
		if (send(q->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			(void)0; /* EAGAIN: gpuqd's end is readable already, the engine will wake */
	}
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
 * Queues a transfer. host/len is the host side (NULL for D2D). Returns 0 with
 * *out set (when want_handle) or -errno. Caller holds dlock.
 */
static int submit(struct gpuq *q, uint8_t op, uint32_t id, uint64_t off, const void *host,
		  size_t len, uint32_t src_id, uint64_t src_off, uint64_t tag, int want_handle,
		  struct gpuq_req **out)
{
	struct shm_sqe e = { .op = op, .buf = id, .buf_off = off, .len = len };
	struct gpuq_req *r;
	int dev = buf_device(q, id);

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
	r->has_handle = want_handle;
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
			if (progress_until(q, stage_possible, &w, 0)) {
				if (w.off >= 0)
					arena_put(&q->alloc, (uint64_t)w.off);
				req_put(q, r);
				return q->dead;
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
	if (push_sqe(q, (unsigned)dev, &e)) {
		if (r->bounce >= 0)
			arena_put(&q->alloc, (uint64_t)r->bounce);
		req_put(q, r);
		return q->dead;
	}
	if (out)
		*out = r;
	return 0;
}

static int req_done(struct gpuq *q, void *arg)
{
	return ((struct gpuq_req *)arg)->state == REQ_DONE;
}

static int finish(struct gpuq *q, struct gpuq_req *r, struct gpuq_completion *c)
{
	if (c) {
		c->tag = r->tag;
		c->result = r->result;
	}
	req_put(q, r);
	return 0;
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
	r = submit(q, SHM_OP_H2D, id, offset, src, len, 0, 0, tag, req != NULL, req);
	pthread_mutex_unlock(&q->dlock);
	return r;
}

GPUQ_API int gpuq_irecv(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len,
			uint64_t tag, gpuq_req_t **req)
{
	int r = check_args(q, dst, len);

	if (r)
		return r;
	pthread_mutex_lock(&q->dlock);
	r = submit(q, SHM_OP_D2H, id, offset, dst, len, 0, 0, tag, req != NULL, req);
	pthread_mutex_unlock(&q->dlock);
	return r;
}

GPUQ_API int gpuq_icopy(gpuq_t *q, uint32_t dst_id, uint64_t dst_off, uint32_t src_id,
			uint64_t src_off, size_t len, uint64_t tag, gpuq_req_t **req)
{
	int r;

	if (!q || !q->shm)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	r = submit(q, SHM_OP_D2D, dst_id, dst_off, NULL, len, src_id, src_off, tag, req != NULL,
		   req);
	pthread_mutex_unlock(&q->dlock);
	return r;
}

GPUQ_API int gpuq_test(gpuq_t *q, gpuq_req_t *req, int *done, struct gpuq_completion *c)
{
	if (!q || !req || !done || req->state == REQ_FREE || !req->has_handle)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	reap(q);
	*done = req->state == REQ_DONE;
	if (*done)
		finish(q, req, c);
	pthread_mutex_unlock(&q->dlock);
	return 0;
}

GPUQ_API int gpuq_wait(gpuq_t *q, gpuq_req_t *req, struct gpuq_completion *c)
{
	if (!q || !req || req->state == REQ_FREE || !req->has_handle)
		return -EINVAL;
	int r;

	pthread_mutex_lock(&q->dlock);
	r = progress_until(q, req_done, req, 0);
	if (!r)
		finish(q, req, c);
	pthread_mutex_unlock(&q->dlock);
	return r;
}

GPUQ_API int gpuq_waitall(gpuq_t *q, gpuq_req_t **reqs, unsigned n, struct gpuq_completion *cs)
{
	unsigned i;
	int r;

	for (i = 0; i < n; i++) {
		r = gpuq_wait(q, reqs[i], cs ? &cs[i] : NULL);
		if (r)
			return r;
	}
	return 0;
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
	if (q->pq_head == q->pq_tail && timeout_ms != 0)
		r = progress_until(q, pollq_nonempty, NULL,
				   timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000);
	while (n < max && q->pq_head != q->pq_tail)
		out[n++] = q->pollq[q->pq_head++ % q->pq_cap];
	if (q->fd_mode && q->pq_head == q->pq_tail && !q->dead) {
		/* Drained: clear the fd, then ask to be woken for the next completion. */
		drain_sock(q);
		atomic_store_explicit(&q->hdr->cq_waiting.v, 1, memory_order_seq_cst);
		atomic_thread_fence(memory_order_seq_cst);
		/* Raced with a completion: a doorbell makes gpuqd answer with a wake. */
		if (cq_pending(q) && send(q->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			(void)0;
	}
	pthread_mutex_unlock(&q->dlock);
	if (r == -ETIMEDOUT)
		r = 0;
	return r < 0 ? r : (int)n;
}

GPUQ_API int gpuq_fd(gpuq_t *q)
{
	if (!q || !q->shm)
		return -EINVAL;
	pthread_mutex_lock(&q->dlock);
	if (!q->fd_mode) {
		q->fd_mode = 1;
		atomic_store_explicit(&q->hdr->cq_waiting.v, 1, memory_order_seq_cst);
		atomic_thread_fence(memory_order_seq_cst);
		/* Pending in the CQ: a doorbell makes gpuqd answer with a wake. */
		if (cq_pending(q) && send(q->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			(void)0;
	}
	pthread_mutex_unlock(&q->dlock);
	return q->sock;
}

/* ---- blocking transfers ---- */

/*
 * Moves len bytes in STAGE_CHUNK pieces with up to 4 in flight, staging
 * non-arena memory through the arena; arena memory goes in one request.
 */
static ssize_t blocking(gpuq_t *q, uint8_t op, uint32_t id, uint64_t offset, void *host,
			size_t len, uint32_t src_id, uint64_t src_off)
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

			r = submit(q, op, id, offset + sent, host ? (uint8_t *)host + sent : NULL, n,
				   src_id, src_off + sent, 0, 1, &win[nwin]);
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
			/* gpuqd is gone: nothing in the window will complete. */
			err = r;
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
	pthread_mutex_unlock(&q->dlock);
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
