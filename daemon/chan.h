/* chan.h: named channels: creation, permissions, lifetime, and waking sleeping receivers. */
#ifndef GPUQ_DAEMON_CHAN_H
#define GPUQ_DAEMON_CHAN_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpuq/gpuq_chan.h"

/*
 * One channel. Owned by the registry; freed when the last session that
 * opened it closes it. The memory and the eventfd are shared with clients.
 */
struct chan {
	char name[GPUQ_CHAN_NAME_MAX];
	int memfd;
	int efd;
	struct gpuq_chan_hdr *hdr; /* gpuqd's own mapping, for the watcher */
	uint64_t size;
	/*
	 * The geometry as created. Clients can write the shared header, so
	 * gpuqd never reads geometry back from it.
	 */
	uint32_t slot_size, nslots, direction;
	uid_t uid;
	gid_t gid;
	unsigned mode;
	unsigned refs;
	struct chan *next;
};

/* All channels, and the watcher thread that wakes sleeping receivers. Owned by main (init/fini). */
struct chan_registry {
	pthread_mutex_t lock;
	struct chan *list;
	unsigned count;
	uint64_t max_size; /* largest channel memory allowed */
	pthread_t watcher;
	int running;
	int stop;
};

int chan_registry_init(struct chan_registry *r, uint64_t max_size);
void chan_registry_fini(struct chan_registry *r);

/*
 * Creates a channel owned by uid/gid. Returns it with one reference, or
 * NULL with *err = -EEXIST, -EINVAL, -E2BIG (over max_size), -ENOMEM...
 */
struct chan *chan_create(struct chan_registry *r, const char *name, uint32_t slot_size,
			 uint32_t nslots, uint32_t direction, unsigned mode, uid_t uid, gid_t gid,
			 int *err);
/*
 * Opens a channel for a peer with uid/gid that wants to send and/or
 * receive. Returns it with a new reference, or NULL with *err = -ENOENT or
 * -EACCES.
 */
struct chan *chan_open(struct chan_registry *r, const char *name, int send, int recv, uid_t uid,
		       gid_t gid, int *err);
/* Drops a reference; the last one frees the channel. */
void chan_unref(struct chan_registry *r, struct chan *c);

/* A channel as `gpuqctl channels` shows it (proto ChannelInfo). */
struct chan_info {
	char name[GPUQ_CHAN_NAME_MAX];
	uid_t uid;
	gid_t gid;
	unsigned mode, users;
	uint32_t slot_size, nslots, direction;
	uint64_t head, tail;
	uint32_t tail_owner, rx_owner, rx_waiting, senders_done;
};

/*
 * The channels a peer with uid/gid may see: all for root and for gpuqd's
 * own user, else those its mode bits give it any access to. Returns how
 * many, with *out (free()) holding them, or -ENOMEM.
 */
int chan_list(struct chan_registry *r, uid_t uid, gid_t gid, struct chan_info **out);

/* The ends of a channel a process's kernels can own (proto ChanOwn.end). */
#define CHAN_END_SEND 1u
#define CHAN_END_RECV 2u
/*
 * Marks end as owned by token (a nonzero pid) in the shared header, where
 * libgpuq refuses CPU senders or receivers meanwhile. -EBUSY when someone
 * owns it already.
 */
int chan_own(struct chan *c, unsigned end, uint32_t token);
/*
 * Clears the mark. repair: the owner went away without handing its end
 * back; for the send end, tail goes back to the first position from head
 * that holds no message (the owner's kernels took positions from a device
 * counter; what they took and never filled would stall every receiver).
 */
void chan_disown(struct chan *c, unsigned end, int repair);
/* Checks a name: [A-Za-z0-9._-], 1 to 63 characters. */
int chan_name_valid(const char *name);

#endif
