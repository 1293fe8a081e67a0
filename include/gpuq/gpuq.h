/* gpuq.h: the public client API of libgpuq (connect to gpuqd, devices, buffers, status). */
#ifndef GPUQ_GPUQ_H
#define GPUQ_GPUQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions: every call returns 0 (or a count) on success and a negative
 * errno on failure. libgpuq never prints, exits or aborts. A gpuq_t may be
 * used from several threads; calls on one gpuq_t are serialised.
 * The library has no link-time dependency on CUDA.
 */

/*
 * Structs that grow. A struct the caller allocates and libgpuq reads or
 * fills begins with a uint32_t struct_size, which the caller sets to the
 * sizeof of the struct in the header it was built with (gpuq_options,
 * gpuq_status, gpuq_buf_export); libgpuq leaves it as it was. Calls that
 * fill arrays (gpuq_devices, gpuq_clients, gpuq_channels) take the
 * entry's sizeof as an argument instead, entry_size, which is also the
 * array's stride. New fields are only ever added at the end, and each
 * makes sizeof grow, so a program built against an older header passes a
 * smaller size. libgpuq then:
 *   - fills (or reads) only the first min(size, its own sizeof) bytes,
 *     so nothing is written past the caller's struct or entry;
 *   - zeroes the bytes of a larger (newer) struct that it does not know,
 *     and refuses options whose unknown bytes are not all zero (-E2BIG);
 *   - refuses sizes that are not a multiple of 4, below 4 or above
 *     GPUQ_STRUCT_SIZE_MAX with -EINVAL.
 * struct gpuq_completion, filled on the data path, has a fixed layout.
 */
#define GPUQ_STRUCT_SIZE_MAX 65536u

/*
 * Symbols. Every function declared with GPUQ_API is exported by
 * libgpuq.so, by name, under the version node of client/libgpuq.map
 * (GPUQ_1); nothing else is. A new function goes into a new version node;
 * tests/test_symbols.sh checks that the header, the map and the library
 * agree.
 */
#ifndef GPUQ_API
#ifdef __GNUC__
#define GPUQ_API __attribute__((visibility("default")))
#else
#define GPUQ_API
#endif
#endif

#define GPUQ_DEFAULT_SOCKET "/run/gpuqd/gpuqd.sock"
#define GPUQ_SOCKET_ENV "GPUQ_SOCKET"

typedef struct gpuq gpuq_t; /* one session with gpuqd; opaque */

/*
 * Connects to gpuqd and performs the Hello/Welcome handshake, with default
 * options (gpuq_connect_opts names them). path may be NULL: then
 * $GPUQ_SOCKET, else GPUQ_DEFAULT_SOCKET. On success *out owns the
 * session; release it with gpuq_close. Errors: -ENOENT or -ECONNREFUSED
 * (no daemon), -EACCES (socket permissions), -EPROTONOSUPPORT (gpuqd
 * speaks another protocol version), -EPROTO (a malformed reply), -ENOMEM;
 * gpuq_errmsg(NULL) then gives the daemon's or the library's message.
 *
 * When gpuqd shares its GPUs through MPS, the process's own CUDA context
 * should join the same MPS server: gpuq_mps_env says how. libgpuq never
 * changes the process environment.
 */
GPUQ_API int gpuq_connect(const char *path, gpuq_t **out);

/* Ends the session: the daemon frees every buffer the session owns. NULL is a no-op. */
GPUQ_API void gpuq_close(gpuq_t *q);

/*
 * Starts a new session on q after the old one ended (gpuqd died, stopped
 * or dropped it: calls returned -ECONNRESET, -ESHUTDOWN or -EPROTO), e.g.
 * once gpuqd has restarted. Connects to the same socket with the same
 * options. Nothing of the old session survives: its buffer ids, arena
 * memory (pointers from gpuq_mem_alloc/gpuq_arena), requests (handles are
 * refused with -EINVAL afterwards) and undelivered completions are gone;
 * channels opened on q must be opened again. gpuq_fd's descriptor stays
 * the same and watches the new session. No other call on q may run
 * meanwhile. Returns 0 or -errno as gpuq_connect; after a failure q has no
 * session (calls fail) and gpuq_reconnect may be tried again.
 */
GPUQ_API int gpuq_reconnect(gpuq_t *q);

