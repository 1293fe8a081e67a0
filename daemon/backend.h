/* backend.h: the only interface between gpuqd and a GPU (or its stand-in). */
#ifndef GPUQ_BACKEND_H
#define GPUQ_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define BACKEND_NAME_MAX 128

/* What one device reports about itself. Filled by the backend. */
struct backend_device_info {
	char name[BACKEND_NAME_MAX];
	char pci_bus_id[32]; /* "" when the device has none */
	uint64_t total_mem;
	uint64_t free_mem;
	unsigned pcie_gen;   /* 0 when unknown */
	unsigned pcie_width; /* 0 when unknown */
	unsigned cc_major, cc_minor;
	unsigned sm_count;
};

struct backend;

/*
 * Options a backend may take (backend_set_option), set before any device's
 * xfer_start. A backend ignores none silently: it answers -ENOTSUP.
 */
enum backend_option {
	/*
	 * Clients' kernels share the GPUs through MPS (0/1). How the data path
	 * lives with them is the backend's policy (cuda: a copy server for
	 * small batches under MPS; GPUQD_COPY_SERVER=0/1 in the environment
	 * overrides).
	 */
	BACKEND_OPT_MPS,
	/* cuda: serve small batches from a persistent block (0/1), whatever the environment says. */
	BACKEND_OPT_COPY_SERVER,
};

/* Counters of one device since the backend was opened (backend_stats). */
struct backend_stats {
	uint64_t copy_server_batches; /* cuda: batches the copy server was given */
};

/*
 * Lanes: a direction and a size class. Transfers shorter than the device's
 * crossover (be->crossover[dev], calibrated at xfer_start) go to the SMALL
 * lanes, the rest to the LARGE ones.
 */
enum backend_lane {
	LANE_H2D_SMALL,
	LANE_H2D_LARGE,
	LANE_D2H_SMALL,
	LANE_D2H_LARGE,
	LANE_D2D,
	LANE_COUNT
};

/* One transfer; addresses are device-visible (device memory or host_devptr). */
struct backend_xfer {
	uint64_t dst;
	uint64_t src;
	uint64_t len;
};

#define BACKEND_IPC_HANDLE_SIZE 64
#define BACKEND_MAX_DEVICES 16

/*
 * The operations every backend implements. All return 0 (or a count) on
 * success and -errno on failure; they are called from the daemon's control
 * thread only.
 *
 * mem_alloc returns an opaque device address in *addr: a real device pointer
 * for cuda, a host pointer for host. The caller keeps (device, addr, size)
 * and passes them back to mem_free and the copy calls; it never dereferences
 * addr itself.
 */
struct backend_ops {
	const char *name;
	/* Discovers devices and creates one context per device. */
	int (*init)(struct backend *be);
	void (*fini)(struct backend *be);
	int (*device_info)(struct backend *be, unsigned dev, struct backend_device_info *info);
	int (*mem_alloc)(struct backend *be, unsigned dev, size_t size, uint64_t *addr);
	int (*mem_free)(struct backend *be, unsigned dev, uint64_t addr);
	/* Synchronous copies between host memory and device memory. */
	int (*copy_to_dev)(struct backend *be, unsigned dev, uint64_t dst, const void *src,
			   size_t len);
	int (*copy_from_dev)(struct backend *be, unsigned dev, void *dst, uint64_t src, size_t len);

	/*
	 * Host memory shared with clients (session arenas). host_register pins
	 * and maps len bytes at p for every device, once per session (it is
	 * slow: ~55 us/MiB on CUDA); host_devptr gives the address device code
	 * and copy engines use for p on dev. Control thread.
	 */
	int (*host_register)(struct backend *be, void *p, size_t len);
	void (*host_unregister)(struct backend *be, void *p);
	int (*host_devptr)(struct backend *be, unsigned dev, void *p, uint64_t *devaddr);

