/* arena.h: libgpuq's allocator for the session arena (first fit, coalescing, metadata kept outside). */
#ifndef GPUQ_ARENA_H
#define GPUQ_ARENA_H

#include <stddef.h>
#include <stdint.h>

struct arena_extent {
	uint64_t off, len;
};

/* The allocator's state; owned by the session (init/fini). Not thread-safe: callers lock. */
struct arena_alloc {
	uint64_t size;
	struct arena_extent *free; /* sorted by offset, never adjacent */
	unsigned nfree, capfree;
	struct arena_extent *used; /* open-addressing hash by offset; len 0 = empty */
	unsigned capused, nused;
	uint64_t bytes_used;
};

int arena_init(struct arena_alloc *a, uint64_t size);
void arena_fini(struct arena_alloc *a);
/* Returns the offset of len bytes (aligned to 256 B, 4 KiB from 64 KiB up), or -ENOMEM/-EINVAL. */
int64_t arena_get(struct arena_alloc *a, uint64_t len);
/* Frees the block at off. Returns 0 or -EINVAL when off is not an allocated block. */
int arena_put(struct arena_alloc *a, uint64_t off);

#endif
