/* doorbell.h: the thread that reads every session socket and wakes sleeping engines. */
#ifndef GPUQ_DOORBELL_H
#define GPUQ_DOORBELL_H

#include <pthread.h>

struct engine;
struct engine_port;

/*
 * Why a thread of its own: a session socket is shared by every engine
 * (one per device) that serves the session. If engines read it, the one
 * that drained a doorbell could leave another asleep with work in its
 * ring. Here exactly one reader drains each socket (never blocking: gpuqd's
 * end is non-blocking and read with MSG_DONTWAIT) and then wakes every
 * sleeping engine through that engine's private eventfd, which no client
 * holds. An engine that finds no work goes back to sleep; doorbells come
 * only while engines sleep, so this costs nothing on the busy path.
 *
 * Created by main after the engines, destroyed after the last session.
 */
struct doorbell {
	pthread_t thread;
	int epfd;
	int stop_efd;
	pthread_mutex_t lock;      /* guards byfd: held while a socket is read */
	struct engine_port **byfd; /* fd -> port whose gpuqd end it is */
	unsigned nbyfd;
	struct engine **engines;
	unsigned nengines;
	unsigned long long rung; /* doorbells seen (statistics; doorbell thread) */
};

/* Starts the doorbell thread for the given engines. Returns 0 or -errno. */
int doorbell_create(struct doorbell **out, struct engine **engines, unsigned nengines);
void doorbell_destroy(struct doorbell *d);

/* Watches p->sock. Control thread. Returns 0 or -errno. */
int doorbell_add(struct doorbell *d, struct engine_port *p);
/*
 * Stops watching p->sock; afterwards the doorbell thread never touches p
 * or the descriptor again, so the caller may close it. Control thread.
 */
void doorbell_remove(struct doorbell *d, struct engine_port *p);

#endif
