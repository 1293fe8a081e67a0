/* test_daemon.c: a real gpuqd driven through libgpuq: sessions, devices, buffers, signals, activation. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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

/* Polls the daemon's status until its buffer count is want (session teardown is async). */
static void wait_buffers(gpuq_t *q, uint64_t want)
{
	struct gpuq_status st = { .struct_size = sizeof(st) };
	int i;

	for (i = 0; i < 500; i++) {
		ck_assert_int_eq(gpuq_status(q, &st), 0);
		if (st.buffers == want)
			return;
		usleep(10000);
	}
	ck_abort_msg("daemon still reports %llu buffers, expected %llu",
		     (unsigned long long)st.buffers, (unsigned long long)want);
}

START_TEST(handshake_and_devices)
{
	struct gpuq_device_info devs[8];
	gpuq_t *q = connect_ok("handshake");
	int n, i;

	ck_assert_uint_gt(gpuq_session_id(q), 0);
	ck_assert_str_eq(gpuq_backend(q), harness_backend());
	n = gpuq_devices(q, devs, sizeof(*devs), 8);
	ck_assert_int_ge(n, 1);
	for (i = 0; i < n && i < 8; i++) {
		ck_assert_uint_eq(devs[i].index, (unsigned)i);
		ck_assert_str_ne(devs[i].name, "");
		ck_assert_str_eq(devs[i].backend, harness_backend());
		ck_assert_uint_gt(devs[i].total_mem, 0);
		ck_assert_uint_le(devs[i].free_mem, devs[i].total_mem);
		if (!strcmp(harness_backend(), "cuda")) {
			ck_assert_uint_ge(devs[i].cc_major, 7);
			ck_assert_uint_gt(devs[i].sm_count, 0);
			ck_assert_str_ne(devs[i].pci_bus_id, "");
		}
	}
	/* A count beyond what the caller has room for is still reported. */
	ck_assert_int_eq(gpuq_devices(q, NULL, 0, 0), n);
	gpuq_close(q);
}
END_TEST

START_TEST(buffer_roundtrip)
{
	static const size_t sizes[] = { 1, 4097, 65536, 5u << 20, (9u << 20) + 3 };
	gpuq_t *q = connect_ok("roundtrip");
	uint64_t seed = harness_seed();
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t size = sizes[i], off = size > 7 ? 7 : 0, len = size - off;
		uint8_t *out = malloc(size), *in = malloc(size), *zero = calloc(1, size);
		uint32_t id;

		ck_assert_ptr_nonnull(out);
		ck_assert_ptr_nonnull(in);
		ck_assert_ptr_nonnull(zero);
		ck_assert_int_eq(gpuq_buf_alloc(q, 0, size, &id), 0);
		/* New buffers are zeroed: nobody reads another session's leftovers. */
		ck_assert_int_eq(gpuq_buf_read(q, id, 0, in, size), (ssize_t)size);
		ck_assert_mem_eq(in, zero, size);
		harness_fill(out, size, seed + i);
		ck_assert_int_eq(gpuq_buf_write(q, id, off, out, len), (ssize_t)len);
		memset(in, 0xa5, size);
		ck_assert_int_eq(gpuq_buf_read(q, id, off, in, len), (ssize_t)len);
		ck_assert_msg(!memcmp(in, out, len), "data differs at size %zu", size);
		ck_assert_int_eq(gpuq_buf_free(q, id), 0);
		free(zero);
		free(in);
		free(out);
	}
	gpuq_close(q);
}
END_TEST

START_TEST(buffer_errors)
{
	gpuq_t *q = connect_ok("errors");
	uint8_t b[64] = { 0 };
	uint32_t id;

	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 0, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "size"));
	ck_assert_int_eq(gpuq_buf_alloc(q, 99, 16, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "no device 99"));
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 1ull << 50, &id), -ENOMEM);
	ck_assert_int_eq(gpuq_buf_free(q, 12345), -ENOENT);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 32, &id), 0);
	ck_assert_int_eq(gpuq_buf_write(q, id, 0, b, 33), -ERANGE);
	ck_assert_int_eq(gpuq_buf_write(q, id, 32, b, 1), -ERANGE);
	ck_assert_int_eq(gpuq_buf_read(q, id, UINT64_MAX - 4, b, 8), -ERANGE);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "outside buffer"));
	ck_assert_int_eq(gpuq_buf_read(q, id + 1, 0, b, 8), -ENOENT);
	ck_assert_int_eq(gpuq_buf_write(q, id, 32, b, 0), 0);
	ck_assert_int_eq(gpuq_buf_free(q, id), 0);
	ck_assert_int_eq(gpuq_buf_free(q, id), -ENOENT);
	/* Errors leave the session usable. */
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 32, &id), 0);
	ck_assert_int_eq(gpuq_buf_write(q, id, 0, b, 32), 32);
	gpuq_close(q);
}
END_TEST

