/* clients.c: gpuq-bench's gpuq client processes (fork()s using libgpuq only), their groups and cells, and the measurement matrix. */
#include "build-config.h"

#include "gpuq-bench.h"

enum { OP_RUN = 1, OP_LAT, OP_EXIT };

/* A command to all clients of a group; written by the parent before it bumps seq. */
struct wcmd {
	int32_t op, dir;
	uint64_t t_go, t_start, t_end; /* CLOCK_MONOTONIC ns: start, measure from, until */
};

/* One client's report; written by that client only, before it stores ack. */
struct wres {
	_Atomic uint32_t ack; /* seq of the last command finished (setup: the group's first seq) */
	int32_t status;       /* 0 or -errno */
	double xfers;         /* throughput: transfers credited to the measured window */
	uint64_t samples;     /* latency: samples in lat_ns[] ... */
	uint64_t elapsed_ns;  /* ... taken over this long */
	char err[256];
};

/* The shared anonymous mapping between the parent and its clients; the parent owns it. */
struct shared {
	_Atomic uint32_t seq;
	struct wcmd cmd;
	struct wres res[MAX_CLIENTS];
	uint32_t lat_ns[LAT_MAX];
};

static struct shared *sh;

/* Maps the shared page of the parent and its clients, before any client is forked. */
void clients_map(void)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
}

enum { MODE_ARENA, MODE_MALLOC };

/* One set of clients with the same sessions, over several cells. */
struct group {
	uint64_t size;
	int clients, window, mode, load;
	uint64_t arena;
};

static struct group G; /* the current group; clients read their copy after fork */

static void futex_wait_u32(_Atomic uint32_t *addr, uint32_t val, long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void wack(struct wres *me, uint32_t seq, int status)
{
	me->status = status;
	atomic_store_explicit(&me->ack, seq, memory_order_release);
}

static void wfail(struct wres *me, uint32_t seq, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5), noreturn));
static void wfail(struct wres *me, uint32_t seq, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(me->err, sizeof(me->err), fmt, ap);
	va_end(ap);
	wack(me, seq, status < 0 ? status : -EIO);
	_exit(1);
}

/* A client's session and memory for its group. */
struct wctx {
	int idx;
	struct wres *me;
	gpuq_t *q;
	uint8_t *payload; /* window slots of size bytes: arena or malloc memory */
	uint32_t buf;     /* device buffer of the same layout */
	struct gpuq_completion *comp;
	uint64_t *sub; /* per slot: when its request was submitted */
	uint32_t seq;
};

static int slot_dir(const struct wctx *w, int dir, unsigned j)
{
	if (dir != D_BIDIR)
		return dir;
	/* Alternate over all slots of all clients: half the requests go each way. */
	return ((unsigned)w->idx * (unsigned)G.window + j) % 2 ? D_D2H : D_H2D;
}

static void wsubmit(struct wctx *w, int dir, unsigned j, uint64_t t)
{
	uint64_t off = (uint64_t)j * G.size;
	int r;

	w->sub[j] = t;
	if (slot_dir(w, dir, j) == D_H2D)
		r = gpuq_isend(w->q, w->buf, off, w->payload + off, G.size, j, NULL);
	else
		r = gpuq_irecv(w->q, w->buf, off, w->payload + off, G.size, j, NULL);
	if (r)
		wfail(w->me, w->seq, r, "client %d: gpuq_%s: %s (%s)", w->idx,
		      slot_dir(w, dir, j) == D_H2D ? "isend" : "irecv", gpuq_errmsg(w->q),
		      strerror(-r));
}

/*
 * One throughput cell: keeps the window full from t_go and credits each
 * finished request with the share of its life (submission to completion)
 * that lies in [t_start, t_end). Counting completions instead would be off
 * by a whole burst where many large requests progress side by side and
 * finish together. After t_end the load stays as it was until every request
 * submitted before t_end has finished (a draining queue would speed up the
 * last ones), then the rest drain uncredited.
 */
