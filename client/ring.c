/* ring.c: libgpuq's side of a session's rings: mapping, doorbell, sleeping, gpuq_fd's eventfd. */
#include "build-config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"

/* How long a waiter spins on its CQ before it sleeps on the eventfd. */
#define SPIN_US_DEFAULT 50

int ring_init(struct gpuq *q, uint64_t shm_size, unsigned ndevices)
{
	struct stat st;
	struct shm_hdr *h;
	unsigned i;
	int r;

	q->sock = -1;
	/* Protocol 2: the session memfd and our end of the session socket. */
	if (q->rx_nfds < 2 || ndevices > SHM_MAX_DEVICES || ndevices == 0)
		return client_fail(q, -EPROTO, "gpuqd sent %u descriptors for %u device(s)",
				   q->rx_nfds, ndevices);
	if (fstat(q->rx_fds[0], &st) < 0 || (uint64_t)st.st_size < shm_size ||
	    shm_size < sizeof(struct shm_hdr))
		return client_fail(q, -EPROTO, "the session memory is smaller than announced");
	q->shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, q->rx_fds[0], 0);
	if (q->shm == MAP_FAILED) {
		q->shm = NULL;
		r = -errno;
		return client_fail(q, r, "mapping the session memory: %s", strerror(-r));
	}
	q->shm_size = shm_size;
	h = q->hdr = q->shm;
	if (h->magic != SHM_MAGIC || h->version != SHM_VERSION || h->ndevices != ndevices ||
	    h->total_size > shm_size || h->arena_off + h->arena_size > shm_size || !h->sq_entries ||
	    (h->sq_entries & (h->sq_entries - 1)) || !h->cq_entries ||
	    (h->cq_entries & (h->cq_entries - 1)))
		return client_fail(q, -EPROTO, "the session memory has an unknown layout");
	q->arena = (uint8_t *)q->shm + h->arena_off;
	q->arena_size = h->arena_size;
	q->ndevices = ndevices;
	/* The memfd's mapping keeps the memory; the fd itself is not needed. */
	close(q->rx_fds[0]);
	q->sock = q->rx_fds[1];
	for (i = 2; i < q->rx_nfds; i++)
		close(q->rx_fds[i]);
	q->rx_nfds = 0;
	if (q->fd_mode) {
		/* gpuq_fd's epoll set outlives sessions: it watches the new socket now. */
		struct epoll_event ev = { .events = EPOLLIN };

		if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->sock, &ev) < 0) {
			r = -errno;
			return client_fail(q, r, "watching the session socket: %s", strerror(-r));
		}
	}
	q->spin_us = SPIN_US_DEFAULT;
	if (getenv("GPUQ_SPIN_US"))
		q->spin_us = (unsigned)strtoul(getenv("GPUQ_SPIN_US"), NULL, 10);
	return 0;
}

void ring_fini(struct gpuq *q)
{
	if (q->sock >= 0)
		close(q->sock); /* leaves gpuq_fd's epoll set with it */
	q->sock = -1;
	if (q->shm)
		munmap(q->shm, q->shm_size);
	q->shm = NULL;
	q->hdr = NULL;
	q->arena = NULL;
	q->arena_size = 0;
	memset(q->sq_tail, 0, sizeof(q->sq_tail));
	memset(q->cq_head, 0, sizeof(q->cq_head));
	memset(q->outstanding, 0, sizeof(q->outstanding));
	if (q->fd_mode)
		ring_fd_clear(q);
}

int ring_sock(struct gpuq *q)
{
	return q ? __atomic_load_n(&q->sock, __ATOMIC_RELAXED) : -1;
}

int ring_doorbell(struct gpuq *q)
{
	/* EPIPE: gpuqd is gone; EAGAIN: a wake is queued already. */
	if (send(q->sock, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
		return -1;
	return 0;
}

int ring_hup(struct gpuq *q)
{
	struct pollfd p = { .fd = q->sock, .events = 0 };

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

int ring_drain(struct gpuq *q)
{
	char buf[64];

	for (;;) {
		ssize_t n = recv(q->sock, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		return 1; /* EOF, or a socket error */
	}
}

void ring_sleep(struct gpuq *q, int timeout_ms)
{
	struct pollfd p = { .fd = q->sock, .events = POLLIN };

	atomic_store_explicit(&q->hdr->cq_waiting.v, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (ring_cq_pending(q))
		return;
	pthread_mutex_unlock(&q->dlock);
	/* POLLHUP ends the sleep at once when gpuqd goes. */
	poll(&p, 1, timeout_ms);
	pthread_mutex_lock(&q->dlock);
}

int ring_fd_open(struct gpuq *q)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int r;

	q->epfd = epoll_create1(EPOLL_CLOEXEC);
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->epfd < 0 || q->efd < 0 || epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->efd, &ev) < 0 ||
	    epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->sock, &ev) < 0) {
		r = -errno;
		ring_fd_close(q);
		return r;
	}
	q->efd_set = 0;
	q->fd_mode = 1;
	return 0;
}

void ring_fd_close(struct gpuq *q)
{
	if (q->epfd >= 0)
		close(q->epfd);
	if (q->efd >= 0)
		close(q->efd);
	q->epfd = q->efd = -1;
	q->efd_set = 0;
	q->fd_mode = 0;
}

void ring_fd_raise(struct gpuq *q)
{
	uint64_t one = 1;

	if (q->efd_set)
		return;
	if (write(q->efd, &one, sizeof(one)) == sizeof(one))
		q->efd_set = 1;
}

void ring_fd_clear(struct gpuq *q)
{
	uint64_t v;

	if (!q->efd_set)
		return;
	if (read(q->efd, &v, sizeof(v)) < 0)
		(void)0; /* EAGAIN: already clear */
	q->efd_set = 0;
}

void ring_fd_arm(struct gpuq *q)
{
	ring_fd_clear(q);
	if (!atomic_load_explicit(&q->hdr->cq_waiting.v, memory_order_relaxed)) {
		atomic_store_explicit(&q->hdr->cq_waiting.v, 1, memory_order_seq_cst);
		atomic_thread_fence(memory_order_seq_cst);
		if (ring_cq_pending(q))
			ring_fd_raise(q);
	}
}
