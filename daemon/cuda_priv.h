/* cuda_priv.h: the cuda backend's private state, shared by backend_cuda.c and its cuda_*.c parts. */
#ifndef GPUQ_CUDA_PRIV_H
#define GPUQ_CUDA_PRIV_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <cuda_runtime_api.h>
/* Driver API types only: its functions are reached through the runtime's entry points. */
#include <cudaTypedefs.h>

#include "backend.h"
#include "kernels/kernels.h"

/* Batches one lane may have in flight; also the descriptor slots of a kernel lane. */
#define XFER_INFLIGHT 64
/* Most transfers in one xfer_submit, and the descriptors of one slot. */
#define XFER_MAX_BATCH 4096
/*
 * Small-lane batches of at most this many copies go to the copy engines:
 * one 4 KiB copy took 6.6 us from submit to done that way on an H100 and
 * 12.5 us through the kernel (launch, then two PCIe round trips: the
 * descriptors, then the data), while each extra call costs ~2.3 us.
 */
#define XFER_LONE_CE 2
/* Until calibrated, or when calibration fails. */
#define CROSSOVER_DEFAULT (256u << 10)

/* Done words sit a cache line apart: each is polled, and written by its own stream. */
#define DONE_STRIDE 64
/*
 * The copy server (kern_copy_server): small-lane batches of at most
 * GPUQ_CS_MAX_DESCS copies and CS_MAX_BYTES go to it when it is on. Its
 * ring holds a command for every batch the two small lanes may have in
 * flight, so a slot is never rewritten before the server took it.
 */
#define CS_SLOTS \
	(4 * XFER_INFLIGHT) /* a power of two (command numbers wrap at 2^32), room for STOPs */
#define CS_MAX_BYTES (16u << 10)
/*
 * One lane of the data path: a stream, and a word in mapped host memory
 * into which the stream writes each batch's sequence number once the
 * batch is done. Owned by its device's engine thread.
 */
struct cuda_lane {
	cudaStream_t stream;
	_Atomic uint64_t *done;       /* host view of the done word */
	uint64_t done_dev;            /* its device address */
	struct gpuq_copy_desc *slots; /* XFER_INFLIGHT slots of descriptors; NULL: no kernel */
	uint64_t slots_dev;           /* their device address */
	uint64_t seq;                 /* last batch submitted */
	uint64_t stream_last;         /* last batch submitted on the stream */
	uint64_t cs_last;             /* last batch submitted to the copy server */
	int broken;                   /* a failed submission left work queued: refuse more */
};

/* The copy server of a device: its commands, its stream, whether one runs. */
struct cuda_cs {
	_Atomic uint64_t *ring; /* CS_SLOTS commands of GPUQ_CS_WORDS words, host view */
	uint64_t ring_dev;
	_Atomic uint64_t
		*gone; /* [0]: where a server that left says from which command on; [1]: it runs */
	uint64_t gone_dev;
	cudaStream_t stream;
	uint32_t next;    /* number of the next command */
	uint32_t resume;  /* first command no server took, while none runs */
	int running;      /* launched, and not known to have left */
	int stopping;     /* a STOP is posted to the running one: no more commands for it */
	uint32_t stop_no; /* that STOP's number */
	int64_t born;     /* when the running one was launched */
	struct gpuq_cs_done done;
	uint64_t launches; /* also the running one's generation (gone[1] once it runs) */
};

/* The data path of one device, between xfer_start and xfer_stop. */
struct cuda_xfer {
	int started;
	uint64_t crossover;                            /* D2D: shorter copies go to the kernel */
	PFN_cuStreamWriteValue64_v11070 write_value64; /* NULL: kern_write_u64 writes done words */
	void *host_mem;                                /* cudaHostAlloc: done words, then slots */
	struct cuda_lane lane[LANE_COUNT];
	struct cuda_cs cs; /* ring == NULL: no copy server */
};

/* One usable device. */
struct cuda_dev {
	int ordinal;                /* CUDA device number (after CUDA_VISIBLE_DEVICES) */
	struct cudaDeviceProp prop; /* read once at init */
	char pci_bus_id[32];        /* sysfs spelling: "0000:3b:00.0"; "" when unknown */
	cudaStream_t ctl;           /* control-plane stream, see cuda_init */
	struct cuda_xfer xf;        /* the engine thread's data path */
	uint64_t cs_batches;        /* batches the copy server was given (engine thread) */
};

/* be->priv of the cuda backend. Created by cuda_init, freed by cuda_fini. */
struct cuda_priv {
	int copy_server; /* serve small batches from a persistent block (set before xfer_start) */
	unsigned ndev;
	struct cuda_dev dev[];
};