static void wrun(struct wctx *w, const struct wcmd *c)
{
	unsigned W = (unsigned)G.window, inflight = 0, old = 0, j;
	uint64_t last, t0, stall_ns = 30 * 1000000000ull;
	double xfers = 0;

	if (c->dir == D_BIDIR && G.clients * G.window < 2)
		wfail(w->me, w->seq, -EINVAL, "bidir needs two requests in flight");
	sleep_until(c->t_go);
	t0 = now_ns();
	for (j = 0; j < W; j++, inflight++, old++)
		wsubmit(w, c->dir, j, t0);
	last = now_ns();
	while (inflight) {
		int n = gpuq_poll(w->q, w->comp, W, 100), k;
		uint64_t t = now_ns();

		if (n < 0)
			wfail(w->me, w->seq, n, "client %d: gpuq_poll: %s (%s)", w->idx,
			      gpuq_errmsg(w->q), strerror(-n));
		if (n == 0 && t - last > stall_ns)
			wfail(w->me, w->seq, -ETIMEDOUT,
			      "client %d: no completion for %.0f s with %u request(s) of %llu bytes "
			      "outstanding",
			      w->idx, (double)stall_ns / NS, inflight, (unsigned long long)G.size);
		if (n > 0)
			last = t;
		for (k = 0; k < n; k++) {
			uint64_t tag = w->comp[k].tag, s0, lo, hi;

			if (tag >= W)
				wfail(w->me, w->seq, -EPROTO,
				      "client %d: completion with unknown tag %llu", w->idx,
				      (unsigned long long)tag);
			if (w->comp[k].result != (int64_t)G.size)
				wfail(w->me, w->seq,
				      w->comp[k].result < 0 ? (int)w->comp[k].result : -EIO,
				      "client %d: a %llu-byte %s completed with %lld%s%s", w->idx,
				      (unsigned long long)G.size,
				      slot_dir(w, c->dir, (unsigned)tag) == D_H2D ? "send" : "recv",
				      (long long)w->comp[k].result,
				      w->comp[k].result < 0 ? ": " : "",
				      w->comp[k].result < 0 ? strerror((int)-w->comp[k].result) :
							      "");
			inflight--;
			s0 = w->sub[tag];
			if (s0 < c->t_end)
				old--;
			lo = s0 > c->t_start ? s0 : c->t_start;
			hi = t < c->t_end ? t : c->t_end;
			if (t <= s0)
				xfers += t >= c->t_start && t < c->t_end;
			else if (hi > lo)
				xfers += (double)(hi - lo) / (double)(t - s0);
			if (t < c->t_end || old) {
				wsubmit(w, c->dir, (unsigned)tag, t);
				inflight++;
				old += t < c->t_end;
			}
		}
	}
	w->me->xfers = xfers;
}

/* Blocking 4 KiB gpuq_send (or gpuq_recv) from arena memory, one at a time. */
static void wlat(struct wctx *w, const struct wcmd *c)
{
	uint64_t n = 0, t0, t;
	double secs = 0;
	int phase;

	for (phase = 0; phase < 2; phase++) {
		n = 0;
		t0 = now_ns();
		for (;;) {
			ssize_t r;

			t = now_ns();
			r = c->dir == D_H2D ? gpuq_send(w->q, w->buf, 0, w->payload, G.size) :
					      gpuq_recv(w->q, w->buf, 0, w->payload, G.size);
			if (r != (ssize_t)G.size)
				wfail(w->me, w->seq, r < 0 ? (int)r : -EIO,
				      "client %d: gpuq_%s returned %zd: %s", w->idx,
				      c->dir == D_H2D ? "send" : "recv", r, gpuq_errmsg(w->q));
			if (phase) {
				uint64_t d = now_ns() - t;

				sh->lat_ns[n] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
			}
			n++;
			secs = since(t0);
			if (!phase && secs >= O.warm && n >= 10)
				break;
			if (phase &&
			    (n == LAT_MAX || (secs >= O.dur && n >= LAT_MIN) || secs >= O.dur + 30))
				break;
		}
	}
	w->me->samples = n;
	w->me->elapsed_ns = (uint64_t)(secs * 1e9);
}

