/* server.h: the event loop, the listening socket, signals and the list of connections. */
#ifndef GPUQ_SERVER_H
#define GPUQ_SERVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/queue.h>

#include "account.h"
#include "backend.h"
#include "config.h"

struct conn;
struct event_base;
struct event;

/*
 * The daemon's one server. Owned by main.c (init/fini); it owns the
 * event_base, the listener and every connection.
 */
struct server {
	struct event_base *base;
	struct config *cfg; /* owned by main; may change on reload */
	struct backend *be;
	struct engine **engines; /* one per device; owned by main */
	unsigned nengines;
	struct doorbell *doorbell; /* reads session sockets; owned by main */
	struct worker *worker; /* runs slow control work (owned: init/fini) */
	int broken_efd; /* engines write it when a session's ring is corrupt */
	struct event *broken_ev;
	struct sharing *sharing; /* owned by main */
	struct chan_registry *chans; /* owned by main */
	const char *config_path;
	int listen_fd;
	int activated;      /* listen_fd came from systemd: do not unlink it */
	char socket_path[108]; /* where clients reach us (systemd's socket when activated) */
	struct event *listen_ev;
	struct event *accept_backoff; /* re-enables listen_ev after accept ran out of fds */
	unsigned accept_paused; /* back-offs since the last accept that worked */
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *status_timer; /* coalesces STATUS= updates */
	int (*reload)(struct server *srv, void *arg); /* re-reads the config; set by main */
	void *reload_arg;
	TAILQ_HEAD(, conn) conns;
	unsigned nconns;
	unsigned nhandshakes; /* connections not yet past Hello (bounded by max_handshakes) */
	unsigned nsessions;   /* bounded by max_clients */
	struct account_table *accounts; /* per-uid counts (main owns them: they outlive the engines) */
	uint64_t next_session_id;
	uint64_t started_ms;
	uint64_t requests;
	_Atomic uint64_t errors; /* the worker's replies count too */
	uint64_t reloads;
	int exit_code;
};

/* Creates the event loop and the listening socket (or adopts one from systemd). */
int server_init(struct server *srv, struct config *cfg, struct backend *be, const char *config_path);
/* Runs until SIGTERM/SIGINT. Returns the exit code for main. */
int server_run(struct server *srv);
/* Closes every connection (ending their sessions) and the listener. */
void server_fini(struct server *srv);

/* Schedules a STATUS= update to systemd describing the current load (at most 1/s). */
void server_notify_status(struct server *srv);

/* Totals over every session, for `gpuqctl status`. */
void server_buffer_totals(struct server *srv, uint64_t *count, uint64_t *bytes);

#endif
