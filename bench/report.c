/* report.c: gpuq-bench's comparisons with baselines, targets and verdicts, and the output: the table or one JSON object. */
#include "build-config.h"

#include "gpuq-bench.h"

/* ---- comparisons and targets ---- */

static const struct row *find_row(int kind, int load, uint64_t size, int dir)
{
	int i;

	for (i = 0; i < nrows; i++)
		if (rows[i].kind == kind && rows[i].load == load && rows[i].size == size &&
		    rows[i].dir == dir && !rows[i].skipped)
			return &rows[i];
	return NULL;
}

static void cmp_add(struct row *r, int kind, int load)
{
	const struct row *b = find_row(kind, load, r->size, r->dir);
	struct cmp *c;

	if (r->ncmp == 2)
		return;
	c = &r->cmp[r->ncmp++];
	c->kind = kind;
	c->load = load;
	c->base = b ? b->value : NAN;
	c->ratio = b && b->value > 0 ? r->value / b->value : NAN;
}

/* The targets of the project's issue. Ratios are gpuq / baseline of the same run. */
static const struct target {
	int kind;
	uint64_t size;
	int clients, dir;
	int cmp; /* -1: on the value itself; else the comparison's index */
	int at_most;
	double limit;
	const char *text;
} targets[] = {
	{ K_GPUQ, 64 * MiB, 1, D_H2D, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 1, D_D2H, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 1, D_BIDIR, 0, 0, 0.95, ">=95%" },
	{ K_GPUQ, 64 * MiB, 8, D_H2D, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 8, D_D2H, 0, 0, 0.97, ">=97%" },
	{ K_GPUQ, 64 * MiB, 8, D_BIDIR, 0, 0, 0.95, ">=95%" },
	{ K_GPUQ, 4 * KiB, 8, D_H2D, -1, 0, 10.0, ">=10M/s" },
	{ K_GPUQ, 4 * KiB, 8, D_H2D, 0, 0, 25.0, ">=25x" },
	{ K_GPUQ, 4 * KiB, 8, D_H2D, 1, 0, 8.0, ">=8x" },
	{ K_GPUQ, 256, 8, D_H2D, -1, 0, 20.0, ">=20M/s" },
	{ K_GPUQ_LAT_P50, 4 * KiB, 1, D_H2D, -1, 1, 4.0, "<=4us" },
	{ K_GPUQ_LAT_P99, 4 * KiB, 1, D_H2D, -1, 1, 10.0, "<=10us" },
};
#define NTARGETS ((int)(sizeof(targets) / sizeof(targets[0])))

static int target_hits(const struct target *t, const struct row *r)
{
	return r->kind == t->kind && r->size == t->size && r->clients == t->clients &&
	       r->dir == t->dir && !r->skipped;
}

void compare_all(void)
{
	int i, t;

	for (i = 0; i < nrows; i++) {
		struct row *r = &rows[i];

		if (!is_gpuq(r->kind) || r->skipped || O.smoke)
			continue;
		if (r->kind == K_GPUQ && r->size >= SMALL_LIMIT) {
			cmp_add(r, K_PINNED, L_IDLE);
		} else if (r->kind == K_GPUQ) {
			cmp_add(r, K_PERCALL, L_IDLE);
			cmp_add(r, K_BATCH, L_IDLE);
		} else if (r->kind == K_GPUQ_MALLOC) {
			cmp_add(r, K_PINNED, L_IDLE);
			cmp_add(r, K_PAGEABLE, L_IDLE);
		} else {
			int k = r->kind == K_GPUQ_LAT_P50 ? K_LAT_P50 : K_LAT_P99;

			cmp_add(r, k, r->load);
			if (r->load == L_BUSY)
				cmp_add(r, k, L_IDLE);
		}
		for (t = 0; t < NTARGETS; t++) {
			const struct target *g = &targets[t];
			double v;
			char *text;
			int *verdict;

			if (!target_hits(g, r))
				continue;
			if (g->cmp < 0) {
				v = r->value;
				text = r->target;
				verdict = &r->verdict;
			} else {
				if (g->cmp >= r->ncmp)
					continue;
				v = r->cmp[g->cmp].ratio;
				text = r->cmp[g->cmp].target;
				verdict = &r->cmp[g->cmp].verdict;
			}
			snprintf(text, 16, "%s", g->text);
			if (isnan(v))
				*verdict = V_NONE;
			else
				*verdict = (g->at_most ? v <= g->limit : v >= g->limit) ? V_PASS :
											  V_MISS;
		}
	}
}

/* ---- output ---- */

static const char *fmt_num(double v, char *buf, size_t len)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (v >= 1000)
		snprintf(buf, len, "%.0f", v);
	else if (v >= 100)
		snprintf(buf, len, "%.1f", v);
	else if (v >= 10)
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "%.3f", v);
	return buf;
}