	/*
	 * The data path. Called only by the engine thread of dev, between
	 * xfer_start and xfer_stop (which that thread calls itself).
	 *
	 * Transfers are submitted in batches to a lane; each lane executes its
	 * batches in order and lanes run concurrently (on CUDA: a stream each,
	 * small transfers through one gather/scatter kernel per batch, large
	 * ones on the copy engines). xfer_submit returns the batch's sequence
	 * number in its lane (1, 2, ...) or -EAGAIN when the lane has too many
	 * batches in flight, -EINVAL for a batch over xfer_max_batch, -EIO.
	 * xfer_done returns the highest sequence number of the lane whose
	 * batch has completed; it never blocks. It makes no system call, but
	 * for one case on cuda: when a copy server left with commands still
	 * to take, the call that notices launches the next one. The engine
	 * polls xfer_done while batches are in flight, so such commands wait
	 * one poll.
	 */
	int (*xfer_start)(struct backend *be, unsigned dev);
	void (*xfer_stop)(struct backend *be, unsigned dev);
	int64_t (*xfer_submit)(struct backend *be, unsigned dev, unsigned lane,
			       const struct backend_xfer *x, unsigned n);
	uint64_t (*xfer_done)(struct backend *be, unsigned dev, unsigned lane);

	/*
	 * Exports device memory for another process's CUDA context. Fills
	 * handle (BACKEND_IPC_HANDLE_SIZE bytes). -ENOTSUP on the host backend.
	 */
	int (*ipc_export)(struct backend *be, unsigned dev, uint64_t addr, void *handle);

	/* Sets opt (backend_set_option). NULL: the backend takes no option. */
	int (*set_option)(struct backend *be, enum backend_option opt, int value);
	/* Fills *st for dev (backend_stats). NULL: the backend counts nothing. */
	int (*stats)(struct backend *be, unsigned dev, struct backend_stats *st);
};

/* One backend instance. Owned by main.c; created by backend_open, freed by backend_close. */
struct backend {
	const struct backend_ops *ops;
	unsigned ndevices;
	uint64_t host_mem;                       /* host backend: bytes of "device" memory */
	unsigned host_devices;                   /* host backend: how many devices (1..16) */
	char reason[256];                        /* why this backend was chosen (auto) */
	uint64_t crossover[BACKEND_MAX_DEVICES]; /* small/large split, bytes, per device */
	unsigned xfer_max_batch;                 /* most transfers per xfer_submit */
	void *priv;                              /* backend-private state */
};

enum backend_kind {
	BACKEND_AUTO = 0,
	BACKEND_HOST,
	BACKEND_CUDA,
};

/* Parses "host", "cuda" or "auto"; returns -EINVAL for anything else. */
int backend_kind_parse(const char *s, enum backend_kind *kind);
const char *backend_kind_name(enum backend_kind kind);

/*
 * Opens the backend of the given kind. AUTO tries cuda first and falls back
 * to host when no usable GPU is present, recording why in be->reason.
 * host_mem sizes the host backend's device. Returns 0 or -errno (-ENODEV
 * when cuda was asked for and no GPU is usable; -ENOTSUP when this gpuqd was
 * built without CUDA).
 */
int backend_open(struct backend *be, enum backend_kind kind, uint64_t host_mem);
/* As backend_open; the host backend then has host_devices (1..16) devices sharing host_mem. */
int backend_open_ex(struct backend *be, enum backend_kind kind, uint64_t host_mem,
		    unsigned host_devices);
void backend_close(struct backend *be);

/*
 * Sets a backend option (enum backend_option) before any xfer_start; control
 * thread. Returns 0, -ENOTSUP when this backend has no such option, -EINVAL
 * for a value it does not take.
 */
int backend_set_option(struct backend *be, enum backend_option opt, int value);

/*
 * Fills *st with dev's counters; a backend that counts nothing reports
 * zeros. Any thread: the engine thread updates them without a lock, so a
 * reader sees a recent value. Returns 0 or -ENODEV.
 */
int backend_stats(struct backend *be, unsigned dev, struct backend_stats *st);

/*
 * Can this process create CUDA contexts on every device? Opens and closes
 * the cuda backend. Meant for a forked child (CUDA state does not survive
 * fork): the parent learns the answer without touching CUDA itself.
 * Returns 0, or -errno (-ENOTSUP without CUDA support).
 */
int backend_probe_cuda(void);

extern const struct backend_ops backend_host_ops;
#ifdef HAVE_CUDA
extern const struct backend_ops backend_cuda_ops;
#endif

#endif
