/* test_mps_env.c: libgpuq leaves the environment alone; gpuq_mps_env gives what gpuqd's Welcome asks for. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "gpuq/gpuq.h"
#include "harness.h"

static struct daemon_proc d;

static void start(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

static void stop(void)
{
	ck_assert_int_eq(harness_stop(&d), 0);
}

/*
 * A proxy between libgpuq and the real gpuqd (host backend, which has no
 * MPS): it passes the Hello on, puts the MPS fields of welcome[i] into the
 * i-th session's Welcome (the fds go along untouched), then relays bytes
 * until either side closes. What gpuqd in mps mode sends, without a GPU.
 */
struct mps_fields {
	const char *pipe_dir;
	unsigned sm_percent;
};

struct proxy {
	int lfd;
	char path[400];
	const struct mps_fields *welcome;
	unsigned sessions;
	pthread_t th;
};

static void relay(int a, int b)
{
	uint8_t buf[65536];

	for (;;) {
		struct pollfd p[2] = { { .fd = a, .events = POLLIN },
				       { .fd = b, .events = POLLIN } };

		if (poll(p, 2, 10000) <= 0)
			return;
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = recv(p[i].fd, buf, sizeof(buf), 0);
			if (n <= 0 || harness_raw_send(i ? a : b, buf, (size_t)n))
				return;
		}
	}
}

static void *proxy_main(void *arg)
{
	struct proxy *p = arg;

	for (unsigned s = 0; s < p->sessions; s++) {
		int c = accept(p->lfd, NULL, NULL), u = harness_raw_connect(&d);
		int fds[FRAME_MAX_FDS];
		unsigned nfds = 0;
		Gpuq__Msg *hello, *w, m;
		Gpuq__Welcome wel;
		uint8_t *buf;
		size_t len;

		if (c < 0 || u < 0)
			break;
		hello = harness_raw_recv(c, 10000);
		if (!hello || harness_raw_send_msg(u, hello))
			break;
		frame_free(hello);
		w = harness_raw_recv_fds(u, 10000, fds, &nfds, FRAME_MAX_FDS);
		if (!w || w->body_case != GPUQ__MSG__BODY_WELCOME)
			break;
		m = *w;
		wel = *w->welcome;
		wel.mps_pipe_dir = (char *)p->welcome[s].pipe_dir;
		wel.mps_client_sm_percent = p->welcome[s].sm_percent;
		m.welcome = &wel;
		if (frame_pack(&m, FRAME_MAX_LIMIT, &buf, &len) ||
		    harness_raw_send_fds(c, buf, len, fds, nfds))
			break;
		free(buf);
		frame_free(w);
		while (nfds)
			close(fds[--nfds]);
		relay(c, u);
		close(u);
		close(c);
	}
	return NULL;
}

static void proxy_start(struct proxy *p, const struct mps_fields *welcome, unsigned sessions)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(p->path, sizeof(p->path), "%s/proxy.sock", d.dir);
	ck_assert_uint_lt(strlen(p->path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, p->path, strlen(p->path) + 1);
	p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(p->lfd, 0);
	ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(p->lfd, 4), 0);
	p->welcome = welcome;
	p->sessions = sessions;
	ck_assert_int_eq(pthread_create(&p->th, NULL, proxy_main, p), 0);
}

static void proxy_stop(struct proxy *p)
{
	ck_assert_int_eq(pthread_join(p->th, NULL), 0);
	close(p->lfd);
	unlink(p->path);
}

/*
 * Connecting to gpuqd in mps mode sets nothing in the environment;
 * gpuq_mps_env names both variables, and gpuq_reconnect takes the new
 * session's values.
 */
START_TEST(env_from_welcome)
{
	static const struct mps_fields welcome[] = { { "/run/gpuq-test/mps", 90 }, { "", 0 } };
	struct gpuq_status st = { .struct_size = sizeof(st) };
	const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
	struct proxy p;
	gpuq_t *q = NULL;

	proxy_start(&p, welcome, 2);
	ck_assert_int_eq(gpuq_connect(p.path, &q), 0);
	ck_assert_ptr_null(getenv("CUDA_MPS_PIPE_DIRECTORY"));
	ck_assert_ptr_null(getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"));

	ck_assert_int_eq(gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX), 2);
	ck_assert_str_eq(names[0], "CUDA_MPS_PIPE_DIRECTORY");
	ck_assert_str_eq(values[0], "/run/gpuq-test/mps");
	ck_assert_str_eq(names[1], "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
	ck_assert_str_eq(values[1], "90");
	/* Fewer slots: the count still says how many there are. */
	names[1] = values[1] = NULL;
	ck_assert_int_eq(gpuq_mps_env(q, names, values, 1), 2);
	ck_assert_str_eq(names[0], "CUDA_MPS_PIPE_DIRECTORY");
	ck_assert_ptr_null(names[1]);
	ck_assert_int_eq(gpuq_mps_env(q, NULL, NULL, 0), 2);
	/* The session works through the proxy. */
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	ck_assert_str_eq(st.backend, "host");

	/* A new session, without MPS: nothing to set any more. */
	ck_assert_int_eq(gpuq_reconnect(q), 0);
	ck_assert_int_eq(gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX), 0);
	ck_assert_ptr_null(getenv("CUDA_MPS_PIPE_DIRECTORY"));
	gpuq_close(q);
	proxy_stop(&p);
}
END_TEST

/* A pipe directory that no environment variable of libgpuq's could hold is a bad Welcome. */
START_TEST(overlong_pipe_dir)
{
	static char dir[5000];
	static struct mps_fields welcome[1];
	struct proxy p;
	gpuq_t *q = (gpuq_t *)1;

	memset(dir, 'a', sizeof(dir) - 1);
	dir[0] = '/';
	welcome[0].pipe_dir = dir;
	proxy_start(&p, welcome, 1);
	ck_assert_int_eq(gpuq_connect(p.path, &q), -EPROTO);
	ck_assert_ptr_null(q);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(NULL), "MPS pipe directory"));
	proxy_stop(&p);
	ck_assert_ptr_null(getenv("CUDA_MPS_PIPE_DIRECTORY"));
}
END_TEST

/* Without MPS (the host backend) there is nothing to set; bad arguments are refused. */
START_TEST(no_mps)
{
	const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
	gpuq_t *q = NULL;

	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	ck_assert_int_eq(gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX), 0);
	ck_assert_int_eq(gpuq_mps_env(NULL, names, values, GPUQ_MPS_ENV_MAX), -EINVAL);
	ck_assert_int_eq(gpuq_mps_env(q, NULL, values, 1), -EINVAL);
	ck_assert_int_eq(gpuq_mps_env(q, names, NULL, 1), -EINVAL);
	gpuq_close(q);
}
END_TEST

static Suite *mps_env_suite(void)
{
	Suite *s = suite_create("mps_env");
	TCase *tc = tcase_create("env");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, env_from_welcome);
	tcase_add_test(tc, overlong_pipe_dir);
	tcase_add_test(tc, no_mps);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* The MPS fields come from the proxy; the daemon behind it runs the host backend. */
	setenv("GPUQ_TEST_BACKEND", "host", 1);
	unsetenv("CUDA_MPS_PIPE_DIRECTORY");
	unsetenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
	return harness_run_suite(mps_env_suite());
}
