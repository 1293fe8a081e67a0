/* sharing.h: how gpuqd shares its GPUs with clients' own kernels (MPS or exclusive). */
#ifndef GPUQ_SHARING_H
#define GPUQ_SHARING_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

enum sharing_mode {
	SHARING_AUTO = 0, /* mps when the MPS control daemon is available and works */
	SHARING_MPS,
	SHARING_EXCLUSIVE,
};

#define SHARING_MAX_FOREIGN 32
/* Where CUDA programs look for MPS when CUDA_MPS_PIPE_DIRECTORY is unset. */
#define SHARING_CUDA_DEFAULT_PIPE_DIR "/tmp/nvidia-mps"

/*
 * The sharing state. Owned by main.c (init/fini). In mps mode gpuqd starts
 * an MPS control daemon with its own pipe directory (or joins one already
 * running there), and becomes an MPS client itself, so its copies are not
 * time-sliced against clients that compute. An MPS server serves one uid at
 * a time and holds the first CUDA call of any other uid's client until it
 * exits, so only clients of server_uid are pointed at it; clients of other
 * uids keep their own contexts (time-sliced). A watcher thread reports
 * processes that hold contexts on the GPUs outside MPS.
 */
struct sharing {
	enum sharing_mode mode; /* resolved: MPS or EXCLUSIVE */
	char pipe_dir[256];     /* mps: CUDA_MPS_PIPE_DIRECTORY */
	uid_t server_uid;       /* mps: the uid the MPS server runs as (gpuqd's) */
	char reason[256];       /* why this mode */
	int started_daemon;     /* we started the control daemon: quit it at fini */
	pthread_t watcher;
	int watching;
	int stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char foreign[SHARING_MAX_FOREIGN][64]; /* "pid 123 (python3)" */
	unsigned nforeign;
};

int sharing_mode_parse(const char *s, enum sharing_mode *m);
const char *sharing_mode_name(enum sharing_mode m);

/*
 * Resolves the mode before any CUDA call in this process. want_gpu is 0
 * when the host backend was asked for (then: exclusive, nothing started).
 * pipe_dir may be "" (default: "mps" beside the socket). Returns 0, or
 * -errno when mps was asked for and cannot work.
 */
int sharing_init(struct sharing *sh, enum sharing_mode want, int want_gpu, const char *pipe_dir,
		 const char *socket_path);
/* Starts watching for foreign contexts (after the cuda backend is up). */
void sharing_watch(struct sharing *sh);
void sharing_fini(struct sharing *sh);
/* Copies the current foreign-context list; returns its length. */
unsigned sharing_foreign(struct sharing *sh, char (*out)[64], unsigned max);

#endif
