/* worker.c: the control plane's worker thread: a job queue in, a completion list and an eventfd out. */
#include "build-config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "worker.h"

struct worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when a job is queued or stop is set */
	pthread_cond_t idle; /* signalled when a job has run */
	STAILQ_HEAD(, worker_job) todo, done;
	int running; /* a job is being run */
	int stop;
	int efd; /* written by the thread per completion, read by the loop */
	struct event *ev;
	unsigned pending; /* submitted, done not called yet (loop's thread only) */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct worker_job *j;
	uint64_t one = 1;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stop && STAILQ_EMPTY(&w->todo))
			pthread_cond_wait(&w->cond, &w->lock);
		j = STAILQ_FIRST(&w->todo);
		if (!j)
			break; /* stop, and nothing left */
		STAILQ_REMOVE_HEAD(&w->todo, link);
		w->running = 1;
		pthread_mutex_unlock(&w->lock);
		j->run(j);
		pthread_mutex_lock(&w->lock);
		w->running = 0;
		STAILQ_INSERT_TAIL(&w->done, j, link);
		pthread_cond_broadcast(&w->idle);
		/* A full counter still reads as readable: nothing is lost by a failed write. */
		if (write(w->efd, &one, sizeof(one)) < 0)
			(void)0;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Calls done for every completed job, on the calling thread. */
static void worker_reap(struct worker *w)
{
	STAILQ_HEAD(, worker_job) list;
	struct worker_job *j;

	pthread_mutex_lock(&w->lock);
	STAILQ_INIT(&list);
	STAILQ_CONCAT(&list, &w->done);
	pthread_mutex_unlock(&w->lock);
	while ((j = STAILQ_FIRST(&list))) {
		STAILQ_REMOVE_HEAD(&list, link);
		w->pending--;
		j->done(j);
	}
}

static void worker_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		(void)0; /* EAGAIN: an earlier round took the count */
	worker_reap(w);
}

int worker_create(struct worker **out, struct event_base *base)
{
	struct worker *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->idle, NULL);
	STAILQ_INIT(&w->todo);
	STAILQ_INIT(&w->done);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto fail;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, worker_on_done, w);
	if (!w->ev || event_add(w->ev, NULL)) {
		r = -ENOMEM;
		goto fail;
	}
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w->ev)
		event_free(w->ev);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return r;
}

void worker_submit(struct worker *w, struct worker_job *j)
{
	w->pending++;
	pthread_mutex_lock(&w->lock);
	STAILQ_INSERT_TAIL(&w->todo, j, link);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int worker_flush_timeout(struct worker *w, int ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	if (ms >= 0) {
		until.tv_sec += ms / 1000;
		until.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	/* A done callback may submit more (a connection's next frame): go until none is left. */
	while (w->pending) {
		int r = 0;

		pthread_mutex_lock(&w->lock);
		while ((!STAILQ_EMPTY(&w->todo) || w->running) && r == 0) {
			if (ms < 0)
				pthread_cond_wait(&w->idle, &w->lock);
			else
				r = pthread_cond_timedwait(&w->idle, &w->lock, &until);
		}
		pthread_mutex_unlock(&w->lock);
		worker_reap(w);
		if (r)
			return -ETIMEDOUT;
	}
	return 0;
}

void worker_flush(struct worker *w)
{
	worker_flush_timeout(w, -1);
}

void worker_destroy(struct worker *w)
{
	if (!w)
		return;
	worker_flush(w);
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	event_free(w->ev);
	close(w->efd);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

unsigned worker_pending(const struct worker *w)
{
	return w->pending;
}
