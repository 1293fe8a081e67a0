/* client.h: libgpuq internals shared by its source files. */
#ifndef GPUQ_CLIENT_H
#define GPUQ_CLIENT_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include "arena.h"
#include "errmsg.h"
#include "frame.h"
#include "gpuq/gpuq.h"
#include "proto/ring.h"

enum req_state { REQ_FREE, REQ_PENDING, REQ_DONE };

/* One nonblocking request. Lives in the session's request table. */
struct gpuq_req {
	uint64_t tag;
	int64_t result;
	uint32_t gen; /* bumped at each reuse: stale completions are recognised */
	uint32_t index;
	uint8_t state;      /* enum req_state */
	uint8_t has_handle; /* REQ_HANDLE_*: completion goes to test/wait, not to gpuq_poll */
	uint8_t lost;       /* completed by libgpuq because gpuqd ended the session */
	int64_t bounce;     /* arena offset of the staging copy, or -1 */
	void *copy_out;     /* recv into non-arena memory: copy here on completion */
	size_t len;
	uint32_t next_free;
};

#define REQ_HANDLE_NONE 0     /* tag only: the completion goes to gpuq_poll */
#define REQ_HANDLE_USER 1     /* the caller's gpuq_req_t: gpuq_test/gpuq_wait */
#define REQ_HANDLE_INTERNAL 2 /* a blocking call's own window */

#define REQ_BLOCK 1024
#define REQ_NONE UINT32_MAX

/* A session with gpuqd. Created by gpuq_connect, freed by gpuq_close. */
struct gpuq {
	int fd;
	pthread_mutex_t lock; /* serialises control calls: one request in flight */
	uint64_t seq;
	uint64_t session_id;
	uint32_t max_frame;
	char backend[16];
	uint64_t err_key;          /* names q's error messages in each thread (gpuq.c) */
	int rx_fds[FRAME_MAX_FDS]; /* fds that came with the last frame read */
	unsigned rx_nfds;

	/* The data path; guarded by dlock. */
	pthread_mutex_t dlock;
	void *shm;
	size_t shm_size;
	struct shm_hdr *hdr;
	uint8_t *arena;
	uint64_t arena_size;
	unsigned ndevices;
	int sock; /* our end of the session socket: doorbells out, wakes in */
	int dead; /* 0, or why gpuqd stopped serving: -ESHUTDOWN, -EPROTO, -ECONNRESET */
	uint32_t sq_tail[SHM_MAX_DEVICES];
	uint32_t cq_head[SHM_MAX_DEVICES];
	uint32_t outstanding[SHM_MAX_DEVICES];
	struct arena_alloc alloc;
	struct gpuq_req **reqblk; /* blocks of REQ_BLOCK */
	uint32_t nreqblk;
	uint32_t free_req;
	struct gpuq_completion *pollq; /* completions for gpuq_poll (ring) */
	uint32_t pq_head, pq_tail, pq_cap;
	uint8_t *buf_dev; /* buffer id -> device + 1; 0 = no such buffer */
	uint32_t nbuf_dev;
	uint32_t ndone_user; /* REQ_HANDLE_USER requests done and not yet collected */
	unsigned spin_us;
	_Atomic uint64_t next_check_ns; /* throttles the liveness look of nonsleeping calls */

	/*
	 * gpuq_fd: an epoll set of the session socket and a private eventfd
	 * that libgpuq raises while completions wait in its own queues.
	 * Created by the first gpuq_fd, kept across gpuq_reconnect.
	 */
	int fd_mode;
	int epfd;
	int efd;
	int efd_set;

	/*
	 * What a CUDA context of this process needs to join gpuqd's MPS
	 * server (gpuq_mps_env), from the Welcome; "" when gpuqd does not
	 * share through MPS.
	 */
	char mps_pipe_dir[PATH_MAX];
	char mps_sm_percent[16];

	/* What gpuq_reconnect needs to say Hello again. */
	char *path;
	char *client_name;
	uint64_t opt_arena_size;
	uint32_t opt_queue_depth;
};

/*
 * Sends req and waits for the reply with the same seq. Returns 0 with *rep
 * set (free with frame_free), or -errno: the daemon's Error code (its text
 * the calling thread's message on q), -EPIPE/-ECONNRESET when the daemon went away, -EPROTO for a
 * reply that is not one. Caller holds q->lock.
 */
int client_rpc(struct gpuq *q, Gpuq__Msg *req, Gpuq__Msg **rep);

/* Like client_rpc, additionally checking the reply's body type. */
int client_call(struct gpuq *q, Gpuq__Msg *req, int want_body, Gpuq__Msg **rep);

/* 0 when size is one a caller may pass for a struct or an entry (gpuq.h, "Structs that grow"), else -EINVAL. */
static inline int client_size_check(size_t size)
{
	return size >= 4 && size <= GPUQ_STRUCT_SIZE_MAX && size % 4 == 0 ? 0 : -EINVAL;
}

/*
 * Gives the caller's struct of size bytes at dst what fits of the
 * library's own (src, lib_size bytes); bytes past lib_size are zeroed.
 */
void client_fill(void *dst, size_t size, const void *src, size_t lib_size);

#endif
