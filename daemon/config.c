/* config.c: parsing and validation of gpuqd.conf and flag values. */
#include "build-config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "log.h"

static const char *const key_names[CFG_NKEYS] = {
	[CFG_SOCKET] = "socket",
	[CFG_SOCKET_MODE] = "socket_mode",
	[CFG_SOCKET_GROUP] = "socket_group",
	[CFG_BACKEND] = "backend",
	[CFG_LOG_LEVEL] = "log_level",
	[CFG_MAX_FRAME] = "max_frame",
	[CFG_MAX_CLIENTS] = "max_clients",
	[CFG_MAX_SESSION_MEM] = "max_session_mem",
	[CFG_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[CFG_HOST_MEM] = "host_mem",
	[CFG_ARENA_DEFAULT] = "arena_default",
	[CFG_ARENA_MAX] = "arena_max",
	[CFG_ENGINE_IDLE_US] = "engine_idle_us",
	[CFG_SHARING] = "sharing",
	[CFG_MPS_PIPE_DIR] = "mps_pipe_dir",
	[CFG_MPS_CLIENT_SM_PERCENT] = "mps_client_sm_percent",
	[CFG_HOST_DEVICES] = "host_devices",
	[CFG_MAX_HANDSHAKES] = "max_handshakes",
	[CFG_MAX_OUTPUT] = "max_output",
	[CFG_FRAME_TIMEOUT] = "frame_timeout",
	[CFG_UID_MAX_SESSIONS] = "uid_max_sessions",
	[CFG_UID_MAX_ARENA] = "uid_max_arena",
	[CFG_UID_MAX_MEM] = "uid_max_mem",
	[CFG_UID_MAX_CHANNELS] = "uid_max_channels",
	[CFG_UID_MAX_CHANNEL_BYTES] = "uid_max_channel_bytes",
	[CFG_UID_MAX_INFLIGHT] = "uid_max_inflight",
};

const char *config_key_name(enum config_key k)
{
	return k < CFG_NKEYS ? key_names[k] : "?";
}

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->socket, sizeof(cfg->socket), "%s", "/run/gpuqd/gpuqd.sock");
	cfg->socket_mode = 0660;
	cfg->backend = BACKEND_AUTO;
	cfg->log_level = LOG_INFO;
	cfg->max_frame = FRAME_MAX_DEFAULT;
	cfg->max_clients = 1024;
	cfg->max_session_mem = 16ull << 30;
	cfg->handshake_timeout = 2;
	cfg->host_mem = 1ull << 30;
	cfg->host_devices = 1;
	cfg->arena_default = 64ull << 20;
	cfg->arena_max = 1ull << 30;
	cfg->engine_idle_us = 200;
	cfg->max_handshakes = 64;
	cfg->max_output = 4u << 20;
	cfg->frame_timeout = 10;
	cfg->uid_max_sessions = 64;
	cfg->uid_max_arena = 8ull << 30;
	cfg->uid_max_mem = 32ull << 30;
	cfg->uid_max_channels = 256;
	cfg->uid_max_channel_bytes = 4ull << 30;
	cfg->uid_max_inflight = 65536;
}

