/* test_frame.c: unit tests for length-prefixed framing, size caps, hostile payloads and fd passing. */
#include "build-config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

static unsigned test_seed; /* chosen in main, inherited by forked tests */

/* Packs m with the default cap and checks frame_check agrees on its length. */
static uint8_t *pack_ok(const Gpuq__Msg *m, size_t *len)
{
	uint8_t *buf = NULL;

	ck_assert_int_eq(frame_pack(m, FRAME_MAX_DEFAULT, &buf, len), 0);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_ge(*len, FRAME_HDR);
	ck_assert_int_eq(frame_check(buf, *len, FRAME_MAX_DEFAULT), (ssize_t)*len);
	return buf;
}

/* Builds a frame (header + payload) around raw payload bytes. */
static uint8_t *raw_frame(const void *payload, size_t n, size_t *len)
{
	uint8_t *buf = malloc(FRAME_HDR + n + 1);

	ck_assert_ptr_nonnull(buf);
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	if (n)
		memcpy(buf + FRAME_HDR, payload, n);
	*len = FRAME_HDR + n;
	return buf;
}

/* Counts the entries of /proc/self/fd, i.e. this process's open descriptors. */
static int count_fds(void)
{
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	ck_assert_ptr_nonnull(dir);
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1; /* the directory stream's own fd */
}

/* Opens a fresh, already unlinked temporary file. */
static int temp_fd(void)
{
	char path[] = "/tmp/gpuq-test-frame-XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	unlink(path);
	return fd;
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;

	ck_assert_int_eq(fstat(a, &sa), 0);
	ck_assert_int_eq(fstat(b, &sb), 0);
	ck_assert_uint_eq(sa.st_dev, sb.st_dev);
	ck_assert_uint_eq(sa.st_ino, sb.st_ino);
}

/* --- round trips --- */

START_TEST(test_roundtrip_hello)
{
	Gpuq__Hello hello = GPUQ__HELLO__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT, *u;
	uint8_t *buf;
	size_t len, announced;

	hello.proto_version = 3;
	hello.client_name = "unit-test client";
	m.seq = 0x123456789abcull;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &hello;

	buf = pack_ok(&m, &len);
	/* The prefix is the big-endian payload length. */
	announced = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3];
	ck_assert_uint_eq(announced, len - FRAME_HDR);
	u = frame_unpack(buf, len);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->seq, 0x123456789abcull);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY_HELLO);
	ck_assert_uint_eq(u->hello->proto_version, 3);
	ck_assert_str_eq(u->hello->client_name, "unit-test client");
	frame_free(u);
	free(buf);
}
END_TEST

START_TEST(test_roundtrip_buf_write_binary)
{
	Gpuq__BufWrite w = GPUQ__BUF_WRITE__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT, *u;
	uint8_t data[1000], *buf;
	size_t i, len;

	/* Zero bytes at the start, in the middle and at the end must all survive. */
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	data[0] = data[500] = data[sizeof(data) - 1] = 0;
	w.buf_id = 42;
	w.offset = UINT64_MAX - 1000;
	w.data.data = data;
	w.data.len = sizeof(data);
	m.seq = 9;
	m.body_case = GPUQ__MSG__BODY_BUF_WRITE;
	m.buf_write = &w;

	buf = pack_ok(&m, &len);
	u = frame_unpack(buf, len);
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY_BUF_WRITE);
	ck_assert_uint_eq(u->buf_write->buf_id, 42);
	ck_assert_uint_eq(u->buf_write->offset, UINT64_MAX - 1000);
	ck_assert_uint_eq(u->buf_write->data.len, sizeof(data));
	ck_assert_mem_eq(u->buf_write->data.data, data, sizeof(data));
	frame_free(u);
	free(buf);
}
END_TEST

