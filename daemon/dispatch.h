/* dispatch.h: request handlers for the control protocol. */
#ifndef GPUQ_DISPATCH_H
#define GPUQ_DISPATCH_H

#include "frame.h"

struct conn;

/*
 * Handles one message from c and queues its reply. m is untrusted: every
 * field is validated here, and a bad request gets an Error reply. Never
 * frees c (the caller settles the connection afterwards).
 */
void dispatch_msg(struct conn *c, const Gpuq__Msg *m);

#endif
