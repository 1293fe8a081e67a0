/* chan.c: libgpuq channels: create/open/close through gpuqd, send and receive on the shared ring. */
#include "build-config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ring.h"
#include "xfer.h"
#include "gpuq/gpuq_chan.h"

/* How long a waiting receiver (or a sender facing a full ring) spins before it sleeps. */
#define CHAN_SPIN_NS 50000ull

/* An open channel. Created by gpuq_chan_create/open, freed by gpuq_chan_close. */
struct gpuq_chan {
	struct gpuq *q;
	uint32_t id;
	struct gpuq_chan_hdr *hdr;
	size_t size;
	int efd; /* the read end of this opener's wake pipe (gpuqd writes it) */
	int fd_mode;
	int can_send, can_recv; /* the ends gpuqd granted: the rest is mapped read-only */
	uint32_t row;           /* this opener's row of the pending table */
	/*
	 * The geometry as gpuqd announced it, checked once. Every process
	 * with access can write the shared header: it is never read again.
	 */
	uint32_t slot_size, nslots, direction, format, lap_shift;
	uint64_t stride;
	/*
	 * The last head this process saw: head only grows, so while
	 * pos - head_seen < nslots a send has room without reading the
	 * shared head (a line the receivers keep writing).
	 */
	uint64_t head_seen;
};

/* Slot of position pos, from the private geometry: always inside the mapping. */
static uint8_t *slot_of(const struct gpuq_chan *ch, uint64_t pos)
{
	return (uint8_t *)ch->hdr + GPUQ_CHAN_HDR_SIZE + (pos & (ch->nslots - 1)) * ch->stride;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Maps fd's first len bytes at addr (inside the reservation), writable or not. */
static int map_region(void *addr, size_t len, int fd, int writable)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < len)
		return -EPROTO;
	if (mmap(addr, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | MAP_FIXED, fd,
		 0) == MAP_FAILED)
		return -errno;
	return 0;
}

/*
 * Turns a ChanReply and its fds (fixed page, receiver page, sender region,
 * wake pipe) into an open channel: the three regions side by side, each
 * writable only as gpuqd granted (its descriptors say so too).
 */
static int chan_map(struct gpuq *q, const Gpuq__ChanReply *rep, gpuq_chan_t **out)
{
	struct gpuq_chan_hdr *h;
	struct gpuq_chan *ch;
	uint8_t *map;
	int r;

	if (q->rx_nfds < 4 || rep->size < GPUQ_CHAN_HDR_SIZE || rep->size > SIZE_MAX ||
	    rep->sender_row >= GPUQ_CHAN_SENDERS_MAX)
		return client_fail(q, -EPROTO, "gpuqd sent an unusable channel");
	map = mmap(NULL, rep->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED)
		return client_fail(q, -errno, "mapping the channel: %s", strerror(errno));
	r = map_region(map, GPUQ_CHAN_FIXED_SIZE, q->rx_fds[0], 0);
	if (!r)
		r = map_region(map + GPUQ_CHAN_RX_OFF, GPUQ_CHAN_RX_SIZE, q->rx_fds[1],
			       rep->can_recv);
	if (!r)
		r = map_region(map + GPUQ_CHAN_TX_OFF, rep->size - GPUQ_CHAN_TX_OFF, q->rx_fds[2],
			       rep->can_send);
	if (r) {
		munmap(map, rep->size);
		return client_fail(q, r, "mapping the channel: %s", strerror(-r));
	}
	h = (struct gpuq_chan_hdr *)map;
	/* The reply says what gpuqd created; the header must agree. */
	if (h->magic != GPUQ_CHAN_MAGIC || h->version != GPUQ_CHAN_VERSION || rep->nslots < 2 ||
	    (rep->nslots & (rep->nslots - 1)) || rep->slot_size == 0 || rep->slot_size % 16 ||
	    gpuq_chan_size(rep->slot_size, rep->nslots) > rep->size ||
	    (rep->direction != GPUQ_CHAN_DIR_GPU_TO_CPU &&
	     rep->direction != GPUQ_CHAN_DIR_CPU_TO_GPU) ||
	    h->slot_size != rep->slot_size || h->nslots != rep->nslots ||
	    h->stride != gpuq_chan_stride(rep->slot_size) ||
	    h->format != gpuq_chan_format(rep->slot_size) || h->slots_off != GPUQ_CHAN_HDR_SIZE) {
		munmap(map, rep->size);
		return client_fail(q, -EPROTO, "the channel memory has an unknown layout");
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		munmap(map, rep->size);
		return -ENOMEM;
	}
	ch->q = q;
	ch->id = rep->chan_id;
	ch->slot_size = rep->slot_size;
	ch->nslots = rep->nslots;
	ch->direction = rep->direction;
	ch->format = gpuq_chan_format(rep->slot_size);
	ch->stride = gpuq_chan_stride(rep->slot_size);
	ch->lap_shift = gpuq_chan_lap_shift(rep->nslots);
	ch->can_send = rep->can_send;
	ch->can_recv = rep->can_recv;
	ch->row = rep->sender_row;
	ch->hdr = h;
	ch->size = rep->size;
	close(q->rx_fds[0]);
	close(q->rx_fds[1]);
	close(q->rx_fds[2]);
	ch->efd = q->rx_fds[3];
	while (q->rx_nfds > 4)
		close(q->rx_fds[--q->rx_nfds]);
	q->rx_nfds = 0;
	*out = ch;
	return 0;
}

