/* test_config.c: unit tests for gpuqd.conf parsing, validation, all-or-nothing loads and config_print. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/log.h"
#include "frame.h"

/* Writes text to a fresh temporary file; returns its path in path (caller unlinks). */
static void write_conf(char *path, size_t pathlen, const char *text)
{
	FILE *f;
	int fd;

	snprintf(path, pathlen, "/tmp/gpuq-test-config-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

/* Loads a temporary file and removes it before any assertion can end the test. */
static int load_and_unlink(struct config *cfg, const char *path, uint32_t *seen, char *err,
			   size_t errlen)
{
	int r = config_load(cfg, path, seen, err, errlen);

	unlink(path);
	return r;
}

static void assert_config_eq(const struct config *a, const struct config *b)
{
	ck_assert_str_eq(a->socket, b->socket);
	ck_assert_uint_eq(a->socket_mode, b->socket_mode);
	ck_assert_str_eq(a->socket_group, b->socket_group);
	ck_assert_int_eq(a->backend, b->backend);
	ck_assert_int_eq(a->log_level, b->log_level);
	ck_assert_uint_eq(a->max_frame, b->max_frame);
	ck_assert_uint_eq(a->max_clients, b->max_clients);
	ck_assert_uint_eq(a->max_session_mem, b->max_session_mem);
	ck_assert_uint_eq(a->handshake_timeout, b->handshake_timeout);
	ck_assert_uint_eq(a->host_mem, b->host_mem);
	ck_assert_uint_eq(a->host_devices, b->host_devices);
	ck_assert_uint_eq(a->max_handshakes, b->max_handshakes);
	ck_assert_uint_eq(a->max_output, b->max_output);
	ck_assert_uint_eq(a->frame_timeout, b->frame_timeout);
	ck_assert_uint_eq(a->uid_max_sessions, b->uid_max_sessions);
	ck_assert_uint_eq(a->uid_max_arena, b->uid_max_arena);
	ck_assert_uint_eq(a->uid_max_mem, b->uid_max_mem);
	ck_assert_uint_eq(a->uid_max_channels, b->uid_max_channels);
	ck_assert_uint_eq(a->uid_max_channel_bytes, b->uid_max_channel_bytes);
	ck_assert_uint_eq(a->uid_max_inflight, b->uid_max_inflight);
}

/* --- defaults --- */

START_TEST(test_defaults)
{
	struct config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	config_defaults(&cfg);
	/* The values gpuqd.conf(5) documents. */
	ck_assert_str_eq(cfg.socket, "/run/gpuqd/gpuqd.sock");
	ck_assert_uint_eq(cfg.socket_mode, 0660);
	ck_assert_str_eq(cfg.socket_group, "");
	ck_assert_int_eq(cfg.backend, BACKEND_AUTO);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);
	ck_assert_uint_eq(cfg.max_frame, 4u << 20);
	ck_assert_uint_eq(cfg.max_frame, FRAME_MAX_DEFAULT);
	ck_assert_uint_eq(cfg.max_clients, 1024);
	ck_assert_uint_eq(cfg.max_session_mem, 16ull << 30);
	ck_assert_uint_eq(cfg.handshake_timeout, 2);
	ck_assert_uint_eq(cfg.max_output, 4u << 20);
	ck_assert_uint_eq(cfg.uid_max_sessions, 64);
	ck_assert_uint_lt(cfg.uid_max_sessions, cfg.max_clients);
	ck_assert_uint_eq(cfg.host_mem, 1ull << 30);
	ck_assert_uint_eq(cfg.host_devices, 1);
}
END_TEST

/* --- sizes --- */

START_TEST(test_parse_size_good)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "64K", 64ull << 10 },
		{ "1M", 1ull << 20 },
		{ "2G", 2ull << 30 },
		{ "1T", 1ull << 40 },
		{ "1MiB", 1ull << 20 },
		{ "3MB", 3ull << 20 },
		{ "8KiB", 8ull << 10 },
		{ "18446744073709551615", UINT64_MAX },
		/* The largest K value that still fits in 64 bits. */
		{ "18014398509481983K", ((1ull << 54) - 1) << 10 },
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		ck_assert_msg(config_parse_size(good[i].s, &v) == 0, "'%s' rejected", good[i].s);
		ck_assert_msg(v == good[i].v, "'%s' parsed as %llu, expected %llu", good[i].s,
			      (unsigned long long)v, (unsigned long long)good[i].v);
	}
}
END_TEST

