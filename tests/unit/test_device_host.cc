/* test_device_host.cc: gpuq_device.cuh built by the host C++ compiler; CPU threads stand in for GPU threads on a ring laid out as gpuqd does. */
#include <gpuq/gpuq_device.cuh>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

int failures;

/* Extra payload bytes per slot: 0 tests the TAG format (small slots), 512 the SEQ format. */
uint32_t g_extra;
const char *fmt_name() { return g_extra ? "SEQ" : "TAG"; }

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			std::fprintf(stderr, "%s:%d [%s]: %s: ", __FILE__, __LINE__,      \
				     fmt_name(), #cond);                                  \
			std::fprintf(stderr, __VA_ARGS__);                                \
			std::fprintf(stderr, "\n");                                       \
			failures++;                                                       \
			return;                                                           \
		}                                                                         \
	} while (0)

/* A ring in malloc'd memory, initialised exactly as gpuqd initialises a channel's memfds (slots zeroed). */
struct ring {
	void *mem = nullptr;
	gpuq_dev_chan c{};

	ring(uint32_t slot_size, uint32_t nslots)
	{
		slot_size += g_extra;
		uint64_t size = gpuq_chan_size(slot_size, nslots);
		mem = std::aligned_alloc(4096, (size + 4095) & ~(uint64_t)4095);
		std::memset(mem, 0, size);
		auto *h = static_cast<gpuq_chan_hdr *>(mem);
		h->magic = GPUQ_CHAN_MAGIC;
		h->version = GPUQ_CHAN_VERSION;
		h->slot_size = slot_size;
		h->nslots = nslots;
		h->direction = GPUQ_CHAN_DIR_GPU_TO_CPU;
		h->stride = gpuq_chan_stride(slot_size);
		h->slots_off = GPUQ_CHAN_HDR_SIZE;
		h->total_size = size;
		h->format = gpuq_chan_format(slot_size);
		c.hdr = h;
		c.slots = static_cast<uint8_t *>(mem) + h->slots_off;
		c.slot_size = slot_size;
		c.nslots = nslots;
		c.stride = h->stride;
		c.format = h->format;
		c.lap_shift = gpuq_chan_lap_shift(nslots);
	}
	/* Is the message at pos published (gpuqd's and libgpuq's view)? */
	bool ready(uint64_t pos) const
	{
		return gpuq_chan_slot_state(c.slots + (pos & (c.nslots - 1)) * c.stride, pos, c.format, c.lap_shift) ==
		       1;
	}
	~ring() { std::free(mem); }
	ring(const ring &) = delete;
	ring &operator=(const ring &) = delete;
};

/* The payload of the stress tests: who sent it, its number, and a checksum of both. */
struct msg {
	uint32_t sender;
	uint32_t seq;
	uint64_t sum;
};

uint64_t checksum(uint32_t sender, uint32_t seq)
{
	uint64_t x = ((uint64_t)sender << 32 | seq) * 0x9e3779b97f4a7c15ull;
	return x ^ (x >> 29);
}

msg make_msg(uint32_t sender, uint32_t seq)
{
	return msg{sender, seq, checksum(sender, seq)};
}

void test_empty()
{
	ring r(64, 8);
	char buf[1024] = {0};
	uint32_t over = r.c.slot_size + 1;

	CHECK(gpuq_dev_try_recv(r.c, buf, sizeof(buf)) == -EAGAIN, "empty ring must give -EAGAIN");
	CHECK(gpuq_dev_send(r.c, buf, over) == -EMSGSIZE, "len over slot_size");
	CHECK(gpuq_dev_try_send(r.c, buf, over) == -EMSGSIZE, "len over slot_size (try)");
	uint32_t lens[2] = {8, over};
	CHECK(gpuq_dev_send_batch(r.c, buf, 8, lens, 2) == -EMSGSIZE, "batch with one too long");
	CHECK(r.c.hdr->tail == 0, "refused sends must take no position");
	CHECK(gpuq_dev_try_recv(r.c, buf, sizeof(buf)) == -EAGAIN, "still empty");
}

