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

#define GPUQ_DEFAULT_SOCKET "/run/gpuqd/gpuqd.sock"
#define GPUQ_SOCKET_ENV "GPUQ_SOCKET"

typedef struct gpuq gpuq_t; /* one session with gpuqd; opaque */

/*
 * Connects to gpuqd and performs the Hello/Welcome handshake. path may be
 * NULL: then $GPUQ_SOCKET, else GPUQ_DEFAULT_SOCKET. On success *out owns
 * the session; release it with gpuq_close. Errors: -ENOENT or -ECONNREFUSED
 * (no daemon), -EACCES (socket permissions), -EPROTO (version mismatch or
 * a malformed reply; gpuq_connect_ex returns the daemon's message), -ENOMEM.
 */
int gpuq_connect(const char *path, gpuq_t **out);

/*
 * As gpuq_connect, with a client name shown by `gpuqctl clients` (may be
 * NULL) and a buffer that receives the daemon's or library's error message
 * on failure (may be NULL).
 */
int gpuq_connect_ex(const char *path, const char *client_name, gpuq_t **out, char *errbuf,
		    size_t errlen);

/* Ends the session: the daemon frees every buffer the session owns. NULL is a no-op. */
void gpuq_close(gpuq_t *q);

/* The message that came with the last error on q ("" when none). Valid until the next call. */
const char *gpuq_errmsg(gpuq_t *q);

/* The session id the daemon assigned, and the backend it runs ("cuda" or "host"). */
uint64_t gpuq_session_id(gpuq_t *q);
const char *gpuq_backend(gpuq_t *q);

/* libgpuq's version string, e.g. "0.1.0". */
const char *gpuq_version(void);

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
 * Fills up to max entries of devs and returns the number of devices the
 * daemon has (which may exceed max). devs may be NULL when max is 0.
 */
int gpuq_devices(gpuq_t *q, struct gpuq_device_info *devs, unsigned max);

/*
 * Device buffers. A buffer lives on one device, is named by a small id that
 * is valid only in this session, and is freed by gpuq_buf_free or when the
 * session ends. Errors: -EINVAL (bad size or device), -ENOMEM (device memory
 * or session quota exhausted), -ENOENT (no such buffer in this session),
 * -ERANGE (offset/length outside the buffer).
 */
int gpuq_buf_alloc(gpuq_t *q, unsigned device, size_t size, uint32_t *id);
int gpuq_buf_free(gpuq_t *q, uint32_t id);

/*
 * Copies len bytes between host memory and a device buffer through the
 * control socket. Simple and always correct, but not the fast path.
 * Returns len on success.
 */
ssize_t gpuq_buf_write(gpuq_t *q, uint32_t id, uint64_t offset, const void *src, size_t len);
ssize_t gpuq_buf_read(gpuq_t *q, uint32_t id, uint64_t offset, void *dst, size_t len);

struct gpuq_status {
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
};

/* The daemon's state, as `gpuqctl status` shows it. */
int gpuq_status(gpuq_t *q, struct gpuq_status *st);

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
 * count of entries, to be released with free().
 */
int gpuq_clients(gpuq_t *q, struct gpuq_client_info **out);

#ifdef __cplusplus
}
#endif
#endif
