/* fuzz_chan_repair.c: chan_repair_tail on a channel mapping whose every byte a client chose. */
#include "build-config.h"

#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "fuzz.h"
#include "gpuq/gpuq_chan.h"

/* Writes at pos what a sender would, or a near miss, as act says. */
static void put(uint8_t *mem, uint32_t slot_size, uint32_t nslots, uint64_t pos, uint8_t act)
{
	uint64_t *w = (uint64_t *)(mem + GPUQ_CHAN_HDR_SIZE +
				   (pos & (nslots - 1)) * gpuq_chan_stride(slot_size));
	unsigned shift = gpuq_chan_lap_shift(nslots);
	uint32_t len = act % slot_size, i, units;

	if (gpuq_chan_format(slot_size) != GPUQ_CHAN_FMT_TAG) {
		struct gpuq_chan_slot *sl = (struct gpuq_chan_slot *)w;

		sl->seq = act & 0x40 ? pos : pos + 1; /* a miss: the lap before */
		if (act & 0x20)
			sl->len = GPUQ_CHAN_SEQ_SKIP;
		return;
	}
	if (len > 511)
		len = 511;
	if (act & 0x20)
		len = GPUQ_CHAN_TAG_SKIP;
	units = len == GPUQ_CHAN_TAG_SKIP ? 1 : gpuq_chan_tag_units(len);
	for (i = 0; i < 2 * units && i < slot_size / 4; i++)
		w[i] = (uint64_t)(i < 2 ? gpuq_chan_tag(pos, shift, len) :
					  gpuq_chan_tag_rest(pos, shift))
			       << 32 |
		       (w[i] & 0xffffffffu);
	if (act & 0x40 && i > 2)
		w[i - 1] ^= 1ull << 40; /* one unit of the wrong lap: torn */
}

/*
 * Input: byte 0 picks slot_size (16 to 1024, both slot formats), byte 1
 * nslots (2 to 256), bytes 2-9 head; then one byte per slot from head on:
 * below 0x80 a message (or skip marker, or near miss) is written there as
 * a sender would; the rest fills the mapping, repeated. The repair must
 * stay inside the mapping (the sanitizers watch), move tail to within a
 * ring of head, keep every whole message from head on, and be idempotent.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t slot_size, nslots, k;
	uint64_t head, t1, t2, whole;
	size_t len, i;
	uint8_t *mem;

	if (size < 11)
		return 0;
	slot_size = 16u * (1u + data[0] % 64u);
	nslots = 2u << (data[1] % 8u);
	len = gpuq_chan_size(slot_size, nslots);
	mem = malloc(len);
	if (!mem)
		return 0;
	for (i = 0; i < len; i++)
		mem[i] = data[10 + i % (size - 10)];
	memcpy(&head, data + 2, 8);
	head &= ~GPUQ_CHAN_HELD;
	((struct gpuq_chan_hdr *)mem)->head = head | (data[2] & 1 ? GPUQ_CHAN_HELD : 0);
	whole = 0;
	for (k = 0; k < nslots && 10 + k < size; k++) {
		uint8_t act = data[10 + k];

		if (act & 0x80)
			break;
		put(mem, slot_size, nslots, head + k, act);
		if (whole == k && !(act & 0x40))
			whole++;
	}
	t1 = chan_repair_tail(mem, slot_size, nslots);
	if (t1 - head > nslots || t1 < head)
		abort();
	if (t1 - head < whole)
		abort(); /* a whole message was dropped */
	if (((struct gpuq_chan_hdr *)mem)->tail != t1)
		abort();
	t2 = chan_repair_tail(mem, slot_size, nslots);
	if (t2 != t1)
		abort();
	free(mem);
	return 0;
}