struct err_thread {
	gpuq_t *q;
	int r;
	char msg[256], conn_msg[256];
};

static void *err_thread_main(void *arg)
{
	struct err_thread *t = arg;
	uint32_t id;

	t->r = gpuq_buf_alloc(t->q, 0, 0, &id);
	snprintf(t->msg, sizeof(t->msg), "%s", gpuq_errmsg(t->q));
	snprintf(t->conn_msg, sizeof(t->conn_msg), "%s", gpuq_errmsg(NULL));
	return NULL;
}

/*
 * Threads sharing a handle each read their own last error, and a failed
 * connect leaves its message where gpuq_errmsg(NULL) finds it, in the
 * thread that connected only.
 */
START_TEST(errmsg_per_thread)
{
	gpuq_t *q = connect_ok("errmsg"), *other[3], *none = NULL;
	struct err_thread t = { 0 };
	pthread_t th;
	uint32_t id;

	ck_assert_int_eq(gpuq_connect("/nonexistent/gpuqd.sock", &none), -ENOENT);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(NULL), "/nonexistent/gpuqd.sock"));
	ck_assert_int_eq(gpuq_buf_alloc(q, 99, 16, &id), -EINVAL);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "no device 99"));
	t.q = q;
	ck_assert_int_eq(pthread_create(&th, NULL, err_thread_main, &t), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(t.r, -EINVAL);
	ck_assert_msg(strstr(t.msg, "size") && !strstr(t.msg, "99"), "thread's message: '%s'",
		      t.msg);
	ck_assert_str_eq(t.conn_msg, "");
	/* The other thread's error did not overwrite this thread's. */
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "no device 99"));
	/* Errors on three other handles keep it too. */
	for (int i = 0; i < 3; i++) {
		other[i] = connect_ok("errmsg-other");
		ck_assert_int_eq(gpuq_buf_alloc(other[i], 0, 0, &id), -EINVAL);
	}
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "no device 99"));
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(other[0]), "size"));
	/* A call that talks to gpuqd starts with a clean message. */
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 16, &id), 0);
	ck_assert_str_eq(gpuq_errmsg(q), "");
	/* A successful connect clears the thread's connect message. */
	ck_assert_str_eq(gpuq_errmsg(NULL), "");
	for (int i = 0; i < 3; i++)
		gpuq_close(other[i]);
	gpuq_close(q);
}
END_TEST

START_TEST(sessions_are_isolated)
{
	gpuq_t *a = connect_ok("a"), *b = connect_ok("b");
	uint8_t secret[4096], got[4096], zero[4096] = { 0 };
	uint32_t ida, idb;

	harness_fill(secret, sizeof(secret), harness_seed());
	ck_assert_int_eq(gpuq_buf_alloc(a, 0, sizeof(secret), &ida), 0);
	ck_assert_int_eq(gpuq_buf_write(a, ida, 0, secret, sizeof(secret)),
			 (ssize_t)sizeof(secret));
	/* B cannot name A's buffer... */
	ck_assert_int_eq(gpuq_buf_read(b, ida, 0, got, sizeof(got)), -ENOENT);
	ck_assert_int_eq(gpuq_buf_free(b, ida), -ENOENT);
	/* ...and its own buffer with the same id is a different, zeroed one. */
	ck_assert_int_eq(gpuq_buf_alloc(b, 0, sizeof(got), &idb), 0);
	ck_assert_uint_eq(idb, ida);
	ck_assert_int_eq(gpuq_buf_read(b, idb, 0, got, sizeof(got)), (ssize_t)sizeof(got));
	ck_assert_mem_eq(got, zero, sizeof(got));
	ck_assert_int_eq(gpuq_buf_read(a, ida, 0, got, sizeof(got)), (ssize_t)sizeof(got));
	ck_assert_mem_eq(got, secret, sizeof(got));
	gpuq_close(b);
	gpuq_close(a);
}
END_TEST

