/* client.h: libgpuq internals shared by its source files. */
#ifndef GPUQ_CLIENT_H
#define GPUQ_CLIENT_H

#include <pthread.h>
#include <stdint.h>

#include "frame.h"
#include "gpuq/gpuq.h"

#define GPUQ_API __attribute__((visibility("default")))

/* A session with gpuqd. Created by gpuq_connect, freed by gpuq_close. */
struct gpuq {
	int fd;
	pthread_mutex_t lock; /* serialises calls: one request in flight */
	uint64_t seq;
	uint64_t session_id;
	uint32_t max_frame;
	char backend[16];
	char errmsg[512];
};

/*
 * Sends req and waits for the reply with the same seq. Returns 0 with *rep
 * set (free with frame_free), or -errno: the daemon's Error code (its text
 * in q->errmsg), -EPIPE/-ECONNRESET when the daemon went away, -EPROTO for a
 * reply that is not one. Caller holds q->lock.
 */
int client_rpc(struct gpuq *q, Gpuq__Msg *req, Gpuq__Msg **rep);

/* Like client_rpc, additionally checking the reply's body type. */
int client_call(struct gpuq *q, Gpuq__Msg *req, int want_body, Gpuq__Msg **rep);

/* Records a library-side error message and returns err. */
int client_fail(struct gpuq *q, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
