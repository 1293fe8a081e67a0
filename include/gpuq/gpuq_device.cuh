/* gpuq_device.cuh: send to and receive from gpuq channels inside your own CUDA kernels (header-only; also builds as host C++). */
#ifndef GPUQ_GPUQ_DEVICE_CUH
#define GPUQ_GPUQ_DEVICE_CUH

/*
 * Include this in .cu files whose kernels use channels, get a struct
 * gpuq_dev_chan from gpuq_chan_map_cuda() (libgpuq-cuda, gpuq_cuda.h) and
 * pass it to the kernel by value. The ring lives in host memory mapped for
 * the GPU; the protocol is the one in gpuq_chan.h, so kernels, CPU
 * processes (gpuq_chan_send/recv) and gpuqd interoperate on one channel.
 *
 * Every call here is __host__ __device__: compiled by a host C++ compiler
 * (g++ -std=c++17, no CUDA headers), the same calls run on CPU threads with
 * __atomic builtins, which is how the protocol is unit-tested without a
 * GPU. There, a "warp" is one thread; gpuq_dev_send_batch sends a group.
 *
 * Errors are -errno as everywhere in gpuq: -EMSGSIZE (len > slot_size),
 * -EAGAIN (try forms: ring full, or nothing to receive).
 *
 * Waiting: the blocking calls spin (with __nanosleep backoff on the GPU,
 * pause then sched_yield on the CPU) until the ring has room or a message;
 * they never time out. A GPU sender blocked on a full ring holds its warp:
 * make sure something on the CPU drains the channel while the kernel runs.
 *
 * Mixing sides: positions are claimed with atomics on the ring's tail (by
 * senders) and head (by receivers). GPU atomics on mapped host memory are
 * atomic against the CPU's only where the platform has host-native atomics
 * (cudaDevAttrHostNativeAtomicSupported); elsewhere keep each end of a
 * channel on one side, as its direction says: kernels only send on a
 * GPU-to-CPU channel and only receive on a CPU-to-GPU one. Any number of
 * threads, warps and blocks may share one end.
 *
 * Speed: map with gpuq_chan_map_cuda_sender (kernels that send) or
 * gpuq_chan_map_cuda_receiver (kernels that receive): positions then live
 * in device memory, and a message crosses the bus once. Send small
 * messages with gpuq_dev_send_warp from a full warp, from global memory
 * (8-byte aligned): the warp then writes its 32 slots as one block. Long
 * messages (slots over 256 bytes) from global memory, 16-byte aligned, are
 * copied by the whole warp. bench/RESULTS.md has the figures.
 */

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <gpuq/gpuq_chan.h>
#include <gpuq/gpuq_dev_chan.h>

#if defined(__CUDACC__)
#include <cuda/atomic>
#define GPUQ_DEV __host__ __device__ __forceinline__
#else
#include <sched.h>
#define GPUQ_DEV inline
#endif

namespace gpuq_detail {

/* ---- system-scope atomics on the shared ring: device and host forms ---- */

GPUQ_DEV uint64_t load_acquire(uint64_t *p)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).load(cuda::memory_order_acquire);
#else
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}

/* A relaxed load that really goes to memory (ld.relaxed.sys: not served from a stale L1 line). */
GPUQ_DEV uint64_t load_relaxed(uint64_t *p)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).load(cuda::memory_order_relaxed);
#else
	return __atomic_load_n(p, __ATOMIC_RELAXED);
#endif
}

/* Makes everything this thread (and, after a warp barrier, its warp) wrote visible system-wide (fence.sc.sys). */
GPUQ_DEV void fence_system()
{
#ifdef __CUDA_ARCH__
	__threadfence_system();
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

GPUQ_DEV void store_relaxed(uint64_t *p, uint64_t v)
{
#ifdef __CUDA_ARCH__
	cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).store(v, cuda::memory_order_relaxed);
#else
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
#endif
}

/*
 * TAG format: one 16-byte unit {d0, tag, d1, tag}, two single-copy-atomic
 * 8-byte words.
 *
 * Why the device forms below are .v2.b64 and not .v4.u32: the PTX ISA's
 * memory consistency model ("Memory Consistency Model", "Vector Data-types")
 * treats a vector access as a set of scalar accesses, one per element, with
 * no order among them and no atomicity across them; each element access of
 * a naturally aligned 8-, 16-, 32- or 64-bit element is single-copy atomic
 * on its own. ld/st.v4.u32 is therefore four 32-bit accesses: a reader could
 * see a word's new tag with its old data half, or the reverse, and take a
 * torn payload for a whole one. With ld/st.v2.b64 each element is one whole
 * {data, tag} word, so a word whose tag matches carries the data written
 * with that tag, which is what gpuq_chan.h's TAG format relies on. The two
 * words of a unit may still land in any order: readers check both tags.
 */
struct unit {
	uint32_t d0, t0, d1, t1;
};

GPUQ_DEV void store_unit(uint8_t *p, uint32_t d0, uint32_t d1, uint32_t tag)
{
#ifdef __CUDA_ARCH__
	uint64_t w0 = ((uint64_t)tag << 32) | d0, w1 = ((uint64_t)tag << 32) | d1;

	asm volatile("st.volatile.global.v2.b64 [%0], {%1, %2};" ::"l"(p), "l"(w0), "l"(w1) : "memory");
#else
	__atomic_store_n((uint64_t *)p + 1, ((uint64_t)tag << 32) | d1, __ATOMIC_RELAXED);
	__atomic_store_n((uint64_t *)p, ((uint64_t)tag << 32) | d0, __ATOMIC_RELAXED);
#endif
}