/* Lengths, a zero-length message, and a message cut to the receiver's cap. */
void test_lengths()
{
	ring r(48, 4);
	uint8_t in[52], out[48];

	for (int i = 0; i < 52; i++)
		in[i] = (uint8_t)(i * 7 + 1);
	CHECK(gpuq_dev_send(r.c, in, 48) == 0, "full-size send");
	CHECK(gpuq_dev_send(r.c, in, 0) == 0, "empty send");
	CHECK(gpuq_dev_send(r.c, in + 1, 13) == 0, "unaligned send");
	std::memset(out, 0, sizeof(out));
	CHECK(gpuq_dev_recv(r.c, out, sizeof(out)) == 48 && !std::memcmp(in, out, 48), "full-size message");
	CHECK(gpuq_dev_recv(r.c, out, sizeof(out)) == 0, "empty message");
	std::memset(out, 0, sizeof(out));
	CHECK(gpuq_dev_recv(r.c, out, 5) == 13, "cut message reports its full length");
	CHECK(!std::memcmp(out, in + 1, 5) && out[5] == 0, "cut message copies only cap bytes");
	/* Every length, from unaligned sources (TAG: each partial unit and word). */
	for (uint32_t len = 0; len <= 48; len++) {
		std::memset(out, 0xee, sizeof(out));
		CHECK(gpuq_dev_send(r.c, in + (len & 3), len) == 0, "send %u", len);
		CHECK(gpuq_dev_recv(r.c, out, sizeof(out)) == (int)len && !std::memcmp(out, in + (len & 3), len) &&
			      (len == 48 || out[len] == 0xee),
		      "length %u", len);
	}
}

/* A tiny ring: try_send fails when full and never overwrites; a blocking send waits for room. */
void test_backpressure()
{
	ring r(16, 4);
	msg m;

	for (uint32_t i = 0; i < 4; i++) {
		m = make_msg(0, i);
		CHECK(gpuq_dev_try_send(r.c, &m, sizeof(m)) == 0, "slot %u", i);
	}
	m = make_msg(0, 99);
	CHECK(gpuq_dev_try_send(r.c, &m, sizeof(m)) == -EAGAIN, "full ring must give -EAGAIN");
	CHECK(r.c.hdr->tail == 4, "a refused try_send takes no position");

	std::atomic<int> sent{0};
	std::thread t([&] {
		msg b = make_msg(0, 4);
		gpuq_dev_send(r.c, &b, sizeof(b));
		sent.store(1);
	});
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	bool waited = sent.load() == 0;
	msg out;
	int n = gpuq_dev_recv(r.c, &out, sizeof(out));
	t.join();
	CHECK(waited, "a send into a full ring must wait");
	CHECK(n == (int)sizeof(msg) && out.seq == 0, "first message intact after backpressure");
	for (uint32_t i = 1; i <= 4; i++) {
		CHECK(gpuq_dev_try_recv(r.c, &out, sizeof(out)) == (int)sizeof(msg), "message %u", i);
		CHECK(out.sender == 0 && out.seq == i && out.sum == checksum(0, i), "message %u got seq %u", i,
		      out.seq);
	}
	CHECK(gpuq_dev_try_recv(r.c, &out, sizeof(out)) == -EAGAIN, "drained");
}

enum send_mode { SEND, TRY_SEND, BATCH };

/*
 * nsenders threads × per_sender messages through a small ring, mixing the
 * send forms, into nrecv receiver threads. Every (sender, seq) must arrive
 * exactly once, intact, and each receiver must see each sender's messages
 * in increasing order (with one receiver: exactly in order).
 */
enum rx_mode { RX_RING, RX_MAPPING, RX_HANDLES };

/*
 * RX_MAPPING: receivers claim from a private counter and free positions in
 * order (a receiver mapping). RX_HANDLES: the same, with every other
 * receiver using a receiver handle, which it ends and begins again now and
 * then, or drops without ending.
 */
