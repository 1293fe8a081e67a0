/* session.c: per-client state: identity from SO_PEERCRED, buffers, counters. */
#include "build-config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>

#include "chan.h"
#include "doorbell.h"
#include "engine.h"
#include "frame.h"
#include "log.h"
#include "session.h"

/*
 * Sessions a hung device would not let go of: kept (and reachable) for the
 * rest of the process instead of freed under the device. Control thread.
 */
static struct session *hung_sessions;

uint64_t session_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct session *session_create(uint64_t id, struct backend *be, uint64_t quota, pid_t pid,
			       uid_t uid, gid_t gid, const char *name)
{
	struct session *s = calloc(1, sizeof(*s));
	size_t i;

	if (!s)
		return NULL;
	s->id = id;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->started_ms = session_now_ms();
	/* The name is client-chosen: keep it printable so it is safe in logs and tables. */
	snprintf(s->name, sizeof(s->name), "%s", name ? name : "");
	for (i = 0; s->name[i]; i++)
		if (!isprint((unsigned char)s->name[i]))
			s->name[i] = '?';
	buf_table_init(&s->bufs, be, quota);
	pthread_mutex_init(&s->lock, NULL);
	s->port.sock = s->client_sock = -1;
	s->port.broken_efd = -1;
	s->port.id = id;
	s->port.pid = pid;
	return s;
}

int session_open_data(struct session *s, struct backend *be, struct engine **engines,
		      unsigned nengines, struct doorbell *db, uint32_t sq_entries,
		      uint64_t arena_size)
{
	int sv[2];
	unsigned i;
	int r;

	r = shm_init(&s->shm, be, sq_entries, arena_size);
	if (r)
		return r;
	s->has_shm = 1;
	engine_port_init(&s->port, &s->shm.geom, s->shm.base, s->shm.arena_dev, &s->bufs, &s->lock);
	/*
	 * Two ends, two open file descriptions: whatever the client does to the
	 * flags of its end, gpuqd's stays non-blocking.
	 */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno; /* session_destroy cleans up */
	s->port.sock = sv[0];
	s->client_sock = sv[1];
	/* Doorbells are bytes: a descriptor beside one could block the doorbell thread's close. */
	r = frame_refuse_fds(s->port.sock);
	if (r && r != -ENOPROTOOPT)
		log_warn("session %llu: refusing descriptors on its socket: %s",
			 (unsigned long long)s->id, strerror(-r));
	if (db) {
		r = doorbell_add(db, &s->port);
		if (r)
			return r;
		s->doorbell = db;
	}
	s->engines = engines;
	for (i = 0; i < nengines; i++) {
		r = engine_attach(engines[i], &s->port);
		if (r)
			return r;
		s->nengines = i + 1;
	}
	return 0;
}

int session_chan_add(struct session *s, struct chan *c)
{
	struct chan **n;
	uint8_t *o;
	unsigned i;

	for (i = 0; i < s->nchans; i++)
		if (!s->chans[i]) {
			s->chans[i] = c;
			s->chan_own[i] = 0;
			return (int)i + 1;
		}
	if (s->nchans >= 4096)
		return -EMFILE;
	o = realloc(s->chan_own, s->nchans + 1);
	if (!o)
		return -ENOMEM;
	s->chan_own = o;
	n = realloc(s->chans, (s->nchans + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	s->chans = n;
	s->chan_own[s->nchans] = 0;
	s->chans[s->nchans++] = c;
	return (int)s->nchans;
}

struct chan *session_chan_get(struct session *s, uint32_t id, uint8_t **own)
{
	if (id == 0 || id > s->nchans || !s->chans[id - 1])
		return NULL;
	if (own)
		*own = &s->chan_own[id - 1];
	return s->chans[id - 1];
}

/* Gives back what the session still owns of channel slot i: its process went away without doing so. */
static void disown_all(struct session *s, unsigned i)
{
	if (s->chan_own[i] & CHAN_END_SEND)
		chan_disown(s->chans[i], CHAN_END_SEND, 1);
	if (s->chan_own[i] & CHAN_END_RECV)
		chan_disown(s->chans[i], CHAN_END_RECV, 1);
	s->chan_own[i] = 0;
}

struct chan *session_chan_take(struct session *s, uint32_t id)
{
	struct chan *c;

	if (id == 0 || id > s->nchans || !s->chans[id - 1])
		return NULL;
	disown_all(s, id - 1);
	c = s->chans[id - 1];
	s->chans[id - 1] = NULL;
	return c;
}

void session_set_state(struct session *s, uint32_t state)
{
	if (s && s->has_shm)
		atomic_store_explicit(&s->shm.hdr->srv_state.v, state, memory_order_release);
}

void session_destroy(struct session *s)
{
	unsigned i, hung = 0;

	if (!s)
		return;
	for (i = 0; i < s->nchans; i++)
		if (s->chans[i]) {
			disown_all(s, i);
			chan_unref(s->chreg, s->chans[i]);
		}
	free(s->chans);
	free(s->chan_own);
	/* First no engine may touch the session; then its memory can go. */
	for (i = 0; i < s->nengines; i++)
		if (engine_detach(s->engines[i], &s->port))
			hung++;
	if (s->doorbell)
		doorbell_remove(s->doorbell, &s->port);
	if (hung) {
		/*
		 * A device still owns transfers into this memory: freeing it could
		 * hand it to another session while the device writes. Leak it.
		 */
		log_err("session %llu (pid %d): %u device(s) did not finish its transfers; "
			"leaving its %u buffer(s) and %zu bytes of shared memory allocated",
			(unsigned long long)s->id, (int)s->pid, hung, s->bufs.count, s->shm.size);
		s->next_hung = hung_sessions;
		hung_sessions = s;
		return;
	}
	if (s->bufs.count)
		log_info("session %llu (pid %d): freeing %u buffer(s), %llu bytes",
			 (unsigned long long)s->id, (int)s->pid, s->bufs.count,
			 (unsigned long long)s->bufs.bytes);
	buf_table_fini(&s->bufs);
	if (s->has_shm)
		shm_fini(&s->shm, s->bufs.be);
	/* srv_state is final by now: the client's EOF comes after it. */
	if (s->port.sock >= 0)
		close(s->port.sock);
	if (s->client_sock >= 0)
		close(s->client_sock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