#ifdef __CUDA_ARCH__
/* store_unit when pred: a predicated store, where a branch around each store would serialise them. */
__device__ __forceinline__ void store_unit_if(uint8_t *p, uint32_t d0, uint32_t d1, uint32_t tag, uint32_t pred)
{
	uint64_t w0 = ((uint64_t)tag << 32) | d0, w1 = ((uint64_t)tag << 32) | d1;

	asm volatile("{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %3, 0;\n\t@q st.volatile.global.v2.b64 [%0], {%1, %2};\n\t}" ::"l"(p),
		     "l"(w0), "l"(w1), "r"(pred)
		     : "memory");
}
#endif

/* Reads a unit past every cache (the slot is rewritten each lap). */
GPUQ_DEV unit load_unit(const uint8_t *p)
{
	unit u;
#ifdef __CUDA_ARCH__
	uint64_t w0, w1;

	asm volatile("ld.volatile.global.v2.b64 {%0, %1}, [%2];" : "=l"(w0), "=l"(w1) : "l"(p) : "memory");
	u.d0 = (uint32_t)w0;
	u.t0 = (uint32_t)(w0 >> 32);
	u.d1 = (uint32_t)w1;
	u.t1 = (uint32_t)(w1 >> 32);
#else
	uint64_t w0 = __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
	uint64_t w1 = __atomic_load_n((const uint64_t *)p + 1, __ATOMIC_ACQUIRE);

	u.d0 = (uint32_t)w0;
	u.t0 = (uint32_t)(w0 >> 32);
	u.d1 = (uint32_t)w1;
	u.t1 = (uint32_t)(w1 >> 32);
#endif
	return u;
}

GPUQ_DEV uint64_t fetch_add(uint64_t *p, uint64_t v)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).fetch_add(v, cuda::memory_order_relaxed);
#else
	return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

GPUQ_DEV bool cas(uint64_t *p, uint64_t expect, uint64_t desired)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).compare_exchange_strong(
		expect, desired, cuda::memory_order_relaxed);
#else
	return __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
#endif
}

/* The receivers' claim: orders the copy made before it (release) and sees other claims (acquire). */
GPUQ_DEV bool cas_acq_rel(uint64_t *p, uint64_t expect, uint64_t desired)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).compare_exchange_strong(
		expect, desired, cuda::memory_order_acq_rel);
#else
	return __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
#endif
}

GPUQ_DEV uint32_t load_u32(uint32_t *p)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*p).load(cuda::memory_order_acquire);
#else
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}

GPUQ_DEV void add_u32(uint32_t *p, uint32_t v)
{
#ifdef __CUDA_ARCH__
	__threadfence_system();
	cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*p).fetch_add(v, cuda::memory_order_release);
#else
	__atomic_fetch_add(p, v, __ATOMIC_RELEASE);
#endif
}

/* One step of waiting: short spins first (latency), then back off (the GPU's memory system, the CPU's cores). */
GPUQ_DEV void backoff(unsigned *n)
{
#ifdef __CUDA_ARCH__
	if (*n < 16) {
		(*n)++;
		return;
	}
	__nanosleep(*n < 512 ? (*n *= 2) : 512);
#else
	if (++*n < 256) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#elif defined(__aarch64__)
		__asm__ __volatile__("yield");
#endif
		return;
	}
	sched_yield();
#endif
}

/* ---- slots ---- */

GPUQ_DEV uint8_t *slot_at(const gpuq_dev_chan &c, uint64_t pos)
{
	return c.slots + (pos & (uint64_t)(c.nslots - 1)) * c.stride;
}

GPUQ_DEV uint64_t *slot_seq(uint8_t *slot)
{
	return (uint64_t *)slot;
}

GPUQ_DEV uint32_t *slot_len(uint8_t *slot)
{
	return (uint32_t *)(slot + 8);
}

/* Copies a message into a SEQ slot's payload (16-byte aligned): 16-byte stores where the source allows. */
GPUQ_DEV void put_bytes(uint8_t *dst, const void *src, uint32_t len)
{
#ifdef __CUDA_ARCH__
	const uint8_t *s = (const uint8_t *)src;
	uint32_t i = 0;

	if (((uintptr_t)s & 15) == 0) {
		for (; i + 16 <= len; i += 16)
			*(uint4 *)(dst + i) = *(const uint4 *)(s + i);
	} else if (((uintptr_t)s & 3) == 0) {
		for (; i + 4 <= len; i += 4)
			*(uint32_t *)(dst + i) = *(const uint32_t *)(s + i);
	}
	for (; i < len; i++)
		dst[i] = s[i];
#else
	memcpy(dst, src, len);
#endif
}

/* Copies a SEQ payload out of a slot, past every cache (ld.cv: the slot is rewritten each lap). */
GPUQ_DEV void get_bytes(void *dst, const uint8_t *src, uint32_t len)
{
#ifdef __CUDA_ARCH__
	uint8_t *d = (uint8_t *)dst;
	uint32_t i = 0;

	if (((uintptr_t)d & 15) == 0) {
		for (; i + 16 <= len; i += 16)
			*(uint4 *)(d + i) = __ldcv((const uint4 *)(src + i));
	} else if (((uintptr_t)d & 3) == 0) {
		for (; i + 4 <= len; i += 4)
			*(uint32_t *)(d + i) = __ldcv((const unsigned int *)(src + i));
	}
	for (; i < len; i++)
		d[i] = *(const volatile uint8_t *)(src + i);
#else
	memcpy(dst, src, len);
#endif
}