static int chan_call(struct gpuq *q, Gpuq__Msg *req, gpuq_chan_t **out)
{
	Gpuq__Msg *rep;
	int r;

	pthread_mutex_lock(&q->lock);
	r = client_call(q, req, GPUQ__MSG__BODY_CHAN_REPLY, &rep);
	if (!r) {
		r = chan_map(q, rep->chan_reply, out);
		frame_free(rep);
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

GPUQ_API int gpuq_chan_create(gpuq_t *q, const char *name, size_t slot_size, unsigned nslots,
			      unsigned flags, gpuq_chan_t **out)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__ChanCreate cc = GPUQ__CHAN_CREATE__INIT;
	unsigned dir = flags & (GPUQ_CHAN_GPU_TO_CPU | GPUQ_CHAN_CPU_TO_GPU);

	if (!q || !name || !out || slot_size > UINT32_MAX ||
	    (dir != GPUQ_CHAN_GPU_TO_CPU && dir != GPUQ_CHAN_CPU_TO_GPU) ||
	    (flags & ~(0777u | GPUQ_CHAN_GPU_TO_CPU | GPUQ_CHAN_CPU_TO_GPU)))
		return -EINVAL;
	cc.name.data = (uint8_t *)name;
	cc.name.len = strlen(name);
	cc.slot_size = (uint32_t)slot_size;
	cc.nslots = nslots;
	cc.direction =
		dir == GPUQ_CHAN_GPU_TO_CPU ? GPUQ_CHAN_DIR_GPU_TO_CPU : GPUQ_CHAN_DIR_CPU_TO_GPU;
	cc.mode = flags & 0777;
	req.body_case = GPUQ__MSG__BODY_CHAN_CREATE;
	req.chan_create = &cc;
	return chan_call(q, &req, out);
}

GPUQ_API int gpuq_chan_open(gpuq_t *q, const char *name, unsigned flags, gpuq_chan_t **out)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__ChanOpen co = GPUQ__CHAN_OPEN__INIT;

	if (!q || !name || !out || !(flags & (GPUQ_CHAN_SEND | GPUQ_CHAN_RECV)) ||
	    (flags & ~(GPUQ_CHAN_SEND | GPUQ_CHAN_RECV)))
		return -EINVAL;
	co.name.data = (uint8_t *)name;
	co.name.len = strlen(name);
	co.send = !!(flags & GPUQ_CHAN_SEND);
	co.recv = !!(flags & GPUQ_CHAN_RECV);
	req.body_case = GPUQ__MSG__BODY_CHAN_OPEN;
	req.chan_open = &co;
	return chan_call(q, &req, out);
}

