/* test_chan_gpu.c: kernels send to and receive from CPU processes through gpuq channels, on a real gpuqd; skips (77) without a GPU. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "gpuq/gpuq.h"
#include "gpuq/gpuq_chan.h"
#include "gpuq/gpuq_cuda.h"
#include "gpu_test.h"
#include "harness.h"
#include "test_chan_gpu.h"

#define TIMEOUT_MS 20000

#define CK_CUDA(call)                                                                          \
	do {                                                                                   \
		cudaError_t err_ = (call);                                                     \
		ck_assert_msg(err_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(err_)); \
	} while (0)

static struct daemon_proc d;

static void start(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

static void stop(void)
{
	cudaDeviceReset();
	ck_assert_int_eq(harness_stop(&d), 0);
}

static gpuq_t *connect_ok(const char *name)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = name };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	/* Before this process's first CUDA call: its context joins gpuqd's MPS server, if any. */
	ck_assert_int_ge(gpuq_mps_prepare_cuda(q), 0);
	return q;
}

/*
 * Checks of a stream of chan_test_msg from nsenders senders of per
 * messages each: every message exactly once, intact, each sender's in
 * order. Owned by the test; checker_free releases it.
 */
struct checker {
	uint32_t nsenders, per;
	int mode;       /* of chan_test_produce: 4 and 5 send messages of varying length */
	uint32_t *next; /* next seq expected from each sender */
	uint64_t got, bad, disorder;
};

static void checker_init(struct checker *k, uint32_t nsenders, uint32_t per)
{
	k->nsenders = nsenders;
	k->per = per;
	k->next = calloc(nsenders, sizeof(*k->next));
	ck_assert_ptr_nonnull(k->next);
	k->got = k->bad = k->disorder = 0;
	k->mode = 0;
}

static void checker_add(struct checker *k, const struct chan_test_msg *m, ssize_t len)
{
	k->got++;
	if (len < (ssize_t)sizeof(*m) || m->sender >= k->nsenders || m->seq >= k->per ||
	    m->sum != chan_test_sum(m->sender, m->seq) || m->nsum != ~m->sum) {
		k->bad++;
		return;
	}
	if (k->mode == 4 ||
	    k->mode == 5) { /* every byte of a message of varying length must be right */
		const uint8_t *b = (const uint8_t *)m;
		uint32_t want = k->mode == 4 ? chan_test_big_len(m->sender, m->seq) :
					       chan_test_small_len(m->sender, m->seq);

		if (len != (ssize_t)want) {
			k->bad++;
			return;
		}
		for (ssize_t j = sizeof(*m); j < len; j++)
			if (b[j] != chan_test_byte(m->sender, m->seq, (uint32_t)j)) {
				k->bad++;
				return;
			}
	}
	/* One receiver at a time: each sender's messages come exactly in order, so this also finds loss and duplicates. */
	if (m->seq != k->next[m->sender])
		k->disorder++;
	k->next[m->sender] = m->seq + 1;
}

static void checker_done(struct checker *k, const char *what)
{
	uint64_t short_senders = 0;
	uint32_t i;

	for (i = 0; i < k->nsenders; i++)
		short_senders += k->next[i] != k->per;
	ck_assert_msg(
		!k->bad && !k->disorder && !short_senders &&
			k->got == (uint64_t)k->nsenders * k->per,
		"%s: %llu received of %llu, %llu corrupt, %llu out of order, %llu senders incomplete",
		what, (unsigned long long)k->got, (unsigned long long)k->nsenders * k->per,
		(unsigned long long)k->bad, (unsigned long long)k->disorder,
		(unsigned long long)short_senders);
	free(k->next);
}

static uint32_t senders_done(gpuq_chan_t *ch)
{
	void *mem = NULL;

	ck_assert_int_eq(gpuq_chan_info(ch, NULL, NULL, NULL, &mem, NULL), 0);
	return __atomic_load_n(&((struct gpuq_chan_hdr *)mem)->senders_done, __ATOMIC_ACQUIRE);
}

/*
 * Runs the producer kernel in mode into a ring of nslots (far fewer than
 * the messages: the kernel waits on the CPU) and receives everything on the
 * CPU while it runs, alternating gpuq_chan_recv and gpuq_chan_recv_batch.
 */
