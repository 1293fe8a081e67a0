/* engine.c: one thread per device: harvest every session's SQ fairly, validate, batch, complete. */
#include "build-config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "request.h"
#include "shm.h"

/* Most requests taken from one session per round: no client starves the others. */
#define ENGINE_SESSION_BUDGET 1024
/* Batches a lane may have in flight. */
#define ENGINE_LANE_DEPTH 64
#define ENGINE_MAX_BATCH 4096
/* A small lane with this many batches in flight lets its next batch grow. */
#define ENGINE_HOLD_INFLIGHT 4
/* SQEs requested ahead of the one being read. */
#define ENGINE_PREFETCH 8
/*
 * Bytes one batch may carry: a batch finishes as a whole, so this bounds how
 * long one batch holds a lane (and, on the host backend, the engine thread).
 */
#define ENGINE_BATCH_BYTES (256ull << 20)
/* How long shutdown and detaching wait for a device's transfers to land. */
#define ENGINE_DEADLINE_NS (5ull * 1000000000ull)

/* One request on its way through the GPU. */
struct item {
	struct engine_port *s;
	struct buf *held[2]; /* buffers the transfer uses, marked in flight (buf_hold) */
	uint64_t user_data;
	uint64_t len;
};

struct batch {
	uint64_t seq;
	unsigned n;
	struct item *items;
};

/*
 * A lane: a builder for the next batch, and the FIFO of batches in flight.
 * The FIFO has one more slot than the backend's depth, for the builder.
 */
