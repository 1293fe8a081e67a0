/* ring.h: layout of a session's shared memory: header, per-device SQ/CQ rings, payload arena. */
#ifndef GPUQ_RING_H
#define GPUQ_RING_H

#include <stdatomic.h>
#include <stdint.h>

/*
 * One sealed memfd per session, mapped by the client and by gpuqd:
 *
 *   [header page][ring set 0][ring set 1]...[arena]
 *
 * A ring set serves one device: a submission ring (client produces, that
 * device's engine consumes) and a completion ring (engine produces, client
 * consumes). Indices are free-running uint32 counters; entries are
 * index & (entries - 1). Everything the client writes is untrusted: the
 * engine copies each SQE out before validating it and bounds every index.
 *
 * Doorbells and wakes go over one socketpair per session (protocol 2):
 * gpuqd keeps one end, the client gets the other. An engine that goes idle
 * sets SHM_NEED_WAKEUP in sq_flags of every ring it serves, re-checks, and
 * sleeps; a client that sees the flag after publishing sq_tail sends one
 * byte on its end (MSG_DONTWAIT; EAGAIN means gpuqd's end is readable
 * already). A client that wants to sleep sets cq_waiting = 1, re-checks its
 * CQ, and sleeps in poll() on its end; an engine that posts completions and
 * finds cq_waiting set clears it and sends one byte, dropped if it cannot
 * be delivered. gpuqd also answers a doorbell with a wake when cq_waiting
 * is set and some CQ holds unread completions, so a client can make its
 * own end readable. Nobody makes a syscall while the other side is busy.
 *
 * Trust: gpuqd computes the geometry (struct shm_geom) once, keeps it in
 * its own memory and writes a copy into the header for the client. It
 * never reads sizes or offsets back; from shared memory it reads only the
 * index words and the SQEs, each once, and bounds them before use.
 * srv_state is written only by gpuqd (a client that writes it lies to
 * itself): why gpuqd stopped serving, set before its end of the socket
 * closes.
 */

#define SHM_MAGIC 0x67707571u /* "gpuq" */
#define SHM_VERSION 2u
#define SHM_MAX_DEVICES 16
#define SHM_CACHELINE 64
#define SHM_ARENA_ALIGN 4096u

#define SHM_NEED_WAKEUP 1u

/* hdr->srv_state */
#define SHM_STATE_SERVING 0u
#define SHM_STATE_SHUTDOWN 1u /* clean stop: the client reports -ESHUTDOWN */
#define SHM_STATE_BROKEN 2u   /* the ring was corrupt; gpuqd stopped serving it (-EPROTO) */

enum shm_op {
	SHM_OP_H2D = 1, /* arena -> device buffer */
	SHM_OP_D2H = 2, /* device buffer -> arena */
	SHM_OP_D2D = 3, /* device buffer -> device buffer (same device) */
};

/* A request. 64 bytes. */
struct shm_sqe {
	uint8_t op; /* enum shm_op */
	uint8_t flags;
	uint16_t rsvd0;
	uint32_t buf;     /* device buffer id (destination of H2D/D2D, source of D2H) */
	uint32_t src_buf; /* D2D: source buffer id */
	uint32_t rsvd1;
	uint64_t arena_off; /* H2D source / D2H destination, offset in the arena */
	uint64_t buf_off;   /* offset in buf */
	uint64_t src_off;   /* D2D: offset in src_buf */
	uint64_t len;
	uint64_t user_data; /* returned unchanged in the completion */
	uint64_t rsvd2;
};

/* A completion. 16 bytes. */
struct shm_cqe {
	uint64_t user_data;
	int64_t res; /* bytes moved, or -errno */
};

struct shm_ctr {
	_Alignas(SHM_CACHELINE) _Atomic uint32_t v;
};

/* Indices and flags of one ring set; each on its own cache line. */
struct shm_ringctl {
	struct shm_ctr sq_head;  /* engine: next SQE to consume */
	struct shm_ctr sq_tail;  /* client: next SQE to fill */
	struct shm_ctr sq_flags; /* engine: SHM_NEED_WAKEUP */
	struct shm_ctr cq_head;  /* client: next CQE to read */
	struct shm_ctr cq_tail;  /* engine: next CQE to fill */
};

