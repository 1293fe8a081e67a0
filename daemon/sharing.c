/* sharing.c: MPS control daemon start/join, and a watcher for contexts outside MPS. */
#include "build-config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "sharing.h"

int sharing_mode_parse(const char *s, enum sharing_mode *m)
{
	if (!strcmp(s, "auto"))
		*m = SHARING_AUTO;
	else if (!strcmp(s, "mps"))
		*m = SHARING_MPS;
	else if (!strcmp(s, "exclusive"))
		*m = SHARING_EXCLUSIVE;
	else
		return -EINVAL;
	return 0;
}

const char *sharing_mode_name(enum sharing_mode m)
{
	switch (m) {
	case SHARING_MPS: return "mps";
	case SHARING_EXCLUSIVE: return "exclusive";
	default: return "auto";
	}
}

/* Finds nvidia-cuda-mps-control on $PATH or in the usual places. */
static int find_control(char *out, size_t len)
{
	static const char *const extra[] = { "/usr/bin", "/usr/local/cuda/bin",
					     "/usr/local/nvidia/bin", NULL };
	const char *path = getenv("PATH");
	char buf[4096], *save, *dir;
	int i;

	snprintf(buf, sizeof(buf), "%s", path ? path : "");
	for (dir = strtok_r(buf, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/nvidia-cuda-mps-control", dir);
		if (access(out, X_OK) == 0)
			return 0;
	}
	for (i = 0; extra[i]; i++) {
		snprintf(out, len, "%s/nvidia-cuda-mps-control", extra[i]);
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

/*
 * Runs the control program with CUDA_MPS_PIPE_DIRECTORY set, feeding it
 * input on stdin (NULL: none, with -d to start the daemon). Returns its
 * exit status or -errno.
 */
static int run_control(const char *prog, const struct sharing *sh, const char *input)
{
	char logdir[300];
	int pfd[2] = { -1, -1 }, st;
	pid_t pid;

	snprintf(logdir, sizeof(logdir), "%s/log", sh->pipe_dir);
	if (input && pipe(pfd) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);

		if (input) {
			dup2(pfd[0], 0);
			close(pfd[0]);
			close(pfd[1]);
		}
		/* Its answers ("Cannot find MPS control daemon process") are for us, not the log. */
		if (nul >= 0) {
			dup2(nul, 1);
			dup2(nul, 2);
		}
		setenv("CUDA_MPS_PIPE_DIRECTORY", sh->pipe_dir, 1);
		setenv("CUDA_MPS_LOG_DIRECTORY", logdir, 1);
		if (input)
			execl(prog, prog, (char *)NULL);
		else
			execl(prog, prog, "-d", (char *)NULL);
		_exit(127);
	}
	if (input) {
		close(pfd[0]);
		if (write(pfd[1], input, strlen(input)) < 0)
			log_warn("talking to %s: %s", prog, strerror(errno));
		close(pfd[1]);
	}
	/*
	 * Bounded: "quit" waits for MPS clients still attached, and gpuqd must
	 * not hang its own shutdown on them.
	 */
	for (int i = 0; i < 500; i++) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -EIO;
		if (w < 0)
			return -errno;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -ETIMEDOUT;
}

/*
 * Can a process with this environment create a CUDA context? Asked in a
 * child, and bounded: an MPS server that serves another uid holds every
 * new client of this uid in its first CUDA call, for as long as that
 * server lives, and gpuqd must not start by hanging there.
 */
#define PROBE_TIMEOUT_MS 20000

static int probe_context(void)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0)
		_exit(backend_probe_cuda() == 0 ? 0 : 1);
	for (int ms = 0; ms < PROBE_TIMEOUT_MS; ms += 10) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ENODEV;
		if (w < 0)
			return -errno;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -ETIMEDOUT;
}

static void mkdirs(const char *dir)
{
	char tmp[300], *p;

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(tmp, 0755);
		*p = '/';
	}
	mkdir(tmp, 0755);
}

