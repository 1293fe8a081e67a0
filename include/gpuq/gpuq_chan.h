/* gpuq_chan.h: the layout and lock-free protocol of a gpuq channel ring, shared by libgpuq, gpuqd and gpuq_device.cuh. */
#ifndef GPUQ_CHAN_H
#define GPUQ_CHAN_H

#include <stddef.h>
#include <stdint.h>

/*
 * A channel is a named ring of fixed-size message slots in shared memory (a
 * sealed memfd that gpuqd creates), mapped by CPU processes and, through
 * gpuq_chan_map_cuda(), by GPU kernels. Any number of senders and receivers
 * may use one channel at once.
 *
 * Protocol (a bounded multi-producer multi-consumer queue): positions are
 * free-running 64-bit counters; position p lives in slot p & (nslots - 1).
 * Only senders write slots; only receivers move head.
 *   - A sender takes position p (atomic add on tail; or a CAS for the "try"
 *     form), waits until p < head + nslots (the slot's last-lap message has
 *     been consumed: when the ring is full it waits, it never overwrites),
 *     then writes the message so that it is seen as a whole (the formats
 *     below say how).
 *   - A receiver reads head p; once the message at p is there it copies it
 *     out first and then claims it with a CAS head p -> p + 1 (or claims k
 *     copied messages with one CAS p -> p + k). A receiver whose CAS fails
 *     drops its copy (another took the message, and the slot may already be
 *     refilled). So every position below head has been fully read: head is
 *     also the count of freed slots, which lets a sender that caches head
 *     send many messages without a read.
 * Order: messages from one sender are received in the order it sent them
 * (its positions increase); messages of different senders interleave.
 *
 * Two slot formats; gpuqd picks one from the slot size (gpuq_chan_format):
 *   - SEQ (slots over GPUQ_CHAN_TAG_MAX bytes): {u64 seq, u32 len, u32 0,
 *     payload}. Memory starts zeroed (seq 0: no message). A sender writes len and the
 *     payload, makes them visible (a system-scope fence) and then stores
 *     seq = p + 1; the message at p is there when seq == p + 1.
 *   - TAG (small slots): the slot is an array of 8-byte words, each holding
 *     4 payload bytes (low half) and a 32-bit tag (high half). With
 *     lap = (p >> log2(nslots)) + 1, the two words of unit 0 carry
 *     (lap << 9) | len (23 bits of lap, 9 of length) and the other words
 *     lap itself (32 bits): a unit a later message of the slot did not
 *     rewrite passes for a new one only 2^32 laps later.
 *     A message of len bytes fills max(1, ceil(len / 8)) 16-byte units
 *     (two words each; padding bytes are 0), every word carrying the same
 *     tag. Aligned 8-byte stores are single-copy atomic on the CPU and
 *     across PCIe, so a receiver that reads every word of the message with
 *     the tag of position p has all of it: no fence, no separate seq, and a
 *     GPU reader gets a small message with one load. Memory starts zeroed
 *     (lap 0 never occurs).
 *
 * Mappings that keep an end in device memory (libgpuq-cuda): a sender
 * mapping takes positions from a device counter instead of tail and caches
 * head there; a receiver mapping takes positions from a device counter
 * (a blocking receive takes its position before the message is there),
 * copies, and frees positions in order with a plain store to head. While
 * one is in place, tail_owner / rx_owner name its process and CPU senders /
 * receivers are refused. The mapping also sets GPUQ_CHAN_HELD in tail (send
 * end) or head (receive end) with a CAS, after gpuqd recorded the owner: a
 * CPU sender or receiver that read the word before then cannot take a
 * position too (its CAS fails, and it finds the bit: -EBUSY). A held tail
 * stays where the mapping took it from; a held head keeps moving, bit set.
 * CPU users and gpuqd mask the bit off; giving the end back clears it. A
 * bit held with no owner recorded (the kernels of an owner that died
 * stored head after gpuqd let the end go) is cleared by the next CPU user.
 * Kernels using a plain mapping (gpuq_chan_map_cuda) must not use an end
 * that a mapping holds: they do not look at the bit.
 *
 * Regions and who may write them (GPUQ_CHAN_VERSION 5). The memory is three
 * memfds that every process maps side by side, in this order, so one base
 * address and the offsets below reach every field:
 *   - the fixed page (offset 0, GPUQ_CHAN_FIXED_SIZE): magic, geometry and
 *     the GPU owner marks. Only gpuqd writes it; every opener gets a
 *     read-only descriptor.
 *   - the receiver page (GPUQ_CHAN_RX_OFF): head, rx_waiting, rx_sleepers.
 *     Writable for openers granted GPUQ_CHAN_RECV, read-only for the others.
 *   - the sender region (GPUQ_CHAN_TX_OFF to the end): tail, senders_done,
 *     the pending-position table and the slots. Writable for openers
 *     granted GPUQ_CHAN_SEND, read-only for the others.
 * gpuqd hands each opener read-only descriptors (a fresh O_RDONLY open of
 * the memfd) for what its mode does not let it write, and sets the memfds'
 * file mode to 0400 so a descriptor cannot be reopened writable through
 * /proc (processes of gpuqd's own user, and root, can: they can do anything
 * to gpuqd anyway). What the hardware cannot do: there are no write-only
 * pages, so a send-only opener can read the slots (the messages) it may
 * write, and every opener reads both positions. Modes keep a receiver from
 * injecting messages or moving tail, and a sender from consuming (moving
 * head); they do not hide messages from senders.
 *
 * Sleeping receivers: a blocking receiver that found nothing for a while
 * adds itself to rx_sleepers, re-checks, and sleeps on a futex: the 32-bit
 * half of the head slot's first word that each message changes
 * (gpuq_chan_futex_word: TAG the tag, SEQ seq's low half); it takes
 * itself off rx_sleepers when it wakes. A CPU sender that sees rx_sleepers
 * after writing a message wakes that futex (FUTEX_WAKE needs only read
 * access). For kernels, gpuqd's watcher wakes it when the head slot fills.
 * An event-loop receiver (gpuq_chan_fd) sets rx_waiting; gpuqd's watcher
 * then writes one byte to each receiving opener's wake pipe (gpuqd holds
 * the non-blocking write end, the opener the read end) when the head slot
 * fills, and clears rx_waiting. Nobody but gpuqd writes a wake pipe, and
 * gpuqd never waits on one. A receiver that claims position p wakes p's
 * futex too when rx_sleepers is set (a sleeper that saw head p sleeps on
 * past it otherwise). A receiver killed asleep leaves rx_sleepers counted:
 * senders then make one needless FUTEX_WAKE per message until the last
 * receiving opener closes, when gpuqd clears the count.
 *
 * Dead senders: a CPU sender records the position it is taking, before
 * its CAS on tail, in its opener's row of the pending table (pos + 1; 0:
 * none) and clears it once the message is written. When its session ends
 * gpuqd repairs what it left: a position below tail, not filled, that no
 * living opener has pending, gets a skip marker (TAG: unit 0 tagged for
 * its lap with length GPUQ_CHAN_TAG_SKIP; SEQ: len GPUQ_CHAN_SEQ_SKIP) that
 * receivers consume without returning it. gpuqd tells each sending opener
 * its row (ChanReply.sender_row); one opener may have up to
 * GPUQ_CHAN_PEND_WAYS sends in flight at once (threads).
 */

