/* errmsg.c: libgpuq's error messages, kept per thread and handle (gpuq_errmsg). */
#include "build-config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "client.h"
#include "errmsg.h"

/*
 * Error messages are the calling thread's: a handle shared by threads
 * keeps one message per thread, so one thread's error never overwrites
 * the message another is about to read. Each thread keeps the messages
 * of the last ERR_SLOTS handles it got one on (the oldest slot is
 * reused), keyed by a serial that no later handle reuses, and the
 * message of its last failed connect (no handle).
 */
#define ERR_SLOTS 4
#define ERR_LEN 512

struct err_slot {
	uint64_t key; /* the handle's err_key; 0: unused */
	char msg[ERR_LEN];
};

static __thread struct err_slot err_slots[ERR_SLOTS];
static __thread unsigned err_next;
static __thread char connect_err[ERR_LEN];
static _Atomic uint64_t err_keys = 1;

/* The calling thread's message slot for q, or NULL when it has none and !create. */
static char *err_slot(const struct gpuq *q, int create)
{
	struct err_slot *s;

	for (unsigned i = 0; i < ERR_SLOTS; i++)
		if (err_slots[i].key == q->err_key)
			return err_slots[i].msg;
	if (!create)
		return NULL;
	s = &err_slots[err_next++ % ERR_SLOTS];
	s->key = q->err_key;
	s->msg[0] = '\0';
	return s->msg;
}

int client_fail(struct gpuq *q, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q ? err_slot(q, 1) : connect_err, ERR_LEN, fmt, ap);
	va_end(ap);
	return err;
}

void errmsg_clear(struct gpuq *q)
{
	char *m = q ? err_slot(q, 0) : connect_err;

	if (m)
		m[0] = '\0';
}

void errmsg_to_connect(struct gpuq *q)
{
	char *m = err_slot(q, 0);

	snprintf(connect_err, sizeof(connect_err), "%s", m ? m : "");
	if (m)
		m[0] = '\0';
}

uint64_t errmsg_key(void)
{
	return atomic_fetch_add_explicit(&err_keys, 1, memory_order_relaxed);
}

GPUQ_API const char *gpuq_errmsg(gpuq_t *q)
{
	const char *m;

	if (!q)
		return connect_err;
	m = err_slot(q, 0);
	return m ? m : "";
}
