/* chan.c: libgpuq channels: create/open/close through gpuqd, send and receive on the shared ring. */
#include "build-config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "gpuq/gpuq_chan.h"

/* How long a waiting receiver (or a sender facing a full ring) spins before it sleeps. */
#define CHAN_SPIN_NS 50000ull

/* An open channel. Created by gpuq_chan_create/open, freed by gpuq_chan_close. */
struct gpuq_chan {
	struct gpuq *q;
	uint32_t id;
	struct gpuq_chan_hdr *hdr;
	size_t size;
	int efd;
	int fd_mode;
	/*
	 * The geometry as gpuqd announced it, checked once. Every process
	 * with access can write the shared header: it is never read again.
	 */
	uint32_t slot_size, nslots, direction;
};

/* Slot of position pos, from the private geometry: always inside the mapping. */
static struct gpuq_chan_slot *slot_of(const struct gpuq_chan *ch, uint64_t pos)
{
	return (struct gpuq_chan_slot *)((uint8_t *)ch->hdr + GPUQ_CHAN_HDR_SIZE +
					 (pos & (ch->nslots - 1)) *
						 (uint64_t)(GPUQ_CHAN_SLOT_HDR + ch->slot_size));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Turns a ChanReply and its fds into an open channel. */
static int chan_map(struct gpuq *q, const Gpuq__ChanReply *rep, gpuq_chan_t **out)
{
	struct gpuq_chan_hdr *h;
	struct gpuq_chan *ch;
	struct stat st;
	void *map;

	if (q->rx_nfds < 2 || fstat(q->rx_fds[0], &st) < 0 || (uint64_t)st.st_size < rep->size ||
	    rep->size < GPUQ_CHAN_HDR_SIZE)
		return client_fail(q, -EPROTO, "gpuqd sent an unusable channel");
	map = mmap(NULL, rep->size, PROT_READ | PROT_WRITE, MAP_SHARED, q->rx_fds[0], 0);
	if (map == MAP_FAILED)
		return client_fail(q, -errno, "mapping the channel: %s", strerror(errno));
	h = map;
	/* The reply says what gpuqd created; the header must agree. */
	if (h->magic != GPUQ_CHAN_MAGIC || h->version != GPUQ_CHAN_VERSION || rep->nslots < 2 ||
	    (rep->nslots & (rep->nslots - 1)) || rep->slot_size == 0 || rep->slot_size % 16 ||
	    gpuq_chan_size(rep->slot_size, rep->nslots) > rep->size ||
	    (rep->direction != GPUQ_CHAN_DIR_GPU_TO_CPU && rep->direction != GPUQ_CHAN_DIR_CPU_TO_GPU) ||
	    h->slot_size != rep->slot_size || h->nslots != rep->nslots ||
	    h->stride != GPUQ_CHAN_SLOT_HDR + (uint64_t)rep->slot_size ||
	    h->slots_off != GPUQ_CHAN_HDR_SIZE) {
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
	ch->hdr = h;
	ch->size = rep->size;
	close(q->rx_fds[0]);
	ch->efd = q->rx_fds[1];
	while (q->rx_nfds > 2)
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
	cc.name = (char *)name;
	cc.slot_size = (uint32_t)slot_size;
	cc.nslots = nslots;
	cc.direction = dir == GPUQ_CHAN_GPU_TO_CPU ? GPUQ_CHAN_DIR_GPU_TO_CPU : GPUQ_CHAN_DIR_CPU_TO_GPU;
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
	co.name = (char *)name;
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
		*direction = ch->direction == GPUQ_CHAN_DIR_GPU_TO_CPU ? GPUQ_CHAN_GPU_TO_CPU
								       : GPUQ_CHAN_CPU_TO_GPU;
	if (mem)
		*mem = ch->hdr;
	if (mem_size)
		*mem_size = ch->size;
	return 0;
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

GPUQ_API ssize_t gpuq_chan_send(gpuq_chan_t *ch, const void *msg, size_t len, int timeout_ms)
{
	struct gpuq_chan_hdr *h;
	uint64_t deadline, spin_end = 0, pos;
	int r;

	if (!ch || (len && !msg))
		return -EINVAL;
	h = ch->hdr;
	if (len > ch->slot_size)
		return -EMSGSIZE;
	if (__atomic_load_n(&h->tail_owner, __ATOMIC_ACQUIRE))
		return -EBUSY; /* a GPU keeps this channel's tail: its kernels are the senders */
	deadline = deadline_of(timeout_ms);
	pos = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
	for (;;) {
		uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
		struct gpuq_chan_slot *s;

		if (pos - head >= ch->nslots && (int64_t)(pos - head) > 0) {
			/* Full: position pos's slot still holds an unread message. */
			if (timeout_ms == 0)
				return -EAGAIN;
			r = nap(deadline, &spin_end);
			if (r)
				return r;
			pos = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
			continue;
		}
		if (!__atomic_compare_exchange_n(&h->tail, &pos, pos + 1, 1, __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED))
			continue; /* pos was reloaded by the failed CAS */
		s = slot_of(ch, pos);
		memcpy(s + 1, msg, len);
		s->len = (uint32_t)len;
		__atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
		break;
	}
	/* A CPU sender wakes a sleeping receiver itself; gpuqd does it for kernels. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&h->rx_waiting, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&h->rx_waiting, 0, __ATOMIC_ACQ_REL)) {
		uint64_t one = 1;

		if (write(ch->efd, &one, sizeof(one)) < 0)
			(void)0; /* counter saturated: receivers wake anyway */
	}
	return (ssize_t)len;
}

/* Takes the message at head if there is one: its length, or -EAGAIN. */
static ssize_t try_take(const struct gpuq_chan *ch, void *buf, size_t cap)
{
	struct gpuq_chan_hdr *h = ch->hdr;

	for (;;) {
		uint64_t pos = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
		struct gpuq_chan_slot *s = slot_of(ch, pos);
		uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		uint32_t len;

		if (seq != pos + 1) {
			if (seq <= pos)
				return -EAGAIN; /* empty */
			continue;          /* another receiver moved head: look again */
		}
		len = s->len;
		/* The length is the sender's word: never trust it past the slot. */
		if (len > ch->slot_size)
			len = ch->slot_size;
		/* Copy first, then claim: a lost CAS means the copy may be torn; drop it. */
		memcpy(buf, s + 1, len < cap ? len : cap);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (!__atomic_compare_exchange_n(&h->head, &pos, pos + 1, 0, __ATOMIC_ACQ_REL,
						 __ATOMIC_RELAXED))
			continue;
		return len;
	}
}

static int head_ready(const struct gpuq_chan *ch)
{
	uint64_t pos = __atomic_load_n(&ch->hdr->head, __ATOMIC_ACQUIRE);

	return __atomic_load_n(&slot_of(ch, pos)->seq, __ATOMIC_ACQUIRE) == pos + 1;
}

/* Asks to be woken (by gpuqd or a CPU sender) when the head slot fills. */
static void arm(gpuq_chan_t *ch)
{
	__atomic_store_n(&ch->hdr->rx_waiting, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (head_ready(ch)) {
		uint64_t one = 1;

		/* Raced with a sender: make the fd readable ourselves. */
		if (write(ch->efd, &one, sizeof(one)) < 0)
			(void)0;
	}
}

GPUQ_API ssize_t gpuq_chan_recv(gpuq_chan_t *ch, void *buf, size_t cap, int timeout_ms)
{
	uint64_t deadline, spin_end = 0;
	ssize_t n;

	if (!ch || (cap && !buf))
		return -EINVAL;
	deadline = deadline_of(timeout_ms);
	for (;;) {
		struct pollfd p = { .fd = ch->efd, .events = POLLIN };
		uint64_t t, v;
		int ms;

		n = try_take(ch, buf, cap);
		if (n >= 0)
			break;
		if (timeout_ms == 0)
			break;
		t = now_ns();
		if (deadline && t >= deadline)
			return -ETIMEDOUT;
		if (!spin_end)
			spin_end = t + CHAN_SPIN_NS;
		if (t < spin_end)
			continue;
		/* Polled long enough: sleep until gpuqd (or a CPU sender) rings. */
		__atomic_store_n(&ch->hdr->rx_waiting, 1, __ATOMIC_SEQ_CST);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (head_ready(ch))
			continue;
		ms = deadline ? (int)((deadline - t) / 1000000 + 1) : 1000;
		if (ms > 1000)
			ms = 1000; /* bounds the cost of a wakeup lost to a dead process */
		if (poll(&p, 1, ms) > 0 && read(ch->efd, &v, sizeof(v)) < 0)
			(void)0;
		spin_end = 0;
	}
	if (ch->fd_mode && !head_ready(ch)) {
		uint64_t v;

		if (read(ch->efd, &v, sizeof(v)) < 0)
			(void)0;
		arm(ch);
	}
	return n;
}

GPUQ_API int gpuq_chan_recv_batch(gpuq_chan_t *ch, void *bufs, size_t stride, size_t *lens,
				  unsigned max, int timeout_ms)
{
	unsigned i;
	ssize_t n;

	if (!ch || !bufs || !lens || !max)
		return -EINVAL;
	for (i = 0; i < max; i++) {
		n = gpuq_chan_recv(ch, (uint8_t *)bufs + (size_t)i * stride, stride,
				   i ? 0 : timeout_ms);
		if (n < 0) {
			if (i)
				break;
			return (int)n;
		}
		lens[i] = (size_t)n;
	}
	return (int)i;
}

GPUQ_API int gpuq_chan_fd(gpuq_chan_t *ch)
{
	if (!ch)
		return -EINVAL;
	if (!ch->fd_mode) {
		ch->fd_mode = 1;
		arm(ch);
	}
	return ch->efd;
}