static const char *fmt_ratio(const struct cmp *c, char *buf, size_t len)
{
	if (isnan(c->ratio))
		snprintf(buf, len, "-");
	else if (c->kind == K_PINNED || c->kind == K_PAGEABLE)
		snprintf(buf, len, "%.1f%%", c->ratio * 100);
	else if (c->ratio >= 100)
		snprintf(buf, len, "%.0fx", c->ratio);
	else
		snprintf(buf, len, "%.3gx", c->ratio);
	return buf;
}

static const char *verdict_name(int v)
{
	return v == V_PASS ? "PASS" : v == V_MISS ? "MISS" : "n/a";
}

/* "target PASS", in parentheses under load: the issue states its targets for an idle GPU. */
static void fmt_verdict(char *buf, size_t len, const char *target, int verdict, int load)
{
	if (!target[0])
		buf[0] = '\0';
	else if (load == L_BUSY)
		snprintf(buf, len, "(%s %s)", target, verdict_name(verdict));
	else
		snprintf(buf, len, "%s %s", target, verdict_name(verdict));
}

static void print_header(FILE *f)
{
	int i;

	fprintf(f, "gpuq-bench %s (libgpuq %s)\n", PACKAGE_VERSION, gpuq_version());
	if (have_card) {
		fprintf(f, "card:    %s, device %d, %s, %d SMs, cc %d.%d, %.0f GiB\n", card.name,
			O.dev, card.busid, card.sm_count, card.cc_major, card.cc_minor,
			(double)card.total_mem / (double)GiB);
		if (card.link_load[0])
			fprintf(f, "PCIe:    %s under load (idle %s; max %s)\n", card.link_load,
				card.link_idle, card.link_max);
		else
			fprintf(f, "PCIe:    %s idle (max %s)\n", card.link_idle, card.link_max);
		fprintf(f, "driver:  %s (CUDA driver API %d.%d, runtime %d.%d)\n", card.driver,
			card.driver_api / 1000, card.driver_api % 1000 / 10, card.runtime / 1000,
			card.runtime % 1000 / 10);
	} else {
		fprintf(f,
			"card:    none: --smoke runs gpuqd's host backend; no figure here is a GPU's\n");
	}
	if (O.no_gpuq)
		fprintf(f, "gpuqd:   not used (--no-gpuq)");
	else
		fprintf(f, "gpuqd:   %s, backend %s, %s %s", dstatus.server_version,
			dstatus.backend, O.socket ? "running at" : "started from",
			O.socket ? O.socket : gpuqd_path);
	if (!O.socket && !O.no_gpuq) {
		fprintf(f, " with --backend %s", O.smoke ? "host" : "cuda");
		for (i = 0; i < O.ngpuqd_args; i++)
			fprintf(f, " %s", O.gpuqd_args[i]);
	}
	fputc('\n', f);
	if (have_ddev)
		fprintf(f, "         its device %u: %s, PCIe gen %u x%u\n", ddev.index, ddev.name,
			ddev.pcie_gen, ddev.pcie_width);
	if (busy_ran)
		fprintf(f,
			"busy:    another process ran %llu spin kernels of %d x %d threads on every SM, "
			"%.2f ms each (min %.2f, max %.2f)\n",
			(unsigned long long)busy_report.launches, busy_ready.grid, busy_ready.block,
			busy_report.mean_ms, busy_report.min_ms, busy_report.max_ms);
	fprintf(f,
		"cells:   %.2f s warm-up + %.2f s measured (longer where gigabytes are in flight); GB/s = 1e9 bytes/s, M/s = 1e6 "
		"transfers/s; ratio = value / baseline (latency: lower is better)\n\n",
		O.warm, O.dur);
}

#define ROWFMT "%-25s %7s %3s %-5s %-4s %9s %-4s %-13s| %-16s %9s %7s | %s\n"

/* Baseline name, with its load when it differs from the row's. */
static const char *cmp_label(const struct row *r, const struct cmp *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", kinds[c->kind].base, c->load != r->load ? " idle" : "");
	return buf;
}

/* Counts the verdicts of the idle rows (the targets are for an idle GPU). */
static void count_verdicts(int *pass, int *miss)
{
	int i, j;

	*pass = *miss = 0;
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		if (r->load != L_IDLE)
			continue;
		*pass += r->verdict == V_PASS;
		*miss += r->verdict == V_MISS;
		for (j = 0; j < r->ncmp; j++) {
			*pass += r->cmp[j].verdict == V_PASS;
			*miss += r->cmp[j].verdict == V_MISS;
		}
	}
}

