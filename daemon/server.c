/* server.c: the event loop: listening socket, accept, signals, sd_notify. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "conn.h"
#include "gpuqd.h"
#include "backend.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "worker.h"

static struct server *server_of_host(struct conn_host *h)
{
	return (struct server *)((char *)h - offsetof(struct server, host));
}

static void send_status(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	uint64_t nbufs, nbytes;

	server_buffer_totals(srv, &nbufs, &nbytes);
	sd_notifyf(0, "STATUS=%u session(s), %llu buffer(s), %llu bytes on %u %s device(s)",
		   srv->nsessions, (unsigned long long)nbufs, (unsigned long long)nbytes,
		   srv->gq->be->ndevices, srv->gq->be->ops->name);
}

void server_notify_status(struct server *srv)
{
	/*
	 * Coalesced to one update a second: sd_notify writes to a datagram
	 * socket and would block the loop if the manager fell behind.
	 */
	static const struct timeval delay = { .tv_sec = 1 };

	if (!evtimer_pending(srv->status_timer, NULL))
		evtimer_add(srv->status_timer, &delay);
}

void server_buffer_totals(struct server *srv, uint64_t *count, uint64_t *bytes)
{
	struct conn *c;

	*count = 0;
	*bytes = 0;
	TAILQ_FOREACH(c, &srv->conns, link) {
		if (!c->sess)
			continue;
		*count += c->sess->bufs.count;
		*bytes += c->sess->bufs.bytes;
	}
}

void server_foreach_conn(struct server *srv, void (*fn)(struct conn *c, void *arg), void *arg)
{
	struct conn *c;

	TAILQ_FOREACH(c, &srv->conns, link)
		fn(c, arg);
}

int server_sessions_full(const struct server *srv)
{
	return srv->nsessions >= srv->gq->cfg->max_clients;
}

void server_session_add(struct server *srv)
{
	srv->nsessions++;
}

static void host_handshake_done(struct conn_host *h)
{
	server_of_host(h)->nhandshakes--;
}

static void host_session_done(struct conn_host *h)
{
	server_of_host(h)->nsessions--;
}

static void host_status_changed(struct conn_host *h)
{
	server_notify_status(server_of_host(h));
}

static void host_gone(struct conn_host *h, struct conn *c)
{
	struct server *srv = server_of_host(h);

	TAILQ_REMOVE(&srv->conns, c, link);
	srv->nconns--;
}

/* The most a stop (SIGTERM) waits for sessions to be freed. */
#define SERVER_STOP_MS 20000

/* How long the listener rests after accept ran out of descriptors. */
#define ACCEPT_BACKOFF_US 100000

/*
 * Clients send gpuqd no descriptors; refusing them spares the control
 * thread the close of one that would block it (see frame_refuse_fds).
 */
static void refuse_fds(int fd)
{
	static int warned;
	int r = frame_refuse_fds(fd);

	if (r && !warned++)
		log_warn("this kernel cannot refuse descriptors on sockets (SO_PASSRIGHTS: %s); "
			 "clients can still send some",
			 strerror(-r));
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	event_add(srv->listen_ev, NULL);
}

/* Connections of uid in their handshake, and (*oldest) the first of them. */
static unsigned handshakes_of(struct server *srv, uid_t uid, struct conn **oldest)
{
	struct conn *o;
	unsigned n = 0;

	*oldest = NULL;
	TAILQ_FOREACH(o, &srv->conns, link) {
		if (!o->handshaking || o->state != CONN_HANDSHAKE || o->uid != uid)
			continue;
		if (!n++)
			*oldest = o;
	}
	return n;
}

/*
 * Too many connections are in their handshake, c (the newest) among them:
 * which one goes. The handshake slots are shared by all uids, so one uid
 * must not keep the others out: the oldest connection of the uid holding
 * the most slots yields to c when c's uid holds fewer; else c is refused.
 */
static struct conn *handshake_victim(struct server *srv, struct conn *c)
{
	struct conn *o, *first, *victim = c;
	unsigned mine = handshakes_of(srv, c->uid, &first), most = mine, n;