/* backend_cuda.c: devices. */

/*
 * Logs a failed CUDA call and turns it into an errno (-ENOMEM, -EINVAL,
 * -ENODEV, -EEXIST, -ENOENT, -ENOTSUP, else -EIO); clears the thread's
 * last CUDA error so a later launch check does not blame the launch.
 */
int cuda_fail(const char *call, cudaError_t err);
/* dev's state, or NULL when dev is not a device of be. */
struct cuda_dev *cuda_dev_get(struct backend *be, unsigned dev);
/* Makes d current on this thread: every per-device call starts here. 0 or -errno. */
int cuda_dev_enter(struct cuda_dev *d);

/* cuda_lanes.c: the data path (backend_ops' xfer_* calls), on the engine thread of each device. */

int cuda_xfer_start(struct backend *be, unsigned dev);
void cuda_xfer_stop(struct backend *be, unsigned dev);
int64_t cuda_xfer_submit(struct backend *be, unsigned dev, unsigned lane,
			 const struct backend_xfer *x, unsigned n);
uint64_t cuda_xfer_done(struct backend *be, unsigned dev, unsigned lane);
/* Waits for and frees whatever xfer_start set up (also half of it). Device d is current. */
void cuda_xfer_release(struct cuda_dev *d);
/* One copy kernel for the copies of x shorter than below, from the slot of seq; counts launches in *issued. */
int cuda_lane_kernel(struct cuda_lane *l, uint64_t seq, const struct backend_xfer *x, unsigned n,
		     uint64_t below, unsigned *issued);
/* One cudaMemcpyAsync per copy of x at least from bytes long; counts them in *issued. */
int cuda_lane_copies(struct cuda_lane *l, const struct backend_xfer *x, unsigned n, uint64_t from,
		     unsigned *issued);

/* cuda_calib.c: the small/large crossover. */

/*
 * Times H2D batches through the gather kernel and through the copy engines
 * on d's lanes (before any batch is submitted) and sets *crossover. 0,
 * -ETIME past its budget, -ENOMEM, -EIO.
 */
int cuda_calibrate(struct cuda_dev *d, unsigned dev, uint64_t *crossover);

/* cuda_copyserver.c: the copy server of each device, driven from the engine thread. */

/* Sets up d's copy server (none runs until the first command); on failure d goes on without one. */
void cuda_cs_setup(struct cuda_dev *d, unsigned dev);
/* Lets the copy server finish every command posted, then frees it. Device d is current. */
void cuda_cs_release(struct cuda_dev *d);
/* Starts a server at the first command no server took. Device d is current. 0 or -errno. */
int cuda_cs_launch(struct cuda_dev *d);
/*
 * Hands a batch that cuda_cs_fits to the copy server if one runs and takes
 * commands: 1 (posted), or 0 (use the stream).
 */
int cuda_cs_submit(struct cuda_dev *d, unsigned lane, uint64_t seq, const struct backend_xfer *x,
		   unsigned n);

static inline int64_t cuda_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Inline: the data path asks these for every small batch and every poll. */

/* Does the batch go to the copy server: few copies, few bytes (empty ones count for nothing). */
static inline int cuda_cs_fits(const struct backend_xfer *x, unsigned n)
{
	uint64_t bytes = 0;
	unsigned m = 0;

	for (unsigned i = 0; i < n; i++) {
		if (!x[i].len)
			continue;
		bytes += x[i].len;
		m++;
	}
	return m <= GPUQ_CS_MAX_DESCS && bytes <= CS_MAX_BYTES;
}

/* Notes that the running server left: from which command the next one starts. */
static inline void cuda_cs_check(struct cuda_cs *cs)
{
	uint64_t g;

	if (!cs->running)
		return;
	g = atomic_load_explicit(cs->gone, memory_order_acquire);
	if (!g)
		return;
	cs->running = 0;
	cs->resume = (uint32_t)g;
	/* It left idle just before our STOP, the last command: nobody need take that one. */
	if (cs->stopping && cs->resume == cs->stop_no && cs->stop_no + 1 == cs->next)
		cs->resume = cs->next;
	cs->stopping = 0;
}

/* Starts a server if none runs and commands wait: after one left on its own (the engine polls here). */
static inline void cuda_cs_kick(struct cuda_dev *d)
{
	struct cuda_cs *cs = &d->xf.cs;

	if (!cs->ring)
		return;
	cuda_cs_check(cs);
	if (!cs->running && cs->resume != cs->next && cuda_dev_enter(d) == 0)
		cuda_cs_launch(d); /* a failure is retried at the next poll */
}

#endif