/* Takes n consecutive positions: from the device-memory counter of a sender mapping, else the ring's tail. */
GPUQ_DEV uint64_t take(const gpuq_dev_chan &c, uint64_t n)
{
#ifdef __CUDA_ARCH__
	if (c.dev_tail)
		return cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*c.dev_tail)
			.fetch_add(n, cuda::memory_order_relaxed);
#endif
	return fetch_add(&c.hdr->tail, n);
}

/*
 * Waits until position pos may be written: pos < head + nslots, i.e. the
 * message that last lap left in its slot has been read (receivers copy
 * before they move head). A sender mapping keeps the last head it saw in
 * device memory and reads the ring's head only when that is not enough.
 */
GPUQ_DEV void wait_room(const gpuq_dev_chan &c, uint64_t pos)
{
	unsigned n = 0;

#ifdef __CUDA_ARCH__
	if (c.dev_head) {
		cuda::atomic_ref<uint64_t, cuda::thread_scope_device> cached(*c.dev_head);

		if (pos - cached.load(cuda::memory_order_relaxed) < c.nslots)
			return;
		for (;;) {
			uint64_t h = load_acquire(&c.hdr->head) & ~GPUQ_CHAN_HELD;

			cached.fetch_max(h, cuda::memory_order_acq_rel);
			if (pos - h < c.nslots)
				return;
			backoff(&n);
		}
	}
#endif
	while (pos - (load_acquire(&c.hdr->head) & ~GPUQ_CHAN_HELD) >= c.nslots)
		backoff(&n);
}

/* TAG format: the tag of a message of len bytes at pos. */
GPUQ_DEV uint32_t tag_of(const gpuq_dev_chan &c, uint64_t pos, uint32_t len)
{
	return ((uint32_t)((pos >> c.lap_shift) + 1) << 9) | len;
}

/* TAG format: the tag of the units after unit 0 (gpuq_chan.h): the lap, 32 bits. */
GPUQ_DEV uint32_t rest_of(const gpuq_dev_chan &c, uint64_t pos)
{
	return (uint32_t)((pos >> c.lap_shift) + 1);
}

/* TAG format: 0 when unit-0 tag is position h's lap, < 0 an earlier lap, > 0 a later one. */
GPUQ_DEV int lap_cmp(const gpuq_dev_chan &c, uint32_t tag, uint64_t h)
{
	uint32_t d = ((tag >> 9) - (uint32_t)((h >> c.lap_shift) + 1)) & 0x7fffff;

	return d == 0 ? 0 : (d & 0x400000) ? -1 : 1;
}

/* Bytes off..off+3 of a message of len bytes as a little-endian word, zero past len. */
GPUQ_DEV uint32_t word_at(const uint8_t *m, uint32_t off, uint32_t len)
{
	uint32_t w = 0;

	if (off + 4 <= len && ((uintptr_t)m & 3) == 0)
		return *(const uint32_t *)(m + off);
	for (uint32_t i = 0; i < 4 && off + i < len; i++)
		w |= (uint32_t)m[off + i] << (8 * i);
	return w;
}

/* TAG format: writes the message at pos (room already there). Needs no fence: every word carries the tag. */
GPUQ_DEV void put_tag(const gpuq_dev_chan &c, uint64_t pos, const void *msg, uint32_t len)
{
	uint8_t *slot = slot_at(c, pos);
	const uint8_t *m = (const uint8_t *)msg;
	uint32_t tag = tag_of(c, pos, len), rest = rest_of(c, pos), units = len ? (len + 7) / 8 : 1;

	/* Unit 0 last: a CPU reader that sees it sees the rest (the GPU gives no such order; readers check every unit). */
	for (uint32_t u = units; u-- > 0;) {
		uint32_t t = u ? rest : tag;
#ifdef __CUDA_ARCH__
		if (8 * u + 8 <= len && ((uintptr_t)m & 7) == 0) {
			uint2 v = *(const uint2 *)(m + 8 * u);
			store_unit(slot + 16 * u, v.x, v.y, t);
			continue;
		}
#endif
		store_unit(slot + 16 * u, word_at(m, 8 * u, len), word_at(m, 8 * u + 4, len), t);
	}
}

/* SEQ format: writes len and payload at pos (room already there); the caller fences and publishes. */
GPUQ_DEV void put_seq_data(const gpuq_dev_chan &c, uint64_t pos, const void *msg, uint32_t len)
{
	uint8_t *slot = slot_at(c, pos);

	*slot_len(slot) = len;
	put_bytes(slot + GPUQ_CHAN_SLOT_HDR, msg, len);
}

/* Fills position pos, already taken: waits for room, writes, publishes. */
GPUQ_DEV void put(const gpuq_dev_chan &c, uint64_t pos, const void *msg, uint32_t len)
{
	wait_room(c, pos);
	if (c.format == GPUQ_CHAN_FMT_TAG) {
		put_tag(c, pos, msg, len);
		return;
	}
	put_seq_data(c, pos, msg, len);
	fence_system();
	store_relaxed(slot_seq(slot_at(c, pos)), pos + 1);
}

/*
 * Reads the message at h into buf (cap bytes) if it is all there.
 * Returns 1 (copied; *len is its length), 0 (not there yet) or -1 (the
 * slot already holds a later lap: head moved on).
 */