GPUQ_API void gpuq_chan_close(gpuq_chan_t *ch)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__ChanClose cl = GPUQ__CHAN_CLOSE__INIT;

	if (!ch)
		return;
	cl.chan_id = ch->id;
	req.body_case = GPUQ__MSG__BODY_CHAN_CLOSE;
	req.chan_close = &cl;
	pthread_mutex_lock(&ch->q->lock);
	if (client_call(ch->q, &req, GPUQ__MSG__BODY_OK, &rep) == 0)
		frame_free(rep);
	pthread_mutex_unlock(&ch->q->lock);
	munmap(ch->hdr, ch->size);
	close(ch->efd);
	free(ch);
}

GPUQ_API int gpuq_chan_own(gpuq_chan_t *ch, unsigned end, int own)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep;
	Gpuq__ChanOwn co = GPUQ__CHAN_OWN__INIT;
	int r;

	if (!ch || (end != GPUQ_CHAN_SEND && end != GPUQ_CHAN_RECV))
		return -EINVAL;
	co.chan_id = ch->id;
	co.end = end == GPUQ_CHAN_SEND ? 1 : 2; /* proto ChanOwn.end */
	co.own = !!own;
	req.body_case = GPUQ__MSG__BODY_CHAN_OWN;
	req.chan_own = &co;
	pthread_mutex_lock(&ch->q->lock);
	r = client_call(ch->q, &req, GPUQ__MSG__BODY_OK, &rep);
	if (!r)
		frame_free(rep);
	pthread_mutex_unlock(&ch->q->lock);
	return r;
}

GPUQ_API int gpuq_chan_info(gpuq_chan_t *ch, size_t *slot_size, unsigned *nslots,
			    unsigned *direction, void **mem, size_t *mem_size)
{
	if (!ch)
		return -EINVAL;
	if (slot_size)
		*slot_size = ch->slot_size;
	if (nslots)
		*nslots = ch->nslots;
	if (direction)
		*direction = ch->direction == GPUQ_CHAN_DIR_GPU_TO_CPU ? GPUQ_CHAN_GPU_TO_CPU :
									 GPUQ_CHAN_CPU_TO_GPU;
	if (mem)
		*mem = ch->hdr;
	if (mem_size)
		*mem_size = ch->size;
	return 0;
}

GPUQ_API int gpuq_chan_ends(gpuq_chan_t *ch)
{
	if (!ch)
		return -EINVAL;
	return (ch->can_send ? (int)GPUQ_CHAN_SEND : 0) | (ch->can_recv ? (int)GPUQ_CHAN_RECV : 0);
}

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

/* Waits for something to change, or the deadline (0: none). Returns -ETIMEDOUT past it. */
static int nap(uint64_t deadline, uint64_t *spin_end)
{
	uint64_t t = now_ns();
	struct timespec ts = { 0, 20000 };

	if (deadline && t >= deadline)
		return -ETIMEDOUT;
	if (!*spin_end)
		*spin_end = t + CHAN_SPIN_NS;
	if (t < *spin_end)
		return 0;
	nanosleep(&ts, NULL);
	return 0;
}

static uint64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/*
 * Writes the message at pos (taken, with room). TAG: every word carries
 * the tag; unit 0 goes last, so a reader that sees it (the GPU reads the
 * rest after it) never meets a message this process died writing. SEQ:
 * len and payload, then seq with release.
 */
