/* shm.c: a session's shared memory: sealed memfd with rings and arena, registered with the GPU. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

static uint32_t pow2_clamp(uint32_t v, uint32_t lo, uint32_t hi)
{
	uint32_t p = lo;

	while (p < v && p < hi)
		p <<= 1;
	return p;
}

uint64_t shm_size_for(unsigned ndevices, uint32_t sq_entries, uint64_t arena_size)
{
	struct shm_geom g;

	sq_entries = pow2_clamp(sq_entries, 64, 65536);
	return shm_geom_compute(&g, ndevices, sq_entries, sq_entries * 2, arena_size);
}

int shm_init(struct shm *s, struct backend *be, uint32_t sq_entries, uint64_t arena_size)
{
	unsigned dev;
	int r;

	memset(s, 0, sizeof(*s));
	s->memfd = -1;
	if (be->ndevices > SHM_MAX_DEVICES)
		return -E2BIG;
	sq_entries = pow2_clamp(sq_entries, 64, 65536);
	s->size = shm_geom_compute(&s->geom, be->ndevices, sq_entries, sq_entries * 2, arena_size);

	s->memfd = memfd_create("gpuq-session", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->memfd < 0)
		return -errno;
	if (ftruncate(s->memfd, (off_t)s->size) < 0) {
		r = -errno;
		goto fail;
	}
	if (fcntl(s->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}
	s->base =
		mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, s->memfd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		r = -errno;
		goto fail;
	}
	s->hdr = s->base;
	/* The fresh memfd is zeroed: ctl and srv_state start at 0 (serving). */
	shm_geom_publish(s->hdr, &s->geom);
	s->arena = (uint8_t *)s->base + s->geom.arena_off;
	r = be->ops->host_register(be, s->base, s->size);
	if (r) {
		log_err("registering a %zu-byte session mapping: %s", s->size, strerror(-r));
		goto fail;
	}
	s->registered = 1;
	for (dev = 0; dev < be->ndevices; dev++) {
		r = be->ops->host_devptr(be, dev, s->arena, &s->arena_dev[dev]);
		if (r)
			goto fail;
	}
	return 0;
fail:
	shm_fini(s, be);
	return r;
}

void shm_fini(struct shm *s, struct backend *be)
{
	if (s->registered)
		be->ops->host_unregister(be, s->base);
	if (s->base)
		munmap(s->base, s->size);
	if (s->memfd >= 0) {
		/*
		 * The client holds the memfd too, for as long as it likes: the
		 * pages gpuqd populated (rings and arena) go now, not with its
		 * last descriptor. The header page stays, srv_state in it for
		 * the client to read after EOF; a mapping of the rest left in
		 * the client reads zeros (the size is sealed).
		 */
		if (s->size > s->geom.rings_off &&
		    fallocate(s->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)s->geom.rings_off, (off_t)(s->size - s->geom.rings_off)) < 0)
			log_warn("freeing a %zu-byte session mapping: %s", s->size,
				 strerror(errno));
		close(s->memfd);
	}
	memset(s, 0, sizeof(*s));
	s->memfd = -1;
}
