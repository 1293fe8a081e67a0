/* request.c: validating one untrusted SQE against a session's private geometry and buffers. */
#include "build-config.h"

#include <errno.h>
#include <stddef.h>

#include "request.h"

int request_translate(const struct shm_sqe *q, const struct shm_geom *g, uint64_t arena_dev,
		      struct buf_table *bufs, unsigned dev, uint64_t crossover,
		      struct backend_xfer *x, struct buf *held[2])
{
	struct buf *b, *src;
	int err;

	held[0] = held[1] = NULL;
	if (dev >= g->ndevices)
		return -EINVAL;
	switch (q->op) {
	case SHM_OP_H2D:
	case SHM_OP_D2H:
		/* Both compared against the private size: no sum that could wrap. */
		if (q->arena_off > g->arena_size || q->len > g->arena_size - q->arena_off)
			return -ERANGE;
		b = buf_get(bufs, q->buf, q->buf_off, q->len, &err);
		if (!b)
			return err;
		if (b->device != dev)
			return -EXDEV;
		held[0] = b;
		x->len = q->len;
		if (q->op == SHM_OP_H2D) {
			x->src = arena_dev + q->arena_off;
			x->dst = b->addr + q->buf_off;
			return q->len < crossover ? LANE_H2D_SMALL : LANE_H2D_LARGE;
		}
		x->src = b->addr + q->buf_off;
		x->dst = arena_dev + q->arena_off;
		return q->len < crossover ? LANE_D2H_SMALL : LANE_D2H_LARGE;
	case SHM_OP_D2D:
		b = buf_get(bufs, q->buf, q->buf_off, q->len, &err);
		if (!b)
			return err;
		src = buf_get(bufs, q->src_buf, q->src_off, q->len, &err);
		if (!src)
			return err;
		if (b->device != dev || src->device != dev)
			return -EXDEV;
		held[0] = b;
		held[1] = src;
		x->src = src->addr + q->src_off;
		x->dst = b->addr + q->buf_off;
		x->len = q->len;
		return LANE_D2D;
	default: return -EINVAL;
	}
}
