/* hello.c: a sample gpuq client: list devices, move data through a device buffer, verify it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuq/gpuq.h"

int main(int argc, char **argv)
{
	const char *sock = NULL;
	struct gpuq_device_info dev;
	size_t size = 8u << 20, i;
	unsigned char *out, *in;
	struct gpuq_options opts = { .struct_size = sizeof(opts), .client_name = "gpuq-hello" };
	uint32_t id;
	gpuq_t *q;
	int n, r, rc = 1;

	if (argc == 3 && !strcmp(argv[1], "--socket"))
		sock = argv[2];
	else if (argc != 1) {
		fprintf(stderr, "usage: gpuq-hello [--socket PATH]\n");
		return 2;
	}
	r = gpuq_connect_opts(sock, &opts, &q);
	if (r) {
		fprintf(stderr, "gpuq-hello: %s\n",
			*gpuq_errmsg(NULL) ? gpuq_errmsg(NULL) : strerror(-r));
		return 1;
	}
	printf("connected: session %llu, %s backend\n", (unsigned long long)gpuq_session_id(q),
	       gpuq_backend(q));
	n = gpuq_devices(q, &dev, sizeof(dev), 1);
	if (n <= 0) {
		fprintf(stderr, "gpuq-hello: no devices (%s)\n", n ? gpuq_errmsg(q) : "none");
		goto out_close;
	}
	printf("device 0: %s, %llu MiB\n", dev.name, (unsigned long long)(dev.total_mem >> 20));

	out = malloc(size);
	in = malloc(size);
	if (!out || !in) {
		fprintf(stderr, "gpuq-hello: out of memory\n");
		goto out_free;
	}
	for (i = 0; i < size; i++)
		out[i] = (unsigned char)(i * 131 + (i >> 12));
	r = gpuq_buf_alloc(q, 0, size, &id);
	if (r) {
		fprintf(stderr, "gpuq-hello: alloc: %s: %s\n", strerror(-r), gpuq_errmsg(q));
		goto out_free;
	}
	printf("allocated buffer %u: %zu bytes on device 0\n", id, size);
	if (gpuq_buf_write(q, id, 0, out, size) != (ssize_t)size ||
	    gpuq_buf_read(q, id, 0, in, size) != (ssize_t)size) {
		fprintf(stderr, "gpuq-hello: copy failed: %s\n", gpuq_errmsg(q));
		goto out_buf;
	}
	if (memcmp(out, in, size)) {
		fprintf(stderr, "gpuq-hello: data read back differs from data written\n");
		goto out_buf;
	}
	printf("wrote %zu bytes to the device and read them back: identical\n", size);
	rc = 0;
out_buf:
	r = gpuq_buf_free(q, id);
	if (r) {
		fprintf(stderr, "gpuq-hello: free: %s\n", strerror(-r));
		rc = 1;
	} else {
		printf("freed buffer %u\n", id);
	}
out_free:
	free(in);
	free(out);
out_close:
	gpuq_close(q);
	return rc;
}
