/* conn.h: one client connection: a state machine over the framed control socket. */
#ifndef GPUQ_CONN_H
#define GPUQ_CONN_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "frame.h"
#include "worker.h"

struct conn;
struct event;
struct event_base;
struct gpuqd;
struct session;

/*
 * What a connection needs from the module that keeps the list of
 * connections (the server): the daemon's context, the loop and the worker,
 * the handler for each message, and the calls that keep the server's list
 * and counts (only the server edits them). Owned by the server; it outlives
 * every connection.
 */
struct conn_host {
	struct gpuqd *gq;
	struct event_base *base;
	struct worker *worker; /* NULL: slow work runs inline */
	/* Handles one message from c (dispatch_msg's contract). */
	int (*handle)(struct conn *c, Gpuq__Msg *m);
	/* c is past its handshake: it no longer counts against max_handshakes. */
	void (*handshake_done)(struct conn_host *h);
	/* A session's teardown is over: its slot (max_clients) is free again. */
	void (*session_done)(struct conn_host *h);
	/* The load changed: a STATUS= update is due (server_notify_status). */
	void (*status_changed)(struct conn_host *h);
	/* c is about to be freed: it leaves the list. */
	void (*gone)(struct conn_host *h, struct conn *c);
};

enum conn_state {
	CONN_HANDSHAKE, /* waiting for Hello (bounded by handshake_timeout) */
	CONN_READY,     /* session established: requests are served; a started frame must
			   make progress within frame_timeout */
	CONN_CLOSING,   /* flushing a final reply (for at most 2 s), then closed; input ignored */
};

/* One queued outgoing frame. */
struct conn_out {
	STAILQ_ENTRY(conn_out) link;
	uint8_t *buf;
	size_t len, off;
	int fds[FRAME_MAX_FDS]; /* owned duplicates, sent with the first byte, then closed */
	unsigned nfds;
};

/*
 * A connection. Created by the server on accept, destroyed by conn_destroy
 * (which also destroys its session). All fields belong to the control thread.
 */
struct conn {
	TAILQ_ENTRY(conn) link; /* on the server's list (server.c's alone) */
	struct conn_host *host;
	int fd;
	enum conn_state state;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	struct event *rev, *wev, *timer;
	uint8_t *in;
	size_t inlen, incap;
	STAILQ_HEAD(, conn_out) out;
	size_t outbytes;
	unsigned outfds;      /* descriptors the frames in out still hold (CONN_OUT_FDS_MAX) */
	struct session *sess; /* set once the handshake succeeds */
	int handshaking;      /* counted against max_handshakes by the host */
	int drop;             /* output over max_output: destroyed at the next settle, unflushed */
	unsigned bodyless;    /* messages in a row with no known body */
	/* The uid's account (referenced from Hello on) and what this connection charged to it. */
	struct account *acct;
	int charged_session;
	uint64_t charged_arena; /* the whole session mapping: rings and arena, all pinned */
	uint64_t arena_bytes;   /* of which the arena */
	/*
	 * Pending: a job for c runs on the worker (conn_defer). Until it is
	 * done no input is read and no frame processed, so replies stay in
	 * order; replies the job queues go to pend_out (the worker's side) and
	 * join out when it is done. A connection destroyed meanwhile is a
	 * zombie, destroyed for real after the job.
	 */
	int pending, zombie;
	struct worker_job job;
	Gpuq__Msg *job_msg;
	void (*job_run)(struct conn *c, const Gpuq__Msg *m);
	void (*job_after)(struct conn *c, const Gpuq__Msg *m);
	int job_result; /* for job_run to tell job_after */
	STAILQ_HEAD(, conn_out) pend_out;
	size_t pend_bytes;
	unsigned pend_fds;
};

/*
 * Adopts an accepted socket, in its handshake (the host counts it and puts
 * it on its list). Returns NULL (and closes fd) on failure.
 */
struct conn *conn_create(struct conn_host *host, int fd);
void conn_destroy(struct conn *c);
/*
 * Runs run(c, m) on the worker thread, then after(c, m) (may be NULL) on
 * the control thread, and frees m; c stays pending in between. run may
 * queue replies (conn_send*) but must touch nothing else of c or of the
 * server that the control thread uses unlocked.
 */
void conn_defer(struct conn *c, Gpuq__Msg *m, void (*run)(struct conn *c, const Gpuq__Msg *m),
		void (*after)(struct conn *c, const Gpuq__Msg *m));
/* c is past its handshake (a Hello came): it no longer counts against max_handshakes. */
void conn_end_handshake(struct conn *c);

/*
 * Queues m, answering request seq, for sending. Returns 0 or -errno; a reply
 * too large for the frame cap is replaced by an Error(-EMSGSIZE).
 */
int conn_send(struct conn *c, Gpuq__Msg *m, uint64_t seq);
/*
 * As conn_send, passing fds with the frame (SCM_RIGHTS). The queued frame
 * holds its own duplicates (closed once sent or when c is destroyed), so the
 * caller may close its descriptors at once. nfds <= FRAME_MAX_FDS.
 */
int conn_send_fds(struct conn *c, Gpuq__Msg *m, uint64_t seq, const int *fds, unsigned nfds);
/* Queues an Error reply. */
int conn_send_error(struct conn *c, uint64_t seq, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Charges one open channel of bytes to c's uid (uid_max_channels,
 * uid_max_channel_bytes). Returns 0, or -EDQUOT after queuing the Error
 * answering seq. conn_chan_uncharge gives it back (ChanClose; the
 * connection's end does it for channels still open).
 */
int conn_chan_charge(struct conn *c, uint64_t seq, uint64_t bytes);
void conn_chan_uncharge(struct conn *c, uint64_t bytes);
/*
 * If an engine found c's session ring corrupt: queues the Error and
 * closes c after the flush; returns 1 (the caller settles c). Never while
 * c is pending: its job's replies go where the worker writes.
 */
int conn_check_broken(struct conn *c);
/* Stops serving c: pending output is flushed, then the connection is closed. */
void conn_close_after_flush(struct conn *c);

/*
 * Flushes queued output and closes c when it is CLOSING and drained. Call it
 * at the end of any callback that queued output on c; c may be freed.
 */
void conn_settle(struct conn *c);

#endif
