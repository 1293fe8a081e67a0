/* engine.h: one thread per device harvesting every session's rings and batching transfers. */
#ifndef GPUQ_ENGINE_H
#define GPUQ_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "backend.h"

struct session;
struct engine_lane;

/*
 * One device's engine. Created by engine_create at start-up, destroyed by
 * engine_destroy at shutdown (both on the control thread). The control
 * thread attaches and detaches sessions; everything else belongs to the
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
	struct session **list;
	unsigned nlist, caplist;
	unsigned gen;
	struct session *detaching;
	int detach_done;
	int start_result; /* xfer_start's result, reported back to engine_create */
	int started;

	atomic_bool stop;
	_Atomic unsigned idle_us;

	/* Statistics, read by the control thread. */
	_Atomic uint64_t xfers, xfer_bytes, xfer_errors, batches;

	/* Engine thread only. */
	struct session **sess;
	unsigned nsess, capsess, seen_gen, rr;
	unsigned max_batch;
	unsigned hold_inflight; /* small lanes with this many batches in flight let the next grow */
	struct engine_lane *lanes;
};

/* Starts the engine thread of dev; returns once the backend's data path is up. */
int engine_create(struct engine **out, struct backend *be, unsigned dev, unsigned idle_us);
void engine_destroy(struct engine *e);

/* Makes the engine serve s's rings for this device. Returns 0 or -ENOMEM. */
int engine_attach(struct engine *e, struct session *s);
/*
 * Stops serving s and waits until none of its requests is in flight (their
 * completions are posted); afterwards the engine never touches s again and
 * 0 is returned. After 5 s without that (a hung device) it logs and returns
 * -ETIMEDOUT: the engine may still touch s, which must then never be freed.
 */
int engine_detach(struct engine *e, struct session *s);

/* Wakes e if it sleeps (doorbell thread). Never blocks. */
void engine_wake(struct engine *e);

#endif
