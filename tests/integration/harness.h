/* harness.h: start a real gpuqd on a private socket and talk to it, for integration tests. */
#ifndef GPUQ_TEST_HARNESS_H
#define GPUQ_TEST_HARNESS_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"
#include "ring.h"

/* A gpuqd started by the harness. Owned by the test; harness_stop frees its files. */
struct daemon_proc {
	pid_t pid;
	char dir[256]; /* private directory: socket, config, log, notify socket */
	char sock[320];
	char conf[320];
	char log[320];
	char notify[320];
	int notify_fd;
	char status[256]; /* last STATUS= seen from sd_notify */
};

/* The backend under test: $GPUQ_TEST_BACKEND, else "host". */
const char *harness_backend(void);
/* Runs suite (CK_ENV verbosity) and frees it: EXIT_SUCCESS, or EXIT_FAILURE if a case failed. */
int harness_run_suite(Suite *suite);
/*
 * For a case that needs the host backend's own knobs (--host-devices,
 * GPUQD_HOST_HANG) whatever $GPUQ_TEST_BACKEND says: the daemons this test
 * process starts from now on use the host backend. Check runs each case in
 * a child of its own, so the next case is not affected.
 */
void harness_use_host_backend(void);
/* Paths of the programs under test ($GPUQD / $GPUQCTL override the build tree's). */
const char *harness_gpuqd(void);
const char *harness_gpuqctl(void);

/*
 * Starts gpuqd with the test backend on a private socket, with extra
 * arguments (NULL-terminated list, may be empty), and waits for READY=1.
 * config_text, if not NULL, is written to the config file passed with -c.
 * Returns 0 or -errno (the daemon's log is printed on failure).
 */
int harness_start(struct daemon_proc *d, const char *config_text, const char *const *extra);
/* Sends SIGTERM and waits; returns the exit status (or -1 if it died by a signal). */
int harness_stop(struct daemon_proc *d);
/* Sends sig and waits for exit like harness_stop. */
int harness_kill_wait(struct daemon_proc *d, int sig);
/* Waits up to ms for an sd_notify datagram containing what. Returns 0 or -ETIMEDOUT. */
int harness_wait_notify(struct daemon_proc *d, const char *what, int ms);
/*
 * Reads every sd_notify datagram queued so far (keeping the last STATUS=).
 * The queue holds only net.unix.max_dgram_qlen (often 10) datagrams, after
 * which gpuqd's sd_notify blocks: a test that runs for many seconds calls
 * this as it goes.
 */
void harness_drain_notify(struct daemon_proc *d);
/* Does the daemon's log contain s? */
int harness_log_contains(struct daemon_proc *d, const char *s);
/* Waits up to ms for a line of gpuqd's log that contains s; 1 if one came, else 0. */
int harness_wait_log(struct daemon_proc *d, const char *s, int ms);
/* Is the daemon process still running? */
int harness_alive(struct daemon_proc *d);
/* Number of open fds of the daemon process. */
int harness_fd_count(struct daemon_proc *d);
void harness_print_log(struct daemon_proc *d);

/* Raw protocol access, for tests that speak to gpuqd without libgpuq. */
int harness_raw_connect(struct daemon_proc *d);
int harness_raw_send(int fd, const void *buf, size_t len);
int harness_raw_send_msg(int fd, Gpuq__Msg *m);
/* Sends a Hello with the given version and returns the reply (NULL on close/timeout). */
Gpuq__Msg *harness_raw_hello(int fd, uint32_t version);
/* Reads one framed reply within ms; NULL on EOF, timeout or garbage. */
Gpuq__Msg *harness_raw_recv(int fd, int ms);
/* Waits up to ms for the daemon to close fd (EOF, after draining replies). 1 if closed. */
int harness_raw_closed(int fd, int ms);
/* As harness_raw_recv, also collecting fds that travel beside the frame (see frame_recv). */
Gpuq__Msg *harness_raw_recv_fds(int fd, int ms, int *fds, unsigned *nfds, unsigned max);
/* Sends one frame of raw bytes with fds beside it (SCM_RIGHTS). Returns 0 or -errno. */
int harness_raw_send_fds(int fd, const void *buf, size_t len, const int *fds, unsigned nfds);