struct engine_lane {
	struct backend_xfer *x;
	unsigned n;
	uint64_t bytes; /* what the batch being built carries */
	struct batch fifo[ENGINE_LANE_DEPTH + 1];
	unsigned head, tail; /* fifo indices, free-running */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct batch *lane_building(struct engine_lane *l)
{
	return &l->fifo[l->tail % (ENGINE_LANE_DEPTH + 1)];
}

static unsigned lane_room(struct engine *e, struct engine_lane *l)
{
	if (l->tail - l->head >= ENGINE_LANE_DEPTH)
		return 0;
	return e->max_batch - l->n;
}

/* Posts one completion into s's CQ for this engine's device. */
static void post_cqe(struct engine *e, struct engine_port *s, uint64_t user_data, int64_t res)
{
	struct engine_ring *se = &s->eng[e->dev];
	struct shm_cqe *cq = shm_cq(s->base, &s->geom, e->dev);

	/* The private mask bounds the slot, whatever the client wrote in the header. */
	cq[se->cq_tail & s->geom.cq_mask] = (struct shm_cqe){ .user_data = user_data, .res = res };
	se->cq_tail++;
	se->dirty = 1;
	if (s->uid_inflight)
		atomic_fetch_sub_explicit(s->uid_inflight, 1, memory_order_relaxed);
	if (res < 0)
		atomic_fetch_add_explicit(&e->xfer_errors, 1, memory_order_relaxed);
}

/* Publishes posted completions and wakes the session if it sleeps. */
static void publish(struct engine *e, struct engine_port *s)
{
	struct engine_ring *se = &s->eng[e->dev];
	struct shm_hdr *h = s->hdr;

	if (!se->dirty)
		return;
	se->dirty = 0;
	atomic_store_explicit(&h->ctl[e->dev].cq_tail.v, se->cq_tail, memory_order_release);
	/* Pairs with the client's fence between setting cq_waiting and re-reading cq_tail. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&h->cq_waiting.v, memory_order_relaxed) &&
	    atomic_exchange_explicit(&h->cq_waiting.v, 0, memory_order_acq_rel)) {
		/*
		 * gpuqd's own non-blocking end, and MSG_DONTWAIT besides: a client
		 * that never reads makes this fail with EAGAIN, and then its end is
		 * readable already. Any other error (it closed its end) is its loss.
		 */
		if (send(s->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			(void)0;
	}
}

/*
 * Stops serving s: the ring is corrupt. srv_state tells the client why,
 * and the control thread, woken through broken_efd, sends an Error and
 * closes the connection (which ends the session).
 */
static void mark_broken(struct engine *e, struct engine_port *s, const char *why)
{
	uint64_t one = 1;

	s->eng[e->dev].broken = 1;
	if (atomic_exchange(&s->broken, 1))
		return;
	log_engine(LOG_WARNING, "session %llu (pid %d): %s on device %u; no longer serving it",
		   (unsigned long long)s->id, (int)s->pid, why, e->dev);
	atomic_store_explicit(&s->hdr->srv_state.v, SHM_STATE_BROKEN, memory_order_release);
	/* gpuqd's own eventfd; its counter cannot fill from one write per session. */
	if (s->broken_efd >= 0 && write(s->broken_efd, &one, sizeof(one)) < 0)
		(void)0;
}

/* Takes up to budget requests from s. Returns how many it consumed. */
static unsigned harvest(struct engine *e, struct engine_port *s)
{
	struct engine_ring *se = &s->eng[e->dev];
	const struct shm_geom *g = &s->geom;
	struct shm_ringctl *ctl = &s->hdr->ctl[e->dev];
	struct shm_sqe *sq = shm_sq(s->base, &s->geom, e->dev);
	uint64_t arena_dev = s->arena_dev[e->dev], crossover = e->be->crossover[e->dev];
	uint32_t tail, avail, cq_head, used, budget, room, i, l;

	if (se->broken)
		return 0;
	tail = atomic_load_explicit(&ctl->sq_tail.v, memory_order_acquire);
	avail = tail - se->sq_head;
	if (!avail)
		return 0;
	cq_head = atomic_load_explicit(&ctl->cq_head.v, memory_order_acquire);
	used = se->cq_tail - cq_head;
	if (avail > g->sq_entries || used > g->cq_entries || used + se->inflight > g->cq_entries) {
		/* Indices only a broken or hostile client can produce: stop serving it. */
		mark_broken(e, s, "corrupt ring indices");
		return 0;
	}
	/* Every request yields one completion: never take more than the CQ can hold. */
	budget = g->cq_entries - used - se->inflight;
	if (budget > avail)
		budget = avail;
	if (budget > ENGINE_SESSION_BUDGET)
		budget = ENGINE_SESSION_BUDGET;
	for (l = 0; l < LANE_COUNT; l++) {
		room = lane_room(e, &e->lanes[l]);
		if (budget > room)
			budget = room;
	}
	if (s->uid_inflight) {
		/* The uid's share: what is over it stays in the SQ for a later round. */
		uint32_t cur = atomic_load_explicit(s->uid_inflight, memory_order_relaxed);

		if (cur >= s->uid_inflight_max)
			return 0;
		if (budget > s->uid_inflight_max - cur)
			budget = s->uid_inflight_max - cur;
		atomic_fetch_add_explicit(s->uid_inflight, budget, memory_order_relaxed);
	}
	if (!budget)
		return 0;
	pthread_mutex_lock(s->lock);
	/*
	 * Each SQE is a cache line another core just wrote: ask for the next
	 * few ahead so their transfers overlap instead of queueing one by one.
	 */
	for (i = 0; i < budget && i < ENGINE_PREFETCH; i++)
		__builtin_prefetch(&sq[(se->sq_head + i) & g->sq_mask]);
	for (i = 0; i < budget; i++) {
		/* Copy first: the client can rewrite the slot while we look at it. */
		struct shm_sqe q = sq[(se->sq_head + i) & g->sq_mask];
		struct backend_xfer x;
		struct engine_lane *ln;
		struct buf *held[2];
		struct batch *b;
		int lane;

		if (i + ENGINE_PREFETCH < budget)
			__builtin_prefetch(&sq[(se->sq_head + i + ENGINE_PREFETCH) & g->sq_mask]);
		lane = request_translate(&q, g, arena_dev, s->bufs, e->dev, crossover, &x, held);
		/* Zero bytes move nothing, once the range is checked (offset == size is fine). */
		if (lane < 0 || q.len == 0) {
			post_cqe(e, s, q.user_data, lane < 0 ? lane : 0);
			continue;
		}
		ln = &e->lanes[lane];
		if (ln->n && ln->bytes + q.len > ENGINE_BATCH_BYTES) {
			/* This batch is full: the request stays in the SQ for the next one. */
			if (s->uid_inflight)
				atomic_fetch_sub_explicit(s->uid_inflight, budget - i,
							  memory_order_relaxed);
			budget = i;
			break;
		}
		/* Under s->lock, so no BufFree can slip between the lookup and this. */
		buf_hold(held[0]);
		if (held[1])
			buf_hold(held[1]);
		b = lane_building(ln);
		ln->x[ln->n] = x;
		ln->bytes += q.len;
		b->items[ln->n] = (struct item){
			.s = s, .held = { held[0], held[1] }, .user_data = q.user_data, .len = q.len
		};
		ln->n++;
		se->inflight++;
	}
	pthread_mutex_unlock(s->lock);
	se->sq_head += budget;
	atomic_store_explicit(&ctl->sq_head.v, se->sq_head, memory_order_release);
	publish(e, s); /* error and empty completions posted above */
	return budget;
}

/* The backend is done with it: the buffers may be freed from now on. */
static void item_release(struct item *it)
{
	buf_release(it->held[0]);
	if (it->held[1])
		buf_release(it->held[1]);
}

/* Hands built batches to the backend. Returns how many it submitted. */
static unsigned submit(struct engine *e)
{
	unsigned l, count = 0;

	for (l = 0; l < LANE_COUNT; l++) {
		struct engine_lane *ln = &e->lanes[l];
		struct batch *b;
		int64_t seq;
		unsigned i;

		if (!ln->n)
			continue;
		/*
		 * While a small lane already has batches in flight, let the next
		 * one grow: one kernel for many transfers costs about what one
		 * costs for a few. An idle lane submits at once (latency).
		 */
		if ((l == LANE_H2D_SMALL || l == LANE_D2H_SMALL) &&
		    ln->tail - ln->head >= e->hold_inflight && ln->n < e->max_batch / 8 &&
		    ln->bytes < ENGINE_BATCH_BYTES / 8)
			continue;
		seq = e->be->ops->xfer_submit(e->be, e->dev, l, ln->x, ln->n);
		if (seq == -EAGAIN)
			continue; /* lane full: retried after completions */
		b = lane_building(ln);
		b->n = ln->n;
		ln->n = 0;
		ln->bytes = 0;
		if (seq < 0) {
			/* The device failed the batch: each request learns it. */
			log_engine(LOG_ERR, "device %u: submitting a batch of %u: %s", e->dev, b->n,
				   strerror((int)-seq));
			for (i = 0; i < b->n; i++) {
				item_release(&b->items[i]);
				b->items[i].s->eng[e->dev].inflight--;
				post_cqe(e, b->items[i].s, b->items[i].user_data, seq);
				publish(e, b->items[i].s);
			}
			continue;
		}
		b->seq = (uint64_t)seq;
		ln->tail++;
		count++;
		atomic_fetch_add_explicit(&e->batches, 1, memory_order_relaxed);
	}
	return count;
}

/* Posts the completions of finished batches. Returns how many batches finished. */
static unsigned complete(struct engine *e)
{
	unsigned l, i, count = 0;

	for (l = 0; l < LANE_COUNT; l++) {
		struct engine_lane *ln = &e->lanes[l];
		uint64_t done;

		if (ln->head == ln->tail)
			continue;
		done = e->be->ops->xfer_done(e->be, e->dev, l);
		while (ln->head != ln->tail) {
			struct batch *b = &ln->fifo[ln->head % (ENGINE_LANE_DEPTH + 1)];
			uint64_t bytes = 0;

			if (b->seq > done)
				break;
			for (i = 0; i < b->n; i++) {
				struct item *it = &b->items[i];

				/* xfer_done covers the batch: its memory is no longer used. */
				item_release(it);
				it->s->eng[e->dev].inflight--;
				post_cqe(e, it->s, it->user_data, (int64_t)it->len);
				bytes += it->len;
			}
			for (i = 0; i < b->n; i++)
				publish(e, b->items[i].s);
			atomic_fetch_add_explicit(&e->xfers, b->n, memory_order_relaxed);
			atomic_fetch_add_explicit(&e->xfer_bytes, bytes, memory_order_relaxed);
			ln->head++;
			count++;
		}
	}
	return count;
}

static unsigned inflight_total(struct engine *e)
{
	unsigned l, n = 0;

	for (l = 0; l < LANE_COUNT; l++)
		n += (e->lanes[l].tail - e->lanes[l].head) + (e->lanes[l].n ? 1 : 0);
	return n;
}

/* Picks up the control thread's changes to the session list. */
static void refresh(struct engine *e)
{
	struct engine_port *d;

	pthread_mutex_lock(&e->lock);
	if (e->gen != e->seen_gen) {
		if (e->nlist > e->capsess) {
			struct engine_port **n = realloc(e->sess, e->nlist * sizeof(*n));

			if (!n) {
				pthread_mutex_unlock(&e->lock);
				return; /* keep the old list; retried next round */
			}
			e->sess = n;
			e->capsess = e->nlist;
		}
		if (e->nlist)
			memcpy(e->sess, e->list, e->nlist * sizeof(*e->sess));
		e->nsess = e->nlist;
		e->seen_gen = e->gen;
	}
	d = e->detaching;
	/* A detaching session is off the list; it is done once nothing of it is in flight. */
	if (d && !e->detach_done && d->eng[e->dev].inflight == 0) {
		publish(e, d);
		e->detach_done = 1;
		pthread_cond_broadcast(&e->cond);
	}
	pthread_mutex_unlock(&e->lock);
}

/* Sleeps on the doorbell, unless some ring got work after NEED_WAKEUP was raised. */
static void sleep_until_rung(struct engine *e)
{
	unsigned i, work = 0;
	struct pollfd p = { .fd = e->efd, .events = POLLIN };
	uint64_t v;

	for (i = 0; i < e->nsess; i++)
		atomic_store_explicit(&e->sess[i]->hdr->ctl[e->dev].sq_flags.v, SHM_NEED_WAKEUP,
				      memory_order_seq_cst);
	/*
	 * Pairs with engine_wake: a doorbell the doorbell thread drained before
	 * it could see this flag was sent after its sq_tail was published, so
	 * the look below sees that tail.
	 */
	atomic_store_explicit(&e->sleeping, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	for (i = 0; i < e->nsess && !work; i++) {
		struct engine_port *s = e->sess[i];

		work = atomic_load_explicit(&s->hdr->ctl[e->dev].sq_tail.v, memory_order_acquire) !=
			       s->eng[e->dev].sq_head &&
		       !s->eng[e->dev].broken;
	}
	if (!work && !atomic_load(&e->stop)) {
		/* The timeout bounds how long a missed edge could cost; none is expected. */
		if (poll(&p, 1, 1000) > 0 && read(e->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_engine(LOG_WARNING, "engine %u: doorbell: %s", e->dev, strerror(errno));
	}
	atomic_store_explicit(&e->sleeping, 0, memory_order_relaxed);
	for (i = 0; i < e->nsess; i++)
		atomic_store_explicit(&e->sess[i]->hdr->ctl[e->dev].sq_flags.v, 0,
				      memory_order_relaxed);
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;
	uint64_t idle_since = 0;
	unsigned i, progress;
	int r;

	r = e->be->ops->xfer_start(e->be, e->dev);
	pthread_mutex_lock(&e->lock);
	e->start_result = r;
	e->started = 1;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	if (r)
		return NULL;
	/* From here on nothing this thread logs (the backend's messages too) may block it. */
	log_thread_nonblocking();

	while (!atomic_load_explicit(&e->stop, memory_order_relaxed)) {
		refresh(e);
		progress = complete(e);
		for (i = 0; i < e->nsess; i++)
			progress += harvest(e, e->sess[(e->rr + i) % e->nsess]);
		if (e->nsess)
			e->rr = (e->rr + 1) % e->nsess;
		progress += submit(e);
		progress += complete(e);
		if (progress) {
			idle_since = 0;
			continue;
		}
		if (inflight_total(e)) {
			shm_cpu_relax();
			continue;
		}
		if (!idle_since) {
			idle_since = now_ns();
		} else if (now_ns() - idle_since >
			   1000ull * atomic_load_explicit(&e->idle_us, memory_order_relaxed)) {
			sleep_until_rung(e);
			idle_since = 0;
		} else {
			shm_cpu_relax();
		}
	}
	/* Let everything in flight land before the device goes away, for a while. */
	idle_since = now_ns();
	while (inflight_total(e)) {
		submit(e);
		if (complete(e))
			idle_since = now_ns(); /* progress: a backlog, not a hang */
		if (now_ns() - idle_since > ENGINE_DEADLINE_NS) {
			log_async(
				LOG_ERR,
				"device %u: %u batch(es) still in flight and none finished for %llu s "
				"during shutdown; the device looks hung, giving up on them",
				e->dev, inflight_total(e), ENGINE_DEADLINE_NS / 1000000000ull);
			break;
		}
		shm_cpu_relax();
	}
	e->be->ops->xfer_stop(e->be, e->dev);
	return NULL;
}

int engine_create(struct engine **out, struct backend *be, unsigned dev, unsigned idle_us)
{
	struct engine *e = calloc(1, sizeof(*e));
	unsigned l, k;
	int r = -ENOMEM;

	if (!e)
		return -ENOMEM;
	e->be = be;
	e->dev = dev;
	e->max_batch =
		be->xfer_max_batch < ENGINE_MAX_BATCH ? be->xfer_max_batch : ENGINE_MAX_BATCH;
	atomic_store(&e->idle_us, idle_us);
	e->hold_inflight = ENGINE_HOLD_INFLIGHT;
	/* A tuning knob for benchmarks, not a setting: see HACKING.md. */
	if (getenv("GPUQD_ENGINE_HOLD") && atoi(getenv("GPUQD_ENGINE_HOLD")) > 0)
		e->hold_inflight = (unsigned)atoi(getenv("GPUQD_ENGINE_HOLD"));
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->efd < 0) {
		r = -errno;
		goto fail;
	}
	e->lanes = calloc(LANE_COUNT, sizeof(*e->lanes));
	if (!e->lanes)
		goto fail;
	for (l = 0; l < LANE_COUNT; l++) {
		e->lanes[l].x = calloc(e->max_batch, sizeof(struct backend_xfer));
		if (!e->lanes[l].x)
			goto fail;
		for (k = 0; k <= ENGINE_LANE_DEPTH; k++) {
			e->lanes[l].fifo[k].items = calloc(e->max_batch, sizeof(struct item));
			if (!e->lanes[l].fifo[k].items)
				goto fail;
		}
	}
	r = -pthread_create(&e->thread, NULL, engine_main, e);
	if (r)
		goto fail;
	pthread_mutex_lock(&e->lock);
	while (!e->started)
		pthread_cond_wait(&e->cond, &e->lock);
	r = e->start_result;
	pthread_mutex_unlock(&e->lock);
	if (r) {
		pthread_join(e->thread, NULL);
		log_err("device %u: starting the data path: %s", dev, strerror(-r));
		goto fail;
	}
	log_info("device %u: engine running (crossover %llu bytes, batches up to %u)", dev,
		 (unsigned long long)be->crossover[dev], e->max_batch);
	*out = e;
	return 0;
fail:
	e->started = 0;
	engine_destroy(e);
	return r;
}

void engine_destroy(struct engine *e)
{
	unsigned l, k;
	uint64_t one = 1;

	if (!e)
		return;
	if (e->started) {
		atomic_store(&e->stop, 1);
		if (write(e->efd, &one, sizeof(one)) < 0)
			log_warn("engine %u: waking for shutdown: %s", e->dev, strerror(errno));
		pthread_join(e->thread, NULL);
		log_flush();
	}
	if (e->lanes) {
		for (l = 0; l < LANE_COUNT; l++) {
			for (k = 0; k <= ENGINE_LANE_DEPTH; k++)
				free(e->lanes[l].fifo[k].items);
			free(e->lanes[l].x);
		}
		free(e->lanes);
	}
	if (e->efd >= 0)
		close(e->efd);
	free(e->sess);
	free(e->list);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

void engine_wake(struct engine *e)
{
	uint64_t one = 1;

	if (!atomic_load_explicit(&e->sleeping, memory_order_seq_cst))
		return;
	if (write(e->efd, &one, sizeof(one)) < 0)
		(void)0; /* EAGAIN: the counter is non-zero, the engine wakes anyway */
}

void engine_stats_add(struct engine *e, struct engine_stats *st)
{
	st->xfers += atomic_load(&e->xfers);
	st->xfer_bytes += atomic_load(&e->xfer_bytes);
	st->xfer_errors += atomic_load(&e->xfer_errors);
	st->batches += atomic_load(&e->batches);
}

void engine_set_idle_us(struct engine *e, unsigned idle_us)
{
	atomic_store(&e->idle_us, idle_us);
}

static void ring(struct engine *e)
{
	uint64_t one = 1;

	if (write(e->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("engine %u: doorbell: %s", e->dev, strerror(errno));
}

void engine_port_init(struct engine_port *p, const struct shm_geom *g, void *base,
		      const uint64_t *arena_dev, struct buf_table *bufs, pthread_mutex_t *lock)
{
	p->geom = *g;
	p->base = base;
	p->hdr = base;
	memcpy(p->arena_dev, arena_dev, sizeof(p->arena_dev));
	p->bufs = bufs;
	p->lock = lock;
}

int engine_attach(struct engine *e, struct engine_port *s)
{
	pthread_mutex_lock(&e->lock);
	if (e->nlist == e->caplist) {
		unsigned cap = e->caplist ? e->caplist * 2 : 16;
		struct engine_port **n = realloc(e->list, cap * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&e->lock);
			return -ENOMEM;
		}
		e->list = n;
		e->caplist = cap;
	}
	e->list[e->nlist++] = s;
	e->gen++;
	pthread_mutex_unlock(&e->lock);
	ring(e);
	return 0;
}

int engine_detach(struct engine *e, struct engine_port *s)
{
	struct timespec deadline;
	uint64_t last;
	unsigned i;
	int r = 0;

	pthread_mutex_lock(&e->lock);
	for (i = 0; i < e->nlist; i++)
		if (e->list[i] == s)
			break;
	if (i == e->nlist) {
		pthread_mutex_unlock(&e->lock);
		return 0;
	}
	e->list[i] = e->list[--e->nlist];
	e->gen++;
	e->detaching = s;
	e->detach_done = 0;
	ring(e);
	/*
	 * A long honest backlog (many large transfers) is not a hung device:
	 * the deadline runs from the engine's last finished transfer, not from
	 * the start of the wait.
	 */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += ENGINE_DEADLINE_NS / 1000000000ull;
	last = atomic_load(&e->xfers) + atomic_load(&e->xfer_errors);
	while (!e->detach_done) {
		struct timespec slice;
		uint64_t now_done;

		clock_gettime(CLOCK_REALTIME, &slice);
		slice.tv_sec += 1;
		r = pthread_cond_timedwait(&e->cond, &e->lock, &slice);
		now_done = atomic_load(&e->xfers) + atomic_load(&e->xfer_errors);
		if (now_done != last) {
			last = now_done;
			clock_gettime(CLOCK_REALTIME, &deadline);
			deadline.tv_sec += ENGINE_DEADLINE_NS / 1000000000ull;
		} else if (r == ETIMEDOUT && (slice.tv_sec > deadline.tv_sec ||
					      (slice.tv_sec == deadline.tv_sec &&
					       slice.tv_nsec >= deadline.tv_nsec))) {
			break;
		}
	}
	if (!e->detach_done) {
		log_err("device %u: session %llu still has %u transfer(s) in flight and no transfer "
			"finished for %llu s; the device looks hung",
			e->dev, (unsigned long long)s->id, s->eng[e->dev].inflight,
			ENGINE_DEADLINE_NS / 1000000000ull);
		r = -ETIMEDOUT;
	} else {
		r = 0;
	}
	e->detaching = NULL;
	pthread_mutex_unlock(&e->lock);
	return r;
}