GPUQ_DEV int read_at(const gpuq_dev_chan &c, uint64_t h, void *buf, uint32_t cap, uint32_t *len)
{
	uint8_t *slot = slot_at(c, h), *d = (uint8_t *)buf;

	if (c.format == GPUQ_CHAN_FMT_TAG) {
		unit u = load_unit(slot);
		int lap = lap_cmp(c, u.t0, h);
		uint32_t l, units, n, rest = rest_of(c, h);

		if (lap != 0)
			return lap < 0 ? 0 : -1;
		if (u.t1 != u.t0)
			return 0; /* the unit's second word is still on its way */
		uint32_t tag = u.t0;

		l = tag & 0x1ff;
		if (l == GPUQ_CHAN_TAG_SKIP)
			return 2; /* a dead CPU sender's position, skipped by gpuqd (gpuq_chan.h) */
		if (l > c.slot_size)
			l = c.slot_size; /* the sender's word: never past the slot */
		units = l ? (l + 7) / 8 : 1;
		n = l < cap ? l : cap;
		for (uint32_t k = 0; k < units; k++) {
			if (k) {
				u = load_unit(slot + 16 * k);
				if (u.t0 != rest || u.t1 != rest)
					return 0; /* on its way, or a torn read beside a newer lap */
			}
			uint32_t w[2] = {u.d0, u.d1};
			for (uint32_t i = 0; i < 8 && 8 * k + i < n; i++)
				d[8 * k + i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
		}
		*len = l;
		return 1;
	}
	int64_t dd = (int64_t)(load_acquire(slot_seq(slot)) - (h + 1));

	if (dd != 0)
		return dd < 0 ? 0 : -1;
	uint32_t l = load_u32(slot_len(slot));

	if (l == GPUQ_CHAN_SEQ_SKIP)
		return 2;
	if (l > c.slot_size)
		l = c.slot_size;
	get_bytes(buf, slot + GPUQ_CHAN_SLOT_HDR, l < cap ? l : cap);
	*len = l;
	return 1;
}

/* A receiver mapping's counters in device memory: [0] the next position to claim, [1] the next to free. */
GPUQ_DEV uint64_t dev_fetch_add(uint64_t *p, uint64_t v)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*p).fetch_add(v, cuda::memory_order_relaxed);
#else
	return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

GPUQ_DEV uint64_t dev_load(uint64_t *p, bool acquire)
{
#ifdef __CUDA_ARCH__
	cuda::atomic_ref<uint64_t, cuda::thread_scope_device> r(*p);
	return acquire ? r.load(cuda::memory_order_acquire) : r.load(cuda::memory_order_relaxed);
#else
	return __atomic_load_n(p, acquire ? __ATOMIC_ACQUIRE : __ATOMIC_RELAXED);
#endif
}

GPUQ_DEV bool dev_cas(uint64_t *p, uint64_t expect, uint64_t desired)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*p).compare_exchange_strong(
		expect, desired, cuda::memory_order_relaxed);
#else
	return __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
#endif
}

/*
 * Frees position h for the senders, after it was copied out: in position
 * order (a receiver whose message came before another's frees first), so
 * head, a plain store, only grows. done is what the caller saw in
 * dev_rx[1], with an acquire load, taken early where it costs nothing.
 *
 * Our head store must land after the previous freer's. That freer either
 * made its store visible before counting the free (a release: a fence that
 * waits for the store to cross the bus, about 0.3 us), or counted it at
 * once with GPUQ_DEV_RX_UNFENCED set. Only a receiver handle does that,
 * and only when it freed the position before too: then the next freer is
 * most likely that thread again (its two stores to head stay in order);
 * any other thread reads head back until that store is in. A thread
 * receiving alone so pays one fence, then none; threads taking turns pay
 * the fence, as without handles; a switch from a lone handle to another
 * thread costs one read of head. mine is the handle's last count (0:
 * none), or NULL for the shared calls, which always fence.
 */
GPUQ_DEV void release_rx(const gpuq_dev_chan &c, uint64_t h, uint64_t done, uint64_t *mine)
{
	unsigned n = 0;

	while ((done & ~GPUQ_DEV_RX_UNFENCED) != h) {
		backoff(&n);
		done = dev_load(&c.dev_rx[1], true);
	}
	/* This handle freed h - 1: only the freer of h - 1 counts up to h. */
	bool after_me = mine && *mine && (*mine & ~GPUQ_DEV_RX_UNFENCED) == h;

	if ((done & GPUQ_DEV_RX_UNFENCED) && !after_me) {
		n = 0;
		while ((int64_t)((load_acquire(&c.hdr->head) & ~GPUQ_CHAN_HELD) - h) < 0)
			backoff(&n);
	}
	store_relaxed(&c.hdr->head, (h + 1) | GPUQ_CHAN_HELD); /* the end stays held (gpuq_chan.h) */
	if (after_me) {
		*mine = (h + 1) | GPUQ_DEV_RX_UNFENCED;
#ifdef __CUDA_ARCH__
		cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(c.dev_rx[1]).store(*mine, cuda::memory_order_relaxed);
#else
		__atomic_store_n(&c.dev_rx[1], *mine, __ATOMIC_RELAXED);
#endif
		return;
	}
#ifdef __CUDA_ARCH__
	cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(c.dev_rx[1]).store(h + 1, cuda::memory_order_release);
#else
	__atomic_store_n(&c.dev_rx[1], h + 1, __ATOMIC_RELEASE);
#endif
	if (mine)
		*mine = h + 1;
}

/*
 * A handle about to wait (or to end) makes its last, unfenced head store
 * land, and says so in dev_rx[1] if nobody freed since: a receiver that
 * stops freeing must not leave senders waiting on a store nothing forces
 * out, and the next freer then need not read head back.
 */
GPUQ_DEV void settle(const gpuq_dev_chan &c, uint64_t *mine)
{
	if (!mine || !(*mine & GPUQ_DEV_RX_UNFENCED))
		return;
	fence_system();
	dev_cas(&c.dev_rx[1], *mine, *mine & ~GPUQ_DEV_RX_UNFENCED);
	*mine &= ~GPUQ_DEV_RX_UNFENCED;
}