START_TEST(test_parse_size_bad)
{
	static const char *const bad[] = {
		"",
		"K",
		"-1",
		"+1",
		" 1",
		"1X",
		"1.5G",
		"1 M",
		"0x10",
		"1MiBx",
		"M1",
		"99999999999999999999", /* more than 64 bits before any suffix */
		"18014398509481984K",   /* 2^54 K = 2^64: overflows only after the shift */
		"16777216T",            /* 2^24 T = 2^64 */
	};
	uint64_t v;
	size_t i;
	int r;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = config_parse_size(bad[i], &v);
		ck_assert_msg(r == -EINVAL || r == -ERANGE, "'%s' accepted (r=%d, v=%llu)", bad[i],
			      r, (unsigned long long)v);
	}
}
END_TEST

/* --- config_set --- */

struct kv {
	const char *key, *value;
};

static void assert_set_ok(struct config *cfg, const char *key, const char *value, enum config_key k)
{
	char err[256] = "";
	int r = config_set(cfg, key, value, err, sizeof(err));

	ck_assert_msg(r == (int)k, "%s = '%s' gave %d (%s), expected key %d", key, value, r, err,
		      (int)k);
}

/* A rejected value returns -EINVAL, says why, and leaves every setting as it was. */
static void assert_set_bad(const char *key, const char *value)
{
	struct config cfg, before;
	char err[256] = "";
	int r;

	config_defaults(&cfg);
	before = cfg;
	r = config_set(&cfg, key, value, err, sizeof(err));
	ck_assert_msg(r == -EINVAL, "%s = '%s' gave %d, expected -EINVAL", key, value, r);
	ck_assert_msg(strstr(err, key) != NULL, "message '%s' does not name %s", err, key);
	assert_config_eq(&cfg, &before);
	/* err may be NULL. */
	ck_assert_int_eq(config_set(&cfg, key, value, NULL, 0), -EINVAL);
}

START_TEST(test_set_socket)
{
	struct config cfg;
	char longpath[200];

	config_defaults(&cfg);
	assert_set_ok(&cfg, "socket", "/tmp/my gpuq.sock", CFG_SOCKET);
	ck_assert_str_eq(cfg.socket, "/tmp/my gpuq.sock");

	/* sun_path holds 107 characters and the NUL. */
	memset(longpath, 'a', sizeof(longpath));
	longpath[0] = '/';
	longpath[107] = '\0';
	assert_set_ok(&cfg, "socket", longpath, CFG_SOCKET);
	ck_assert_str_eq(cfg.socket, longpath);
	longpath[107] = 'a';
	longpath[108] = '\0';
	assert_set_bad("socket", longpath);
	assert_set_bad("socket", "");
}
END_TEST

START_TEST(test_set_socket_mode)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "socket_mode", "0600", CFG_SOCKET_MODE);
	ck_assert_uint_eq(cfg.socket_mode, 0600);
	assert_set_ok(&cfg, "socket_mode", "0660", CFG_SOCKET_MODE);
	ck_assert_uint_eq(cfg.socket_mode, 0660);
	/* Always octal, leading zero or not. */
	assert_set_ok(&cfg, "socket_mode", "666", CFG_SOCKET_MODE);
	ck_assert_uint_eq(cfg.socket_mode, 0666);
	assert_set_ok(&cfg, "socket_mode", "0777", CFG_SOCKET_MODE);
	ck_assert_uint_eq(cfg.socket_mode, 0777);

	assert_set_bad("socket_mode", "0999");
	assert_set_bad("socket_mode", "888");
	assert_set_bad("socket_mode", "01000");
	assert_set_bad("socket_mode", "-660");
	assert_set_bad("socket_mode", "rw");
	assert_set_bad("socket_mode", "");
}
END_TEST

