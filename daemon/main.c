/* main.c: gpuqd entry point: options, configuration, module init/fini order. */
#include "build-config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "account.h"
#include "backend.h"
#include "config.h"
#include "chan.h"
#include "dispatch.h"
#include "doorbell.h"
#include "engine.h"
#include "gpuqd.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "sharing.h"

/* Settings given as flags; re-applied on top of the file at every reload. */
struct flags {
	const char *key[CFG_NKEYS];
	const char *config_path;
	int config_explicit;
	int check_config;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gpuqd [OPTION]...\n"
		"Serves CPU<->GPU data queues to local clients over a Unix socket.\n\n"
		"  -s, --socket PATH           control socket (default /run/gpuqd/gpuqd.sock)\n"
		"  -b, --backend KIND          host, cuda or auto (default auto)\n"
		"  -c, --config FILE           configuration file (default %s)\n"
		"      --socket-mode MODE      socket permissions, octal (default 0660)\n"
		"      --socket-group GROUP    socket group\n"
		"  -l, --log-level LEVEL       err, warn, info or debug (default info)\n"
		"      --max-frame BYTES       largest control frame (default 4M)\n"
		"      --max-clients N         most concurrent clients (default 1024)\n"
		"      --max-session-mem BYTES device memory per session, 0 = no limit\n"
		"      --handshake-timeout S   seconds a client has to say hello (default 5)\n"
		"      --host-mem BYTES        memory of the host backend's device (default 1G)\n"
		"      --host-devices N        devices the host backend stands in for, 1-16 (default 1)\n"
		"      --arena-default BYTES   session arena when a client names none (default 64M)\n"
		"      --arena-max BYTES       largest session arena a client may ask for (default 1G)\n"
		"      --engine-idle-us US     idle engine polls this long before sleeping (default 200)\n"
		"      --sharing MODE          mps, exclusive or auto: how clients' kernels share the GPU\n"
		"      --mps-pipe-dir DIR      MPS pipe directory (default: mps beside the socket)\n"
		"      --mps-client-sm-percent P  under MPS, clients' share of SMs (default 0: all)\n"
		"      --check-config          validate the configuration, print it, exit\n"
		"  -V, --version               print the version and exit\n"
		"  -h, --help                  print this help and exit\n",
		CONFIG_DEFAULT_PATH);
}

enum {
	OPT_SOCKET_MODE = 256,
	OPT_SOCKET_GROUP,
	OPT_MAX_FRAME,
	OPT_MAX_CLIENTS,
	OPT_MAX_SESSION_MEM,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_HOST_MEM,
	OPT_CHECK_CONFIG,
	OPT_ARENA_DEFAULT,
	OPT_ARENA_MAX,
	OPT_ENGINE_IDLE_US,
	OPT_SHARING,
	OPT_MPS_PIPE_DIR,
	OPT_MPS_CLIENT_SM_PERCENT,
	OPT_HOST_DEVICES
};

