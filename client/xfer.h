/* xfer.h: libgpuq's data path (xfer.c) as the rest of the library sees it. */
#ifndef GPUQ_CLIENT_XFER_H
#define GPUQ_CLIENT_XFER_H

#include <stdint.h>

#include "client.h"

/*
 * Opens the data path of a new session from the Welcome's fds (in
 * q->rx_fds): the rings (ring_init), the arena and the request table.
 * Returns 0 or -errno (the message on q).
 */
int xfer_open(struct gpuq *q, uint64_t shm_size, unsigned ndevices);
/* Frees everything of the data path, gpuq_fd's descriptor included (gpuq_close). */
void xfer_close(struct gpuq *q);
/*
 * Puts the data path of an ended session away for a new one: the mapping
 * and socket go; the request table stays (every entry free, so stale
 * handles are refused, not followed), buffers and queued completions are
 * forgotten. Caller holds q->lock; takes dlock.
 */
void xfer_reset(struct gpuq *q);
/*
 * 0 while gpuqd serves the session, else why it ended (-ECONNRESET,
 * -ESHUTDOWN, -EPROTO). Looks at the session socket at most once a
 * millisecond (one poll(2) with no timeout); cheap otherwise.
 */
int xfer_alive(struct gpuq *q);
/* Takes in every posted completion (nonblocking). Returns how many. */
unsigned xfer_reap(struct gpuq *q);
/* Records which device a buffer lives on (dev < 0: forget it). */
void xfer_buf_note(struct gpuq *q, uint32_t id, int dev);

#endif