static void worker_main(int idx, uint32_t seq0)
{
	struct wctx w = { .idx = idx, .me = &sh->res[idx], .seq = seq0 };
	struct gpuq_options go = { .struct_size = sizeof(go) };
	uint64_t need = (uint64_t)G.window * G.size,
		 seed = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1);
	char name[64], sz[32];
	size_t asz = 0;
	ssize_t n;
	int64_t bad;
	int r;

	child_init(SIGKILL);
	snprintf(name, sizeof(name), "gpuq-bench/%d", idx);
	go.client_name = name;
	go.arena_size = G.arena;
	if (G.window > 2048) {
		unsigned qd = 4096;

		while (qd < 2u * (unsigned)G.window)
			qd *= 2;
		go.queue_depth = qd;
	}
	r = gpuq_connect_opts(sock_path, &go, &w.q);
	if (r)
		wfail(w.me, w.seq, r, "client %d: connecting to %s: %s (%s)", idx, sock_path,
		      gpuq_errmsg(NULL), strerror(-r));
	if (!O.smoke && strcmp(gpuq_backend(w.q), "cuda"))
		wfail(w.me, w.seq, -EPROTO, "client %d: gpuqd runs the %s backend, not cuda", idx,
		      gpuq_backend(w.q));
	if (G.mode == MODE_ARENA) {
		gpuq_arena(w.q, &asz);
		w.payload = gpuq_mem_alloc(w.q, need);
		if (!w.payload)
			wfail(w.me, w.seq, -ENOMEM,
			      "client %d: gpuq_mem_alloc(%s) failed in an arena of %llu bytes (asked "
			      "%llu): raise gpuqd's --arena-max or lower --window",
			      idx, fmt_size(need, sz, sizeof(sz)), (unsigned long long)asz,
			      (unsigned long long)G.arena);
	} else if (posix_memalign((void **)&w.payload, 4096, need)) {
		wfail(w.me, w.seq, -ENOMEM, "client %d: out of memory", idx);
	}
	r = gpuq_buf_alloc(w.q, (unsigned)O.dev, need, &w.buf);
	if (r)
		wfail(w.me, w.seq, r, "client %d: gpuq_buf_alloc(%s): %s (%s)", idx,
		      fmt_size(need, sz, sizeof(sz)), gpuq_errmsg(w.q), strerror(-r));
	w.comp = calloc((size_t)G.window, sizeof(*w.comp));
	w.sub = calloc((size_t)G.window, sizeof(*w.sub));
	if (!w.comp || !w.sub)
		wfail(w.me, w.seq, -ENOMEM, "client %d: out of memory", idx);
	/* Real data, checked once end to end, so that the figures move real bytes. */
	pattern_fill(w.payload, need, seed);
	n = gpuq_send(w.q, w.buf, 0, w.payload, need);
	if (n != (ssize_t)need)
		wfail(w.me, w.seq, n < 0 ? (int)n : -EIO,
		      "client %d: gpuq_send(%s) returned %zd: %s", idx,
		      fmt_size(need, sz, sizeof(sz)), n, gpuq_errmsg(w.q));
	memset(w.payload, 0, need);
	n = gpuq_recv(w.q, w.buf, 0, w.payload, need);
	if (n != (ssize_t)need)
		wfail(w.me, w.seq, n < 0 ? (int)n : -EIO,
		      "client %d: gpuq_recv(%s) returned %zd: %s", idx,
		      fmt_size(need, sz, sizeof(sz)), n, gpuq_errmsg(w.q));
	bad = pattern_check(w.payload, need, seed);
	if (bad >= 0)
		wfail(w.me, w.seq, -EIO,
		      "client %d: data read back from the device differs from what was sent, at "
		      "byte %lld of %llu",
		      idx, (long long)bad, (unsigned long long)need);
	wack(w.me, w.seq, 0);

	for (;;) {
		uint32_t s;
		struct wcmd c;

		while ((s = atomic_load_explicit(&sh->seq, memory_order_acquire)) == w.seq)
			futex_wait_u32(&sh->seq, w.seq, 1000);
		w.seq = s;
		c = sh->cmd;
		w.me->xfers = 0;
		w.me->samples = w.me->elapsed_ns = 0;
		if (c.op == OP_RUN) {
			wrun(&w, &c);
		} else if (c.op == OP_LAT) {
			if (idx == 0)
				wlat(&w, &c);
		} else {
			gpuq_buf_free(w.q, w.buf);
			if (G.mode == MODE_ARENA)
				gpuq_mem_free(w.q, w.payload);
			else
				free(w.payload);
			gpuq_close(w.q);
			wack(w.me, w.seq, 0);
			_exit(0);
		}
		wack(w.me, w.seq, 0);
	}
}