static int parse_args(int argc, char **argv, struct flags *fl)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "backend", required_argument, NULL, 'b' },
		{ "config", required_argument, NULL, 'c' },
		{ "socket-mode", required_argument, NULL, OPT_SOCKET_MODE },
		{ "socket-group", required_argument, NULL, OPT_SOCKET_GROUP },
		{ "log-level", required_argument, NULL, 'l' },
		{ "max-frame", required_argument, NULL, OPT_MAX_FRAME },
		{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
		{ "max-session-mem", required_argument, NULL, OPT_MAX_SESSION_MEM },
		{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
		{ "host-mem", required_argument, NULL, OPT_HOST_MEM },
		{ "host-devices", required_argument, NULL, OPT_HOST_DEVICES },
		{ "arena-default", required_argument, NULL, OPT_ARENA_DEFAULT },
		{ "arena-max", required_argument, NULL, OPT_ARENA_MAX },
		{ "engine-idle-us", required_argument, NULL, OPT_ENGINE_IDLE_US },
		{ "sharing", required_argument, NULL, OPT_SHARING },
		{ "mps-pipe-dir", required_argument, NULL, OPT_MPS_PIPE_DIR },
		{ "mps-client-sm-percent", required_argument, NULL, OPT_MPS_CLIENT_SM_PERCENT },
		{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	fl->config_path = CONFIG_DEFAULT_PATH;
	while ((o = getopt_long(argc, argv, "s:b:c:l:Vh", opts, NULL)) != -1) {
		switch (o) {
		case 's': fl->key[CFG_SOCKET] = optarg; break;
		case 'b': fl->key[CFG_BACKEND] = optarg; break;
		case 'c':
			fl->config_path = optarg;
			fl->config_explicit = 1;
			break;
		case 'l': fl->key[CFG_LOG_LEVEL] = optarg; break;
		case OPT_SOCKET_MODE: fl->key[CFG_SOCKET_MODE] = optarg; break;
		case OPT_SOCKET_GROUP: fl->key[CFG_SOCKET_GROUP] = optarg; break;
		case OPT_MAX_FRAME: fl->key[CFG_MAX_FRAME] = optarg; break;
		case OPT_MAX_CLIENTS: fl->key[CFG_MAX_CLIENTS] = optarg; break;
		case OPT_MAX_SESSION_MEM: fl->key[CFG_MAX_SESSION_MEM] = optarg; break;
		case OPT_HANDSHAKE_TIMEOUT: fl->key[CFG_HANDSHAKE_TIMEOUT] = optarg; break;
		case OPT_HOST_MEM: fl->key[CFG_HOST_MEM] = optarg; break;
		case OPT_HOST_DEVICES: fl->key[CFG_HOST_DEVICES] = optarg; break;
		case OPT_ARENA_DEFAULT: fl->key[CFG_ARENA_DEFAULT] = optarg; break;
		case OPT_ARENA_MAX: fl->key[CFG_ARENA_MAX] = optarg; break;
		case OPT_ENGINE_IDLE_US: fl->key[CFG_ENGINE_IDLE_US] = optarg; break;
		case OPT_SHARING: fl->key[CFG_SHARING] = optarg; break;
		case OPT_MPS_PIPE_DIR: fl->key[CFG_MPS_PIPE_DIR] = optarg; break;
		case OPT_MPS_CLIENT_SM_PERCENT: fl->key[CFG_MPS_CLIENT_SM_PERCENT] = optarg; break;
		case OPT_CHECK_CONFIG: fl->check_config = 1; break;
		case 'V':
			printf("gpuqd %s (protocol %d)\n", PACKAGE_VERSION, GPUQ_PROTO_VERSION);
			exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gpuqd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* Builds the effective settings: defaults, then the file, then flags (flags win). */
static int build_config(const struct flags *fl, struct config *cfg)
{
	char err[512];
	int k, r;

	config_defaults(cfg);
	r = config_load(cfg, fl->config_path, NULL, err, sizeof(err));
	if (r == -ENOENT && !fl->config_explicit)
		r = 0; /* no file at the default path: defaults it is */
	if (r) {
		fprintf(stderr, "gpuqd: %s\n", err);
		log_err("configuration: %s", err);
		return r;
	}
	for (k = 0; k < CFG_NKEYS; k++) {
		if (!fl->key[k])
			continue;
		r = config_set(cfg, config_key_name((enum config_key)k), fl->key[k], err,
			       sizeof(err));
		if (r < 0) {
			fprintf(stderr, "gpuqd: option: %s\n", err);
			return r;
		}
	}
	return 0;
}

/*
 * Descriptors the configured maxima can hold at once: per session its
 * connection, the two ends of the session socket and the memfd; one per
 * connection in its handshake; two per open channel for the channels of 16
 * uids at uid_max_channels; and a margin for the daemon's own (engines,
 * doorbell, log, listener). gpuqd.service's LimitNOFILE is this figure for
 * the shipped defaults, rounded up.
 */
static uint64_t fds_needed(const struct config *cfg)
{
	return 64 + (uint64_t)cfg->max_handshakes + 4 * (uint64_t)cfg->max_clients +
	       2 * 16 * (uint64_t)cfg->uid_max_channels;
}

/* Raises the soft fd limit to the hard one and warns when even that is short. */
static void check_fd_limit(const struct config *cfg)
{
	uint64_t need = fds_needed(cfg);
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("raising the descriptor limit: %s", strerror(errno));
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		log_warn("the descriptor limit is %llu, but max_clients %u, max_handshakes %u and "
			 "uid_max_channels %u may need %llu: raise LimitNOFILE (or ulimit -n) or "
			 "lower them; past the limit gpuqd stops accepting for a while",
			 (unsigned long long)rl.rlim_cur, cfg->max_clients, cfg->max_handshakes,
			 cfg->uid_max_channels, (unsigned long long)need);
}

/* What a reload needs: the flags to apply again, and the context to change. */
struct reload_arg {
	const struct flags *fl;
	struct gpuqd *gq;
};

static int reload(void *arg)
{
	const struct reload_arg *ra = arg;
	const struct flags *fl = ra->fl;
	struct gpuqd *gq = ra->gq;
	struct config next;
	int r;

	r = build_config(fl, &next);
	if (r) {
		log_err("reload failed; keeping the running configuration");
		return r;
	}
	/* What the running daemon is built around needs a restart to change. */
	if (strcmp(next.socket, gq->cfg->socket) || next.backend != gq->cfg->backend ||
	    next.host_mem != gq->cfg->host_mem || next.socket_mode != gq->cfg->socket_mode ||
	    next.host_devices != gq->cfg->host_devices ||
	    strcmp(next.socket_group, gq->cfg->socket_group))
		log_warn(
			"socket, backend, host_mem and host_devices changes take effect at restart");
	gq->cfg->log_level = next.log_level;
	gq->cfg->max_frame = next.max_frame;
	gq->cfg->max_clients = next.max_clients;
	gq->cfg->max_session_mem = next.max_session_mem;
	gq->cfg->handshake_timeout = next.handshake_timeout;
	gq->cfg->arena_default = next.arena_default;
	gq->cfg->arena_max = next.arena_max;
	gq->cfg->engine_idle_us = next.engine_idle_us;
	gq->cfg->mps_client_sm_percent = next.mps_client_sm_percent;
	/* New limits apply to what is asked from now on; nothing granted is taken back. */
	gq->cfg->max_handshakes = next.max_handshakes;
	gq->cfg->max_output = next.max_output;
	gq->cfg->frame_timeout = next.frame_timeout;
	gq->cfg->uid_max_sessions = next.uid_max_sessions;
	gq->cfg->uid_max_arena = next.uid_max_arena;
	gq->cfg->uid_max_mem = next.uid_max_mem;
	gq->cfg->uid_max_channels = next.uid_max_channels;
	gq->cfg->uid_max_channel_bytes = next.uid_max_channel_bytes;
	gq->cfg->uid_max_inflight = next.uid_max_inflight;
	{
		unsigned i;

		for (i = 0; i < gq->nengines; i++)
			engine_set_idle_us(gq->engines[i], next.engine_idle_us);
	}
	log_set_level(next.log_level);
	log_info("configuration reloaded (log level %s, max_frame %u, max_clients %u)",
		 log_level_name(next.log_level), next.max_frame, next.max_clients);
	return 0;
}

int main(int argc, char **argv)
{
	struct flags fl = { 0 };
	struct config cfg;
	struct backend be;
	struct engine *engines[BACKEND_MAX_DEVICES] = { NULL };
	struct sharing sharing;
	struct chan_registry chans;
	struct account_table accounts;
	struct server srv;
	struct gpuqd gq = { 0 };
	struct reload_arg ra = { &fl, &gq };
	struct doorbell *doorbell = NULL;
	unsigned dev, nengines = 0;
	int r, code = 1;

	log_init(LOG_INFO);
	if (parse_args(argc, argv, &fl))
		return 2;
	if (build_config(&fl, &cfg))
		return 1;
	if (fl.check_config) {
		config_print(&cfg, stdout);
		return 0;
	}
	log_set_level(cfg.log_level);
	check_fd_limit(&cfg);

	/* Before any CUDA call: in mps mode this process must be an MPS client. */
	r = sharing_init(&sharing, cfg.sharing, cfg.backend != BACKEND_HOST, cfg.mps_pipe_dir,
			 cfg.socket);
	if (r)
		return 1;
	log_info("sharing %s: %s", sharing_mode_name(sharing.mode), sharing.reason);

	r = backend_open_ex(&be, cfg.backend, cfg.host_mem, cfg.host_devices);
	if (r) {
		sharing_fini(&sharing);
		log_err("cannot open the %s backend: %s (%s)", backend_kind_name(cfg.backend),
			strerror(-r), be.reason);
		sd_notifyf(0, "STATUS=backend %s unavailable: %s", backend_kind_name(cfg.backend),
			   be.reason);
		return 1;
	}
	log_info("backend %s: %s", be.ops->name, be.reason);
	if (strcmp(be.ops->name, "host"))
		sharing_watch(&sharing);
	/* How the data path shares the GPUs with clients' kernels is the backend's to decide. */
	r = backend_set_option(&be, BACKEND_OPT_MPS, sharing.mode == SHARING_MPS);
	if (r && r != -ENOTSUP)
		log_warn("backend %s: telling it the sharing mode: %s", be.ops->name, strerror(-r));

	account_table_init(&accounts);
	for (dev = 0; dev < be.ndevices && dev < BACKEND_MAX_DEVICES; dev++) {
		r = engine_create(&engines[dev], &be, dev, cfg.engine_idle_us);
		if (r)
			goto out_engines;
		nengines++;
	}

	r = doorbell_create(&doorbell, engines, nengines);
	if (r) {
		log_err("cannot start the doorbell thread: %s", strerror(-r));
		goto out_engines;
	}
	r = chan_registry_init(&chans, 1ull << 30);
	if (r) {
		log_err("cannot start the channel watcher: %s", strerror(-r));
		goto out_engines;
	}
	gq.cfg = &cfg;
	gq.config_path = fl.config_path;
	gq.be = &be;
	gq.engines = engines;
	gq.nengines = nengines;
	gq.doorbell = doorbell;
	gq.chans = &chans;
	gq.accounts = &accounts;
	gq.sharing = &sharing;
	gq.started_ms = session_now_ms();
	r = server_init(&srv, &gq, dispatch_msg);
	if (r) {
		log_err("cannot start the server: %s", strerror(-r));
		goto out_chans;
	}
	srv.reload = reload;
	srv.reload_arg = &ra;
	code = server_run(&srv);
	server_fini(&srv);
	log_info("stopped");
out_chans:
	chan_registry_fini(&chans);
out_engines:
	/* After the last session: nothing is watched any more. */
	doorbell_destroy(doorbell);
	while (nengines)
		engine_destroy(engines[--nengines]);
	/*
	 * Only now: a session kept because its device hung still points at its
	 * uid's in-flight counter, and its engine ran until engine_destroy.
	 */
	account_table_fini(&accounts);
	backend_close(&be);
	sharing_fini(&sharing);
	return code;
}