/*
 * The message that came with the calling thread's last error on q (""
 * when none): each thread sees its own, so threads sharing q do not read
 * each other's. A call that talks to gpuqd clears it first. A thread
 * remembers messages for the 4 handles it most recently got one on.
 * gpuq_errmsg(NULL) is the message of the calling thread's last failed
 * gpuq_connect or gpuq_connect_opts. The string is the thread's: valid
 * until that thread's next libgpuq call.
 */
GPUQ_API const char *gpuq_errmsg(gpuq_t *q);

/*
 * MPS. When gpuqd shares its GPUs through MPS, a CUDA context this process
 * creates must join gpuqd's MPS server, or its kernels and gpuqd's copies
 * take turns in time slices; and the operator may keep a share of the SMs
 * free of clients' kernels. CUDA takes both from environment variables,
 * read once, at the process's first CUDA call. gpuq_mps_env gives them:
 * up to max names (e.g. "CUDA_MPS_PIPE_DIRECTORY") and values, and returns
 * how many there are (at most GPUQ_MPS_ENV_MAX; 0 when gpuqd does not use
 * MPS), or -EINVAL. The strings are q's, valid until gpuq_reconnect or
 * gpuq_close. The order is: connect, set them (e.g. setenv(name, value, 0),
 * keeping what the user set; before other threads read the environment),
 * then make the first CUDA call. gpuq_mps_prepare_cuda (libgpuq-cuda) does
 * the middle step.
 */
#define GPUQ_MPS_ENV_MAX 4
GPUQ_API int gpuq_mps_env(gpuq_t *q, const char **names, const char **values, unsigned max);

/* The session id the daemon assigned, and the backend it runs ("cuda" or "host"). */
GPUQ_API uint64_t gpuq_session_id(gpuq_t *q);
GPUQ_API const char *gpuq_backend(gpuq_t *q);

/* libgpuq's version string, e.g. "0.1.0". */
GPUQ_API const char *gpuq_version(void);

/* One device (an array entry: entry_size, see "Structs that grow"). */
struct gpuq_device_info {
	unsigned index;
	char name[128];
	char pci_bus_id[32];
	char backend[16];
	uint64_t total_mem;
	uint64_t free_mem;
	unsigned pcie_gen;   /* 0 when unknown */
	unsigned pcie_width; /* 0 when unknown */
	unsigned cc_major, cc_minor;
	unsigned sm_count;
};

/*
 * Fills up to max entries of devs, entry_size bytes apart (the caller's
 * sizeof(struct gpuq_device_info)), and returns the number of devices the
 * daemon has (which may exceed max). devs may be NULL and entry_size is
 * not looked at when max is 0. -EINVAL for a bad entry_size.
 */
GPUQ_API int gpuq_devices(gpuq_t *q, struct gpuq_device_info *devs, size_t entry_size,
			  unsigned max);

/*
 * Device buffers. A buffer lives on one device, is named by a small id that
 * is valid only in this session, and is freed by gpuq_buf_free or when the
 * session ends. Errors: -EINVAL (bad size or device), -ENOMEM (device memory
 * or session quota exhausted), -ENOENT (no such buffer in this session),
 * -ERANGE (offset/length outside the buffer).
 */
GPUQ_API int gpuq_buf_alloc(gpuq_t *q, unsigned device, size_t size, uint32_t *id);
/*
 * Frees buffer id. Transfers already taken by gpuqd on it finish first:
 * gpuqd refuses to free a buffer with transfers in flight (BufFree answers
 * -EBUSY), and gpuq_buf_free then takes in completions and asks again, so
 * it returns once the buffer is freed (their completions report success).
 * Requests on id that gpuqd had not taken yet complete with -ENOENT.
 */
GPUQ_API int gpuq_buf_free(gpuq_t *q, uint32_t id);

/*
 * Copies len bytes between host memory and a device buffer through the
 * control socket. Simple and always correct, but not the fast path.
 * Returns len on success.
 */
GPUQ_API ssize_t gpuq_buf_write(gpuq_t *q, uint32_t id, uint64_t offset, const void *src,
				size_t len);
GPUQ_API ssize_t gpuq_buf_read(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len);

/* A device buffer exported for the caller's own CUDA context (CUDA IPC). */
struct gpuq_buf_export {
	uint32_t struct_size; /* the caller's sizeof(struct gpuq_buf_export) */
	uint32_t id;
	unsigned device;          /* gpuqd's device index, as gpuq_devices numbers it */
	uint64_t size;            /* bytes, the whole buffer */
	unsigned char handle[64]; /* a cudaIpcMemHandle_t */
	char pci_bus_id[32];      /* the device's PCI address, e.g. "0000:1B:00.0" */
};

