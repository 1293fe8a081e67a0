/* session.h: per-client state that outlives no connection: identity, buffers, counters. */
#ifndef GPUQ_SESSION_H
#define GPUQ_SESSION_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

/*
 * One client session, created when a Hello is accepted and destroyed with
 * its connection (which owns it). Destroying it frees everything the client
 * allocated.
 */
struct session {
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char name[64];
	uint64_t started_ms; /* monotonic */
	uint64_t requests;
	struct buf_table bufs;
};

struct session *session_create(uint64_t id, struct backend *be, uint64_t quota, pid_t pid,
			       uid_t uid, gid_t gid, const char *name);
void session_destroy(struct session *s);

/* Milliseconds on the monotonic clock, for uptimes and session ages. */
uint64_t session_now_ms(void);

#endif
