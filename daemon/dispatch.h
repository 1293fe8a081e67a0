/* dispatch.h: request handlers for the control protocol. */
#ifndef GPUQ_DISPATCH_H
#define GPUQ_DISPATCH_H

#include "frame.h"

struct conn;

/*
 * Handles one message from c and queues its reply. m is untrusted: every
 * field is validated here, and a bad request gets an Error reply. Never
 * frees c (the caller settles the connection afterwards). Slow requests
 * (Hello's shared memory, buffer allocation, freeing and synchronous
 * copies, device queries) go to the worker thread with conn_defer: then m
 * is kept (returns 1) and freed when the job is done; otherwise returns 0
 * and the caller frees m.
 */
int dispatch_msg(struct conn *c, Gpuq__Msg *m);

#endif
