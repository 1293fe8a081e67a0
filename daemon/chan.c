/* chan.c: named channels: creation, permissions, lifetime, dead-sender repair, and waking sleeping receivers. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "log.h"

#define CHAN_SLOT_MAX (1u << 20)
#define CHAN_NSLOTS_MAX (1u << 20)

int chan_name_valid(const char *name, size_t n)
{
	size_t i;

	if (n == 0 || n >= GPUQ_CHAN_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0; /* a NUL included */
	}
	return name[0] != '.';
}

static struct chan_ring *find(struct chan_registry *r, const char *name)
{
	struct chan_ring *c;

	for (c = r->list; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * Frees the slots' pages now: openers may keep the sender region's
 * descriptor after the channel is gone, and what gpuqd wrote there (a
 * repair rewrites every slot) must not live on, uncounted, with it. The
 * header pages stay; emptied slots read as zeros, which hold no message.
 */
static void slots_drop(struct chan_ring *c)
{
	off_t off = GPUQ_CHAN_HDR_SIZE - GPUQ_CHAN_TX_OFF;

	if (c->tx_rw >= 0 && c->size > GPUQ_CHAN_HDR_SIZE &&
	    fallocate(c->tx_rw, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
		      (off_t)(c->size - GPUQ_CHAN_HDR_SIZE)) < 0)
		log_warn("channel '%s': freeing its slots: %s", c->name, strerror(errno));
}

static void ring_free(struct chan_ring *c)
{
	slots_drop(c);
	if (c->hdr)
		munmap(c->hdr, c->size);
	close_fd(&c->fixed_ro);
	close_fd(&c->rx_rw);
	close_fd(&c->rx_ro);
	close_fd(&c->tx_rw);
	close_fd(&c->tx_ro);
	free(c);
}

/*
 * A sealed memfd of size bytes mapped at addr (MAP_FIXED, inside gpuqd's
 * reservation), with a read-only descriptor of its own (a fresh open file
 * description: mmap PROT_WRITE of it fails) in *ro. *rw keeps the
 * read-write one, or (rw NULL) it is closed. The file mode becomes 0400, so
 * nobody but gpuqd's user (and root) can reopen it writable through /proc.
 */
static int region(const char *what, uint64_t size, void *addr, int *rw, int *ro)
{
	char path[64];
	int fd, r = 0;

	fd = memfd_create(what, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
	    mmap(addr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		goto fail;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	*ro = open(path, O_RDONLY | O_CLOEXEC);
	if (*ro < 0 || fchmod(fd, 0400) < 0)
		goto fail;
	if (rw)
		*rw = fd;
	else
		close(fd);
	return 0;
fail:
	r = -errno;
	close_fd(ro);
	close(fd);
	return r;
}

/* Sets up the ring's memory: nothing in the slots is touched (a zeroed slot holds no message). */
static int ring_memory(struct chan_ring *c)
{
	struct gpuq_chan_hdr *h;
	uint8_t *base;
	int r;

	base = mmap(NULL, c->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	c->hdr = h = (struct gpuq_chan_hdr *)base;
	r = region("gpuq-chan-fixed", GPUQ_CHAN_FIXED_SIZE, base, NULL, &c->fixed_ro);
	if (!r)
		r = region("gpuq-chan-rx", GPUQ_CHAN_RX_SIZE, base + GPUQ_CHAN_RX_OFF, &c->rx_rw,
			   &c->rx_ro);
	if (!r)
		r = region("gpuq-chan-tx", c->size - GPUQ_CHAN_TX_OFF, base + GPUQ_CHAN_TX_OFF,
			   &c->tx_rw, &c->tx_ro);
	if (r)
		return r;
	h->slot_size = c->slot_size;
	h->nslots = c->nslots;
	h->direction = c->direction;
	h->stride = gpuq_chan_stride(c->slot_size);
	h->slots_off = GPUQ_CHAN_HDR_SIZE;
	h->total_size = c->size;
	h->format = gpuq_chan_format(c->slot_size);
	h->version = GPUQ_CHAN_VERSION;
	atomic_thread_fence(memory_order_release);
	h->magic = GPUQ_CHAN_MAGIC;
	return 0;
}

/* File-like check: owner bits for the owner (and root), group bits for a member of the group, else other. */
static int allowed(const struct chan_ring *c, int send, int recv, const struct chan_cred *who)
{
	unsigned bits, i;
	int member = who->gid == c->gid;

	for (i = 0; i < who->ngroups && !member; i++)
		member = who->groups[i] == c->gid;
	if (who->uid == 0 || who->uid == c->uid)
		bits = (c->mode >> 6) & 7;
	else if (member)
		bits = (c->mode >> 3) & 7;
	else
		bits = c->mode & 7;
	if (send && !(bits & 2))
		return 0;
	if (recv && !(bits & 4))
		return 0;
	return 1;
}

/* A new opening of c granted ends, under the registry lock. NULL with *err. */
static struct chan *opening(struct chan_ring *c, unsigned ends, int *err)
{
	struct chan *o = calloc(1, sizeof(*o));
	int p[2];
	unsigned i;

	if (!o) {
		*err = -ENOMEM;
		return NULL;
	}
	o->ring = c;
	o->ends = ends;
	o->row = -1;
	if (ends & CHAN_END_SEND) {
		for (i = 0; i < GPUQ_CHAN_SENDERS_MAX && c->rows[i]; i++)
			;
		if (i == GPUQ_CHAN_SENDERS_MAX) {
			free(o);
			*err = -EUSERS;
			return NULL;
		}
		o->row = (int)i;
	}
	/* The client's end is the read end; gpuqd's write end is its own open file description. */
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		*err = -errno;
		free(o);
		return NULL;
	}
	o->wake_rd = p[0];
	o->wake_wr = p[1];
	if (o->row >= 0) {
		c->rows[o->row] = 1;
		memset(c->hdr->pending[o->row], 0, sizeof(c->hdr->pending[o->row]));
	}
	o->next = c->openings;
	c->openings = o;
	c->refs++;
	*err = 0;
	return o;
}

struct chan *chan_create(struct chan_registry *r, const char *name, size_t namelen,
			 uint32_t slot_size, uint32_t nslots, uint32_t direction, unsigned mode,
			 const struct chan_cred *who, int *err)
{
	struct chan_ring *c;
	struct chan *o;
	uint64_t size;

	if (!chan_name_valid(name, namelen) || slot_size == 0 || slot_size > CHAN_SLOT_MAX ||
	    nslots < 2 || nslots > CHAN_NSLOTS_MAX || (nslots & (nslots - 1)) ||
	    (direction != GPUQ_CHAN_DIR_GPU_TO_CPU && direction != GPUQ_CHAN_DIR_CPU_TO_GPU) ||
	    mode > 0777) {
		*err = -EINVAL;
		return NULL;
	}
	slot_size = (slot_size + 15) & ~15u;
	size = gpuq_chan_size(slot_size, nslots);
	if (size > r->max_size) {
		*err = -E2BIG;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = -ENOMEM;
		return NULL;
	}
	c->fixed_ro = c->rx_rw = c->rx_ro = c->tx_rw = c->tx_ro = -1;
	memcpy(c->name, name, namelen);
	c->size = size;
	c->uid = who->uid;
	c->gid = who->gid;
	c->mode = mode ? mode : 0600;
	c->slot_size = slot_size;
	c->nslots = nslots;
	c->direction = direction;
	*err = ring_memory(c);
	if (*err) {
		ring_free(c);
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	if (find(r, c->name)) {
		pthread_mutex_unlock(&r->lock);
		ring_free(c);
		*err = -EEXIST;
		return NULL;
	}
	o = opening(c, CHAN_END_SEND | CHAN_END_RECV, err);
	if (!o) {
		pthread_mutex_unlock(&r->lock);
		ring_free(c);
		return NULL;
	}
	c->next = r->list;
	r->list = c;
	r->count++;
	pthread_mutex_unlock(&r->lock);
	log_info("channel '%s' created by uid %u: %u slots of %u bytes, %s, mode %04o", c->name,
		 (unsigned)who->uid, nslots, slot_size,
		 direction == GPUQ_CHAN_DIR_GPU_TO_CPU ? "GPU->CPU" : "CPU->GPU", c->mode);
	return o;
}

int chan_list(struct chan_registry *r, const struct chan_cred *who, struct chan_info **out)
{
	struct chan_info *arr;
	struct chan_ring *c;
	int n = 0;

	pthread_mutex_lock(&r->lock);
	arr = calloc(r->count ? r->count : 1, sizeof(*arr));
	if (!arr) {
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	for (c = r->list; c && (unsigned)n < r->count; c = c->next) {
		struct chan_info *ci = &arr[n];
		const struct gpuq_chan_hdr *h = c->hdr;

		if (who->uid != 0 && who->uid != getuid() && !allowed(c, 1, 0, who) &&
		    !allowed(c, 0, 1, who))
			continue; /* no access at all */
		snprintf(ci->name, sizeof(ci->name), "%s", c->name);
		ci->uid = c->uid;
		ci->gid = c->gid;
		ci->mode = c->mode;
		ci->users = c->refs;
		ci->slot_size = c->slot_size;
		ci->nslots = c->nslots;
		ci->direction = c->direction;
		/* Positions only; GPUQ_CHAN_HELD shows as the owners. */
		ci->head = __atomic_load_n(&h->head, __ATOMIC_RELAXED) & ~GPUQ_CHAN_HELD;
		ci->tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED) & ~GPUQ_CHAN_HELD;
		ci->tail_owner = __atomic_load_n(&h->tail_owner, __ATOMIC_RELAXED);
		ci->rx_owner = __atomic_load_n(&h->rx_owner, __ATOMIC_RELAXED);
		ci->rx_waiting = __atomic_load_n(&h->rx_waiting, __ATOMIC_RELAXED) ||
				 __atomic_load_n(&h->rx_sleepers, __ATOMIC_RELAXED);
		ci->senders_done = __atomic_load_n(&h->senders_done, __ATOMIC_RELAXED);
		n++;
	}
	pthread_mutex_unlock(&r->lock);
	*out = arr;
	return n;
}

struct chan *chan_open(struct chan_registry *r, const char *name, size_t namelen, int send,
		       int recv, const struct chan_cred *who, int *err)
{
	char key[GPUQ_CHAN_NAME_MAX];
	struct chan_ring *c;
	struct chan *o = NULL;

	if (!chan_name_valid(name, namelen) || (!send && !recv)) {
		*err = -EINVAL;
		return NULL;
	}
	memcpy(key, name, namelen);
	key[namelen] = 0;
	pthread_mutex_lock(&r->lock);
	c = find(r, key);
	if (!c)
		*err = -ENOENT;
	else if (!allowed(c, send, recv, who))
		*err = -EACCES;
	else
		o = opening(c, (send ? CHAN_END_SEND : 0) | (recv ? CHAN_END_RECV : 0), err);
	pthread_mutex_unlock(&r->lock);
	return o;
}

void chan_reply_fds(const struct chan *o, int fds[4])
{
	const struct chan_ring *c = o->ring;

	fds[0] = c->fixed_ro;
	fds[1] = o->ends & CHAN_END_RECV ? c->rx_rw : c->rx_ro;
	fds[2] = o->ends & CHAN_END_SEND ? c->tx_rw : c->tx_ro;
	fds[3] = o->wake_rd;
}

/* The slot of position pos in mem, from the caller's own geometry. */
static uint8_t *slot_in(void *mem, uint32_t slot_size, uint32_t nslots, uint64_t pos)
{
	return (uint8_t *)mem + GPUQ_CHAN_HDR_SIZE +
	       (pos & (nslots - 1)) * gpuq_chan_stride(slot_size);
}

/* Is the whole message of position pos in its slot (every unit, for TAG), or a skip marker? */
static int slot_complete(void *mem, uint32_t slot_size, uint32_t nslots, uint64_t pos)
{
	uint32_t format = gpuq_chan_format(slot_size), tag, len, i;
	const uint64_t *w = (const uint64_t *)slot_in(mem, slot_size, nslots, pos);
	unsigned shift = gpuq_chan_lap_shift(nslots);
	uint64_t w0;

	if (format != GPUQ_CHAN_FMT_TAG)
		return gpuq_chan_slot_state(w, pos, format, shift) == 1;
	w0 = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE);
	tag = (uint32_t)(w0 >> 32);
	if (gpuq_chan_tag_lap(tag, pos, shift) != 0)
		return 0;
	len = gpuq_chan_tag_len(tag);
	if (len == GPUQ_CHAN_TAG_SKIP)
		return 1;
	if (len > slot_size)
		return 0;
	for (i = 1; i < 2 * gpuq_chan_tag_units(len); i++)
		if ((uint32_t)(__atomic_load_n(&w[i], __ATOMIC_RELAXED) >> 32) !=
		    (i < 2 ? tag : gpuq_chan_tag_rest(pos, shift)))
			return 0;
	return 1;
}

uint64_t chan_repair_tail(void *mem, uint32_t slot_size, uint32_t nslots)
{
	struct gpuq_chan_hdr *h = mem;
	uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD, pos = head,
		 p;
	unsigned shift = gpuq_chan_lap_shift(nslots);

	/* Keep the messages up to the first position the dead sender did not fill whole... */
	while (pos - head < nslots && slot_complete(mem, slot_size, nslots, pos))
		pos++;
	/*
	 * ...and empty every slot after it, up to a ring past head: the
	 * next senders take those positions again, and a message the
	 * dead sender left there would pass for theirs.
	 */
	for (p = pos; p - head < nslots; p++) {
		uint8_t *slot = slot_in(mem, slot_size, nslots, p);

		if (gpuq_chan_format(slot_size) == GPUQ_CHAN_FMT_TAG) {
			/* Every word tagged with the lap before p's: not there yet, whatever the lap count. */
			uint64_t w = (uint64_t)gpuq_chan_tag(p - nslots, shift, 0) << 32, i;

			for (i = 0; i < gpuq_chan_stride(slot_size) / 8; i++)
				__atomic_store_n((uint64_t *)slot + i, w, __ATOMIC_RELAXED);
		} else
			__atomic_store_n(&((struct gpuq_chan_slot *)slot)->seq, p,
					 __ATOMIC_RELAXED);
	}
	__atomic_store_n(&h->tail, pos, __ATOMIC_RELEASE);
	return pos;
}

/* Writes the skip marker at position pos (nothing else writes that slot now). */
static void put_skip(struct chan_ring *c, uint64_t pos)
{
	uint8_t *slot = slot_in(c->hdr, c->slot_size, c->nslots, pos);
	unsigned shift = gpuq_chan_lap_shift(c->nslots);

	if (gpuq_chan_format(c->slot_size) == GPUQ_CHAN_FMT_TAG) {
		uint64_t w = (uint64_t)gpuq_chan_tag(pos, shift, GPUQ_CHAN_TAG_SKIP) << 32;

		__atomic_store_n((uint64_t *)slot + 1, w, __ATOMIC_RELAXED);
		__atomic_store_n((uint64_t *)slot, w, __ATOMIC_RELEASE);
	} else {
		struct gpuq_chan_slot *s = (struct gpuq_chan_slot *)slot;

		__atomic_store_n(&s->len, GPUQ_CHAN_SEQ_SKIP, __ATOMIC_RELAXED);
		__atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
	}
}

/* Does a living sending opening other than skip_row have position pos pending? */
static int pending_elsewhere(const struct chan_ring *c, int skip_row, uint64_t pos)
{
	unsigned i, w;

	for (i = 0; i < GPUQ_CHAN_SENDERS_MAX; i++) {
		if (!c->rows[i] || (int)i == skip_row)
			continue;
		for (w = 0; w < GPUQ_CHAN_PEND_WAYS; w++)
			if (__atomic_load_n(&c->hdr->pending[i][w], __ATOMIC_SEQ_CST) == pos + 1)
				return 1;
	}
	return 0;
}

/*
 * Position pos was pending for a sender that is gone. 1: settled (taken by
 * nobody, filled, already consumed, or now marked skipped); 0: try again
 * later (no room in its slot yet, or another sender has it pending).
 */
static int settle_hole(struct chan_ring *c, int row, uint64_t pos)
{
	uint64_t tail = __atomic_load_n(&c->hdr->tail, __ATOMIC_SEQ_CST) & ~GPUQ_CHAN_HELD;
	uint64_t head = __atomic_load_n(&c->hdr->head, __ATOMIC_SEQ_CST) & ~GPUQ_CHAN_HELD;

	if (pos >= tail || (int64_t)(pos - head) < 0)
		return 1; /* its take never happened, or the message is read */
	if (pos - head >= c->nslots)
		return 0; /* the slot still holds an unread message of the lap before */
	if (pending_elsewhere(c, row, pos))
		return 0; /* a living sender's (its CAS won), or one about to look again */
	if (slot_complete(c->hdr, c->slot_size, c->nslots, pos))
		return 1;
	put_skip(c, pos);
	return 1;
}

/* Settles what a sending opening left pending, keeping what cannot be settled yet. */
static void repair_row(struct chan_ring *c, int row)
{
	unsigned w, n = 0;

	for (w = 0; w < GPUQ_CHAN_PEND_WAYS; w++) {
		uint64_t v = __atomic_exchange_n(&c->hdr->pending[row][w], 0, __ATOMIC_SEQ_CST);

		if (!v || settle_hole(c, -1, v - 1))
			continue;
		if (c->nholes < CHAN_HOLES_MAX)
			c->holes[c->nholes++] = v - 1;
		else
			log_warn(
				"channel '%s': too many dead senders' positions to repair; position %llu dropped",
				c->name, (unsigned long long)(v - 1));
		n++;
	}
	if (n)
		log_info(
			"channel '%s': %u position(s) of a dead sender wait for room to be skipped",
			c->name, n);
}

void chan_unref(struct chan_registry *r, struct chan *o)
{
	struct chan_ring *c = o->ring;
	struct chan_ring **pp;
	struct chan **op;

	pthread_mutex_lock(&r->lock);
	for (op = &c->openings; *op; op = &(*op)->next)
		if (*op == o) {
			*op = o->next;
			break;
		}
	if (o->row >= 0) {
		repair_row(c, o->row);
		c->rows[o->row] = 0;
	}
	if (o->ends & CHAN_END_RECV) {
		struct chan *x;

		for (x = c->openings; x && !(x->ends & CHAN_END_RECV); x = x->next)
			;
		if (!x) {
			/* No receiver left: none sleeps, whatever a dead one's count says (senders stop waking). */
			__atomic_store_n(&c->hdr->rx_sleepers, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&c->hdr->rx_waiting, 0, __ATOMIC_RELAXED);
		}
	}
	close_fd(&o->wake_rd);
	close_fd(&o->wake_wr);
	free(o);
	if (--c->refs) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	for (pp = &r->list; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	r->count--;
	pthread_mutex_unlock(&r->lock);
	log_info("channel '%s' closed by its last user", c->name);
	ring_free(c);
}

static uint32_t *owner_field(struct chan_ring *c, unsigned end)
{
	return end == CHAN_END_SEND ? &c->hdr->tail_owner : &c->hdr->rx_owner;
}

int chan_own(struct chan *o, unsigned end, uint32_t token)
{
	uint32_t none = 0;

	if (!(o->ends & end))
		return -EACCES;
	if (!__atomic_compare_exchange_n(owner_field(o->ring, end), &none, token, 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EBUSY;
	return 0;
}

void chan_disown(struct chan *o, unsigned end, int repair)
{
	struct chan_ring *c = o->ring;

	if (end == CHAN_END_SEND && repair) {
		uint64_t head = __atomic_load_n(&c->hdr->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;
		uint64_t tail = chan_repair_tail(c->hdr, c->slot_size, c->nslots);

		log_warn(
			"channel '%s': its GPU senders went away without unmapping; %llu message(s) left to read",
			c->name, (unsigned long long)(tail - head));
	} else if (end != CHAN_END_SEND) {
		/* The dead receivers' last head stands (they stored it whole); the end is let go. */
		__atomic_fetch_and(&c->hdr->head, ~GPUQ_CHAN_HELD, __ATOMIC_ACQ_REL);
		if (repair)
			log_warn(
				"channel '%s': its GPU receivers went away without unmapping; CPU receivers may take over",
				c->name);
	} else {
		__atomic_fetch_and(&c->hdr->tail, ~GPUQ_CHAN_HELD, __ATOMIC_ACQ_REL);
	}
	__atomic_store_n(owner_field(c, end), 0, __ATOMIC_RELEASE);
}

/*
 * The slot of head, if its message is there (what a sleeping receiver
 * waits for), else NULL. The slot address comes from gpuqd's own geometry:
 * head is client-written, but masked it stays inside the ring.
 */
static uint8_t *head_ready(const struct chan_ring *c, uint64_t head)
{
	uint8_t *slot = slot_in(c->hdr, c->slot_size, c->nslots, head);

	return gpuq_chan_slot_state(slot, head, gpuq_chan_format(c->slot_size),
				    gpuq_chan_lap_shift(c->nslots)) == 1 ?
		       slot :
		       NULL;
}

/*
 * Watches the channels whose receivers wait (GPU senders cannot wake
 * anyone, and CPU senders do not write the wake pipes: gpuqd does), and
 * repairs dead senders' positions that had no room yet.
 *
 * Polling is bounded per channel: every 20 us while the channel is "fast"
 * (its receivers started waiting, or a wake found a new message, less
 * than WATCH_LINGER_NS ago), else every millisecond. A channel whose
 * rx_waiting or rx_sleepers a client keeps set without traffic so costs a
 * load per millisecond, not a spin. A wake for an unchanged head is
 * repeated at most once per WATCH_REWAKE_NS.
 *
 * Nothing here blocks while the registry lock is held: the wake pipes'
 * write ends are gpuqd's own, non-blocking (a full pipe is already
 * readable: the byte is dropped), and FUTEX_WAKE never waits.
 */
#define WATCH_LINGER_NS 200000000ull
#define WATCH_REWAKE_NS 1000000ull

static uint64_t mono_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* Looks at one channel; returns whether it wants fast polling. */
static int watch_one(struct chan_ring *c, uint64_t t)
{
	struct gpuq_chan_hdr *h = c->hdr;
	uint32_t waiting, sleepers;
	uint64_t head;
	uint8_t *slot;
	unsigned i;

	for (i = 0; i < c->nholes;)
		if (settle_hole(c, -1, c->holes[i]))
			c->holes[i] = c->holes[--c->nholes];
		else
			i++;
	waiting = __atomic_load_n(&h->rx_waiting, __ATOMIC_SEQ_CST);
	sleepers = __atomic_load_n(&h->rx_sleepers, __ATOMIC_SEQ_CST);
	if (!waiting && !sleepers) {
		c->fast_until = 0;
		return 0; /* holes wait for room at the slow pace: one nobody settles must not keep the watcher fast */
	}
	if (!c->fast_until)
		c->fast_until = t + WATCH_LINGER_NS; /* they started waiting */
	head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;
	slot = head_ready(c, head);
	if (slot) {
		int fresh = !c->woke || c->woke_head != head;

		if (sleepers && (fresh || t - c->woke_at >= WATCH_REWAKE_NS)) {
			syscall(SYS_futex,
				gpuq_chan_futex_word(slot, gpuq_chan_format(c->slot_size)),
				FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
			c->woke = 1;
			c->woke_head = head;
			c->woke_at = t;
		}
		if (waiting && __atomic_exchange_n(&h->rx_waiting, 0, __ATOMIC_ACQ_REL)) {
			struct chan *o;
			char one = 1;

			for (o = c->openings; o; o = o->next)
				if ((o->ends & CHAN_END_RECV) && write(o->wake_wr, &one, 1) < 0)
					(void)0; /* full: readable already */
			c->woke = 1;
			c->woke_head = head;
			c->woke_at = t;
		}
		if (fresh)
			c->fast_until = t + WATCH_LINGER_NS;
	}
	return t < c->fast_until;
}

static void *watch(void *arg)
{
	struct chan_registry *r = arg;

	for (;;) {
		struct timespec ts = { 0, 1000000 };
		uint64_t t = mono_ns();
		struct chan_ring *c;
		int fast = 0;

		pthread_mutex_lock(&r->lock);
		if (r->stop) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		for (c = r->list; c; c = c->next)
			fast |= watch_one(c, t);
		pthread_mutex_unlock(&r->lock);
		if (fast)
			ts.tv_nsec = 20000;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int chan_registry_init(struct chan_registry *r, uint64_t max_size)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->max_size = max_size;
	if (pthread_create(&r->watcher, NULL, watch, r))
		return -EAGAIN;
	r->running = 1;
	return 0;
}

void chan_registry_fini(struct chan_registry *r)
{
	struct chan_ring *c;

	if (r->running) {
		pthread_mutex_lock(&r->lock);
		r->stop = 1;
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->watcher, NULL);
	}
	while ((c = r->list)) {
		r->list = c->next;
		while (c->openings) {
			struct chan *o = c->openings;

			c->openings = o->next;
			close_fd(&o->wake_rd);
			close_fd(&o->wake_wr);
			free(o);
		}
		ring_free(c);
	}
	pthread_mutex_destroy(&r->lock);
}
