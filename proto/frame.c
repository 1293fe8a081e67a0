/* frame.c: length-prefixed framing of control messages, size caps and fd passing. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"

int frame_pack(const Gpuq__Msg *m, uint32_t max, uint8_t **out, size_t *outlen)
{
	size_t n = gpuq__msg__get_packed_size(m);
	uint8_t *buf;

	if (n > max)
		return -EMSGSIZE;
	buf = malloc(FRAME_HDR + n);
	if (!buf)
		return -ENOMEM;
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	gpuq__msg__pack(m, buf + FRAME_HDR);
	*out = buf;
	*outlen = FRAME_HDR + n;
	return 0;
}

ssize_t frame_check(const uint8_t *buf, size_t len, uint32_t max)
{
	uint32_t n;

	if (len < FRAME_HDR)
		return 0;
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (n > max)
		return -EMSGSIZE;
	if (len < FRAME_HDR + (size_t)n)
		return 0;
	return (ssize_t)(FRAME_HDR + n);
}

Gpuq__Msg *frame_unpack(const uint8_t *frame, size_t framelen)
{
	if (framelen < FRAME_HDR)
		return NULL;
	return gpuq__msg__unpack(NULL, framelen - FRAME_HDR, frame + FRAME_HDR);
}

void frame_free(Gpuq__Msg *m)
{
	if (m)
		gpuq__msg__free_unpacked(m, NULL);
}

ssize_t frame_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * FRAME_MAX_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	if (nfds > FRAME_MAX_FDS)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		r = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

#ifndef SO_PASSRIGHTS
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) || \
	defined(__riscv) || defined(__powerpc__) || defined(__s390__) || defined(__loongarch__)
#define SO_PASSRIGHTS 83 /* asm-generic/socket.h, Linux 6.16 */
#endif
#endif

int frame_refuse_fds(int sock)
{
#ifdef SO_PASSRIGHTS
	int off = 0;

	return setsockopt(sock, SOL_SOCKET, SO_PASSRIGHTS, &off, sizeof(off)) < 0 ? -errno : 0;
#else
	(void)sock;
	return -ENOPROTOOPT;
#endif
}

/*
 * Closes a descriptor nobody asked for. A socket's SO_LINGER is turned off
 * first, so that its last close never waits for unsent data (where
 * SO_PASSRIGHTS is missing, a peer can still send one).
 */
static void close_unasked(int fd)
{
	struct linger off = { 0, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
	close(fd);
}

ssize_t frame_recv(int sock, void *buf, size_t len, int *fds, unsigned *nfds, unsigned max_fds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * FRAME_MAX_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.b,
			     .msg_controllen = sizeof(ctl.b) };
	struct cmsghdr *c;
	ssize_t r;

	do
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t i, n;
		int fd;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			/* A peer may send more fds than we take: never leak them. */
			if (fds && nfds && *nfds < max_fds)
				fds[(*nfds)++] = fd;
			else
				close_unasked(fd);
		}
	}
	return r;
}

const char *frame_body_name(int body_case)
{
	const ProtobufCFieldDescriptor *f;

	if (body_case == GPUQ__MSG__BODY__NOT_SET)
		return "none";
	f = protobuf_c_message_descriptor_get_field(&gpuq__msg__descriptor, (unsigned)body_case);
	/* Only members of the body oneof are message names; "seq" is not. */
	return f && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f->name : "unknown";
}
