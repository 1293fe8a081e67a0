/* fuzz.h: the one entry point every fuzz target defines, for libFuzzer and for the corpus replay. */
#ifndef GPUQ_FUZZ_H
#define GPUQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Runs one input through the code under test; aborts (or a sanitizer reports) on a bug. Returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
