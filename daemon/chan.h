/* chan.h: named channels: creation, permissions, lifetime, dead-sender repair, and waking sleeping receivers. */
#ifndef GPUQ_DAEMON_CHAN_H
#define GPUQ_DAEMON_CHAN_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpuq/gpuq_chan.h"

/* The ends of a channel (proto ChanOwn.end; also what an opening was granted). */
#define CHAN_END_SEND 1u
#define CHAN_END_RECV 2u

/* Dead senders' positions waiting for room before gpuqd can mark them skipped. */
#define CHAN_HOLES_MAX 64u

/*
 * One channel ring. Owned by the registry; freed when its last opening
 * closes. Its memory is three memfds (gpuq_chan.h, "Regions"): gpuqd keeps
 * read-write descriptors only for the regions openers may write, and
 * read-only ones for handing out.
 */
struct chan_ring {
	char name[GPUQ_CHAN_NAME_MAX];
	int fixed_ro, rx_rw, rx_ro, tx_rw, tx_ro;
	struct gpuq_chan_hdr *hdr; /* gpuqd's own mapping of all three, side by side */
	uint64_t size;
	/*
	 * The geometry as created. Clients can write the shared memory, so
	 * gpuqd never reads geometry back from it.
	 */
	uint32_t slot_size, nslots, direction;
	uid_t uid;
	gid_t gid;
	unsigned mode;
	unsigned refs;         /* openings */
	struct chan *openings; /* every opening, for the wake pipes and the pending rows */
	uint8_t rows[GPUQ_CHAN_SENDERS_MAX]; /* pending rows handed to sending openings */
	uint64_t holes[CHAN_HOLES_MAX];      /* positions to mark skipped once there is room */
	unsigned nholes;
	/* The watcher's bookkeeping (under the registry lock). */
	uint64_t woke_head, woke_at, fast_until;
	int woke;
	struct chan_ring *next;
};

/*
 * One opening of a channel by one session: what ChanCreate/ChanOpen
 * return and the session holds. Freed by chan_unref.
 */
struct chan {
	struct chan_ring *ring;
	unsigned ends;     /* CHAN_END_* granted at open */
	int row;           /* pending row (send openings), else -1 */
	int wake_rd;       /* handed to the client */
	int wake_wr;       /* gpuqd's own, non-blocking */
	struct chan *next; /* in ring->openings */
};

/* All channels, and the watcher thread that wakes sleeping receivers. Owned by main (init/fini). */
struct chan_registry {
	pthread_mutex_t lock;
	struct chan_ring *list;
	unsigned count;
	uint64_t max_size; /* largest channel memory allowed */
	pthread_t watcher;
	int running;
	int stop;
};

/* Who asks: a peer's uid, primary gid and supplementary groups. */
struct chan_cred {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	unsigned ngroups;
};

int chan_registry_init(struct chan_registry *r, uint64_t max_size);
void chan_registry_fini(struct chan_registry *r);

/*
 * Creates a channel owned by the creator, and opens it for sending and
 * receiving. name is namelen bytes (not necessarily NUL-terminated; one
 * with a NUL inside is invalid). Returns the opening, or NULL with *err =
 * -EEXIST, -EINVAL, -E2BIG (over max_size), -ENOMEM, -EMFILE...
 */
struct chan *chan_create(struct chan_registry *r, const char *name, size_t namelen,
			 uint32_t slot_size, uint32_t nslots, uint32_t direction, unsigned mode,
			 const struct chan_cred *who, int *err);
/*
 * Opens a channel for a peer that wants to send and/or receive (at least
 * one). Returns the opening, or NULL with *err = -ENOENT, -EACCES, -EINVAL
 * (neither end, or a bad name) or -EUSERS (GPUQ_CHAN_SENDERS_MAX sending
 * openings already).
 */
struct chan *chan_open(struct chan_registry *r, const char *name, size_t namelen, int send,
		       int recv, const struct chan_cred *who, int *err);
/*
 * Closes an opening; the last one frees the channel. A sending opening's
 * positions taken and never written (its process died mid-send) are
 * marked skipped, now or once the ring has room for it (the watcher).
 */
void chan_unref(struct chan_registry *r, struct chan *c);
/*
 * The fds a ChanReply carries for opening c: the fixed page (read-only),
 * the receiver page and the sender region (each writable only as c was
 * granted), and c's wake pipe. They stay open while c does.
 */
void chan_reply_fds(const struct chan *c, int fds[4]);

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
 * The channels a peer may see: all for root and for gpuqd's own user,
 * else those its mode bits give it any access to. Returns how many, with
 * *out (free()) holding them, or -ENOMEM.
 */
int chan_list(struct chan_registry *r, const struct chan_cred *who, struct chan_info **out);

/*
 * Marks end as owned by token (a nonzero pid) in the fixed page, where
 * libgpuq refuses CPU senders or receivers meanwhile. -EACCES when c was
 * not granted that end, -EBUSY when someone owns it already.
 */
int chan_own(struct chan *c, unsigned end, uint32_t token);
/*
 * Clears the mark. repair: the owner went away without handing its end
 * back; for the send end, the ring is repaired (chan_repair_tail): what
 * its kernels took and never filled would stall every receiver.
 */
void chan_disown(struct chan *c, unsigned end, int repair);
/*
 * The send end's repair, on a mapping alone: mem is a channel's memory
 * (gpuq_chan_size(slot_size, nslots) bytes, laid out as gpuq_chan.h says,
 * any content), slot_size and nslots its geometry as created (slot_size a
 * multiple of 16, nslots a power of two >= 2). Keeps the messages from head
 * up to the first position that holds no whole message (or skip marker),
 * empties every slot after it up to a ring past head, and sets tail to that
 * position. Reads each shared word once; touches nothing outside mem; no
 * other state. Returns the new tail.
 */
uint64_t chan_repair_tail(void *mem, uint32_t slot_size, uint32_t nslots);
/* Checks a name of len bytes: [A-Za-z0-9._-], 1 to 63 characters, no leading dot. */
int chan_name_valid(const char *name, size_t len);

#endif