int sharing_init(struct sharing *sh, enum sharing_mode want, int want_gpu, const char *pipe_dir,
		 const char *socket_path)
{
	char prog[PATH_MAX], logdir[300];
	int r;

	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	pthread_cond_init(&sh->cond, NULL);
	sh->mode = SHARING_EXCLUSIVE;
	if (!want_gpu) {
		snprintf(sh->reason, sizeof(sh->reason), "host backend: no GPU to share");
		return 0;
	}
	if (want == SHARING_EXCLUSIVE) {
		snprintf(sh->reason, sizeof(sh->reason), "exclusive requested");
		return 0;
	}
	if (want == SHARING_AUTO && probe_context() != 0) {
		snprintf(sh->reason, sizeof(sh->reason), "no usable GPU");
		return 0;
	}
	if (pipe_dir && *pipe_dir) {
		snprintf(sh->pipe_dir, sizeof(sh->pipe_dir), "%s", pipe_dir);
	} else {
		const char *slash = strrchr(socket_path, '/');
		int n = slash ? (int)(slash - socket_path) : 1;

		snprintf(sh->pipe_dir, sizeof(sh->pipe_dir), "%.*s/mps", n,
			 slash ? socket_path : ".");
	}
	/*
	 * CUDA's default pipe directory is where every CUDA program on the host
	 * looks for MPS. An MPS server there that serves gpuqd's uid holds every
	 * other user's first CUDA call until it exits, so auto never uses it.
	 */
	if (want == SHARING_AUTO && !strcmp(sh->pipe_dir, SHARING_CUDA_DEFAULT_PIPE_DIR)) {
		snprintf(sh->reason, sizeof(sh->reason),
			 "the MPS pipe directory is CUDA's default %s: other users' CUDA programs "
			 "would block in it",
			 SHARING_CUDA_DEFAULT_PIPE_DIR);
		goto unavailable;
	}
	if (want == SHARING_MPS && !strcmp(sh->pipe_dir, SHARING_CUDA_DEFAULT_PIPE_DIR))
		log_warn(
			"sharing mode mps in CUDA's default pipe directory %s: the CUDA programs of "
			"users other than uid %u block in their first CUDA call while gpuqd runs",
			SHARING_CUDA_DEFAULT_PIPE_DIR, (unsigned)geteuid());
	if (find_control(prog, sizeof(prog))) {
		snprintf(sh->reason, sizeof(sh->reason), "nvidia-cuda-mps-control not found");
		goto unavailable;
	}
	snprintf(logdir, sizeof(logdir), "%s/log", sh->pipe_dir);
	mkdirs(logdir);
	/* Join a control daemon already serving this pipe directory, else start one. */
	if (run_control(prog, sh, "get_server_list\n") != 0) {
		r = run_control(prog, sh, NULL);
		if (r != 0) {
			snprintf(sh->reason, sizeof(sh->reason), "%.180s -d failed (%d)", prog, r);
			goto unavailable;
		}
		sh->started_daemon = 1;
		log_info("started the MPS control daemon (pipe directory %s)", sh->pipe_dir);
	} else {
		log_info("joining the MPS control daemon at %s", sh->pipe_dir);
	}
	setenv("CUDA_MPS_PIPE_DIRECTORY", sh->pipe_dir, 1);
	setenv("CUDA_MPS_LOG_DIRECTORY", logdir, 1);
	r = probe_context();
	if (r) {
		unsetenv("CUDA_MPS_PIPE_DIRECTORY");
		unsetenv("CUDA_MPS_LOG_DIRECTORY");
		if (sh->started_daemon)
			run_control(prog, sh, "quit\n");
		sh->started_daemon = 0;
		if (r == -ETIMEDOUT)
			snprintf(sh->reason, sizeof(sh->reason),
				 "a CUDA context through MPS did not start in %d s (a server of "
				 "another uid at %.120s?)",
				 PROBE_TIMEOUT_MS / 1000, sh->pipe_dir);
		else
			snprintf(sh->reason, sizeof(sh->reason),
				 "no CUDA context could be created through MPS (see %.160s)",
				 logdir);
		goto unavailable;
	}
	sh->mode = SHARING_MPS;
	sh->server_uid = geteuid();
	snprintf(sh->reason, sizeof(sh->reason),
		 "%s MPS control daemon at %.160s, for clients of uid %u",
		 sh->started_daemon ? "own" : "joined", sh->pipe_dir, (unsigned)sh->server_uid);
	return 0;

unavailable:
	if (want == SHARING_MPS) {
		log_err("sharing mode mps: %s", sh->reason);
		return -ENOTSUP;
	}
	log_warn("MPS unavailable (%s): sharing mode exclusive; copies will wait for time slices "
		 "while other processes compute on the GPU",
		 sh->reason);
	sh->pipe_dir[0] = '\0';
	return 0;
}

/*
 * NVML, loaded at run time so gpuqd has no link-time dependency on it. The
 * declarations follow NVML's documented ABI for the _v3 process queries.
 */
typedef struct nvml_device *nvml_device_t;
struct nvml_process {
	unsigned int pid;
	unsigned long long used_gpu_memory;
	unsigned int gpu_instance_id;
	unsigned int compute_instance_id;
};
struct nvml {
	void *lib;
	int (*init)(void);
	int (*shutdown)(void);
	int (*count)(unsigned int *);
	int (*handle)(unsigned int, nvml_device_t *);
	int (*compute)(nvml_device_t, unsigned int *, struct nvml_process *);
	int (*mps)(nvml_device_t, unsigned int *, struct nvml_process *);
};