#define GPUQ_CHAN_MAGIC 0x6e616863u /* "chan" */
#define GPUQ_CHAN_VERSION 5u
/* Bit 63 of tail or head: a GPU mapping holds that end (above). Positions stay below it. */
#define GPUQ_CHAN_HELD (1ull << 63)
#define GPUQ_CHAN_NAME_MAX 64
/* Region offsets (above); slots start at GPUQ_CHAN_HDR_SIZE. */
#define GPUQ_CHAN_FIXED_SIZE 4096u
#define GPUQ_CHAN_RX_OFF 4096u
#define GPUQ_CHAN_RX_SIZE 4096u
#define GPUQ_CHAN_TX_OFF 8192u
#define GPUQ_CHAN_HDR_SIZE 16384u
/* Pending-position table: rows (sending openers at once) and ways (sends in flight per opener). */
#define GPUQ_CHAN_SENDERS_MAX 128u
#define GPUQ_CHAN_PEND_WAYS 4u
/* Skip markers gpuqd writes over a dead sender's position. */
#define GPUQ_CHAN_TAG_SKIP 0x1ffu
#define GPUQ_CHAN_SEQ_SKIP 0xffffffffu
#define GPUQ_CHAN_SLOT_HDR 16u /* SEQ format: seq, len, 0 */
#define GPUQ_CHAN_TAG_MAX 256u /* the largest slot of the TAG format */

