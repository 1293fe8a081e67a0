/* buf.h: device buffers owned by one session, named by small per-session ids. */
#ifndef GPUQ_BUF_H
#define GPUQ_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* One device allocation. Owned by its buf_table. */
struct buf {
	uint32_t id; /* 0 = free slot */
	unsigned device;
	uint64_t addr;
	uint64_t size;
};

/*
 * A session's buffers. Lives in the session (init/fini); buf_table_fini
 * frees every buffer still allocated through the backend.
 */
struct buf_table {
	struct backend *be;
	struct buf *slots;
	uint32_t nslots;
	uint32_t count;
	uint64_t bytes;
	uint64_t quota; /* max bytes, 0 = unlimited */
};

void buf_table_init(struct buf_table *t, struct backend *be, uint64_t quota);
void buf_table_fini(struct buf_table *t);

/*
 * Allocates size bytes on device. Returns the new id (> 0) or -EINVAL (size 0
 * or no such device), -EDQUOT (session quota), -ENOMEM.
 */
int buf_alloc(struct buf_table *t, unsigned device, uint64_t size);
/* Returns 0 or -ENOENT when id names no buffer of this table. */
int buf_free(struct buf_table *t, uint32_t id);
/*
 * Looks up id and checks that [offset, offset+len) lies inside it, without
 * overflow. Returns the buffer or NULL with *err = -ENOENT or -ERANGE.
 */
struct buf *buf_get(struct buf_table *t, uint32_t id, uint64_t offset, uint64_t len, int *err);

#endif