START_TEST(test_roundtrip_device_list)
{
	Gpuq__DeviceInfo d[3] = { GPUQ__DEVICE_INFO__INIT, GPUQ__DEVICE_INFO__INIT,
				  GPUQ__DEVICE_INFO__INIT };
	Gpuq__DeviceInfo *dp[3] = { &d[0], &d[1], &d[2] };
	Gpuq__DeviceList dl = GPUQ__DEVICE_LIST__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT, *u;
	static const char *const names[3] = { "gpu zero", "gpu one", "gpu two" };
	uint8_t *buf;
	size_t i, len;

	for (i = 0; i < 3; i++) {
		d[i].index = (uint32_t)i;
		d[i].name = (char *)names[i];
		d[i].total_mem = (80ull << 30) + i;
		d[i].free_mem = (70ull << 30) - i;
		d[i].pci_bus_id = i == 1 ? "" : "0000:3b:00.0";
		d[i].pcie_gen = 5;
		d[i].pcie_width = 16;
		d[i].cc_major = 9;
		d[i].cc_minor = (uint32_t)i;
		d[i].sm_count = 132;
		d[i].backend = "cuda";
	}
	dl.n_devices = 3;
	dl.devices = dp;
	m.body_case = GPUQ__MSG__BODY_DEVICE_LIST;
	m.device_list = &dl;

	buf = pack_ok(&m, &len);
	u = frame_unpack(buf, len);
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY_DEVICE_LIST);
	ck_assert_uint_eq(u->device_list->n_devices, 3);
	for (i = 0; i < 3; i++) {
		const Gpuq__DeviceInfo *r = u->device_list->devices[i];

		ck_assert_uint_eq(r->index, i);
		ck_assert_str_eq(r->name, names[i]);
		ck_assert_uint_eq(r->total_mem, (80ull << 30) + i);
		ck_assert_uint_eq(r->free_mem, (70ull << 30) - i);
		ck_assert_str_eq(r->pci_bus_id, i == 1 ? "" : "0000:3b:00.0");
		ck_assert_uint_eq(r->cc_minor, i);
		ck_assert_uint_eq(r->sm_count, 132);
		ck_assert_str_eq(r->backend, "cuda");
	}
	frame_free(u);
	free(buf);
}
END_TEST

START_TEST(test_roundtrip_empty_body)
{
	Gpuq__DeviceListReq req = GPUQ__DEVICE_LIST_REQ__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT, *u;
	uint8_t *buf;
	size_t len;

	/* A body with no fields must still arrive as that body, not as NOT_SET. */
	m.seq = 1;
	m.body_case = GPUQ__MSG__BODY_DEVICE_LIST_REQ;
	m.device_list_req = &req;
	buf = pack_ok(&m, &len);
	u = frame_unpack(buf, len);
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY_DEVICE_LIST_REQ);
	ck_assert_ptr_nonnull(u->device_list_req);
	frame_free(u);
	free(buf);
}
END_TEST

/* --- frame_check --- */

START_TEST(test_check_prefixes)
{
	Gpuq__Hello hello = GPUQ__HELLO__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	uint8_t *buf, *copy;
	size_t i, len;

	hello.proto_version = 1;
	hello.client_name = "prefix";
	m.seq = 77;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &hello;
	buf = pack_ok(&m, &len);
	/* Each prefix in a buffer of exactly that size, so ASan sees any over-read. */
	for (i = 0; i < len; i++) {
		copy = malloc(i ? i : 1);
		ck_assert_ptr_nonnull(copy);
		memcpy(copy, buf, i);
		ck_assert_msg(frame_check(copy, i, FRAME_MAX_DEFAULT) == 0,
			      "prefix of %zu of %zu bytes not reported as incomplete", i, len);
		free(copy);
	}
	ck_assert_int_eq(frame_check(buf, len, FRAME_MAX_DEFAULT), (ssize_t)len);
	free(buf);
}
END_TEST

