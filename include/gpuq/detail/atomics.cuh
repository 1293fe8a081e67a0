/* gpuq/detail/atomics.cuh: system-scope loads, stores and atomics on the shared ring, the TAG format's 16-byte units, device-scope counters, backoff (part of gpuq_device.cuh; include that). */
#ifndef GPUQ_DETAIL_ATOMICS_CUH
#define GPUQ_DETAIL_ATOMICS_CUH

#ifndef GPUQ_GPUQ_DEVICE_CUH
#error "include <gpuq/gpuq_device.cuh>, not the headers under gpuq/detail/"
#endif

namespace gpuq_detail
{

GPUQ_DEV uint64_t load_acquire(uint64_t *p)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).load(
		cuda::memory_order_acquire);
#else
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}

/* A relaxed load that really goes to memory (ld.relaxed.sys: not served from a stale L1 line). */
GPUQ_DEV uint64_t load_relaxed(uint64_t *p)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).load(
		cuda::memory_order_relaxed);
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
	cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).store(v,
									cuda::memory_order_relaxed);
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

	asm volatile("st.volatile.global.v2.b64 [%0], {%1, %2};" ::"l"(p), "l"(w0), "l"(w1)
		     : "memory");
#else
	__atomic_store_n((uint64_t *)p + 1, ((uint64_t)tag << 32) | d1, __ATOMIC_RELAXED);
	__atomic_store_n((uint64_t *)p, ((uint64_t)tag << 32) | d0, __ATOMIC_RELAXED);
#endif
}

#ifdef __CUDA_ARCH__
/* store_unit when pred: a predicated store, where a branch around each store would serialise them. */
__device__ __forceinline__ void store_unit_if(uint8_t *p, uint32_t d0, uint32_t d1, uint32_t tag,
					      uint32_t pred)
{
	uint64_t w0 = ((uint64_t)tag << 32) | d0, w1 = ((uint64_t)tag << 32) | d1;

	asm volatile(
		"{\n\t.reg .pred q;\n\tsetp.ne.u32 q, %3, 0;\n\t@q st.volatile.global.v2.b64 [%0], {%1, %2};\n\t}" ::
			"l"(p),
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

	asm volatile("ld.volatile.global.v2.b64 {%0, %1}, [%2];"
		     : "=l"(w0), "=l"(w1)
		     : "l"(p)
		     : "memory");
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
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).fetch_add(
		v, cuda::memory_order_relaxed);
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
	return __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
#endif
}

/* The receivers' claim: orders the copy made before it (release) and sees other claims (acquire). */
GPUQ_DEV bool cas_acq_rel(uint64_t *p, uint64_t expect, uint64_t desired)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_system>(*p).compare_exchange_strong(
		expect, desired, cuda::memory_order_acq_rel);
#else
	return __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_RELAXED);
#endif
}

GPUQ_DEV uint32_t load_u32(uint32_t *p)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*p).load(
		cuda::memory_order_acquire);
#else
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}

GPUQ_DEV void add_u32(uint32_t *p, uint32_t v)
{
#ifdef __CUDA_ARCH__
	__threadfence_system();
	cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*p).fetch_add(
		v, cuda::memory_order_release);
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

/* A receiver mapping's counters in device memory: [0] the next position to claim, [1] the next to free. */
GPUQ_DEV uint64_t dev_fetch_add(uint64_t *p, uint64_t v)
{
#ifdef __CUDA_ARCH__
	return cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*p).fetch_add(
		v, cuda::memory_order_relaxed);
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
	return __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
#endif
}

} /* namespace gpuq_detail */

#endif