/* Waits until every client acked seq; dies with the clients' messages otherwise. */
static void acks_wait(uint32_t seq, uint64_t deadline, const char *what)
{
	int i, st, dead_st = 0, n = G.clients;

	for (;;) {
		int ok = 0, dead = -1;

		for (i = 0; i < n; i++) {
			if (atomic_load_explicit(&sh->res[i].ack, memory_order_acquire) != seq)
				continue;
			if (sh->res[i].status)
				die("%s: %s", what, sh->res[i].err[0] ? sh->res[i].err : "failed");
			ok++;
		}
		if (ok == n)
			return;
		for (i = 0; i < n; i++) {
			if (worker_pids[i] > 0 &&
			    waitpid(worker_pids[i], &st, WNOHANG) == worker_pids[i]) {
				worker_pids[i] = 0;
				if (atomic_load_explicit(&sh->res[i].ack, memory_order_acquire) !=
				    seq) {
					dead = i;
					dead_st = st;
				}
			}
		}
		if (dead >= 0) {
			if (atomic_load_explicit(&sh->res[dead].ack, memory_order_acquire) == seq &&
			    sh->res[dead].status)
				die("%s: %s", what, sh->res[dead].err);
			die("%s: client %d exited without reporting (%s %d)", what, dead,
			    WIFSIGNALED(dead_st) ? "signal" : "status",
			    WIFSIGNALED(dead_st) ? WTERMSIG(dead_st) : WEXITSTATUS(dead_st));
		}
		if (now_ns() > deadline)
			die("%s: %d of %d client(s) did not finish within the time allowed: is gpuqd "
			    "completing requests?",
			    what, n - ok, n);
		if (daemon_pid > 0 && waitpid(daemon_pid, &st, WNOHANG) == daemon_pid) {
			daemon_pid = 0;
			daemon_log_tail();
			die("%s: gpuqd exited (%s %d)", what, WIFSIGNALED(st) ? "signal" : "status",
			    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		}
		usleep(1000);
	}
}

static uint32_t cmd_post(int op, int dir, double warm, double dur)
{
	uint64_t go = now_ns() + 20000000ull; /* time for every client to wake */
	uint32_t s = atomic_load_explicit(&sh->seq, memory_order_relaxed) + 1;

	sh->cmd.op = op;
	sh->cmd.dir = dir;
	sh->cmd.t_go = go;
	sh->cmd.t_start = go + (uint64_t)(warm * NS);
	sh->cmd.t_end = sh->cmd.t_start + (uint64_t)(dur * NS);
	atomic_store_explicit(&sh->seq, s, memory_order_release);
	futex_wake_all(&sh->seq);
	return s;
}

static void group_label(char *buf, size_t len, const char *verb)
{
	char sz[32];

	snprintf(buf, len, "%s %s gpuq %s x%d%s", load_names[G.load], verb,
		 fmt_size(G.size, sz, sizeof(sz)), G.clients,
		 G.mode == MODE_MALLOC ? " (malloc)" : "");
}

/* Starts the group's clients and waits until each has its session, memory and a checked round trip. */
static void group_open(void)
{
	uint64_t total = (uint64_t)G.clients * (uint64_t)G.window * G.size;
	uint32_t seq0 = atomic_fetch_add(&sh->seq, 1) + 1;
	char what[96];
	int i;

	group_label(what, sizeof(what), "setup of");
	for (i = 0; i < G.clients; i++) {
		memset(&sh->res[i], 0, sizeof(sh->res[i]));
		atomic_store(&sh->res[i].ack, 0);
	}
	fflush(NULL);
	for (i = 0; i < G.clients; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0)
			worker_main(i, seq0);
		worker_pids[i] = pid;
	}
	/* Registration and the checked round trip move every byte twice. */
	acks_wait(seq0, now_ns() + 120000000000ull + total, what);
}