START_TEST(test_set_socket_group)
{
	struct config cfg;
	char longgroup[80];

	config_defaults(&cfg);
	assert_set_ok(&cfg, "socket_group", "gpuq", CFG_SOCKET_GROUP);
	ck_assert_str_eq(cfg.socket_group, "gpuq");
	/* Empty means "keep the daemon's group" and is how a file unsets it. */
	assert_set_ok(&cfg, "socket_group", "", CFG_SOCKET_GROUP);
	ck_assert_str_eq(cfg.socket_group, "");

	memset(longgroup, 'g', sizeof(longgroup));
	longgroup[64] = '\0';
	assert_set_bad("socket_group", longgroup);
}
END_TEST

START_TEST(test_set_backend)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "backend", "host", CFG_BACKEND);
	ck_assert_int_eq(cfg.backend, BACKEND_HOST);
	assert_set_ok(&cfg, "backend", "cuda", CFG_BACKEND);
	ck_assert_int_eq(cfg.backend, BACKEND_CUDA);
	assert_set_ok(&cfg, "backend", "auto", CFG_BACKEND);
	ck_assert_int_eq(cfg.backend, BACKEND_AUTO);

	assert_set_bad("backend", "gpu");
	assert_set_bad("backend", "");
	assert_set_bad("backend", "host ");
}
END_TEST

START_TEST(test_set_log_level)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "log_level", "err", CFG_LOG_LEVEL);
	ck_assert_int_eq(cfg.log_level, LOG_ERR);
	assert_set_ok(&cfg, "log_level", "warn", CFG_LOG_LEVEL);
	ck_assert_int_eq(cfg.log_level, LOG_WARNING);
	assert_set_ok(&cfg, "log_level", "debug", CFG_LOG_LEVEL);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	assert_set_ok(&cfg, "log_level", "info", CFG_LOG_LEVEL);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);

	assert_set_bad("log_level", "verbose");
	assert_set_bad("log_level", "7");
	assert_set_bad("log_level", "");
}
END_TEST

START_TEST(test_set_max_frame)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "max_frame", "4096", CFG_MAX_FRAME);
	ck_assert_uint_eq(cfg.max_frame, 4096);
	assert_set_ok(&cfg, "max_frame", "64M", CFG_MAX_FRAME);
	ck_assert_uint_eq(cfg.max_frame, FRAME_MAX_LIMIT);
	assert_set_ok(&cfg, "max_frame", "1M", CFG_MAX_FRAME);
	ck_assert_uint_eq(cfg.max_frame, 1u << 20);

	assert_set_bad("max_frame", "4095");
	assert_set_bad("max_frame", "0");
	assert_set_bad("max_frame", "67108865");
	assert_set_bad("max_frame", "65M");
	assert_set_bad("max_frame", "4G"); /* would wrap to 0 in 32 bits */
	assert_set_bad("max_frame", "big");
}
END_TEST

START_TEST(test_set_max_clients)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "max_clients", "1", CFG_MAX_CLIENTS);
	ck_assert_uint_eq(cfg.max_clients, 1);
	assert_set_ok(&cfg, "max_clients", "1048576", CFG_MAX_CLIENTS);
	ck_assert_uint_eq(cfg.max_clients, 1048576);

	assert_set_bad("max_clients", "0");
	assert_set_bad("max_clients", "1048577");
	assert_set_bad("max_clients", "-1");
	assert_set_bad("max_clients", "10x");
	assert_set_bad("max_clients", "4294967297"); /* 2^32 + 1: must not wrap to 1 */
}
END_TEST