static int nvml_open(struct nvml *n)
{
	memset(n, 0, sizeof(*n));
	n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!n->lib)
		return -ENOENT;
	*(void **)&n->init = dlsym(n->lib, "nvmlInit_v2");
	*(void **)&n->shutdown = dlsym(n->lib, "nvmlShutdown");
	*(void **)&n->count = dlsym(n->lib, "nvmlDeviceGetCount_v2");
	*(void **)&n->handle = dlsym(n->lib, "nvmlDeviceGetHandleByIndex_v2");
	*(void **)&n->compute = dlsym(n->lib, "nvmlDeviceGetComputeRunningProcesses_v3");
	*(void **)&n->mps = dlsym(n->lib, "nvmlDeviceGetMPSComputeRunningProcesses_v3");
	if (!n->init || !n->shutdown || !n->count || !n->handle || !n->compute || n->init() != 0) {
		dlclose(n->lib);
		n->lib = NULL;
		return -ENOTSUP;
	}
	return 0;
}

static void proc_name(unsigned pid, char *out, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "r");
	if (!f || !fgets(out, (int)len, f))
		snprintf(out, len, "?");
	else
		out[strcspn(out, "\n")] = '\0';
	if (f)
		fclose(f);
}

/* Collects the processes with a context on any GPU that is neither gpuqd nor MPS. */
static unsigned scan(struct nvml *n, char (*out)[64], unsigned max)
{
	struct nvml_process procs[256], mps[256];
	unsigned ndev = 0, d, i, j, nf = 0;

	if (n->count(&ndev))
		return 0;
	for (d = 0; d < ndev; d++) {
		unsigned np = 256, nm = 256;
		nvml_device_t h;

		if (n->handle(d, &h) || n->compute(h, &np, procs))
			continue;
		if (!n->mps || n->mps(h, &nm, mps))
			nm = 0;
		for (i = 0; i < np && i < 256 && nf < max; i++) {
			char name[32];
			int skip = procs[i].pid == (unsigned)getpid();

			for (j = 0; j < nm && j < 256 && !skip; j++)
				skip = mps[j].pid == procs[i].pid;
			proc_name(procs[i].pid, name, sizeof(name));
			if (skip || !strncmp(name, "nvidia-cuda-mps", 15))
				continue;
			snprintf(out[nf++], 64, "pid %u (%s) on device %u", procs[i].pid, name, d);
		}
	}
	return nf;
}

static void *watch(void *arg)
{
	struct sharing *sh = arg;
	char now[SHARING_MAX_FOREIGN][64];
	struct nvml n;
	unsigned k, i, j;

	if (nvml_open(&n)) {
		log_info("NVML unavailable: not watching for contexts outside MPS");
		return NULL;
	}
	pthread_mutex_lock(&sh->lock);
	while (!sh->stop) {
		struct timespec ts;

		pthread_mutex_unlock(&sh->lock);
		k = scan(&n, now, SHARING_MAX_FOREIGN);
		pthread_mutex_lock(&sh->lock);
		for (i = 0; i < k; i++) {
			for (j = 0; j < sh->nforeign; j++)
				if (!strcmp(now[i], sh->foreign[j]))
					break;
			if (j == sh->nforeign)
				log_warn(
					"%s holds a CUDA context outside %s: gpuqd's copies will wait "
					"for time slices while it computes",
					now[i], sh->mode == SHARING_MPS ? "MPS" : "gpuqd");
		}
		memcpy(sh->foreign, now, sizeof(now));
		sh->nforeign = k;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		pthread_cond_timedwait(&sh->cond, &sh->lock, &ts);
	}
	pthread_mutex_unlock(&sh->lock);
	n.shutdown();
	dlclose(n.lib);
	return NULL;
}

void sharing_watch(struct sharing *sh)
{
	if (pthread_create(&sh->watcher, NULL, watch, sh) == 0)
		sh->watching = 1;
}

unsigned sharing_foreign(struct sharing *sh, char (*out)[64], unsigned max)
{
	unsigned n;

	pthread_mutex_lock(&sh->lock);
	n = sh->nforeign < max ? sh->nforeign : max;
	memcpy(out, sh->foreign, n * sizeof(*out));
	pthread_mutex_unlock(&sh->lock);
	return n;
}

void sharing_fini(struct sharing *sh)
{
	char prog[PATH_MAX];

	if (sh->watching) {
		pthread_mutex_lock(&sh->lock);
		sh->stop = 1;
		pthread_cond_broadcast(&sh->cond);
		pthread_mutex_unlock(&sh->lock);
		pthread_join(sh->watcher, NULL);
	}
	if (sh->started_daemon && find_control(prog, sizeof(prog)) == 0) {
		/*
		 * The control daemon quits once its last client is gone, and this
		 * process is one until it exits: ask from a detached child, so the
		 * quit completes after us instead of blocking our shutdown.
		 */
		pid_t pid = fork();

		if (pid == 0) {
			setsid();
			if (fork() == 0)
				_exit(run_control(prog, sh, "quit\n") == 0 ? 0 : 1);
			_exit(0);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
		log_info("asked the MPS control daemon to quit once gpuqd's context is gone");
	}
	pthread_cond_destroy(&sh->cond);
	pthread_mutex_destroy(&sh->lock);
}