START_TEST(session_end_frees_buffers)
{
	gpuq_t *a = connect_ok("owner"), *obs = connect_ok("observer");
	struct gpuq_device_info before, during, after;
	uint32_t id;
	int i;

	ck_assert_int_eq(gpuq_devices(obs, &before, sizeof(before), 1),
			 gpuq_devices(obs, NULL, 0, 0));
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(gpuq_buf_alloc(a, 0, 8u << 20, &id), 0);
	wait_buffers(obs, 3);
	ck_assert_int_ge(gpuq_devices(obs, &during, sizeof(during), 1), 1);
	ck_assert_uint_le(during.free_mem + (24u << 20), before.free_mem + (4u << 20));
	gpuq_close(a);
	wait_buffers(obs, 0);
	ck_assert_int_ge(gpuq_devices(obs, &after, sizeof(after), 1), 1);
	ck_assert_uint_ge(after.free_mem + (4u << 20), before.free_mem);
	ck_assert(harness_log_contains(&d, "freeing 3 buffer(s)"));
	gpuq_close(obs);
}
END_TEST

START_TEST(clients_show_peer_credentials)
{
	struct gpuq_client_info *cl;
	gpuq_t *q = connect_ok("creds-probe");
	int n, i, found = 0;

	n = gpuq_clients(q, &cl, sizeof(*cl));
	ck_assert_int_ge(n, 1);
	for (i = 0; i < n; i++) {
		if (strcmp(cl[i].name, "creds-probe"))
			continue;
		found = 1;
		ck_assert_uint_eq(cl[i].pid, (unsigned)getpid());
		ck_assert_uint_eq(cl[i].uid, (unsigned)getuid());
		ck_assert_uint_eq(cl[i].gid, (unsigned)getgid());
		ck_assert_uint_eq(cl[i].session_id, gpuq_session_id(q));
	}
	free(cl);
	ck_assert_msg(found, "own session not listed");
	ck_assert(harness_log_contains(&d, "name 'creds-probe'"));
	gpuq_close(q);
}
END_TEST

START_TEST(socket_from_environment)
{
	gpuq_t *q = NULL;

	setenv(GPUQ_SOCKET_ENV, d.sock, 1);
	ck_assert_int_eq(gpuq_connect(NULL, &q), 0);
	gpuq_close(q);
	setenv(GPUQ_SOCKET_ENV, "/nonexistent/gpuqd.sock", 1);
	ck_assert_int_eq(gpuq_connect(NULL, &q), -ENOENT);
	ck_assert_ptr_null(q);
	unsetenv(GPUQ_SOCKET_ENV);
}
END_TEST

START_TEST(version_mismatch_is_refused)
{
	int fd = harness_raw_connect(&d);
	Gpuq__Msg *m;

	ck_assert_int_ge(fd, 0);
	m = harness_raw_hello(fd, 999);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_ERROR);
	ck_assert_int_eq(m->error->code, -EPROTONOSUPPORT);
	ck_assert_ptr_nonnull(strstr(m->error->message, "protocol version 999"));
	frame_free(m);
	ck_assert(harness_raw_closed(fd, 2000));
	close(fd);
	/* The right version still works. */
	fd = harness_raw_connect(&d);
	m = harness_raw_hello(fd, GPUQ_PROTO_VERSION);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_WELCOME);
	ck_assert_uint_eq(m->welcome->proto_version, GPUQ_PROTO_VERSION);
	frame_free(m);
	close(fd);
}
END_TEST

START_TEST(notify_status_and_sigterm)
{
	gpuq_t *q = connect_ok("notify");
	struct stat st;

	/* STATUS= follows READY=1 and each session change. */
	ck_assert_int_eq(harness_wait_notify(&d, "STATUS=", 2000), 0);
	ck_assert_ptr_nonnull(strstr(d.status, "session"));
	gpuq_close(q);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert_int_eq(harness_kill_wait(&d, SIGTERM), 0);
	ck_assert_int_ne(stat(d.sock, &st), 0);
}
END_TEST