/*
 * gpuq_dev_recv and gpuq_dev_try_recv through a receiver mapping (mine:
 * see release_rx). A blocking receive takes its position first (an atomic
 * add that runs while it waits for the message, not after), polls that
 * slot alone, copies, and frees it. A try takes a position only once its
 * message is there (a compare-and-swap), so it never holds one it cannot
 * fill.
 */
GPUQ_DEV int recv_mapped(const gpuq_dev_chan &c, void *buf, uint32_t cap, bool wait, uint64_t *mine)
{
	unsigned n = 0;
	uint32_t len = 0;

	while (wait) {
		uint64_t h = dev_fetch_add(&c.dev_rx[0], 1), done = dev_load(&c.dev_rx[1], true);
		int st;

		/*
		 * A position taken a ring or more ahead of the freed ones waits
		 * in device memory first: its slot still holds an older lap's
		 * message, whose tag could match after the lap count wraps, and
		 * polling host memory from many such waiters only slows the rest.
		 */
		while (h - (done & ~GPUQ_DEV_RX_UNFENCED) >= c.nslots) {
			backoff(&n);
			done = dev_load(&c.dev_rx[1], true);
		}
		n = 0;
		/* Ours alone: only a sender can change the slot, and not before we free it. */
		while ((st = read_at(c, h, buf, cap, &len)) < 1) {
			if (n == 8)
				settle(c, mine); /* waiting a while: a sender may be waiting on our last free */
			backoff(&n);
		}
		release_rx(c, h, done, mine);
		if (st == 1)
			return (int)len;
		n = 0; /* a skip marker: freed, take the next position */
	}
	for (;;) {
		uint64_t h = dev_load(&c.dev_rx[0], false), done = dev_load(&c.dev_rx[1], true);
		int st = read_at(c, h, buf, cap, &len);

		if (st == 0) {
			settle(c, mine);
			return -EAGAIN;
		}
		if (st >= 1 && dev_cas(&c.dev_rx[0], h, h + 1)) {
			release_rx(c, h, done, mine);
			if (st == 1)
				return (int)len;
			continue; /* a skip marker, freed */
		}
		/* another receiver took it, or the slot is a lap ahead of a stale h: look again */
	}
}

/* The receive loop of gpuq_dev_recv (wait) and gpuq_dev_try_recv. */
GPUQ_DEV int recv(const gpuq_dev_chan &c, void *buf, uint32_t cap, bool wait)
{
	unsigned n = 0;
	uint64_t h = 0;
	bool reload = true;

	if (c.dev_rx)
		return recv_mapped(c, buf, cap, wait, nullptr);
	for (;;) {
		uint32_t len = 0;

		if (reload)
			h = load_relaxed(&c.hdr->head);
		reload = true;
		int st = read_at(c, h, buf, cap, &len);

		if (st >= 1) {
			/* Copied first, now claimed; a lost claim means the copy may be torn: drop it. */
			if (!cas_acq_rel(&c.hdr->head, h, h + 1) || st == 2)
				continue; /* another receiver took it, or a skip marker, consumed */
			return (int)len;
		}
		if (st < 0) {
			/* A later lap: head moved on under us, unless it did not (a scribbled slot): then wait. */
			if (load_relaxed(&c.hdr->head) != h)
				continue;
			st = 0;
		}
		/* st == 0: not published yet: empty, or its sender is still writing */
		if (!wait)
			return -EAGAIN;
		backoff(&n);
		reload = false; /* nobody can claim h before it fills: poll the slot alone */
	}
}

#ifdef __CUDA_ARCH__
GPUQ_DEV unsigned lane_id()
{
	unsigned l;

	asm volatile("mov.u32 %0, %%laneid;" : "=r"(l));
	return l;
}

/*
 * SEQ format, the lanes of vmask together: the warp copies each lane's
 * message in turn with coalesced 16-byte stores (a lane alone would write
 * 16 bytes to each of 32 places per store, which the bus carries at a
 * quarter of its speed), then one fence publishes them all. Every message
 * must be in global memory, 16-byte aligned; room must already be there.
 */
__device__ __forceinline__ void put_seq_warp(const gpuq_dev_chan &c, uint64_t pos, const void *msg, uint32_t len,
					     unsigned vmask)
{
	unsigned lane = lane_id(), rank = __popc(vmask & ((1u << lane) - 1)), nact = __popc(vmask);

	for (unsigned m = vmask; m; m &= m - 1) {
		int src = __ffs(m) - 1;
		const uint8_t *p = (const uint8_t *)__shfl_sync(vmask, (unsigned long long)msg, src);
		uint32_t l = __shfl_sync(vmask, len, src);
		uint8_t *d = slot_at(c, __shfl_sync(vmask, (unsigned long long)pos, src)) + GPUQ_CHAN_SLOT_HDR;

		for (uint32_t k = rank; k < l / 16; k += nact)
			((uint4 *)d)[k] = ((const uint4 *)p)[k];
		for (uint32_t b = (l & ~15u) + rank; b < l; b += nact)
			d[b] = p[b];
	}
	*slot_len(slot_at(c, pos)) = len;
	__syncwarp(vmask);
	fence_system(); /* cumulative: covers what the other lanes wrote before the barrier */
	store_relaxed(slot_seq(slot_at(c, pos)), pos + 1);
}

/*
 * TAG format, a full warp whose 32 messages are all in global memory (8-byte
 * aligned): the warp writes its 32 consecutive slots as one block, each
 * store instruction covering 512 contiguous bytes (lane i writes unit i of
 * the block, from whichever message it belongs to), instead of every lane
 * writing 16 bytes into its own slot 32 times over: the bus takes a
 * quarter of the transactions. Room must already be there.
 */
