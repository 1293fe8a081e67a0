/* gpuq_chan.h: the layout and lock-free protocol of a gpuq channel ring, shared by libgpuq, gpuqd and gpuq_device.cuh. */
#ifndef GPUQ_CHAN_H
#define GPUQ_CHAN_H

#include <stdint.h>

/*
 * A channel is a named ring of fixed-size message slots in shared memory (a
 * sealed memfd that gpuqd creates), mapped by CPU processes and, through
 * gpuq_chan_map_cuda(), by GPU kernels. Any number of senders and receivers
 * may use one channel at once.
 *
 * Protocol (a bounded multi-producer multi-consumer queue): positions are
 * free-running 64-bit counters; position p lives in slot p & (nslots - 1).
 * Only senders write a slot's seq; only receivers move head.
 *   - Initially slot i has seq = i (empty) and head = tail = 0.
 *   - A sender takes position p (atomic add on tail; or a CAS for the "try"
 *     form), waits until p < head + nslots (the slot's last-lap message has
 *     been consumed: when the ring is full it waits, it never overwrites),
 *     writes len and data, makes them visible (system-scope fence), then
 *     stores seq = p + 1.
 *   - A receiver reads head p; the message is there when slot.seq == p + 1;
 *     it copies it out first and then claims it with a CAS head p -> p + 1.
 *     A receiver whose CAS fails drops its copy (another took the message,
 *     and the slot may already be refilled). So every position below head
 *     has been fully read: head is also the count of freed slots, which lets
 *     a sender that caches head send many messages without a read.
 * Order: messages from one sender are received in the order it sent them
 * (its positions increase); messages of different senders interleave.
 *
 * Sleeping receivers: a receiver that found nothing for a while sets
 * rx_waiting, re-checks, and sleeps on the channel's eventfd. gpuqd watches
 * the channels whose rx_waiting is set and writes the eventfd when the head
 * slot fills; a CPU sender that sees rx_waiting writes it itself.
 */

#define GPUQ_CHAN_MAGIC 0x6e616863u /* "chan" */
#define GPUQ_CHAN_VERSION 2u
#define GPUQ_CHAN_NAME_MAX 64
#define GPUQ_CHAN_HDR_SIZE 4096u
#define GPUQ_CHAN_SLOT_HDR 16u

/* Directions, as stored in the header (gpuq.h has the API flags). */
#define GPUQ_CHAN_DIR_GPU_TO_CPU 1u
#define GPUQ_CHAN_DIR_CPU_TO_GPU 2u

struct gpuq_chan_slot {
	uint64_t seq;
	uint32_t len;
	uint32_t rsvd;
	/* followed by slot_size bytes of payload */
};

/* The header page. Fixed fields are written by gpuqd before anyone maps it. */
struct gpuq_chan_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t slot_size; /* payload bytes per slot, a multiple of 16 */
	uint32_t nslots;    /* a power of two */
	uint32_t direction;
	uint32_t tail_owner; /* pid whose GPU keeps the tail in device memory (gpuq_chan_map_cuda_sender), 0: none */
	uint64_t stride;    /* bytes from one slot to the next: 16 + slot_size */
	uint64_t slots_off; /* offset of slot 0 from the header */
	uint64_t total_size;
	uint8_t pad0[64 - 48];
	uint64_t tail;       /* next position a sender takes */
	uint8_t pad1[56];
	uint64_t head;       /* next position a receiver takes */
	uint8_t pad2[56];
	uint32_t rx_waiting; /* a receiver sleeps on the eventfd */
	uint8_t pad3[60];
	uint32_t senders_done; /* senders that declared they are finished (gpuq_dev_chan_done) */
	uint8_t pad4[60];
};

#ifdef __cplusplus
static_assert(sizeof(struct gpuq_chan_hdr) == 320, "channel header layout");
#else
_Static_assert(sizeof(struct gpuq_chan_hdr) == 320, "channel header layout");
#endif

static inline struct gpuq_chan_slot *gpuq_chan_slot_at(struct gpuq_chan_hdr *h, uint64_t pos)
{
	return (struct gpuq_chan_slot *)((uint8_t *)h + h->slots_off +
					 (pos & (uint64_t)(h->nslots - 1)) * h->stride);
}

/* Size of the shared memory for a channel of nslots slots of slot_size bytes. */
static inline uint64_t gpuq_chan_size(uint32_t slot_size, uint32_t nslots)
{
	return GPUQ_CHAN_HDR_SIZE + (uint64_t)nslots * (GPUQ_CHAN_SLOT_HDR + slot_size);
}

#endif