static void group_close(void)
{
	uint32_t s = cmd_post(OP_EXIT, 0, 0, 0);
	uint64_t deadline = now_ns() + 30000000000ull;
	char what[96];
	int i, st;

	group_label(what, sizeof(what), "end of");
	acks_wait(s, deadline, what);
	for (i = 0; i < G.clients; i++) {
		while (worker_pids[i] > 0) {
			pid_t r = waitpid(worker_pids[i], &st, WNOHANG);

			if (r == worker_pids[i] || r < 0) {
				worker_pids[i] = 0;
				break;
			}
			if (now_ns() > deadline)
				die("%s: client %d did not exit", what, i);
			usleep(1000);
		}
	}
}

static void group_cell(int dir)
{
	double xfers = 0, life, warm, dur;
	char what[128], sz[32];
	struct row *r;
	uint32_t s;
	int i;

	if (dir == D_BIDIR && G.clients * G.window < 2) {
		r = row_add(G.mode == MODE_MALLOC ? K_GPUQ_MALLOC : K_GPUQ, dir, G.load, G.size,
			    G.clients, G.window);
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "skipped: one request in flight");
		return;
	}
	snprintf(what, sizeof(what), "%s gpuq %s x%d %s%s", load_names[G.load],
		 fmt_size(G.size, sz, sizeof(sz)), G.clients, dir_names[dir],
		 G.mode == MODE_MALLOC ? " (malloc)" : "");
	/*
	 * Many clients of large transfers keep gigabytes in flight, and one round
	 * of them takes a while: warm up past the first round and measure over
	 * many, so that the window's edges don't matter.
	 */
	life = (double)G.clients * G.window * (double)G.size / LIFE_BPS;
	warm = O.warm > 1.5 * life ? O.warm : 1.5 * life;
	dur = O.dur > 10 * life ? O.dur : 10 * life;
	if (G.load == L_BUSY)
		busy_check();
	s = cmd_post(OP_RUN, dir, warm, dur);
	sleep_until(sh->cmd.t_end);
	/* The window ended; draining may take a few transfers more. */
	acks_wait(s, sh->cmd.t_end + 60000000000ull + (uint64_t)G.window * G.size, what);
	for (i = 0; i < G.clients; i++)
		xfers += sh->res[i].xfers;
	if (!(xfers > 0))
		die("%s: no transfer completed in %.2f s", what, dur);
	r = row_add(G.mode == MODE_MALLOC ? K_GPUQ_MALLOC : K_GPUQ, dir, G.load, G.size, G.clients,
		    G.window);
	row_tput(r, xfers, xfers * (double)G.size, (double)(sh->cmd.t_end - sh->cmd.t_start) / NS);
	note("%s: %.3g %s (%.2f GB/s, %.3g transfers/s)", what, r->value, unit_of(r), r->gbps,
	     r->rate);
}