static void stream_case(int mode, unsigned blocks, unsigned threads, unsigned per, unsigned nslots,
			unsigned slot)
{
	gpuq_t *q = connect_ok("test_chan_gpu");
	gpuq_chan_t *ch = NULL;
	struct gpuq_dev_chan dc;
	struct checker k;
	static _Alignas(16) uint8_t batch[64][CHAN_TEST_BIG_MAX], one[CHAN_TEST_BIG_MAX];
	size_t lens[64];
	uint64_t total = (uint64_t)blocks * threads * per;
	char name[32];
	int n, i;

	snprintf(name, sizeof(name), "stream%d.%u", mode, slot);
	/* slot 0: the message's own size (the TAG format); 1024: the SEQ format. */
	ck_assert_int_eq(gpuq_chan_create(q, name, slot ? slot : sizeof(struct chan_test_msg),
					  nslots, GPUQ_CHAN_GPU_TO_CPU, &ch),
			 0);
	/* Mode 0 sends through the ring's tail; the others through a sender mapping's device counters. */
	if (mode == 0)
		ck_assert_int_eq(gpuq_chan_map_cuda(ch, &dc), 0);
	else
		ck_assert_int_eq(gpuq_chan_map_cuda_sender(ch, &dc), 0);
	checker_init(&k, blocks * threads, per);
	k.mode = mode;
	CK_CUDA(chan_test_produce(dc, blocks, threads, per, mode, 0));
	while (k.got < total) {
		if (k.got & 1) {
			ssize_t r = gpuq_chan_recv(ch, one, sizeof(one), TIMEOUT_MS);

			ck_assert_msg(r > 0, "recv after %llu: %s", (unsigned long long)k.got,
				      strerror((int)-r));
			checker_add(&k, (const struct chan_test_msg *)one, r);
		} else {
			n = gpuq_chan_recv_batch(ch, batch, sizeof(batch[0]), lens, 64, TIMEOUT_MS);
			ck_assert_msg(n > 0, "recv_batch after %llu: %s", (unsigned long long)k.got,
				      strerror(-n));
			for (i = 0; i < n; i++)
				checker_add(&k, (const struct chan_test_msg *)batch[i],
					    (ssize_t)lens[i]);
		}
	}
	CK_CUDA(cudaDeviceSynchronize());
	checker_done(&k, name);
	ck_assert_uint_eq(senders_done(ch), blocks);
	ck_assert_int_eq(gpuq_chan_recv(ch, batch, sizeof(batch[0]), 0), -EAGAIN);
	if (mode == 0) {
		ck_assert_int_eq(gpuq_chan_unmap_cuda(ch), 0);
	} else {
		/* While a GPU owns the tail, CPU senders are refused; afterwards it is theirs again. */
		struct chan_test_msg m = { 0 };

		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), -EBUSY);
		ck_assert_int_eq(gpuq_chan_unmap_cuda_sender(ch, &dc), 0);
		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	}
	gpuq_chan_close(ch);
	gpuq_close(q);
}

/* Loop tests: _i 0 uses slots of the message's size (TAG format), 1 slots of 1 KiB (SEQ format). */
#define SLOT(i) ((i) ? CHAN_TEST_BIG_MAX : 0u)

/* 64 blocks x 128 threads, single-thread sends, through 1024 slots. */
START_TEST(test_stream_single)
{
	stream_case(0, 64, 128, 16, 1024, SLOT(_i));
}
END_TEST

/* Full warps, send_warp, through a ring of 256: whole warps wait for room. */
START_TEST(test_stream_warp)
{
	stream_case(1, 64, 128, 32, 256, SLOT(_i));
	stream_case(1, 8, 64, 8, 16, SLOT(_i)); /* a ring smaller than a warp: lanes go alone */
}
END_TEST

/* Warp and single senders mixed in one ring, and send_active from half-warps. */
START_TEST(test_stream_mixed)
{
	stream_case(2, 96, 256, 8, 512, SLOT(_i));
	stream_case(3, 32, 64, 16, 128, SLOT(_i));
}
END_TEST

/* Long messages (256..1024 B) from global memory: the warp copies each lane's message together. */
START_TEST(test_stream_long)
{
	stream_case(4, 32, 128, 16, 256, CHAN_TEST_BIG_MAX);
}
END_TEST

