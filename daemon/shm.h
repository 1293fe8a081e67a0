/* shm.h: a session's shared memory: sealed memfd with rings and arena, registered with the GPU. */
#ifndef GPUQ_SHM_H
#define GPUQ_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "ring.h"

/*
 * One session's mapping. Owned by the session (init/fini). geom is gpuqd's
 * own copy of the layout, fixed at init: every size, mask and offset the
 * daemon uses comes from it, never from hdr (which the client can rewrite
 * at any time).
 */
struct shm {
	int memfd;
	void *base;
	size_t size;
	struct shm_geom geom;
	struct shm_hdr *hdr;
	uint8_t *arena;
	int registered;
	uint64_t arena_dev[BACKEND_MAX_DEVICES]; /* device-visible arena address per device */
};

/*
 * Creates a sealed memfd (it can neither shrink nor grow, so a client can
 * never make the daemon fault on it), maps it, lays out the header, rings
 * and arena, and registers the whole mapping with the backend once.
 * sq_entries is rounded up to a power of two and clamped to [64, 65536];
 * arena_size is rounded up to 4 KiB. Returns 0 or -errno.
 */
int shm_init(struct shm *s, struct backend *be, uint32_t sq_entries, uint64_t arena_size);
void shm_fini(struct shm *s, struct backend *be);
/* The size shm_init makes (and pins) for these arguments: what a session costs its uid. */
uint64_t shm_size_for(unsigned ndevices, uint32_t sq_entries, uint64_t arena_size);

/* dev's SQ array (dev < g->ndevices) in the mapping at base, from the private geometry g. */
static inline struct shm_sqe *shm_sq(void *base, const struct shm_geom *g, unsigned dev)
{
	return (struct shm_sqe *)((uint8_t *)base + g->rings_off + g->ringset_size * dev +
				  shm_sq_off());
}

/* dev's CQ array (dev < g->ndevices) in the mapping at base, from the private geometry g. */
static inline struct shm_cqe *shm_cq(void *base, const struct shm_geom *g, unsigned dev)
{
	return (struct shm_cqe *)((uint8_t *)base + g->rings_off + g->ringset_size * dev +
				  shm_cq_off(g->sq_entries));
}

#endif
