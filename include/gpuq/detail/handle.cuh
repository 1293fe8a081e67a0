/* gpuq/detail/handle.cuh: receiver handles, struct gpuq_dev_receiver (part of gpuq_device.cuh; include that). */
#ifndef GPUQ_DETAIL_HANDLE_CUH
#define GPUQ_DETAIL_HANDLE_CUH

#ifndef GPUQ_GPUQ_DEVICE_CUH
#error "include <gpuq/gpuq_device.cuh>, not the headers under gpuq/detail/"
#endif

#include <gpuq/detail/recv.cuh>

GPUQ_DEV gpuq_dev_receiver gpuq_dev_receiver_begin(gpuq_dev_chan c)
{
	return gpuq_dev_receiver{ c, 0 };
}

GPUQ_DEV int gpuq_dev_receiver_recv(gpuq_dev_receiver *r, void *buf, uint32_t cap)
{
	if (!r->c.dev_rx)
		return gpuq_detail::recv(r->c, buf, cap, true);
	return gpuq_detail::recv_mapped(r->c, buf, cap, true, &r->last);
}

GPUQ_DEV int gpuq_dev_receiver_try_recv(gpuq_dev_receiver *r, void *buf, uint32_t cap)
{
	if (!r->c.dev_rx)
		return gpuq_detail::recv(r->c, buf, cap, false);
	return gpuq_detail::recv_mapped(r->c, buf, cap, false, &r->last);
}

GPUQ_DEV void gpuq_dev_receiver_end(gpuq_dev_receiver *r)
{
	if (r->c.dev_rx)
		gpuq_detail::settle(r->c, &r->last);
	r->last = 0;
}

#endif
