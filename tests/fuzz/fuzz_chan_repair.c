/* fuzz_chan_repair.c: chan_repair_tail on a channel mapping whose every byte a client chose. */
#include "build-config.h"

#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "fuzz.h"
#include "gpuq/gpuq_chan.h"

/*
 * Input: byte 0 picks slot_size (16 to 512, both slot formats), byte 1
 * nslots (2 to 256); the rest fills the mapping, repeated. The repair must
 * stay inside the mapping (the sanitizers watch), move tail to within a
 * ring of head, and be idempotent: a second repair keeps that tail.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t slot_size, nslots;
	uint64_t head, t1, t2;
	size_t len, i;
	uint8_t *mem;

	if (size < 3)
		return 0;
	slot_size = 16u * (1u + data[0] % 32u);
	nslots = 2u << (data[1] % 8u);
	len = gpuq_chan_size(slot_size, nslots);
	mem = malloc(len);
	if (!mem)
		return 0;
	for (i = 0; i < len; i++)
		mem[i] = data[2 + i % (size - 2)];
	head = ((struct gpuq_chan_hdr *)mem)->head & ~GPUQ_CHAN_HELD;
	t1 = chan_repair_tail(mem, slot_size, nslots);
	if (t1 - head > nslots)
		abort();
	if (((struct gpuq_chan_hdr *)mem)->tail != t1)
		abort();
	t2 = chan_repair_tail(mem, slot_size, nslots);
	if (t2 != t1)
		abort();
	free(mem);
	return 0;
}
