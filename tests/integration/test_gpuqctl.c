/* test_gpuqctl.c: gpuqctl against a real gpuqd: human and JSON output, socket choice, exit codes. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

static struct daemon_proc d;
static char out[1 << 16];

/* Runs gpuqctl with the given arguments; its stdout lands in out. */
#define RUN_CTL(...) harness_run_ctl((const char *const[]){ __VA_ARGS__, NULL }, out, sizeof(out))

static void start_default(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

static void stop_checked(void)
{
	ck_assert_int_eq(harness_stop(&d), 0);
}

static gpuq_t *connect_ok(const char *name)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = name };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	return q;
}

/*
 * gpuqctl's --json output, parsed by jansson (strictly: one object, no
 * duplicate keys). jd is the last document json_ok parsed.
 */
static json_t *jd;

/* The member key of object obj, or NULL. */
static json_t *jget(json_t *obj, const char *key)
{
	return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

static int jcount(json_t *arr)
{
	ck_assert_msg(json_is_array(arr), "not an array in %s", out);
	return (int)json_array_size(arr);
}

/* Member key of obj as an unsigned integer; the member must exist and be one. */
static unsigned long long juint(json_t *obj, const char *key)
{
	json_t *k = jget(obj, key);

	ck_assert_msg(k, "no member \"%s\" in %s", key, out);
	ck_assert_msg(json_is_integer(k) && json_integer_value(k) >= 0,
		      "\"%s\" is not an unsigned integer in %s", key, out);
	return (unsigned long long)json_integer_value(k);
}

/* Member key of obj as a decoded string; *len gets its length (it may hold NULs). */
static const char *jstr(json_t *obj, const char *key, long *len)
{
	json_t *k = jget(obj, key);

	ck_assert_msg(k, "no member \"%s\" in %s", key, out);
	ck_assert_msg(json_is_string(k), "\"%s\" is not a string in %s", key, out);
	if (len)
		*len = (long)json_string_length(k);
	return json_string_value(k);
}

/*
 * Checks that out is one JSON object on one line with "schema_version":1,
 * as gpuqctl(1) promises, and parses it into jd.
 */
static void json_ok(void)
{
	size_t len = strlen(out);
	json_error_t err;

	if (jd)
		json_decref(jd);
	jd = json_loads(out, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
	ck_assert_msg(jd, "invalid JSON (%s at %d): %s", err.text, err.position, out);
	ck_assert_msg(json_is_object(jd), "not an object: %s", out);
	ck_assert_msg(len > 0 && strchr(out, '\n') == out + len - 1,
		      "not one line ending in a newline: %s", out);
	ck_assert_uint_eq(juint(jd, "schema_version"), 1);
}

/*
 * For a "key   value" line of human output: copies the value of the first
 * line whose first word is key into buf. Returns buf, or NULL if none.
 */
static const char *field(const char *text, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);
	const char *l, *e;

	for (l = text; *l; l = *e ? e + 1 : e) {
		const char *s = l;

		e = strchr(l, '\n');
		if (!e)
			e = l + strlen(l);
		while (*s == ' ')
			s++;
		if (strncmp(s, key, klen) || s[klen] != ' ')
			continue;
		for (s += klen; *s == ' '; s++)
			;
		snprintf(buf, len, "%.*s", (int)(e - s), s);
		return buf;
	}
	return NULL;
}

/* Does no byte of s lie below 0x20 or at 0x7f, newlines apart? */
static int printable(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\n') || *s == 0x7f)
			return 0;
	return 1;
}

START_TEST(status_human)
{
	gpuq_t *q = connect_ok("ctl-probe");
	char want[128], buf[512];
	int ndev = gpuq_devices(q, NULL, 0, 0);

	ck_assert_int_ge(ndev, 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status"), 0);
	snprintf(want, sizeof(want), "gpuqd %s (protocol %u), pid %d, up ", PACKAGE_VERSION,
		 GPUQ_PROTO_VERSION, (int)d.pid);
	ck_assert_msg(!strncmp(out, want, strlen(want)), "first line is not '%s...': %s", want,
		      out);
	ck_assert_ptr_nonnull(field(out, "socket", buf, sizeof(buf)));
	ck_assert_str_eq(buf, d.sock);
	ck_assert_ptr_nonnull(field(out, "config", buf, sizeof(buf)));
	ck_assert_str_eq(buf, d.conf);
	ck_assert_ptr_nonnull(field(out, "backend", buf, sizeof(buf)));
	snprintf(want, sizeof(want), "%s (", harness_backend());
	ck_assert_msg(!strncmp(buf, want, strlen(want)), "backend line: %s", buf);
	ck_assert_ptr_nonnull(field(out, "devices", buf, sizeof(buf)));
	ck_assert_int_eq(atoi(buf), ndev);
	/* The probe and gpuqctl's own session. */
	ck_assert_ptr_nonnull(field(out, "sessions", buf, sizeof(buf)));
	ck_assert_str_eq(buf, "2");
	gpuq_close(q);
}
END_TEST

START_TEST(status_json)
{
	gpuq_t *q = connect_ok("ctl-probe");
	int ndev = gpuq_devices(q, NULL, 0, 0);

	ck_assert_int_ge(ndev, 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "status"), 0);
	json_ok();
	ck_assert_uint_eq(juint(jd, "pid"), (unsigned long long)d.pid);
	ck_assert_str_eq(jstr(jd, "socket", NULL), d.sock);
	ck_assert_str_eq(jstr(jd, "config", NULL), d.conf);
	ck_assert_str_eq(jstr(jd, "backend", NULL), harness_backend());
	ck_assert_str_eq(jstr(jd, "server_version", NULL), PACKAGE_VERSION);
	ck_assert_uint_eq(juint(jd, "proto_version"), GPUQ_PROTO_VERSION);
	ck_assert_uint_eq(juint(jd, "sessions"), 2);
	ck_assert_uint_eq(juint(jd, "devices"), (unsigned)ndev);
	ck_assert_uint_eq(juint(jd, "buffers"), 0);
	ck_assert_uint_eq(juint(jd, "reloads"), 0);
	gpuq_close(q);
}
END_TEST

START_TEST(devices_human)
{
	struct gpuq_device_info dev;
	gpuq_t *q = connect_ok("ctl-probe");
	const char *l, *e;
	int found = 0;

	ck_assert_int_ge(gpuq_devices(q, &dev, sizeof(dev), 1), 1);
	ck_assert_str_ne(dev.name, "");
	ck_assert_int_eq(RUN_CTL("devices", "-s", d.sock), 0);
	ck_assert_msg(!strncmp(out, "DEV ", 4) && strstr(out, "NAME"), "no header: %s", out);
	for (l = out; *l; l = *e ? e + 1 : e) {
		size_t nlen = strlen(dev.name) < 32 ? strlen(dev.name) : 32;
		const char *s;

		e = strchr(l, '\n');
		if (!e)
			e = l + strlen(l);
		if (strncmp(l, "0 ", 2))
			continue;
		for (s = l + 1; *s == ' '; s++)
			;
		ck_assert_msg(!strncmp(s, dev.name, nlen), "device 0 row does not name '%s': %.*s",
			      dev.name, (int)(e - l), l);
		found = 1;
	}
	ck_assert_msg(found, "no row for device 0: %s", out);
	gpuq_close(q);
}
END_TEST

START_TEST(devices_json)
{
	struct gpuq_device_info dev;
	gpuq_t *q = connect_ok("ctl-probe");
	json_t *arr, *d0;
	int ndev;

	ndev = gpuq_devices(q, &dev, sizeof(dev), 1);
	ck_assert_int_ge(ndev, 1);
	ck_assert_int_eq(RUN_CTL("devices", "--json", "--socket", d.sock), 0);
	json_ok();
	arr = jget(jd, "devices");
	ck_assert_int_eq(jcount(arr), ndev);
	d0 = json_array_get(arr, 0);
	ck_assert_uint_eq(juint(d0, "index"), 0);
	ck_assert_str_ne(jstr(d0, "name", NULL), "");
	ck_assert_str_eq(jstr(d0, "name", NULL), dev.name);
	ck_assert_str_eq(jstr(d0, "backend", NULL), harness_backend());
	ck_assert_uint_eq(juint(d0, "total_mem"), dev.total_mem);
	ck_assert_uint_le(juint(d0, "free_mem"), dev.total_mem);
	gpuq_close(q);
}
END_TEST

START_TEST(clients_human)
{
	gpuq_t *q = connect_ok("ctl-probe");
	const char *l, *e;
	int probe = 0, self = 0;

	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "clients"), 0);
	ck_assert_msg(!strncmp(out, "SESSION ", 8) && strstr(out, " PID "), "no header: %s", out);
	for (l = out; *l; l = *e ? e + 1 : e) {
		unsigned long long sid;
		unsigned pid, uid, gid;
		char name[64];

		e = strchr(l, '\n');
		if (!e)
			e = l + strlen(l);
		if (sscanf(l, "%llu %u %u %u %63s", &sid, &pid, &uid, &gid, name) != 5)
			continue;
		if (!strcmp(name, "gpuqctl"))
			self++;
		if (strcmp(name, "ctl-probe"))
			continue;
		probe++;
		ck_assert_uint_eq(pid, (unsigned)getpid());
		ck_assert_uint_eq(uid, (unsigned)getuid());
		ck_assert_uint_eq(sid, gpuq_session_id(q));
	}
	ck_assert_msg(probe == 1, "%d rows for ctl-probe: %s", probe, out);
	ck_assert_msg(self == 1, "%d rows for gpuqctl's own session: %s", self, out);
	gpuq_close(q);
}
END_TEST

