/* test_badinput.c: hostile and broken clients get an error or a clean close, and gpuqd keeps serving. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

static struct daemon_proc d;
/* A well-behaved client with data on the device, checked after each abuse. */
static gpuq_t *bystander;
static uint32_t bystander_buf;
static uint8_t bystander_data[65536];

static void start(const char *const *args)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = "bystander" };

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	ck_assert_int_eq(gpuq_connect_opts(d.sock, &o, &bystander), 0);
	harness_fill(bystander_data, sizeof(bystander_data), harness_seed());
	ck_assert_int_eq(gpuq_buf_alloc(bystander, 0, sizeof(bystander_data), &bystander_buf), 0);
	ck_assert_int_eq(
		gpuq_buf_write(bystander, bystander_buf, 0, bystander_data, sizeof(bystander_data)),
		(ssize_t)sizeof(bystander_data));
}

static void start_default(void)
{
	start(NULL);
}

static void start_small(void)
{
	static const char *const args[] = { "--max-frame", "4096", "--handshake-timeout", "1",
					    NULL };

	start(args);
}

/* The daemon is alive, serves new clients, and the bystander's data is intact. */
static void check_still_serving(void)
{
	uint8_t got[sizeof(bystander_data)];
	struct gpuq_status st = { .struct_size = sizeof(st) };
	gpuq_t *q;

	ck_assert_msg(harness_alive(&d), "gpuqd died");
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	ck_assert_int_eq(gpuq_status(q, &st), 0);
	gpuq_close(q);
	ck_assert_int_eq(gpuq_buf_read(bystander, bystander_buf, 0, got, sizeof(got)),
			 (ssize_t)sizeof(got));
	ck_assert_mem_eq(got, bystander_data, sizeof(got));
}

static void stop(void)
{
	check_still_serving();
	gpuq_close(bystander);
	ck_assert_int_eq(harness_stop(&d), 0);
}

/* Connects and completes the handshake on a raw socket. */
static int raw_session(void)
{
	int fd = harness_raw_connect(&d);
	Gpuq__Msg *m;

	ck_assert_int_ge(fd, 0);
	m = harness_raw_hello(fd, GPUQ_PROTO_VERSION);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_WELCOME);
	frame_free(m);
	return fd;
}

/* Reads one reply and checks it is an Error with the given code. */
static void expect_error(int fd, int code, const char *text)
{
	Gpuq__Msg *m = harness_raw_recv(fd, 5000);

	ck_assert_msg(m != NULL, "no reply (expected error %d)", code);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_ERROR);
	ck_assert_int_eq(m->error->code, code);
	if (text)
		ck_assert_msg(strstr(m->error->message, text), "error '%s' lacks '%s'",
			      m->error->message, text);
	frame_free(m);
}

/* A status request on fd answers with a Status: the connection still works. */
static void expect_usable(int fd)
{
	Gpuq__Msg req = GPUQ__MSG__INIT, *m;
	Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;

	req.seq = 77;
	req.body_case = GPUQ__MSG__BODY_STATUS_REQ;
	req.status_req = &sr;
	ck_assert_int_eq(harness_raw_send_msg(fd, &req), 0);
	m = harness_raw_recv(fd, 5000);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_STATUS);
	ck_assert_uint_eq(m->seq, 77);
	frame_free(m);
}

START_TEST(unknown_message)
{
	/* seq=5, then field 999 (length-delimited): a message this daemon does not know. */
	static const uint8_t frame[] = { 0, 0, 0, 7, 0x08, 0x05, 0xba, 0x3e, 0x02, 'h', 'i' };
	int fd = raw_session();

	ck_assert_int_eq(harness_raw_send(fd, frame, sizeof(frame)), 0);
	expect_error(fd, -EPROTO, "unknown message");
	expect_usable(fd);
	close(fd);
}
END_TEST

