/* gpuq/detail/send.cuh: taking positions, waiting for room, writing and publishing slots; the warp-wide sends; gpuq_dev_send and its kin (part of gpuq_device.cuh; include that). */
#ifndef GPUQ_DETAIL_SEND_CUH
#define GPUQ_DETAIL_SEND_CUH

#ifndef GPUQ_GPUQ_DEVICE_CUH
#error "include <gpuq/gpuq_device.cuh>, not the headers under gpuq/detail/"
#endif

#include <gpuq/detail/atomics.cuh>
#include <gpuq/detail/slots.cuh>

namespace gpuq_detail
{

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
__device__ __forceinline__ void put_seq_warp(const gpuq_dev_chan &c, uint64_t pos, const void *msg,
					     uint32_t len, unsigned vmask)
{
	unsigned lane = lane_id(), rank = __popc(vmask & ((1u << lane) - 1)), nact = __popc(vmask);

	for (unsigned m = vmask; m; m &= m - 1) {
		int src = __ffs(m) - 1;
		const uint8_t *p =
			(const uint8_t *)__shfl_sync(vmask, (unsigned long long)msg, src);
		uint32_t l = __shfl_sync(vmask, len, src);
		uint8_t *d = slot_at(c, __shfl_sync(vmask, (unsigned long long)pos, src)) +
			     GPUQ_CHAN_SLOT_HDR;

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
__device__ __forceinline__ void load_tag_units(tag_units &t, uint32_t per, uint32_t r0,
					       unsigned lane, unsigned long long gmsg, uint32_t len)
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
		uint32_t l = __shfl_sync(0xffffffffu, len, t.m[k]), u = t.u[k],
			 whole = 8 * u + 8 <= l;

		/* Unit 0 always goes (it carries the length); units past the message do not. */
		t.l[k] = u == 0 || 8 * u < l ? l : ~0u;
		t.v[k].x = t.v[k].y = 0;
		asm volatile(
			"{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %3, 0;\n\t@p ld.global.v2.u32 {%0, %1}, [%2];\n\t}"
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
		const uint8_t *p =
			(const uint8_t *)__cvta_global_to_generic((size_t)(g[k] - 8 * t.u[k]));

		t.v[k].x = word_at(p, 8 * t.u[k], t.l[k]);
		t.v[k].y = word_at(p, 8 * t.u[k] + 4, t.l[k]);
	}
}

__device__ __forceinline__ void store_tag_units(const gpuq_dev_chan &c, const tag_units &t,
						uint32_t per, uint32_t r0, uint64_t base)
{
#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (r0 + k >= per)
			break;
		store_unit_if(slot_at(c, base + t.m[k]) + 16 * t.u[k], t.v[k].x, t.v[k].y,
			      t.u[k] ? rest_of(c, base + t.m[k]) : tag_of(c, base + t.m[k], t.l[k]),
			      t.l[k] != ~0u);
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
	uint64_t cached = c.dev_head ?
				  cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*c.dev_head)
					  .load(cuda::memory_order_relaxed) :
				  0;
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
__device__ __forceinline__ int send_lanes(const gpuq_dev_chan &c, const void *msg, uint32_t len,
					  unsigned mask)
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
	uint64_t cached = c.dev_head ?
				  cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(*c.dev_head)
					  .load(cuda::memory_order_relaxed) :
				  0;
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

		if ((int64_t)(t - (gpuq_detail::load_acquire(&c.hdr->head) & ~GPUQ_CHAN_HELD)) >=
		    (int64_t)c.nslots)
			return -EAGAIN; /* full: the slot still holds an unread message */
		if (gpuq_detail::cas(tail, t, t + 1)) {
			gpuq_detail::put(c, t, msg, len);
			return 0;
		}
		/* the tail moved on: look again */
	}
}

GPUQ_DEV int gpuq_dev_send_batch(gpuq_dev_chan c, const void *msgs, uint32_t msg_stride,
				 const uint32_t *lens, uint32_t n)
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
			gpuq_detail::put(c, base + i,
					 (const uint8_t *)msgs + (uint64_t)i * msg_stride, lens[i]);
		return 0;
	}
	/* SEQ: write a ring's worth, then one fence publishes the lot. */
	for (uint32_t first = 0; first < n; first += c.nslots) {
		uint32_t end = n - first < c.nslots ? n : first + c.nslots;

		for (i = first; i < end; i++) {
			gpuq_detail::wait_room(c, base + i);
			gpuq_detail::put_seq_data(c, base + i,
						  (const uint8_t *)msgs + (uint64_t)i * msg_stride,
						  lens[i]);
		}
		gpuq_detail::fence_system();
		for (i = first; i < end; i++)
			gpuq_detail::store_relaxed(
				gpuq_detail::slot_seq(gpuq_detail::slot_at(c, base + i)),
				base + i + 1);
	}
	return 0;
}

GPUQ_DEV int gpuq_dev_send_warp(gpuq_dev_chan c, const void *msg, uint32_t len)
{
#ifdef __CUDA_ARCH__
	return gpuq_detail::send_lanes(c, msg, len, 0xffffffffu);
#else
	return gpuq_dev_send(c, msg, len);
#endif
}

GPUQ_DEV int gpuq_dev_send_active(gpuq_dev_chan c, const void *msg, uint32_t len)
{
#ifdef __CUDA_ARCH__
	return gpuq_detail::send_lanes(c, msg, len, __activemask());
#else
	return gpuq_dev_send(c, msg, len);
#endif
}

GPUQ_DEV void gpuq_dev_chan_done(gpuq_dev_chan c)
{
	gpuq_detail::add_u32(&c.hdr->senders_done, 1);
}

#endif