/*
 * A session opened by hand: the control socket, the Welcome's fds and the
 * session memfd mapped read-write, as a hostile client holds them. The
 * geometry fields are what the header said at Welcome (the client's view;
 * gpuqd must not trust it). Every meaning of the Welcome's fds lives in
 * harness_raw_session_open.
 */
struct raw_session {
	int sock;
	uint32_t proto; /* Welcome's proto_version */
	uint64_t id;    /* Welcome's session_id */
	unsigned ndevices;
	int fds[FRAME_MAX_FDS]; /* as received, in order */
	unsigned nfds;
	int memfd;   /* the session memfd */
	int wake_fd; /* protocol 1: the CQ eventfd; 2: the client's end of the session socket */
	int doorbell[16]; /* protocol 1: per-device engine eventfds; 2: wake_fd for each */
	uint8_t *base;    /* mapping of the memfd, read-write, size bytes */
	size_t size;
	struct shm_hdr *hdr;
	uint32_t sq_entries, cq_entries;
	uint64_t rings_off, ringset_size, arena_off, arena_size;
	uint32_t sq_tail[16]; /* the client's own count of published SQEs per device */
	uint32_t cq_head[16];
	uint64_t seq; /* next control request seq */
};

/*
 * Connects, sends Hello (version, arena bytes and queue depth as given, 0 for
 * defaults), takes the Welcome and its fds and maps the memfd. Returns 0 or
 * -errno; on -EPROTO the reply was not a Welcome.
 */
int harness_raw_session_open(struct daemon_proc *d, struct raw_session *rs, uint32_t version,
			     uint64_t arena, uint32_t depth);
/* Unmaps and closes everything of rs (fds already closed by the test are -1). */
void harness_raw_session_close(struct raw_session *rs);
/* The SQE slot idx (masked by the Welcome-time sq_entries) of device dev. */
struct shm_sqe *harness_raw_sqe(struct raw_session *rs, unsigned dev, uint32_t idx);
/*
 * Writes n SQEs at the client's tail of device dev, publishes sq_tail and
 * rings the doorbell. Returns 0 or -errno of the doorbell.
 */
int harness_raw_submit(struct raw_session *rs, unsigned dev, const struct shm_sqe *q, unsigned n);
/* Rings dev's doorbell (protocol 1: eventfd write; 2: one byte on the session socket). */
int harness_raw_doorbell(struct raw_session *rs, unsigned dev);
/*
 * Waits up to ms for n completions on dev, copies them to out and advances
 * cq_head. Returns how many were reaped (< n on timeout).
 */
unsigned harness_raw_reap(struct raw_session *rs, unsigned dev, struct shm_cqe *out, unsigned n,
			  int ms);
/*
 * Sends one request body on rs->sock and returns its reply (NULL on EOF or
 * timeout); fds beside the reply go to fds/nfds when given.
 */
Gpuq__Msg *harness_raw_call(struct raw_session *rs, Gpuq__Msg *req, int ms, int *fds,
			    unsigned *nfds, unsigned max);
/* BufAlloc on rs; returns the id (>= 0) or the Error's code. */
int harness_raw_buf_alloc(struct raw_session *rs, unsigned dev, uint64_t size);
/*
 * A StatusReq on a new raw connection, answered within ms. 0, or -errno;
 * *out (when out is not NULL) is freed with gpuq__status__free_unpacked(*out, NULL).
 */
int harness_raw_status(struct daemon_proc *d, int ms, Gpuq__Status **out);
/* Resident set of the daemon in KiB and its thread count, from /proc. -errno on failure. */
long harness_rss_kb(struct daemon_proc *d);
int harness_threads(struct daemon_proc *d);

/*
 * Runs gpuqctl with args (NULL-terminated) and captures its stdout into out
 * (NUL-terminated, truncated to outlen). Returns the exit status.
 */
int harness_run_ctl(const char *const *args, char *out, size_t outlen);

/* Fills buf with deterministic pseudo-random bytes from seed. */
void harness_fill(void *buf, size_t len, uint64_t seed);
/* A seed for this run: $GPUQ_TEST_SEED, else from the clock; printed once. */
uint64_t harness_seed(void);

#endif
