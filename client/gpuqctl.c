/* gpuqctl.c: the operator's command-line tool, built only on the public libgpuq API. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuq/gpuq.h"

#define JSON_SCHEMA_VERSION 1

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2, EXIT_NOT_RUNNING = 3, EXIT_DENIED = 4 };

static int json;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gpuqctl [--socket PATH] [--json] COMMAND\n"
		"Commands:\n"
		"  status    daemon state: version, backend, sessions, buffers, requests\n"
		"  devices   the devices gpuqd serves\n"
		"  clients   connected client sessions\n"
		"  channels  channels you may see, their rings and GPU ends\n"
		"  version   gpuqctl's and gpuqd's versions\n"
		"Options:\n"
		"  -s, --socket PATH  gpuqd's socket (default $%s, else %s)\n"
		"  -j, --json         machine-readable output\n"
		"  -h, --help         this help\n"
		"Exit status: 0 ok, 1 error, 2 usage, 3 daemon not running, 4 permission denied.\n",
		GPUQ_SOCKET_ENV, GPUQ_DEFAULT_SOCKET);
}

/* Prints s as a JSON string literal. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static const char *human_bytes(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double d = (double)v;
	unsigned u = 0;

	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, len, "%.1f %s", d, units[u]);
	return buf;
}

static const char *human_time(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;

	if (s < 60)
		snprintf(buf, len, "%llu.%01llus", (unsigned long long)s,
			 (unsigned long long)(ms % 1000) / 100);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)s / 60,
			 (unsigned long long)s % 60);
	else
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)s / 3600,
			 (unsigned long long)s / 60 % 60);
	return buf;
}

static int fail(gpuq_t *q, const char *what, int r)
{
	const char *msg = gpuq_errmsg(q);

	fprintf(stderr, "gpuqctl: %s: %s%s%s\n", what, strerror(-r), *msg ? ": " : "", msg);
	return r == -EACCES || r == -EPERM ? EXIT_DENIED : EXIT_ERR;
}

static int cmd_status(gpuq_t *q)
{
	struct gpuq_status st = { .struct_size = sizeof(st) };
	char b1[32], b2[32];
	int r = gpuq_status(q, &st);

	if (r)
		return fail(q, "status", r);
	if (json) {
		printf("{\"schema_version\":%d,\"server_version\":", JSON_SCHEMA_VERSION);
		json_str(st.server_version);
		printf(",\"proto_version\":%u,\"backend\":", st.proto_version);
		json_str(st.backend);
		printf(",\"backend_reason\":");
		json_str(st.backend_reason);
		printf(",\"pid\":%u,\"uptime_ms\":%llu,\"sessions\":%u,\"devices\":%u,"
		       "\"buffers\":%llu,\"buffer_bytes\":%llu,\"requests\":%llu,\"errors\":%llu,"
		       "\"reloads\":%llu,\"xfers\":%llu,\"xfer_bytes\":%llu,\"xfer_errors\":%llu,"
		       "\"batches\":%llu,\"foreign_contexts\":%u,\"channels\":%u,\"sharing\":",
		       st.pid, (unsigned long long)st.uptime_ms, st.sessions, st.devices,
		       (unsigned long long)st.buffers, (unsigned long long)st.buffer_bytes,
		       (unsigned long long)st.requests, (unsigned long long)st.errors,
		       (unsigned long long)st.reloads, (unsigned long long)st.xfers,
		       (unsigned long long)st.xfer_bytes, (unsigned long long)st.xfer_errors,
		       (unsigned long long)st.batches, st.foreign_contexts, st.channels);
		json_str(st.sharing);
		printf(",\"mps_pipe_dir\":");
		json_str(st.mps_pipe_dir);
		if (!strcmp(st.sharing, "mps"))
			printf(",\"mps_uid\":%u", st.mps_uid);
		printf(",\"socket\":");
		json_str(st.socket_path);
		printf(",\"config\":");
		json_str(st.config_path);
		printf("}\n");
		return EXIT_OK;
	}
	printf("gpuqd %s (protocol %u), pid %u, up %s\n", st.server_version, st.proto_version,
	       st.pid, human_time(st.uptime_ms, b1, sizeof(b1)));
	printf("  socket    %s\n", st.socket_path);
	printf("  config    %s\n", st.config_path);
	printf("  backend   %s (%s)\n", st.backend, st.backend_reason);
	printf("  devices   %u\n", st.devices);
	printf("  sessions  %u\n", st.sessions);
	printf("  buffers   %llu (%s)\n", (unsigned long long)st.buffers,
	       human_bytes(st.buffer_bytes, b2, sizeof(b2)));
	printf("  requests  %llu (%llu errors)\n", (unsigned long long)st.requests,
	       (unsigned long long)st.errors);
	if (!strcmp(st.sharing, "mps"))
		printf("  sharing   mps (MPS pipe directory %s): clients of uid %u join gpuqd's MPS "
		       "server; clients of other uids keep their own CUDA contexts, time-sliced\n",
		       st.mps_pipe_dir, st.mps_uid);
	else
		printf("  sharing   %s\n", st.sharing);
	printf("  transfers %llu (%s, %llu errors) in %llu batches\n", (unsigned long long)st.xfers,
	       human_bytes(st.xfer_bytes, b2, sizeof(b2)), (unsigned long long)st.xfer_errors,
	       (unsigned long long)st.batches);
	printf("  channels  %u\n", st.channels);
	printf("  reloads   %llu\n", (unsigned long long)st.reloads);
	for (unsigned i = 0; i < st.foreign_contexts && i < 4; i++)
		printf("  warning   %s computes outside %s\n", st.foreign[i],
		       strcmp(st.sharing, "mps") ? "gpuqd" : "MPS");
	return EXIT_OK;
}

static int cmd_devices(gpuq_t *q)
{
	struct gpuq_device_info devs[64];
	char b1[32], b2[32], link[32];
	int i, n = gpuq_devices(q, devs, sizeof(*devs), 64);

	if (n < 0)
		return fail(q, "devices", n);
	if (n > 64)
		n = 64;
	if (json) {
		printf("{\"schema_version\":%d,\"devices\":[", JSON_SCHEMA_VERSION);
		for (i = 0; i < n; i++) {
			printf("%s{\"index\":%u,\"name\":", i ? "," : "", devs[i].index);
			json_str(devs[i].name);
			printf(",\"backend\":");
			json_str(devs[i].backend);
			printf(",\"pci_bus_id\":");
			json_str(devs[i].pci_bus_id);
			printf(",\"total_mem\":%llu,\"free_mem\":%llu,\"pcie_gen\":%u,"
			       "\"pcie_width\":%u,\"compute_capability\":\"%u.%u\",\"sm_count\":%u}",
			       (unsigned long long)devs[i].total_mem,
			       (unsigned long long)devs[i].free_mem, devs[i].pcie_gen,
			       devs[i].pcie_width, devs[i].cc_major, devs[i].cc_minor,
			       devs[i].sm_count);
		}
		printf("]}\n");
		return EXIT_OK;
	}
	printf("%-3s %-32s %-14s %-10s %-10s %-10s %-4s %s\n", "DEV", "NAME", "PCI", "LINK",
	       "MEMORY", "FREE", "CC", "SMS");
	for (i = 0; i < n; i++) {
		if (devs[i].pcie_gen)
			snprintf(link, sizeof(link), "Gen%u x%u", devs[i].pcie_gen,
				 devs[i].pcie_width);
		else
			snprintf(link, sizeof(link), "-");
		printf("%-3u %-32.32s %-14s %-10s %-10s %-10s %u.%u  %u\n", devs[i].index,
		       devs[i].name, devs[i].pci_bus_id[0] ? devs[i].pci_bus_id : "-", link,
		       human_bytes(devs[i].total_mem, b1, sizeof(b1)),
		       human_bytes(devs[i].free_mem, b2, sizeof(b2)), devs[i].cc_major,
		       devs[i].cc_minor, devs[i].sm_count);
	}
	return EXIT_OK;
}

static int cmd_clients(gpuq_t *q)
{
	struct gpuq_client_info *cl;
	char b1[32], b2[32];
	int i, n = gpuq_clients(q, &cl, sizeof(*cl));

	if (n < 0)
		return fail(q, "clients", n);
	if (json) {
		printf("{\"schema_version\":%d,\"clients\":[", JSON_SCHEMA_VERSION);
		for (i = 0; i < n; i++) {
			printf("%s{\"session_id\":%llu,\"pid\":%u,\"uid\":%u,\"gid\":%u,\"name\":",
			       i ? "," : "", (unsigned long long)cl[i].session_id, cl[i].pid,
			       cl[i].uid, cl[i].gid);
			json_str(cl[i].name);
			printf(",\"connected_ms\":%llu,\"buffers\":%llu,\"buffer_bytes\":%llu,"
			       "\"requests\":%llu}",
			       (unsigned long long)cl[i].connected_ms,
			       (unsigned long long)cl[i].buffers,
			       (unsigned long long)cl[i].buffer_bytes,
			       (unsigned long long)cl[i].requests);
		}
		printf("]}\n");
	} else {
		printf("%-8s %-8s %-6s %-6s %-16s %-9s %-8s %-10s %s\n", "SESSION", "PID", "UID",
		       "GID", "NAME", "AGE", "BUFFERS", "BYTES", "REQUESTS");
		for (i = 0; i < n; i++)
			printf("%-8llu %-8u %-6u %-6u %-16.16s %-9s %-8llu %-10s %llu\n",
			       (unsigned long long)cl[i].session_id, cl[i].pid, cl[i].uid,
			       cl[i].gid, cl[i].name[0] ? cl[i].name : "-",
			       human_time(cl[i].connected_ms, b1, sizeof(b1)),
			       (unsigned long long)cl[i].buffers,
			       human_bytes(cl[i].buffer_bytes, b2, sizeof(b2)),
			       (unsigned long long)cl[i].requests);
	}
	free(cl);
	return EXIT_OK;
}

static int cmd_channels(gpuq_t *q)
{
	struct gpuq_channel_info *ch;
	int i, n = gpuq_channels(q, &ch, sizeof(*ch));

	if (n < 0)
		return fail(q, "channels", n);
	if (json) {
		printf("{\"schema_version\":%d,\"channels\":[", JSON_SCHEMA_VERSION);
		for (i = 0; i < n; i++) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(ch[i].name);
			printf(",\"uid\":%u,\"gid\":%u,\"mode\":\"%04o\",\"direction\":\"%s\",\"slot_size\":%u,"
			       "\"nslots\":%u,\"users\":%u,\"head\":%llu,\"tail\":%llu,\"gpu_sender_pid\":%u,"
			       "\"gpu_receiver_pid\":%u,\"receivers_asleep\":%s,\"senders_done\":%u}",
			       ch[i].uid, ch[i].gid, ch[i].mode,
			       ch[i].direction == GPUQ_CHAN_CPU_TO_GPU ? "cpu-to-gpu" :
									 "gpu-to-cpu",
			       ch[i].slot_size, ch[i].nslots, ch[i].users,
			       (unsigned long long)ch[i].head, (unsigned long long)ch[i].tail,
			       ch[i].gpu_sender, ch[i].gpu_receiver,
			       ch[i].receivers_asleep ? "true" : "false", ch[i].senders_done);
		}
		printf("]}\n");
	} else {
		printf("%-24s %-6s %-5s %-10s %6s %7s %5s %9s %s\n", "NAME", "UID", "MODE",
		       "DIRECTION", "SLOT", "SLOTS", "USERS", "QUEUED", "GPU ENDS");
		for (i = 0; i < n; i++) {
			char queued[24], ends[48];

			/* While a GPU keeps the send end, the kernels' count is in device memory. */
			if (ch[i].gpu_sender)
				snprintf(queued, sizeof(queued), "-");
			else
				snprintf(queued, sizeof(queued), "%llu",
					 (unsigned long long)(ch[i].tail - ch[i].head));
			if (ch[i].gpu_sender && ch[i].gpu_receiver)
				snprintf(ends, sizeof(ends), "send (pid %u), receive (pid %u)",
					 ch[i].gpu_sender, ch[i].gpu_receiver);
			else if (ch[i].gpu_sender)
				snprintf(ends, sizeof(ends), "send (pid %u)", ch[i].gpu_sender);
			else if (ch[i].gpu_receiver)
				snprintf(ends, sizeof(ends), "receive (pid %u)",
					 ch[i].gpu_receiver);
			else
				snprintf(ends, sizeof(ends), "-");
			printf("%-24s %-6u %04o  %-10s %6u %7u %5u %9s %s%s\n", ch[i].name,
			       ch[i].uid, ch[i].mode,
			       ch[i].direction == GPUQ_CHAN_CPU_TO_GPU ? "cpu-to-gpu" :
									 "gpu-to-cpu",
			       ch[i].slot_size, ch[i].nslots, ch[i].users, queued, ends,
			       ch[i].receivers_asleep ? " (receivers asleep)" : "");
		}
	}
	free(ch);
	return EXIT_OK;
}