/* Up to 8 units a lane writes in a block send: where (message m, unit u) and what. */
struct tag_units {
	uint2 v[8];
	uint32_t l[8], m[8], u[8];
};

/*
 * Loads units r0 .. r0 + 7 of this lane's share of a block send (no ring
 * access: may run before positions are known). gmsg is the lane's message
 * as a global address (the caller checked __isGlobal). Whole 8-byte units
 * are loaded by predicated global loads, all in flight at once (a branch
 * around each would serialise them); the last, partial unit of a message
 * is put together byte by byte afterwards.
 */
__device__ __forceinline__ void load_tag_units(tag_units &t, uint32_t per, uint32_t r0, unsigned lane,
					       unsigned long long gmsg, uint32_t len)
{
	unsigned long long g[8];
	unsigned part = 0;

#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (r0 + k >= per)
			break; /* the same for every lane */
		uint32_t q = 32 * (r0 + k) + lane;

		t.m[k] = q / per;
		t.u[k] = q - t.m[k] * per;
		g[k] = __shfl_sync(0xffffffffu, gmsg, t.m[k]) + 8 * t.u[k];
		uint32_t l = __shfl_sync(0xffffffffu, len, t.m[k]), u = t.u[k], whole = 8 * u + 8 <= l;

		/* Unit 0 always goes (it carries the length); units past the message do not. */
		t.l[k] = u == 0 || 8 * u < l ? l : ~0u;
		t.v[k].x = t.v[k].y = 0;
		asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %3, 0;\n\t@p ld.global.v2.u32 {%0, %1}, [%2];\n\t}"
			     : "+r"(t.v[k].x), "+r"(t.v[k].y)
			     : "l"(g[k]), "r"(whole)
			     : "memory");
		if (!whole && t.l[k] != ~0u)
			part |= 1u << k;
	}
#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (!(part >> k & 1))
			continue;
		const uint8_t *p = (const uint8_t *)__cvta_global_to_generic((size_t)(g[k] - 8 * t.u[k]));

		t.v[k].x = word_at(p, 8 * t.u[k], t.l[k]);
		t.v[k].y = word_at(p, 8 * t.u[k] + 4, t.l[k]);
	}
}

__device__ __forceinline__ void store_tag_units(const gpuq_dev_chan &c, const tag_units &t, uint32_t per, uint32_t r0,
						uint64_t base)
{
#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (r0 + k >= per)
			break;
		store_unit_if(slot_at(c, base + t.m[k]) + 16 * t.u[k], t.v[k].x, t.v[k].y,
			      t.u[k] ? rest_of(c, base + t.m[k]) : tag_of(c, base + t.m[k], t.l[k]), t.l[k] != ~0u);
	}
}

/*
 * TAG format, a full warp, messages in global memory (8-byte aligned): the
 * warp writes its 32 consecutive slots as one block, each store instruction
 * covering 512 contiguous bytes (lane i writes unit i of the block, from
 * whichever message it belongs to) instead of every lane writing 16 bytes
 * into its own slot: a quarter of the bus transactions. The cached head and
 * the messages are loaded while the take is in flight. PER: units per
 * slot, or 0 to take it from the channel.
 */
template <uint32_t PER>
__device__ __forceinline__ int send_block(const gpuq_dev_chan &c, const void *msg, uint32_t len)
{
	unsigned lane = lane_id();
	uint32_t per = PER ? PER : c.slot_size / 8;
	unsigned long long gmsg = (unsigned long long)__cvta_generic_to_global(msg), base = 0;
	uint64_t cached = c.dev_head ? cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*c.dev_head).load(
					       cuda::memory_order_relaxed)
				     : 0;
	tag_units t;

	if (lane == 0)
		base = take(c, 32);
	__syncwarp(); /* every lane's message, written before the call, is visible to the others */
	load_tag_units(t, per, 0, lane, gmsg, len);
	base = __shfl_sync(0xffffffffu, base, 0);
	if (!c.dev_head || base + lane - cached >= c.nslots)
		wait_room(c, base + lane);
	__syncwarp(); /* every lane's slot is free before any lane writes */
	store_tag_units(c, t, per, 0, base);
	for (uint32_t r0 = 8; r0 < per; r0 += 8) {
		load_tag_units(t, per, r0, lane, gmsg, len);
		store_tag_units(c, t, per, r0, base);
	}
	return 0;
}

