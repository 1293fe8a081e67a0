/* pattern.h: the GPU tests' data pattern, on the CPU and through fill/check kernels. */
#ifndef GPUQ_TESTS_PATTERN_H
#define GPUQ_TESTS_PATTERN_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The pattern helpers are usable on both sides: in tests on the CPU, in kernels on the GPU. */
#if defined(__CUDACC__)
#define GPUQ_HOST_DEVICE __host__ __device__
#else
#define GPUQ_HOST_DEVICE
#endif

/*
 * The test pattern: byte i of a patterned range (i counted from the range's
 * first byte) is byte (i % 4) of the 32-bit little-endian word
 * gpuq_pattern_word(i / 4, seed). It does not repeat within 16 GiB and
 * depends on seed, so shifted, stale or misdirected data is caught.
 */
static inline GPUQ_HOST_DEVICE uint32_t gpuq_pattern_word(uint64_t w, uint32_t seed)
{
	uint32_t x = (uint32_t)w ^ (uint32_t)(w >> 32) * 0x27d4eb2fu;

	x = x * 2654435761u + seed;
	x ^= x >> 15;
	x *= 0x85ebca77u;
	x ^= x >> 13;
	return x;
}

static inline GPUQ_HOST_DEVICE uint8_t gpuq_pattern_byte(uint64_t i, uint32_t seed)
{
	return (uint8_t)(gpuq_pattern_word(i >> 2, seed) >> (8 * (i & 3)));
}

/*
 * Writes the pattern of seed into the len bytes at dst (device-visible, any
 * alignment) on stream. Asynchronous; returns 0 once launched (len == 0
 * launches nothing), -EINVAL for a NULL dst, -EIO when the launch failed
 * (printed).
 */
int gpu_pattern_fill(void *dst, uint64_t len, uint32_t seed, cudaStream_t stream);

/*
 * Compares the len bytes at src (device-visible, any alignment) with the
 * pattern of seed and ADDS the number of differing bytes to *mismatches
 * (device-visible and 8-byte aligned; device memory is the portable choice,
 * as atomics on mapped host memory need platform support; the caller zeroes
 * it first). Asynchronous: read *mismatches after synchronising stream.
 * Returns 0 once launched (len == 0 launches nothing), -EINVAL for NULL
 * pointers, -EIO when the launch failed (printed).
 */
int gpu_pattern_check(const void *src, uint64_t len, uint32_t seed, unsigned long long *mismatches,
		      cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
