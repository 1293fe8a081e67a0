/* arena.c: libgpuq's allocator for the session arena (first fit, coalescing, metadata kept outside). */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

int arena_init(struct arena_alloc *a, uint64_t size)
{
	memset(a, 0, sizeof(*a));
	a->size = size;
	a->capfree = 16;
	a->free = malloc(a->capfree * sizeof(*a->free));
	a->capused = 64;
	a->used = calloc(a->capused, sizeof(*a->used));
	if (!a->free || !a->used) {
		arena_fini(a);
		return -ENOMEM;
	}
	a->free[0] = (struct arena_extent){ .off = 0, .len = size };
	a->nfree = size ? 1 : 0;
	return 0;
}

void arena_fini(struct arena_alloc *a)
{
	free(a->free);
	free(a->used);
	memset(a, 0, sizeof(*a));
}

static unsigned slot_of(const struct arena_alloc *a, uint64_t off)
{
	uint64_t h = (off >> 8) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(h >> 32) & (a->capused - 1);
}

static int used_insert(struct arena_alloc *a, uint64_t off, uint64_t len)
{
	unsigned i;

	if ((a->nused + 1) * 2 > a->capused) {
		struct arena_extent *old = a->used, *n;
		unsigned oldcap = a->capused, k;

		n = calloc(oldcap * 2, sizeof(*n));
		if (!n)
			return -ENOMEM;
		a->used = n;
		a->capused = oldcap * 2;
		a->nused = 0;
		for (k = 0; k < oldcap; k++)
			if (old[k].len)
				used_insert(a, old[k].off, old[k].len);
		free(old);
	}
	for (i = slot_of(a, off); a->used[i].len; i = (i + 1) & (a->capused - 1))
		;
	a->used[i] = (struct arena_extent){ .off = off, .len = len };
	a->nused++;
	return 0;
}

/* Removes off from the hash; returns its length, or 0 when absent. */
static uint64_t used_remove(struct arena_alloc *a, uint64_t off)
{
	unsigned i, j;
	uint64_t len;

	for (i = slot_of(a, off); a->used[i].len; i = (i + 1) & (a->capused - 1))
		if (a->used[i].off == off)
			break;
	if (!a->used[i].len)
		return 0;
	len = a->used[i].len;
	a->used[i].len = 0;
	a->nused--;
	/* Re-seat the rest of the probe chain (linear probing deletion). */
	for (j = (i + 1) & (a->capused - 1); a->used[j].len; j = (j + 1) & (a->capused - 1)) {
		struct arena_extent e = a->used[j];

		a->used[j].len = 0;
		a->nused--;
		used_insert(a, e.off, e.len);
	}
	return len;
}

static uint64_t align_for(uint64_t len)
{
	return len >= (64u << 10) ? 4096 : 256;
}

int64_t arena_get(struct arena_alloc *a, uint64_t len)
{
	uint64_t al, off, pad, need;
	unsigned i;

	if (!len || len > a->size)
		return -EINVAL;
	al = align_for(len);
	len = (len + 255) & ~255ull;
	for (i = 0; i < a->nfree; i++) {
		struct arena_extent *f = &a->free[i];

		off = (f->off + al - 1) & ~(al - 1);
		pad = off - f->off;
		need = pad + len;
		if (f->len < need)
			continue;
		if (used_insert(a, off, len))
			return -ENOMEM;
		if (pad) {
			/* Keep the alignment gap as its own free extent, before the block. */
			uint64_t rest_off = off + len, rest_len = f->len - need;

			f->len = pad;
			if (rest_len) {
				if (a->nfree == a->capfree) {
					struct arena_extent *n =
						realloc(a->free, 2 * a->capfree * sizeof(*n));

					if (!n) {
						used_remove(a, off);
						f->len = need + rest_len; /* undo */
						return -ENOMEM;
					}
					a->free = n;
					a->capfree *= 2;
					f = &a->free[i];
				}
				memmove(&a->free[i + 2], &a->free[i + 1],
					(a->nfree - i - 1) * sizeof(*a->free));
				a->free[i + 1] =
					(struct arena_extent){ .off = rest_off, .len = rest_len };
				a->nfree++;
			}
		} else {
			f->off += len;
			f->len -= len;
			if (!f->len) {
				memmove(&a->free[i], &a->free[i + 1],
					(a->nfree - i - 1) * sizeof(*a->free));
				a->nfree--;
			}
		}
		a->bytes_used += len;
		return (int64_t)off;
	}
	return -ENOMEM;
}

int arena_put(struct arena_alloc *a, uint64_t off)
{
	uint64_t len = used_remove(a, off);
	unsigned lo = 0, hi = a->nfree;
	int merge_prev, merge_next;

	if (!len)
		return -EINVAL;
	a->bytes_used -= len;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (a->free[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* lo: first free extent after the block. */
	merge_prev = lo > 0 && a->free[lo - 1].off + a->free[lo - 1].len == off;
	merge_next = lo < a->nfree && off + len == a->free[lo].off;
	if (merge_prev && merge_next) {
		a->free[lo - 1].len += len + a->free[lo].len;
		memmove(&a->free[lo], &a->free[lo + 1], (a->nfree - lo - 1) * sizeof(*a->free));
		a->nfree--;
	} else if (merge_prev) {
		a->free[lo - 1].len += len;
	} else if (merge_next) {
		a->free[lo].off = off;
		a->free[lo].len += len;
	} else {
		if (a->nfree == a->capfree) {
			struct arena_extent *n = realloc(a->free, 2 * a->capfree * sizeof(*n));

			if (!n) {
				used_insert(a, off,
					    len); /* keep it allocated rather than lose it */
				a->bytes_used += len;
				return -ENOMEM;
			}
			a->free = n;
			a->capfree *= 2;
		}
		memmove(&a->free[lo + 1], &a->free[lo], (a->nfree - lo) * sizeof(*a->free));
		a->free[lo] = (struct arena_extent){ .off = off, .len = len };
		a->nfree++;
	}
	return 0;
}