int config_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	unsigned shift = 0;

	if (!*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (*end) {
	case '\0': break;
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	default: return -EINVAL;
	}
	/* Accept KiB and KB spellings after a unit letter, nothing else. */
	if (shift && end[0] == 'i' && end[1] == 'B')
		end += 2;
	else if (shift && end[0] == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (ULLONG_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned base, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (!*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, base);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
	char dummy[1];
	unsigned long u;
	uint64_t sz;
	int k, r;

	if (!err) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	for (k = 0; k < CFG_NKEYS; k++)
		if (!strcmp(key, key_names[k]))
			break;
	if (k == CFG_NKEYS) {
		snprintf(err, errlen, "unknown setting '%s'", key);
		return -ENOENT;
	}
	switch ((enum config_key)k) {
	case CFG_SOCKET:
		if (!*value || strlen(value) >= sizeof(cfg->socket))
			goto bad;
		snprintf(cfg->socket, sizeof(cfg->socket), "%s", value);
		break;
	case CFG_SOCKET_MODE:
		if (parse_uint(value, 8, 0777, &u))
			goto bad;
		cfg->socket_mode = (unsigned)u;
		break;
	case CFG_SOCKET_GROUP:
		if (strlen(value) >= sizeof(cfg->socket_group))
			goto bad;
		snprintf(cfg->socket_group, sizeof(cfg->socket_group), "%s", value);
		break;
	case CFG_BACKEND:
		if (backend_kind_parse(value, &cfg->backend))
			goto bad;
		break;
	case CFG_LOG_LEVEL:
		r = log_level_parse(value);
		if (r < 0)
			goto bad;
		cfg->log_level = r;
		break;
	case CFG_MAX_FRAME:
		if (config_parse_size(value, &sz) || sz < 4096 || sz > FRAME_MAX_LIMIT)
			goto bad;
		cfg->max_frame = (uint32_t)sz;
		break;
	case CFG_MAX_CLIENTS:
		if (parse_uint(value, 10, 1u << 20, &u) || u == 0)
			goto bad;
		cfg->max_clients = (unsigned)u;
		break;
	case CFG_MAX_SESSION_MEM:
		if (config_parse_size(value, &sz))
			goto bad;
		cfg->max_session_mem = sz;
		break;
	case CFG_HANDSHAKE_TIMEOUT:
		if (parse_uint(value, 10, 3600, &u) || u == 0)
			goto bad;
		cfg->handshake_timeout = (unsigned)u;
		break;
	case CFG_HOST_MEM:
		if (config_parse_size(value, &sz) || sz < 4096)
			goto bad;
		cfg->host_mem = sz;
		break;
	case CFG_HOST_DEVICES:
		if (parse_uint(value, 10, BACKEND_MAX_DEVICES, &u) || u == 0)
			goto bad;
		cfg->host_devices = (unsigned)u;
		break;
	case CFG_ARENA_DEFAULT:
	case CFG_ARENA_MAX:
		if (config_parse_size(value, &sz) || sz < (1u << 20) || sz > (64ull << 30))
			goto bad;
		if (k == CFG_ARENA_DEFAULT)
			cfg->arena_default = sz;
		else
			cfg->arena_max = sz;
		break;
	case CFG_ENGINE_IDLE_US:
		if (parse_uint(value, 10, 1000000, &u))
			goto bad;
		cfg->engine_idle_us = (unsigned)u;
		break;
	case CFG_SHARING:
		if (sharing_mode_parse(value, &cfg->sharing))
			goto bad;
		break;
	case CFG_MPS_PIPE_DIR:
		if (strlen(value) >= sizeof(cfg->mps_pipe_dir) || (*value && *value != '/'))
			goto bad;
		snprintf(cfg->mps_pipe_dir, sizeof(cfg->mps_pipe_dir), "%s", value);
		break;
	case CFG_MPS_CLIENT_SM_PERCENT:
		if (parse_uint(value, 10, 100, &u))
			goto bad;
		cfg->mps_client_sm_percent = (unsigned)u;
		break;
	case CFG_MAX_HANDSHAKES:
		if (parse_uint(value, 10, 1u << 20, &u) || u == 0)
			goto bad;
		cfg->max_handshakes = (unsigned)u;
		break;
	case CFG_MAX_OUTPUT:
		if (config_parse_size(value, &sz) || sz < 65536 || sz > (1ull << 30))
			goto bad;
		cfg->max_output = sz;
		break;
	case CFG_FRAME_TIMEOUT:
		if (parse_uint(value, 10, 3600, &u) || u == 0)
			goto bad;
		cfg->frame_timeout = (unsigned)u;
		break;
	case CFG_UID_MAX_SESSIONS:
	case CFG_UID_MAX_CHANNELS:
	case CFG_UID_MAX_INFLIGHT:
		if (parse_uint(value, 10, 1ul << 30, &u))
			goto bad;
		if (k == CFG_UID_MAX_SESSIONS)
			cfg->uid_max_sessions = (unsigned)u;
		else if (k == CFG_UID_MAX_CHANNELS)
			cfg->uid_max_channels = (unsigned)u;
		else
			cfg->uid_max_inflight = (unsigned)u;
		break;
	case CFG_UID_MAX_ARENA:
	case CFG_UID_MAX_MEM:
	case CFG_UID_MAX_CHANNEL_BYTES:
		if (config_parse_size(value, &sz))
			goto bad;
		if (k == CFG_UID_MAX_ARENA)
			cfg->uid_max_arena = sz;
		else if (k == CFG_UID_MAX_MEM)
			cfg->uid_max_mem = sz;
		else
			cfg->uid_max_channel_bytes = sz;
		break;
	case CFG_NKEYS: break;
	}
	return k;
bad:
	snprintf(err, errlen, "invalid value '%s' for %s", value, key_names[k]);
	return -EINVAL;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int config_load(struct config *cfg, const char *path, uint32_t *seen, char *err, size_t errlen)
{
	char line[1024], why[256];
	struct config tmp = *cfg;
	uint32_t bits = 0;
	unsigned lineno = 0;
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	while (fgets(line, sizeof(line), f)) {
		char *key, *val, *eq, *hash;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			r = -EINVAL;
			goto out;
		}
		key = trim(line);
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
			r = -EINVAL;
			goto out;
		}
		*eq = '\0';
		key = trim(key);
		val = trim(eq + 1);
		if (*val == '"') {
			/* A quoted value keeps '#' and spaces; only a comment may follow it. */
			char *close = strchr(val + 1, '"');
			char *rest;

			if (!close) {
				snprintf(err, errlen, "%s:%u: unterminated quote", path, lineno);
				r = -EINVAL;
				goto out;
			}
			*close = '\0';
			rest = trim(close + 1);
			if (*rest && *rest != '#') {
				snprintf(err, errlen, "%s:%u: text after the quoted value", path,
					 lineno);
				r = -EINVAL;
				goto out;
			}
			val++;
		} else {
			/* An unquoted value ends at a '#' that starts a comment. */
			hash = strchr(val, '#');
			if (hash) {
				*hash = '\0';
				val = trim(val);
			}
		}
		r = config_set(&tmp, key, val, why, sizeof(why));
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			r = -EINVAL;
			goto out;
		}
		bits |= 1u << r;
		r = 0;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		r = -EIO;
		goto out;
	}
	/* All or nothing: a bad file leaves the running settings untouched. */
	*cfg = tmp;
	if (seen)
		*seen |= bits;
out:
	fclose(f);
	return r;
}

