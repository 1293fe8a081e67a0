/* ring.h: libgpuq's side of a session's rings: the mapping, SQ/CQ indices, doorbell, sleeping, gpuq_fd's eventfd. */
#ifndef GPUQ_CLIENT_RING_H
#define GPUQ_CLIENT_RING_H

#include <stdint.h>

#include "client.h"

/*
 * The ring fields of struct gpuq (shm, hdr, arena, sock, sq_tail, cq_head,
 * outstanding, epfd, efd) belong to this module: ring.c maps and unmaps
 * them, the inline helpers below move the indices. What a completion
 * means (requests, gpuq_poll's queue) is xfer.c's. Every call but
 * ring_init/ring_fini/ring_fd_close is made with dlock held.
 */

/*
 * Maps the session from the Welcome's fds (q->rx_fds: the memfd and our
 * end of the session socket, all of them consumed), checks the layout,
 * and adds the socket to gpuq_fd's epoll set when there is one. Returns
 * 0 or -errno (the message on q).
 */
int ring_init(struct gpuq *q, uint64_t shm_size, unsigned ndevices);
/* Unmaps the session and closes its socket; q's ring fields are as before ring_init. */
void ring_fini(struct gpuq *q);

/* The session socket (for a waiter that must notice gpuqd's end), or -1. Any thread. */
int ring_sock(struct gpuq *q);
/* Wakes gpuqd's engine (the doorbell byte). Returns 0, or -1 when gpuqd is gone. */
int ring_doorbell(struct gpuq *q);
/* Has gpuqd closed its end? Looks without taking anything from the socket. */
int ring_hup(struct gpuq *q);
/* Empties our end of the session socket. Returns 1 when gpuqd has ended the session. */
int ring_drain(struct gpuq *q);
/*
 * Sleeps until gpuqd posts a completion or ends the session (or
 * timeout_ms passes, -1 = no limit), dlock released meanwhile; returns at
 * once if a completion is posted already. Leaves the socket's bytes.
 */
void ring_sleep(struct gpuq *q, int timeout_ms);

/* gpuq_fd's epoll set (socket + private eventfd): created once, kept across sessions. */
int ring_fd_open(struct gpuq *q);
void ring_fd_close(struct gpuq *q);
/* Makes gpuq_fd readable, or not (no system call when it is already so). */
void ring_fd_raise(struct gpuq *q);
void ring_fd_clear(struct gpuq *q);
/*
 * Nothing pending in libgpuq: clears the eventfd and arms cq_waiting, so
 * gpuqd's next completion sends a byte; looks at the CQ once more after
 * arming, so a completion posted just before is not missed.
 */
void ring_fd_arm(struct gpuq *q);

static inline struct shm_sqe *ring_sq(struct gpuq *q, unsigned dev)
{
	return (struct shm_sqe *)((uint8_t *)q->shm + q->hdr->rings_off +
				  q->hdr->ringset_size * dev + shm_sq_off());
}

static inline struct shm_cqe *ring_cq(struct gpuq *q, unsigned dev)
{
	return (struct shm_cqe *)((uint8_t *)q->shm + q->hdr->rings_off +
				  q->hdr->ringset_size * dev + shm_cq_off(q->hdr->sq_entries));
}

/* The CQ's tail as gpuqd published it: entries from q->cq_head[dev] up to it are posted. */
static inline uint32_t ring_cq_tail(struct gpuq *q, unsigned dev)
{
	return atomic_load_explicit(&q->hdr->ctl[dev].cq_tail.v, memory_order_acquire);
}

/* Gives the CQ entries before head back to gpuqd. */
static inline void ring_cq_release(struct gpuq *q, unsigned dev, uint32_t head)
{
	q->cq_head[dev] = head;
	atomic_store_explicit(&q->hdr->ctl[dev].cq_head.v, head, memory_order_release);
}

/* Is any completion posted and not yet reaped? */
static inline int ring_cq_pending(struct gpuq *q)
{
	for (unsigned dev = 0; dev < q->ndevices; dev++)
		if (ring_cq_tail(q, dev) != q->cq_head[dev])
			return 1;
	return 0;
}

/* Has dev's SQ room for one more request (whose completion has room too)? */
static inline int ring_has_room(struct gpuq *q, unsigned dev)
{
	uint32_t head = atomic_load_explicit(&q->hdr->ctl[dev].sq_head.v, memory_order_acquire);

	return q->outstanding[dev] < q->hdr->cq_entries &&
	       q->sq_tail[dev] - head < q->hdr->sq_entries;
}

/*
 * Publishes e on dev's SQ, which has room (ring_has_room), and rings the
 * doorbell if the engine sleeps. Returns 0, or -1 when gpuqd is gone.
 */
static inline int ring_push(struct gpuq *q, unsigned dev, const struct shm_sqe *e)
{
	struct shm_ringctl *ctl = &q->hdr->ctl[dev];

	ring_sq(q, dev)[q->sq_tail[dev] & (q->hdr->sq_entries - 1)] = *e;
	q->sq_tail[dev]++;
	q->outstanding[dev]++;
	atomic_store_explicit(&ctl->sq_tail.v, q->sq_tail[dev], memory_order_release);
	/* Pairs with the engine's fence between raising NEED_WAKEUP and its last look. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&ctl->sq_flags.v, memory_order_relaxed) & SHM_NEED_WAKEUP)
		return ring_doorbell(q);
	return 0;
}

#endif