START_TEST(sigint_exits_zero)
{
	ck_assert_int_eq(harness_kill_wait(&d, SIGINT), 0);
}
END_TEST

START_TEST(sighup_reloads_config)
{
	struct gpuq_status st = { .struct_size = sizeof(st) };
	gpuq_t *q = connect_ok("reload");
	FILE *f;

	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_uint_eq(st.reloads, 0);
	f = fopen(d.conf, "w");
	fputs("log_level = debug\nmax_clients = 77\n", f);
	fclose(f);
	kill(d.pid, SIGHUP);
	ck_assert_int_eq(harness_wait_notify(&d, "READY=1", 5000), 0);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_uint_eq(st.reloads, 1);
	ck_assert(harness_log_contains(&d, "max_clients 77"));
	/* A broken file is refused and the running settings stay. */
	f = fopen(d.conf, "w");
	fputs("max_clients = many\n", f);
	fclose(f);
	kill(d.pid, SIGHUP);
	ck_assert_int_eq(harness_wait_notify(&d, "READY=1", 5000), 0);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_uint_eq(st.reloads, 1);
	ck_assert(harness_log_contains(&d, "gpuqd.conf:1: invalid value 'many' for max_clients"));
	ck_assert(harness_alive(&d));
	gpuq_close(q);
}
END_TEST

START_TEST(session_quota)
{
	static const char *const args[] = { "--max-session-mem", "1M", NULL };
	gpuq_t *q;
	uint32_t id;

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	q = connect_ok("quota");
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 1u << 20, &id), 0);
	ck_assert_int_eq(gpuq_buf_alloc(q, 0, 1, &id), -ENOMEM);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q), "quota"));
	gpuq_close(q);
	stop_checked();
}
END_TEST

START_TEST(max_clients)
{
	static const char *const args[] = { "--max-clients", "2", NULL };
	gpuq_t *a, *b, *c = NULL;
	struct gpuq_options three = { .struct_size = sizeof(three), .client_name = "three" };

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	a = connect_ok("one");
	b = connect_ok("two");
	ck_assert_int_eq(gpuq_connect_opts(d.sock, &three, &c), -EUSERS);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(NULL), "at most 2"));
	gpuq_close(b);
	/* The slot is free once gpuqd has freed the session (on its worker thread). */
	for (int i = 0; i < 100; i++) {
		if (gpuq_connect_opts(d.sock, &three, &c) == 0)
			break;
		c = NULL;
		usleep(20000);
	}
	ck_assert_msg(c != NULL, "no slot after a session ended: %s", gpuq_errmsg(NULL));
	gpuq_close(c);
	gpuq_close(a);
	stop_checked();
}
END_TEST

START_TEST(socket_mode_and_stale_socket)
{
	static const char *const args[] = { "--socket-mode", "0600", NULL };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct daemon_proc second;
	struct stat st;
	gpuq_t *q;
	int fd;

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	/* A second gpuqd must not steal a live daemon's socket. */
	{
		const char *argv[] = { harness_gpuqd(), "--socket", d.sock, "--backend",
				       "host",          "--config", d.conf, NULL };
		pid_t pid = fork();
		int wst;

		if (pid == 0) {
			int nul = open("/dev/null", 1);

			dup2(nul, 2);
			execv(argv[0], (char *const *)argv);
			_exit(127);
		}
		waitpid(pid, &wst, 0);
		ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 1);
	}
	q = connect_ok("still-served");
	gpuq_close(q);
	stop_checked();

	/* A stale socket file left by a dead daemon is replaced. */
	ck_assert_int_eq(harness_start(&second, NULL, NULL), 0);
	ck_assert_int_eq(harness_stop(&second), 0);
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
	stop_checked();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", "/tmp");
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* bound, never listening: connect gets ECONNREFUSED */
	{
		const char *args2[] = { "--socket", sa.sun_path, NULL };

		ck_assert_int_eq(harness_start(&d, NULL, args2), 0);
		strcpy(d.sock, sa.sun_path);
		q = connect_ok("after-stale");
		gpuq_close(q);
		stop_checked();
	}
}
END_TEST