START_TEST(test_check_back_to_back)
{
	Gpuq__Ok ok = GPUQ__OK__INIT;
	Gpuq__Error er = GPUQ__ERROR__INIT;
	Gpuq__Msg m1 = GPUQ__MSG__INIT, m2 = GPUQ__MSG__INIT, *u;
	uint8_t *a, *b, *both;
	size_t la, lb;
	ssize_t n;

	ok.value = 5;
	m1.seq = 1;
	m1.body_case = GPUQ__MSG__BODY_OK;
	m1.ok = &ok;
	er.code = -ENOENT;
	er.message = "no such buffer";
	m2.seq = 2;
	m2.body_case = GPUQ__MSG__BODY_ERROR;
	m2.error = &er;
	a = pack_ok(&m1, &la);
	b = pack_ok(&m2, &lb);
	both = malloc(la + lb);
	ck_assert_ptr_nonnull(both);
	memcpy(both, a, la);
	memcpy(both + la, b, lb);

	/* The first frame is sized alone, not swallowed with the second. */
	n = frame_check(both, la + lb, FRAME_MAX_DEFAULT);
	ck_assert_int_eq(n, (ssize_t)la);
	u = frame_unpack(both, (size_t)n);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->seq, 1);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY_OK);
	ck_assert_uint_eq(u->ok->value, 5);
	frame_free(u);

	/* With only part of the second frame present, the first is still complete. */
	ck_assert_int_eq(frame_check(both, la + lb - 1, FRAME_MAX_DEFAULT), (ssize_t)la);
	ck_assert_int_eq(frame_check(both + la, lb - 1, FRAME_MAX_DEFAULT), 0);

	n = frame_check(both + la, lb, FRAME_MAX_DEFAULT);
	ck_assert_int_eq(n, (ssize_t)lb);
	u = frame_unpack(both + la, (size_t)n);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->seq, 2);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY_ERROR);
	ck_assert_int_eq(u->error->code, -ENOENT);
	ck_assert_str_eq(u->error->message, "no such buffer");
	frame_free(u);
	free(both);
	free(b);
	free(a);
}
END_TEST

START_TEST(test_check_over_cap)
{
	/* Only the 4-byte header exists: a hostile length must be refused from it alone. */
	uint8_t *hdr = malloc(FRAME_HDR);
	uint32_t max = 4096;

	ck_assert_ptr_nonnull(hdr);
	memset(hdr, 0xff, FRAME_HDR);
	ck_assert_int_eq(frame_check(hdr, FRAME_HDR, FRAME_MAX_LIMIT), -EMSGSIZE);
	ck_assert_int_eq(frame_check(hdr, FRAME_HDR, FRAME_MAX_DEFAULT), -EMSGSIZE);

	/* max + 1 is refused, max itself just needs more bytes. */
	hdr[0] = (uint8_t)((max + 1) >> 24);
	hdr[1] = (uint8_t)((max + 1) >> 16);
	hdr[2] = (uint8_t)((max + 1) >> 8);
	hdr[3] = (uint8_t)(max + 1);
	ck_assert_int_eq(frame_check(hdr, FRAME_HDR, max), -EMSGSIZE);
	hdr[3] = (uint8_t)max;
	ck_assert_int_eq(frame_check(hdr, FRAME_HDR, max), 0);
	free(hdr);
}
END_TEST

START_TEST(test_pack_over_cap)
{
	Gpuq__BufData d = GPUQ__BUF_DATA__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT;
	uint8_t *data, *buf = NULL;
	size_t n, len = 0;

	data = calloc(1, 8192);
	ck_assert_ptr_nonnull(data);
	d.data.data = data;
	d.data.len = 8192;
	m.body_case = GPUQ__MSG__BODY_BUF_DATA;
	m.buf_data = &d;
	n = gpuq__msg__get_packed_size(&m);

	ck_assert_int_eq(frame_pack(&m, 4096, &buf, &len), -EMSGSIZE);
	ck_assert_int_eq(frame_pack(&m, (uint32_t)n - 1, &buf, &len), -EMSGSIZE);
	ck_assert_ptr_null(buf);
	/* A payload of exactly the cap is allowed, and the receiver accepts it under the same cap. */
	ck_assert_int_eq(frame_pack(&m, (uint32_t)n, &buf, &len), 0);
	ck_assert_uint_eq(len, FRAME_HDR + n);
	ck_assert_int_eq(frame_check(buf, len, (uint32_t)n), (ssize_t)len);
	free(buf);
	free(data);
}
END_TEST