START_TEST(reply_sent_as_request)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__Welcome w = GPUQ__WELCOME__INIT;
	Gpuq__Hello h = GPUQ__HELLO__INIT;
	int fd = raw_session();

	m.body_case = GPUQ__MSG__BODY_WELCOME;
	m.welcome = &w;
	ck_assert_int_eq(harness_raw_send_msg(fd, &m), 0);
	expect_error(fd, -EPROTO, "not a request");
	h.proto_version = GPUQ_PROTO_VERSION;
	m.body_case = GPUQ__MSG__BODY_HELLO;
	m.hello = &h;
	ck_assert_int_eq(harness_raw_send_msg(fd, &m), 0);
	expect_error(fd, -EPROTO, "not a request");
	expect_usable(fd);
	close(fd);
}
END_TEST

START_TEST(request_before_hello)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__BufRead rd = GPUQ__BUF_READ__INIT;
	int fd = harness_raw_connect(&d);

	rd.buf_id = bystander_buf;
	rd.length = 16;
	req.body_case = GPUQ__MSG__BODY_BUF_READ;
	req.buf_read = &rd;
	ck_assert_int_eq(harness_raw_send_msg(fd, &req), 0);
	expect_error(fd, -EPROTO, "expected hello");
	ck_assert(harness_raw_closed(fd, 2000));
	close(fd);
}
END_TEST

START_TEST(oversized_frame)
{
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 2, 3 };
	uint8_t hdr[4] = { 0, 0, 0x10, 0x01 }; /* 4097 bytes: one over the cap */
	int fd = raw_session();

	ck_assert_int_eq(harness_raw_send(fd, huge, sizeof(huge)), 0);
	expect_error(fd, -EMSGSIZE, "4096-byte cap");
	ck_assert(harness_raw_closed(fd, 2000));
	close(fd);
	fd = raw_session();
	ck_assert_int_eq(harness_raw_send(fd, hdr, sizeof(hdr)), 0);
	expect_error(fd, -EMSGSIZE, NULL);
	ck_assert(harness_raw_closed(fd, 2000));
	close(fd);
	ck_assert(harness_log_contains(&d, "over the 4096-byte cap"));
}
END_TEST

START_TEST(oversized_request_from_library)
{
	uint8_t big[8192];
	uint32_t id;

	/* libgpuq splits writes to fit the daemon's cap; reads too. */
	harness_fill(big, sizeof(big), 3);
	ck_assert_int_eq(gpuq_buf_alloc(bystander, 0, sizeof(big), &id), 0);
	ck_assert_int_eq(gpuq_buf_write(bystander, id, 0, big, sizeof(big)), (ssize_t)sizeof(big));
	memset(big, 0, sizeof(big));
	ck_assert_int_eq(gpuq_buf_read(bystander, id, 0, big, sizeof(big)), (ssize_t)sizeof(big));
	{
		uint8_t want[8192];

		harness_fill(want, sizeof(want), 3);
		ck_assert_mem_eq(big, want, sizeof(big));
	}
	ck_assert_int_eq(gpuq_buf_free(bystander, id), 0);
}
END_TEST

START_TEST(read_larger_than_frame)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__BufRead rd = GPUQ__BUF_READ__INIT;
	int fd = raw_session();
	Gpuq__Msg alloc = GPUQ__MSG__INIT, *m;
	Gpuq__BufAlloc a = GPUQ__BUF_ALLOC__INIT;

	a.size = 1u << 20;
	alloc.body_case = GPUQ__MSG__BODY_BUF_ALLOC;
	alloc.buf_alloc = &a;
	ck_assert_int_eq(harness_raw_send_msg(fd, &alloc), 0);
	m = harness_raw_recv(fd, 5000);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, GPUQ__MSG__BODY_BUF_ALLOC_REPLY);
	rd.buf_id = m->buf_alloc_reply->buf_id;
	frame_free(m);
	rd.length = 1u << 20;
	req.body_case = GPUQ__MSG__BODY_BUF_READ;
	req.buf_read = &rd;
	ck_assert_int_eq(harness_raw_send_msg(fd, &req), 0);
	expect_error(fd, -EMSGSIZE, "per request");
	expect_usable(fd);
	close(fd);
}
END_TEST