static void put(const struct gpuq_chan *ch, uint64_t pos, const void *msg, uint32_t len)
{
	uint8_t *slot = slot_of(ch, pos);

	if (ch->format == GPUQ_CHAN_FMT_TAG) {
		uint64_t tag = (uint64_t)gpuq_chan_tag(pos, ch->lap_shift, len) << 32,
			 *w = (uint64_t *)slot;
		uint64_t rest = (uint64_t)gpuq_chan_tag_rest(pos, ch->lap_shift) << 32;
		uint32_t nw = 2 * gpuq_chan_tag_units(len), i;

		for (i = nw; i-- > 0;) {
			uint32_t d = 0, off = 4 * i;

			if (off + 4 <= len)
				memcpy(&d, (const uint8_t *)msg + off, 4);
			else if (off < len)
				memcpy(&d, (const uint8_t *)msg + off, len - off);
			__atomic_store_n(&w[i], (i < 2 ? tag : rest) | d,
					 i ? __ATOMIC_RELAXED : __ATOMIC_RELEASE);
		}
		return;
	}
	struct gpuq_chan_slot *s = (struct gpuq_chan_slot *)slot;

	memcpy(s + 1, msg, len);
	s->len = len;
	__atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
}

/*
 * Claims a way of this opener's row of the pending table (the position it
 * is taking goes there before the take, so gpuqd can repair it should the
 * process die: gpuq_chan.h, "Dead senders"). NULL when all are in use by
 * other threads of this process: the caller waits.
 */
static uint64_t *pending_way(const struct gpuq_chan *ch, uint64_t pos)
{
	uint64_t *row = ch->hdr->pending[ch->row];
	unsigned w;

	for (w = 0; w < GPUQ_CHAN_PEND_WAYS; w++) {
		uint64_t none = 0;

		if (__atomic_compare_exchange_n(&row[w], &none, pos + 1, 0, __ATOMIC_SEQ_CST,
						__ATOMIC_RELAXED))
			return &row[w];
	}
	return NULL;
}

GPUQ_API ssize_t gpuq_chan_send(gpuq_chan_t *ch, const void *msg, size_t len, int timeout_ms)
{
	struct gpuq_chan_hdr *h;
	uint64_t deadline = 0, spin_end = 0, pos, *way = NULL;
	int r, timed = 0;

	if (!ch || (len && !msg))
		return -EINVAL;
	if (!ch->can_send)
		return -EBADF; /* opened to receive only: the ring is mapped read-only */
	h = ch->hdr;
	if (len > ch->slot_size)
		return -EMSGSIZE;
	if (__atomic_load_n(&h->tail_owner, __ATOMIC_ACQUIRE))
		return -EBUSY; /* a GPU keeps this channel's tail: its kernels are the senders */
	pos = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
	for (;;) {
		uint64_t head = __atomic_load_n(&ch->head_seen, __ATOMIC_RELAXED);

		if (pos & GPUQ_CHAN_HELD) {
			if (__atomic_load_n(&h->tail_owner, __ATOMIC_ACQUIRE)) {
				r = -EBUSY; /* a GPU took the tail after our first look */
				goto out;
			}
			/* Held by nobody (what a dead owner's kernels left): let it go, look again. */
			__atomic_compare_exchange_n(&h->tail, &pos, pos & ~GPUQ_CHAN_HELD, 0,
						    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
			pos = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
			continue;
		}
		if (pos - head >= ch->nslots) {
			head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;
			__atomic_store_n(&ch->head_seen, head, __ATOMIC_RELAXED);
		}
		if (!way && !(pos - head >= ch->nslots && (int64_t)(pos - head) > 0))
			way = pending_way(ch, pos);
		if (!way || (pos - head >= ch->nslots && (int64_t)(pos - head) > 0)) {
			/* Full (position pos's slot still holds an unread message), or no way free. */
			if (timeout_ms == 0) {
				r = -EAGAIN;
				goto out;
			}
			if (!timed) { /* the clock is read only once there is a wait to time */
				deadline = deadline_of(timeout_ms);
				timed = 1;
			}
			r = xfer_alive(ch->q); /* gpuqd gone: nobody repairs or drains for us */
			if (!r)
				r = nap(deadline, &spin_end);
			if (r)
				goto out;
			pos = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
			continue;
		}
		/* The position about to be taken is on record before the take. */
		__atomic_store_n(way, pos + 1, __ATOMIC_SEQ_CST);
		if (!__atomic_compare_exchange_n(&h->tail, &pos, pos + 1, 1, __ATOMIC_SEQ_CST,
						 __ATOMIC_RELAXED))
			continue; /* pos was reloaded by the failed CAS */
		put(ch, pos, msg, (uint32_t)len);
		break;
	}
	__atomic_store_n(way, 0, __ATOMIC_RELEASE);
	/*
	 * A CPU sender wakes a sleeping receiver itself (a futex, which needs
	 * no write access); gpuqd does it for kernels and for event loops. No
	 * CPU receiver sleeps while a GPU keeps the receive end.
	 */
	if (__atomic_load_n(&h->rx_owner, __ATOMIC_RELAXED))
		return (ssize_t)len;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&h->rx_sleepers, __ATOMIC_RELAXED))
		futex(gpuq_chan_futex_word(slot_of(ch, pos), ch->format), FUTEX_WAKE, INT_MAX,
		      NULL);
	return (ssize_t)len;