START_TEST(clients_json)
{
	gpuq_t *q = connect_ok("ctl-probe");
	json_t *arr, *k;
	size_t i;
	int probe = 0;

	ck_assert_int_eq(RUN_CTL("-j", "clients", "--socket", d.sock), 0);
	json_ok();
	arr = jget(jd, "clients");
	ck_assert_int_eq(jcount(arr), 2);
	json_array_foreach(arr, i, k)
	{
		ck_assert(json_is_object(k));
		if (strcmp(jstr(k, "name", NULL), "ctl-probe"))
			continue;
		probe++;
		ck_assert_uint_eq(juint(k, "pid"), (unsigned long long)getpid());
		ck_assert_uint_eq(juint(k, "uid"), (unsigned long long)getuid());
		ck_assert_uint_eq(juint(k, "gid"), (unsigned long long)getgid());
		ck_assert_uint_eq(juint(k, "session_id"), gpuq_session_id(q));
		ck_assert_uint_eq(juint(k, "buffers"), 0);
	}
	ck_assert_msg(probe == 1, "%d entries for ctl-probe: %s", probe, out);
	gpuq_close(q);
}
END_TEST

START_TEST(clients_odd_name)
{
	static const char odd[] = "we\"ird\\\x01";
	gpuq_t *q = connect_ok(odd);
	json_t *arr, *k;
	size_t i;
	int found = 0;

	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "clients", "--json"), 0);
	json_ok();
	arr = jget(jd, "clients");
	jcount(arr);
	json_array_foreach(arr, i, k)
	{
		const char *name;
		long len;

		if (juint(k, "pid") != (unsigned long long)getpid())
			continue;
		found = 1;
		/* The control character may be escaped or replaced, but the rest survives. */
		name = jstr(k, "name", &len);
		ck_assert_int_eq(len, 8);
		ck_assert_msg(!strncmp(name, odd, 7), "name came back as '%s'", name);
	}
	ck_assert_msg(found, "the odd-named session is missing: %s", out);
	/* The table a terminal shows carries no control characters. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "clients"), 0);
	ck_assert_ptr_nonnull(strstr(out, "we\"ird\\"));
	ck_assert_msg(printable(out), "control character in the table: %s", out);
	gpuq_close(q);
}
END_TEST

START_TEST(version_human_and_json)
{
	char want[128];

	ck_assert_str_eq(gpuq_version(), PACKAGE_VERSION);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "version"), 0);
	snprintf(want, sizeof(want), "gpuqctl %s\ngpuqd %s (protocol %u)\n", gpuq_version(),
		 PACKAGE_VERSION, GPUQ_PROTO_VERSION);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "version", "--json"), 0);
	json_ok();
	ck_assert_str_eq(jstr(jd, "gpuqctl", NULL), gpuq_version());
	ck_assert_str_eq(jstr(jd, "gpuqd", NULL), PACKAGE_VERSION);
	ck_assert_uint_eq(juint(jd, "proto_version"), GPUQ_PROTO_VERSION);
}
END_TEST

/* Asserts that out is `status --json` of the harness's daemon. */
static void is_our_daemon(void)
{
	json_ok();
	ck_assert_uint_eq(juint(jd, "pid"), (unsigned long long)d.pid);
	ck_assert_str_eq(jstr(jd, "socket", NULL), d.sock);
}