/* --- hostile payloads --- */

static void assert_garbage(const uint8_t *payload, size_t n, const char *what)
{
	uint8_t *f;
	size_t len;
	Gpuq__Msg *u;

	f = raw_frame(payload, n, &len);
	ck_assert_int_eq(frame_check(f, len, FRAME_MAX_DEFAULT), (ssize_t)len);
	u = frame_unpack(f, len);
	ck_assert_msg(u == NULL, "%s: unpacked instead of rejected", what);
	free(f);
}

START_TEST(test_unpack_garbage)
{
	/* field 1, wire type 7 (no such wire type) */
	static const uint8_t wt7[] = { 0x0f, 0x00 };
	/* seq = varint whose continuation bit runs off the end */
	static const uint8_t varint[] = { 0x08, 0x80, 0x80 };
	/* hello (field 10, length-delimited) claiming 5 bytes, 1 present */
	static const uint8_t shortlen[] = { 0x52, 0x05, 0x08 };
	/* hello whose inner client_name claims 100 bytes inside a 4-byte body */
	static const uint8_t inner[] = { 0x52, 0x04, 0x12, 0x64, 'a', 'b' };
	/* a length prefix so large it wraps when added to the position */
	static const uint8_t huge[] = { 0x52, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00 };

	assert_garbage(wt7, sizeof(wt7), "wire type 7");
	assert_garbage(varint, sizeof(varint), "truncated varint");
	assert_garbage(shortlen, sizeof(shortlen), "short length-delimited field");
	assert_garbage(inner, sizeof(inner), "nested field past its parent");
	assert_garbage(huge, sizeof(huge), "4 GiB length-delimited field");
	/* Fewer bytes than a header is never a frame. */
	ck_assert_ptr_null(frame_unpack(wt7, 2));
}
END_TEST

START_TEST(test_unpack_unknown_body)
{
	/* seq = 7, then field 99 (not in Msg) as an empty length-delimited body. */
	static const uint8_t payload[] = { 0x08, 0x07, 0x9a, 0x06, 0x00 };
	uint8_t *f;
	size_t len;
	Gpuq__Msg *u;

	f = raw_frame(payload, sizeof(payload), &len);
	u = frame_unpack(f, len);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->seq, 7);
	ck_assert_int_eq(u->body_case, GPUQ__MSG__BODY__NOT_SET);
	ck_assert_str_eq(frame_body_name(u->body_case), "none");
	frame_free(u);
	free(f);
}
END_TEST

START_TEST(test_unpack_random)
{
	Gpuq__BufWrite w = GPUQ__BUF_WRITE__INIT;
	Gpuq__Msg m = GPUQ__MSG__INIT, *u;
	uint8_t payload[256], data[40], *valid, *f;
	size_t vlen, len, n;
	unsigned i, j, seed = test_seed;

	memset(data, 0xab, sizeof(data));
	w.buf_id = 3;
	w.offset = 1000;
	w.data.data = data;
	w.data.len = sizeof(data);
	m.seq = 12345;
	m.body_case = GPUQ__MSG__BODY_BUF_WRITE;
	m.buf_write = &w;
	valid = pack_ok(&m, &vlen);

	for (i = 0; i < 10000; i++) {
		if (i & 1) {
			/* Pure noise of random length. */
			n = (size_t)rand_r(&seed) % sizeof(payload);
			for (j = 0; j < n; j++)
				payload[j] = (uint8_t)rand_r(&seed);
		} else {
			/* A valid message with a few bytes corrupted, and maybe cut short. */
			n = vlen - FRAME_HDR;
			memcpy(payload, valid + FRAME_HDR, n);
			for (j = 0; j < 1 + (unsigned)rand_r(&seed) % 4; j++)
				payload[(size_t)rand_r(&seed) % n] = (uint8_t)rand_r(&seed);
			if (rand_r(&seed) % 2)
				n = (size_t)rand_r(&seed) % n;
		}
		f = raw_frame(payload, n, &len);
		ck_assert_int_eq(frame_check(f, len, FRAME_MAX_DEFAULT), (ssize_t)len);
		u = frame_unpack(f, len);
		/* Whatever came back must be a consistent message. */
		if (u) {
			ck_assert_ptr_nonnull(frame_body_name(u->body_case));
			if (u->body_case == GPUQ__MSG__BODY_BUF_WRITE)
				ck_assert(u->buf_write->data.len == 0 || u->buf_write->data.data);
		}
		frame_free(u);
		free(f);
	}
	free(valid);
}
END_TEST