void stress(unsigned nsenders, unsigned per_sender, unsigned nrecv, uint32_t nslots, rx_mode rx = RX_RING)
{
	ring r(sizeof(msg), nslots);
	uint64_t rx_pos[2] = {0, 0};

	if (rx != RX_RING) {
		r.c.dev_rx = rx_pos;
		r.c.hdr->head |= GPUQ_CHAN_HELD; /* as gpuq_chan_map_cuda_receiver holds it */
	}
	const uint64_t total = (uint64_t)nsenders * per_sender;
	std::vector<std::atomic<uint8_t>> seen(total);
	std::atomic<uint64_t> received{0};
	std::atomic<unsigned> bad{0}, dup{0}, disorder{0};
	std::vector<std::thread> th;

	for (auto &s : seen)
		s.store(0);
	for (unsigned s = 0; s < nsenders; s++) {
		th.emplace_back([&, s] {
			send_mode mode = (send_mode)(s % 3);
			msg batch[32];
			uint32_t lens[32];
			for (uint32_t i = 0; i < per_sender;) {
				if (mode == BATCH) {
					uint32_t n = per_sender - i < 32 ? per_sender - i : 32;
					for (uint32_t k = 0; k < n; k++) {
						batch[k] = make_msg(s, i + k);
						lens[k] = sizeof(msg);
					}
					if (gpuq_dev_send_batch(r.c, batch, sizeof(msg), lens, n))
						bad++;
					i += n;
				} else if (mode == TRY_SEND) {
					msg m = make_msg(s, i);
					unsigned spins = 0;
					while (gpuq_dev_try_send(r.c, &m, sizeof(m)) == -EAGAIN)
						gpuq_detail::backoff(&spins);
					i++;
				} else {
					msg m = make_msg(s, i);
					if (gpuq_dev_send_warp(r.c, &m, sizeof(m)))
						bad++;
					i++;
				}
			}
			gpuq_dev_chan_done(r.c);
		});
	}
	/* Receivers stop on a poison message (sender ~0), one each, sent once every sender is done. */
	for (unsigned k = 0; k < nrecv; k++) {
		th.emplace_back([&, k] {
			std::vector<int64_t> last(nsenders, -1);
			unsigned spins = 0, got = 0;
			bool handle = rx == RX_HANDLES && k % 4 < 2;
			gpuq_dev_receiver hr = gpuq_dev_receiver_begin(r.c);
			for (;;) {
				msg m;
				int n;
				if (handle && ++got % 997 == 0) {
					if (got % 2)
						gpuq_dev_receiver_end(&hr);
					hr = gpuq_dev_receiver_begin(r.c);
				}
				/* Odd receivers poll with try_recv, even ones block in recv. */
				if (handle)
					n = (k & 1) ? gpuq_dev_receiver_try_recv(&hr, &m, sizeof(m))
						    : gpuq_dev_receiver_recv(&hr, &m, sizeof(m));
				else
					n = (k & 1) ? gpuq_dev_try_recv(r.c, &m, sizeof(m)) : gpuq_dev_recv(r.c, &m, sizeof(m));
				if (n == -EAGAIN) {
					gpuq_detail::backoff(&spins);
					continue;
				}
				spins = 0;
				if (n == (int)sizeof(msg) && m.sender == ~0u) {
					if (k % 8 == 0)
						gpuq_dev_receiver_end(&hr);
					break;
				}
				if (n != (int)sizeof(msg) || m.sender >= nsenders || m.seq >= per_sender ||
				    m.sum != checksum(m.sender, m.seq)) {
					bad++;
					continue;
				}
				if ((int64_t)m.seq <= last[m.sender] ||
				    (nrecv == 1 && (int64_t)m.seq != last[m.sender] + 1))
					disorder++;
				last[m.sender] = m.seq;
				if (seen[(uint64_t)m.sender * per_sender + m.seq].fetch_add(1))
					dup++;
				received++;
			}
		});
	}
	/* Head, as senders see it, must never go back (a smaller store landing after a larger one). */
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> backwards{0};
	std::thread observer([&] {
		uint64_t last = 0;
		while (!stop.load(std::memory_order_relaxed)) {
			uint64_t h = __atomic_load_n(&r.c.hdr->head, __ATOMIC_ACQUIRE) & ~GPUQ_CHAN_HELD;
			if (h < last)
				backwards++;
			last = h;
			std::this_thread::yield(); /* a watcher, not a competitor for the cores */
		}
	});
	for (unsigned s = 0; s < nsenders; s++)
		th[s].join();
	for (unsigned k = 0; k < nrecv; k++) {
		msg p = {~0u, 0, 0};
		gpuq_dev_send(r.c, &p, sizeof(p));
	}
	for (unsigned k = 0; k < nrecv; k++)
		th[nsenders + k].join();
	stop = true;
	observer.join();
	CHECK(!backwards, "head went back %llu times", (unsigned long long)backwards.load());
	uint64_t missing = 0;
	for (auto &s : seen)
		missing += s.load() == 0;
	CHECK(!bad && !dup && !disorder && !missing,
	      "%u senders x %u msgs, %u receivers, %u slots: %u corrupt, %u duplicated, %u out of order, %llu lost",
	      nsenders, per_sender, nrecv, nslots, bad.load(), dup.load(), disorder.load(),
	      (unsigned long long)missing);
	CHECK(r.c.hdr->senders_done == nsenders, "senders_done %u", r.c.hdr->senders_done);
	CHECK(received.load() == total, "received %llu", (unsigned long long)received.load());
	CHECK((r.c.hdr->head & ~GPUQ_CHAN_HELD) == total + nrecv && r.c.hdr->tail == total + nrecv,
	      "head %llu tail %llu", (unsigned long long)r.c.hdr->head, (unsigned long long)r.c.hdr->tail);
	CHECK(rx == RX_RING || (r.c.hdr->head & GPUQ_CHAN_HELD), "a receiver mapping's head stays held");
	if (rx != RX_RING)
		CHECK(rx_pos[0] == total + nrecv && (rx_pos[1] & ~GPUQ_DEV_RX_UNFENCED) == total + nrecv,
		      "receiver mapping: claimed %llu, freed %llu", (unsigned long long)rx_pos[0],
		      (unsigned long long)(rx_pos[1] & ~GPUQ_DEV_RX_UNFENCED));
	msg m;
	CHECK(gpuq_dev_try_recv(r.c, &m, sizeof(m)) == -EAGAIN, "drained");
}