static int target_measured(const struct target *g)
{
	int i;

	for (i = 0; i < nrows; i++)
		if (rows[i].load == L_IDLE && target_hits(g, &rows[i]))
			return 1;
	return 0;
}

void print_table(FILE *f)
{
	int i, j, pass = 0, miss = 0, t;

	print_header(f);
	fprintf(f, ROWFMT, "what", "size", "cl", "dir", "load", "value", "unit", " also",
		"baseline", "value", "ratio", "target");
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char sz[32], cl[8], val[32], also[32], bv[32], ra[32], tg[64], tg2[32], bl[32];

		fmt_size(r->size, sz, sizeof(sz));
		if (r->clients)
			snprintf(cl, sizeof(cl), "%d", r->clients);
		else
			snprintf(cl, sizeof(cl), "-");
		if (r->skipped) {
			fprintf(f, "%-25s %7s %3s %-5s %-4s %9s %-4s %-13s| %s\n",
				kinds[r->kind].what, sz, cl, dir_names[r->dir], load_names[r->load],
				"-", "", "", r->note);
			continue;
		}
		fmt_num(r->value, val, sizeof(val));
		if (is_latency(r->kind))
			snprintf(also, sizeof(also), " n=%llu", (unsigned long long)r->count);
		else if (r->size < SMALL_LIMIT)
			snprintf(also, sizeof(also), " %.2f GB/s", r->gbps);
		else
			snprintf(also, sizeof(also), " %.0f/s", r->rate);
		fmt_verdict(tg, sizeof(tg), r->target, r->verdict, r->load);
		if (r->ncmp) {
			const struct cmp *c = &r->cmp[0];

			fmt_verdict(tg2, sizeof(tg2), c->target, c->verdict, r->load);
			if (tg[0] && tg2[0])
				strncat(tg, ", ", sizeof(tg) - strlen(tg) - 1);
			strncat(tg, tg2, sizeof(tg) - strlen(tg) - 1);
			fprintf(f, ROWFMT, kinds[r->kind].what, sz, cl, dir_names[r->dir],
				load_names[r->load], val, unit_of(r), also,
				cmp_label(r, c, bl, sizeof(bl)), fmt_num(c->base, bv, sizeof(bv)),
				fmt_ratio(c, ra, sizeof(ra)), tg);
		} else {
			fprintf(f, ROWFMT, kinds[r->kind].what, sz, cl, dir_names[r->dir],
				load_names[r->load], val, unit_of(r), also, "", "", "", tg);
		}
		for (j = 1; j < r->ncmp; j++) {
			const struct cmp *c = &r->cmp[j];
			fmt_verdict(tg2, sizeof(tg2), c->target, c->verdict, r->load);
			fprintf(f, ROWFMT, "", "", "", "", "", "", "", "",
				cmp_label(r, c, bl, sizeof(bl)), fmt_num(c->base, bv, sizeof(bv)),
				fmt_ratio(c, ra, sizeof(ra)), tg2);
		}
	}
	if (O.smoke) {
		fprintf(f, "\nsmoke run on the host backend: no baselines, no targets.\n");
		return;
	}
	if (O.no_gpuq)
		return;
	count_verdicts(&pass, &miss);
	fprintf(f, "\ntargets (idle GPU): %d PASS, %d MISS", pass, miss);
	for (t = 0, j = 0; t < NTARGETS; t++) {
		const struct target *g = &targets[t];
		char sz[32];

		if (target_measured(g))
			continue;
		fprintf(f, "%s%s %s x%d %s %s",
			j++ ? "; " : "; not measured: ", kinds[g->kind].base,
			fmt_size(g->size, sz, sizeof(sz)), g->clients, dir_names[g->dir], g->text);
	}
	fputc('\n', f);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

static void json_verdict(FILE *f, const char *target, int verdict, int load)
{
	if (!target[0]) {
		fputs("\"target\":null,\"verdict\":null", f);
		return;
	}
	fputs("\"target\":", f);
	json_str(f, target);
	fprintf(f, ",\"verdict\":\"%s\",\"verdict_informational\":%s", verdict_name(verdict),
		load == L_BUSY ? "true" : "false");
}

