/* gpuq-bench.c: gpuq's throughput and latency beside in-process CUDA baselines, in one run on one machine: options and main. */
#include "build-config.h"

#include "gpuq-bench.h"

struct opts O = { .warm = -1, .dur = -1, .busy_ms = 10, .mem_budget = 16 * GiB, .internal_fd = -1 };

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gpuq-bench [OPTION]...\n"
		"Measures gpuq (through gpuqd) beside in-process CUDA baselines, in one run.\n\n"
		"  --quick              4KiB and 64MiB, 1 and 8 clients, short cells (under a minute)\n"
		"  --busy               also measure beside a process that keeps every SM busy\n"
		"  --busy-ms MS         length of each busy kernel (default 10)\n"
		"  --sizes LIST         transfer sizes (default 256,4K,64K,1M,64M,256M)\n"
		"  --clients LIST       client process counts (default 1,8,64)\n"
		"  --duration S         measured seconds per cell (default 0.8; --quick 0.3)\n"
		"  --warmup S           warm-up seconds per cell (default 0.2; --quick 0.1)\n"
		"  --window N           requests in flight per client (default 16MiB/size within\n"
		"                       4..1024, at most 512MiB: 2 for 256MiB)\n"
		"  --mem-budget BYTES   arena (and device) memory of all clients of a cell (default 16G)\n"
		"  --device N           the GPU: CUDA ordinal and gpuqd device index (default 0)\n"
		"  --gpuqd PATH         the gpuqd to start (default $GPUQD, else ../daemon/gpuqd\n"
		"                       beside this program)\n"
		"  --gpuqd-arg ARG      pass ARG to that gpuqd (repeat), e.g. --gpuqd-arg=--sharing=mps\n"
		"  --socket PATH        use the gpuqd already listening on PATH; start none\n"
		"  --json               print one JSON object instead of the table\n"
		"  --no-gpuq            in-process CUDA baselines only (with --busy: and the latency\n"
		"                       under load); starts no gpuqd\n"
		"  --smoke              run the gpuq part on gpuqd's host backend: no CUDA, no GPU\n"
		"                       figures; checks the bench and the data path on any machine\n"
		"  -q, --quiet          no progress lines on stderr\n"
		"  -h, --help           print this help and exit\n\n"
		"Needs a GPU (except --smoke). Exits 1 with a message when anything fails.\n");
}

enum {
	OPT_SIZES = 256,
	OPT_CLIENTS,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_WINDOW,
	OPT_MEM_BUDGET,
	OPT_DEVICE,
	OPT_GPUQD,
	OPT_GPUQD_ARG,
	OPT_SOCKET,
	OPT_JSON,
	OPT_SMOKE,
	OPT_BUSY,
	OPT_BUSY_MS,
	OPT_QUICK,
	OPT_NO_GPUQ,
	OPT_INTERNAL,
	OPT_INTERNAL_FD,
	OPT_INTERNAL_SOCKET,
};

static void bad_arg(const char *opt, const char *val)
{
	fprintf(stderr, "gpuq-bench: bad value for %s: '%s'\n", opt, val);
	usage(stderr);
	exit(2);
}

static double parse_secs(const char *opt, const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 3600)
		bad_arg(opt, s);
	return v;
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		bad_arg(opt, s);
	return v;
}

