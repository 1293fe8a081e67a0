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

/* Makes everything this thread wrote before visible to the host (fence.sys), then publishes v. */
GPUQ_DEV void store_release(uint64_t *p, uint64_t v)
{
#ifdef __CUDA_ARCH__
	__threadfence_system();
	cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).store(v, cuda::memory_order_release);
#else
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
#endif
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

/* Copies a message into a slot's payload (16-byte aligned): 16-byte stores where the source allows. */
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

/* Copies a payload out of a slot, past every cache (ld.cv: the slot is rewritten each lap). */
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

		if (pos - cached.load(cuda::memory_order_acquire) < c.nslots)
			return;
		for (;;) {
			uint64_t h = load_acquire(&c.hdr->head);

			cached.fetch_max(h, cuda::memory_order_acq_rel);
			if (pos - h < c.nslots)
				return;
			backoff(&n);
		}
	}
#endif
	while (pos - load_acquire(&c.hdr->head) >= c.nslots)
		backoff(&n);
}

/* Fills position pos, already taken: waits for room, writes, publishes (seq = pos + 1). */
GPUQ_DEV void put(const gpuq_dev_chan &c, uint64_t pos, const void *msg, uint32_t len)
{
	uint8_t *slot = slot_at(c, pos);

	wait_room(c, pos);
	*slot_len(slot) = len;
	put_bytes(slot + GPUQ_CHAN_SLOT_HDR, msg, len);
	store_release(slot_seq(slot), pos + 1);
}

/* The receive loop of gpuq_dev_recv (wait) and gpuq_dev_try_recv. */
GPUQ_DEV int recv(const gpuq_dev_chan &c, void *buf, uint32_t cap, bool wait)
{
	unsigned n = 0;

	for (;;) {
		uint64_t h = load_relaxed(&c.hdr->head);
		uint8_t *slot = slot_at(c, h);
		int64_t d = (int64_t)(load_acquire(slot_seq(slot)) - (h + 1));

		if (d == 0) {
			uint32_t len = load_u32(slot_len(slot));

			if (len > c.slot_size)
				len = c.slot_size; /* the sender's word: never past the slot */
			/* Copy first, then claim; a lost claim means the copy may be torn: drop it. */
			get_bytes(buf, slot + GPUQ_CHAN_SLOT_HDR, len < cap ? len : cap);
			if (!cas_acq_rel(&c.hdr->head, h, h + 1))
				continue; /* another receiver took it */
			return (int)len;
		}
		if (d < 0) { /* not published yet: empty, or its sender is still writing */
			if (!wait)
				return -EAGAIN;
			backoff(&n);
		}
		/* d > 0: head moved on under us; reload it. */
	}
}

#ifdef __CUDA_ARCH__
GPUQ_DEV unsigned lane_id()
{
	unsigned l;

	asm volatile("mov.u32 %0, %%laneid;" : "=r"(l));
	return l;
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
	if (lane == leader)
		base = take(c, __popc(vmask));
	base = __shfl_sync(vmask, base, leader);
	put(c, base + __popc(vmask & ((1u << lane) - 1)), msg, len);
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

		if ((int64_t)(t - gpuq_detail::load_acquire(&c.hdr->head)) >= (int64_t)c.nslots)
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
	for (i = 0; i < n; i++)
		gpuq_detail::put(c, base + i, (const uint8_t *)msgs + (uint64_t)i * msg_stride, lens[i]);
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

/* Like gpuq_dev_recv, but returns -EAGAIN at once when no message is ready. */
GPUQ_DEV int gpuq_dev_try_recv(gpuq_dev_chan c, void *buf, uint32_t cap)
{
	return gpuq_detail::recv(c, buf, cap, false);
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