static int cmd_version(gpuq_t *q)
{
	struct gpuq_status st = { .struct_size = sizeof(st) };
	int r = gpuq_status(q, &st);

	if (r)
		return fail(q, "version", r);
	if (json) {
		printf("{\"schema_version\":%d,\"gpuqctl\":", JSON_SCHEMA_VERSION);
		json_str(gpuq_version());
		printf(",\"gpuqd\":");
		json_str(st.server_version);
		printf(",\"proto_version\":%u}\n", st.proto_version);
	} else {
		printf("gpuqctl %s\ngpuqd %s (protocol %u)\n", gpuq_version(), st.server_version,
		       st.proto_version);
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *name;
		int (*fn)(gpuq_t *q);
	} cmds[] = {
		{ "status", cmd_status },   { "devices", cmd_devices },
		{ "clients", cmd_clients }, { "channels", cmd_channels },
		{ "version", cmd_version },
	};
	const char *sock = NULL;
	gpuq_t *q;
	size_t i;
	int o, r;

	while ((o = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			if (!*optarg) {
				fprintf(stderr, "gpuqctl: --socket needs a path\n");
				return EXIT_USAGE;
			}
			sock = optarg;
			break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "gpuqctl: %s\n",
			optind == argc ? "missing command" : "too many arguments");
		usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[optind], cmds[i].name))
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0])) {
		fprintf(stderr, "gpuqctl: unknown command '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	/* An operator's query moves no data: ask for the smallest arena. */
	r = gpuq_connect_opts(sock,
			      &(struct gpuq_options){ .struct_size = sizeof(struct gpuq_options),
						      .client_name = "gpuqctl",
						      .arena_size = 1u << 20,
						      .queue_depth = 64 },
			      &q);
	if (r) {
		fprintf(stderr, "gpuqctl: %s\n",
			*gpuq_errmsg(NULL) ? gpuq_errmsg(NULL) : strerror(-r));
		if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTDIR)
			return EXIT_NOT_RUNNING;
		if (r == -EACCES || r == -EPERM)
			return EXIT_DENIED;
		return EXIT_ERR;
	}
	r = cmds[i].fn(q);
	gpuq_close(q);
	return r;
}
