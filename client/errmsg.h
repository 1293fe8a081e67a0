/* errmsg.h: libgpuq's error messages, one per thread and handle (gpuq_errmsg). */
#ifndef GPUQ_CLIENT_ERRMSG_H
#define GPUQ_CLIENT_ERRMSG_H

#include <stdint.h>

struct gpuq;

/* A key for a new handle's messages; never handed out twice. */
uint64_t errmsg_key(void);

/*
 * Records a library-side message for the calling thread on q (NULL: the
 * thread's connect message) and returns err.
 */
int client_fail(struct gpuq *q, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Forgets the calling thread's message on q (NULL: its connect message); a new call begins. */
void errmsg_clear(struct gpuq *q);

/* A connect failed and q goes: its message becomes the thread's connect message. */
void errmsg_to_connect(struct gpuq *q);

#endif
