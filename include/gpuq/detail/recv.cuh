/* gpuq/detail/recv.cuh: reading a slot, claiming and freeing positions (shared and receiver mappings); gpuq_dev_recv and its kin (part of gpuq_device.cuh; include that). */
#ifndef GPUQ_DETAIL_RECV_CUH
#define GPUQ_DETAIL_RECV_CUH

#ifndef GPUQ_GPUQ_DEVICE_CUH
#error "include <gpuq/gpuq_device.cuh>, not the headers under gpuq/detail/"
#endif

#include <gpuq/detail/atomics.cuh>
#include <gpuq/detail/slots.cuh>

namespace gpuq_detail
{

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
			uint32_t w[2] = { u.d0, u.d1 };
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
	store_relaxed(&c.hdr->head,
		      (h + 1) | GPUQ_CHAN_HELD); /* the end stays held (gpuq_chan.h) */
	if (after_me) {
		*mine = (h + 1) | GPUQ_DEV_RX_UNFENCED;
#ifdef __CUDA_ARCH__
		cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(c.dev_rx[1])
			.store(*mine, cuda::memory_order_relaxed);
#else
		__atomic_store_n(&c.dev_rx[1], *mine, __ATOMIC_RELAXED);
#endif
		return;
	}
#ifdef __CUDA_ARCH__
	cuda::atomic_ref<uint64_t, cuda::thread_scope_device>(c.dev_rx[1])
		.store(h + 1, cuda::memory_order_release);
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
				settle(c,
				       mine); /* waiting a while: a sender may be waiting on our last free */
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

} /* namespace gpuq_detail */

GPUQ_DEV int gpuq_dev_recv(gpuq_dev_chan c, void *buf, uint32_t cap)
{
	return gpuq_detail::recv(c, buf, cap, true);
}

GPUQ_DEV int gpuq_dev_try_recv(gpuq_dev_chan c, void *buf, uint32_t cap)
{
	return gpuq_detail::recv(c, buf, cap, false);
}

GPUQ_DEV uint32_t gpuq_dev_senders_done(gpuq_dev_chan c)
{
	return gpuq_detail::load_u32(&c.hdr->senders_done);
}

#endif
