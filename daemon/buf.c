/* buf.c: per-session device buffer tables with bounds-checked lookups. */
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

void buf_table_fini(struct buf_table *t)
{
	uint32_t i;

	for (i = 0; i < t->nslots; i++)
		if (t->slots[i].id)
			buf_free(t, t->slots[i].id);
	free(t->slots);
	t->slots = NULL;
	t->nslots = 0;
}

static int find_slot(struct buf_table *t, uint32_t *slot)
{
	uint32_t i, n;
	struct buf *s;

	for (i = 0; i < t->nslots; i++)
		if (!t->slots[i].id) {
			*slot = i;
			return 0;
		}
	if (t->nslots >= BUF_MAX_IDS)
		return -ENOSPC;
	n = t->nslots ? t->nslots * 2 : 16;
	s = realloc(t->slots, n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s + t->nslots, 0, (n - t->nslots) * sizeof(*s));
	*slot = t->nslots;
	t->slots = s;
	t->nslots = n;
	return 0;
}

int buf_alloc(struct buf_table *t, unsigned device, uint64_t size)
{
	uint64_t addr;
	uint32_t slot;
	int r;

	if (size == 0 || device >= t->be->ndevices)
		return -EINVAL;
	if (size > SIZE_MAX)
		return -ENOMEM;
	if (t->quota && size > t->quota - t->bytes)
		return -EDQUOT;
	r = find_slot(t, &slot);
	if (r)
		return r;
	r = t->be->ops->mem_alloc(t->be, device, (size_t)size, &addr);
	if (r)
		return r;
	t->slots[slot] = (struct buf){ .id = slot + 1, .device = device, .addr = addr, .size = size };
	t->count++;
	t->bytes += size;
	return (int)(slot + 1);
}

int buf_free(struct buf_table *t, uint32_t id)
{
	struct buf *b;
	int r;

	if (id == 0 || id > t->nslots || !t->slots[id - 1].id)
		return -ENOENT;
	b = &t->slots[id - 1];
	r = t->be->ops->mem_free(t->be, b->device, b->addr);
	if (r)
		log_err("freeing buffer %u (%llu bytes on device %u): %d", id,
			(unsigned long long)b->size, b->device, r);
	t->count--;
	t->bytes -= b->size;
	memset(b, 0, sizeof(*b));
	return 0;
}

struct buf *buf_get(struct buf_table *t, uint32_t id, uint64_t offset, uint64_t len, int *err)
{
	struct buf *b;

	if (id == 0 || id > t->nslots || !t->slots[id - 1].id) {
		*err = -ENOENT;
		return NULL;
	}
	b = &t->slots[id - 1];
	if (offset > b->size || len > b->size - offset) {
		*err = -ERANGE;
		return NULL;
	}
	*err = 0;
	return b;
}