	TAILQ_FOREACH(o, &srv->conns, link) {
		if (!o->handshaking || o->state != CONN_HANDSHAKE || o->uid == c->uid)
			continue;
		n = handshakes_of(srv, o->uid, &first);
		if (n > most) {
			most = n;
			victim = first;
		}
	}
	return most > mine + 1 ? victim : c;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;
	struct conn *c;
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (e == EAGAIN || e == EINTR || e == ECONNABORTED)
			return;
		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			/*
			 * The pending connection stays in the backlog and the
			 * listener stays readable: polling it again now would
			 * spin. Stop listening for a moment instead; clients
			 * wait in the backlog meanwhile.
			 */
			static const struct timeval pause = { .tv_usec = ACCEPT_BACKOFF_US };

			if (!srv->accept_paused++)
				log_warn("accept: %s; not accepting for %d ms at a time until "
					 "descriptors are free again",
					 strerror(e), ACCEPT_BACKOFF_US / 1000);
			event_del(srv->listen_ev);
			evtimer_add(srv->accept_backoff, &pause);
			return;
		}
		log_warn("accept: %s", strerror(e));
		return;
	}
	if (srv->accept_paused) {
		log_info("accepting again (paused %u times for want of descriptors)",
			 srv->accept_paused);
		srv->accept_paused = 0;
	}
	refuse_fds(fd); /* inherited from the listener; a socket systemd made may lack it */
	c = conn_create(&srv->host, fd);
	if (!c)
		return;
	TAILQ_INSERT_TAIL(&srv->conns, c, link);
	srv->nconns++;
	srv->nhandshakes++;
	/* Sessions are bounded by max_clients (at Hello); connections that have not said hello by this. */
	if (srv->nhandshakes > srv->gq->cfg->max_handshakes) {
		struct conn *victim = handshake_victim(srv, c);

		if (victim != c)
			log_warn(
				"dropping pid %d uid %u, in its handshake: %u connections are, and "
				"its uid holds the most of them",
				(int)victim->pid, (unsigned)victim->uid,
				srv->gq->cfg->max_handshakes);
		else
			log_warn("refusing pid %d uid %u: %u connections are already in their "
				 "handshake",
				 (int)c->pid, (unsigned)c->uid, srv->gq->cfg->max_handshakes);
		conn_send_error(victim, 0, -EUSERS,
				"gpuqd has %u connections that have not said hello yet; try again",
				srv->gq->cfg->max_handshakes);
		conn_close_after_flush(victim);
		conn_settle(victim);
	}
}

/*
 * An engine found some session's ring corrupt and stopped serving it: tell
 * that client on its control socket and close the connection (the session
 * ends with it, srv_state already says BROKEN).
 */
static void on_broken(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct conn *c, *next;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		(void)0; /* EAGAIN: another round took it */
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		/* One whose job still runs is looked at when the job is done (conn_check_broken). */
		if (c->pending || !conn_check_broken(c))
			continue;
		conn_settle(c);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	if (sig == SIGHUP) {
		sd_notify(0, "RELOADING=1");
		log_info("SIGHUP: reloading configuration");
		if (srv->reload && srv->reload(srv->reload_arg) == 0)
			srv->reloads++;
		sd_notify(0, "READY=1");
		send_status(-1, 0, srv);
		return;
	}
	log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	sd_notify(0, "STOPPING=1");
	srv->exit_code = 0;
	event_base_loopbreak(srv->base);
}

/* Is a live gpuqd answering on path? Then we must not steal its socket. */
static int socket_in_use(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0)
		return 0;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return r;
}

