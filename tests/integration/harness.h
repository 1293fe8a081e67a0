/* harness.h: start a real gpuqd on a private socket and talk to it, for integration tests. */
#ifndef GPUQ_TEST_HARNESS_H
#define GPUQ_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

/* A gpuqd started by the harness. Owned by the test; harness_stop frees its files. */
struct daemon_proc {
	pid_t pid;
	char dir[256];    /* private directory: socket, config, log, notify socket */
	char sock[320];
	char conf[320];
	char log[320];
	char notify[320];
	int notify_fd;
	char status[256]; /* last STATUS= seen from sd_notify */
};

/* The backend under test: $GPUQ_TEST_BACKEND, else "host". */
const char *harness_backend(void);
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
/* Does the daemon's log contain s? */
int harness_log_contains(struct daemon_proc *d, const char *s);
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
