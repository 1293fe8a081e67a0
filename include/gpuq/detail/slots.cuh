/* gpuq/detail/slots.cuh: where a position's slot is, SEQ payload copies, TAG tags and lap arithmetic (part of gpuq_device.cuh; include that). */
#ifndef GPUQ_DETAIL_SLOTS_CUH
#define GPUQ_DETAIL_SLOTS_CUH

#ifndef GPUQ_GPUQ_DEVICE_CUH
#error "include <gpuq/gpuq_device.cuh>, not the headers under gpuq/detail/"
#endif

#include <gpuq/detail/atomics.cuh>

namespace gpuq_detail
{

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

} /* namespace gpuq_detail */

#endif
