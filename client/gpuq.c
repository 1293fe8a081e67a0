/* gpuq.c: libgpuq sessions: connect, handshake, request/reply, close. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "xfer.h"
#include "errmsg.h"

void client_fill(void *dst, size_t size, const void *src, size_t lib_size)
{
	memcpy(dst, src, size < lib_size ? size : lib_size);
	if (size > lib_size)
		memset((char *)dst + lib_size, 0, size - lib_size);
}

/*
 * Takes the caller's options (struct_size bytes at opts) into *o, zero
 * where the caller's struct ends. Options past the ones this library
 * knows must be zero: a caller that asked for one would not get it.
 */
static int options_take(const struct gpuq_options *opts, struct gpuq_options *o)
{
	const unsigned char *p = (const unsigned char *)opts;
	size_t size;

	memset(o, 0, sizeof(*o));
	if (!opts)
		return 0;
	size = opts->struct_size;
	if (client_size_check(size))
		return client_fail(NULL, -EINVAL, "struct gpuq_options: bad struct_size %zu", size);
	for (size_t i = sizeof(*o); i < size; i++)
		if (p[i])
			return client_fail(
				NULL, -E2BIG,
				"struct gpuq_options: byte %zu is set, but this libgpuq knows %zu bytes",
				i, sizeof(*o));
	memcpy(o, opts, size < sizeof(*o) ? size : sizeof(*o));
	return 0;
}

static int send_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = frame_send(fd, buf, len, NULL, 0);

		if (n < 0)
			return (int)n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one whole frame; returns the unpacked message or NULL with *err set. */
static Gpuq__Msg *recv_msg(struct gpuq *q, int *err)
{
	uint8_t hdr[FRAME_HDR], *buf;
	size_t got = 0, len;
	ssize_t n;
	Gpuq__Msg *m;

	while (q->rx_nfds)
		close(q->rx_fds[--q->rx_nfds]);
	while (got < FRAME_HDR) {
		n = frame_recv(q->fd, hdr + got, FRAME_HDR - got, q->rx_fds, &q->rx_nfds,
			       FRAME_MAX_FDS);
		if (n <= 0) {
			*err = n == 0 ? -ECONNRESET : (int)n;
			client_fail(q, *err, "gpuqd closed the connection");
			return NULL;
		}
		got += (size_t)n;
	}
	n = frame_check(hdr, FRAME_HDR, q->max_frame);
	if (n < 0) {
		*err = client_fail(q, -EPROTO, "gpuqd sent an oversized frame");
		return NULL;
	}
	len = ((size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]);
	buf = malloc(FRAME_HDR + len);
	if (!buf) {
		*err = client_fail(q, -ENOMEM, "out of memory");
		return NULL;
	}
	memcpy(buf, hdr, FRAME_HDR);
	got = 0;
	while (got < len) {
		n = frame_recv(q->fd, buf + FRAME_HDR + got, len - got, NULL, NULL, 0);
		if (n <= 0) {
			free(buf);
			*err = n == 0 ? -ECONNRESET : (int)n;
			client_fail(q, *err, "gpuqd closed the connection mid-frame");
			return NULL;
		}
		got += (size_t)n;
	}
	m = frame_unpack(buf, FRAME_HDR + len);
	free(buf);
	if (!m)
		*err = client_fail(q, -EPROTO, "gpuqd sent a malformed frame");
	return m;
}

