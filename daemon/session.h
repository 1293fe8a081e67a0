/* session.h: per-client state that outlives no connection: identity, buffers, counters. */
#ifndef GPUQ_SESSION_H
#define GPUQ_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "engine.h"
#include "shm.h"

struct doorbell;
struct chan;
struct chan_registry;

/*
 * One client session, created when a Hello is accepted and destroyed with
 * its connection (which owns it). Destroying it frees everything the client
 * allocated.
 */
struct session {
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char name[64];
	uint64_t started_ms; /* monotonic */
	uint64_t requests;
	pthread_mutex_t lock; /* guards bufs: the engines validate against it */
	struct buf_table bufs;
	struct shm shm; /* shm.geom: the session's only trusted geometry */
	int has_shm;
	/*
	 * What the engines and the doorbell thread see of this session (its
	 * view is all they may touch): filled by session_open_data. port.sock
	 * is gpuqd's end of the session socket (protocol 2), its own open file
	 * description, non-blocking; the doorbell thread reads it and the
	 * engines send wakes on it with MSG_DONTWAIT. client_sock is the end the
	 * Welcome passes; it stays open until the session ends, so the queued
	 * Welcome never names a closed descriptor. The control thread sets
	 * port.uid_inflight, uid_inflight_max and broken_efd before Hello's
	 * data path opens.
	 */
	struct engine_port port;
	int client_sock;
	struct doorbell *doorbell; /* watching port.sock while set */
	struct engine **engines;   /* one per device, attached while has_shm */
	unsigned nengines;
	struct session *next_hung;   /* on the list of sessions a hung device kept */
	struct chan_registry *chreg; /* where the channels below live */
	struct chan **chans;         /* channels this session opened; id = index + 1 */
	uint8_t *chan_own; /* per channel: the CHAN_END_* bits this session owns (ChanOwn) */
	unsigned nchans;
};

struct session *session_create(uint64_t id, struct backend *be, uint64_t quota, pid_t pid,
			       uid_t uid, gid_t gid, const char *name);
/*
 * Records an open channel; returns its id in this session (> 0) or -ENOMEM.
 * session_destroy drops every reference still held.
 */
int session_chan_add(struct session *s, struct chan *c);
/*
 * Forgets channel id; returns it (for chan_unref) or NULL when id is not
 * open. An end the session still owned is given back first, the ring
 * repaired (chan_disown).
 */
struct chan *session_chan_take(struct session *s, uint32_t id);
/* Channel id of this session, or NULL; *own (if not NULL) points at its ownership bits. */
struct chan *session_chan_get(struct session *s, uint32_t id, uint8_t **own);

/*
 * Detaches from the engines, frees every buffer and the shared memory. If
 * an engine cannot let go in time (a hung device), the session's memory
 * and descriptors are left in place rather than freed under the device.
 */
void session_destroy(struct session *s);

/*
 * Sets up the data path: shared memory (sq_entries per device, arena_size
 * bytes of arena), the session socket (watched by db), and attachment to
 * every engine. Returns 0 or -errno.
 */
int session_open_data(struct session *s, struct backend *be, struct engine **engines,
		      unsigned nengines, struct doorbell *db, uint32_t sq_entries,
		      uint64_t arena_size);

/* Records why gpuqd stops serving s (SHM_STATE_*), for the client to read after EOF. */
void session_set_state(struct session *s, uint32_t state);

/* Milliseconds on the monotonic clock, for uptimes and session ages. */
uint64_t session_now_ms(void);

#endif
