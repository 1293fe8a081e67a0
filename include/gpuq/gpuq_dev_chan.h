/* gpuq_dev_chan.h: struct gpuq_dev_chan, a channel as a kernel sees it; shared by gpuq_cuda.h (C) and gpuq_device.cuh. */
#ifndef GPUQ_GPUQ_DEV_CHAN_H
#define GPUQ_GPUQ_DEV_CHAN_H

#include <stdint.h>

struct gpuq_chan_hdr; /* gpuq_chan.h */

/*
 * A channel mapped for the GPU: device-visible pointers into the channel's
 * shared memory, filled by gpuq_chan_map_cuda() (or, for host-side users of
 * gpuq_device.cuh, by hand). Plain data: pass it to kernels by value. It
 * owns nothing; it is valid while the channel stays open and mapped.
 */
struct gpuq_dev_chan {
	struct gpuq_chan_hdr *hdr; /* the header page */
	uint8_t *slots;            /* slot 0 (hdr + hdr->slots_off) */
	uint32_t slot_size;        /* payload bytes per slot */
	uint32_t nslots;           /* a power of two */
	uint64_t stride;           /* bytes from one slot to the next */
	uint32_t format;           /* GPUQ_CHAN_FMT_SEQ or GPUQ_CHAN_FMT_TAG (gpuq_chan.h) */
	uint32_t lap_shift;        /* log2(nslots) */
	/*
	 * Set by gpuq_chan_map_cuda_sender, else NULL: device memory holding
	 * the positions this process's kernels take, and the last head they
	 * saw, so a send touches host memory only to write its message.
	 */
	uint64_t *dev_tail;
	uint64_t *dev_head;
	/*
	 * Set by gpuq_chan_map_cuda_receiver, else NULL: two counters in
	 * device memory, the next position this process's kernels claim and
	 * the next they free, so a receive claims its message without an
	 * atomic across the bus.
	 */
	uint64_t *dev_rx;
};

/*
 * Top bit of dev_rx[1]: the free it counts was made by a receiver handle
 * (gpuq_dev_receiver_begin) without a fence, so its store to the ring's
 * head may still be on its way; the rest of the word is the position.
 */
#define GPUQ_DEV_RX_UNFENCED (1ull << 63)

#endif