/* Warp-aggregated send for the lanes in mask (all of which must call it together). */
__device__ __forceinline__ int send_lanes(const gpuq_dev_chan &c, const void *msg, uint32_t len, unsigned mask)
{
	unsigned lane = lane_id();
	bool ok = len <= c.slot_size;
	unsigned vmask = __ballot_sync(mask, ok);
	unsigned long long base = 0;

	if (!ok)
		return -EMSGSIZE; /* only the lanes with sendable messages take positions */
	unsigned leader = __ffs(vmask) - 1;
	/*
	 * The warp-wide writes wait until every lane's slot is free before any
	 * lane writes: on a ring smaller than the warp's share, a lane would
	 * wait for a position of its own warp. There each lane goes alone.
	 */
	bool fits = __popc(vmask) <= c.nslots;
	bool block = fits && c.format == GPUQ_CHAN_FMT_TAG && vmask == 0xffffffffu &&
		     __all_sync(vmask, __isGlobal(msg) && ((uintptr_t)msg & 7) == 0);

	if (block) {
		/* A constant unit count lets the compiler turn divisions into shifts and drop the tests. */
		switch (c.slot_size) {
		case 16: return send_block<2>(c, msg, len);
		case 32: return send_block<4>(c, msg, len);
		case 64: return send_block<8>(c, msg, len);
		case 128: return send_block<16>(c, msg, len);
		case 256: return send_block<32>(c, msg, len);
		default: return send_block<0>(c, msg, len);
		}
	}
	if (lane == leader)
		base = take(c, __popc(vmask));
	/* The cached head is read while the take is in flight: two latencies overlap. */
	uint64_t cached = c.dev_head ? cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*c.dev_head).load(
					       cuda::memory_order_relaxed)
				     : 0;
	base = __shfl_sync(vmask, base, leader);
	uint64_t pos = base + __popc(vmask & ((1u << lane) - 1));
	bool room = c.dev_head && pos - cached < c.nslots;
	if (fits && c.format == GPUQ_CHAN_FMT_SEQ) {
		bool big = len >= 256, coop = __isGlobal(msg) && ((uintptr_t)msg & 15) == 0;

		if (__any_sync(vmask, big) && __all_sync(vmask, coop)) {
			if (!room)
				wait_room(c, pos);
			__syncwarp(vmask); /* every lane's slot is free before any lane writes */
			put_seq_warp(c, pos, msg, len, vmask);
			return 0;
		}
	}
	if (room && c.format == GPUQ_CHAN_FMT_TAG)
		put_tag(c, pos, msg, len);
	else
		put(c, pos, msg, len);
	return 0;
}
#endif

} /* namespace gpuq_detail */

/*
 * Sends one message of len bytes (len <= slot_size) from one thread: takes
 * the next position (one system-scope atomic add on the tail), waits while
 * the ring is full (never overwrites), writes, then publishes the slot.
 * Messages of one thread arrive in the order it sent them. Returns 0 or
 * -EMSGSIZE.
 */
GPUQ_DEV int gpuq_dev_send(gpuq_dev_chan c, const void *msg, uint32_t len)
{
	if (len > c.slot_size)
		return -EMSGSIZE;
#ifdef __CUDA_ARCH__
	if (c.dev_head && c.format == GPUQ_CHAN_FMT_TAG) {
		/* A sender mapping: read the cached head while the take is in flight. */
		cuda::atomic_ref<uint64_t, cuda::thread_scope_device> cached_ref(*c.dev_head);
		uint64_t cached = cached_ref.load(cuda::memory_order_relaxed);
		uint64_t pos = gpuq_detail::take(c, 1), used = pos - cached;

		if (used >= c.nslots) {
			gpuq_detail::put(c, pos, msg, len); /* waits for room */
		} else if (used < c.nslots - c.nslots / 4) {
			gpuq_detail::put_tag(c, pos, msg, len);
		} else {
			/*
			 * Three quarters of the room last seen are used: read head
			 * now, but wait for it only after the message is on its
			 * way, so no message waits a bus round trip for a head
			 * read while there is room.
			 */
			uint64_t h = gpuq_detail::load_relaxed(&c.hdr->head) & ~GPUQ_CHAN_HELD;

			gpuq_detail::put_tag(c, pos, msg, len);
			cached_ref.fetch_max(h, cuda::memory_order_relaxed);
		}
		return 0;
	}
#endif
	gpuq_detail::put(c, gpuq_detail::take(c, 1), msg, len);
	return 0;
}

/*
 * Like gpuq_dev_send, but takes a position only when its slot is free now
 * (a CAS on the tail): returns 0, -EAGAIN (full: nothing was sent) or
 * -EMSGSIZE.
 */
GPUQ_DEV int gpuq_dev_try_send(gpuq_dev_chan c, const void *msg, uint32_t len)
{
	if (len > c.slot_size)
		return -EMSGSIZE;
	uint64_t *tail = &c.hdr->tail;

#ifdef __CUDA_ARCH__
	if (c.dev_tail)
		tail = c.dev_tail;
#endif
	for (;;) {
		uint64_t t = gpuq_detail::load_relaxed(tail);

		if ((int64_t)(t - (gpuq_detail::load_acquire(&c.hdr->head) & ~GPUQ_CHAN_HELD)) >= (int64_t)c.nslots)
			return -EAGAIN; /* full: the slot still holds an unread message */
		if (gpuq_detail::cas(tail, t, t + 1)) {
			gpuq_detail::put(c, t, msg, len);
			return 0;
		}
		/* the tail moved on: look again */
	}
}

/*
 * Sends n messages from one thread with one tail update: message i is the
 * lens[i] bytes at msgs + i * msg_stride; they take consecutive positions,
 * so arrive in order and unbroken by other senders. Returns 0, or
 * -EMSGSIZE when any is too long (then none is sent).
 */
GPUQ_DEV int gpuq_dev_send_batch(gpuq_dev_chan c, const void *msgs, uint32_t msg_stride, const uint32_t *lens,
				 uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (lens[i] > c.slot_size)
			return -EMSGSIZE;
	if (!n)
		return 0;
	uint64_t base = gpuq_detail::take(c, n);
	if (c.format == GPUQ_CHAN_FMT_TAG) {
		for (i = 0; i < n; i++)
			gpuq_detail::put(c, base + i, (const uint8_t *)msgs + (uint64_t)i * msg_stride, lens[i]);
		return 0;
	}
	/* SEQ: write a ring's worth, then one fence publishes the lot. */
	for (uint32_t first = 0; first < n; first += c.nslots) {
		uint32_t end = n - first < c.nslots ? n : first + c.nslots;

		for (i = first; i < end; i++) {
			gpuq_detail::wait_room(c, base + i);
			gpuq_detail::put_seq_data(c, base + i, (const uint8_t *)msgs + (uint64_t)i * msg_stride,
						  lens[i]);
		}
		gpuq_detail::fence_system();
		for (i = first; i < end; i++)
			gpuq_detail::store_relaxed(gpuq_detail::slot_seq(gpuq_detail::slot_at(c, base + i)),
						   base + i + 1);
	}
	return 0;
}

