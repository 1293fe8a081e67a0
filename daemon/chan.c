/* chan.c: named channels: creation, permissions, lifetime, and waking sleeping receivers. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "chan.h"
#include "log.h"

#define CHAN_SLOT_MAX (1u << 20)
#define CHAN_NSLOTS_MAX (1u << 20)

int chan_name_valid(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n >= GPUQ_CHAN_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return name[0] != '.';
}

static struct chan *find(struct chan_registry *r, const char *name)
{
	struct chan *c;

	for (c = r->list; c; c = c->next)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

static void chan_free(struct chan *c)
{
	if (c->hdr)
		munmap(c->hdr, c->size);
	if (c->memfd >= 0)
		close(c->memfd);
	if (c->efd >= 0)
		close(c->efd);
	free(c);
}

struct chan *chan_create(struct chan_registry *r, const char *name, uint32_t slot_size,
			 uint32_t nslots, uint32_t direction, unsigned mode, uid_t uid, gid_t gid,
			 int *err)
{
	struct gpuq_chan_hdr *h;
	struct chan *c;
	uint64_t size, i;
	void *map;

	if (!chan_name_valid(name) || slot_size == 0 || slot_size > CHAN_SLOT_MAX || nslots < 2 ||
	    nslots > CHAN_NSLOTS_MAX || (nslots & (nslots - 1)) ||
	    (direction != GPUQ_CHAN_DIR_GPU_TO_CPU && direction != GPUQ_CHAN_DIR_CPU_TO_GPU) || mode > 0777) {
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
	c->memfd = c->efd = -1;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->size = size;
	c->uid = uid;
	c->gid = gid;
	c->mode = mode ? mode : 0600;
	c->refs = 1;
	c->slot_size = slot_size;
	c->nslots = nslots;
	c->direction = direction;
	c->memfd = memfd_create("gpuq-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (c->memfd < 0 || ftruncate(c->memfd, (off_t)size) < 0 ||
	    fcntl(c->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail_errno;
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
	if (map == MAP_FAILED)
		goto fail_errno;
	c->hdr = h = map;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0)
		goto fail_errno;
	h->slot_size = slot_size;
	h->nslots = nslots;
	h->direction = direction;
	h->stride = gpuq_chan_stride(slot_size);
	h->slots_off = GPUQ_CHAN_HDR_SIZE;
	h->total_size = size;
	h->format = gpuq_chan_format(slot_size);
	/* SEQ slots start out holding lap -1 (seq = i); TAG slots start zeroed, which no lap matches. */
	if (h->format == GPUQ_CHAN_FMT_SEQ)
		for (i = 0; i < nslots; i++)
			gpuq_chan_slot_at(h, i)->seq = i;
	h->version = GPUQ_CHAN_VERSION;
	atomic_thread_fence(memory_order_release);
	h->magic = GPUQ_CHAN_MAGIC;

	pthread_mutex_lock(&r->lock);
	if (find(r, name)) {
		pthread_mutex_unlock(&r->lock);
		chan_free(c);
		*err = -EEXIST;
		return NULL;
	}
	c->next = r->list;
	r->list = c;
	r->count++;
	pthread_mutex_unlock(&r->lock);
	log_info("channel '%s' created by uid %u: %u slots of %u bytes, %s, mode %04o", name,
		 (unsigned)uid, nslots, slot_size,
		 direction == GPUQ_CHAN_DIR_GPU_TO_CPU ? "GPU->CPU" : "CPU->GPU", c->mode);
	*err = 0;
	return c;

fail_errno:
	*err = -errno;
	chan_free(c);
	return NULL;
}

/* File-like check: owner bits for the owner (and root), group bits for the group, else other. */
static int allowed(const struct chan *c, int send, int recv, uid_t uid, gid_t gid)
{
	unsigned bits;

	if (uid == 0 || uid == c->uid)
		bits = (c->mode >> 6) & 7;
	else if (gid == c->gid)
		bits = (c->mode >> 3) & 7;
	else
		bits = c->mode & 7;
	if (send && !(bits & 2))
		return 0;
	if (recv && !(bits & 4))
		return 0;
	return 1;
}

