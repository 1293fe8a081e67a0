/* backend.c: choosing and opening a backend (cuda, host, or auto). */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "log.h"

int backend_kind_parse(const char *s, enum backend_kind *kind)
{
	if (!strcmp(s, "auto"))
		*kind = BACKEND_AUTO;
	else if (!strcmp(s, "host"))
		*kind = BACKEND_HOST;
	else if (!strcmp(s, "cuda"))
		*kind = BACKEND_CUDA;
	else
		return -EINVAL;
	return 0;
}

const char *backend_kind_name(enum backend_kind kind)
{
	switch (kind) {
	case BACKEND_HOST: return "host";
	case BACKEND_CUDA: return "cuda";
	default: return "auto";
	}
}

static int open_ops(struct backend *be, const struct backend_ops *ops, uint64_t host_mem,
		    unsigned host_devices)
{
	memset(be, 0, sizeof(*be));
	be->ops = ops;
	be->host_mem = host_mem;
	be->host_devices = host_devices;
	return ops->init(be);
}

int backend_open(struct backend *be, enum backend_kind kind, uint64_t host_mem)
{
	return backend_open_ex(be, kind, host_mem, 1);
}

int backend_open_ex(struct backend *be, enum backend_kind kind, uint64_t host_mem,
		    unsigned host_devices)
{
	char why[sizeof(be->reason) / 2];
	int r;

	if (kind == BACKEND_HOST) {
		r = open_ops(be, &backend_host_ops, host_mem, host_devices);
		if (!r)
			snprintf(be->reason, sizeof(be->reason), "host backend requested");
		return r;
	}
#ifdef HAVE_CUDA
	r = open_ops(be, &backend_cuda_ops, host_mem, host_devices);
	if (!r || kind == BACKEND_CUDA)
		return r;
	snprintf(why, sizeof(why), "%.*s", (int)sizeof(why) - 1, be->reason);
#else
	if (kind == BACKEND_CUDA) {
		memset(be, 0, sizeof(*be));
		snprintf(be->reason, sizeof(be->reason), "this gpuqd was built without CUDA");
		return -ENOTSUP;
	}
	snprintf(why, sizeof(why), "this gpuqd was built without CUDA");
#endif
	r = open_ops(be, &backend_host_ops, host_mem, host_devices);
	if (!r)
		snprintf(be->reason, sizeof(be->reason), "no usable GPU (%s), using host", why);
	return r;
}

void backend_close(struct backend *be)
{
	if (be->ops)
		be->ops->fini(be);
	be->ops = NULL;
	be->priv = NULL;
	be->ndevices = 0;
}

int backend_set_option(struct backend *be, enum backend_option opt, int value)
{
	if (!be->ops || !be->ops->set_option)
		return -ENOTSUP;
	return be->ops->set_option(be, opt, value);
}

int backend_stats(struct backend *be, unsigned dev, struct backend_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!be->ops || dev >= be->ndevices)
		return -ENODEV;
	if (!be->ops->stats)
		return 0;
	return be->ops->stats(be, dev, st);
}

int backend_probe_cuda(void)
{
#ifdef HAVE_CUDA
	struct backend tmp;
	int r;

	memset(&tmp, 0, sizeof(tmp));
	tmp.ops = &backend_cuda_ops;
	r = backend_cuda_ops.init(&tmp);
	if (!r)
		backend_cuda_ops.fini(&tmp);
	return r;
#else
	return -ENOTSUP;
#endif
}