START_TEST(socket_choice)
{
	char opt[400];

	/* The option wins over the environment, which points nowhere here. */
	setenv(GPUQ_SOCKET_ENV, "/nonexistent/gpuqd.sock", 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "status"), 0);
	is_our_daemon();
	ck_assert_int_eq(RUN_CTL("-s", d.sock, "--json", "status"), 0);
	is_our_daemon();
	snprintf(opt, sizeof(opt), "--socket=%s", d.sock);
	ck_assert_int_eq(RUN_CTL(opt, "--json", "status"), 0);
	is_our_daemon();
	ck_assert_int_eq(RUN_CTL("--json", "status"), 3);
	ck_assert_str_eq(out, "");
	/* Without the option, $GPUQ_SOCKET names the daemon. */
	setenv(GPUQ_SOCKET_ENV, d.sock, 1);
	ck_assert_int_eq(RUN_CTL("--json", "status"), 0);
	is_our_daemon();
	unsetenv(GPUQ_SOCKET_ENV);
}
END_TEST

START_TEST(usage_errors)
{
	/* Each would succeed against the daemon if gpuqctl ignored the mistake. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "frobnicate"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "statusx"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--bogus", "status"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "-x", "status"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status", "extra"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status", "devices"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("status", "--socket"), 2);
	ck_assert_str_eq(out, "");
	/* The same command line without the mistake works. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status"), 0);
}
END_TEST

START_TEST(help)
{
	ck_assert_int_eq(RUN_CTL("--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage"));
	ck_assert_ptr_nonnull(strstr(out, "status"));
	ck_assert_ptr_nonnull(strstr(out, "devices"));
	ck_assert_ptr_nonnull(strstr(out, "clients"));
	ck_assert_ptr_nonnull(strstr(out, "version"));
	ck_assert_ptr_nonnull(strstr(out, "--json"));
	ck_assert_int_eq(RUN_CTL("-h"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage"));
}
END_TEST

START_TEST(daemon_not_running)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[400];
	int fd;

	snprintf(path, sizeof(path), "%s/absent.sock", d.dir);
	ck_assert_int_eq(RUN_CTL("--socket", path, "status"), 3);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", "/nonexistent/gpuqd.sock", "status"), 3);
	ck_assert_str_eq(out, "");
	snprintf(path, sizeof(path), "%s/sub.sock", d.conf);
	ck_assert_int_eq(RUN_CTL("--socket", path, "status"), 3);
	/* A socket file left behind, with nobody listening: connect is refused. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", d.dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(RUN_CTL("--socket", sa.sun_path, "--json", "devices"), 3);
	ck_assert_str_eq(out, "");
	/* The real socket, for contrast. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "devices"), 0);
}
END_TEST

/* Runs gpuqctl as nobody (uid and gid 65534); its stderr lands in err. Returns the exit status. */
static int run_ctl_as_nobody(const char *const *args, char *err, size_t errlen)
{
	const char *argv[16];
	int pipefd[2], st, argc = 0, i;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	argv[argc++] = harness_gpuqctl();
	for (i = 0; args[i] && argc < 15; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);

		dup2(nul, 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(126);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	while (got + 1 < errlen && (n = read(pipefd[0], err + got, errlen - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(permission_denied)
{
	static const char *const args[] = { "--socket-mode", "0600", NULL };
	const char *const status[] = { "--socket", d.sock, "status", NULL };
	const char *const clients[] = { "--socket", d.sock, "--json", "clients", NULL };
	char err[1024];
	struct stat st;

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	/* The socket's owner is served. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status"), 0);
	if (getuid() != 0) {
		printf("permission_denied: not root, the run as another user is skipped\n");
	} else {
		/* Only the socket's mode may stand in nobody's way, not the test directory's. */
		ck_assert_int_eq(chmod(d.dir, 0755), 0);
		ck_assert_int_eq(run_ctl_as_nobody(status, err, sizeof(err)), 4);
		ck_assert_msg(strstr(err, strerror(EACCES)), "stderr does not say why: %s", err);
		ck_assert_int_eq(run_ctl_as_nobody(clients, err, sizeof(err)), 4);
		ck_assert(harness_alive(&d));
		ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "status"), 0);
		is_our_daemon();
	}
	stop_checked();
}
END_TEST

/* `gpuqctl channels`: a table with the channel's row, and the same in --json. */
START_TEST(channels_human_and_json)
{
	gpuq_t *q = connect_ok("ctl-chan");
	gpuq_chan_t *ch;
	json_t *arr, *k;

	ck_assert_int_eq(
		gpuq_chan_create(q, "ctl.results", 64, 32, GPUQ_CHAN_GPU_TO_CPU | 0640, &ch), 0);
	ck_assert_int_eq(gpuq_chan_send(ch, "x", 1, 0), 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "channels"), 0);
	ck_assert_msg(!strncmp(out, "NAME ", 5), "no header: %s", out);
	ck_assert_msg(strstr(out, "ctl.results") && strstr(out, "0640") &&
			      strstr(out, "gpu-to-cpu"),
		      "no row for the channel: %s", out);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "channels"), 0);
	json_ok();
	arr = jget(jd, "channels");
	ck_assert_int_eq(jcount(arr), 1);
	k = json_array_get(arr, 0);
	ck_assert_str_eq(jstr(k, "name", NULL), "ctl.results");
	ck_assert_str_eq(jstr(k, "mode", NULL), "0640");
	ck_assert_str_eq(jstr(k, "direction", NULL), "gpu-to-cpu");
	ck_assert_uint_eq(juint(k, "slot_size"), 64);
	ck_assert_uint_eq(juint(k, "nslots"), 32);
	ck_assert_uint_eq(juint(k, "users"), 1);
	ck_assert_uint_eq(juint(k, "tail") - juint(k, "head"), 1);
	ck_assert_uint_eq(juint(k, "uid"), (unsigned long long)getuid());
	gpuq_chan_close(ch);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "channels"), 0);
	json_ok();
	ck_assert_int_eq(jcount(jget(jd, "channels")), 0);
	gpuq_close(q);
}
END_TEST

static Suite *gpuqctl_suite(void)
{
	Suite *s = suite_create("gpuqctl");
	TCase *tc;

	tc = tcase_create("json");
	suite_add_tcase(s, tc);

	tc = tcase_create("commands");
	tcase_add_checked_fixture(tc, start_default, stop_checked);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, status_human);
	tcase_add_test(tc, status_json);
	tcase_add_test(tc, devices_human);
	tcase_add_test(tc, devices_json);
	tcase_add_test(tc, clients_human);
	tcase_add_test(tc, clients_json);
	tcase_add_test(tc, clients_odd_name);
	tcase_add_test(tc, channels_human_and_json);
	tcase_add_test(tc, version_human_and_json);
	tcase_add_test(tc, socket_choice);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, help);
	tcase_add_test(tc, daemon_not_running);
	suite_add_tcase(s, tc);

	tc = tcase_create("permissions");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, permission_denied);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(gpuqctl_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
