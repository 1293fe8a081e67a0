/* spawn.c: gpuq-bench's child processes: internal children, gpuqd (started, probed, stopped), cleanup and fatal errors. */
#include "build-config.h"

#include "gpuq-bench.h"

char self_exe[PATH_MAX];
char **saved_argv;
int saved_argc;
pid_t bench_pid;
char tmpdir[64];
char sock_path[PATH_MAX];
static char daemon_log[PATH_MAX];
static char conf_path[PATH_MAX];
char gpuqd_path[PATH_MAX];
pid_t daemon_pid, internal_pid;
static int daemon_started; /* its log is worth keeping when something fails */
pid_t worker_pids[MAX_CLIENTS];
int late_failure;
struct gpuq_status dstatus = { .struct_size = sizeof(dstatus) };
struct gpuq_device_info ddev;
int have_ddev;

void daemon_log_tail(void)
{
	char *lines[40] = { 0 }, buf[1024];
	int n = 0, i;
	FILE *f;

	if (!daemon_log[0] || !(f = fopen(daemon_log, "r")))
		return;
	while (fgets(buf, sizeof(buf), f)) {
		free(lines[n % 40]);
		lines[n % 40] = strdup(buf);
		n++;
	}
	fclose(f);
	fprintf(stderr, "---- last lines of gpuqd's log (%s) ----\n", daemon_log);
	for (i = n > 40 ? n - 40 : 0; i < n; i++) {
		fputs(lines[i % 40] ? lines[i % 40] : "", stderr);
		free(lines[i % 40]);
		lines[i % 40] = NULL;
	}
	fprintf(stderr, "---- end of gpuqd's log ----\n");
}

/* Sends sig, then waits up to ms for pid; SIGKILL after that. Returns the wait status or -1. */
int stop_child(pid_t pid, int sig, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000ull;
	int st;

	if (pid <= 0)
		return -1;
	kill(pid, sig);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0)
			return -1;
		if (now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(2000);
	}
}

static void remove_tmpdir(void)
{
	if (!tmpdir[0])
		return;
	unlink(conf_path);
	unlink(daemon_log);
	unlink(sock_path);
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

/* Ends every child this program started: workers, internal children, busy load, gpuqd. */
void cleanup(int keep_dir)
{
	int i;

	for (i = 0; i < MAX_CLIENTS; i++) {
		if (worker_pids[i] > 0) {
			kill(worker_pids[i], SIGKILL);
			waitpid(worker_pids[i], NULL, 0);
			worker_pids[i] = 0;
		}
	}
	if (internal_pid > 0)
		stop_child(internal_pid, SIGKILL, 5000);
	internal_pid = 0;
	if (busy_pid > 0)
		stop_child(busy_pid, SIGTERM, 5000);
	busy_pid = 0;
	if (daemon_pid > 0)
		stop_child(daemon_pid, SIGTERM, 20000);
	daemon_pid = 0;
	if (!keep_dir)
		remove_tmpdir();
}

void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	fputs("gpuq-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (daemon_pid > 0)
		daemon_log_tail(); /* else whoever saw it exit printed it */
	cleanup(daemon_started);
	if (tmpdir[0])
		fprintf(stderr, "gpuq-bench: kept %s for gpuqd's log\n", tmpdir);
	exit(1);
}

void on_interrupt(int sig)
{
	int i;

	/* Only async-signal-safe calls: the children also die with us (PDEATHSIG). */
	for (i = 0; i < MAX_CLIENTS; i++)
		if (worker_pids[i] > 0)
			kill(worker_pids[i], SIGKILL);
	if (internal_pid > 0)
		kill(internal_pid, SIGKILL);
	if (busy_pid > 0)
		kill(busy_pid, SIGTERM);
	if (daemon_pid > 0) {
		/* gpuqd removes its socket as it exits; a second signal ends us at once (SA_RESETHAND). */
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
	}
	if (tmpdir[0]) {
		unlink(conf_path);
		unlink(daemon_log);
		unlink(sock_path);
		rmdir(tmpdir);
	}
	_exit(128 + sig);
}

/* In a freshly forked child: default signals, and die with the parent. */
void child_init(int deathsig)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, deathsig);
	if (getppid() != bench_pid)
		_exit(1);
}