START_TEST(test_set_max_session_mem)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "max_session_mem", "8G", CFG_MAX_SESSION_MEM);
	ck_assert_uint_eq(cfg.max_session_mem, 8ull << 30);
	assert_set_ok(&cfg, "max_session_mem", "0", CFG_MAX_SESSION_MEM);
	ck_assert_uint_eq(cfg.max_session_mem, 0);

	assert_set_bad("max_session_mem", "lots");
	assert_set_bad("max_session_mem", "-1");
}
END_TEST

START_TEST(test_set_handshake_timeout)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "handshake_timeout", "1", CFG_HANDSHAKE_TIMEOUT);
	ck_assert_uint_eq(cfg.handshake_timeout, 1);
	assert_set_ok(&cfg, "handshake_timeout", "3600", CFG_HANDSHAKE_TIMEOUT);
	ck_assert_uint_eq(cfg.handshake_timeout, 3600);

	assert_set_bad("handshake_timeout", "0");
	assert_set_bad("handshake_timeout", "3601");
	assert_set_bad("handshake_timeout", "5s");
}
END_TEST

START_TEST(test_set_host_mem)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "host_mem", "4096", CFG_HOST_MEM);
	ck_assert_uint_eq(cfg.host_mem, 4096);
	assert_set_ok(&cfg, "host_mem", "16G", CFG_HOST_MEM);
	ck_assert_uint_eq(cfg.host_mem, 16ull << 30);

	assert_set_bad("host_mem", "4095");
	assert_set_bad("host_mem", "0");
	assert_set_bad("host_mem", "1X");
}
END_TEST

START_TEST(test_set_host_devices)
{
	struct config cfg;

	config_defaults(&cfg);
	assert_set_ok(&cfg, "host_devices", "1", CFG_HOST_DEVICES);
	ck_assert_uint_eq(cfg.host_devices, 1);
	assert_set_ok(&cfg, "host_devices", "16", CFG_HOST_DEVICES);
	ck_assert_uint_eq(cfg.host_devices, 16);

	assert_set_bad("host_devices", "0");
	assert_set_bad("host_devices", "17");
	assert_set_bad("host_devices", "-1");
	assert_set_bad("host_devices", "2x");
}
END_TEST

START_TEST(test_set_unknown_key)
{
	struct config cfg, before;
	char err[256] = "";

	config_defaults(&cfg);
	before = cfg;
	ck_assert_int_eq(config_set(&cfg, "max_clinets", "10", err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "max_clinets"));
	ck_assert_int_eq(config_set(&cfg, "", "10", NULL, 0), -ENOENT);
	/* Keys are exact: no case folding, no dashes. */
	ck_assert_int_eq(config_set(&cfg, "Backend", "host", NULL, 0), -ENOENT);
	ck_assert_int_eq(config_set(&cfg, "max-frame", "1M", NULL, 0), -ENOENT);
	assert_config_eq(&cfg, &before);
}
END_TEST

/* --- config_load --- */