/*
 * Exports buffer id of this session so that the caller's own CUDA kernels
 * can use it in place, with no copy. out->handle is a cudaIpcMemHandle_t
 * for cudaIpcOpenMemHandle; the device is named by its PCI bus id since
 * the caller's CUDA may number devices differently from gpuqd
 * (CUDA_VISIBLE_DEVICES). gpuq_buf_map_cuda (<gpuq/gpuq_cuda.h>,
 * -lgpuq-cuda) does all of this; libgpuq itself does not use CUDA here.
 * The handle is valid while the buffer exists: after gpuq_buf_free or the
 * end of the session, mappings of it must no longer be used. Ordering is
 * the caller's: data sent with gpuq_send is in the buffer when gpuq_send
 * returns (or the request completes); the caller's own writes must be
 * complete (e.g. cudaStreamSynchronize) before it asks gpuqd to read them.
 * The caller sets out->struct_size. Returns 0 or -errno: -EINVAL (NULL
 * argument or a bad struct_size), -ENOENT (no such buffer
 * in this session), -ENOTSUP (gpuqd runs the host backend, which has no
 * device memory to share), -EIO (the export failed in gpuqd); gpuq_errmsg
 * says why.
 */
GPUQ_API int gpuq_buf_export(gpuq_t *q, uint32_t id, struct gpuq_buf_export *out);

struct gpuq_status {
	uint32_t struct_size; /* the caller's sizeof(struct gpuq_status) */
	char server_version[32];
	unsigned proto_version;
	char backend[16];
	char backend_reason[256];
	unsigned pid;
	uint64_t uptime_ms;
	unsigned sessions;
	unsigned devices;
	uint64_t buffers;
	uint64_t buffer_bytes;
	uint64_t requests;
	uint64_t errors;
	uint64_t reloads;
	char socket_path[108];
	char config_path[256];
	uint64_t xfers;       /* data-path requests completed */
	uint64_t xfer_bytes;  /* bytes they moved */
	uint64_t xfer_errors; /* requests completed with an error */
	uint64_t batches;     /* GPU batches that carried them */
	char sharing[16];     /* "mps" or "exclusive" */
	char mps_pipe_dir[256];
	unsigned foreign_contexts; /* processes computing on gpuqd's GPUs outside MPS */
	unsigned channels;         /* channels open */
	char foreign[4][64];       /* the first few of them */
	unsigned mps_uid;          /* mps: the uid whose clients join the MPS server (gpuqd's) */
};

/*
 * The daemon's state, as `gpuqctl status` shows it. The caller sets
 * st->struct_size (e.g. struct gpuq_status st = { .struct_size =
 * sizeof(st) }); -EINVAL for a bad one.
 */
GPUQ_API int gpuq_status(gpuq_t *q, struct gpuq_status *st);

/* One session (an array entry: entry_size, see "Structs that grow"). */
struct gpuq_client_info {
	uint64_t session_id;
	unsigned pid, uid, gid;
	char name[64];
	uint64_t connected_ms; /* milliseconds since the session began */
	uint64_t buffers;
	uint64_t buffer_bytes;
	uint64_t requests;
};

/*
 * Lists the daemon's sessions. On success *out is an array of the returned
 * count of entries, entry_size bytes apart (the caller's sizeof(struct
 * gpuq_client_info)), to be released with free(). -EINVAL for a bad
 * entry_size.
 */
GPUQ_API int gpuq_clients(gpuq_t *q, struct gpuq_client_info **out, size_t entry_size);

/* One channel (an array entry: entry_size, see "Structs that grow"). */
struct gpuq_channel_info {
	char name[64];
	unsigned uid, gid, mode;
	unsigned slot_size, nslots;
	unsigned direction;  /* GPUQ_CHAN_GPU_TO_CPU or GPUQ_CHAN_CPU_TO_GPU */
	unsigned users;      /* sessions that have it open */
	uint64_t head, tail; /* from the shared header; tail lags while a GPU keeps the send end */
	unsigned gpu_sender,
		gpu_receiver; /* pids whose GPUs keep an end (gpuq_chan_own), 0: none */
	int receivers_asleep;
	unsigned senders_done;
};