out:
	if (way)
		__atomic_store_n(way, 0, __ATOMIC_RELEASE);
	return r;
}

/*
 * Copies the message at pos into buf (cap bytes; *len is its full length)
 * if it is all there. Returns 1, 2 (a skip marker: no message), 0 (not
 * there yet) or -1 (the slot holds a later lap: head moved on). The lengths are the sender's word: never
 * trusted past the slot.
 */
static int read_at(const struct gpuq_chan *ch, uint64_t pos, void *buf, size_t cap, size_t *len)
{
	uint8_t *slot = slot_of(ch, pos);
	uint32_t l;

	if (ch->format == GPUQ_CHAN_FMT_TAG) {
		const uint64_t *w = (const uint64_t *)slot;
		uint8_t *d = buf;
		uint64_t v0 = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE), v1;
		uint32_t tag = (uint32_t)(v0 >> 32), rest = gpuq_chan_tag_rest(pos, ch->lap_shift),
			 nw, whole, i, n;
		int lap = gpuq_chan_tag_lap(tag, pos, ch->lap_shift);

		if (lap)
			return lap < 0 ? 0 :
					 -1; /* not there yet, or a later lap's: head moved on */
		l = gpuq_chan_tag_len(tag);
		if (l == GPUQ_CHAN_TAG_SKIP)
			return 2; /* a dead sender's position, skipped by gpuqd */
		if (l > ch->slot_size)
			l = ch->slot_size;
		nw = 2 * gpuq_chan_tag_units(l);
		n = l < cap ? l : (uint32_t)cap;
		whole = n / 8;
		/* A unit (two words) at a time; the payload is each word's low half. */
		for (i = 0; i < nw; i += 2) {
			uint64_t p;

			if (i)
				v0 = __atomic_load_n(&w[i], __ATOMIC_RELAXED);
			v1 = __atomic_load_n(&w[i + 1], __ATOMIC_RELAXED);
			if ((uint32_t)(v0 >> 32) != (i ? rest : tag) ||
			    (uint32_t)(v1 >> 32) != (i ? rest : tag))
				return 0; /* still on its way (the GPU's writes land in any order), or torn by a newer lap */
			p = (v0 & 0xffffffffu) | v1 << 32;
			if (i / 2 < whole)
				memcpy(d + 4 * i, &p, 8);
			else if (4 * i < n)
				memcpy(d + 4 * i, &p, n - 4 * i);
		}
	} else {
		struct gpuq_chan_slot *s = (struct gpuq_chan_slot *)slot;
		int st = gpuq_chan_slot_state(slot, pos, ch->format, ch->lap_shift);

		if (st != 1)
			return st;
		l = __atomic_load_n(&s->len, __ATOMIC_RELAXED);
		if (l == GPUQ_CHAN_SEQ_SKIP)
			return 2;
		if (l > ch->slot_size)
			l = ch->slot_size;
		memcpy(buf, s + 1, l < cap ? l : cap);
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	*len = l;
	return 1;
}