START_TEST(test_load_all_keys)
{
	static const char text[] = "# a full gpuqd.conf\n"
				   "\n"
				   "   socket   =   \"/tmp/gpuq test/sock\"   \n"
				   "socket_mode=0600\n"
				   "\tsocket_group = \"\"   # empty: keep our group\n"
				   "backend = host # comment after a value\n"
				   "log_level = debug\n"
				   "   # indented comment\n"
				   "max_frame = 1M\n"
				   "max_clients = 7\n"
				   "max_session_mem = \"2G\"\n"
				   "handshake_timeout = 30\n"
				   "host_mem = 64M\r\n"
				   "arena_default = 16M\n"
				   "arena_max = 2G\n"
				   "engine_idle_us = 0\n"
				   "sharing = exclusive\n"
				   "mps_pipe_dir = /run/x/mps\n"
				   "mps_client_sm_percent = 90\n"
				   "host_devices = 8\n"
				   "max_handshakes = 9\n"
				   "max_output = 1M\n"
				   "frame_timeout = 3\n"
				   "uid_max_sessions = 5\n"
				   "uid_max_arena = 3G\n"
				   "uid_max_mem = 0\n"
				   "uid_max_channels = 11\n"
				   "uid_max_channel_bytes = 12M\n"
				   "uid_max_inflight = 13\n"
				   "\n";
	struct config cfg;
	char path[64], err[512] = "";
	uint32_t seen = 0;

	write_conf(path, sizeof(path), text);
	config_defaults(&cfg);
	snprintf(cfg.socket_group, sizeof(cfg.socket_group), "wheel");
	ck_assert_msg(load_and_unlink(&cfg, path, &seen, err, sizeof(err)) == 0, "load failed: %s",
		      err);

	ck_assert_str_eq(cfg.socket, "/tmp/gpuq test/sock");
	ck_assert_uint_eq(cfg.socket_mode, 0600);
	ck_assert_str_eq(cfg.socket_group, "");
	ck_assert_int_eq(cfg.backend, BACKEND_HOST);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	ck_assert_uint_eq(cfg.max_frame, 1u << 20);
	ck_assert_uint_eq(cfg.max_clients, 7);
	ck_assert_uint_eq(cfg.max_session_mem, 2ull << 30);
	ck_assert_uint_eq(cfg.handshake_timeout, 30);
	ck_assert_uint_eq(cfg.host_mem, 64ull << 20);
	ck_assert_uint_eq(cfg.arena_default, 16ull << 20);
	ck_assert_uint_eq(cfg.arena_max, 2ull << 30);
	ck_assert_uint_eq(cfg.engine_idle_us, 0);
	ck_assert_int_eq(cfg.sharing, SHARING_EXCLUSIVE);
	ck_assert_str_eq(cfg.mps_pipe_dir, "/run/x/mps");
	ck_assert_uint_eq(cfg.mps_client_sm_percent, 90);
	ck_assert_uint_eq(cfg.host_devices, 8);
	ck_assert_uint_eq(cfg.max_handshakes, 9);
	ck_assert_uint_eq(cfg.max_output, 1u << 20);
	ck_assert_uint_eq(cfg.frame_timeout, 3);
	ck_assert_uint_eq(cfg.uid_max_sessions, 5);
	ck_assert_uint_eq(cfg.uid_max_arena, 3ull << 30);
	ck_assert_uint_eq(cfg.uid_max_mem, 0);
	ck_assert_uint_eq(cfg.uid_max_channels, 11);
	ck_assert_uint_eq(cfg.uid_max_channel_bytes, 12u << 20);
	ck_assert_uint_eq(cfg.uid_max_inflight, 13);
	ck_assert_uint_eq(seen, (1u << CFG_NKEYS) - 1);
}
END_TEST

START_TEST(test_load_seen_and_layering)
{
	static const char text[] = "max_clients = 3\n"
				   "backend = cuda\n"
				   "max_clients = 9   # a key given twice takes the last value\n";
	struct config cfg, expect;
	char path[64], err[512] = "";
	uint32_t seen = 0;

	write_conf(path, sizeof(path), text);
	config_defaults(&cfg);
	/* The file applies on top of what cfg holds: keys it lacks keep their values. */
	cfg.handshake_timeout = 77;
	expect = cfg;
	expect.max_clients = 9;
	expect.backend = BACKEND_CUDA;
	ck_assert_int_eq(load_and_unlink(&cfg, path, &seen, err, sizeof(err)), 0);
	assert_config_eq(&cfg, &expect);
	ck_assert_uint_eq(seen, (1u << CFG_MAX_CLIENTS) | (1u << CFG_BACKEND));
}
END_TEST