/*
 * Lists the channels this peer may see (all for root and gpuqd's user,
 * else those it has access to). On success *out is an array of the
 * returned count of entries, entry_size bytes apart (the caller's
 * sizeof(struct gpuq_channel_info)), to be released with free(). -EINVAL
 * for a bad entry_size.
 */
GPUQ_API int gpuq_channels(gpuq_t *q, struct gpuq_channel_info **out, size_t entry_size);

/*
 * ---- The data path ----
 *
 * Each session has a shared-memory arena that gpuqd registered with the
 * GPU once: data in it moves to and from device buffers with no host copy.
 * Any other host buffer works too; it is copied through the arena.
 * Requests go through shared-memory rings (no system call while gpuqd is
 * busy) and each gets exactly one completion.
 */

/*
 * Connection options. The caller sets struct_size; other zero fields take
 * defaults: struct gpuq_options o = { .struct_size = sizeof(o), ... }.
 */
struct gpuq_options {
	uint32_t struct_size;    /* the caller's sizeof(struct gpuq_options) */
	const char *client_name; /* shown by `gpuqctl clients` */
	size_t arena_size; /* bytes of arena; default $GPUQ_ARENA_SIZE, else 64 MiB; capped by gpuqd */
	unsigned queue_depth; /* submission ring entries per device; default 4096 */
};

/*
 * As gpuq_connect, with options (opts may be NULL: all defaults). On
 * failure gpuq_errmsg(NULL) says why; -EINVAL for a bad struct_size,
 * -E2BIG for options this libgpuq does not know set to nonzero values.
 */
GPUQ_API int gpuq_connect_opts(const char *path, const struct gpuq_options *opts, gpuq_t **out);

/*
 * Arena memory: buffers that move without a host copy. gpuq_mem_alloc
 * returns NULL when the arena is full (or size is 0). Freed memory must
 * not be in use by a pending request. Thread-safe.
 */
GPUQ_API void *gpuq_mem_alloc(gpuq_t *q, size_t size);
GPUQ_API void gpuq_mem_free(gpuq_t *q, void *p);
/* The arena's bounds (for callers that manage it themselves). */
GPUQ_API void *gpuq_arena(gpuq_t *q, size_t *size);

/* One finished request. */
struct gpuq_completion {
	uint64_t tag;   /* the caller's tag */
	int64_t result; /* bytes moved, or -errno */
};

typedef struct gpuq_req gpuq_req_t; /* a pending nonblocking request; opaque */

/*
 * When gpuqd ends the session (it died, stopped, or found the session's
 * ring corrupt), every blocking call returns -ECONNRESET (died),
 * -ESHUTDOWN (clean stop) or -EPROTO (ring corrupt) within milliseconds,
 * every pending request completes with that error (delivered to
 * gpuq_test/gpuq_wait, or gpuq_poll), gpuq_fd becomes readable, and later
 * calls return the same error. gpuq_reconnect starts a new session.
 *
 * Ranges: offset + len must lie inside the buffer; a zero-length range at
 * offset == size is fine (it moves nothing), offset > size is -ERANGE, on
 * the data path (a request's result) and the control path alike.
 *
 * Blocking transfers: return len once the data has arrived, or -errno.
 *   gpuq_send: host memory -> device buffer id at offset
 *   gpuq_recv: device buffer id at offset -> host memory
 *   gpuq_copy: device buffer -> device buffer (same device)
 * Any size works; host memory outside the arena is copied through it in
 * pipelined chunks.
 */
GPUQ_API ssize_t gpuq_send(gpuq_t *q, uint32_t id, uint64_t offset, const void *src, size_t len);
GPUQ_API ssize_t gpuq_recv(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len);
GPUQ_API ssize_t gpuq_copy(gpuq_t *q, uint32_t dst_id, uint64_t dst_off, uint32_t src_id,
			   uint64_t src_off, size_t len);

/*
 * Nonblocking transfers. The host memory must stay untouched until the
 * request completes. With req != NULL the completion is delivered to
 * gpuq_test/gpuq_wait on *req (and not to gpuq_poll); with req == NULL it
 * is delivered, with tag, by gpuq_poll. Host memory outside the arena is
 * staged through it; when the arena is momentarily full the call waits for
 * earlier requests to finish. Returns 0 or -errno (-EINVAL, -EMSGSIZE for
 * a non-arena buffer larger than half the arena, -ENODEV, -ENOENT for an
 * unknown buffer).
 */