/* Slot formats, as stored in the header. */
#define GPUQ_CHAN_FMT_SEQ 1u
#define GPUQ_CHAN_FMT_TAG 2u

/* Directions, as stored in the header (gpuq.h has the API flags). */
#define GPUQ_CHAN_DIR_GPU_TO_CPU 1u
#define GPUQ_CHAN_DIR_CPU_TO_GPU 2u

struct gpuq_chan_slot {
	uint64_t seq;
	uint32_t len;
	uint32_t rsvd;
	/* followed by slot_size bytes of payload */
};

/* The header: the fixed page, the receiver page and the sender pages (above), GPUQ_CHAN_HDR_SIZE bytes. */
struct gpuq_chan_hdr {
	/* Fixed page: written by gpuqd only, before anyone maps it (the owner marks later). */
	uint32_t magic;
	uint32_t version;
	uint32_t slot_size; /* payload bytes per slot, a multiple of 16 */
	uint32_t nslots;    /* a power of two */
	uint32_t direction;
	uint32_t
		tail_owner; /* pid whose GPU keeps the tail in device memory (gpuq_chan_map_cuda_sender), 0: none */
	uint64_t stride;    /* bytes from one slot to the next: gpuq_chan_stride() */
	uint64_t slots_off; /* offset of slot 0 from the header */
	uint64_t total_size;
	uint32_t format; /* GPUQ_CHAN_FMT_*: gpuq_chan_format(slot_size) */
	uint32_t
		rx_owner; /* pid whose GPU keeps head in device memory (gpuq_chan_map_cuda_receiver), 0: none */
	uint8_t pad0[GPUQ_CHAN_RX_OFF - 56];
	/* Receiver page: written by receivers (and gpuqd). */
	uint64_t head; /* next position a receiver takes */
	uint8_t pad1[56];
	uint32_t rx_waiting; /* an event-loop receiver waits on its wake pipe */
	uint8_t pad2[60];
	uint32_t rx_sleepers; /* blocking receivers asleep on the head slot's futex */
	uint8_t pad3[GPUQ_CHAN_RX_SIZE - 132];
	/* Sender pages: written by senders (and gpuqd). */
	uint64_t tail; /* next position a sender takes */
	uint8_t pad4[56];
	uint32_t senders_done; /* senders that declared they are finished (gpuq_dev_chan_done) */
	uint8_t pad5[4096 - 68];
	uint64_t pending[GPUQ_CHAN_SENDERS_MAX][GPUQ_CHAN_PEND_WAYS]; /* dead senders (above) */
};

#ifdef __cplusplus
static_assert(sizeof(struct gpuq_chan_hdr) == GPUQ_CHAN_HDR_SIZE, "channel header layout");
static_assert(offsetof(struct gpuq_chan_hdr, head) == GPUQ_CHAN_RX_OFF, "channel header layout");
static_assert(offsetof(struct gpuq_chan_hdr, tail) == GPUQ_CHAN_TX_OFF, "channel header layout");
#else
_Static_assert(sizeof(struct gpuq_chan_hdr) == GPUQ_CHAN_HDR_SIZE, "channel header layout");
_Static_assert(offsetof(struct gpuq_chan_hdr, head) == GPUQ_CHAN_RX_OFF, "channel header layout");
_Static_assert(offsetof(struct gpuq_chan_hdr, tail) == GPUQ_CHAN_TX_OFF, "channel header layout");
#endif

/* SEQ format: the slot of position pos, from the header's geometry (trusted only by whoever wrote it). */
static inline struct gpuq_chan_slot *gpuq_chan_slot_at(struct gpuq_chan_hdr *h, uint64_t pos)
{
	return (struct gpuq_chan_slot *)((uint8_t *)h + h->slots_off +
					 (pos & (uint64_t)(h->nslots - 1)) * h->stride);
}