/* --- fd passing --- */

START_TEST(test_send_recv_one_fd)
{
	static const char msg[] = "frame with one fd";
	char rbuf[64];
	int sv[2], fd, rfds[FRAME_MAX_FDS];
	unsigned nr = 0;
	ssize_t n;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fd = temp_fd();
	ck_assert_int_eq(frame_send(sv[0], msg, sizeof(msg), &fd, 1), (ssize_t)sizeof(msg));
	n = frame_recv(sv[1], rbuf, sizeof(rbuf), rfds, &nr, FRAME_MAX_FDS);
	ck_assert_int_eq(n, (ssize_t)sizeof(msg));
	ck_assert_mem_eq(rbuf, msg, sizeof(msg));
	ck_assert_uint_eq(nr, 1);
	ck_assert_int_ne(rfds[0], fd);
	assert_same_file(rfds[0], fd);
	/* Received fds are close-on-exec so they never leak into a spawned child. */
	ck_assert(fcntl(rfds[0], F_GETFD) & FD_CLOEXEC);
	close(rfds[0]);
	close(fd);

	/* Data alone carries no fds; EOF reads as 0. */
	nr = 0;
	ck_assert_int_eq(frame_send(sv[0], "x", 1, NULL, 0), 1);
	ck_assert_int_eq(frame_recv(sv[1], rbuf, sizeof(rbuf), rfds, &nr, FRAME_MAX_FDS), 1);
	ck_assert_uint_eq(nr, 0);
	close(sv[0]);
	ck_assert_int_eq(frame_recv(sv[1], rbuf, sizeof(rbuf), rfds, &nr, FRAME_MAX_FDS), 0);
	close(sv[1]);
}
END_TEST