GPUQ_API int gpuq_isend(gpuq_t *q, uint32_t id, uint64_t offset, const void *src, size_t len,
			uint64_t tag, gpuq_req_t **req);
GPUQ_API int gpuq_irecv(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len,
			uint64_t tag, gpuq_req_t **req);
GPUQ_API int gpuq_icopy(gpuq_t *q, uint32_t dst_id, uint64_t dst_off, uint32_t src_id,
			uint64_t src_off, size_t len, uint64_t tag, gpuq_req_t **req);

/*
 * gpuq_test: *done = 1 and *c filled when req has completed (req is then
 * released), else *done = 0. gpuq_wait blocks until req completes, then
 * releases it. gpuq_waitall waits for n requests (cs may be NULL; every
 * handle is checked before any is waited for). They return 0 or -errno of
 * the waiting itself (a transfer's own error is in the completion's
 * result); a request that the session's end completed gives its error
 * (-ECONNRESET, ...) in the result and as gpuq_wait's return value
 * (gpuq_waitall: the first such error, after every request was released).
 * -EINVAL for a NULL or already released handle.
 */
GPUQ_API int gpuq_test(gpuq_t *q, gpuq_req_t *req, int *done, struct gpuq_completion *c);
GPUQ_API int gpuq_wait(gpuq_t *q, gpuq_req_t *req, struct gpuq_completion *c);
GPUQ_API int gpuq_waitall(gpuq_t *q, gpuq_req_t **reqs, unsigned n, struct gpuq_completion *cs);

/*
 * Harvests up to max completions of tag-only requests (req == NULL),
 * waiting up to timeout_ms (0: don't wait, -1: forever) for the first.
 * Returns the count, or -errno. After the session ended, the completions
 * it failed are returned first, then the session's error.
 */
GPUQ_API int gpuq_poll(gpuq_t *q, struct gpuq_completion *out, unsigned max, int timeout_ms);

/*
 * An fd for epoll, libevent or io_uring loops, owned by q (never read,
 * write or close it): readable whenever completions are pending, whatever
 * calls came before (blocking ones included), and once the session has
 * ended. It is an epoll descriptor that watches the session socket (on
 * which gpuqd sends a byte when it posts a completion for an armed
 * client) and a private eventfd that libgpuq raises while completions sit
 * in its own queues; every data-path call leaves it in a true state.
 *
 *   Level-triggered (poll, select, EPOLLIN): when it is readable, call
 *   gpuq_poll(q, out, max, 0) (and gpuq_test on your handles) once or
 *   more; it stays readable while completions remain and stops being
 *   readable once they are all taken.
 *
 *   Edge-triggered (EPOLLIN | EPOLLET): when it is readable, call
 *   gpuq_poll(q, out, max, 0) until it returns 0 (or < 0), and gpuq_test
 *   each handle until none is done; only then wait again. The call that
 *   finds nothing left re-arms it, so the next completion is a new edge.
 *
 *   Either way: gpuq_poll returning < 0 (-ECONNRESET, -ESHUTDOWN, -EPROTO)
 *   means the session ended; remove the fd from the loop, then call
 *   gpuq_reconnect or gpuq_close. The same descriptor is kept across
 *   gpuq_reconnect. Returns the fd or -errno.
 */
GPUQ_API int gpuq_fd(gpuq_t *q);

/*
 * ---- Channels: message queues between GPU kernels and CPU processes ----
 *
 * A channel is a named ring of nslots messages of up to slot_size bytes
 * each, created by gpuqd in shared memory. Kernels send and receive with
 * gpuq_device.cuh (after gpuq_chan_map_cuda from libgpuq-cuda); CPU
 * processes with the calls below. A channel is unidirectional; a socket-like
 * pair is two channels. It lives while any session has it open.
 */
typedef struct gpuq_chan gpuq_chan_t; /* an open channel; opaque */

/* Directions, for gpuq_chan_create's flags. */
#define GPUQ_CHAN_GPU_TO_CPU 0x10000u /* kernels send, CPU processes receive */
#define GPUQ_CHAN_CPU_TO_GPU 0x20000u /* CPU processes send, kernels receive */
/* Intent, for gpuq_chan_open's flags (checked against the channel's mode). */
#define GPUQ_CHAN_SEND 0x40000u
#define GPUQ_CHAN_RECV 0x80000u