START_TEST(malformed_payload)
{
	/* A valid length around bytes that are no protobuf: wire type 7. */
	static const uint8_t frame[] = { 0, 0, 0, 3, 0x0f, 0xff, 0xff };
	int fd = raw_session();

	ck_assert_int_eq(harness_raw_send(fd, frame, sizeof(frame)), 0);
	expect_error(fd, -EBADMSG, "malformed");
	ck_assert(harness_raw_closed(fd, 2000));
	close(fd);
}
END_TEST

START_TEST(truncated_then_disconnect)
{
	Gpuq__Msg m = GPUQ__MSG__INIT;
	Gpuq__BufWrite w = GPUQ__BUF_WRITE__INIT;
	uint8_t data[1000], *buf;
	size_t len;
	int fd = raw_session();

	memset(data, 7, sizeof(data));
	w.buf_id = 1;
	w.data.data = data;
	w.data.len = sizeof(data);
	m.body_case = GPUQ__MSG__BODY_BUF_WRITE;
	m.buf_write = &w;
	ck_assert_int_eq(frame_pack(&m, FRAME_MAX_LIMIT, &buf, &len), 0);
	ck_assert_int_eq(harness_raw_send(fd, buf, len / 2), 0);
	free(buf);
	close(fd); /* gone mid-frame */
	ck_assert_msg(harness_wait_log(&d, "disconnected mid-frame", 5000),
		      "gpuqd did not log the half frame within 5 s");
	/* Disconnecting inside the header is fine too. */
	fd = raw_session();
	ck_assert_int_eq(harness_raw_send(fd, "\0\0", 2), 0);
	close(fd);
}
END_TEST

START_TEST(byte_by_byte)
{
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;
	uint8_t *buf;
	size_t len, i;
	int fd = raw_session();

	m.seq = 42;
	m.body_case = GPUQ__MSG__BODY_STATUS_REQ;
	m.status_req = &sr;
	ck_assert_int_eq(frame_pack(&m, FRAME_MAX_LIMIT, &buf, &len), 0);
	for (i = 0; i < len; i++) {
		ck_assert_int_eq(harness_raw_send(fd, buf + i, 1), 0);
		usleep(2000);
	}
	free(buf);
	rep = harness_raw_recv(fd, 5000);
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->body_case, GPUQ__MSG__BODY_STATUS);
	ck_assert_uint_eq(rep->seq, 42);
	frame_free(rep);
	close(fd);
}
END_TEST

START_TEST(random_bytes)
{
	uint64_t seed = harness_seed();
	uint8_t junk[512];
	int round;

	for (round = 0; round < 200; round++) {
		int fd = harness_raw_connect(&d);
		size_t n = 1 + (size_t)((seed + (uint64_t)round * 7919) % sizeof(junk));

		ck_assert_int_ge(fd, 0);
		harness_fill(junk, n, seed + (uint64_t)round);
		/* Half the rounds speak after a proper hello, half before. */
		if (round & 1) {
			Gpuq__Msg *m = harness_raw_hello(fd, GPUQ_PROTO_VERSION);

			if (!m)
				harness_print_log(&d);
			ck_assert_msg(m != NULL, "no welcome in round %d", round);
			frame_free(m);
		}
		harness_raw_send(fd, junk, n);
		close(fd);
	}
	check_still_serving();
}
END_TEST

START_TEST(silent_client_times_out)
{
	int fd = harness_raw_connect(&d);
	gpuq_t *q;

	/* While one client says nothing, others are served. */
	ck_assert_int_eq(gpuq_connect(d.sock, &q), 0);
	gpuq_close(q);
	expect_error(fd, -ETIMEDOUT, "no hello");
	ck_assert(harness_raw_closed(fd, 3000));
	close(fd);
}
END_TEST

