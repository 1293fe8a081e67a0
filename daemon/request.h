/* request.h: turning one untrusted SQE into a transfer: the data path's validation step. */
#ifndef GPUQ_REQUEST_H
#define GPUQ_REQUEST_H

#include <stdint.h>

#include "backend.h"
#include "buf.h"
#include "ring.h"

/*
 * Validates request q (a private copy of the SQE) for device dev against a
 * session's trusted geometry g, its buffers and its arena at device address
 * arena_dev, and fills *x. Transfers shorter than crossover go to the small
 * lanes. held[0] receives the buffer the request touches and held[1] the
 * D2D source (else NULL); the caller marks them in flight (buf_hold) before
 * it releases the lock that guards bufs, which it holds across the call.
 *
 * Every field of q may be hostile: the arena range must lie inside
 * g->arena_size and each buffer range inside its buffer, with no overflow;
 * both buffers must live on dev. Returns the lane (enum backend_lane) or a
 * -errno for the request's error completion: -EINVAL (unknown op or a
 * device this session does not have), -ERANGE, -ENOENT, -EXDEV.
 *
 * A pure function: no engine state, no side effects, safe to fuzz.
 */
int request_translate(const struct shm_sqe *q, const struct shm_geom *g, uint64_t arena_dev,
		      struct buf_table *bufs, unsigned dev, uint64_t crossover,
		      struct backend_xfer *x, struct buf *held[2]);

#endif