/*
 * Creates channel name ([A-Za-z0-9._-], 1 to 63 characters) and opens it.
 * flags: one direction, ORed with file-like permission bits (0 means 0600)
 * that gpuqd checks against the uid/gid of whoever opens it; the creator's
 * uid and gid own it. slot_size is rounded up to a multiple of 16 (at most
 * 1 MiB); nslots must be a power of two (2 to 1M). Errors: -EEXIST (name
 * taken), -EINVAL (bad name, size or flags), -ENOMEM.
 */
GPUQ_API int gpuq_chan_create(gpuq_t *q, const char *name, size_t slot_size, unsigned nslots,
			      unsigned flags, gpuq_chan_t **out);
/*
 * Opens an existing channel. flags: GPUQ_CHAN_SEND and/or GPUQ_CHAN_RECV;
 * sending needs the write bit, receiving the read bit; the group bits
 * count for the channel's group as the opener's primary or supplementary
 * group. Errors: -ENOENT, -EACCES, -EINVAL (neither flag, or a bad name),
 * -EUSERS (GPUQ_CHAN_SENDERS_MAX sending openers already).
 */
GPUQ_API int gpuq_chan_open(gpuq_t *q, const char *name, unsigned flags, gpuq_chan_t **out);
/* Closes the handle; the channel goes when the last session closes it. NULL is a no-op. */
GPUQ_API void gpuq_chan_close(gpuq_chan_t *ch);

/*
 * Sends one message of len <= slot_size bytes. Waits while the ring is
 * full, up to timeout_ms (0: don't wait, -1: forever). Returns len, or
 * -EAGAIN (full), -ETIMEDOUT, -EMSGSIZE.
 */
GPUQ_API ssize_t gpuq_chan_send(gpuq_chan_t *ch, const void *msg, size_t len, int timeout_ms);
/*
 * Receives one message into buf (cap bytes; a longer message is cut to cap
 * and its full length returned). Waits up to timeout_ms for one to arrive:
 * polls briefly, then sleeps until gpuqd wakes it. Returns the message's
 * length, or -EAGAIN (timeout 0, nothing there), -ETIMEDOUT.
 */
GPUQ_API ssize_t gpuq_chan_recv(gpuq_chan_t *ch, void *buf, size_t cap, int timeout_ms);
/*
 * Receives up to max messages: message i goes to bufs + i * stride (stride
 * bytes each at most) and its length to lens[i]. Waits like gpuq_chan_recv
 * for the first. Returns the count, or -errno.
 */
GPUQ_API int gpuq_chan_recv_batch(gpuq_chan_t *ch, void *bufs, size_t stride, size_t *lens,
				  unsigned max, int timeout_ms);
/*
 * An fd readable while messages are pending (for epoll, libevent, io_uring
 * loops). Receiving until the channel is empty re-arms it. Owned by ch.
 */
GPUQ_API int gpuq_chan_fd(gpuq_chan_t *ch);
/*
 * The ends gpuqd granted this opener: GPUQ_CHAN_SEND and/or GPUQ_CHAN_RECV
 * (the creator gets both). The regions of the shared memory this opener may
 * not write are mapped read-only (gpuq_chan.h, "Regions"); sending without
 * the send end, or receiving (gpuq_chan_recv, _recv_batch, _fd) without the
 * receive end, returns -EBADF. Or -EINVAL for NULL.
 */
GPUQ_API int gpuq_chan_ends(gpuq_chan_t *ch);
/* The channel's geometry and its shared memory (for gpuq_chan_map_cuda and the curious). */
GPUQ_API int gpuq_chan_info(gpuq_chan_t *ch, size_t *slot_size, unsigned *nslots,
			    unsigned *direction, void **mem, size_t *mem_size);
/*
 * Takes (own != 0) or gives back one end of ch, GPUQ_CHAN_SEND or
 * GPUQ_CHAN_RECV, for this process's kernels, which then keep it in device
 * memory; gpuq_chan_map_cuda_sender/_receiver (libgpuq-cuda) call it.
 * Meanwhile CPU senders (receivers) get -EBUSY, as does a second owner.
 * Should the session end without giving the end back (the process died),
 * gpuqd clears the mark and repairs the ring, so CPU processes can take
 * over. Returns 0 or -errno (-EBUSY, -EINVAL, -ENOENT, -ENOTCONN).
 */
GPUQ_API int gpuq_chan_own(gpuq_chan_t *ch, unsigned end, int own);

#ifdef __cplusplus
}
#endif
#endif
