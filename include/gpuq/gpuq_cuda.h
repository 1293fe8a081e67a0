/* gpuq_cuda.h: libgpuq-cuda, mapping gpuq device buffers into the caller's own CUDA context. */
#ifndef GPUQ_GPUQ_CUDA_H
#define GPUQ_GPUQ_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <gpuq/gpuq.h>
#include <gpuq/gpuq_chan.h>
#include <gpuq/gpuq_dev_chan.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function declared with GPUQ_CUDA_API is in client/libgpuq-cuda.map. */
#ifndef GPUQ_CUDA_API
#ifdef __GNUC__
#define GPUQ_CUDA_API __attribute__((visibility("default")))
#else
#define GPUQ_CUDA_API
#endif
#endif

/*
 * libgpuq-cuda (-lgpuq-cuda -lgpuq) is the optional companion of libgpuq
 * for processes that run their own CUDA code. It links the shared CUDA
 * runtime (libcudart.so), so it works in the caller's CUDA context: the
 * caller must link the shared runtime too (nvcc -cudart shared, or
 * -lcudart), not the static one. libgpuq itself never links CUDA.
 *
 * Call order: connect to gpuqd (gpuq_connect or gpuq_connect_opts), call
 * gpuq_mps_prepare_cuda, then make the process's first CUDA call. When
 * gpuqd shares its GPUs through MPS, CUDA must find gpuqd's MPS server in
 * the environment, and reads it only once: a context created before that
 * runs outside MPS, time-sliced against gpuqd.
 */

/*
 * Sets the environment variables of gpuq_mps_env (libgpuq) for q, each
 * unless already set (the user's value wins), so that the CUDA context
 * this process creates next joins gpuqd's MPS server. Call it after
 * connecting and before the process's first CUDA call (a context that
 * exists already is not moved), and before other threads read the
 * environment (setenv is not thread-safe). It makes no CUDA call. Returns
 * how many variables gpuqd asked for (0: gpuqd does not use MPS, nothing
 * set), or -EINVAL (NULL q), -ENOMEM.
 */
GPUQ_CUDA_API int gpuq_mps_prepare_cuda(gpuq_t *q);

/*
 * Maps device buffer id of session q into the calling process's CUDA
 * context: exports it (gpuq_buf_export), finds the same GPU among this
 * process's devices by PCI bus id (cudaDeviceGetByPCIBusId), makes it the
 * calling thread's current device (cudaSetDevice, left set on return so
 * that kernels launched next run where the data is), and opens the handle
 * (cudaIpcOpenMemHandle with cudaIpcMemLazyEnablePeerAccess). On success
 * *devptr is a device pointer to the whole buffer and *size (may be NULL)
 * its size in bytes.
 *
 * The mapping stays valid while the buffer exists; release it with
 * gpuq_buf_unmap_cuda before gpuq_buf_free or gpuq_close: once gpuqd frees
 * the buffer the pointer must not be used. Map a buffer once per process
 * and share the pointer. Ordering across the two contexts is the caller's:
 * data delivered by gpuq_send is in place when gpuq_send returns (or its
 * request completes); before asking gpuqd to read what the caller's
 * kernels wrote (gpuq_recv), wait for those kernels (e.g.
 * cudaStreamSynchronize).
 *
 * Returns 0 or -errno: the errors of gpuq_buf_export (-ENOENT, -ENOTSUP on
 * the host backend, ...; gpuq_errmsg(q) says why), -EINVAL (NULL q or
 * devptr), -ENODEV (this process sees no CUDA device, or not the buffer's:
 * check CUDA_VISIBLE_DEVICES), -ENOMEM, -EIO (another CUDA failure). After
 * a CUDA failure, cudaGetLastError() in the calling thread tells which.
 * Thread-safe as far as CUDA is.
 */
GPUQ_CUDA_API int gpuq_buf_map_cuda(gpuq_t *q, uint32_t id, void **devptr, size_t *size);

/*
 * Releases a mapping made by gpuq_buf_map_cuda (cudaIpcCloseMemHandle).
 * The calling thread's current device is left as it was. Returns 0,
 * -EINVAL (NULL, or not a mapping of this process), or -EIO.
 */
GPUQ_CUDA_API int gpuq_buf_unmap_cuda(void *devptr);

/*
 * The channel calls below fill struct gpuq_dev_chan for kernels built from
 * gpuq_device.cuh, which implements one channel layout (GPUQ_CHAN_VERSION,
 * gpuq_chan.h). Each is a macro that passes the GPUQ_CHAN_VERSION the
 * caller was compiled against to a _versioned function; this library
 * refuses a version other than its own with -EPROTO before any CUDA call
 * or any change to the channel, and gpuq_cuda_errmsg() then names both
 * versions. Build the kernels and the mapping code against the same
 * headers (those installed with this library).
 */

/*
 * Why the calling thread's last channel mapping call failed, where its
 * errno says too little (a layout mismatch); "" when it said nothing more
 * or succeeded. Each mapping call resets it. The string is the thread's
 * own and valid until its next mapping call.
 */
