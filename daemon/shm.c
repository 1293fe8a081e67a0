/* shm.c: a session's shared memory: sealed memfd with rings and arena, registered with the GPU. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

/*
 * Page tables populated (at session start) or torn down (at its end) per
 * call: each holds the process's address-space lock, which every other
 * gpuqd thread's mmap or munmap waits for.
 */
#define SHM_POPULATE_STEP (4u << 20)

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
	/*
	 * The pages first, through the file: fallocate takes no lock of the
	 * process's address space, where MAP_POPULATE would hold it (read) for
	 * the whole arena, a second or so per GiB, and every mmap or munmap of
	 * another gpuqd thread (the control thread's allocator among them)
	 * would wait behind it. Out of memory shows here, not at first use.
	 */
	if (fallocate(s->memfd, 0, 0, (off_t)s->size) < 0) {
		r = -errno;
		goto fail;
	}
	s->base = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		r = -errno;
		goto fail;
	}
	/* Then the page tables, a slice at a time (the lock is let go between). */
	for (size_t off = 0; off < s->size; off += SHM_POPULATE_STEP) {
		size_t n = s->size - off < SHM_POPULATE_STEP ? s->size - off : SHM_POPULATE_STEP;

		if (madvise((uint8_t *)s->base + off, n, MADV_POPULATE_WRITE) < 0)
			break; /* before Linux 5.14: faulted in at first use instead */
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
	/* A slice at a time, like the populating: no thread waits long for the lock. */
	for (size_t off = 0; s->base && off < s->size; off += SHM_POPULATE_STEP)
		munmap((uint8_t *)s->base + off,
		       s->size - off < SHM_POPULATE_STEP ? s->size - off : SHM_POPULATE_STEP);
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
