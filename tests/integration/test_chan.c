/* test_chan.c: channels through a real gpuqd: naming, permissions, ordering, backpressure, wakeups, takeover. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "gpuq/gpuq_chan.h"
#include "harness.h"

static struct daemon_proc d;

static void start(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

static void stop(void)
{
	ck_assert_int_eq(harness_stop(&d), 0);
}

static gpuq_t *session(void)
{
	gpuq_t *q = NULL;

	ck_assert_int_eq(gpuq_connect_opts(
				 d.sock,
				 &(struct gpuq_options){ .struct_size = sizeof(struct gpuq_options),
							 .arena_size = 1u << 20 },
				 &q),
			 0);
	return q;
}

/* A message: who sent it, its number, and a checksum over both. */
struct msg {
	uint32_t sender, n;
	uint64_t check;
	uint8_t fill[48];
};

/* Slot sizes of the loop tests: _i 0 gives the TAG format (small slots), 1 the SEQ format. */
#define SLOT(i) ((i) ? 1024u : (unsigned)sizeof(struct msg))

static uint64_t mix(uint32_t s, uint32_t n)
{
	uint64_t x = ((uint64_t)s << 32 | n) * 0x9e3779b97f4a7c15ull;

	return x ^ (x >> 29);
}

static void make_msg(struct msg *m, uint32_t s, uint32_t n)
{
	m->sender = s;
	m->n = n;
	m->check = mix(s, n);
	memset(m->fill, (int)(n & 0xff), sizeof(m->fill));
}

static int msg_ok(const struct msg *m)
{
	size_t i;

	if (m->check != mix(m->sender, m->n))
		return 0;
	/* The last 8 filler bytes may carry a send time. */
	for (i = 0; i < sizeof(m->fill) - 8; i++)
		if (m->fill[i] != (uint8_t)(m->n & 0xff))
			return 0;
	return 1;
}

START_TEST(names_and_errors)
{
	gpuq_t *q = session(), *q2 = session();
	gpuq_chan_t *a, *b;

	ck_assert_int_eq(gpuq_chan_create(q, "bad name", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &a), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &a), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "../etc", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &a), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "ok", 64, 6, GPUQ_CHAN_GPU_TO_CPU, &a), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "ok", 0, 8, GPUQ_CHAN_GPU_TO_CPU, &a), -EINVAL);
	ck_assert_int_eq(gpuq_chan_create(q, "ok", 64, 8, 0, &a), -EINVAL);
	ck_assert_int_eq(
		gpuq_chan_create(q, "ok", 64, 8, GPUQ_CHAN_GPU_TO_CPU | GPUQ_CHAN_CPU_TO_GPU, &a),
		-EINVAL);
	ck_assert_int_eq(gpuq_chan_open(q, "missing", GPUQ_CHAN_RECV, &a), -ENOENT);
	ck_assert_int_eq(gpuq_chan_create(q, "results.v1", 100, 8, GPUQ_CHAN_GPU_TO_CPU, &a), 0);
	ck_assert_int_eq(gpuq_chan_create(q2, "results.v1", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &b),
			 -EEXIST);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(q2), "exists"));
	{
		size_t slot;
		unsigned n, dir;

		ck_assert_int_eq(gpuq_chan_info(a, &slot, &n, &dir, NULL, NULL), 0);
		ck_assert_uint_eq(slot, 112); /* rounded up to 16 */
		ck_assert_uint_eq(n, 8);
		ck_assert_uint_eq(dir, GPUQ_CHAN_GPU_TO_CPU);
	}
	/* The name lives while anyone has it open; then it is free again. */
	ck_assert_int_eq(gpuq_chan_open(q2, "results.v1", GPUQ_CHAN_RECV, &b), 0);
	gpuq_chan_close(a);
	ck_assert_int_eq(gpuq_chan_create(q, "results.v1", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &a),
			 -EEXIST);
	gpuq_chan_close(b);
	ck_assert_int_eq(gpuq_chan_create(q, "results.v1", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &a), 0);
	gpuq_chan_close(a);
	gpuq_close(q2);
	gpuq_close(q);
}
END_TEST

START_TEST(send_recv_and_sizes)
{
	gpuq_t *q = session();
	gpuq_chan_t *tx, *rx;
	char buf[1024], big[1100];
	unsigned slot = _i ? 1024 : 256;
	ssize_t n;

	ck_assert_int_eq(gpuq_chan_create(q, "pipe", slot, 16, GPUQ_CHAN_CPU_TO_GPU, &tx), 0);
	ck_assert_int_eq(gpuq_chan_open(q, "pipe", GPUQ_CHAN_RECV, &rx), 0);
	ck_assert_int_eq(gpuq_chan_recv(rx, buf, sizeof(buf), 0), -EAGAIN);
	ck_assert_int_eq(gpuq_chan_recv(rx, buf, sizeof(buf), 30), -ETIMEDOUT);
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(gpuq_chan_send(tx, big, slot + 1, 0), -EMSGSIZE);
	ck_assert_int_eq(gpuq_chan_send(tx, "hello", 5, 0), 5);
	ck_assert_int_eq(gpuq_chan_send(tx, big, slot, 0), (ssize_t)slot);
	ck_assert_int_eq(gpuq_chan_send(tx, "", 0, 0), 0);
	n = gpuq_chan_recv(rx, buf, sizeof(buf), 1000);
	ck_assert_int_eq(n, 5);
	ck_assert_mem_eq(buf, "hello", 5);
	/* A short buffer gets the start; the return value says how long it was. */
	n = gpuq_chan_recv(rx, buf, 10, 1000);
	ck_assert_int_eq(n, (ssize_t)slot);
	ck_assert_mem_eq(buf, big, 10);
	ck_assert_int_eq(gpuq_chan_recv(rx, buf, sizeof(buf), 1000), 0);
	gpuq_chan_close(rx);
	gpuq_chan_close(tx);
	gpuq_close(q);
}
END_TEST

START_TEST(full_ring_backpressure)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	struct msg m;
	int i;

	ck_assert_int_eq(gpuq_chan_create(q, "tiny", SLOT(_i), 4, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
	for (i = 0; i < 4; i++) {
		make_msg(&m, 0, (uint32_t)i);
		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	}
	/* Full: a sender waits or gives up; it never overwrites. */
	make_msg(&m, 0, 99);
	ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), -EAGAIN);
	ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 20), -ETIMEDOUT);
	ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert(msg_ok(&m) && m.n == 0);
	make_msg(&m, 0, 4);
	ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	for (i = 1; i <= 4; i++) {
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
		ck_assert(msg_ok(&m));
		ck_assert_uint_eq(m.n, (uint32_t)i);
	}
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

static int sender_proc(const char *sock, const char *name, uint32_t id, uint32_t count)
{
	gpuq_t *q;
	gpuq_chan_t *ch;
	struct msg m;
	uint32_t i;

	if (gpuq_connect(sock, &q) || gpuq_chan_open(q, name, GPUQ_CHAN_SEND, &ch))
		return 10;
	for (i = 0; i < count; i++) {
		make_msg(&m, id, i);
		if (gpuq_chan_send(ch, &m, sizeof(m), 10000) != (ssize_t)sizeof(m))
			return 11;
	}
	gpuq_chan_close(ch);
	gpuq_close(q);
	return 0;
}

