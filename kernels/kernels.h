/* kernels.h: extern "C" launchers for gpuqd's CUDA kernels (batched copies, copy server, completion words). */
#ifndef GPUQ_KERNELS_H
#define GPUQ_KERNELS_H

#include <stdint.h>

/* The runtime API header is plain C; it declares cudaStream_t. */
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One copy of a batch: len bytes from src to dst. Both are device-visible
 * addresses in the launching device's address space: device memory, or host
 * memory mapped for the device (cudaHostAlloc(cudaHostAllocMapped) or
 * cudaHostRegister(cudaHostRegisterMapped), through cudaHostGetDevicePointer).
 * Any alignment and any length, 0 included. The descriptor array itself must
 * be 8-byte aligned.
 */
struct gpuq_copy_desc {
	uint64_t src;
	uint64_t dst;
	uint64_t len;
};

/*
 * Performs all n copies of descs (a device-visible array that must stay valid
 * and unchanged until the kernel has run) with one kernel launch on stream,
 * on the calling thread's current device. The grid is what the device holds
 * at once (SMs x resident blocks), striding over the descriptors. Small
 * copies get a warp each and larger ones a block, with 16-byte loads and
 * stores whatever the relative alignment of src and dst. Meant for many small copies; large ones belong
 * on the copy engines. Destinations must not overlap each other or any
 * source of the batch (the order of the copies is unspecified).
 * Asynchronous: returns 0 once launched (n == 0 launches nothing), -EIO when
 * the launch failed (reported, kern_set_log). Errors of the kernel itself surface at the
 * next synchronisation of stream. -EINVAL for a NULL or misaligned descs.
 */
int kern_copy_batch(const struct gpuq_copy_desc *descs, unsigned n, cudaStream_t stream);

/*
 * Copies up to this many bytes get a warp of their own in kern_copy_batch;
 * longer ones are shared by a whole block. A caller with a short batch
 * spreads a long copy over the GPU by cutting it into pieces of this size.
 */
#define GPUQ_COPY_WARP_MAX 8192u

/*
 * The copy server: one persistent block that performs small batches posted
 * in a ring of commands in mapped host memory, so a batch costs no launch
 * (a launch and its completion cost ~6 us; a command the server polls,
 * ~1 us). Each command is GPUQ_CS_WORDS 8-byte words; word w holds 4 bytes
 * of data (low half) and the tag (high half): the command's number, 1, 2,
 * ... in posting order, truncated to 32 bits. The server takes command c
 * from slot (c - 1) % nslots once every word it needs carries tag c, so the
 * order in which the words land does not matter. Data words:
 *   0: op (GPUQ_CS_OP_*) | lane << 4 | ndescs << 8
 *   1, 2: the batch's sequence number, low and high half
 *   3 + 5i .. 7 + 5i: descriptor i: src low, src high, dst low, dst high, len
 * After a batch's copies are visible system-wide the server stores its
 * sequence number into done[lane] (device-visible, 8-byte aligned).
 * Commands are taken one at a time, in order, so a lane's batches complete
 * in order.
 */
#define GPUQ_CS_WORDS 32u
#define GPUQ_CS_MAX_DESCS 5u
#define GPUQ_CS_OP_BATCH 1u
#define GPUQ_CS_OP_STOP 2u
#define GPUQ_CS_LANES 8u
struct gpuq_cs_done {
	uint64_t *word[GPUQ_CS_LANES];
};

/*
 * Launches a copy server on stream, starting at command number first: ring
 * is the device address of nslots commands (zeroed at first, so no tag
 * matches before a command is posted). Once running it stores gen into
 * gone[1]. It ends at a STOP command, or on its own after ~0.2 ms without
 * commands (calls that wait for the whole device must not wait for ever).
 * Either way it stores (1 << 32) | c into gone[0] (gone: two device-visible
 * words), c being the first command it did not take, and the caller
 * launches another from c when it needs one. 0 once launched, -EINVAL for
 * a NULL or misaligned ring or gone, -EIO when the launch failed (reported, kern_set_log).
 */
int kern_copy_server(const uint64_t *ring, unsigned nslots, struct gpuq_cs_done done,
		     uint32_t first, uint64_t *gone, uint64_t gen, cudaStream_t stream);

/*
 * Stores value into the 8 bytes at dst (device-visible, 8-byte aligned:
 * typically mapped host memory) once everything queued before it on stream
 * has completed, with a system-scope fence on both sides, so a host that
 * reads value also sees every earlier write of the stream. A fallback for
 * drivers without cuStreamWriteValue64. Asynchronous; 0 once launched,
 * -EINVAL for a NULL or misaligned dst, -EIO when the launch failed (reported, kern_set_log).
 */
int kern_write_u64(uint64_t *dst, uint64_t value, cudaStream_t stream);

/*
 * Sets the function a failed launch is reported to (kernel name, CUDA's
 * error string); without one, launchers print to stderr. Set it once,
 * before the first launch: it is read without a lock.
 */
void kern_set_log(void (*fn)(const char *kernel, const char *error));

#ifdef __cplusplus
}
#endif

#endif
