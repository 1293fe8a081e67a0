/* fuzz_request.c: request_translate on any SQE, geometry and buffer table, checked against a model. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "request.h"

#define NBUFS 4

struct input {
	uint64_t arena_size;
	uint64_t crossover;
	uint8_t ndevices, dev, nslots, pad;
	uint32_t hole; /* bit i: slot i is a freed id */
	struct {
		uint64_t size;
		uint8_t device;
	} bufs[NBUFS];
	struct shm_sqe q;
};

/* Is [off, off+len) inside [0, size), computed without overflow? */
static int inside(uint64_t off, uint64_t len, uint64_t size)
{
	return (unsigned __int128)off + len <= size;
}

static struct buf *model_get(struct buf_table *t, uint32_t id, uint64_t off, uint64_t len)
{
	if (id == 0 || id > t->nslots || !t->slots[id - 1])
		return NULL;
	return inside(off, len, t->slots[id - 1]->size) ? t->slots[id - 1] : NULL;
}

/*
 * The input is a struct input (short inputs are zero-padded). gpuqd's
 * rules, restated: an accepted request lies wholly inside the arena and
 * inside each buffer it names, on the engine's device, and the transfer's
 * addresses are exactly those; a refused one holds nothing and says why
 * with one of the documented errors.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;
	struct buf bufs[NBUFS], *slots[NBUFS], *held[2] = { (struct buf *)1, (struct buf *)1 };
	struct buf_table t;
	struct shm_geom g;
	struct backend_xfer x;
	struct buf *b, *src;
	const struct shm_sqe *q = &in.q;
	unsigned i;
	int r;

	memset(&in, 0, sizeof(in));
	memcpy(&in, data, size < sizeof(in) ? size : sizeof(in));
	memset(&g, 0, sizeof(g));
	memset(&t, 0, sizeof(t));
	g.ndevices = 1 + in.ndevices % SHM_MAX_DEVICES;
	g.arena_size = in.arena_size;
	t.nslots = in.nslots % (NBUFS + 1);
	t.slots = slots;
	for (i = 0; i < NBUFS; i++) {
		memset(&bufs[i], 0, sizeof(bufs[i]));
		bufs[i].id = i + 1;
		bufs[i].device = in.bufs[i].device % SHM_MAX_DEVICES;
		bufs[i].size = in.bufs[i].size;
		bufs[i].addr = (uint64_t)(i + 1) << 44;
		slots[i] = in.hole & (1u << i) ? NULL : &bufs[i];
	}
	r = request_translate(q, &g, 1ull << 62, &t, in.dev % (SHM_MAX_DEVICES + 1), in.crossover,
			      &x, held);
	if (r < 0) {
		if (r != -EINVAL && r != -ERANGE && r != -ENOENT && r != -EXDEV)
			abort();
		if (held[0] || held[1])
			abort();
		return 0;
	}
	if (r >= LANE_COUNT || in.dev % (SHM_MAX_DEVICES + 1) >= g.ndevices)
		abort();
	if (x.len != q->len)
		abort();
	switch (q->op) {
	case SHM_OP_H2D:
	case SHM_OP_D2H:
		b = model_get(&t, q->buf, q->buf_off, q->len);
		if (!b || held[0] != b || held[1] || !inside(q->arena_off, q->len, g.arena_size) ||
		    b->device != in.dev % (SHM_MAX_DEVICES + 1))
			abort();
		if (q->op == SHM_OP_H2D ?
			    (x.src != (1ull << 62) + q->arena_off ||
			     x.dst != b->addr + q->buf_off) :
			    (x.dst != (1ull << 62) + q->arena_off || x.src != b->addr + q->buf_off))
			abort();
		if ((q->len < in.crossover) != (r == LANE_H2D_SMALL || r == LANE_D2H_SMALL))
			abort();
		break;
	case SHM_OP_D2D:
		b = model_get(&t, q->buf, q->buf_off, q->len);
		src = model_get(&t, q->src_buf, q->src_off, q->len);
		if (!b || !src || held[0] != b || held[1] != src || r != LANE_D2D ||
		    b->device != in.dev % (SHM_MAX_DEVICES + 1) || src->device != b->device ||
		    x.src != src->addr + q->src_off || x.dst != b->addr + q->buf_off)
			abort();
		break;
	default: abort(); /* an unknown op was accepted */
	}
	return 0;
}
