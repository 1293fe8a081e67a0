/* worker.h: one thread for the control plane's slow work, completions handed back to the event loop. */
#ifndef GPUQ_WORKER_H
#define GPUQ_WORKER_H

#include <sys/queue.h>

struct event_base;
struct worker;

/*
 * One piece of slow work. run is called on the worker thread, then done on
 * the event loop's thread (in submission order). The job's owner keeps it
 * alive until done has been called; done may free it.
 */
struct worker_job {
	STAILQ_ENTRY(worker_job) link;
	void (*run)(struct worker_job *j);
	void (*done)(struct worker_job *j);
};

/*
 * Starts the worker thread; completions come back through an eventfd that
 * only gpuqd holds, watched by base. Returns 0 or -errno.
 */
int worker_create(struct worker **out, struct event_base *base);
/* Queues j; run happens on the worker thread, done later on base's thread. Never blocks long. */
void worker_submit(struct worker *w, struct worker_job *j);
/*
 * Waits until every submitted job has run, then calls their done callbacks
 * on the calling thread (base's). For shutdown, where the loop no longer
 * runs.
 */
void worker_flush(struct worker *w);
/* As worker_flush, giving up after ms (< 0: never). Returns 0 or -ETIMEDOUT (jobs still run). */
int worker_flush_timeout(struct worker *w, int ms);
/* Flushes, stops the thread and frees w. NULL is a no-op. */
void worker_destroy(struct worker *w);
/* Jobs submitted whose done has not been called yet. */
unsigned worker_pending(const struct worker *w);

#endif