int client_rpc(struct gpuq *q, Gpuq__Msg *req, Gpuq__Msg **rep)
{
	uint8_t *buf;
	size_t len;
	Gpuq__Msg *m;
	int r;

	errmsg_clear(q);
	if (q->fd < 0)
		return client_fail(q, -ENOTCONN, "not connected");
	req->seq = ++q->seq;
	r = frame_pack(req, q->max_frame, &buf, &len);
	if (r)
		return client_fail(q, r, "request exceeds the %u-byte frame cap", q->max_frame);
	r = send_all(q->fd, buf, len);
	free(buf);
	for (;;) {
		int rr;

		m = recv_msg(q, &rr);
		if (!m) {
			/*
			 * When the send failed, the daemon may have said why before it
			 * closed (e.g. too many clients): that reply, read above, wins.
			 */
			if (r)
				rr = r;
			/* A clean stop says so in the session header before the sockets close. */
			if ((rr == -ECONNRESET || rr == -EPIPE) && q->hdr &&
			    atomic_load_explicit(&q->hdr->srv_state.v, memory_order_acquire) ==
				    SHM_STATE_SHUTDOWN)
				rr = -ESHUTDOWN;
			return client_fail(q, rr, "gpuqd closed the connection: %s", strerror(-rr));
		}
		/* An Error with seq 0 is the daemon speaking unprompted (closing). */
		if (m->seq == req->seq || (m->seq == 0 && m->body_case == GPUQ__MSG__BODY_ERROR))
			break;
		frame_free(m);
	}
	if (m->body_case == GPUQ__MSG__BODY_ERROR) {
		r = m->error->code < 0 ? m->error->code : -EIO;
		client_fail(q, r, "%s", m->error->message ? m->error->message : "");
		frame_free(m);
		return r;
	}
	*rep = m;
	return 0;
}

int client_call(struct gpuq *q, Gpuq__Msg *req, int want_body, Gpuq__Msg **rep)
{
	int r = client_rpc(q, req, rep);

	if (r)
		return r;
	if ((*rep)->body_case != (Gpuq__Msg__BodyCase)want_body) {
		r = client_fail(q, -EPROTO, "gpuqd answered '%s' where '%s' was due",
				frame_body_name((*rep)->body_case), frame_body_name(want_body));
		frame_free(*rep);
		*rep = NULL;
	}
	return r;
}