void config_print(const struct config *cfg, FILE *f)
{
	fprintf(f, "socket = \"%s\"\n", cfg->socket);
	fprintf(f, "socket_mode = %04o\n", cfg->socket_mode);
	fprintf(f, "socket_group = \"%s\"\n", cfg->socket_group);
	fprintf(f, "backend = %s\n", backend_kind_name(cfg->backend));
	fprintf(f, "log_level = %s\n", log_level_name(cfg->log_level));
	fprintf(f, "max_frame = %u\n", cfg->max_frame);
	fprintf(f, "max_clients = %u\n", cfg->max_clients);
	fprintf(f, "max_session_mem = %llu\n", (unsigned long long)cfg->max_session_mem);
	fprintf(f, "handshake_timeout = %u\n", cfg->handshake_timeout);
	fprintf(f, "host_mem = %llu\n", (unsigned long long)cfg->host_mem);
	fprintf(f, "host_devices = %u\n", cfg->host_devices);
	fprintf(f, "arena_default = %llu\n", (unsigned long long)cfg->arena_default);
	fprintf(f, "arena_max = %llu\n", (unsigned long long)cfg->arena_max);
	fprintf(f, "engine_idle_us = %u\n", cfg->engine_idle_us);
	fprintf(f, "sharing = %s\n", sharing_mode_name(cfg->sharing));
	fprintf(f, "max_handshakes = %u\n", cfg->max_handshakes);
	fprintf(f, "max_output = %llu\n", (unsigned long long)cfg->max_output);
	fprintf(f, "frame_timeout = %u\n", cfg->frame_timeout);
	fprintf(f, "uid_max_sessions = %u\n", cfg->uid_max_sessions);
	fprintf(f, "uid_max_arena = %llu\n", (unsigned long long)cfg->uid_max_arena);
	fprintf(f, "uid_max_mem = %llu\n", (unsigned long long)cfg->uid_max_mem);
	fprintf(f, "uid_max_channels = %u\n", cfg->uid_max_channels);
	fprintf(f, "uid_max_channel_bytes = %llu\n",
		(unsigned long long)cfg->uid_max_channel_bytes);
	fprintf(f, "uid_max_inflight = %u\n", cfg->uid_max_inflight);
	fprintf(f, "mps_pipe_dir = \"%s\"\n", cfg->mps_pipe_dir);
	fprintf(f, "mps_client_sm_percent = %u\n", cfg->mps_client_sm_percent);
}