GPUQ_CUDA_API const char *gpuq_cuda_errmsg(void);

/*
 * Maps channel ch's shared memory for kernels of this process: registers it
 * with CUDA (cudaHostRegister, mapped and portable, so every device of the
 * process may use it)
 * and fills *out with device pointers into it. Pass *out by value to kernels
 * that include gpuq_device.cuh. The mapping stays valid until
 * gpuq_chan_unmap_cuda; unmap before gpuq_chan_close, and only once no
 * kernel uses it. Mappings of one channel are counted (a sender and a
 * receiver mapping, say): the memory stays registered until the last is
 * undone.
 *
 * The memory is registered as its three regions (gpuq_chan.h, "Regions"),
 * each as this opener may use it: the fixed page read-only
 * (cudaHostRegisterReadOnly), the receiver page and the sender region
 * read-write only where gpuqd granted that end (gpuq_chan_ends): a kernel
 * that writes what its opener may not faults like a CPU would. Memory
 * the caller registered itself cannot be mapped (the registration fails).
 *
 * Returns 0 or -errno: -EINVAL (NULL argument), -EPROTO (the caller was
 * built for another channel layout, see above, or the channel's header is
 * not one this library knows), -ENODEV (no usable CUDA device),
 * -EOPNOTSUPP (the current device cannot register read-only host memory,
 * cudaDevAttrHostRegisterReadOnlySupported, or registered host memory has
 * another address on the device), -ENOMEM, -EIO (another CUDA failure;
 * cudaGetLastError() says which).
 * Registering costs about 0.3 ms per MiB (DESIGN.md, Limits): map once, not
 * per launch.
 */
#define gpuq_chan_map_cuda(ch, out) gpuq_chan_map_cuda_versioned((ch), (out), GPUQ_CHAN_VERSION)
GPUQ_CUDA_API int gpuq_chan_map_cuda_versioned(gpuq_chan_t *ch, struct gpuq_dev_chan *out,
					       uint32_t chan_version);

/* Undoes gpuq_chan_map_cuda (cudaHostUnregister). Returns 0, -EINVAL or -EIO. */
GPUQ_CUDA_API int gpuq_chan_unmap_cuda(gpuq_chan_t *ch);

/*
 * Like gpuq_chan_map_cuda, for a process whose kernels send on ch: the
 * positions they take come from a counter in device memory, and they cache
 * the receivers' head there, so a send writes its message to host memory
 * and reads nothing back while the ring has room. Only one process at a
 * time may map a channel this way (-EBUSY otherwise), and meanwhile CPU
 * senders on it get -EBUSY. Unmap with gpuq_chan_unmap_cuda_sender after
 * the kernels finished: it hands the tail back to the ring.
 */
#define gpuq_chan_map_cuda_sender(ch, out) \
	gpuq_chan_map_cuda_sender_versioned((ch), (out), GPUQ_CHAN_VERSION)
GPUQ_CUDA_API int gpuq_chan_map_cuda_sender_versioned(gpuq_chan_t *ch, struct gpuq_dev_chan *out,
						      uint32_t chan_version);
GPUQ_CUDA_API int gpuq_chan_unmap_cuda_sender(gpuq_chan_t *ch, struct gpuq_dev_chan *dc);

/*
 * Like gpuq_chan_map_cuda, for a process whose kernels receive on ch (a
 * CPU-to-GPU channel): the next position to receive lives in device
 * memory, so a receive claims its message with a device atomic and tells
 * the senders with one posted write, instead of a compare-and-swap across
 * the bus. Any number of the process's threads may receive. Only one
 * process at a time may map a channel this way (-EBUSY otherwise), and
 * meanwhile CPU receivers on it get -EBUSY. Unmap with
 * gpuq_chan_unmap_cuda_receiver after the kernels finished.
 */
#define gpuq_chan_map_cuda_receiver(ch, out) \
	gpuq_chan_map_cuda_receiver_versioned((ch), (out), GPUQ_CHAN_VERSION)
GPUQ_CUDA_API int gpuq_chan_map_cuda_receiver_versioned(gpuq_chan_t *ch, struct gpuq_dev_chan *out,
							uint32_t chan_version);
GPUQ_CUDA_API int gpuq_chan_unmap_cuda_receiver(gpuq_chan_t *ch, struct gpuq_dev_chan *dc);
/*
 * Both mappings take their end through gpuq_chan_own, then hold its word in
 * the ring (GPUQ_CHAN_HELD, gpuq_chan.h) so that a CPU sender (receiver)
 * already inside gpuq_chan_send (recv) when the end was taken cannot take a
 * position too: it gets -EBUSY. CPU users may keep going while kernels map
 * and unmap an end; they are refused while it is held. When an unmap cannot
 * read the kernels' position back (a broken CUDA context) it keeps the end
 * marked and fails; gpuqd repairs the ring when the session ends.
 */

#ifdef __cplusplus
}
#endif
#endif