START_TEST(test_load_empty_file)
{
	struct config cfg, def;
	char path[64], err[512] = "";
	uint32_t seen = 0;

	write_conf(path, sizeof(path), "# nothing but comments\n\n   \n");
	config_defaults(&cfg);
	def = cfg;
	ck_assert_int_eq(load_and_unlink(&cfg, path, &seen, err, sizeof(err)), 0);
	assert_config_eq(&cfg, &def);
	ck_assert_uint_eq(seen, 0);
}
END_TEST

START_TEST(test_load_missing)
{
	struct config cfg, before;
	char dir[] = "/tmp/gpuq-test-config-XXXXXX", path[128], err[512] = "";
	uint32_t seen = 0;
	int r;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/gpuqd.conf", dir);
	config_defaults(&cfg);
	before = cfg;
	r = config_load(&cfg, path, &seen, err, sizeof(err));
	rmdir(dir);
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
	assert_config_eq(&cfg, &before);
	ck_assert_uint_eq(seen, 0);
}
END_TEST

/* Loads text that is bad on line badline; cfg and seen must come back untouched. */
static void assert_load_bad(const char *text, unsigned badline)
{
	struct config cfg, before;
	char path[64], want[96], err[512] = "";
	uint32_t seen = 0;

	write_conf(path, sizeof(path), text);
	config_defaults(&cfg);
	before = cfg;
	ck_assert_int_eq(load_and_unlink(&cfg, path, &seen, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:%u:", path, badline);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
		      "message '%s' does not start with '%s'", err, want);
	assert_config_eq(&cfg, &before);
	ck_assert_uint_eq(seen, 0);
}

START_TEST(test_load_bad_value_all_or_nothing)
{
	/* Good settings before the bad line must not be applied either. */
	assert_load_bad("backend = host\n"
			"max_clients = 5\n"
			"# fine so far\n"
			"max_frame = 1K\n"
			"log_level = debug\n",
			4);
}
END_TEST

START_TEST(test_load_bad_lines)
{
	assert_load_bad("socket_mode = 0660\nthis line has no equals sign\n", 2);
	assert_load_bad("\n\n\nno_such_key = 1\n", 4);
	assert_load_bad("= 5\n", 1);
	assert_load_bad("backend = gpu\n", 1);
	assert_load_bad("max_clients = 1\nmax_clients = 0\n", 2);
}
END_TEST

START_TEST(test_load_shipped_file)
{
	/* systemd/gpuqd.conf lists every key, commented out, with its default. */
	char src[512], path[64], err[512] = "", line[512];
	struct config cfg, def;
	uint32_t seen = 0;
	FILE *in, *out;
	int fd;

	snprintf(src, sizeof(src), "%s/systemd/gpuqd.conf", GPUQ_SRCDIR);
	config_defaults(&def);
	cfg = def;
	ck_assert_msg(config_load(&cfg, src, &seen, err, sizeof(err)) == 0, "%s", err);
	assert_config_eq(&cfg, &def);
	ck_assert_uint_eq(seen, 0);

	/* Uncomment every "#key = value" line: the result must still be the defaults. */
	in = fopen(src, "r");
	ck_assert_ptr_nonnull(in);
	snprintf(path, sizeof(path), "/tmp/gpuq-test-config-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	out = fdopen(fd, "w");
	ck_assert_ptr_nonnull(out);
	while (fgets(line, sizeof(line), in))
		fputs(line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' ? line + 1 : line, out);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
	ck_assert_msg(load_and_unlink(&cfg, path, &seen, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(seen, (1u << CFG_NKEYS) - 1);
	/* The one exception: socket_group shows an example group, not its (empty) default. */
	ck_assert_str_eq(cfg.socket_group, "gpuq");
	snprintf(cfg.socket_group, sizeof(cfg.socket_group), "%s", def.socket_group);
	assert_config_eq(&cfg, &def);
}
END_TEST

/* --- config_print --- */

static void roundtrip(const struct config *cfg)
{
	struct config back;
	char path[64], err[512] = "";
	uint32_t seen = 0;
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/gpuq-test-config-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	config_print(cfg, f);
	ck_assert_int_eq(fclose(f), 0);

	/* Start from different values everywhere so nothing passes by accident. */
	config_defaults(&back);
	snprintf(back.socket, sizeof(back.socket), "/nowhere");
	snprintf(back.socket_group, sizeof(back.socket_group), "nogroup");
	back.socket_mode = 0;
	back.backend = cfg->backend == BACKEND_CUDA ? BACKEND_HOST : BACKEND_CUDA;
	back.log_level = cfg->log_level == LOG_ERR ? LOG_DEBUG : LOG_ERR;
	back.max_frame = cfg->max_frame + 1;
	back.max_clients = cfg->max_clients + 1;
	back.max_session_mem = cfg->max_session_mem + 1;
	back.handshake_timeout = cfg->handshake_timeout + 1;
	back.host_mem = cfg->host_mem + 1;
	back.host_devices = cfg->host_devices % 16 + 1;
	ck_assert_msg(load_and_unlink(&back, path, &seen, err, sizeof(err)) == 0,
		      "reload failed: %s", err);
	assert_config_eq(&back, cfg);
	ck_assert_uint_eq(seen, (1u << CFG_NKEYS) - 1);
}

START_TEST(test_print_roundtrip_defaults)
{
	struct config cfg;

	config_defaults(&cfg);
	roundtrip(&cfg);
}
END_TEST

START_TEST(test_print_roundtrip_custom)
{
	static const struct kv set[] = {
		{ "socket", "/var/tmp/gpu q.sock" },
		{ "socket_mode", "0604" },
		{ "socket_group", "video" },
		{ "backend", "host" },
		{ "log_level", "warn" },
		{ "max_frame", "12345" },
		{ "max_clients", "99" },
		{ "max_session_mem", "3G" },
		{ "handshake_timeout", "42" },
		{ "host_mem", "100000" },
		{ "host_devices", "16" },
	};
	struct config cfg;
	size_t i;

	config_defaults(&cfg);
	for (i = 0; i < sizeof(set) / sizeof(set[0]); i++)
		ck_assert_int_ge(config_set(&cfg, set[i].key, set[i].value, NULL, 0), 0);
	roundtrip(&cfg);

	cfg.backend = BACKEND_CUDA;
	cfg.log_level = LOG_ERR;
	roundtrip(&cfg);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_test(tc, test_defaults);
	suite_add_tcase(s, tc);

	tc = tcase_create("size");
	tcase_add_test(tc, test_parse_size_good);
	tcase_add_test(tc, test_parse_size_bad);
	suite_add_tcase(s, tc);

	tc = tcase_create("set");
	tcase_add_test(tc, test_set_socket);
	tcase_add_test(tc, test_set_socket_mode);
	tcase_add_test(tc, test_set_socket_group);
	tcase_add_test(tc, test_set_backend);
	tcase_add_test(tc, test_set_log_level);
	tcase_add_test(tc, test_set_max_frame);
	tcase_add_test(tc, test_set_max_clients);
	tcase_add_test(tc, test_set_max_session_mem);
	tcase_add_test(tc, test_set_handshake_timeout);
	tcase_add_test(tc, test_set_host_mem);
	tcase_add_test(tc, test_set_host_devices);
	tcase_add_test(tc, test_set_unknown_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_test(tc, test_load_all_keys);
	tcase_add_test(tc, test_load_seen_and_layering);
	tcase_add_test(tc, test_load_empty_file);
	tcase_add_test(tc, test_load_missing);
	tcase_add_test(tc, test_load_bad_value_all_or_nothing);
	tcase_add_test(tc, test_load_bad_lines);
	tcase_add_test(tc, test_load_shipped_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("print");
	tcase_add_test(tc, test_print_roundtrip_defaults);
	tcase_add_test(tc, test_print_roundtrip_custom);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
