/* config.h: gpuqd settings from gpuqd.conf and the command line. */
#ifndef GPUQ_CONFIG_H
#define GPUQ_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "backend.h"
#include "sharing.h"

#define CONFIG_DEFAULT_PATH "/etc/gpuq/gpuqd.conf"
#define CONFIG_PATH_MAX 256

/* Every setting gpuqd has. Plain values in the caller's storage (init/fini-free). */
struct config {
	char socket[108]; /* sun_path */
	unsigned socket_mode;
	char socket_group[64]; /* "" keeps the daemon's group */
	enum backend_kind backend;
	int log_level;
	uint32_t max_frame;
	unsigned max_clients;
	uint64_t max_session_mem;   /* device memory per session, 0 = unlimited */
	unsigned handshake_timeout; /* seconds */
	uint64_t host_mem;
	unsigned host_devices;   /* devices of the host backend, 1..16 */
	uint64_t arena_default;  /* session arena when the client names none */
	uint64_t arena_max;      /* cap on what a client may ask for */
	unsigned engine_idle_us; /* how long an idle engine polls before it sleeps */
	enum sharing_mode sharing;
	char mps_pipe_dir[200];         /* "" = "mps" beside the socket */
	unsigned mps_client_sm_percent; /* SM share suggested to clients under MPS, 0 = none */
	/* Bounds per connection and per uid (0 = unlimited for the uid_max_* sizes and counts). */
	unsigned max_handshakes;        /* connections not yet past Hello */
	uint64_t max_output;            /* queued replies per connection */
	unsigned frame_timeout;         /* seconds a started frame may make no progress */
	unsigned uid_max_sessions;      /* sessions of one uid */
	uint64_t uid_max_arena;         /* pinned arena bytes of one uid's sessions */
	uint64_t uid_max_mem;           /* device memory of one uid's buffers */
	unsigned uid_max_channels;      /* channels one uid's sessions hold open */
	uint64_t uid_max_channel_bytes; /* bytes of the channels one uid's sessions hold open */
	unsigned uid_max_inflight;      /* requests in flight for one uid, all devices */
};

/* One bit per key; records which keys a source set, so flags can win over the file. */
enum config_key {
	CFG_SOCKET,
	CFG_SOCKET_MODE,
	CFG_SOCKET_GROUP,
	CFG_BACKEND,
	CFG_LOG_LEVEL,
	CFG_MAX_FRAME,
	CFG_MAX_CLIENTS,
	CFG_MAX_SESSION_MEM,
	CFG_HANDSHAKE_TIMEOUT,
	CFG_HOST_MEM,
	CFG_ARENA_DEFAULT,
	CFG_ARENA_MAX,
	CFG_ENGINE_IDLE_US,
	CFG_SHARING,
	CFG_MPS_PIPE_DIR,
	CFG_MPS_CLIENT_SM_PERCENT,
	CFG_HOST_DEVICES,
	CFG_MAX_HANDSHAKES,
	CFG_MAX_OUTPUT,
	CFG_FRAME_TIMEOUT,
	CFG_UID_MAX_SESSIONS,
	CFG_UID_MAX_ARENA,
	CFG_UID_MAX_MEM,
	CFG_UID_MAX_CHANNELS,
	CFG_UID_MAX_CHANNEL_BYTES,
	CFG_UID_MAX_INFLIGHT,
	CFG_NKEYS
};

/* The gpuqd.conf name of a key ("socket", "max_frame", ...). */
const char *config_key_name(enum config_key k);

/* Fills cfg with the built-in defaults. */
void config_defaults(struct config *cfg);

/*
 * Sets one key from its text value, validating it. Returns the key's index
 * (enum config_key) or -EINVAL (bad value), -ENOENT (unknown key). On error
 * a message goes to err (which may be NULL).
 */
int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen);

/*
 * Reads a gpuqd.conf into cfg (on top of what it holds), setting the bits of
 * the keys it saw in *seen (may be NULL). Returns 0, -ENOENT when the file is
 * missing, or -EINVAL with "path:line: why" in err.
 */
int config_load(struct config *cfg, const char *path, uint32_t *seen, char *err, size_t errlen);

/* Parses "4096", "64K", "1M", "2G", "1T" (powers of 1024). Returns 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *out);

/* Writes the settings as gpuqd.conf lines (for --check-config). */
void config_print(const struct config *cfg, FILE *f);

#endif