/* The slot format gpuqd gives a channel of slot_size bytes per slot. */
static inline uint32_t gpuq_chan_format(uint32_t slot_size)
{
	return slot_size <= GPUQ_CHAN_TAG_MAX ? GPUQ_CHAN_FMT_TAG : GPUQ_CHAN_FMT_SEQ;
}

/* Bytes from one slot to the next. */
static inline uint64_t gpuq_chan_stride(uint32_t slot_size)
{
	return gpuq_chan_format(slot_size) == GPUQ_CHAN_FMT_TAG ?
		       2ull * slot_size :
		       GPUQ_CHAN_SLOT_HDR + (uint64_t)slot_size;
}

/* Size of the shared memory for a channel of nslots slots of slot_size bytes. */
static inline uint64_t gpuq_chan_size(uint32_t slot_size, uint32_t nslots)
{
	return GPUQ_CHAN_HDR_SIZE + (uint64_t)nslots * gpuq_chan_stride(slot_size);
}

/* log2(nslots), for the TAG format's lap. */
static inline unsigned gpuq_chan_lap_shift(uint32_t nslots)
{
	unsigned s = 0;

	while ((1u << s) < nslots)
		s++;
	return s;
}

/* TAG format: the tag of unit 0 of a message of len bytes (<= 511) at position pos. */
static inline uint32_t gpuq_chan_tag(uint64_t pos, unsigned lap_shift, uint32_t len)
{
	return ((uint32_t)((pos >> lap_shift) + 1) << 9) | len;
}

/* TAG format: the tag of the units after unit 0 at position pos. */
static inline uint32_t gpuq_chan_tag_rest(uint64_t pos, unsigned lap_shift)
{
	return (uint32_t)((pos >> lap_shift) + 1);
}

/* TAG format: the length in a unit-0 tag. */
static inline uint32_t gpuq_chan_tag_len(uint32_t tag)
{
	return tag & 0x1ff;
}

/*
 * TAG format: how unit-0 tag stands to position pos: 0 its lap, < 0 an
 * earlier one (not there yet), > 0 a later one (head moved on).
 */
static inline int gpuq_chan_tag_lap(uint32_t tag, uint64_t pos, unsigned lap_shift)
{
	uint32_t d = ((tag >> 9) - (uint32_t)((pos >> lap_shift) + 1)) & 0x7fffff;

	return d == 0 ? 0 : (d & 0x400000) ? -1 : 1;
}

/*
 * Is the message at pos in slot (the slot's address, from the reader's own
 * geometry)? 1: there (for TAG: its first unit; the rest is checked as it
 * is copied), 0: not yet, -1: the slot holds a later lap (head moved on).
 * For CPU readers; kernels use gpuq_device.cuh.
 */
static inline int gpuq_chan_slot_state(const void *slot, uint64_t pos, uint32_t format,
				       unsigned lap_shift)
{
	if (format == GPUQ_CHAN_FMT_TAG) {
		uint64_t w = __atomic_load_n((const uint64_t *)slot, __ATOMIC_ACQUIRE);
		int d = gpuq_chan_tag_lap((uint32_t)(w >> 32), pos, lap_shift);

		return d == 0 ? 1 : d < 0 ? 0 : -1;
	} else {
		int64_t d = (int64_t)(__atomic_load_n((const uint64_t *)slot, __ATOMIC_ACQUIRE) -
				      (pos + 1));

		return d == 0 ? 1 : d < 0 ? 0 : -1;
	}
}

/* The futex a blocking receiver sleeps on for the message of slot (above). */
static inline uint32_t *gpuq_chan_futex_word(void *slot, uint32_t format)
{
	return (uint32_t *)slot + (format == GPUQ_CHAN_FMT_TAG ? 1 : 0);
}

/* TAG format: 16-byte units a message of len bytes fills. */
static inline uint32_t gpuq_chan_tag_units(uint32_t len)
{
	return len ? (len + 7) / 8 : 1;
}

#endif
