/* buf.h: device buffers owned by one session, named by small per-session ids. */
#ifndef GPUQ_BUF_H
#define GPUQ_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/*
 * One device allocation. Owned by its buf_table; its address stays put
 * until buf_free, so an engine may hold a pointer to it while a transfer
 * on it is in flight (inflight > 0), and buf_free refuses until then.
 */
struct buf {
	uint32_t id;
	unsigned device;
	uint64_t addr;
	uint64_t size;
	/*
	 * Transfers on this buffer taken by an engine and not yet completed.
	 * Raised under the session lock (request translation), dropped by the
	 * engine without it once the backend has finished the transfer.
	 */
	_Atomic uint32_t inflight;
};

/*
 * A session's buffers. Lives in the session (init/fini); buf_table_fini
 * frees every buffer still allocated through the backend. Allocation and
 * freeing are O(1): free ids are kept on a stack.
 */
struct buf_table {
	struct backend *be;
	struct buf **slots; /* id - 1 -> buffer, NULL = free */
	uint32_t nslots;    /* ids handed out so far (highest id) */
	uint32_t cap;
	uint32_t *free_ids; /* stack of freed ids below nslots */
	uint32_t nfree;
	uint32_t count;
	uint64_t bytes;
	uint64_t quota; /* max bytes, 0 = unlimited */
};

void buf_table_init(struct buf_table *t, struct backend *be, uint64_t quota);
/* Frees every buffer, in flight or not: the caller has stopped every engine's use of them. */
void buf_table_fini(struct buf_table *t);

/*
 * Allocates size bytes on device. Returns the new id (> 0) or -EINVAL (size 0
 * or no such device), -EDQUOT (session quota), -ENOSPC (id space), -ENOMEM.
 */
int buf_alloc(struct buf_table *t, unsigned device, uint64_t size);
/*
 * Frees buffer id. Returns 0, -ENOENT when id names no buffer of this
 * table, or -EBUSY while transfers on it are in flight (nothing is freed;
 * retry once they have completed).
 */
int buf_free(struct buf_table *t, uint32_t id);
/*
 * Looks up id and checks that [offset, offset+len) lies inside it, without
 * overflow. Returns the buffer or NULL with *err = -ENOENT or -ERANGE.
 */
struct buf *buf_get(struct buf_table *t, uint32_t id, uint64_t offset, uint64_t len, int *err);

/* Marks a transfer on b as taken / finished (see struct buf). */
static inline void buf_hold(struct buf *b)
{
	atomic_fetch_add_explicit(&b->inflight, 1, memory_order_relaxed);
}

static inline void buf_release(struct buf *b)
{
	/* Release: the transfer's use of the memory happens before a free that sees 0. */
	atomic_fetch_sub_explicit(&b->inflight, 1, memory_order_release);
}

#endif