/* Starts this program again as an internal child (fresh process: its own CUDA context). */
pid_t spawn_internal(const char *mode, int *rfd)
{
	char **argv = calloc((size_t)saved_argc + 8, sizeof(*argv));
	char fdarg[32];
	int p[2], n = 0, i;
	pid_t pid;

	if (!argv || pipe2(p, O_CLOEXEC))
		die("spawning the %s process: %s", mode, strerror(errno));
	snprintf(fdarg, sizeof(fdarg), "--internal-fd=%d", p[1]);
	argv[n++] = self_exe;
	argv[n++] = (char *)(strcmp(mode, "busy") == 0    ? "--internal=busy" :
			     strcmp(mode, "latency") == 0 ? "--internal=latency" :
							    "--internal=baselines");
	argv[n++] = fdarg;
	if (sock_path[0]) {
		argv[n++] = (char *)"--internal-socket";
		argv[n++] = sock_path;
	}
	for (i = 1; i < saved_argc; i++)
		argv[n++] = saved_argv[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		child_init(SIGKILL);
		if (fcntl(p[1], F_SETFD, 0) < 0)
			_exit(127);
		execv(self_exe, argv);
		fprintf(stderr, "gpuq-bench: exec %s: %s\n", self_exe, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	free(argv);
	*rfd = p[0];
	return pid;
}

void wait_internal(pid_t pid, const char *what)
{
	int st;

	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		internal_pid = 0;
		die("the %s process failed (%s %d); its message is above", what,
		    WIFSIGNALED(st) ? "signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	internal_pid = 0;
}

/* ---- gpuqd ---- */

static void gpuqd_resolve(void)
{
	const char *env = getenv("GPUQD");
	char dir[PATH_MAX], *slash;
	size_t l;

	if (O.gpuqd) {
		snprintf(gpuqd_path, sizeof(gpuqd_path), "%s", O.gpuqd);
	} else if (env && *env) {
		snprintf(gpuqd_path, sizeof(gpuqd_path), "%s", env);
	} else {
		snprintf(dir, sizeof(dir), "%s", self_exe);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		/* A libtool-wrapped build runs the real binary from .libs/. */
		l = strlen(dir);
		if (l >= 6 && !strcmp(dir + l - 6, "/.libs"))
			dir[l - 6] = '\0';
		snprintf(gpuqd_path, sizeof(gpuqd_path), "%s/../daemon/gpuqd", dir);
	}
	if (access(gpuqd_path, X_OK))
		die("no gpuqd at %s (%s): give --gpuqd PATH, set $GPUQD, or --socket PATH to use a "
		    "running one",
		    gpuqd_path, strerror(errno));
}

/* Connects once, checks the backend and the device, keeps what `gpuqctl status` would show. */
static void gpuqd_probe(gpuq_t *q)
{
	struct gpuq_device_info devs[16];
	int r, n;

	r = gpuq_status(q, &dstatus);
	if (r)
		die("gpuq_status: %s (%s)", gpuq_errmsg(q), strerror(-r));
	if (!O.smoke && strcmp(gpuq_backend(q), "cuda"))
		die("gpuqd runs the %s backend (%s): no GPU figures from it (--smoke runs the bench "
		    "on the host backend)",
		    gpuq_backend(q), dstatus.backend_reason);
	n = gpuq_devices(q, devs, sizeof(*devs), 16);
	if (n < 0)
		die("gpuq_devices: %s (%s)", gpuq_errmsg(q), strerror(-n));
	if (O.dev >= n)
		die("gpuqd has %d device(s); there is no device %d", n, O.dev);
	if (O.dev < 16) {
		ddev = devs[O.dev];
		have_ddev = 1;
	}
}

/*
 * Puts gpuqd's MPS environment (gpuq_mps_env) into this process's, keeping
 * what the user set, so that a CUDA context started after this, here or
 * in a program this process starts, joins gpuqd's MPS server.
 */
void mps_env_apply(gpuq_t *q)
{
	const char *names[GPUQ_MPS_ENV_MAX], *values[GPUQ_MPS_ENV_MAX];
	int n = gpuq_mps_env(q, names, values, GPUQ_MPS_ENV_MAX);

	for (int i = 0; i < n && i < GPUQ_MPS_ENV_MAX; i++)
		setenv(names[i], values[i], 0);
}

void gpuqd_wait_ready(uint64_t timeout_ns)
{
	uint64_t deadline = now_ns() + timeout_ns;
	gpuq_t *q;
	int r, st;

	for (;;) {
		if (daemon_pid > 0 && waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			daemon_log_tail();
			die("gpuqd exited (%s %d) before it accepted a connection",
			    WIFSIGNALED(st) ? "signal" : "status",
			    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		}
		r = gpuq_connect_opts(
			sock_path,
			&(struct gpuq_options){ .struct_size = sizeof(struct gpuq_options),
						.client_name = "gpuq-bench" },
			&q);
		if (r == 0)
			break;
		if ((r != -ENOENT && r != -ECONNREFUSED) || daemon_pid <= 0)
			die("connecting to gpuqd at %s: %s", sock_path,
			    *gpuq_errmsg(NULL) ? gpuq_errmsg(NULL) : strerror(-r));
		if (now_ns() > deadline)
			die("gpuqd did not accept a connection on %s within %.0f s", sock_path,
			    (double)timeout_ns / NS);
		usleep(20000);
	}
	gpuqd_probe(q);
	/* The CUDA programs this one starts (baselines, busy load) inherit it. */
	mps_env_apply(q);
	gpuq_close(q);
}

void gpuqd_start(void)
{
	const char *argv[MAX_GPUQD_ARGS + 16];
	int argc = 0, i, fd;
	FILE *f;

	gpuqd_resolve();
	snprintf(sock_path, sizeof(sock_path), "%s/gpuqd.sock", tmpdir);
	snprintf(daemon_log, sizeof(daemon_log), "%s/gpuqd.log", tmpdir);
	snprintf(conf_path, sizeof(conf_path), "%s/gpuqd.conf", tmpdir);
	/* An empty configuration of our own: a host's /etc/gpuq/gpuqd.conf must not change the run. */
	f = fopen(conf_path, "w");
	if (!f)
		die("creating %s: %s", conf_path, strerror(errno));
	fputs("# gpuq-bench: defaults and flags only\n", f);
	fclose(f);
	argv[argc++] = gpuqd_path;
	argv[argc++] = "--socket";
	argv[argc++] = sock_path;
	argv[argc++] = "--backend";
	argv[argc++] = O.smoke ? "host" : "cuda";
	argv[argc++] = "--config";
	argv[argc++] = conf_path;
	for (i = 0; i < O.ngpuqd_args; i++)
		argv[argc++] = O.gpuqd_args[i];
	argv[argc] = NULL;
	note("starting %s on %s", gpuqd_path, sock_path);
	fflush(NULL);
	daemon_pid = fork();
	if (daemon_pid < 0)
		die("fork: %s", strerror(errno));
	daemon_started = 1;
	if (daemon_pid == 0) {
		child_init(SIGTERM);
		fd = open(daemon_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		execv(gpuqd_path, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", gpuqd_path, strerror(errno));
		_exit(127);
	}
	/* The cuda backend initialises its devices first (and MPS when asked): allow time. */
	gpuqd_wait_ready(120 * 1000000000ull);
}

void gpuqd_stop(void)
{
	int st;

	if (daemon_pid <= 0)
		return;
	st = stop_child(daemon_pid, SIGTERM, 20000);
	daemon_pid = 0;
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "gpuq-bench: gpuqd did not stop cleanly on SIGTERM (%s %d)\n",
			st == -1        ? "killed after 20 s" :
			WIFSIGNALED(st) ? "signal" :
					  "status",
			st == -1        ? 0 :
			WIFSIGNALED(st) ? WTERMSIG(st) :
					  WEXITSTATUS(st));
		daemon_log_tail();
		late_failure = 1;
	}
}
