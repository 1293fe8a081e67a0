/* server.h: the event loop, the listening socket, signals and the list of connections. */
#ifndef GPUQ_SERVER_H
#define GPUQ_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "conn.h"
#include "frame.h"

struct event_base;
struct event;
struct gpuqd;

/*
 * The daemon's one server: the event loop, the listener, signals and the
 * list of connections (nothing else edits the list or its counts).
 * Owned by main.c (init/fini); it owns the event_base, the worker, the
 * listener and every connection.
 */
struct server {
	struct conn_host host; /* what its connections see of it */
	struct gpuqd *gq;      /* main's */
	struct event_base *base;
	struct worker *worker; /* runs slow control work (owned: init/fini) */
	int broken_efd;        /* engines write it when a session's ring is corrupt */
	struct event *broken_ev;
	int listen_fd;
	int activated;         /* listen_fd came from systemd: do not unlink it */
	char socket_path[108]; /* where clients reach us (systemd's socket when activated) */
	struct event *listen_ev;
	struct event *accept_backoff; /* re-enables listen_ev after accept ran out of fds */
	unsigned accept_paused;       /* back-offs since the last accept that worked */
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *status_timer; /* coalesces STATUS= updates */
	int (*reload)(void *arg);   /* re-reads the config; set by main */
	void *reload_arg;
	TAILQ_HEAD(, conn) conns;
	unsigned nconns;
	unsigned nhandshakes; /* connections not yet past Hello (bounded by max_handshakes) */
	unsigned nsessions;   /* bounded by max_clients (server_sessions_full) */
	uint64_t reloads;
	int exit_code;
};

/*
 * Creates the event loop and the listening socket (or adopts one from
 * systemd). gq is main's and must outlive the server; handle answers each
 * message of a connection (dispatch_msg).
 */
int server_init(struct server *srv, struct gpuqd *gq, int (*handle)(struct conn *c, Gpuq__Msg *m));
/* Runs until SIGTERM/SIGINT. Returns the exit code for main. */
int server_run(struct server *srv);
/* Closes every connection (ending their sessions) and the listener. */
void server_fini(struct server *srv);

/* Schedules a STATUS= update to systemd describing the current load (at most 1/s). */
void server_notify_status(struct server *srv);

/* Totals over every session, for `gpuqctl status`. */
void server_buffer_totals(struct server *srv, uint64_t *count, uint64_t *bytes);

/* The server whose connection c is. */
static inline struct server *server_of(const struct conn *c)
{
	return (struct server *)((char *)c->host - offsetof(struct server, host));
}

/* Do max_clients sessions run already? Then a Hello is refused. */
int server_sessions_full(const struct server *srv);
/* Counts a session that Hello created; its teardown gives it back (conn_host.session_done). */
void server_session_add(struct server *srv);

/* Calls fn on every connection, in the order they came; fn must not destroy any. */
void server_foreach_conn(struct server *srv, void (*fn)(struct conn *c, void *arg), void *arg);

#endif
