/* engine.h: one thread per device harvesting every session's rings and batching transfers. */
#ifndef GPUQ_ENGINE_H
#define GPUQ_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "buf.h"
#include "ring.h"

struct engine_lane;

/* What one device's engine keeps about a port. That engine's thread only. */
struct engine_ring {
	uint32_t sq_head;  /* next SQE to take (authoritative; mirrored to the ring) */
	uint32_t cq_tail;  /* next CQE to fill */
	uint32_t inflight; /* taken, not yet completed */
	int dirty;         /* completions posted, cq_tail not yet published */
	int broken;        /* the client corrupted this ring: no longer served */
};

/*
 * All an engine (and the doorbell thread) sees of one client session: the
 * private geometry, where the rings are, the completion state, the buffer
 * table to validate requests against and the descriptors to signal on.
 * Embedded in its session, which fills it (engine_port_init) before
 * engine_attach and keeps it until every engine_detach has returned.
 */
struct engine_port {
	struct shm_geom geom; /* gpuqd's copy: every size, mask and offset comes from it */
	uint8_t *base;        /* the shared mapping; only index words and SQEs are read */
	struct shm_hdr *hdr;  /* == base */
	uint64_t arena_dev[BACKEND_MAX_DEVICES]; /* device-visible arena address per device */
	pthread_mutex_t *lock; /* guards *bufs: held across request_translate and buf_hold */
	struct buf_table *bufs;
	int sock; /* gpuqd's end of the session socket: wakes, MSG_DONTWAIT */
	/*
	 * Requests in flight for the session's uid, shared by its sessions
	 * (NULL = unlimited). Engines take no request while *uid_inflight >=
	 * uid_inflight_max (requests stay in the SQ), add one per request taken
	 * and subtract one per completion posted. Set before engines attach.
	 */
	_Atomic uint32_t *uid_inflight;
	uint32_t uid_inflight_max;
	/*
	 * Set (once) by an engine that found the ring corrupt; it then writes
	 * broken_efd (the server's, not owned) so the control thread sends an
	 * Error and closes the connection.
	 */
	atomic_int broken;
	int broken_efd;
	uint64_t id; /* the session's, for log lines */
	pid_t pid;
	struct engine_ring eng[SHM_MAX_DEVICES];
};

/*
 * One device's engine. Created by engine_create at start-up, destroyed by
 * engine_destroy at shutdown (both on the control thread). The control
 * thread attaches and detaches ports; everything else belongs to the
 * engine thread.
 */
struct engine {
	struct backend *be;
	unsigned dev;
	pthread_t thread;
	/*
	 * Private wake-up eventfd: only gpuqd holds it (the doorbell thread and
	 * the control thread write it); no client ever gets it.
	 */
	int efd;
	atomic_bool sleeping; /* in sleep_until_rung: engine_wake must write efd */

	pthread_mutex_t lock; /* guards the fields below up to 'detach_done' */
	pthread_cond_t cond;
	struct engine_port **list;
	unsigned nlist, caplist;
	unsigned gen;
	struct engine_port *detaching;
	int detach_done;
	int start_result; /* xfer_start's result, reported back to engine_create */
	int started;

	atomic_bool stop;
	_Atomic unsigned idle_us;

	/* Statistics, read by the control thread. */
	_Atomic uint64_t xfers, xfer_bytes, xfer_errors, batches;

	/* Engine thread only. */
	struct engine_port **sess;
	unsigned nsess, capsess, seen_gen, rr;
	unsigned max_batch;
	unsigned hold_inflight; /* small lanes with this many batches in flight let the next grow */
	struct engine_lane *lanes;
};

/* Starts the engine thread of dev; returns once the backend's data path is up. */
int engine_create(struct engine **out, struct backend *be, unsigned dev, unsigned idle_us);
void engine_destroy(struct engine *e);

/*
 * Fills p's view of a session's shared memory (geometry, mapping, arena
 * addresses), its buffer table and the lock guarding it. The rest (sock,
 * uid_inflight, broken_efd, id, pid) the owner sets itself.
 */
void engine_port_init(struct engine_port *p, const struct shm_geom *g, void *base,
		      const uint64_t *arena_dev, struct buf_table *bufs, pthread_mutex_t *lock);

/* Makes the engine serve p's rings for this device. Returns 0 or -ENOMEM. */
int engine_attach(struct engine *e, struct engine_port *p);
/*
 * Stops serving p and waits until none of its requests is in flight (their
 * completions are posted); afterwards the engine never touches p again and
 * 0 is returned. After 5 s without that (a hung device) it logs and returns
 * -ETIMEDOUT: the engine may still touch p, which must then never be freed.
 */
int engine_detach(struct engine *e, struct engine_port *p);

/* Wakes e if it sleeps (doorbell thread). Never blocks. */
void engine_wake(struct engine *e);

/* What an engine has done since it started (engine_stats_add). */
struct engine_stats {
	uint64_t xfers, xfer_bytes, xfer_errors, batches;
};

/* Adds e's counters to *st. Any thread: each counter is read once, atomically. */
void engine_stats_add(struct engine *e, struct engine_stats *st);

/* How long e polls idle before it sleeps, from its next idle spell on. Any thread. */
void engine_set_idle_us(struct engine *e, unsigned idle_us);

#endif