/* A ring that laps many times: positions keep counting, laps keep matching. */
void test_laps()
{
	ring r(16, 2);
	const uint32_t n = 140000; /* 70000 laps of 2 slots */
	for (uint32_t i = 0; i < n; i++) {
		msg m = make_msg(3, i), out;
		if (gpuq_dev_send(r.c, &m, sizeof(m)) != 0 || gpuq_dev_recv(r.c, &out, sizeof(out)) != sizeof(out) ||
		    out.seq != i) {
			CHECK(false, "lap %u", i);
		}
	}
	/* Every message read: head counts them all, and the last slot holds the last position, read. */
	CHECK(r.c.hdr->head == n && r.c.hdr->tail == n, "head %llu tail %llu", (unsigned long long)r.c.hdr->head,
	      (unsigned long long)r.c.hdr->tail);
	CHECK(r.ready(n - 1) && !r.ready(n) && !r.ready(n + 1), "position %u is the last published", n - 1);
}

/*
 * Positions where the lap counts wrap: unit 0's 23-bit lap and the other
 * units' 32-bit one (a fresh ring started there, as after 2^23 or 2^32
 * laps), messages of two units so both tags are checked.
 */
void test_lap_wrap()
{
	for (uint64_t laps : {1ull << 23, 1ull << 32}) {
		ring r(16, 2);
		uint64_t start = (laps - 3) << 1; /* 2 slots: lap = pos >> 1 */

		r.c.hdr->tail = r.c.hdr->head = start;
		for (uint32_t i = 0; i < 20; i++) {
			msg m = make_msg(9, i), out;
			CHECK(gpuq_dev_send(r.c, &m, sizeof(m)) == 0 && gpuq_dev_recv(r.c, &out, sizeof(out)) == sizeof(out) &&
				      out.seq == i && out.sum == checksum(9, i),
			      "lap wrap at %llu laps, message %u", (unsigned long long)laps, i);
		}
		CHECK(r.c.hdr->head == start + 20, "head %llu", (unsigned long long)r.c.hdr->head);
	}
}

/*
 * A TAG slot whose unit 0 is the new message's but whose second unit a
 * message 65536 laps earlier left (same length; every message between was
 * shorter): the second unit's 32-bit lap tells them apart, so the message
 * is not taken until its own second unit lands.
 */
void test_stale_unit()
{
	if (g_extra)
		return; /* TAG only */
	ring r(16, 2);
	const uint64_t pos = 65536ull * 2 + 6, old = pos - 65536ull * 2; /* same slot, 65536 laps apart */
	uint64_t *w = (uint64_t *)(r.c.slots + (pos & 1) * r.c.stride);
	msg out;

	r.c.hdr->tail = r.c.hdr->head = pos;
	w[0] = (uint64_t)gpuq_chan_tag(pos, r.c.lap_shift, sizeof(msg)) << 32 | 1;
	w[1] = (uint64_t)gpuq_chan_tag(pos, r.c.lap_shift, sizeof(msg)) << 32 | 2;
	w[2] = (uint64_t)gpuq_chan_tag_rest(old, r.c.lap_shift) << 32 | 3;
	w[3] = (uint64_t)gpuq_chan_tag_rest(old, r.c.lap_shift) << 32 | 4;
	r.c.hdr->tail = pos + 1;
	CHECK(gpuq_dev_try_recv(r.c, &out, sizeof(out)) == -EAGAIN, "a stale second unit passed for the new one");
	w[2] = (uint64_t)gpuq_chan_tag_rest(pos, r.c.lap_shift) << 32 | 3;
	w[3] = (uint64_t)gpuq_chan_tag_rest(pos, r.c.lap_shift) << 32 | 4;
	CHECK(gpuq_dev_try_recv(r.c, &out, sizeof(out)) == (int)sizeof(msg), "the whole message");
	uint32_t want[4] = {1, 2, 3, 4};
	CHECK(!std::memcmp(&out, want, sizeof(want)), "its bytes");
}