START_TEST(socket_activation)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/gpuq-act.XXXXXX", conf[300], logp[300];
	struct stat st;
	gpuq_t *q;
	pid_t pid;
	int lfd, wst, i, r = -1;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/activated.sock", dir);
	snprintf(conf, sizeof(conf), "%s/gpuqd.conf", dir);
	snprintf(logp, sizeof(logp), "%s/gpuqd.log", dir);
	close(open(conf, O_WRONLY | O_CREAT, 0644));
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 16), 0);
	pid = fork();
	if (pid == 0) {
		char pidstr[32];
		int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		/* What systemd does: the socket on fd 3, LISTEN_PID naming us. */
		dup2(lfd, 3);
		dup2(logfd, 2);
		snprintf(pidstr, sizeof(pidstr), "%d", (int)getpid());
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_PID", pidstr, 1);
		unsetenv("NOTIFY_SOCKET");
		execl(harness_gpuqd(), "gpuqd", "--backend", harness_backend(), "--config", conf,
		      "--socket", "/nonexistent/ignored.sock", (char *)NULL);
		_exit(127);
	}
	close(lfd);
	for (i = 0; i < 300 && r; i++) {
		r = gpuq_connect(sa.sun_path, &q);
		if (r)
			usleep(10000);
	}
	ck_assert_msg(r == 0, "connect through the activated socket: %s", strerror(-r));
	{
		struct gpuq_status gs = { .struct_size = sizeof(gs) };

		/* Status names the socket systemd handed over, not the configured one. */
		ck_assert_int_eq(gpuq_status(q, &gs), 0);
		ck_assert_str_eq(gs.socket_path, sa.sun_path);
	}
	gpuq_close(q);
	kill(pid, SIGTERM);
	waitpid(pid, &wst, 0);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	/* systemd owns an activated socket: gpuqd leaves it in place. */
	ck_assert_int_eq(stat(sa.sun_path, &st), 0);
	unlink(sa.sun_path);
	unlink(conf);
	unlink(logp);
	rmdir(dir);
}
END_TEST

START_TEST(check_config_and_bad_flags)
{
	char out[4096];
	int pipefd[2], wst;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		execl(harness_gpuqd(), "gpuqd", "--config", "/dev/null", "--max-clients", "9",
		      "--check-config", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	n = read(pipefd[0], out, sizeof(out) - 1);
	close(pipefd[0]);
	waitpid(pid, &wst, 0);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	ck_assert_int_gt(n, 0);
	out[n] = '\0';
	ck_assert_ptr_nonnull(strstr(out, "max_clients = 9"));

	pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", 1);

		dup2(nul, 2);
		execl(harness_gpuqd(), "gpuqd", "--config", "/dev/null", "--backend", "tpu",
		      "--check-config", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &wst, 0);
	ck_assert(WIFEXITED(wst) && WEXITSTATUS(wst) != 0 && WEXITSTATUS(wst) != 127);
}
END_TEST

static Suite *daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc;

	tc = tcase_create("session");
	tcase_add_checked_fixture(tc, start_default, stop_checked);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, handshake_and_devices);
	tcase_add_test(tc, buffer_roundtrip);
	tcase_add_test(tc, buffer_errors);
	tcase_add_test(tc, errmsg_per_thread);
	tcase_add_test(tc, sessions_are_isolated);
	tcase_add_test(tc, session_end_frees_buffers);
	tcase_add_test(tc, clients_show_peer_credentials);
	tcase_add_test(tc, socket_from_environment);
	tcase_add_test(tc, version_mismatch_is_refused);
	tcase_add_test(tc, sighup_reloads_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifecycle");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, start_default, NULL);
	tcase_add_test(tc, notify_status_and_sigterm);
	tcase_add_test(tc, sigint_exits_zero);
	suite_add_tcase(s, tc);

	tc = tcase_create("options");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, session_quota);
	tcase_add_test(tc, max_clients);
	tcase_add_test(tc, socket_mode_and_stale_socket);
	tcase_add_test(tc, socket_activation);
	tcase_add_test(tc, check_config_and_bad_flags);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