START_TEST(unsolicited_fds_are_closed)
{
	int fd = raw_session(), before, after, i;
	int fds[3];
	Gpuq__Msg m = GPUQ__MSG__INIT, *rep;
	Gpuq__StatusReq sr = GPUQ__STATUS_REQ__INIT;
	uint8_t *buf;
	size_t len;

	m.body_case = GPUQ__MSG__BODY_STATUS_REQ;
	m.status_req = &sr;
	ck_assert_int_eq(frame_pack(&m, FRAME_MAX_LIMIT, &buf, &len), 0);
	/*
	 * gpuqd closes its duplicates of the Welcome's fds just after sending
	 * it: count once a later reply has come, so they are gone.
	 */
	ck_assert_int_eq(frame_send(fd, buf, len, NULL, 0), (ssize_t)len);
	rep = harness_raw_recv(fd, 5000);
	ck_assert_ptr_nonnull(rep);
	frame_free(rep);
	before = harness_fd_count(&d);
	ck_assert_int_gt(before, 0);
	for (i = 0; i < 3; i++)
		fds[i] = open("/dev/null", O_RDONLY);
	for (i = 0; i < 20; i++) {
		ssize_t n = frame_send(fd, buf, len, fds, 3);

		/* Refused outright (SO_PASSRIGHTS) is the better answer; the frame alone still goes. */
		if (n == -EPERM)
			n = frame_send(fd, buf, len, NULL, 0);
		ck_assert_int_eq(n, (ssize_t)len);
		rep = harness_raw_recv(fd, 5000);
		ck_assert_ptr_nonnull(rep);
		frame_free(rep);
	}
	free(buf);
	after = harness_fd_count(&d);
	ck_assert_int_eq(after, before);
	for (i = 0; i < 3; i++)
		close(fds[i]);
	close(fd);
}
END_TEST

START_TEST(bad_request_fields)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__BufWrite w = GPUQ__BUF_WRITE__INIT;
	Gpuq__BufFree f = GPUQ__BUF_FREE__INIT;
	uint8_t data[16] = { 0 };
	int fd = raw_session();

	/* The bystander's buffer id means nothing in this session. */
	w.buf_id = bystander_buf;
	w.offset = 0;
	w.data.data = data;
	w.data.len = sizeof(data);
	req.body_case = GPUQ__MSG__BODY_BUF_WRITE;
	req.buf_write = &w;
	ck_assert_int_eq(harness_raw_send_msg(fd, &req), 0);
	expect_error(fd, -ENOENT, "no buffer");
	f.buf_id = bystander_buf;
	req.body_case = GPUQ__MSG__BODY_BUF_FREE;
	req.buf_free = &f;
	ck_assert_int_eq(harness_raw_send_msg(fd, &req), 0);
	expect_error(fd, -ENOENT, "no buffer");
	expect_usable(fd);
	close(fd);
}
END_TEST

START_TEST(client_that_never_reads)
{
	Gpuq__Msg req = GPUQ__MSG__INIT;
	Gpuq__DeviceListReq dl = GPUQ__DEVICE_LIST_REQ__INIT;
	uint8_t *buf;
	size_t len;
	int fd = raw_session(), i, flags;

	/* Pipeline requests without reading a single reply. */
	req.body_case = GPUQ__MSG__BODY_DEVICE_LIST_REQ;
	req.device_list_req = &dl;
	ck_assert_int_eq(frame_pack(&req, FRAME_MAX_LIMIT, &buf, &len), 0);
	flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	for (i = 0; i < 20000; i++)
		if (send(fd, buf, len, MSG_NOSIGNAL) < 0)
			break;
	free(buf);
	check_still_serving();
	close(fd);
}
END_TEST

static Suite *badinput_suite(void)
{
	Suite *s = suite_create("badinput");
	TCase *tc;

	tc = tcase_create("default");
	tcase_add_checked_fixture(tc, start_default, stop);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, unknown_message);
	tcase_add_test(tc, reply_sent_as_request);
	tcase_add_test(tc, request_before_hello);
	tcase_add_test(tc, malformed_payload);
	tcase_add_test(tc, truncated_then_disconnect);
	tcase_add_test(tc, byte_by_byte);
	tcase_add_test(tc, random_bytes);
	tcase_add_test(tc, unsolicited_fds_are_closed);
	tcase_add_test(tc, bad_request_fields);
	tcase_add_test(tc, client_that_never_reads);
	suite_add_tcase(s, tc);

	tc = tcase_create("small-limits");
	tcase_add_checked_fixture(tc, start_small, stop);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, oversized_frame);
	tcase_add_test(tc, oversized_request_from_library);
	tcase_add_test(tc, read_larger_than_frame);
	tcase_add_test(tc, silent_client_times_out);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(badinput_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