static int listen_on_path(struct server *srv)
{
	struct config *cfg = srv->gq->cfg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	char dir[sizeof(sa.sun_path)], *slash;
	int fd, r;

	if (strlen(cfg->socket) >= sizeof(sa.sun_path)) {
		log_err("socket path too long: %s", cfg->socket);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, cfg->socket, strlen(cfg->socket) + 1);
	snprintf(dir, sizeof(dir), "%s", cfg->socket);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			log_warn("mkdir %s: %s", dir, strerror(errno));
	}
	if (lstat(cfg->socket, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_err("%s exists and is not a socket", cfg->socket);
			return -EEXIST;
		}
		if (socket_in_use(&sa)) {
			log_err("another gpuqd is listening on %s", cfg->socket);
			return -EADDRINUSE;
		}
		unlink(cfg->socket); /* stale, from a daemon that died */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Before listen(): every connection inherits it from its first byte on. */
	refuse_fds(fd);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		log_err("bind %s: %s", cfg->socket, strerror(errno));
		goto fail;
	}
	if (chmod(cfg->socket, cfg->socket_mode) < 0) {
		r = -errno;
		log_err("chmod %s: %s", cfg->socket, strerror(errno));
		goto fail_unlink;
	}
	if (cfg->socket_group[0]) {
		struct group *g = getgrnam(cfg->socket_group);

		if (!g) {
			r = -ENOENT;
			log_err("socket group '%s' does not exist", cfg->socket_group);
			goto fail_unlink;
		}
		if (chown(cfg->socket, (uid_t)-1, g->gr_gid) < 0) {
			r = -errno;
			log_err("chown %s to group %s: %s", cfg->socket, cfg->socket_group,
				strerror(errno));
			goto fail_unlink;
		}
	}
	if (listen(fd, 128) < 0) {
		r = -errno;
		goto fail_unlink;
	}
	srv->listen_fd = fd;
	snprintf(srv->socket_path, sizeof(srv->socket_path), "%s", cfg->socket);
	log_info("listening on %s (mode %04o%s%s)", cfg->socket, cfg->socket_mode,
		 cfg->socket_group[0] ? ", group " : "", cfg->socket_group);
	return 0;

fail_unlink:
	unlink(cfg->socket);
fail:
	close(fd);
	return r;
}