static int open_socket(struct gpuq *q, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		return client_fail(q, -ENAMETOOLONG, "socket path too long: %s", path);
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return client_fail(q, -errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = client_fail(q, -errno, "cannot connect to gpuqd at %s: %s", path,
				strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

/*
 * Connects q to gpuqd at q->path and says Hello with q's options: on
 * success q has a fresh session (control socket and data path). On failure
 * q is left without one, and the calling thread's message on q says why.
 * Caller holds q->lock (or owns q).
 */
static int session_open(struct gpuq *q)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *rep = NULL;
	Gpuq__Hello hello = GPUQ__HELLO__INIT;
	int r;

	q->seq = 0;
	q->max_frame = FRAME_MAX_LIMIT; /* until the Welcome names the cap */
	errmsg_clear(q);
	q->fd = open_socket(q, q->path);
	if (q->fd < 0) {
		r = q->fd;
		q->fd = -1;
		return r;
	}
	hello.proto_version = GPUQ_PROTO_VERSION;
	hello.client_name = q->client_name ? q->client_name : "";
	hello.arena_size = q->opt_arena_size;
	hello.queue_depth = q->opt_queue_depth;
	req.body_case = GPUQ__MSG__BODY_HELLO;
	req.hello = &hello;
	r = client_call(q, &req, GPUQ__MSG__BODY_WELCOME, &rep);
	if (r)
		goto fail;
	q->session_id = rep->welcome->session_id;
	q->max_frame = rep->welcome->max_frame;
	if (q->max_frame < 4096 || q->max_frame > FRAME_MAX_LIMIT) {
		r = client_fail(q, -EPROTO, "gpuqd announced an invalid frame cap %u",
				q->max_frame);
		goto fail;
	}
	snprintf(q->backend, sizeof(q->backend), "%s", rep->welcome->backend);
	/*
	 * In mps mode the client's own CUDA context must join gpuqd's MPS
	 * server, or its kernels and gpuqd's copies take turns in time slices;
	 * the operator may also keep a share of the SMs free of clients'
	 * kernels. Kept for gpuq_mps_env: the environment is the caller's.
	 */
	q->mps_pipe_dir[0] = q->mps_sm_percent[0] = '\0';
	if (rep->welcome->mps_pipe_dir && rep->welcome->mps_pipe_dir[0]) {
		if (strlen(rep->welcome->mps_pipe_dir) >= sizeof(q->mps_pipe_dir)) {
			r = client_fail(q, -EPROTO,
					"gpuqd named an MPS pipe directory over %zu bytes",
					sizeof(q->mps_pipe_dir) - 1);
			goto fail;
		}
		snprintf(q->mps_pipe_dir, sizeof(q->mps_pipe_dir), "%s",
			 rep->welcome->mps_pipe_dir);
	}
	if (rep->welcome->mps_client_sm_percent)
		snprintf(q->mps_sm_percent, sizeof(q->mps_sm_percent), "%u",
			 rep->welcome->mps_client_sm_percent);
	r = xfer_open(q, rep->welcome->shm_size, rep->welcome->ndevices);
	if (r)
		goto fail;
	frame_free(rep);
	return 0;
fail:
	frame_free(rep);
	xfer_reset(q);
	while (q->rx_nfds)
		close(q->rx_fds[--q->rx_nfds]);
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	return r;
}

GPUQ_API int gpuq_connect_opts(const char *path, const struct gpuq_options *opts, gpuq_t **out)
{
	struct gpuq_options o;
	const char *client_name;
	struct gpuq *q;
	int r;

	errmsg_clear(NULL);
	if (!out)
		return -EINVAL;
	*out = NULL;
	r = options_take(opts, &o);
	if (r)
		return r;
	client_name = o.client_name;
	if (!path || !*path)
		path = getenv(GPUQ_SOCKET_ENV);
	if (!path || !*path)
		path = GPUQ_DEFAULT_SOCKET;
	q = calloc(1, sizeof(*q));
	if (!q)
		return client_fail(NULL, -ENOMEM, "out of memory");
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->dlock, NULL);
	q->err_key = errmsg_key();
	q->fd = q->sock = q->epfd = q->efd = -1;
	q->path = strdup(path);
	q->client_name = client_name ? strdup(client_name) : NULL;
	if (!q->path || (client_name && !q->client_name)) {
		r = client_fail(q, -ENOMEM, "out of memory");
		goto fail;
	}
	q->opt_arena_size = o.arena_size;
	if (!q->opt_arena_size && getenv("GPUQ_ARENA_SIZE"))
		q->opt_arena_size = strtoull(getenv("GPUQ_ARENA_SIZE"), NULL, 0);
	q->opt_queue_depth = o.queue_depth;
	r = session_open(q);
	if (r)
		goto fail;
	*out = q;
	return 0;
fail:
	errmsg_to_connect(q);
	gpuq_close(q);
	return r;
}

GPUQ_API int gpuq_connect(const char *path, gpuq_t **out)
{
	return gpuq_connect_opts(path, NULL, out);
}

GPUQ_API int gpuq_reconnect(gpuq_t *q)
{
	int r;

	if (!q)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	/* The old session is over (or is ended here): its resources go with it. */
	xfer_reset(q);
	while (q->rx_nfds)
		close(q->rx_fds[--q->rx_nfds]);
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	r = session_open(q);
	pthread_mutex_unlock(&q->lock);
	return r;
}

GPUQ_API void gpuq_close(gpuq_t *q)
{
	if (!q)
		return;
	xfer_close(q);
	while (q->rx_nfds)
		close(q->rx_fds[--q->rx_nfds]);
	if (q->fd >= 0)
		close(q->fd);
	pthread_mutex_destroy(&q->dlock);
	pthread_mutex_destroy(&q->lock);
	free(q->path);
	free(q->client_name);
	free(q);
}

GPUQ_API int gpuq_mps_env(gpuq_t *q, const char **names, const char **values, unsigned max)
{
	const char *n[GPUQ_MPS_ENV_MAX], *v[GPUQ_MPS_ENV_MAX];
	unsigned k = 0;

	if (!q || (max && (!names || !values)))
		return -EINVAL;
	if (q->mps_pipe_dir[0]) {
		n[k] = "CUDA_MPS_PIPE_DIRECTORY";
		v[k++] = q->mps_pipe_dir;
	}
	if (q->mps_sm_percent[0]) {
		n[k] = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
		v[k++] = q->mps_sm_percent;
	}
	for (unsigned i = 0; i < k && i < max; i++) {
		names[i] = n[i];
		values[i] = v[i];
	}
	return (int)k;
}

GPUQ_API uint64_t gpuq_session_id(gpuq_t *q)
{
	return q ? q->session_id : 0;
}

GPUQ_API const char *gpuq_backend(gpuq_t *q)
{
	return q ? q->backend : "";
}

GPUQ_API const char *gpuq_version(void)
{
	return PACKAGE_VERSION;
}