START_TEST(many_senders_order_and_integrity)
{
	enum { SENDERS = 4, COUNT = 20000 };
	static uint32_t next[SENDERS];
	gpuq_t *q = session();
	gpuq_chan_t *rx;
	struct msg m[32];
	size_t lens[32];
	pid_t pids[SENDERS];
	unsigned got = 0;
	int i, st;

	ck_assert_int_eq(gpuq_chan_create(q, "fanin", SLOT(_i), 64, GPUQ_CHAN_CPU_TO_GPU, &rx), 0);
	for (i = 0; i < SENDERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(sender_proc(d.sock, "fanin", (uint32_t)i, COUNT));
	}
	while (got < SENDERS * COUNT) {
		int n = gpuq_chan_recv_batch(rx, m, sizeof(m[0]), lens, 32, 10000), k;

		ck_assert_int_gt(n, 0);
		for (k = 0; k < n; k++) {
			ck_assert_uint_eq(lens[k], sizeof(struct msg));
			ck_assert(msg_ok(&m[k]));
			ck_assert_uint_lt(m[k].sender, SENDERS);
			/* Per sender, in the order sent; no loss, no duplicate. */
			ck_assert_uint_eq(m[k].n, next[m[k].sender]);
			next[m[k].sender]++;
		}
		got += (unsigned)n;
	}
	for (i = 0; i < SENDERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	ck_assert_int_eq(gpuq_chan_recv(rx, m, sizeof(m[0]), 0), -EAGAIN);
	gpuq_chan_close(rx);
	gpuq_close(q);
}
END_TEST

/*
 * Several receiver processes share a channel, each taking batches (copy a
 * run of messages, claim the run with one compare-and-swap, keep the part
 * another receiver did not claim first): every message must reach exactly
 * one of them, intact, and each receiver sees each sender's messages in
 * order.
 */
START_TEST(many_receivers_batches)
{
	enum { SENDERS = 3, RECEIVERS = 3, COUNT = 20000 };
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	uint8_t *seen;
	unsigned *got;
	pid_t pids[SENDERS + RECEIVERS];
	int i, st;

	seen = mmap(NULL, SENDERS * COUNT + 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		    -1, 0);
	ck_assert_ptr_ne(seen, MAP_FAILED);
	got = (unsigned *)(seen + SENDERS * COUNT);
	ck_assert_int_eq(gpuq_chan_create(q, "fanout", SLOT(_i), 32, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	for (i = 0; i < RECEIVERS; i++) {
		pids[SENDERS + i] = fork();
		if (pids[SENDERS + i] == 0) {
			gpuq_t *c;
			gpuq_chan_t *rx;
			struct msg m[16];
			size_t lens[16];
			int64_t last[SENDERS] = { -1, -1, -1 };

			if (gpuq_connect(d.sock, &c) ||
			    gpuq_chan_open(c, "fanout", GPUQ_CHAN_RECV, &rx))
				_exit(10);
			while (__atomic_load_n(got, __ATOMIC_ACQUIRE) < SENDERS * COUNT) {
				int n = gpuq_chan_recv_batch(rx, m, sizeof(m[0]), lens, 16, 20), k;

				if (n == -ETIMEDOUT)
					continue;
				if (n <= 0)
					_exit(11);
				for (k = 0; k < n; k++) {
					if (lens[k] != sizeof(m[0]) || !msg_ok(&m[k]) ||
					    m[k].sender >= SENDERS || m[k].n >= COUNT ||
					    (int64_t)m[k].n <= last[m[k].sender])
						_exit(12);
					last[m[k].sender] = m[k].n;
					if (__atomic_fetch_add(&seen[m[k].sender * COUNT + m[k].n],
							       1, __ATOMIC_RELAXED))
						_exit(13);
				}
				__atomic_fetch_add(got, (unsigned)n, __ATOMIC_RELEASE);
			}
			_exit(0);
		}
	}
	for (i = 0; i < SENDERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(sender_proc(d.sock, "fanout", (uint32_t)i, COUNT));
	}
	for (i = 0; i < SENDERS + RECEIVERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %d exited with %d",
			      i < SENDERS ? "sender" : "receiver", i,
			      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	for (i = 0; i < SENDERS * COUNT; i++)
		ck_assert_msg(seen[i] == 1, "message %d seen %u times", i, seen[i]);
	ck_assert_uint_eq(*got, SENDERS * COUNT);
	munmap(seen, SENDERS * COUNT + 64);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/*
 * Sends the way a kernel does: straight into the shared ring, without
 * touching the eventfd. Only gpuqd can wake a receiver that sleeps.
 */
static void raw_put(struct gpuq_chan_hdr *h, uint64_t pos, const void *msg, uint32_t len)
{
	/* Room once the slot's last-lap message has been read (head past it). */
	while (pos - (__atomic_load_n(&h->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD) >= h->nslots)
		;
	if (h->format == GPUQ_CHAN_FMT_TAG) {
		uint64_t *wd = (uint64_t *)((uint8_t *)h + h->slots_off +
					    (pos & (h->nslots - 1)) * h->stride);
		uint64_t tag = (uint64_t)gpuq_chan_tag(pos, gpuq_chan_lap_shift(h->nslots), len)
			       << 32;
		uint64_t rest = (uint64_t)gpuq_chan_tag_rest(pos, gpuq_chan_lap_shift(h->nslots))
				<< 32;
		uint32_t i;

		/* Every word with its tag; in no particular order, like a GPU's stores. */
		for (i = 0; i < 2 * gpuq_chan_tag_units(len); i++) {
			uint32_t v = 0;

			if (4 * i < len)
				memcpy(&v, (const uint8_t *)msg + 4 * i,
				       len - 4 * i < 4 ? len - 4 * i : 4);
			__atomic_store_n(&wd[i], (i < 2 ? tag : rest) | v, __ATOMIC_RELAXED);
		}
		return;
	}
	struct gpuq_chan_slot *s = gpuq_chan_slot_at(h, pos);

	memcpy(s + 1, msg, len);
	s->len = len;
	__atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
}

static void raw_send(gpuq_chan_t *ch, const void *msg, uint32_t len)
{
	struct gpuq_chan_hdr *h;

	gpuq_chan_info(ch, NULL, NULL, NULL, (void **)&h, NULL);
	raw_put(h, __atomic_fetch_add(&h->tail, 1, __ATOMIC_ACQ_REL), msg, len);
}

static struct gpuq_chan_hdr *hdr_of(gpuq_chan_t *ch)
{
	void *mem = NULL;

	gpuq_chan_info(ch, NULL, NULL, NULL, &mem, NULL);
	return mem;
}

/* Waits (up to 5 s) for gpuqd to clear an owner mark after its session ended. */
static int wait_cleared(uint32_t *field)
{
	for (int i = 0; i < 5000; i++) {
		if (!__atomic_load_n(field, __ATOMIC_ACQUIRE))
			return 1;
		usleep(1000);
	}
	return 0;
}

/* An end taken for a GPU: CPU users of that end and a second owner are refused until it is given back. */
START_TEST(owned_ends)
{
	gpuq_t *q = session(), *q2 = session();
	gpuq_chan_t *ch, *other;
	struct msg m;

	ck_assert_int_eq(gpuq_chan_create(q, "owned", SLOT(_i), 8, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	ck_assert_int_eq(gpuq_chan_open(q2, "owned", GPUQ_CHAN_SEND | GPUQ_CHAN_RECV, &other), 0);
	make_msg(&m, 0, 0);
	ck_assert_int_eq(gpuq_chan_own(ch, GPUQ_CHAN_SEND, 1), 0);
	ck_assert_int_eq(gpuq_chan_own(ch, GPUQ_CHAN_SEND, 1), -EBUSY);
	ck_assert_int_eq(gpuq_chan_own(other, GPUQ_CHAN_SEND, 1), -EBUSY);
	ck_assert_int_eq(gpuq_chan_own(other, GPUQ_CHAN_SEND, 0),
			 -EINVAL); /* not its to give back */
	ck_assert_int_eq(gpuq_chan_own(ch, 7, 1), -EINVAL);
	ck_assert_int_eq(gpuq_chan_send(other, &m, sizeof(m), 0), -EBUSY);
	ck_assert_int_eq(gpuq_chan_own(ch, GPUQ_CHAN_SEND, 0), 0);
	ck_assert_int_eq(gpuq_chan_send(other, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(gpuq_chan_own(other, GPUQ_CHAN_RECV, 1), 0);
	ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), -EBUSY);
	/* Closing a channel gives back what the session owned of it, held bit included. */
	__atomic_fetch_or(&hdr_of(ch)->head, GPUQ_CHAN_HELD, __ATOMIC_SEQ_CST);
	gpuq_chan_close(other);
	ck_assert_uint_eq(hdr_of(ch)->rx_owner, 0);
	ck_assert_uint_eq(hdr_of(ch)->head & GPUQ_CHAN_HELD, 0);
	/*
	 * A held bit nobody owns (a dead owner's kernels stored head after
	 * gpuqd let the end go) is let go by the next CPU user, who goes on.
	 */
	__atomic_fetch_or(&hdr_of(ch)->head, GPUQ_CHAN_HELD, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert(msg_ok(&m));
	ck_assert_uint_eq(hdr_of(ch)->head, 1);
	__atomic_fetch_or(&hdr_of(ch)->tail, GPUQ_CHAN_HELD, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_uint_eq(hdr_of(ch)->tail, 2);
	ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	gpuq_chan_close(ch);
	gpuq_close(q2);
	gpuq_close(q);
}
END_TEST

/*
 * A process whose "kernels" own the send end dies mid-stream: it filled two
 * positions from its own counter (as a sender mapping does), wrote only the
 * first unit of a third, and filled a fourth whole. gpuqd clears the mark,
 * sets tail back to the third and empties the slots after it: the two
 * messages are read, and CPU senders carry on after them, their messages
 * never mistaken for the dead sender's leftovers.
 * A dead owner of the receive end is cleared likewise.
 */
START_TEST(owner_dies_others_take_over)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	struct msg m;
	pid_t pid;
	int st;

	ck_assert_int_eq(
		gpuq_chan_create(q, "orphan", SLOT(_i), 8, GPUQ_CHAN_GPU_TO_CPU | 0666, &ch), 0);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		gpuq_t *c;
		gpuq_chan_t *mine;
		struct msg k;

		if (gpuq_connect(d.sock, &c) ||
		    gpuq_chan_open(c, "orphan", GPUQ_CHAN_SEND | GPUQ_CHAN_RECV, &mine) ||
		    gpuq_chan_own(mine, GPUQ_CHAN_SEND, 1) ||
		    gpuq_chan_own(mine, GPUQ_CHAN_RECV, 1))
			_exit(10);
		struct gpuq_chan_hdr *h = hdr_of(mine);
		uint64_t next = h->tail; /* the "device counter" */

		/* Held, as the mappings hold them. */
		__atomic_fetch_or(&h->tail, GPUQ_CHAN_HELD, __ATOMIC_SEQ_CST);
		__atomic_fetch_or(&h->head, GPUQ_CHAN_HELD, __ATOMIC_SEQ_CST);
		for (uint32_t i = 0; i < 2; i++) {
			make_msg(&k, 7, i);
			raw_put(h, next++, &k, sizeof(k));
		}
		if (h->format == GPUQ_CHAN_FMT_TAG) {
			/* Killed halfway through a message: its first unit landed, the rest did not. */
			uint64_t *w = (uint64_t *)((uint8_t *)h + h->slots_off +
						   (next & (h->nslots - 1)) * h->stride);
			uint64_t tag = (uint64_t)gpuq_chan_tag(next, gpuq_chan_lap_shift(h->nslots),
							       sizeof(k))
				       << 32;

			w[0] = tag | 1;
			w[1] = tag | 2;
		}
		next++; /* taken, never filled whole */
		make_msg(&k, 7, 99);
		raw_put(h, next++, &k,
			sizeof(k)); /* whole, but after the gap: must not pass for a later sender's */
		_exit(0);           /* no give-back, no close */
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_msg(wait_cleared(&hdr_of(ch)->tail_owner),
		      "gpuqd did not clear the dead sender's mark");
	ck_assert_msg(wait_cleared(&hdr_of(ch)->rx_owner),
		      "gpuqd did not clear the dead receiver's mark");
	ck_assert_uint_eq(hdr_of(ch)->tail, 2);
	ck_assert_uint_eq(hdr_of(ch)->head, 0); /* let go, at the position it had */
	for (uint32_t i = 0; i < 2; i++) {
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
		ck_assert(msg_ok(&m) && m.sender == 7 && m.n == i);
	}
	/* CPU senders carry on at the gap; the dead sender's leftovers never come out. */
	for (uint32_t i = 0; i < 3; i++) {
		make_msg(&m, 1, i);
		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
		ck_assert_msg(msg_ok(&m) && m.sender == 1 && m.n == i, "got sender %u n %u",
			      m.sender, m.n);
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), -EAGAIN);
	}
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

START_TEST(sleeping_receiver_woken_by_gpuqd)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch, *rx;
	struct msg m;
	pid_t pid;
	int st;

	ck_assert_int_eq(gpuq_chan_create(q, "kernel-out", SLOT(_i), 16, GPUQ_CHAN_GPU_TO_CPU, &ch),
			 0);
	pid = fork();
	if (pid == 0) {
		gpuq_t *c;
		int code = 0, i;

		if (gpuq_connect(d.sock, &c) ||
		    gpuq_chan_open(c, "kernel-out", GPUQ_CHAN_RECV, &rx))
			_exit(10);
		for (i = 0; i < 5; i++) {
			struct timespec now;
			uint64_t sent, late;
			ssize_t r;

			/* Blocks well past its spin, asleep: only gpuqd's watcher can wake it. */
			r = gpuq_chan_recv(rx, &m, sizeof(m), 5000);
			if (r != (ssize_t)sizeof(m) || !msg_ok(&m) || m.n != (uint32_t)i) {
				fprintf(stderr, "message %d: recv %zd, n %u\n", i, r, m.n);
				code = 11;
				continue;
			}
			/*
			 * Woken by gpuqd within microseconds; without it only the
			 * receiver's one-second safety poll would find the message,
			 * about 950 ms late (it sleeps ~50 ms before the send).
			 * The bound leaves room for a loaded machine (make -j
			 * runs suites side by side).
			 */
			clock_gettime(CLOCK_MONOTONIC, &now);
			memcpy(&sent, m.fill + 40, sizeof(sent));
			late = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec - sent;
			if (late > 600000000ull) {
				fprintf(stderr, "message %d: received %.1f ms after it was sent\n",
					i, late / 1e6);
				code = 12;
			}
		}
		_exit(code);
	}
	for (uint32_t i = 0; i < 5; i++) {
		struct timespec now;
		uint64_t t;

		usleep(50000);
		make_msg(&m, 1, i);
		/* The send time rides in the filler's last bytes, which msg_ok leaves alone. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		t = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
		memcpy(m.fill + 40, &t, sizeof(t));
		raw_send(ch, &m, sizeof(m));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "receiver failed: %d (11: a wrong message, 12: woken late)", WEXITSTATUS(st));
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * A CPU sender waking a sleeping CPU receiver (gpuq_chan_send to a
 * blocking gpuq_chan_recv past its spin): prints the median and p90 of
 * send-to-receive over 50 rounds, and fails only on a wake so late that it
 * was missed (the receiver's one-second safety poll).
 */
START_TEST(wake_latency)
{
	gpuq_t *q = session();
	gpuq_chan_t *tx, *rx;
	uint64_t lat[50];
	int fds[2];
	pid_t pid;
	int st;

	ck_assert_int_eq(gpuq_chan_create(q, "wake", SLOT(_i), 16, GPUQ_CHAN_CPU_TO_GPU, &tx), 0);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		gpuq_t *c;
		struct msg m;
		int i;

		close(fds[0]);
		if (gpuq_connect(d.sock, &c) || gpuq_chan_open(c, "wake", GPUQ_CHAN_RECV, &rx))
			_exit(10);
		for (i = 0; i < 50; i++) {
			uint64_t sent, t;

			if (gpuq_chan_recv(rx, &m, sizeof(m), 5000) != (ssize_t)sizeof(m))
				_exit(11);
			t = mono_ns();
			memcpy(&sent, m.fill + 40, sizeof(sent));
			t -= sent;
			if (write(fds[1], &t, sizeof(t)) != sizeof(t))
				_exit(12);
		}
		_exit(0);
	}
	close(fds[1]);
	usleep(100000);
	for (uint32_t i = 0; i < 50; i++) {
		struct msg m;
		uint64_t t;

		usleep(5000); /* the receiver is asleep by now (it spins 50 us) */
		make_msg(&m, 1, i);
		t = mono_ns();
		memcpy(m.fill + 40, &t, sizeof(t));
		ck_assert_int_eq(gpuq_chan_send(tx, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
		ck_assert_int_eq(read(fds[0], &lat[i], sizeof(lat[i])), (ssize_t)sizeof(lat[i]));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "receiver: %d", WEXITSTATUS(st));
	close(fds[0]);
	qsort(lat, 50, sizeof(lat[0]), cmp_u64);
	fprintf(stderr, "wake_latency (%s slots): median %.1f us, p90 %.1f us, max %.1f us\n",
		_i ? "SEQ" : "TAG", lat[25] / 1e3, lat[45] / 1e3, lat[49] / 1e3);
	ck_assert_msg(lat[45] < 500000000ull, "wakes missed: p90 %.1f ms", lat[45] / 1e6);
	gpuq_chan_close(tx);
	gpuq_close(q);
}
END_TEST

START_TEST(fd_for_event_loops)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	struct msg m;
	int fd, i;

	ck_assert_int_eq(gpuq_chan_create(q, "evloop", SLOT(_i), 16, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	fd = gpuq_chan_fd(ch);
	ck_assert_int_ge(fd, 0);
	for (i = 0; i < 20; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 0), 0);
		make_msg(&m, 2, (uint32_t)i);
		raw_send(ch, &m, sizeof(m)); /* no wake from the sender: gpuqd must ring */
		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
		ck_assert_uint_eq(m.n, (uint32_t)i);
	}
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

START_TEST(receiver_dies_another_takes_over)
{
	enum { TOTAL = 1000 };
	gpuq_t *q = session();
	gpuq_chan_t *ch, *rx;
	static int seen[TOTAL];
	struct msg m;
	int pipefd[2], st, i, first = 0;
	pid_t pid;

	ck_assert_int_eq(gpuq_chan_create(q, "work", SLOT(_i), 2048, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
	for (i = 0; i < TOTAL; i++) {
		make_msg(&m, 3, (uint32_t)i);
		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	}
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	if (pid == 0) {
		gpuq_t *c;

		if (gpuq_connect(d.sock, &c) || gpuq_chan_open(c, "work", GPUQ_CHAN_RECV, &rx))
			_exit(10);
		for (i = 0; i < 300; i++) {
			if (gpuq_chan_recv(rx, &m, sizeof(m), 1000) != (ssize_t)sizeof(m))
				_exit(11);
			if (write(pipefd[1], &m.n, sizeof(m.n)) != sizeof(m.n))
				_exit(12);
		}
		_exit(0); /* dies without closing anything */
	}
	close(pipefd[1]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	{
		uint32_t n;

		while (read(pipefd[0], &n, sizeof(n)) == sizeof(n)) {
			ck_assert_uint_lt(n, TOTAL);
			seen[n]++;
			first++;
		}
	}
	close(pipefd[0]);
	ck_assert_int_eq(first, 300);
	/* The next receiver continues exactly where the dead one stopped. */
	ck_assert_int_eq(gpuq_chan_open(q, "work", GPUQ_CHAN_RECV, &rx), 0);
	for (i = 300; i < TOTAL; i++) {
		ck_assert_int_eq(gpuq_chan_recv(rx, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
		ck_assert(msg_ok(&m));
		seen[m.n]++;
	}
	for (i = 0; i < TOTAL; i++)
		ck_assert_int_eq(seen[i], 1);
	gpuq_chan_close(rx);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

START_TEST(messages_outlive_their_sender)
{
	gpuq_t *q = session(), *s = session();
	gpuq_chan_t *tx, *rx;
	struct msg m;
	int i;

	ck_assert_int_eq(gpuq_chan_create(q, "leftovers", SLOT(_i), 8, GPUQ_CHAN_CPU_TO_GPU, &rx),
			 0);
	ck_assert_int_eq(gpuq_chan_open(s, "leftovers", GPUQ_CHAN_SEND, &tx), 0);
	for (i = 0; i < 5; i++) {
		make_msg(&m, 4, (uint32_t)i);
		ck_assert_int_eq(gpuq_chan_send(tx, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	}
	/* The sender is gone, session and all, before anything was read. */
	gpuq_chan_close(tx);
	gpuq_close(s);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(gpuq_chan_recv(rx, &m, sizeof(m), 0), (ssize_t)sizeof(m));
		ck_assert_uint_eq(m.n, (uint32_t)i);
	}
	gpuq_chan_close(rx);
	gpuq_close(q);
}
END_TEST

START_TEST(corrupt_header_harms_nobody)
{
	gpuq_t *q = session(), *o = session();
	gpuq_chan_t *ch, *rx;
	struct gpuq_chan_hdr *h;
	struct msg m;

	ck_assert_int_eq(gpuq_chan_create(q, "vandal", sizeof(m), 8, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
	ck_assert_int_eq(gpuq_chan_open(o, "vandal", GPUQ_CHAN_RECV, &rx), 0);
	ck_assert_int_eq(gpuq_chan_info(ch, NULL, NULL, NULL, (void **)&h, NULL), 0);
	/* The fixed page (geometry, owner marks) is read-only to every opener, and stays so. */
	ck_assert_int_eq(mprotect(h, GPUQ_CHAN_FIXED_SIZE, PROT_READ | PROT_WRITE), -1);
	ck_assert_int_eq(errno, EACCES);
	/* What a user may write, it can scribble on: wakeups, sleepers, another opener's pending row. */
	__atomic_store_n(&h->rx_waiting, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&h->rx_sleepers, 1000, __ATOMIC_SEQ_CST);
	memset(h->pending[GPUQ_CHAN_SENDERS_MAX - 1], 0xff, sizeof(h->pending[0]));
	usleep(50000); /* gpuqd's watcher looks at this channel meanwhile */
	ck_assert(harness_alive(&d));
	/* Nobody uses the scribbled geometry: the ring still works for everyone. */
	make_msg(&m, 5, 1);
	ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(gpuq_chan_recv(rx, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
	ck_assert(msg_ok(&m) && m.n == 1);
	gpuq_chan_close(rx);
	gpuq_chan_close(ch);
	gpuq_close(o);
	gpuq_close(q);
}
END_TEST

/* The shared memory of ch, and its size. */
static uint8_t *mem_of(gpuq_chan_t *ch, size_t *size)
{
	void *mem = NULL;

	ck_assert_int_eq(gpuq_chan_info(ch, NULL, NULL, NULL, &mem, size), 0);
	return mem;
}

/*
 * Can this process store to p? The kernel's copy into p answers without a
 * fault in this process (so it works under sanitizers too): a read from a
 * pipe into a read-only page fails with EFAULT.
 */
static int writable(void *p)
{
	uint64_t v = 12345;
	int fds[2], r;

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], &v, sizeof(v)), (ssize_t)sizeof(v));
	r = read(fds[0], p, sizeof(v)) == (ssize_t)sizeof(v) ? 1 : errno == EFAULT ? 0 : -1;
	close(fds[0]);
	close(fds[1]);
	return r;
}

/*
 * The modes are the mappings: a receive-only opener has the sender region
 * (slots, tail) read-only and cannot make it writable; a send-only opener
 * likewise the receiver page (head). The fixed page is read-only to all.
 * The library refuses the other end's calls with -EBADF, and gpuqd
 * refuses to let a GPU take an end the opener was not granted.
 */
START_TEST(modes_enforced_by_mappings)
{
	gpuq_t *q = session(), *qr = session(), *qs = session();
	gpuq_chan_t *ch, *rx, *tx;
	uint8_t *mr, *ms;
	size_t size;
	struct msg m;

	ck_assert_int_eq(gpuq_chan_create(q, "modes", SLOT(_i), 8, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
	ck_assert_int_eq(gpuq_chan_ends(ch), (int)(GPUQ_CHAN_SEND | GPUQ_CHAN_RECV));
	ck_assert_int_eq(gpuq_chan_open(qr, "modes", GPUQ_CHAN_RECV, &rx), 0);
	ck_assert_int_eq(gpuq_chan_open(qs, "modes", GPUQ_CHAN_SEND, &tx), 0);
	ck_assert_int_eq(gpuq_chan_ends(rx), (int)GPUQ_CHAN_RECV);
	ck_assert_int_eq(gpuq_chan_ends(tx), (int)GPUQ_CHAN_SEND);
	mr = mem_of(rx, &size);
	ms = mem_of(tx, NULL);

	/* Receive-only: slots and tail stay read-only; head is its to write. */
	ck_assert_int_eq(
		mprotect(mr + GPUQ_CHAN_TX_OFF, size - GPUQ_CHAN_TX_OFF, PROT_READ | PROT_WRITE),
		-1);
	ck_assert_int_eq(errno, EACCES);
	ck_assert_int_eq(mprotect(mr, GPUQ_CHAN_FIXED_SIZE, PROT_READ | PROT_WRITE), -1);
	ck_assert_int_eq(writable(mr + GPUQ_CHAN_HDR_SIZE), 0);             /* a slot */
	ck_assert_int_eq(writable(&((struct gpuq_chan_hdr *)mr)->tail), 0); /* tail */
	ck_assert_int_eq(writable(&((struct gpuq_chan_hdr *)mr)->rx_waiting), 1);
	make_msg(&m, 1, 1);
	ck_assert_int_eq(gpuq_chan_send(rx, &m, sizeof(m), 0), -EBADF);
	ck_assert_int_eq(gpuq_chan_own(rx, GPUQ_CHAN_SEND, 1), -EACCES);
	ck_assert_ptr_nonnull(strstr(gpuq_errmsg(qr), "not opened for sending"));

	/* Send-only: head stays read-only (it cannot consume); slots and tail are its to write. */
	ck_assert_int_eq(mprotect(ms + GPUQ_CHAN_RX_OFF, GPUQ_CHAN_RX_SIZE, PROT_READ | PROT_WRITE),
			 -1);
	ck_assert_int_eq(errno, EACCES);
	ck_assert_int_eq(writable(&((struct gpuq_chan_hdr *)ms)->head), 0);
	ck_assert_int_eq(gpuq_chan_recv(tx, &m, sizeof(m), 0), -EBADF);
	ck_assert_int_eq(gpuq_chan_fd(tx), -EBADF);
	ck_assert_int_eq(gpuq_chan_own(tx, GPUQ_CHAN_RECV, 1), -EACCES);

	/* Each does what it was granted. */
	ck_assert_int_eq(gpuq_chan_send(tx, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(gpuq_chan_recv(rx, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
	ck_assert(msg_ok(&m) && m.n == 1);
	ck_assert_int_eq(gpuq_chan_own(rx, GPUQ_CHAN_RECV, 1), 0);
	ck_assert_int_eq(gpuq_chan_own(rx, GPUQ_CHAN_RECV, 0), 0);
	gpuq_chan_close(tx);
	gpuq_chan_close(rx);
	gpuq_chan_close(ch);
	gpuq_close(qs);
	gpuq_close(qr);
	gpuq_close(q);
}
END_TEST

/* A raw ChanOpen / ChanCreate on fd, name given with its length. */
static void raw_chan_req(int fd, int create, const char *name, size_t len, int send, int recv)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__ChanOpen co = GPUQ__CHAN_OPEN__INIT;
	Gpuq__ChanCreate cc = GPUQ__CHAN_CREATE__INIT;

	req.seq = 9;
	if (create) {
		cc.name.data = (uint8_t *)name;
		cc.name.len = len;
		cc.slot_size = 64;
		cc.nslots = 8;
		cc.direction = GPUQ_CHAN_DIR_GPU_TO_CPU;
		req.body_case = GPUQ__MSG__BODY_CHAN_CREATE;
		req.chan_create = &cc;
	} else {
		co.name.data = (uint8_t *)name;
		co.name.len = len;
		co.send = send;
		co.recv = recv;
		req.body_case = GPUQ__MSG__BODY_CHAN_OPEN;
		req.chan_open = &co;
	}
	ck_assert_int_eq(harness_raw_send_msg(fd, &req), 0);
}

static void raw_expect_error(int fd, int code, const char *text)
{
	Gpuq__Msg *m = harness_raw_recv(fd, 5000);

	ck_assert_msg(m != NULL, "no reply (expected error %d)", code);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_ERROR);
	ck_assert_int_eq(m->error->code, code);
	ck_assert_msg(strstr(m->error->message, text), "error '%s' lacks '%s'", m->error->message,
		      text);
	frame_free(m);
}

/*
 * What libgpuq never sends, gpuqd refuses on its own: an open asking for
 * neither end (it would hand out the memory unchecked), and names with a
 * NUL inside (which a C string would cut short: "abc\0evl" is not "abc").
 */
START_TEST(raw_opens_refused)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch, *other;
	Gpuq__Msg *m;
	int fd = harness_raw_connect(&d);

	ck_assert_int_ge(fd, 0);
	m = harness_raw_hello(fd, GPUQ_PROTO_VERSION);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_WELCOME);
	frame_free(m);
	ck_assert_int_eq(gpuq_chan_create(q, "secret", 64, 8, GPUQ_CHAN_GPU_TO_CPU | 0600, &ch), 0);
	raw_chan_req(fd, 0, "secret", 6, 0, 0);
	raw_expect_error(fd, -EINVAL, "ask for send, receive or both");
	raw_chan_req(fd, 1, "abc\0evl", 7, 0, 0);
	raw_expect_error(fd, -EINVAL, "no NUL");
	raw_chan_req(fd, 0, "secret\0x", 8, 0, 1);
	raw_expect_error(fd, -EINVAL, "no NUL");
	raw_chan_req(fd, 1, "", 0, 0, 0);
	raw_expect_error(fd, -EINVAL, "invalid channel name");
	ck_assert_int_eq(gpuq_chan_open(q, "abc", GPUQ_CHAN_RECV, &other), -ENOENT);
	ck_assert(harness_alive(&d));
	gpuq_chan_close(ch);
	close(fd);
	gpuq_close(q);
}
END_TEST

/* A 512 MiB channel costs nothing until used: gpuqd's memory does not grow by it at creation. */
static long daemon_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)d.pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssShmem: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

START_TEST(big_channel_untouched)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	long before, after;
	struct msg m;

	before = daemon_rss_kib();
	/* Over 512 MiB: 128 Ki slots of 4 KiB (SEQ format, whose slots were once stamped one by one). */
	ck_assert_int_eq(gpuq_chan_create(q, "big", 4096, 128u << 10, GPUQ_CHAN_CPU_TO_GPU, &ch),
			 0);
	after = daemon_rss_kib();
	ck_assert_int_ge(before, 0);
	ck_assert_msg(after - before < 1024, "gpuqd's shared memory grew by %ld KiB",
		      after - before);
	make_msg(&m, 1, 1);
	ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert(msg_ok(&m));
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/* Sums the voluntary context switches of every gpuqd thread. */
static long daemon_switches(void)
{
	char path[96], line[256];
	long total = 0, v;
	int tid;
	FILE *f;
	FILE *ls;

	snprintf(path, sizeof(path), "ls /proc/%d/task", (int)d.pid);
	ls = popen(path, "r");
	if (!ls)
		return -1;
	while (fscanf(ls, "%d", &tid) == 1) {
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)d.pid, tid);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
				total += v;
		fclose(f);
	}
	pclose(ls);
	return total;
}

/*
 * A client that keeps rx_waiting and rx_sleepers set with nothing to
 * receive does not keep gpuqd's watcher polling every 20 us: after its
 * linger the channel is looked at every millisecond. A message then still
 * reaches an event loop.
 */
START_TEST(watcher_polling_bounded)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	struct gpuq_chan_hdr *h;
	struct pollfd p;
	long s0, s1;
	struct msg m;

	ck_assert_int_eq(gpuq_chan_create(q, "nagger", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &ch), 0);
	h = hdr_of(ch);
	__atomic_store_n(&h->rx_sleepers, 5, __ATOMIC_SEQ_CST);
	__atomic_store_n(&h->rx_waiting, 1, __ATOMIC_SEQ_CST);
	usleep(300000); /* past the linger */
	s0 = daemon_switches();
	usleep(500000);
	s1 = daemon_switches();
	ck_assert_int_ge(s0, 0);
	/* 1 ms polling: ~500 sleeps (and timer slack makes 20 us polling ~7000). */
	fprintf(stderr, "watcher_polling_bounded: gpuqd slept %ld times in 500 ms\n", s1 - s0);
	ck_assert_msg(s1 - s0 < 1500, "gpuqd slept %ld times in 500 ms", s1 - s0);
	p.fd = gpuq_chan_fd(ch);
	p.events = POLLIN;
	make_msg(&m, 3, 3);
	raw_send(ch, &m, sizeof(m));
	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	__atomic_store_n(&h->rx_sleepers, 0, __ATOMIC_SEQ_CST);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/*
 * A sender that dies right after taking a position: it puts the position
 * on record in its row of the pending table (row 1: the creator has row 0),
 * takes it, writes all of the message but its last word (TAG: unit 0;
 * SEQ: seq) and is SIGKILLed. full: the ring is full; it takes the
 * position without room (libgpuq waits for room first; kernels and rogue
 * senders do not) and writes nothing, so gpuqd must wait for room to skip.
 */
static void half_send_and_die(gpuq_chan_t *ch, uint32_t id, int full)
{
	struct gpuq_chan_hdr *h = hdr_of(ch);
	uint64_t pos = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST);
	uint8_t *slot = (uint8_t *)h + GPUQ_CHAN_HDR_SIZE + (pos & (h->nslots - 1)) * h->stride;
	struct msg m;

	make_msg(&m, id, 0);
	__atomic_store_n(&h->pending[1][0], pos + 1, __ATOMIC_SEQ_CST);
	if (!__atomic_compare_exchange_n(&h->tail, &pos, pos + 1, 0, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		_exit(30);
	if (full)
		raise(SIGKILL);
	if (h->format == GPUQ_CHAN_FMT_TAG) {
		uint64_t rest = (uint64_t)gpuq_chan_tag_rest(pos, gpuq_chan_lap_shift(h->nslots))
				<< 32;

		for (uint32_t i = 2; i < sizeof(m) / 4; i++)
			((uint64_t *)slot)[i] = rest | ((uint32_t *)&m)[i];
	} else {
		memcpy(slot + GPUQ_CHAN_SLOT_HDR, &m, sizeof(m));
		((struct gpuq_chan_slot *)slot)->len = sizeof(m);
	}
	raise(SIGKILL);
}

START_TEST(dead_sender_hole_skipped)
{
	for (int full = 0; full < 2; full++) {
		gpuq_t *q = session();
		gpuq_chan_t *ch;
		struct msg m;
		pid_t pid;
		int st, i, before = full ? 8 : 1;

		ck_assert_int_eq(
			gpuq_chan_create(q, "holes", SLOT(_i), 8, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
		for (i = 0; i < before; i++) {
			make_msg(&m, 1, (uint32_t)i);
			ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 0), (ssize_t)sizeof(m));
		}
		pid = fork();
		if (pid == 0) {
			gpuq_t *c;
			gpuq_chan_t *tx;

			if (gpuq_connect(d.sock, &c) ||
			    gpuq_chan_open(c, "holes", GPUQ_CHAN_SEND, &tx))
				_exit(10);
			half_send_and_die(tx, 2, full);
			_exit(11);
		}
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the dying sender: %d",
			      st);
		for (i = 0; i < before; i++) {
			ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 1000),
					 (ssize_t)sizeof(m));
			ck_assert(msg_ok(&m) && m.sender == 1 && m.n == (uint32_t)i);
		}
		/* The living sender's next message comes after the hole, which gpuqd skips. */
		make_msg(&m, 1, 100);
		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 1000), (ssize_t)sizeof(m));
		memset(&m, 0, sizeof(m));
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 3000), (ssize_t)sizeof(m));
		ck_assert_msg(msg_ok(&m) && m.sender == 1 && m.n == 100, "got sender %u n %u",
			      m.sender, m.n);
		ck_assert_int_eq(gpuq_chan_recv(ch, &m, sizeof(m), 0), -EAGAIN);
		gpuq_chan_close(ch);
		gpuq_close(q);
	}
}
END_TEST

/*
 * Senders SIGKILLed at random points of their sends, GPUQ_TEST_CHAN_KILLS
 * times (200 unless set): after each, the living sender's next message
 * arrives (no receiver is stuck behind a hole), every message received is
 * whole, and each sender's arrive in order, once.
 */
START_TEST(killed_senders_never_stall_receivers)
{
	const char *env = getenv("GPUQ_TEST_CHAN_KILLS");
	int kills = env ? atoi(env) : 200, k, st, res[2];
	uint32_t slot = _i ? 16384 : 256;
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	pid_t rpid;

	ck_assert_int_eq(gpuq_chan_create(q, "killed", slot, 16, GPUQ_CHAN_CPU_TO_GPU, &ch), 0);
	ck_assert_int_eq(pipe(res), 0);
	rpid = fork();
	if (rpid == 0) {
		/* The receiver: checks every message; the living sender (0) numbers its own 0, 1, 2... */
		static uint8_t buf[16384];
		static uint32_t next[4096];
		gpuq_t *c;
		gpuq_chan_t *rx;
		uint32_t living = 0, others = 0;

		close(res[0]);
		if (gpuq_connect(d.sock, &c) || gpuq_chan_open(c, "killed", GPUQ_CHAN_RECV, &rx))
			_exit(10);
		for (;;) {
			ssize_t n = gpuq_chan_recv(rx, buf, sizeof(buf), 5000);
			struct msg *m = (struct msg *)buf;

			if (n < (ssize_t)sizeof(*m) || !msg_ok(m) || m->sender >= 4096)
				_exit(n < 0 ? 11 : 12); /* stuck, or a torn message */
			if (m->sender == 0) {
				if (m->n == UINT32_MAX)
					break;
				if (m->n != living++)
					_exit(13);
				continue;
			}
			if (m->n < next[m->sender])
				_exit(14); /* out of order or twice */
			next[m->sender] = m->n + 1;
			others++;
		}
		if (write(res[1], &living, sizeof(living)) < 0 ||
		    write(res[1], &others, sizeof(others)) < 0)
			_exit(15);
		_exit(0);
	}
	close(res[1]);
	srand(12345);
	for (k = 0; k < kills; k++) {
		int ready[2];
		pid_t spid;
		char b;
		struct msg m;

		ck_assert_int_eq(pipe(ready), 0);
		spid = fork();
		if (spid == 0) {
			static uint8_t big[16384];
			gpuq_t *c;
			gpuq_chan_t *tx;

			close(ready[0]);
			if (gpuq_connect_opts(d.sock,
					      &(struct gpuq_options){
						      .struct_size = sizeof(struct gpuq_options),
						      .arena_size = 1u << 20 },
					      &c) ||
			    gpuq_chan_open(c, "killed", GPUQ_CHAN_SEND, &tx))
				_exit(10);
			if (write(ready[1], "r", 1) != 1)
				_exit(11);
			for (uint32_t i = 0;; i++) {
				make_msg((struct msg *)big, 1 + (uint32_t)k % 4000, i);
				if (gpuq_chan_send(tx, big, slot, 10000) != (ssize_t)slot)
					_exit(12);
			}
		}
		close(ready[1]);
		ck_assert_int_eq(read(ready[0], &b, 1), 1);
		close(ready[0]);
		usleep((useconds_t)(rand() % 400));
		kill(spid, SIGKILL);
		ck_assert_int_eq(waitpid(spid, &st, 0), spid);
		/* Whatever it left, the next message of a living sender gets through. */
		make_msg(&m, 0, (uint32_t)k);
		ck_assert_msg(gpuq_chan_send(ch, &m, sizeof(m), 5000) == (ssize_t)sizeof(m),
			      "kill %d: ring stuck", k);
	}
	{
		struct msg m;
		uint32_t living = 0, others = 0;

		make_msg(&m, 0, UINT32_MAX);
		ck_assert_int_eq(gpuq_chan_send(ch, &m, sizeof(m), 5000), (ssize_t)sizeof(m));
		ck_assert_int_eq(waitpid(rpid, &st, 0), rpid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "receiver: %d (11 stuck, 12 torn, 13 living sender's lost, 14 order)",
			      WEXITSTATUS(st));
		ck_assert_int_eq(read(res[0], &living, sizeof(living)), (ssize_t)sizeof(living));
		ck_assert_int_eq(read(res[0], &others, sizeof(others)), (ssize_t)sizeof(others));
		ck_assert_uint_eq(living, (uint32_t)kills);
		fprintf(stderr,
			"killed_senders (%s): %d kills, %u messages of the killed senders received\n",
			_i ? "SEQ" : "TAG", kills, others);
	}
	close(res[0]);
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/* Reads one reply on a raw socket and keeps the fds that came with it. Returns how many. */
static int raw_recv_fds(int fd, int *fds, int max)
{
	static char data[1 << 16];
	char ctl[CMSG_SPACE(8 * sizeof(int))];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)
	};
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct cmsghdr *cm;
	int n = 0;

	if (poll(&p, 1, 5000) != 1 || recvmsg(fd, &mh, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			for (int i = 0; i < k && n < max; i++)
				memcpy(&fds[n++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
		}
	return n;
}

/*
 * The descriptors themselves, as another user holds them (not through
 * libgpuq): a receive-only opener's sender region and a send-only opener's
 * receiver page cannot be mapped writable, written, reopened writable
 * through /proc, re-moded, or resized; the fixed page likewise for both;
 * the wake pipe's end is the read end.
 */
START_TEST(descriptors_as_handed_out)
{
	gpuq_t *q = session();
	gpuq_chan_t *ch;
	pid_t pid;
	int st;

	if (getuid() != 0) {
		fprintf(stderr,
			"descriptors_as_handed_out: not root, cannot act as another user; skipped\n");
		gpuq_close(q);
		return;
	}
	ck_assert_int_eq(gpuq_chan_create(q, "fds", 64, 8, GPUQ_CHAN_GPU_TO_CPU | 0666, &ch), 0);
	ck_assert_int_eq(chmod(d.dir, 0755), 0);
	ck_assert_int_eq(chmod(d.sock, 0666), 0);
	pid = fork();
	if (pid == 0) {
		int fd, fds[8], n;
		Gpuq__Msg *m;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(20);
		for (int send = 0; send < 2; send++) {
			char path[64];
			int ro, rw;

			fd = harness_raw_connect(&d);
			if (fd < 0 || !(m = harness_raw_hello(fd, GPUQ_PROTO_VERSION)))
				_exit(21);
			frame_free(m);
			raw_chan_req(fd, 0, "fds", 3, send, !send);
			n = raw_recv_fds(fd, fds, 8);
			if (n != 4)
				_exit(22);
			ro = send ? fds[1] : fds[2]; /* the region this opener must not write */
			rw = send ? fds[2] : fds[1];
			for (int i = 0; i < 2; i++) {
				int f = i ? fds[0] : ro;

				if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0) !=
				    MAP_FAILED)
					_exit(23);
				if (write(f, "x", 1) != -1 || ftruncate(f, 0) != -1)
					_exit(24);
				if (fchmod(f, 0666) != -1)
					_exit(25);
				snprintf(path, sizeof(path), "/proc/self/fd/%d", f);
				if (open(path, O_RDWR) != -1 || errno != EACCES)
					_exit(26);
				if (mmap(NULL, 4096, PROT_READ, MAP_SHARED, f, 0) == MAP_FAILED)
					_exit(27);
			}
			if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0) ==
			    MAP_FAILED)
				_exit(28);
			if (write(fds[3], "x", 1) != -1)
				_exit(29);
			for (int i = 0; i < n; i++)
				close(fds[i]);
			close(fd);
		}
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "as nobody: %d", WEXITSTATUS(st));
	gpuq_chan_close(ch);
	gpuq_close(q);
}
END_TEST

/* gpuq_channels (gpuqctl channels) shows each channel's geometry, users, ring and GPU ends. */
START_TEST(listing)
{
	gpuq_t *q = session(), *q2 = session();
	gpuq_chan_t *a, *b, *b2;
	struct gpuq_channel_info *list;
	struct msg m;
	int n, i, seen = 0;

	ck_assert_int_eq(gpuq_chan_create(q, "list.a", 64, 8, GPUQ_CHAN_GPU_TO_CPU | 0640, &a), 0);
	ck_assert_int_eq(gpuq_chan_create(q, "list.b", 1024, 16, GPUQ_CHAN_CPU_TO_GPU, &b), 0);
	ck_assert_int_eq(gpuq_chan_open(q2, "list.b", GPUQ_CHAN_RECV, &b2), 0);
	make_msg(&m, 0, 0);
	ck_assert_int_eq(gpuq_chan_send(a, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(gpuq_chan_send(a, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(gpuq_chan_own(b2, GPUQ_CHAN_RECV, 1), 0);
	n = gpuq_channels(q, &list, sizeof(*list));
	ck_assert_int_eq(n, 2);
	for (i = 0; i < n; i++) {
		ck_assert_uint_eq(list[i].uid, getuid());
		if (!strcmp(list[i].name, "list.a")) {
			seen++;
			ck_assert_uint_eq(list[i].mode, 0640);
			ck_assert_uint_eq(list[i].slot_size, 64);
			ck_assert_uint_eq(list[i].nslots, 8);
			ck_assert_uint_eq(list[i].direction, GPUQ_CHAN_GPU_TO_CPU);
			ck_assert_uint_eq(list[i].users, 1);
			ck_assert_uint_eq(list[i].tail - list[i].head, 2);
			ck_assert_uint_eq(list[i].gpu_sender, 0);
			ck_assert_uint_eq(list[i].gpu_receiver, 0);
		} else if (!strcmp(list[i].name, "list.b")) {
			seen++;
			ck_assert_uint_eq(list[i].mode, 0600);
			ck_assert_uint_eq(list[i].slot_size, 1024);
			ck_assert_uint_eq(list[i].direction, GPUQ_CHAN_CPU_TO_GPU);
			ck_assert_uint_eq(list[i].users, 2);
			ck_assert_uint_ne(list[i].gpu_receiver, 0);
		}
	}
	ck_assert_int_eq(seen, 2);
	free(list);
	gpuq_chan_close(b2);
	gpuq_chan_close(b);
	gpuq_chan_close(a);
	ck_assert_int_eq(gpuq_channels(q, &list, sizeof(*list)), 0);
	free(list);
	gpuq_close(q2);
	gpuq_close(q);
}
END_TEST

START_TEST(permissions)
{
	gpuq_t *q = session();
	gpuq_chan_t *priv, *pub, *grp;
	pid_t pid;
	int st;

	if (getuid() != 0) {
		fprintf(stderr, "permissions: not root, cannot act as another user; skipped\n");
		gpuq_close(q);
		return;
	}
	ck_assert_int_eq(gpuq_chan_create(q, "private", 64, 8, GPUQ_CHAN_GPU_TO_CPU, &priv), 0);
	ck_assert_int_eq(gpuq_chan_create(q, "public", 64, 8, GPUQ_CHAN_GPU_TO_CPU | 0644, &pub),
			 0);
	ck_assert_int_eq(gpuq_chan_create(q, "group", 64, 8, GPUQ_CHAN_GPU_TO_CPU | 0640, &grp), 0);
	ck_assert_int_eq(chmod(d.dir, 0755), 0);
	ck_assert_int_eq(chmod(d.sock, 0666), 0);
	pid = fork();
	if (pid == 0) {
		gpuq_t *c;
		gpuq_chan_t *x;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(20);
		if (gpuq_connect(d.sock, &c))
			_exit(21);
		if (gpuq_chan_open(c, "group", GPUQ_CHAN_RECV, &x) != -EACCES)
			_exit(26); /* not in the channel's group */
		if (gpuq_chan_open(c, "private", GPUQ_CHAN_RECV, &x) != -EACCES)
			_exit(22);
		if (gpuq_chan_open(c, "public", GPUQ_CHAN_SEND, &x) != -EACCES)
			_exit(23);
		if (gpuq_chan_open(c, "public", GPUQ_CHAN_RECV, &x) != 0)
			_exit(24);
		/* The listing shows nobody only the channel it has access to. */
		struct gpuq_channel_info *list;
		int n = gpuq_channels(c, &list, sizeof(*list));
		if (n != 1 || strcmp(list[0].name, "public") || list[0].users != 2)
			_exit(25);
		free(list);
		gpuq_chan_close(x);
		gpuq_close(c);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "as nobody: %d", WEXITSTATUS(st));
	ck_assert(harness_log_contains(&d, "denied receive on channel 'private'"));
	/*
	 * Supplementary groups count: nobody with the channel's group (root's,
	 * 0) among its supplementary groups gets the group bits (r: receive
	 * only), and its receive-only opening cannot take the send end.
	 */
	pid = fork();
	if (pid == 0) {
		gid_t g = getgid();
		gpuq_t *c;
		gpuq_chan_t *x;

		if (setgroups(1, &g) || setgid(65534) || setuid(65534))
			_exit(20);
		if (gpuq_connect(d.sock, &c))
			_exit(21);
		if (gpuq_chan_open(c, "group", GPUQ_CHAN_SEND, &x) != -EACCES)
			_exit(22);
		if (gpuq_chan_open(c, "group", GPUQ_CHAN_RECV, &x) != 0)
			_exit(23);
		if (gpuq_chan_own(x, GPUQ_CHAN_SEND, 1) != -EACCES)
			_exit(24);
		if (gpuq_chan_recv(x, NULL, 0, 0) != -EAGAIN)
			_exit(25);
		gpuq_chan_close(x);
		gpuq_close(c);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "as nobody in the channel's group: %d",
		      WEXITSTATUS(st));
	gpuq_chan_close(grp);
	gpuq_chan_close(pub);
	gpuq_chan_close(priv);
	gpuq_close(q);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("chan");
	TCase *tc = tcase_create("chan");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, start, stop);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, names_and_errors);
	tcase_add_loop_test(tc, send_recv_and_sizes, 0, 2);
	tcase_add_loop_test(tc, full_ring_backpressure, 0, 2);
	tcase_add_loop_test(tc, many_senders_order_and_integrity, 0, 2);
	tcase_add_loop_test(tc, many_receivers_batches, 0, 2);
	tcase_add_loop_test(tc, owned_ends, 0, 2);
	tcase_add_test(tc, listing);
	tcase_add_loop_test(tc, owner_dies_others_take_over, 0, 2);
	tcase_add_loop_test(tc, sleeping_receiver_woken_by_gpuqd, 0, 2);
	tcase_add_loop_test(tc, fd_for_event_loops, 0, 2);
	tcase_add_loop_test(tc, wake_latency, 0, 2);
	tcase_add_loop_test(tc, receiver_dies_another_takes_over, 0, 2);
	tcase_add_loop_test(tc, messages_outlive_their_sender, 0, 2);
	tcase_add_test(tc, corrupt_header_harms_nobody);
	tcase_add_test(tc, permissions);
	tcase_add_loop_test(tc, modes_enforced_by_mappings, 0, 2);
	tcase_add_test(tc, raw_opens_refused);
	tcase_add_test(tc, descriptors_as_handed_out);
	tcase_add_test(tc, big_channel_untouched);
	tcase_add_test(tc, watcher_polling_bounded);
	tcase_add_loop_test(tc, dead_sender_hole_skipped, 0, 2);
	tcase_add_loop_test(tc, killed_senders_never_stall_receivers, 0, 2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
