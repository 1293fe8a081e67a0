/* gpuq_device.cuh: send to and receive from gpuq channels inside your own CUDA kernels (header-only; also builds as host C++). */
#ifndef GPUQ_GPUQ_DEVICE_CUH
#define GPUQ_GPUQ_DEVICE_CUH

/*
 * Include this in .cu files whose kernels use channels, get a struct
 * gpuq_dev_chan from gpuq_chan_map_cuda() (libgpuq-cuda, gpuq_cuda.h) and
 * pass it to the kernel by value. The ring lives in host memory mapped for
 * the GPU; the protocol is the one in gpuq_chan.h, so kernels, CPU
 * processes (gpuq_chan_send/recv) and gpuqd interoperate on one channel.
 *
 * Every call here is __host__ __device__: compiled by a host C++ compiler
 * (g++ -std=c++17, no CUDA headers), the same calls run on CPU threads with
 * __atomic builtins, which is how the protocol is unit-tested without a
 * GPU. There, a "warp" is one thread; gpuq_dev_send_batch sends a group.
 *
 * Errors are -errno as everywhere in gpuq: -EMSGSIZE (len > slot_size),
 * -EAGAIN (try forms: ring full, or nothing to receive).
 *
 * Waiting: the blocking calls spin (with __nanosleep backoff on the GPU,
 * pause then sched_yield on the CPU) until the ring has room or a message;
 * they never time out. A GPU sender blocked on a full ring holds its warp:
 * make sure something on the CPU drains the channel while the kernel runs.
 *
 * Mixing sides: positions are claimed with atomics on the ring's tail (by
 * senders) and head (by receivers). GPU atomics on mapped host memory are
 * atomic against the CPU's only where the platform has host-native atomics
 * (cudaDevAttrHostNativeAtomicSupported); elsewhere keep each end of a
 * channel on one side, as its direction says: kernels only send on a
 * GPU-to-CPU channel and only receive on a CPU-to-GPU one. Any number of
 * threads, warps and blocks may share one end.
 *
 * Speed: map with gpuq_chan_map_cuda_sender (kernels that send) or
 * gpuq_chan_map_cuda_receiver (kernels that receive): positions then live
 * in device memory, and a message crosses the bus once. Send small
 * messages with gpuq_dev_send_warp from a full warp, from global memory
 * (8-byte aligned): the warp then writes its 32 slots as one block. Long
 * messages (slots over 256 bytes) from global memory, 16-byte aligned, are
 * copied by the whole warp. bench/RESULTS.md has the figures.
 *
 * This header holds the API and its contracts; the code is in the headers
 * under gpuq/detail/, which it includes (installed beside it).
 */

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <gpuq/gpuq_chan.h>
#include <gpuq/gpuq_dev_chan.h>

#if defined(__CUDACC__)
#include <cuda/atomic>
#define GPUQ_DEV __host__ __device__ __forceinline__
#else
#include <sched.h>
#define GPUQ_DEV inline
#endif

/* ---- sending ---- */

/*
 * Sends one message of len bytes (len <= slot_size) from one thread: takes
 * the next position (one system-scope atomic add on the tail), waits while
 * the ring is full (never overwrites), writes, then publishes the slot.
 * Messages of one thread arrive in the order it sent them. Returns 0 or
 * -EMSGSIZE.
 */
GPUQ_DEV int gpuq_dev_send(gpuq_dev_chan c, const void *msg, uint32_t len);

/*
 * Like gpuq_dev_send, but takes a position only when its slot is free now
 * (a CAS on the tail): returns 0, -EAGAIN (full: nothing was sent) or
 * -EMSGSIZE.
 */
GPUQ_DEV int gpuq_dev_try_send(gpuq_dev_chan c, const void *msg, uint32_t len);

/*
 * Sends n messages from one thread with one tail update: message i is the
 * lens[i] bytes at msgs + i * msg_stride; they take consecutive positions,
 * so arrive in order and unbroken by other senders. Returns 0, or
 * -EMSGSIZE when any is too long (then none is sent).
 */
GPUQ_DEV int gpuq_dev_send_batch(gpuq_dev_chan c, const void *msgs, uint32_t msg_stride,
				 const uint32_t *lens, uint32_t n);