static void group_latency(int dir)
{
	char what[96];
	uint32_t s;

	snprintf(what, sizeof(what), "%s gpuq 4KiB latency %s", load_names[G.load], dir_names[dir]);
	if (G.load == L_BUSY)
		busy_check();
	s = cmd_post(OP_LAT, dir, O.warm, O.dur);
	acks_wait(s, now_ns() + (uint64_t)((O.warm + O.dur + 120) * NS), what);
	if (sh->res[0].samples == 0)
		die("%s: no samples", what);
	rows_latency(K_GPUQ_LAT_P50, K_GPUQ_LAT_P99, dir, G.load, sh->lat_ns, sh->res[0].samples,
		     (double)sh->res[0].elapsed_ns / NS);
	note("%s: p50 %.2f us, p99 %.2f us (%llu samples)", what, rows[nrows - 2].value,
	     rows[nrows - 1].value, (unsigned long long)sh->res[0].samples);
}

/* Sets G for a size and client count; returns 0, or -1 when over --mem-budget (rows say so). */
static int group_plan(uint64_t size, int clients, int mode, int load, int window)
{
	uint64_t per = (uint64_t)clients * size;
	int w = window;

	if (!w) {
		uint64_t d = WINDOW_BYTES / size;

		/* Four at least, so that bidir keeps two each way; within gpuqd's default --arena-max. */
		w = d < 4 ? 4 : d > 1024 ? 1024 : (int)d;
		while (w > 2 && (uint64_t)w * size > WINDOW_MAX_BYTES)
			w /= 2;
	}
	if (per * (uint64_t)w > O.mem_budget)
		w = (int)(O.mem_budget / per);
	memset(&G, 0, sizeof(G));
	G.size = size;
	G.clients = clients;
	G.mode = mode;
	G.load = load;
	G.window = w;
	/* The payload, plus room for the library's own use; malloc memory is staged: two in flight. */
	G.arena = mode == MODE_ARENA ? (uint64_t)w * size + MiB : 2 * size + 2 * MiB;
	G.arena = (G.arena + MiB - 1) / MiB * MiB;
	return w > 0 ? 0 : -1;
}

static void group_skip(const int *dirs, int ndirs, int kind)
{
	char a[32], b[32];
	int d;

	for (d = 0; d < ndirs; d++) {
		struct row *r = row_add(kind, dirs[d], G.load, G.size, G.clients, 0);

		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "skipped: %d x %s over --mem-budget %s",
			 G.clients, fmt_size(G.size, a, sizeof(a)),
			 fmt_size(O.mem_budget, b, sizeof(b)));
	}
	note("%s gpuq %s x%d: skipped (over --mem-budget)", load_names[G.load],
	     fmt_size(G.size, a, sizeof(a)), G.clients);
}

void run_matrix(int load)
{
	static const int small_dirs[] = { D_H2D, D_D2H }, large_dirs[] = { D_H2D, D_D2H, D_BIDIR };
	int si, ci, d, has64 = 0;

	for (si = 0; si < O.nsizes; si++) {
		uint64_t s = O.sizes[si];
		const int *dirs = s < SMALL_LIMIT ? small_dirs : large_dirs;
		int ndirs = s < SMALL_LIMIT ? 2 : 3;

		has64 |= s == 64 * MiB;
		for (ci = 0; ci < O.nclients; ci++) {
			if (group_plan(s, O.clients[ci], MODE_ARENA, load, O.window)) {
				group_skip(dirs, ndirs, K_GPUQ);
				continue;
			}
			group_open();
			for (d = 0; d < ndirs; d++)
				group_cell(dirs[d]);
			group_close();
		}
	}
	/* The staging cost: the same 64 MiB from malloc memory, copied through the arena. */
	if (has64) {
		if (group_plan(64 * MiB, 1, MODE_MALLOC, load, 2)) {
			group_skip(small_dirs, 2, K_GPUQ_MALLOC);
		} else {
			group_open();
			for (d = 0; d < 2; d++)
				group_cell(small_dirs[d]);
			group_close();
		}
	}
	/* One 4 KiB slot: no budget applies. */
	group_plan(4 * KiB, 1, MODE_ARENA, load, 1);
	G.window = 1;
	G.arena = 2 * MiB;
	group_open();
	group_latency(D_H2D);
	group_latency(D_D2H);
	group_close();
}
