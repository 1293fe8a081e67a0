/* buf.c: per-session device buffer tables with bounds-checked lookups and O(1) alloc/free. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

/* Ids are slot index + 1, so they stay small and 0 is never valid. */
#define BUF_MAX_IDS (1u << 20)

void buf_table_init(struct buf_table *t, struct backend *be, uint64_t quota)
{
	memset(t, 0, sizeof(*t));
	t->be = be;
	t->quota = quota;
}

static void release(struct buf_table *t, struct buf *b)
{
	int r = t->be->ops->mem_free(t->be, b->device, b->addr);

	if (r)
		log_err("freeing buffer %u (%llu bytes on device %u): %d", b->id,
			(unsigned long long)b->size, b->device, r);
	t->count--;
	t->bytes -= b->size;
	t->slots[b->id - 1] = NULL;
	free(b);
}

void buf_table_fini(struct buf_table *t)
{
	uint32_t i;

	for (i = 0; i < t->nslots; i++)
		if (t->slots[i])
			release(t, t->slots[i]);
	free(t->slots);
	free(t->free_ids);
	t->slots = NULL;
	t->free_ids = NULL;
	t->nslots = t->cap = t->nfree = 0;
}

/* Picks the id for a new buffer: a freed one, or the next never used. */
static int take_id(struct buf_table *t, uint32_t *id)
{
	if (t->nfree) {
		*id = t->free_ids[--t->nfree];
		return 0;
	}
	if (t->nslots >= BUF_MAX_IDS)
		return -ENOSPC;
	if (t->nslots == t->cap) {
		uint32_t n = t->cap ? t->cap * 2 : 16;
		struct buf **s = realloc(t->slots, n * sizeof(*s));
		uint32_t *f;

		if (!s)
			return -ENOMEM;
		t->slots = s;
		/* Sized with slots, so pushing a freed id never needs memory. */
		f = realloc(t->free_ids, n * sizeof(*f));
		if (!f)
			return -ENOMEM;
		t->free_ids = f;
		t->cap = n;
	}
	t->slots[t->nslots] = NULL;
	*id = ++t->nslots;
	return 0;
}

static void put_id(struct buf_table *t, uint32_t id)
{
	t->free_ids[t->nfree++] = id;
}

int buf_alloc(struct buf_table *t, unsigned device, uint64_t size)
{
	struct buf *b;
	uint64_t addr;
	uint32_t id;
	int r;

	if (size == 0 || device >= t->be->ndevices)
		return -EINVAL;
	if (size > SIZE_MAX)
		return -ENOMEM;
	if (t->quota && size > t->quota - t->bytes)
		return -EDQUOT;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	r = take_id(t, &id);
	if (r) {
		free(b);
		return r;
	}
	r = t->be->ops->mem_alloc(t->be, device, (size_t)size, &addr);
	if (r) {
		put_id(t, id);
		free(b);
		return r;
	}
	b->id = id;
	b->device = device;
	b->addr = addr;
	b->size = size;
	t->slots[id - 1] = b;
	t->count++;
	t->bytes += size;
	return (int)id;
}

int buf_free(struct buf_table *t, uint32_t id)
{
	struct buf *b;

	if (id == 0 || id > t->nslots || !t->slots[id - 1])
		return -ENOENT;
	b = t->slots[id - 1];
	/* Acquire: pairs with buf_release, so the transfer is over before the memory goes. */
	if (atomic_load_explicit(&b->inflight, memory_order_acquire))
		return -EBUSY;
	release(t, b);
	put_id(t, id);
	return 0;
}

struct buf *buf_get(struct buf_table *t, uint32_t id, uint64_t offset, uint64_t len, int *err)
{
	struct buf *b;

	if (id == 0 || id > t->nslots || !t->slots[id - 1]) {
		*err = -ENOENT;
		return NULL;
	}
	b = t->slots[id - 1];
	if (offset > b->size || len > b->size - offset) {
		*err = -ERANGE;
		return NULL;
	}
	*err = 0;
	return b;
}
