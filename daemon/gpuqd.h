/* gpuqd.h: the daemon's context: what every control-plane module shares, built by main. */
#ifndef GPUQ_GPUQD_H
#define GPUQ_GPUQD_H

#include <stdatomic.h>
#include <stdint.h>

struct account_table;
struct backend;
struct chan_registry;
struct config;
struct doorbell;
struct engine;
struct sharing;

/*
 * The daemon's context. main.c builds it (every module it points at is
 * main's: init/create there, fini/destroy in reverse order) and hands it to
 * the server, which gives it to every connection; request handlers find
 * the daemon's state here, never in the server. Control thread, but for
 * errors (the worker's replies count too).
 */
struct gpuqd {
	struct config *cfg; /* may change on reload (fields rewritten in place) */
	const char *config_path;
	struct backend *be;
	struct engine **engines; /* one per device */
	unsigned nengines;
	struct doorbell *doorbell; /* reads session sockets */
	struct chan_registry *chans;
	struct account_table *accounts; /* per-uid counts: they outlive the engines */
	struct sharing *sharing;
	/* Counters for `gpuqctl status`. */
	uint64_t started_ms;
	uint64_t next_session_id;
	uint64_t requests;
	_Atomic uint64_t errors;
};

#endif