void print_json(FILE *f)
{
	int i, j;

	fprintf(f, "{\"schema_version\":1,\"tool\":\"gpuq-bench\",\"version\":");
	json_str(f, PACKAGE_VERSION);
	fputs(",\"card\":", f);
	if (have_card)
		json_str(f, card.name);
	else
		fputs("null", f);
	fputs(",\"driver\":", f);
	if (have_card)
		json_str(f, card.driver);
	else
		fputs("null", f);
	if (have_card) {
		fprintf(f,
			",\"cuda_driver_api\":%d,\"cuda_runtime\":%d,\"device\":%d,\"pci_bus_id\":",
			card.driver_api, card.runtime, O.dev);
		json_str(f, card.busid);
		fprintf(f, ",\"sm_count\":%d,\"pcie\":{\"under_load\":", card.sm_count);
		json_str(f, card.link_load);
		fputs(",\"idle\":", f);
		json_str(f, card.link_idle);
		fputs(",\"max\":", f);
		json_str(f, card.link_max);
		fputc('}', f);
	}
	if (O.no_gpuq) {
		fputs(",\"gpuqd\":null", f);
		goto busy;
	}
	fputs(",\"gpuqd\":{\"version\":", f);
	json_str(f, dstatus.server_version);
	fputs(",\"backend\":", f);
	json_str(f, dstatus.backend);
	fprintf(f, ",\"started\":%s,\"path\":", O.socket ? "false" : "true");
	json_str(f, O.socket ? O.socket : gpuqd_path);
	fputs(",\"args\":[", f);
	for (i = 0; i < O.ngpuqd_args; i++) {
		if (i)
			fputc(',', f);
		json_str(f, O.gpuqd_args[i]);
	}
	fputs("]}", f);
busy:
	if (busy_ran)
		fprintf(f,
			",\"busy\":{\"kernel_ms\":%.3f,\"grid\":%d,\"block\":%d,\"launches\":%llu,"
			"\"mean_ms\":%.4f,\"min_ms\":%.4f,\"max_ms\":%.4f}",
			busy_ready.kernel_ms, busy_ready.grid, busy_ready.block,
			(unsigned long long)busy_report.launches, busy_report.mean_ms,
			busy_report.min_ms, busy_report.max_ms);
	else
		fputs(",\"busy\":null", f);
	fprintf(f,
		",\"smoke\":%s,\"warmup_s\":%.3f,\"duration_s\":%.3f,\"mem_budget\":%llu,\"rows\":[",
		O.smoke ? "true" : "false", O.warm, O.dur, (unsigned long long)O.mem_budget);
	for (i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		fprintf(f, "%s\n{\"what\":", i ? "," : "");
		json_str(f, kinds[r->kind].what);
		fprintf(f,
			",\"kind\":\"%s\",\"size\":%llu,\"clients\":%d,\"direction\":\"%s\","
			"\"load\":\"%s\",\"window\":%d",
			kinds[r->kind].id, (unsigned long long)r->size, r->clients,
			dir_names[r->dir], load_names[r->load], r->window);
		if (r->skipped) {
			fputs(",\"skipped\":", f);
			json_str(f, r->note);
			fputc('}', f);
			continue;
		}
		fputs(",\"value\":", f);
		json_num(f, r->value);
		fprintf(f, ",\"unit\":\"%s\"", unit_of(r));
		if (is_latency(r->kind)) {
			fprintf(f, ",\"samples\":%llu", (unsigned long long)r->count);
		} else {
			fputs(",\"transfers_per_s\":", f);
			json_num(f, r->rate);
			fputs(",\"gbytes_per_s\":", f);
			json_num(f, r->gbps);
			fprintf(f, ",\"transfers\":%llu", (unsigned long long)r->count);
		}
		fputs(",\"seconds\":", f);
		json_num(f, r->seconds);
		fputc(',', f);
		json_verdict(f, r->target, r->verdict, r->load);
		fputs(",\"comparisons\":[", f);
		for (j = 0; j < r->ncmp; j++) {
			const struct cmp *c = &r->cmp[j];

			fprintf(f,
				"%s{\"baseline\":\"%s\",\"baseline_load\":\"%s\",\"baseline_value\":",
				j ? "," : "", kinds[c->kind].id, load_names[c->load]);
			json_num(f, c->base);
			fputs(",\"ratio\":", f);
			json_num(f, c->ratio);
			fputc(',', f);
			json_verdict(f, c->target, c->verdict, r->load);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("\n]", f);
	if (!O.smoke && !O.no_gpuq) {
		int pass, miss, t, n = 0;

		count_verdicts(&pass, &miss);
		fprintf(f, ",\"targets\":{\"pass\":%d,\"miss\":%d,\"not_measured\":[", pass, miss);
		for (t = 0; t < NTARGETS; t++) {
			const struct target *g = &targets[t];

			if (target_measured(g))
				continue;
			fprintf(f,
				"%s{\"kind\":\"%s\",\"size\":%llu,\"clients\":%d,\"direction\":\"%s\","
				"\"target\":",
				n++ ? "," : "", kinds[g->kind].id, (unsigned long long)g->size,
				g->clients, dir_names[g->dir]);
			json_str(f, g->text);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("}\n", f);
}
