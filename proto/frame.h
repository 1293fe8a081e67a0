/* frame.h: length-prefixed framing of control messages, size caps and fd passing. */
#ifndef GPUQ_FRAME_H
#define GPUQ_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpuq.pb-c.h"

#define FRAME_HDR 4u                 /* 32-bit big-endian payload length */
#define FRAME_MAX_DEFAULT (4u << 20) /* default cap on one frame's payload */
#define FRAME_MAX_LIMIT (64u << 20)  /* no configuration may exceed this */
#define FRAME_MAX_FDS 8              /* fds accepted beside one frame */

/*
 * Serializes m behind a length prefix into a malloc'd buffer (*out, *outlen;
 * the caller frees). Returns 0, -EMSGSIZE when the payload exceeds max, or
 * -ENOMEM.
 */
int frame_pack(const Gpuq__Msg *m, uint32_t max, uint8_t **out, size_t *outlen);

/*
 * Looks at the start of a receive buffer. Returns the total length of the
 * first complete frame (header included), 0 when more bytes are needed, or
 * -EMSGSIZE when the announced length exceeds max (checked before anything
 * is unpacked, so a hostile length never drives an allocation).
 */
ssize_t frame_check(const uint8_t *buf, size_t len, uint32_t max);

/*
 * Unpacks the payload of a complete frame (as sized by frame_check). Returns
 * the message, to be released with frame_free, or NULL when the bytes are not
 * a valid Msg.
 */
Gpuq__Msg *frame_unpack(const uint8_t *frame, size_t framelen);
void frame_free(Gpuq__Msg *m);

/*
 * sendmsg/recvmsg wrappers that carry up to FRAME_MAX_FDS descriptors with
 * SCM_RIGHTS. frame_send returns bytes sent or -errno (EINTR retried).
 * frame_recv returns bytes read (0 on EOF) or -errno; received fds are
 * appended to fds[*nfds..max_fds) with O_CLOEXEC, and extra ones are closed.
 */
ssize_t frame_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds);
ssize_t frame_recv(int sock, void *buf, size_t len, int *fds, unsigned *nfds, unsigned max_fds);

/*
 * Makes sock refuse descriptors: a peer's sendmsg with SCM_RIGHTS fails
 * (SO_PASSRIGHTS, Linux >= 6.16; a listening socket's connections inherit
 * it). A descriptor taken only to be closed can cost its closer a long
 * wait (the last close of a lingering TCP socket, a FUSE file), so gpuqd
 * takes none. Returns 0 or -errno (-ENOPROTOOPT on older kernels).
 */
int frame_refuse_fds(int sock);

/* Human name of a message body, for logs and errors ("hello", "buf_alloc", ...). */
const char *frame_body_name(int body_case);

#endif
