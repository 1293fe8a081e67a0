/* doorbell.c: one thread drains every session socket and wakes the engines that sleep. */
#include "build-config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "doorbell.h"
#include "engine.h"
#include "frame.h"
#include "log.h"

#define DOORBELL_EVENTS 64
/* Reads per socket per event: a client flooding its socket cannot hold the thread. */
#define DOORBELL_READS 4

/*
 * A doorbell also re-arms the client's wake: when the client asked to be
 * woken (cq_waiting) and some CQ already holds completions it has not read,
 * it gets its byte now. The words read here are the client's own: a lie
 * only costs it a spurious or missing wake.
 */
static void answer_waiting(struct engine_port *s)
{
	struct shm_hdr *h = s->hdr;
	unsigned dev;

	if (!atomic_load_explicit(&h->cq_waiting.v, memory_order_acquire))
		return;
	for (dev = 0; dev < s->geom.ndevices; dev++) {
		uint32_t tail = atomic_load_explicit(&h->ctl[dev].cq_tail.v, memory_order_acquire);
		uint32_t head = atomic_load_explicit(&h->ctl[dev].cq_head.v, memory_order_acquire);

		if (tail != head)
			break;
	}
	if (dev == s->geom.ndevices ||
	    !atomic_exchange_explicit(&h->cq_waiting.v, 0, memory_order_acq_rel))
		return;
	if (send(s->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		(void)0; /* full or gone: the client's end is readable already, or nobody listens */
}

/* Drains one session socket. Caller holds d->lock. */
static void drain(struct doorbell *d, int fd)
{
	struct engine_port *s = (unsigned)fd < d->nbyfd ? d->byfd[fd] : NULL;
	char buf[256];
	unsigned i;

	if (!s)
		return; /* removed since epoll_wait reported it */
	for (i = 0; i < DOORBELL_READS; i++) {
		/* gpuqd's end is non-blocking; frame_recv closes any descriptor safely. */
		ssize_t n = frame_recv(fd, buf, sizeof(buf), NULL, NULL, 0);

		if (n > 0)
			continue;
		if (n == 0 || n != -EAGAIN) {
			/* The client closed its end: nothing more to read, stop watching. */
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
		}
		break;
	}
	answer_waiting(s);
}

static void *doorbell_main(void *arg)
{
	struct doorbell *d = arg;
	struct epoll_event ev[DOORBELL_EVENTS];

	for (;;) {
		int n = epoll_wait(d->epfd, ev, DOORBELL_EVENTS, -1), i, rung = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("doorbell: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&d->lock);
		for (i = 0; i < n; i++) {
			if (ev[i].data.fd == d->stop_efd) {
				pthread_mutex_unlock(&d->lock);
				return NULL;
			}
			drain(d, ev[i].data.fd);
			rung = 1;
		}
		pthread_mutex_unlock(&d->lock);
		if (rung) {
			unsigned k;

			d->rung++;
			for (k = 0; k < d->nengines; k++)
				engine_wake(d->engines[k]);
		}
	}
}

int doorbell_create(struct doorbell **out, struct engine **engines, unsigned nengines)
{
	struct doorbell *d = calloc(1, sizeof(*d));
	struct epoll_event ev = { .events = EPOLLIN };
	int r;

	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	d->engines = engines;
	d->nengines = nengines;
	d->stop_efd = -1;
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0)
		goto fail_errno;
	d->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop_efd < 0)
		goto fail_errno;
	ev.data.fd = d->stop_efd;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->stop_efd, &ev) < 0)
		goto fail_errno;
	r = -pthread_create(&d->thread, NULL, doorbell_main, d);
	if (r)
		goto fail;
	*out = d;
	return 0;
fail_errno:
	r = -errno;
fail:
	if (d->stop_efd >= 0)
		close(d->stop_efd);
	if (d->epfd >= 0)
		close(d->epfd);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return r;
}

void doorbell_destroy(struct doorbell *d)
{
	uint64_t one = 1;

	if (!d)
		return;
	if (write(d->stop_efd, &one, sizeof(one)) < 0)
		log_warn("doorbell: stopping: %s", strerror(errno));
	pthread_join(d->thread, NULL);
	close(d->stop_efd);
	close(d->epfd);
	free(d->byfd);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int doorbell_add(struct doorbell *d, struct engine_port *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->sock };
	int r = 0;

	if (s->sock < 0)
		return -EBADF;
	pthread_mutex_lock(&d->lock);
	if ((unsigned)s->sock >= d->nbyfd) {
		unsigned n = d->nbyfd ? d->nbyfd : 64;
		struct engine_port **p;

		while (n <= (unsigned)s->sock)
			n *= 2;
		p = realloc(d->byfd, n * sizeof(*p));
		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		memset(p + d->nbyfd, 0, (n - d->nbyfd) * sizeof(*p));
		d->byfd = p;
		d->nbyfd = n;
	}
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, s->sock, &ev) < 0) {
		r = -errno;
		goto out;
	}
	d->byfd[s->sock] = s;
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

void doorbell_remove(struct doorbell *d, struct engine_port *s)
{
	pthread_mutex_lock(&d->lock);
	if (s->sock >= 0 && (unsigned)s->sock < d->nbyfd && d->byfd[s->sock] == s) {
		/* ENOENT when the thread already dropped a closed socket: fine. */
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->sock, NULL);
		d->byfd[s->sock] = NULL;
	}
	pthread_mutex_unlock(&d->lock);
}