/* The header page. Written by the daemon at creation; read-only afterwards but for ctl. */
struct shm_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t ndevices;
	uint32_t sq_entries; /* power of two */
	uint32_t cq_entries; /* power of two, >= 2 * sq_entries */
	uint32_t rsvd;
	uint64_t total_size;
	uint64_t rings_off; /* first ring set */
	uint64_t ringset_size;
	uint64_t arena_off;
	uint64_t arena_size;
	struct shm_ctr cq_waiting; /* client: asleep on its socket, wake me */
	struct shm_ctr srv_state;  /* gpuqd: SHM_STATE_* */
	struct shm_ringctl ctl[SHM_MAX_DEVICES];
};

/* One pause in a spin on a ring index: frees the core's pipeline for its sibling. */
static inline void shm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Offsets of one ring set's SQ and CQ arrays, relative to the ring set. */
static inline uint64_t shm_sq_off(void)
{
	return 0;
}

static inline uint64_t shm_cq_off(uint32_t sq_entries)
{
	return (uint64_t)sq_entries * sizeof(struct shm_sqe);
}

static inline uint64_t shm_align(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* A session's geometry. gpuqd's copy is the only one it trusts. */
struct shm_geom {
	uint32_t ndevices;
	uint32_t sq_entries; /* power of two */
	uint32_t cq_entries; /* power of two, >= 2 * sq_entries */
	uint32_t sq_mask, cq_mask;
	uint64_t rings_off; /* first ring set */
	uint64_t ringset_size;
	uint64_t arena_off;
	uint64_t arena_size;
	uint64_t total_size;
};

/*
 * Computes the layout for the given sizes into *g (sq_entries and
 * cq_entries powers of two, ndevices <= SHM_MAX_DEVICES). Returns the total
 * size.
 */
static inline uint64_t shm_geom_compute(struct shm_geom *g, uint32_t ndevices, uint32_t sq_entries,
					uint32_t cq_entries, uint64_t arena_size)
{
	g->ndevices = ndevices;
	g->sq_entries = sq_entries;
	g->cq_entries = cq_entries;
	g->sq_mask = sq_entries - 1;
	g->cq_mask = cq_entries - 1;
	g->rings_off = shm_align(sizeof(struct shm_hdr), SHM_ARENA_ALIGN);
	g->ringset_size =
		shm_align(shm_cq_off(sq_entries) + (uint64_t)cq_entries * sizeof(struct shm_cqe),
			  SHM_ARENA_ALIGN);
	g->arena_off = shm_align(g->rings_off + g->ringset_size * ndevices, 2u << 20);
	g->arena_size = shm_align(arena_size, SHM_ARENA_ALIGN);
	g->total_size = g->arena_off + g->arena_size;
	return g->total_size;
}

/* Writes g into the header the client reads (magic and version too; ctl untouched). */
static inline void shm_geom_publish(struct shm_hdr *h, const struct shm_geom *g)
{
	h->magic = SHM_MAGIC;
	h->version = SHM_VERSION;
	h->ndevices = g->ndevices;
	h->sq_entries = g->sq_entries;
	h->cq_entries = g->cq_entries;
	h->rings_off = g->rings_off;
	h->ringset_size = g->ringset_size;
	h->arena_off = g->arena_off;
	h->arena_size = g->arena_size;
	h->total_size = g->total_size;
}

/*
 * Computes the layout for the given sizes into *h (magic and sizes set,
 * ctl zeroed by the caller). Returns the total size.
 */
static inline uint64_t shm_layout(struct shm_hdr *h, uint32_t ndevices, uint32_t sq_entries,
				  uint32_t cq_entries, uint64_t arena_size)
{
	struct shm_geom g;

	shm_geom_compute(&g, ndevices, sq_entries, cq_entries, arena_size);
	shm_geom_publish(h, &g);
	return g.total_size;
}

#endif