int chan_list(struct chan_registry *r, uid_t uid, gid_t gid, struct chan_info **out)
{
	struct chan_info *arr;
	struct chan *c;
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

		if (uid != 0 && uid != getuid() && !allowed(c, 1, 0, uid, gid) && !allowed(c, 0, 1, uid, gid))
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
		ci->rx_waiting = __atomic_load_n(&h->rx_waiting, __ATOMIC_RELAXED);
		ci->senders_done = __atomic_load_n(&h->senders_done, __ATOMIC_RELAXED);
		n++;
	}
	pthread_mutex_unlock(&r->lock);
	*out = arr;
	return n;
}

struct chan *chan_open(struct chan_registry *r, const char *name, int send, int recv, uid_t uid,
		       gid_t gid, int *err)
{
	struct chan *c;

	pthread_mutex_lock(&r->lock);
	c = find(r, name);
	if (!c)
		*err = -ENOENT;
	else if (!allowed(c, send, recv, uid, gid))
		*err = -EACCES;
	else {
		c->refs++;
		*err = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return *err ? NULL : c;
}

void chan_unref(struct chan_registry *r, struct chan *c)
{
	struct chan **pp;

	pthread_mutex_lock(&r->lock);
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
	chan_free(c);
}

static uint32_t *owner_field(struct chan *c, unsigned end)
{
	return end == CHAN_END_SEND ? &c->hdr->tail_owner : &c->hdr->rx_owner;
}

int chan_own(struct chan *c, unsigned end, uint32_t token)
{
	uint32_t none = 0;

	if (!__atomic_compare_exchange_n(owner_field(c, end), &none, token, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return -EBUSY;
	return 0;
}

/* The slot of position pos, from gpuqd's own geometry. */
static uint8_t *slot_ptr(const struct chan *c, uint64_t pos)
{
	return (uint8_t *)c->hdr + GPUQ_CHAN_HDR_SIZE + (pos & (c->nslots - 1)) * gpuq_chan_stride(c->slot_size);
}

/* Is the whole message of position pos in its slot (every unit, for TAG)? */
static int slot_complete(const struct chan *c, uint64_t pos)
{
	uint32_t format = gpuq_chan_format(c->slot_size), tag, len, i;
	const uint64_t *w = (const uint64_t *)slot_ptr(c, pos);

	if (gpuq_chan_slot_state(w, pos, format, gpuq_chan_lap_shift(c->nslots)) != 1)
		return 0;
	if (format != GPUQ_CHAN_FMT_TAG)
		return 1;
	tag = (uint32_t)(__atomic_load_n(&w[0], __ATOMIC_ACQUIRE) >> 32);
	len = gpuq_chan_tag_len(tag);
	if (len > c->slot_size)
		return 0;
	for (i = 0; i < 2 * gpuq_chan_tag_units(len); i++)
		if ((uint32_t)(__atomic_load_n(&w[i], __ATOMIC_RELAXED) >> 32) !=
		    (i < 2 ? tag : gpuq_chan_tag_rest(pos, gpuq_chan_lap_shift(c->nslots))))
			return 0;
	return 1;
}

void chan_disown(struct chan *c, unsigned end, int repair)
{
	if (end == CHAN_END_SEND && repair) {
		uint64_t head = __atomic_load_n(&c->hdr->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD, pos = head, p;

		/* Keep the messages up to the first position the dead sender did not fill whole... */
		while (pos - head < c->nslots && slot_complete(c, pos))
			pos++;
		/*
		 * ...and empty every slot after it, up to a ring past head: the
		 * next senders take those positions again, and a message the
		 * dead sender left there would pass for theirs.
		 */
		for (p = pos; p - head < c->nslots; p++) {
			uint8_t *slot = slot_ptr(c, p);

			if (gpuq_chan_format(c->slot_size) == GPUQ_CHAN_FMT_TAG) {
				/* Every word tagged with the lap before p's: not there yet, whatever the lap count. */
				uint64_t w = (uint64_t)gpuq_chan_tag(p - c->nslots, gpuq_chan_lap_shift(c->nslots), 0)
					     << 32,
					 i;

				for (i = 0; i < gpuq_chan_stride(c->slot_size) / 8; i++)
					__atomic_store_n((uint64_t *)slot + i, w, __ATOMIC_RELAXED);
			} else
				__atomic_store_n(&((struct gpuq_chan_slot *)slot)->seq, p, __ATOMIC_RELAXED);
		}
		__atomic_store_n(&c->hdr->tail, pos, __ATOMIC_RELEASE);
		log_warn("channel '%s': its GPU senders went away without unmapping; %llu message(s) left to read",
			 c->name, (unsigned long long)(pos - head));
	} else if (end != CHAN_END_SEND) {
		/* The dead receivers' last head stands (they stored it whole); the end is let go. */
		__atomic_fetch_and(&c->hdr->head, ~GPUQ_CHAN_HELD, __ATOMIC_ACQ_REL);
		if (repair)
			log_warn("channel '%s': its GPU receivers went away without unmapping; CPU receivers may take over",
				 c->name);
	} else {
		__atomic_fetch_and(&c->hdr->tail, ~GPUQ_CHAN_HELD, __ATOMIC_ACQ_REL);
	}
	__atomic_store_n(owner_field(c, end), 0, __ATOMIC_RELEASE);
}

/*
 * Is the message at head there? (What a sleeping receiver waits for.) The
 * slot address comes from gpuqd's own geometry: head is client-written, but
 * masked it stays inside the ring.
 */
static int head_ready(const struct chan *c)
{
	uint64_t head = __atomic_load_n(&c->hdr->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;
	const uint8_t *slot = (const uint8_t *)c->hdr + GPUQ_CHAN_HDR_SIZE +
			      (head & (c->nslots - 1)) * gpuq_chan_stride(c->slot_size);

	return gpuq_chan_slot_state(slot, head, gpuq_chan_format(c->slot_size),
				    gpuq_chan_lap_shift(c->nslots)) == 1;
}

/*
 * Watches only channels whose receivers sleep: GPU senders cannot write an
 * eventfd, so gpuqd does it for them. Polls every 20 us while any receiver
 * sleeps, and for a while after (a busy consumer that catches up with its
 * kernel sleeps again soon, and should not wait for a slow poll to notice);
 * every millisecond once nobody has slept for WATCH_LINGER_NS.
 */
#define WATCH_LINGER_NS 200000000ull

static void *watch(void *arg)
{
	struct chan_registry *r = arg;
	uint64_t last_waiting = 0;

	for (;;) {
		struct timespec ts = { 0, 1000000 };
		int waiting = 0;
		struct chan *c;

		pthread_mutex_lock(&r->lock);
		if (r->stop) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		for (c = r->list; c; c = c->next) {
			struct gpuq_chan_hdr *h = c->hdr;

			if (!__atomic_load_n(&h->rx_waiting, __ATOMIC_ACQUIRE))
				continue;
			waiting = 1;
			if (head_ready(c) && __atomic_exchange_n(&h->rx_waiting, 0, __ATOMIC_ACQ_REL)) {
				uint64_t one = 1;

				if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
					log_warn("waking receivers of '%s': %s", c->name,
						 strerror(errno));
			}
		}
		pthread_mutex_unlock(&r->lock);
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		uint64_t t = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
		if (waiting)
			last_waiting = t;
		if (last_waiting && t - last_waiting < WATCH_LINGER_NS)
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
	struct chan *c;

	if (r->running) {
		pthread_mutex_lock(&r->lock);
		r->stop = 1;
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->watcher, NULL);
	}
	while ((c = r->list)) {
		r->list = c->next;
		chan_free(c);
	}
	pthread_mutex_destroy(&r->lock);
}