static void parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, OPT_QUICK },
		{ "busy", no_argument, NULL, OPT_BUSY },
		{ "busy-ms", required_argument, NULL, OPT_BUSY_MS },
		{ "sizes", required_argument, NULL, OPT_SIZES },
		{ "clients", required_argument, NULL, OPT_CLIENTS },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "mem-budget", required_argument, NULL, OPT_MEM_BUDGET },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "gpuqd", required_argument, NULL, OPT_GPUQD },
		{ "gpuqd-arg", required_argument, NULL, OPT_GPUQD_ARG },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "smoke", no_argument, NULL, OPT_SMOKE },
		{ "no-gpuq", no_argument, NULL, OPT_NO_GPUQ },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		/* Hidden: how this program starts itself as an internal child. */
		{ "internal", required_argument, NULL, OPT_INTERNAL },
		{ "internal-fd", required_argument, NULL, OPT_INTERNAL_FD },
		{ "internal-socket", required_argument, NULL, OPT_INTERNAL_SOCKET },
		{ NULL, 0, NULL, 0 },
	};
	char *list, *tok, *save;
	int o, i;

	while ((o = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
		switch (o) {
		case OPT_QUICK: O.quick = 1; break;
		case OPT_BUSY: O.busy = 1; break;
		case OPT_BUSY_MS:
			O.busy_ms = parse_secs("--busy-ms", optarg);
			if (O.busy_ms < 0.01)
				bad_arg("--busy-ms", optarg);
			break;
		case OPT_SIZES:
		case OPT_CLIENTS:
			list = strdup(optarg);
			if (!list)
				exit(1);
			if (o == OPT_SIZES)
				O.nsizes = 0;
			else
				O.nclients = 0;
			for (tok = strtok_r(list, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (o == OPT_SIZES) {
					if (O.nsizes == MAX_LIST ||
					    parse_size(tok, &O.sizes[O.nsizes]) ||
					    O.sizes[O.nsizes] > 4 * GiB)
						bad_arg("--sizes", optarg);
					O.nsizes++;
				} else {
					if (O.nclients == MAX_LIST)
						bad_arg("--clients", optarg);
					O.clients[O.nclients++] =
						(int)parse_long("--clients", tok, 1, MAX_CLIENTS);
				}
			}
			free(list);
			if ((o == OPT_SIZES && !O.nsizes) || (o == OPT_CLIENTS && !O.nclients))
				bad_arg(o == OPT_SIZES ? "--sizes" : "--clients", optarg);
			break;
		case OPT_DURATION:
			O.dur = parse_secs("--duration", optarg);
			if (O.dur < 0.01)
				bad_arg("--duration", optarg);
			break;
		case OPT_WARMUP: O.warm = parse_secs("--warmup", optarg); break;
		case OPT_WINDOW: O.window = (int)parse_long("--window", optarg, 1, 65536); break;
		case OPT_MEM_BUDGET:
			if (parse_size(optarg, &O.mem_budget))
				bad_arg("--mem-budget", optarg);
			break;
		case OPT_DEVICE: O.dev = (int)parse_long("--device", optarg, 0, 255); break;
		case OPT_GPUQD: O.gpuqd = optarg; break;
		case OPT_GPUQD_ARG:
			if (O.ngpuqd_args == MAX_GPUQD_ARGS)
				bad_arg("--gpuqd-arg", optarg);
			O.gpuqd_args[O.ngpuqd_args++] = optarg;
			break;
		case OPT_SOCKET: O.socket = optarg; break;
		case OPT_JSON: O.json = 1; break;
		case OPT_SMOKE: O.smoke = 1; break;
		case OPT_NO_GPUQ: O.no_gpuq = 1; break;
		case 'q': O.quiet = 1; break;
		case 'h': usage(stdout); exit(0);
		case OPT_INTERNAL: O.internal = optarg; break;
		case OPT_INTERNAL_FD:
			O.internal_fd = (int)parse_long("--internal-fd", optarg, 0, 65535);
			break;
		case OPT_INTERNAL_SOCKET: O.internal_socket = optarg; break;
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gpuq-bench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
	if (O.smoke && (O.busy || O.no_gpuq)) {
		fprintf(stderr, "gpuq-bench: --smoke has no GPU: no --busy, no --no-gpuq\n");
		exit(2);
	}
	if (!O.nsizes) {
		static const uint64_t full[] = { 256, 4 * KiB, 64 * KiB, MiB, 64 * MiB, 256 * MiB };
		static const uint64_t quick[] = { 4 * KiB, 64 * MiB }, smoke[] = { 4 * KiB, MiB };
		const uint64_t *l = O.smoke ? smoke : O.quick ? quick : full;

		O.nsizes = O.smoke || O.quick ? 2 : 6;
		for (i = 0; i < O.nsizes; i++)
			O.sizes[i] = l[i];
	}
	if (!O.nclients) {
		O.nclients = O.smoke || O.quick ? 2 : 3;
		O.clients[0] = 1;
		O.clients[1] = O.smoke ? 2 : 8;
		O.clients[2] = 64;
	}
	if (O.dur < 0)
		O.dur = O.smoke ? 0.2 : O.quick ? 0.3 : 0.8;
	if (O.warm < 0)
		O.warm = O.smoke ? 0.05 : O.quick ? 0.1 : 0.2;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_interrupt, .sa_flags = SA_RESETHAND };
	ssize_t l;

	parse_opts(argc, argv);
	if (O.internal) {
		if (O.internal_fd < 0)
			return 2;
		if (!strcmp(O.internal, "busy"))
			internal_busy(O.internal_fd);
		else
			internal_baselines(O.internal_fd, !strcmp(O.internal, "latency"));
		return 0;
	}

	saved_argc = argc;
	saved_argv = argv;
	bench_pid = getpid();
	l = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (l <= 0) {
		fprintf(stderr, "gpuq-bench: readlink /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self_exe[l] = '\0';
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	clients_map();

	/* 1. In-process baselines first: without a GPU this fails before anything starts. */
	if (!O.smoke)
		run_cuda_child(0);

	if (O.no_gpuq) {
		if (O.busy) {
			busy_start();
			run_cuda_child(1);
			busy_finish();
		}
		goto report;
	}

	/* 2. gpuqd: our own on a private socket, or the one named by --socket. */
	if (O.socket) {
		snprintf(sock_path, sizeof(sock_path), "%s", O.socket);
		gpuqd_wait_ready(0);
	} else {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/gpuq-bench.XXXXXX");
		if (!mkdtemp(tmpdir)) {
			tmpdir[0] = '\0';
			die("mkdtemp: %s", strerror(errno));
		}
		gpuqd_start();
	}
	note("gpuqd %s, backend %s", dstatus.server_version, dstatus.backend);

	/* 3. gpuq on an idle GPU. */
	run_matrix(L_IDLE);

	/* 4. The same beside a process that keeps every SM busy. */
	if (O.busy) {
		busy_start();
		run_cuda_child(1);
		run_matrix(L_BUSY);
		busy_finish();
	}

	gpuqd_stop();
report:
	compare_all();
	if (O.json)
		print_json(stdout);
	else
		print_table(stdout);
	fflush(stdout);
	cleanup(late_failure);
	if (late_failure && tmpdir[0])
		fprintf(stderr, "gpuq-bench: kept %s for gpuqd's log\n", tmpdir);
	return late_failure ? 1 : 0;
}