START_TEST(test_send_recv_three_fds)
{
	static const uint8_t msg[] = { 0, 0, 0, 3, 1, 2, 3 };
	uint8_t rbuf[64];
	int sv[2], fds[3], rfds[FRAME_MAX_FDS];
	unsigned i, nr = 0;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	for (i = 0; i < 3; i++)
		fds[i] = temp_fd();
	ck_assert_int_eq(frame_send(sv[0], msg, sizeof(msg), fds, 3), (ssize_t)sizeof(msg));
	ck_assert_int_eq(frame_recv(sv[1], rbuf, sizeof(rbuf), rfds, &nr, FRAME_MAX_FDS),
			 (ssize_t)sizeof(msg));
	ck_assert_mem_eq(rbuf, msg, sizeof(msg));
	ck_assert_uint_eq(nr, 3);
	/* Same files, same order. */
	for (i = 0; i < 3; i++) {
		assert_same_file(rfds[i], fds[i]);
		close(rfds[i]);
		close(fds[i]);
	}
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_send_too_many_fds)
{
	int sv[2], fds[FRAME_MAX_FDS + 1];
	unsigned i;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	for (i = 0; i < FRAME_MAX_FDS + 1; i++)
		fds[i] = sv[0];
	ck_assert_int_eq(frame_send(sv[0], "x", 1, fds, FRAME_MAX_FDS + 1), -EINVAL);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_recv_closes_unwanted_fds)
{
	char rbuf[16];
	int sv[2], fds[3], rfds[FRAME_MAX_FDS];
	unsigned i, nr = 0;
	int before;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	for (i = 0; i < 3; i++)
		fds[i] = temp_fd();
	before = count_fds();

	/* max_fds 0: the receiver wants none, so none may stay open. */
	ck_assert_int_eq(frame_send(sv[0], "abc", 3, fds, 3), 3);
	ck_assert_int_eq(frame_recv(sv[1], rbuf, sizeof(rbuf), rfds, &nr, 0), 3);
	ck_assert_mem_eq(rbuf, "abc", 3);
	ck_assert_uint_eq(nr, 0);
	ck_assert_int_eq(count_fds(), before);

	/* max_fds 2 of 3 sent: two are kept, the third is closed. */
	ck_assert_int_eq(frame_send(sv[0], "def", 3, fds, 3), 3);
	ck_assert_int_eq(frame_recv(sv[1], rbuf, sizeof(rbuf), rfds, &nr, 2), 3);
	ck_assert_uint_eq(nr, 2);
	ck_assert_int_eq(count_fds(), before + 2);
	assert_same_file(rfds[0], fds[0]);
	assert_same_file(rfds[1], fds[1]);
	close(rfds[0]);
	close(rfds[1]);

	/* No fd array at all: also closed. */
	ck_assert_int_eq(frame_send(sv[0], "ghi", 3, fds, 3), 3);
	ck_assert_int_eq(frame_recv(sv[1], rbuf, sizeof(rbuf), NULL, NULL, 0), 3);
	ck_assert_int_eq(count_fds(), before);

	for (i = 0; i < 3; i++)
		close(fds[i]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* --- names --- */

START_TEST(test_body_name)
{
	ck_assert_str_eq(frame_body_name(GPUQ__MSG__BODY_HELLO), "hello");
	ck_assert_str_eq(frame_body_name(GPUQ__MSG__BODY_BUF_ALLOC), "buf_alloc");
	ck_assert_str_eq(frame_body_name(GPUQ__MSG__BODY_CLIENTS), "clients");
	ck_assert_str_eq(frame_body_name(GPUQ__MSG__BODY__NOT_SET), "none");
}
END_TEST

static Suite *frame_suite(void)
{
	Suite *s = suite_create("frame");
	TCase *tc;

	tc = tcase_create("roundtrip");
	tcase_add_test(tc, test_roundtrip_hello);
	tcase_add_test(tc, test_roundtrip_buf_write_binary);
	tcase_add_test(tc, test_roundtrip_device_list);
	tcase_add_test(tc, test_roundtrip_empty_body);
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_test(tc, test_check_prefixes);
	tcase_add_test(tc, test_check_back_to_back);
	tcase_add_test(tc, test_check_over_cap);
	tcase_add_test(tc, test_pack_over_cap);
	suite_add_tcase(s, tc);

	tc = tcase_create("hostile");
	tcase_add_test(tc, test_unpack_garbage);
	tcase_add_test(tc, test_unpack_unknown_body);
	tcase_add_test(tc, test_unpack_random);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("fds");
	tcase_add_test(tc, test_send_recv_one_fd);
	tcase_add_test(tc, test_send_recv_three_fds);
	tcase_add_test(tc, test_send_too_many_fds);
	tcase_add_test(tc, test_recv_closes_unwanted_fds);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_test(tc, test_body_name);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *env = getenv("GPUQ_TEST_SEED");
	SRunner *sr;
	int failed;

	test_seed =
		env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL) ^ (unsigned)getpid();
	printf("test_frame: random seed %u (GPUQ_TEST_SEED=%u repeats it)\n", test_seed, test_seed);
	fflush(stdout);
	sr = srunner_create(frame_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