/*
 * Takes up to max messages at head: copies them out first, then claims
 * them all (and any skip markers among them) with one CAS on head. A lost
 * CAS drops the copies (another receiver took some; slots may be refilled)
 * and looks again. Returns how many (>= 1), -EAGAIN, or -EBUSY (a GPU
 * holds the head).
 */
static int try_take(const struct gpuq_chan *ch, uint8_t *bufs, size_t stride, size_t *lens,
		    unsigned max)
{
	struct gpuq_chan_hdr *h = ch->hdr;
	uint64_t pos = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);

	for (;;) {
		unsigned k = 0, m = 0; /* positions looked at, messages copied */

		if (pos & GPUQ_CHAN_HELD) {
			if (__atomic_load_n(&h->rx_owner, __ATOMIC_ACQUIRE))
				return -EBUSY; /* a GPU took the head */
			/*
			 * Held by nobody: a dead owner's kernels stored head after
			 * gpuqd let the end go. Let it go again, look again.
			 */
			__atomic_compare_exchange_n(&h->head, &pos, pos & ~GPUQ_CHAN_HELD, 0,
						    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
			pos = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
			continue;
		}
		while (m < max && k < ch->nslots) {
			int st = read_at(ch, pos + k, bufs + (size_t)m * stride, stride, &lens[m]);

			if (st == 1)
				m++;
			if (st >= 1) {
				k++;
				continue;
			}
			if (st < 0 && !k) {
				/* A later lap: head moved on under us, unless it did not (a scribbled slot). */
				if (__atomic_load_n(&h->head, __ATOMIC_ACQUIRE) == pos)
					return -EAGAIN;
				k = 0;
				goto reload;
			}
			break;
		}
		if (!k)
			return -EAGAIN;
		uint64_t seen = pos;

		if (__atomic_compare_exchange_n(&h->head, &seen, pos + k, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			/*
			 * Another receiver asleep on the slot of pos (the head it
			 * saw) would sleep on past messages others took: wake it to
			 * look again, and sleep on the new head.
			 */
			if (__atomic_load_n(&h->rx_sleepers, __ATOMIC_RELAXED))
				futex(gpuq_chan_futex_word(slot_of(ch, pos), ch->format),
				      FUTEX_WAKE, INT_MAX, NULL);
			if (m)
				return (int)m;
			pos += k; /* only skip markers: look past them */
			continue;
		}
reload:
		pos = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
	}
}

static int head_ready(const struct gpuq_chan *ch)
{
	uint64_t pos = __atomic_load_n(&ch->hdr->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;

	return gpuq_chan_slot_state(slot_of(ch, pos), pos, ch->format, ch->lap_shift) == 1;
}

/* Asks gpuqd to write the wake pipe when the head slot fills (event loops). */
static void arm(gpuq_chan_t *ch)
{
	__atomic_store_n(&ch->hdr->rx_waiting, 1, __ATOMIC_SEQ_CST);
}

/* Empties the wake pipe without blocking, whatever the caller did to the fd's flags. */
static void drain(gpuq_chan_t *ch)
{
	struct pollfd p = { .fd = ch->efd, .events = POLLIN };
	char buf[256];

	while (poll(&p, 1, 0) > 0 && (p.revents & POLLIN) &&
	       read(ch->efd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
		;
}

/*
 * Sleeps until the message at head may be there, up to ms: on the futex of
 * the head slot (gpuq_chan.h, "Sleeping receivers"), counted in
 * rx_sleepers so that senders know to wake it.
 */
static void sleep_on_head(gpuq_chan_t *ch, int ms)
{
	struct gpuq_chan_hdr *h = ch->hdr;
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	uint64_t pos;
	uint32_t *fw, v;

	__atomic_add_fetch(&h->rx_sleepers, 1, __ATOMIC_SEQ_CST);
	pos = __atomic_load_n(&h->head, __ATOMIC_SEQ_CST) & ~GPUQ_CHAN_HELD;
	fw = gpuq_chan_futex_word(slot_of(ch, pos), ch->format);
	v = __atomic_load_n(fw, __ATOMIC_SEQ_CST);
	if (gpuq_chan_slot_state(slot_of(ch, pos), pos, ch->format, ch->lap_shift) != 1)
		futex(fw, FUTEX_WAIT, v, &ts);
	__atomic_sub_fetch(&h->rx_sleepers, 1, __ATOMIC_SEQ_CST);
}

/* gpuq_chan_recv and gpuq_chan_recv_batch: up to max messages, the first within timeout_ms. */
static int recv_some(gpuq_chan_t *ch, uint8_t *bufs, size_t stride, size_t *lens, unsigned max,
		     int timeout_ms)
{
	uint64_t deadline = 0, spin_end = 0;
	int n, timed = 0;

	if (!ch->can_recv)
		return -EBADF; /* opened to send only: head is mapped read-only */
	if (__atomic_load_n(&ch->hdr->rx_owner, __ATOMIC_ACQUIRE))
		return -EBUSY; /* a GPU keeps this channel's head: its kernels are the receivers */
	for (;;) {
		uint64_t t;
		int ms;

		n = try_take(ch, bufs, stride, lens, max);
		if (n >= 0)
			break;
		if (n == -EBUSY)
			return n;
		if (timeout_ms == 0)
			break;
		t = now_ns();
		if (!timed) { /* the clock is read only once there is a wait to time */
			deadline = deadline_of(timeout_ms);
			timed = 1;
		}
		if (deadline && t >= deadline)
			return -ETIMEDOUT;
		if (!spin_end)
			spin_end = t + CHAN_SPIN_NS;
		if (t < spin_end)
			continue;
		/* Polled long enough: sleep until a CPU sender (or gpuqd, for kernels) wakes us. */
		ms = deadline ? (int)((deadline - t) / 1000000 + 1) : 1000;
		if (ms > 1000)
			ms = 1000;     /* bounds the cost of a wakeup lost to a dead process */
		n = xfer_alive(ch->q); /* gpuqd gone: nothing will arrive */
		if (n)
			return n;
		/* The futex does not see gpuqd die: wake often enough to notice within 100 ms. */
		if (ms > 50)
			ms = 50;
		sleep_on_head(ch, ms);
		spin_end = 0;
	}
	if (ch->fd_mode && !head_ready(ch)) {
		drain(ch);
		arm(ch);
	}
	return n;
}

GPUQ_API ssize_t gpuq_chan_recv(gpuq_chan_t *ch, void *buf, size_t cap, int timeout_ms)
{
	size_t len;
	int n;

	if (!ch || (cap && !buf))
		return -EINVAL;
	n = recv_some(ch, buf, cap, &len, 1, timeout_ms);
	return n < 0 ? n : (ssize_t)len;
}

GPUQ_API int gpuq_chan_recv_batch(gpuq_chan_t *ch, void *bufs, size_t stride, size_t *lens,
				  unsigned max, int timeout_ms)
{
	if (!ch || !bufs || !lens || !max)
		return -EINVAL;
	return recv_some(ch, bufs, stride, lens, max, timeout_ms);
}

GPUQ_API int gpuq_chan_fd(gpuq_chan_t *ch)
{
	if (!ch)
		return -EINVAL;
	if (!ch->can_recv)
		return -EBADF;
	if (!ch->fd_mode) {
		ch->fd_mode = 1;
		arm(ch);
	}
	return ch->efd;
}