/* Short messages (32..64 B) from global memory into 64-byte slots: the warp writes its slots as one block. */
START_TEST(test_stream_block)
{
	stream_case(5, 32, 128, 32, 256, 64);
	stream_case(5, 8, 64, 100, 32,
		    64); /* a ring of 32: every warp waits, and its block wraps */
	stream_case(5, 16, 64, 20, 64,
		    80); /* 10 units a slot: the block send's general form, two rounds */
	stream_case(5, 8, 64, 20, 64, 256); /* 32 units a slot: four rounds */
	stream_case(5, 4, 64, 8, 16, 64);   /* a ring smaller than a warp */
}
END_TEST

/* Watches a ring's head while kernels free its slots: it must never go back. */
struct head_watch {
	struct gpuq_chan_hdr *hdr;
	volatile int stop;
	uint64_t backwards, reads;
	pthread_t th;
};

static void *head_watch_run(void *arg)
{
	struct head_watch *w = arg;
	uint64_t last = 0;

	while (!w->stop) {
		uint64_t h = __atomic_load_n(&w->hdr->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;

		if (h < last)
			w->backwards++;
		last = h;
		w->reads++;
		sched_yield();
	}
	return NULL;
}

/*
 * CPU -> persistent kernel -> CPU: work items in on one channel, results
 * back on another. _i bit 0: through a receiver mapping (in) and a sender
 * mapping (out); bit 1: 512-byte slots (SEQ format) instead of small ones;
 * 4..7: half the workers receive through handles; 8..11: one worker alone,
 * through a handle.
 */
START_TEST(test_persistent)
{
	enum { ITEMS = 50000 };
	int mapped = _i & 1, handles = _i >= 4;
	unsigned blocks = _i >= 8 ? 1 : 16, warps = _i >= 8 ? 1 : 2;
	size_t extra = (_i & 2) ? 512 : 0;
	gpuq_t *q = connect_ok("test_chan_gpu");
	gpuq_chan_t *in = NULL, *out = NULL;
	struct gpuq_dev_chan din, dout;
	uint8_t *done = calloc(ITEMS, 1);
	uint32_t sent = 0, got = 0, stops = 0, bad = 0;

	ck_assert_ptr_nonnull(done);
	ck_assert_int_eq(gpuq_chan_create(q, "work", sizeof(struct chan_test_work) + extra, 256,
					  GPUQ_CHAN_CPU_TO_GPU, &in),
			 0);
	ck_assert_int_eq(gpuq_chan_create(q, "results", sizeof(struct chan_test_result) + extra,
					  256, GPUQ_CHAN_GPU_TO_CPU, &out),
			 0);
	if (mapped) {
		struct chan_test_work w;

		ck_assert_int_eq(gpuq_chan_map_cuda_receiver(in, &din), 0);
		ck_assert_int_eq(gpuq_chan_map_cuda_receiver(in, &dout), -EBUSY);
		ck_assert_int_eq(gpuq_chan_map_cuda_sender(out, &dout), 0);
		/* The GPU owns the work channel's head: CPU receivers are refused. */
		ck_assert_int_eq(gpuq_chan_recv(in, &w, sizeof(w), 0), -EBUSY);
	} else {
		ck_assert_int_eq(gpuq_chan_map_cuda(in, &din), 0);
		ck_assert_int_eq(gpuq_chan_map_cuda(out, &dout), 0);
	}
	struct head_watch watch = { 0 };
	void *in_mem;

	ck_assert_int_eq(gpuq_chan_info(in, NULL, NULL, NULL, &in_mem, NULL), 0);
	watch.hdr = in_mem;
	ck_assert_int_eq(pthread_create(&watch.th, NULL, head_watch_run, &watch), 0);
	CK_CUDA(chan_test_worker(din, dout, blocks, warps, handles, 0));
	/* One thread feeds and drains without blocking on either ring: both are far smaller than the work. */
	while (got < ITEMS) {
		struct chan_test_result r;
		ssize_t n;

		while (sent < ITEMS) {
			struct chan_test_work w = { sent, sent * 7u + 3u };

			n = gpuq_chan_send(in, &w, sizeof(w), 0);
			if (n == -EAGAIN)
				break;
			ck_assert_int_eq(n, sizeof(w));
			sent++;
		}
		n = gpuq_chan_recv(out, &r, sizeof(r), sent < ITEMS ? 0 : TIMEOUT_MS);
		if (n == -EAGAIN)
			continue;
		ck_assert_msg(n == (ssize_t)sizeof(r), "results: %zd after %u", n, got);
		if (r.id >= ITEMS || done[r.id] || r.y != (r.id * 7u + 3u) * (r.id * 7u + 3u) + 1u)
			bad++;
		else
			done[r.id] = 1;
		got++;
	}
	for (stops = 0; stops < blocks * warps; stops++) {
		struct chan_test_work w = { CHAN_TEST_STOP, 0 };

		ck_assert_int_eq(gpuq_chan_send(in, &w, sizeof(w), TIMEOUT_MS), sizeof(w));
	}
	CK_CUDA(cudaDeviceSynchronize());
	watch.stop = 1;
	pthread_join(watch.th, NULL);
	ck_assert_msg(!watch.backwards, "the work ring's head went back %llu times in %llu reads",
		      (unsigned long long)watch.backwards, (unsigned long long)watch.reads);
	ck_assert_msg(!bad, "%u wrong or duplicated results", bad);
	ck_assert_int_eq(gpuq_chan_recv(out, &(struct chan_test_result){ 0 },
					sizeof(struct chan_test_result), 0),
			 -EAGAIN);
	free(done);
	if (mapped) {
		struct chan_test_work w = { 1, 2 };

		ck_assert_int_eq(gpuq_chan_unmap_cuda_receiver(in, &din), 0);
		ck_assert_int_eq(gpuq_chan_unmap_cuda_sender(out, &dout), 0);
		/* Head handed back: every item was taken, and the CPU may receive again. */
		ck_assert_int_eq(gpuq_chan_recv(in, &w, sizeof(w), 0), -EAGAIN);
		ck_assert_int_eq(gpuq_chan_send(in, &w, sizeof(w), 0), sizeof(w));
		ck_assert_int_eq(gpuq_chan_recv(in, &w, sizeof(w), 0), sizeof(w));
		ck_assert_uint_eq(w.id, 1);
	} else {
		ck_assert_int_eq(gpuq_chan_unmap_cuda(in), 0);
		ck_assert_int_eq(gpuq_chan_unmap_cuda(out), 0);
	}
	gpuq_chan_close(in);
	gpuq_chan_close(out);
	gpuq_close(q);
}
END_TEST

/* A CPU sender beside GPU mappings that come and go: it retries while the GPU holds the tail. */
struct cpu_sender {
	gpuq_chan_t *ch;
	uint32_t id, n;
	uint64_t busy;
	int err;
};

static void *cpu_send_run(void *arg)
{
	struct cpu_sender *s = arg;

	for (uint32_t i = 0; i < s->n;) {
		uint64_t sum = chan_test_sum(s->id, i);
		struct chan_test_msg m = { s->id, i, sum, ~sum, 0 };
		ssize_t r = gpuq_chan_send(s->ch, &m, sizeof(m), 0);

		if (r == (ssize_t)sizeof(m))
			i++;
		else if (r == -EBUSY)
			s->busy++;
		else if (r != -EAGAIN) {
			s->err = (int)r;
			return NULL;
		}
	}
	return NULL;
}

/* Counts every message by (sender, seq); CPU senders' ids start at CPU_ID0. */
#define CPU_ID0 1000000u
struct counter {
	gpuq_chan_t *ch;
	uint32_t gpu_senders, gpu_per, cpu_senders, cpu_per;
	uint64_t want, got, bad;
	uint16_t *count;
	int err;
};

static void *count_run(void *arg)
{
	struct counter *c = arg;

	while (c->got < c->want) {
		struct chan_test_msg m;
		ssize_t r = gpuq_chan_recv(c->ch, &m, sizeof(m), TIMEOUT_MS);
		uint64_t at;

		if (r < 0) {
			c->err = (int)r;
			return NULL;
		}
		c->got++;
		if (r != (ssize_t)sizeof(m) || m.sum != chan_test_sum(m.sender, m.seq) ||
		    m.nsum != ~m.sum) {
			c->bad++;
			continue;
		}
		if (m.sender < c->gpu_senders && m.seq < c->gpu_per)
			at = (uint64_t)m.sender * c->gpu_per + m.seq;
		else if (m.sender >= CPU_ID0 && m.sender - CPU_ID0 < c->cpu_senders &&
			 m.seq < c->cpu_per)
			at = (uint64_t)c->gpu_senders * c->gpu_per +
			     (uint64_t)(m.sender - CPU_ID0) * c->cpu_per + m.seq;
		else {
			c->bad++;
			continue;
		}
		c->count[at]++;
	}
	return NULL;
}

/*
 * CPU senders keep sending while, round after round, a kernel maps the
 * send end, sends, and gives it back: no position is taken twice (every
 * GPU message arrives once a round, every CPU one once, all intact).
 */
START_TEST(test_map_beside_cpu_senders)
{
	enum { ROUNDS = 20, BLOCKS = 4, THREADS = 64, PER = 16, CPUS = 2, CPU_PER = 20000 };
	gpuq_t *q = connect_ok("test_chan_gpu");
	gpuq_chan_t *ch = NULL;
	struct gpuq_dev_chan dc;
	struct cpu_sender snd[CPUS];
	struct counter cnt = { 0 };
	pthread_t sth[CPUS], rth;
	uint64_t n = (uint64_t)BLOCKS * THREADS * PER + CPUS * CPU_PER, wrong = 0, busy = 0;

	ck_assert_int_eq(gpuq_chan_create(q, "mapflip", sizeof(struct chan_test_msg), 256,
					  GPUQ_CHAN_GPU_TO_CPU, &ch),
			 0);
	cnt = (struct counter){ .ch = ch,
				.gpu_senders = BLOCKS * THREADS,
				.gpu_per = PER,
				.cpu_senders = CPUS,
				.cpu_per = CPU_PER,
				.want = (uint64_t)BLOCKS * THREADS * PER * ROUNDS +
					CPUS * CPU_PER };
	cnt.count = calloc(n, sizeof(*cnt.count));
	ck_assert_ptr_nonnull(cnt.count);
	ck_assert_int_eq(pthread_create(&rth, NULL, count_run, &cnt), 0);
	for (unsigned k = 0; k < CPUS; k++) {
		snd[k] = (struct cpu_sender){ .ch = ch, .id = CPU_ID0 + k, .n = CPU_PER };
		ck_assert_int_eq(pthread_create(&sth[k], NULL, cpu_send_run, &snd[k]), 0);
	}
	for (unsigned r = 0; r < ROUNDS; r++) {
		ck_assert_int_eq(gpuq_chan_map_cuda_sender(ch, &dc), 0);
		CK_CUDA(chan_test_produce(dc, BLOCKS, THREADS, PER, 1, 0));
		CK_CUDA(cudaDeviceSynchronize());
		ck_assert_int_eq(gpuq_chan_unmap_cuda_sender(ch, &dc), 0);
		usleep(200);
	}
	for (unsigned k = 0; k < CPUS; k++) {
		pthread_join(sth[k], NULL);
		ck_assert_msg(!snd[k].err, "CPU sender %u: %s", k, strerror(-snd[k].err));
		busy += snd[k].busy;
	}
	pthread_join(rth, NULL);
	ck_assert_msg(!cnt.err, "receiver: %s after %llu", strerror(-cnt.err),
		      (unsigned long long)cnt.got);
	for (uint64_t i = 0; i < n; i++)
		wrong += cnt.count[i] != (i < (uint64_t)BLOCKS * THREADS * PER ? ROUNDS : 1);
	printf("test_chan_gpu: %u map rounds beside %u CPU senders: %llu messages, %llu refusals while held\n",
	       ROUNDS, CPUS, (unsigned long long)cnt.got, (unsigned long long)busy);
	ck_assert_msg(!cnt.bad && !wrong, "%llu corrupt, %llu (sender, seq) counted wrong",
		      (unsigned long long)cnt.bad, (unsigned long long)wrong);
	ck_assert_int_eq(
		gpuq_chan_recv(ch, &(struct chan_test_msg){ 0 }, sizeof(struct chan_test_msg), 0),
		-EAGAIN);
	free(cnt.count);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/* A kernel that ends with its messages unread: they wait in the ring for the CPU. */
START_TEST(test_leftover)
{
	gpuq_t *q = connect_ok("test_chan_gpu");
	gpuq_chan_t *ch = NULL;
	struct gpuq_dev_chan dc;
	struct chan_test_msg m;
	struct checker k;
	ssize_t r;

	ck_assert_int_eq(gpuq_chan_create(q, "leftover", 64, 512, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	ck_assert_int_eq(gpuq_chan_map_cuda(ch, &dc), 0);
	CK_CUDA(chan_test_produce(dc, 2, 64, 3, 1, 0)); /* 384 messages, all fit */
	CK_CUDA(cudaDeviceSynchronize());
	ck_assert_uint_eq(senders_done(ch), 2);
	checker_init(&k, 128, 3);
	while ((r = gpuq_chan_recv(ch, &m, sizeof(m), 0)) > 0)
		checker_add(&k, &m, r);
	ck_assert_int_eq(r, -EAGAIN);
	checker_done(&k, "leftover");
	ck_assert_int_eq(gpuq_chan_unmap_cuda(ch), 0);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/* What a receiver child saw, in memory shared with the test. */
struct rx_log {
	uint64_t count;
	uint32_t bad;
	uint32_t next[]; /* per sender: one past the last seq received */
};

/*
 * A receiver process (forked; no CUDA in it): connects, opens the channel
 * by name, receives want messages checking each sender's order (continuing
 * log->next from whoever received before), and exits.
 */
static void receiver_child(struct rx_log *log, uint32_t nsenders, uint64_t want)
{
	gpuq_chan_t *ch = NULL;
	gpuq_t *q = NULL;
	struct chan_test_msg m;

	if (gpuq_connect(d.sock, &q) || gpuq_chan_open(q, "handover", GPUQ_CHAN_RECV, &ch))
		_exit(2);
	while (log->count < want) {
		ssize_t r = gpuq_chan_recv(ch, &m, sizeof(m), TIMEOUT_MS);

		if (r <= 0)
			_exit(3);
		if (r != (ssize_t)sizeof(m) || m.sender >= nsenders ||
		    m.sum != chan_test_sum(m.sender, m.seq) || m.nsum != ~m.sum ||
		    m.seq != log->next[m.sender])
			log->bad++;
		else
			log->next[m.sender] = m.seq + 1;
		log->count++;
	}
	/* Leave without closing: the next receiver must not depend on a clean goodbye. */
	_exit(0);
}

static void wait_child(pid_t pid, const char *what)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s exited with status %d",
		      what, status);
}

/* A second receiver process takes over the stream when the first exits halfway; the kernel never notices. */
START_TEST(test_receiver_handover)
{
	enum { BLOCKS = 16, THREADS = 64, PER = 32 };
	const uint32_t nsenders = BLOCKS * THREADS;
	const uint64_t total = (uint64_t)nsenders * PER;
	size_t logsz = sizeof(struct rx_log) + nsenders * sizeof(uint32_t);
	gpuq_t *q = connect_ok("test_chan_gpu");
	gpuq_chan_t *ch = NULL;
	struct gpuq_dev_chan dc;
	struct rx_log *log;
	uint32_t i, short_senders = 0;
	pid_t a, b;

	log = mmap(NULL, logsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(log, MAP_FAILED);
	ck_assert_int_eq(gpuq_chan_create(q, "handover", sizeof(struct chan_test_msg), 128,
					  GPUQ_CHAN_GPU_TO_CPU, &ch),
			 0);
	ck_assert_int_eq(gpuq_chan_map_cuda(ch, &dc), 0);
	CK_CUDA(chan_test_produce(dc, BLOCKS, THREADS, PER, 2, 0));
	fflush(NULL);
	a = fork();
	ck_assert_int_ge(a, 0);
	if (a == 0)
		receiver_child(log, nsenders, total / 3);
	wait_child(a, "first receiver");
	ck_assert_uint_eq(log->count, total / 3);
	b = fork();
	ck_assert_int_ge(b, 0);
	if (b == 0)
		receiver_child(log, nsenders, total);
	wait_child(b, "second receiver");
	CK_CUDA(cudaDeviceSynchronize());
	for (i = 0; i < nsenders; i++)
		short_senders += log->next[i] != PER;
	ck_assert_msg(!log->bad && !short_senders && log->count == total,
		      "handover: %llu received, %u bad, %u senders incomplete",
		      (unsigned long long)log->count, log->bad, short_senders);
	munmap(log, logsz);
	ck_assert_int_eq(gpuq_chan_unmap_cuda(ch), 0);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

static Suite *chan_gpu_suite(void)
{
	Suite *s = suite_create("chan_gpu");
	TCase *tc = tcase_create("chan_gpu");

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_stream_single, 0, 2);
	tcase_add_loop_test(tc, test_stream_warp, 0, 2);
	tcase_add_loop_test(tc, test_stream_mixed, 0, 2);
	tcase_add_test(tc, test_stream_long);
	tcase_add_test(tc, test_stream_block);
	tcase_add_loop_test(tc, test_persistent, 0, 12);
	tcase_add_test(tc, test_leftover);
	tcase_add_test(tc, test_receiver_handover);
	tcase_add_test(tc, test_map_beside_cpu_senders);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	harness_seed();
	return gpu_test_main("test_chan_gpu", chan_gpu_suite());
}