/*
 * Warp-aggregated send: all 32 lanes of a full, converged warp call it
 * together, each with its own message. Lane 0 takes 32 positions with one
 * atomic add and broadcasts the first (__shfl_sync); each lane then waits
 * for its slot, writes it (16-byte stores when msg is 16-byte aligned) and
 * publishes it. Lane i's message takes position base + i. A lane whose len
 * is over slot_size gets -EMSGSIZE and takes no position; the others
 * return 0. Calling it from a partial or diverged warp is undefined
 * (use gpuq_dev_send_active). On the host it is gpuq_dev_send.
 */
GPUQ_DEV int gpuq_dev_send_warp(gpuq_dev_chan c, const void *msg, uint32_t len);

/*
 * gpuq_dev_send_warp for whichever lanes arrive together (__activemask):
 * for partial warps (a grid's last warp) and branches taken by only some
 * lanes. The first active lane takes popc(mask) positions; lanes take them
 * in lane order. Every lane that reaches the call sends exactly once.
 */
GPUQ_DEV int gpuq_dev_send_active(gpuq_dev_chan c, const void *msg, uint32_t len);

/*
 * Declares one sender finished: adds 1 to the header's senders_done
 * (system scope, after this thread's sends are visible). A receiver that
 * knows how many senders there are stops once they are all done and the
 * ring is empty. Call it once per sender (e.g. once per block, after
 * __syncthreads, from thread 0).
 */
GPUQ_DEV void gpuq_dev_chan_done(gpuq_dev_chan c);

/* ---- receiving ---- */

/*
 * Receives one message into buf (cap bytes; a longer message is cut to
 * cap), waiting until one is there. Returns the message's full length.
 * Any number of threads may receive at once; each message goes to one.
 */
GPUQ_DEV int gpuq_dev_recv(gpuq_dev_chan c, void *buf, uint32_t cap);

/*
 * Like gpuq_dev_recv, but returns -EAGAIN at once when no message is
 * ready. Through a receiver mapping, a try that got a message frees it
 * after the earlier positions other threads hold are freed: it can wait
 * that long (until their messages arrive), never for its own.
 */
GPUQ_DEV int gpuq_dev_try_recv(gpuq_dev_chan c, void *buf, uint32_t cap);

/* How many senders have called gpuq_dev_chan_done (or the CPU-side equivalent). */
GPUQ_DEV uint32_t gpuq_dev_senders_done(gpuq_dev_chan c);

/*
 * A receiver handle: one thread's own way to receive, for a thread that
 * receives many messages in a row (a persistent kernel's feeder). Through
 * a receiver mapping, once it has freed one message it frees the next
 * without waiting for that to cross the bus (about 0.3 us less per
 * message than gpuq_dev_recv, which must, because any thread may free
 * next); the first other thread that frees after it reads the ring's head
 * back once instead. Without a receiver mapping it is gpuq_dev_recv.
 * Other threads may go on receiving on the channel meanwhile, with
 * handles or without; where they take turns, a handle costs what
 * gpuq_dev_recv does.
 *
 * Keep a handle in the thread that began it (a copy used by another
 * thread breaks the order of head's stores) and end it when the thread is
 * done; a handle left without gpuq_dev_receiver_end costs the next freer
 * one read of head, nothing else.
 */
struct gpuq_dev_receiver {
	gpuq_dev_chan c;
	uint64_t last; /* the count this handle wrote to dev_rx[1] last, 0: none */
};

/* Begins a handle on c (any mapping; the handle keeps a copy). */
GPUQ_DEV gpuq_dev_receiver gpuq_dev_receiver_begin(gpuq_dev_chan c);

/* gpuq_dev_recv through a handle. */
GPUQ_DEV int gpuq_dev_receiver_recv(gpuq_dev_receiver *r, void *buf, uint32_t cap);

/* gpuq_dev_try_recv through a handle. */
GPUQ_DEV int gpuq_dev_receiver_try_recv(gpuq_dev_receiver *r, void *buf, uint32_t cap);

/* Ends a handle: waits until its last free is visible and says so, so the next freer need not read head back. */
GPUQ_DEV void gpuq_dev_receiver_end(gpuq_dev_receiver *r);

/*
 * The implementation, in namespace gpuq_detail (nothing a caller names):
 * each detail header holds one part of the protocol, in the order they
 * build on each other.
 */
#include <gpuq/detail/atomics.cuh>
#include <gpuq/detail/slots.cuh>
#include <gpuq/detail/send.cuh>
#include <gpuq/detail/recv.cuh>
#include <gpuq/detail/handle.cuh>

#endif