/*
 * Warp-aggregated send: all 32 lanes of a full, converged warp call it
 * together, each with its own message. Lane 0 takes 32 positions with one
 * atomic add and broadcasts the first (__shfl_sync); each lane then waits
 * for its slot, writes it (16-byte stores when msg is 16-byte aligned) and
 * publishes it. Lane i's message takes position base + i. A lane whose len
 * is over slot_size gets -EMSGSIZE and takes no position; the others
 * return 0. Calling it from a partial or diverged warp is undefined
 * (use gpuq_dev_send_active). On the host it is gpuq_dev_send.
 */
GPUQ_DEV int gpuq_dev_send_warp(gpuq_dev_chan c, const void *msg, uint32_t len)
{
#ifdef __CUDA_ARCH__
	return gpuq_detail::send_lanes(c, msg, len, 0xffffffffu);
#else
	return gpuq_dev_send(c, msg, len);
#endif
}

/*
 * gpuq_dev_send_warp for whichever lanes arrive together (__activemask):
 * for partial warps (a grid's last warp) and branches taken by only some
 * lanes. The first active lane takes popc(mask) positions; lanes take them
 * in lane order. Every lane that reaches the call sends exactly once.
 */
GPUQ_DEV int gpuq_dev_send_active(gpuq_dev_chan c, const void *msg, uint32_t len)
{
#ifdef __CUDA_ARCH__
	return gpuq_detail::send_lanes(c, msg, len, __activemask());
#else
	return gpuq_dev_send(c, msg, len);
#endif
}

/*
 * Receives one message into buf (cap bytes; a longer message is cut to
 * cap), waiting until one is there. Returns the message's full length.
 * Any number of threads may receive at once; each message goes to one.
 */
GPUQ_DEV int gpuq_dev_recv(gpuq_dev_chan c, void *buf, uint32_t cap)
{
	return gpuq_detail::recv(c, buf, cap, true);
}

/*
 * Like gpuq_dev_recv, but returns -EAGAIN at once when no message is
 * ready. Through a receiver mapping, a try that got a message frees it
 * after the earlier positions other threads hold are freed: it can wait
 * that long (until their messages arrive), never for its own.
 */
GPUQ_DEV int gpuq_dev_try_recv(gpuq_dev_chan c, void *buf, uint32_t cap)
{
	return gpuq_detail::recv(c, buf, cap, false);
}

/*
 * A receiver handle: one thread's own way to receive, for a thread that
 * receives many messages in a row (a persistent kernel's feeder). Through
 * a receiver mapping, once it has freed one message it frees the next
 * without waiting for that to cross the bus (about 0.3 us less per
 * message than gpuq_dev_recv, which must, because any thread may free
 * next); the first other thread that frees after it reads the ring's head
 * back once instead. Without a receiver mapping it is gpuq_dev_recv.
 * Other threads may go on receiving on the channel meanwhile, with
 * handles or without; where they take turns, a handle costs what
 * gpuq_dev_recv does.
 *
 * Keep a handle in the thread that began it (a copy used by another
 * thread breaks the order of head's stores) and end it when the thread is
 * done; a handle left without gpuq_dev_receiver_end costs the next freer
 * one read of head, nothing else.
 */
struct gpuq_dev_receiver {
	gpuq_dev_chan c;
	uint64_t last; /* the count this handle wrote to dev_rx[1] last, 0: none */
};

GPUQ_DEV gpuq_dev_receiver gpuq_dev_receiver_begin(gpuq_dev_chan c)
{
	return gpuq_dev_receiver{c, 0};
}

/* gpuq_dev_recv through a handle. */
GPUQ_DEV int gpuq_dev_receiver_recv(gpuq_dev_receiver *r, void *buf, uint32_t cap)
{
	if (!r->c.dev_rx)
		return gpuq_detail::recv(r->c, buf, cap, true);
	return gpuq_detail::recv_mapped(r->c, buf, cap, true, &r->last);
}

/* gpuq_dev_try_recv through a handle. */
GPUQ_DEV int gpuq_dev_receiver_try_recv(gpuq_dev_receiver *r, void *buf, uint32_t cap)
{
	if (!r->c.dev_rx)
		return gpuq_detail::recv(r->c, buf, cap, false);
	return gpuq_detail::recv_mapped(r->c, buf, cap, false, &r->last);
}

/* Ends a handle: waits until its last free is visible and says so, so the next freer need not read head back. */
GPUQ_DEV void gpuq_dev_receiver_end(gpuq_dev_receiver *r)
{
	if (r->c.dev_rx)
		gpuq_detail::settle(r->c, &r->last);
	r->last = 0;
}

/*
 * Declares one sender finished: adds 1 to the header's senders_done
 * (system scope, after this thread's sends are visible). A receiver that
 * knows how many senders there are stops once they are all done and the
 * ring is empty. Call it once per sender (e.g. once per block, after
 * __syncthreads, from thread 0).
 */
GPUQ_DEV void gpuq_dev_chan_done(gpuq_dev_chan c)
{
	gpuq_detail::add_u32(&c.hdr->senders_done, 1);
}

/* How many senders have called gpuq_dev_chan_done (or the CPU-side equivalent). */
GPUQ_DEV uint32_t gpuq_dev_senders_done(gpuq_dev_chan c)
{
	return gpuq_detail::load_u32(&c.hdr->senders_done);
}

#endif