/* A skip marker at pos, as gpuqd writes one over a dead CPU sender's position. */
void put_skip(ring &r, uint64_t pos)
{
	uint8_t *slot = r.c.slots + (pos & (r.c.nslots - 1)) * r.c.stride;

	if (r.c.format == GPUQ_CHAN_FMT_TAG) {
		uint64_t w = (uint64_t)gpuq_chan_tag(pos, r.c.lap_shift, GPUQ_CHAN_TAG_SKIP) << 32;

		__atomic_store_n((uint64_t *)slot + 1, w, __ATOMIC_RELAXED);
		__atomic_store_n((uint64_t *)slot, w, __ATOMIC_RELEASE);
	} else {
		__atomic_store_n((uint32_t *)(slot + 8), GPUQ_CHAN_SEQ_SKIP, __ATOMIC_RELAXED);
		__atomic_store_n((uint64_t *)slot, pos + 1, __ATOMIC_RELEASE);
	}
}

/*
 * Skip markers among messages, over laps: every receive form (the shared
 * ring, a receiver mapping waiting and trying) consumes them and returns
 * only the messages, in order.
 */
void test_skip_markers()
{
	for (int form = 0; form < 3; form++) {
		ring r(16, 4);
		uint64_t rx_pos[2] = {0, 0};
		uint32_t got = 0;

		if (form) {
			r.c.dev_rx = rx_pos;
			r.c.hdr->head |= GPUQ_CHAN_HELD;
		}
		for (uint32_t i = 0; i < 40; i++) {
			msg m = make_msg(4, i), out;
			int n;

			/* Position 3i + 1 and 3i + 2 are a dead sender's: skipped. */
			CHECK(gpuq_dev_send(r.c, &m, sizeof(m)) == 0, "send %u", i);
			uint64_t p = __atomic_fetch_add(&r.c.hdr->tail, 2, __ATOMIC_ACQ_REL);
			put_skip(r, p);
			put_skip(r, p + 1);
			n = form == 2 ? gpuq_dev_try_recv(r.c, &out, sizeof(out)) : gpuq_dev_recv(r.c, &out, sizeof(out));
			CHECK(n == (int)sizeof(out) && out.seq == i, "form %d: message %u: %d, seq %u", form, i, n,
			      out.seq);
			got++;
			CHECK(gpuq_dev_try_recv(r.c, &out, sizeof(out)) == -EAGAIN, "form %d: only skips left", form);
		}
		CHECK(got == 40, "form %d: %u messages", form, got);
	}
}

} /* namespace */

int main()
{
	auto t0 = std::chrono::steady_clock::now();

	for (uint32_t extra : {0u, 512u}) {
		g_extra = extra;
		test_empty();
		test_lengths();
		test_backpressure();
		test_laps();
		test_lap_wrap();
		test_stale_unit();
		test_skip_markers();
		stress(8, 20000, 1, 64);
		stress(8, 20000, 2, 64);
		stress(4, 5000, 3, 4); /* a tiny ring: senders wait on full slots all the time */
		stress(4, 20000, 2, 64, RX_MAPPING);
		stress(4, 20000, 1, 64, RX_HANDLES); /* one handle: every free skips the fence */
		stress(4, 20000, 5, 16, RX_HANDLES); /* handles and shared receivers free in turn */
		stress(4, 5000, 2, 4, RX_HANDLES);   /* a tiny ring: handles wait, and settle, all the time */
	}
	double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	std::printf("test_device_host: %s (%d failures, %.2f s)\n", failures ? "FAIL" : "PASS", failures, s);
	return failures ? 1 : 0;
}