static int adopt_activated(struct server *srv)
{
	int n = sd_listen_fds(1);

	if (n <= 0)
		return n;
	if (n > 1)
		log_warn("systemd passed %d sockets; using the first", n);
	if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0) {
		log_err("socket passed by systemd is not a listening unix stream socket");
		return -EINVAL;
	}
	srv->listen_fd = SD_LISTEN_FDS_START;
	srv->activated = 1;
	refuse_fds(srv->listen_fd);
	{
		/* Report the socket systemd gave us, not the configured path. */
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);

		memset(&sa, 0, sizeof(sa));
		if (getsockname(srv->listen_fd, (struct sockaddr *)&sa, &len) == 0 &&
		    sa.sun_path[0])
			snprintf(srv->socket_path, sizeof(srv->socket_path), "%.*s",
				 (int)sizeof(sa.sun_path), sa.sun_path);
	}
	if (fcntl(srv->listen_fd, F_SETFL, fcntl(srv->listen_fd, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	log_info("using the socket passed by systemd (socket activation)");
	return 1;
}

int server_init(struct server *srv, struct gpuqd *gq, int (*handle)(struct conn *c, Gpuq__Msg *m))
{
	int r;

	memset(srv, 0, sizeof(*srv));
	srv->gq = gq;
	srv->listen_fd = -1;
	srv->exit_code = 1;
	srv->broken_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->broken_efd < 0)
		return -errno;
	TAILQ_INIT(&srv->conns);
	signal(SIGPIPE, SIG_IGN);

	srv->base = event_base_new();
	if (!srv->base)
		return -ENOMEM;
	r = adopt_activated(srv);
	if (r == 0)
		r = listen_on_path(srv);
	if (r < 0)
		goto fail;
	r = worker_create(&srv->worker, srv->base);
	if (r) {
		log_err("cannot start the worker thread: %s", strerror(-r));
		goto fail;
	}
	srv->host = (struct conn_host){ .gq = gq,
					.base = srv->base,
					.worker = srv->worker,
					.handle = handle,
					.handshake_done = host_handshake_done,
					.session_done = host_session_done,
					.status_changed = host_status_changed,
					.gone = host_gone };
	srv->listen_ev = event_new(srv->base, srv->listen_fd, EV_READ | EV_PERSIST, on_accept, srv);
	srv->accept_backoff = evtimer_new(srv->base, on_accept_resume, srv);
	srv->sig_term = evsignal_new(srv->base, SIGTERM, on_signal, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, on_signal, srv);
	srv->sig_hup = evsignal_new(srv->base, SIGHUP, on_signal, srv);
	srv->status_timer = evtimer_new(srv->base, send_status, srv);
	srv->broken_ev =
		event_new(srv->base, srv->broken_efd, EV_READ | EV_PERSIST, on_broken, srv);
	if (!srv->broken_ev || event_add(srv->broken_ev, NULL)) {
		r = -ENOMEM;
		goto fail;
	}
	if (!srv->status_timer || !srv->listen_ev || !srv->accept_backoff || !srv->sig_term ||
	    !srv->sig_int || !srv->sig_hup || event_add(srv->listen_ev, NULL) ||
	    event_add(srv->sig_term, NULL) || event_add(srv->sig_int, NULL) ||
	    event_add(srv->sig_hup, NULL)) {
		r = -ENOMEM;
		goto fail;
	}
	return 0;
fail:
	server_fini(srv);
	return r;
}

int server_run(struct server *srv)
{
	sd_notify(0, "READY=1");
	send_status(-1, 0, srv);
	log_info("ready: gpuqd %s, protocol %u, %s backend, %u device(s)", PACKAGE_VERSION,
		 GPUQ_PROTO_VERSION, srv->gq->be->ops->name, srv->gq->be->ndevices);
	if (event_base_dispatch(srv->base) < 0)
		return 1;
	return srv->exit_code;
}

void server_fini(struct server *srv)
{
	struct conn *c, *next;

	/* A clean stop: every client learns it from srv_state when its socket closes. */
	TAILQ_FOREACH(c, &srv->conns, link)
		session_set_state(c->sess, SHM_STATE_SHUTDOWN);
	/*
	 * Jobs still running finish first; then every session ends, on the
	 * worker too. Each session lets go of a hung device after at most 5 s,
	 * but many of them could add up: the whole shutdown has a deadline,
	 * past which gpuqd exits with the rest still held (the kernel frees it).
	 */
	if (srv->worker)
		worker_flush_timeout(srv->worker, SERVER_STOP_MS / 2);
	/* One whose job still runs stays listed (a zombie) until that job is done. */
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		conn_destroy(c);
	}
	if (srv->worker && worker_flush_timeout(srv->worker, SERVER_STOP_MS / 2) < 0) {
		log_err("sessions still being freed after %d s (a hung device?); exiting without "
			"waiting for them",
			SERVER_STOP_MS / 1000);
		if (srv->listen_fd >= 0 && !srv->activated)
			unlink(srv->gq->cfg->socket);
		sd_notify(0, "STATUS=stopped with sessions still held by a hung device");
		_exit(1);
	}
	worker_destroy(srv->worker);
	srv->worker = NULL;
	srv->host.worker = NULL;
	if (srv->broken_ev)
		event_free(srv->broken_ev);
	if (srv->broken_efd >= 0)
		close(srv->broken_efd);
	if (srv->status_timer)
		event_free(srv->status_timer);
	if (srv->sig_hup)
		event_free(srv->sig_hup);
	if (srv->sig_int)
		event_free(srv->sig_int);
	if (srv->sig_term)
		event_free(srv->sig_term);
	if (srv->accept_backoff)
		event_free(srv->accept_backoff);
	if (srv->listen_ev)
		event_free(srv->listen_ev);
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		/* A socket systemd owns stays; our own goes with us. */
		if (!srv->activated)
			unlink(srv->gq->cfg->socket);
	}
	if (srv->base)
		event_base_free(srv->base);
	memset(srv, 0, sizeof(*srv));
	srv->listen_fd = -1;
	srv->broken_efd = -1;
}
