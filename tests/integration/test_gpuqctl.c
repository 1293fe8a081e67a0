/* test_gpuqctl.c: gpuqctl against a real gpuqd: human and JSON output, socket choice, exit codes. */
#include "build-config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpuq/gpuq.h"
#include "harness.h"

static struct daemon_proc d;
static char out[1 << 16];

/* Runs gpuqctl with the given arguments; its stdout lands in out. */
#define RUN_CTL(...) harness_run_ctl((const char *const[]){ __VA_ARGS__, NULL }, out, sizeof(out))

static void start_default(void)
{
	ck_assert_int_eq(harness_start(&d, NULL, NULL), 0);
}

static void stop_checked(void)
{
	ck_assert_int_eq(harness_stop(&d), 0);
}

static gpuq_t *connect_ok(const char *name)
{
	struct gpuq_options o = { .struct_size = sizeof(o), .client_name = name };
	gpuq_t *q = NULL;
	int r = gpuq_connect_opts(d.sock, &o, &q);

	ck_assert_msg(r == 0, "connect: %s (%s)", strerror(-r), gpuq_errmsg(NULL));
	return q;
}

/*
 * A strict JSON parser (RFC 8259): objects, arrays, strings with every
 * escape, numbers, true/false/null, UTF-8 checked, nothing after the value.
 * It keeps a flat tree of the values so tests can look members up by key.
 */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

#define JMAX_NODES 2048
#define JMAX_DEPTH 32

struct jnode {
	enum jtype type;
	const char *text; /* first byte of the value */
	size_t len;       /* bytes of the value's text */
	char key[64];     /* member name where the parent is an object */
	int child, next;  /* first child and next sibling, -1 for none */
};

struct jdoc {
	struct jnode n[JMAX_NODES];
	int count;
	const char *start, *p;
	char err[128];
};

static struct jdoc jd;

static int j_fail(struct jdoc *j, const char *what)
{
	snprintf(j->err, sizeof(j->err), "%s at offset %ld", what, (long)(j->p - j->start));
	return -1;
}

static void j_ws(struct jdoc *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int j_hex4(const char *s, unsigned *v)
{
	int i;

	*v = 0;
	for (i = 0; i < 4; i++) {
		char c = s[i];

		*v <<= 4;
		if (is_digit(c))
			*v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

/* Length of the well-formed UTF-8 sequence at s (lead byte >= 0x80), 0 if malformed. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		if (s[0] == 0xed)
			hi = 0x9f; /* no UTF-16 surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		if (s[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

static size_t utf8_encode(unsigned cp, char *e)
{
	if (cp < 0x80) {
		e[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		e[0] = (char)(0xc0 | cp >> 6);
		e[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		e[0] = (char)(0xe0 | cp >> 12);
		e[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		e[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	e[0] = (char)(0xf0 | cp >> 18);
	e[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	e[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	e[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Parses the string whose opening quote is at j->p and decodes it into dst
 * (NUL-terminated, truncated to dstlen; dst may be NULL). Returns the decoded
 * length or -1.
 */
static long j_string(struct jdoc *j, char *dst, size_t dstlen)
{
	const unsigned char *s = (const unsigned char *)j->p + 1;
	size_t o = 0, elen, i;
	char enc[4];

	for (;;) {
		unsigned c = *s, cp, lo;

		if (c == '"')
			break;
		if (c == '\0')
			return j_fail(j, "unterminated string");
		if (c < 0x20) {
			j->p = (const char *)s;
			return j_fail(j, "raw control character in string");
		}
		if (c == '\\') {
			s++;
			elen = 1;
			switch (*s) {
			case '"':
			case '\\':
			case '/': enc[0] = (char)*s; break;
			case 'b': enc[0] = '\b'; break;
			case 'f': enc[0] = '\f'; break;
			case 'n': enc[0] = '\n'; break;
			case 'r': enc[0] = '\r'; break;
			case 't': enc[0] = '\t'; break;
			case 'u':
				if (j_hex4((const char *)s + 1, &cp))
					return j_fail(j, "bad \\u escape");
				s += 4;
				if (cp >= 0xd800 && cp < 0xdc00) {
					if (s[1] != '\\' || s[2] != 'u' ||
					    j_hex4((const char *)s + 3, &lo) || lo < 0xdc00 ||
					    lo > 0xdfff)
						return j_fail(j, "unpaired surrogate");
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					s += 6;
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					return j_fail(j, "unpaired surrogate");
				}
				elen = utf8_encode(cp, enc);
				break;
			default: return j_fail(j, "bad escape");
			}
			s++;
		} else if (c < 0x80) {
			enc[0] = (char)c;
			elen = 1;
			s++;
		} else {
			elen = utf8_len(s);
			if (!elen)
				return j_fail(j, "malformed UTF-8");
			memcpy(enc, s, elen);
			s += elen;
		}
		for (i = 0; i < elen; i++, o++)
			if (dst && o + 1 < dstlen)
				dst[o] = enc[i];
	}
	if (dst && dstlen)
		dst[o < dstlen ? o : dstlen - 1] = '\0';
	j->p = (const char *)s + 1;
	return (long)o;
}

static int j_number(struct jdoc *j)
{
	const char *s = j->p;

	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (is_digit(*s))
			s++;
	else
		return j_fail(j, "bad number");
	if (*s == '.') {
		if (!is_digit(*++s))
			return j_fail(j, "bad fraction");
		while (is_digit(*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!is_digit(*s))
			return j_fail(j, "bad exponent");
		while (is_digit(*s))
			s++;
	}
	j->p = s;
	return 0;
}

static int j_literal(struct jdoc *j, const char *word)
{
	size_t len = strlen(word);

	if (strncmp(j->p, word, len))
		return j_fail(j, "unexpected character");
	j->p += len;
	return 0;
}

static int j_value(struct jdoc *j, int depth);

static int j_container(struct jdoc *j, int me, int depth)
{
	int is_obj = j->n[me].type == J_OBJ, prev = -1, k;
	char close = is_obj ? '}' : ']';
	char key[64];

	j->p++;
	j_ws(j);
	if (*j->p == close) {
		j->p++;
		return 0;
	}
	for (;;) {
		j_ws(j);
		if (is_obj) {
			if (*j->p != '"')
				return j_fail(j, "expected a member name");
			if (j_string(j, key, sizeof(key)) < 0)
				return -1;
			j_ws(j);
			if (*j->p != ':')
				return j_fail(j, "expected ':'");
			j->p++;
			j_ws(j);
			for (k = j->n[me].child; k >= 0; k = j->n[k].next)
				if (!strcmp(j->n[k].key, key))
					return j_fail(j, "duplicate member");
		}
		k = j_value(j, depth + 1);
		if (k < 0)
			return -1;
		if (is_obj)
			snprintf(j->n[k].key, sizeof(j->n[k].key), "%s", key);
		if (prev < 0)
			j->n[me].child = k;
		else
			j->n[prev].next = k;
		prev = k;
		j_ws(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p == close) {
			j->p++;
			return 0;
		}
		return j_fail(j, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

/* Parses one value at j->p; returns its node index or -1. */
static int j_value(struct jdoc *j, int depth)
{
	int me, r;

	if (depth > JMAX_DEPTH)
		return j_fail(j, "nested too deep");
	if (j->count == JMAX_NODES)
		return j_fail(j, "too many values");
	me = j->count++;
	j->n[me].text = j->p;
	j->n[me].key[0] = '\0';
	j->n[me].child = j->n[me].next = -1;
	switch (*j->p) {
	case '{':
		j->n[me].type = J_OBJ;
		r = j_container(j, me, depth);
		break;
	case '[':
		j->n[me].type = J_ARR;
		r = j_container(j, me, depth);
		break;
	case '"':
		j->n[me].type = J_STR;
		r = j_string(j, NULL, 0) < 0 ? -1 : 0;
		break;
	case 't':
		j->n[me].type = J_BOOL;
		r = j_literal(j, "true");
		break;
	case 'f':
		j->n[me].type = J_BOOL;
		r = j_literal(j, "false");
		break;
	case 'n':
		j->n[me].type = J_NULL;
		r = j_literal(j, "null");
		break;
	default:
		j->n[me].type = J_NUM;
		r = *j->p == '-' || is_digit(*j->p) ? j_number(j) :
						      j_fail(j, "unexpected character");
		break;
	}
	if (r)
		return -1;
	j->n[me].len = (size_t)(j->p - j->n[me].text);
	return me;
}

/* Parses text as exactly one JSON value; the root is node 0. Returns 0 or -1 (reason in err). */
static int json_parse(struct jdoc *j, const char *text)
{
	j->count = 0;
	j->err[0] = '\0';
	j->start = j->p = text;
	j_ws(j);
	if (j_value(j, 0) < 0)
		return -1;
	j_ws(j);
	if (*j->p)
		return j_fail(j, "trailing garbage");
	return 0;
}

/* The member key of object obj, or -1. */
static int jget(struct jdoc *j, int obj, const char *key)
{
	int k;

	if (obj < 0 || j->n[obj].type != J_OBJ)
		return -1;
	for (k = j->n[obj].child; k >= 0; k = j->n[k].next)
		if (!strcmp(j->n[k].key, key))
			return k;
	return -1;
}

static int jcount(struct jdoc *j, int arr)
{
	int k, n = 0;

	for (k = j->n[arr].child; k >= 0; k = j->n[k].next)
		n++;
	return n;
}

/* Member key of obj as an unsigned integer; the member must exist and be one. */
static unsigned long long juint(struct jdoc *j, int obj, const char *key)
{
	int k = jget(j, obj, key);
	size_t i;

	ck_assert_msg(k >= 0, "no member \"%s\" in %s", key, out);
	ck_assert_msg(j->n[k].type == J_NUM, "\"%s\" is not a number", key);
	for (i = 0; i < j->n[k].len; i++)
		ck_assert_msg(is_digit(j->n[k].text[i]), "\"%s\" is not an unsigned integer: %.*s",
			      key, (int)j->n[k].len, j->n[k].text);
	return strtoull(j->n[k].text, NULL, 10);
}

/* Member key of obj as a decoded string (valid until the next call); *len gets its length. */
static const char *jstr(struct jdoc *j, int obj, const char *key, long *len)
{
	static char buf[1024];
	int k = jget(j, obj, key);
	const char *save = j->p;
	long n;

	ck_assert_msg(k >= 0, "no member \"%s\" in %s", key, out);
	ck_assert_msg(j->n[k].type == J_STR, "\"%s\" is not a string", key);
	j->p = j->n[k].text;
	n = j_string(j, buf, sizeof(buf));
	j->p = save;
	ck_assert_int_ge(n, 0);
	if (len)
		*len = n;
	return buf;
}

/*
 * Checks that out is one JSON object on one line with "schema_version":1,
 * as gpuqctl(1) promises, and parses it into jd (root node 0).
 */
static void json_ok(void)
{
	size_t len = strlen(out);

	ck_assert_msg(json_parse(&jd, out) == 0, "invalid JSON (%s): %s", jd.err, out);
	ck_assert_int_eq(jd.n[0].type, J_OBJ);
	ck_assert_msg(len > 0 && strchr(out, '\n') == out + len - 1,
		      "not one line ending in a newline: %s", out);
	ck_assert_uint_eq(juint(&jd, 0, "schema_version"), 1);
}

/*
 * For a "key   value" line of human output: copies the value of the first
 * line whose first word is key into buf. Returns buf, or NULL if none.
 */
static const char *field(const char *text, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);
	const char *l, *e;

	for (l = text; *l; l = *e ? e + 1 : e) {
		const char *s = l;

		e = strchr(l, '\n');
		if (!e)
			e = l + strlen(l);
		while (*s == ' ')
			s++;
		if (strncmp(s, key, klen) || s[klen] != ' ')
			continue;
		for (s += klen; *s == ' '; s++)
			;
		snprintf(buf, len, "%.*s", (int)(e - s), s);
		return buf;
	}
	return NULL;
}

/* Does no byte of s lie below 0x20 or at 0x7f, newlines apart? */
static int printable(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\n') || *s == 0x7f)
			return 0;
	return 1;
}

START_TEST(json_validator_is_strict)
{
	/* clang-format off */
	static const char *const good[] = {
		"{}", "[]", " 0 ", "-0.5e+3", "\"\\u0000\"", "[[[]]]", "{\"a\":{\"a\":1}}",
		"{\"a\":[1,-2.25E-7,true,false,null,\"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"
		"\\ud83d\\ude00\xc3\xa9\"]}\n",
	};
	static const char *const bad[] = {
		"", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{'a':1}", "01", "1.",
		".5", "-", "1e", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "True", "[1 2]",
		"\"\\x\"", "\"\\u12\"", "\"abc", "\"a\tb\"", "\"a\x01\"", "\"\\ud800\"",
		"\"\\udc00x\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "{\"a\":1}x",
		"{\"a\":1}{}", "{\"a\":1,\"a\":2}", "[1],", "\"a\"\"b\"",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	};
	/* clang-format on */
	size_t i;
	long len;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(json_parse(&jd, good[i]) == 0, "rejected %s: %s", good[i], jd.err);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(json_parse(&jd, bad[i]) < 0, "accepted %s", bad[i]);
	/* Escapes decode to what they stand for. */
	snprintf(out, sizeof(out), "{\"k\":\"q\\\"b\\\\c\\u0001\\u00e9\\ud83d\\ude00\"}");
	ck_assert_int_eq(json_parse(&jd, out), 0);
	ck_assert_str_eq(jstr(&jd, 0, "k", &len), "q\"b\\c\x01\xc3\xa9\xf0\x9f\x98\x80");
	ck_assert_int_eq(len, 12);
}
END_TEST

START_TEST(status_human)
{
	gpuq_t *q = connect_ok("ctl-probe");
	char want[128], buf[512];
	int ndev = gpuq_devices(q, NULL, 0, 0);

	ck_assert_int_ge(ndev, 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status"), 0);
	snprintf(want, sizeof(want), "gpuqd %s (protocol %u), pid %d, up ", PACKAGE_VERSION,
		 GPUQ_PROTO_VERSION, (int)d.pid);
	ck_assert_msg(!strncmp(out, want, strlen(want)), "first line is not '%s...': %s", want,
		      out);
	ck_assert_ptr_nonnull(field(out, "socket", buf, sizeof(buf)));
	ck_assert_str_eq(buf, d.sock);
	ck_assert_ptr_nonnull(field(out, "config", buf, sizeof(buf)));
	ck_assert_str_eq(buf, d.conf);
	ck_assert_ptr_nonnull(field(out, "backend", buf, sizeof(buf)));
	snprintf(want, sizeof(want), "%s (", harness_backend());
	ck_assert_msg(!strncmp(buf, want, strlen(want)), "backend line: %s", buf);
	ck_assert_ptr_nonnull(field(out, "devices", buf, sizeof(buf)));
	ck_assert_int_eq(atoi(buf), ndev);
	/* The probe and gpuqctl's own session. */
	ck_assert_ptr_nonnull(field(out, "sessions", buf, sizeof(buf)));
	ck_assert_str_eq(buf, "2");
	gpuq_close(q);
}
END_TEST

START_TEST(status_json)
{
	gpuq_t *q = connect_ok("ctl-probe");
	int ndev = gpuq_devices(q, NULL, 0, 0);

	ck_assert_int_ge(ndev, 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "status"), 0);
	json_ok();
	ck_assert_uint_eq(juint(&jd, 0, "pid"), (unsigned long long)d.pid);
	ck_assert_str_eq(jstr(&jd, 0, "socket", NULL), d.sock);
	ck_assert_str_eq(jstr(&jd, 0, "config", NULL), d.conf);
	ck_assert_str_eq(jstr(&jd, 0, "backend", NULL), harness_backend());
	ck_assert_str_eq(jstr(&jd, 0, "server_version", NULL), PACKAGE_VERSION);
	ck_assert_uint_eq(juint(&jd, 0, "proto_version"), GPUQ_PROTO_VERSION);
	ck_assert_uint_eq(juint(&jd, 0, "sessions"), 2);
	ck_assert_uint_eq(juint(&jd, 0, "devices"), (unsigned)ndev);
	ck_assert_uint_eq(juint(&jd, 0, "buffers"), 0);
	ck_assert_uint_eq(juint(&jd, 0, "reloads"), 0);
	gpuq_close(q);
}
END_TEST

START_TEST(devices_human)
{
	struct gpuq_device_info dev;
	gpuq_t *q = connect_ok("ctl-probe");
	const char *l, *e;
	int found = 0;

	ck_assert_int_ge(gpuq_devices(q, &dev, sizeof(dev), 1), 1);
	ck_assert_str_ne(dev.name, "");
	ck_assert_int_eq(RUN_CTL("devices", "-s", d.sock), 0);
	ck_assert_msg(!strncmp(out, "DEV ", 4) && strstr(out, "NAME"), "no header: %s", out);
	for (l = out; *l; l = *e ? e + 1 : e) {
		size_t nlen = strlen(dev.name) < 32 ? strlen(dev.name) : 32;
		const char *s;

		e = strchr(l, '\n');
		if (!e)
			e = l + strlen(l);
		if (strncmp(l, "0 ", 2))
			continue;
		for (s = l + 1; *s == ' '; s++)
			;
		ck_assert_msg(!strncmp(s, dev.name, nlen), "device 0 row does not name '%s': %.*s",
			      dev.name, (int)(e - l), l);
		found = 1;
	}
	ck_assert_msg(found, "no row for device 0: %s", out);
	gpuq_close(q);
}
END_TEST

START_TEST(devices_json)
{
	struct gpuq_device_info dev;
	gpuq_t *q = connect_ok("ctl-probe");
	int ndev, arr, d0;

	ndev = gpuq_devices(q, &dev, sizeof(dev), 1);
	ck_assert_int_ge(ndev, 1);
	ck_assert_int_eq(RUN_CTL("devices", "--json", "--socket", d.sock), 0);
	json_ok();
	arr = jget(&jd, 0, "devices");
	ck_assert_int_ge(arr, 0);
	ck_assert_int_eq(jd.n[arr].type, J_ARR);
	ck_assert_int_eq(jcount(&jd, arr), ndev);
	d0 = jd.n[arr].child;
	ck_assert_uint_eq(juint(&jd, d0, "index"), 0);
	ck_assert_str_ne(jstr(&jd, d0, "name", NULL), "");
	ck_assert_str_eq(jstr(&jd, d0, "name", NULL), dev.name);
	ck_assert_str_eq(jstr(&jd, d0, "backend", NULL), harness_backend());
	ck_assert_uint_eq(juint(&jd, d0, "total_mem"), dev.total_mem);
	ck_assert_uint_le(juint(&jd, d0, "free_mem"), dev.total_mem);
	gpuq_close(q);
}
END_TEST

START_TEST(clients_human)
{
	gpuq_t *q = connect_ok("ctl-probe");
	const char *l, *e;
	int probe = 0, self = 0;

	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "clients"), 0);
	ck_assert_msg(!strncmp(out, "SESSION ", 8) && strstr(out, " PID "), "no header: %s", out);
	for (l = out; *l; l = *e ? e + 1 : e) {
		unsigned long long sid;
		unsigned pid, uid, gid;
		char name[64];

		e = strchr(l, '\n');
		if (!e)
			e = l + strlen(l);
		if (sscanf(l, "%llu %u %u %u %63s", &sid, &pid, &uid, &gid, name) != 5)
			continue;
		if (!strcmp(name, "gpuqctl"))
			self++;
		if (strcmp(name, "ctl-probe"))
			continue;
		probe++;
		ck_assert_uint_eq(pid, (unsigned)getpid());
		ck_assert_uint_eq(uid, (unsigned)getuid());
		ck_assert_uint_eq(sid, gpuq_session_id(q));
	}
	ck_assert_msg(probe == 1, "%d rows for ctl-probe: %s", probe, out);
	ck_assert_msg(self == 1, "%d rows for gpuqctl's own session: %s", self, out);
	gpuq_close(q);
}
END_TEST

START_TEST(clients_json)
{
	gpuq_t *q = connect_ok("ctl-probe");
	int arr, k, probe = 0;

	ck_assert_int_eq(RUN_CTL("-j", "clients", "--socket", d.sock), 0);
	json_ok();
	arr = jget(&jd, 0, "clients");
	ck_assert_int_ge(arr, 0);
	ck_assert_int_eq(jd.n[arr].type, J_ARR);
	ck_assert_int_eq(jcount(&jd, arr), 2);
	for (k = jd.n[arr].child; k >= 0; k = jd.n[k].next) {
		ck_assert_int_eq(jd.n[k].type, J_OBJ);
		if (strcmp(jstr(&jd, k, "name", NULL), "ctl-probe"))
			continue;
		probe++;
		ck_assert_uint_eq(juint(&jd, k, "pid"), (unsigned long long)getpid());
		ck_assert_uint_eq(juint(&jd, k, "uid"), (unsigned long long)getuid());
		ck_assert_uint_eq(juint(&jd, k, "gid"), (unsigned long long)getgid());
		ck_assert_uint_eq(juint(&jd, k, "session_id"), gpuq_session_id(q));
		ck_assert_uint_eq(juint(&jd, k, "buffers"), 0);
	}
	ck_assert_msg(probe == 1, "%d entries for ctl-probe: %s", probe, out);
	gpuq_close(q);
}
END_TEST

START_TEST(clients_odd_name)
{
	static const char odd[] = "we\"ird\\\x01";
	gpuq_t *q = connect_ok(odd);
	int arr, k, found = 0;

	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "clients", "--json"), 0);
	json_ok();
	arr = jget(&jd, 0, "clients");
	ck_assert_int_ge(arr, 0);
	for (k = jd.n[arr].child; k >= 0; k = jd.n[k].next) {
		const char *name;
		long len;

		if (juint(&jd, k, "pid") != (unsigned long long)getpid())
			continue;
		found = 1;
		/* The control character may be escaped or replaced, but the rest survives. */
		name = jstr(&jd, k, "name", &len);
		ck_assert_int_eq(len, 8);
		ck_assert_msg(!strncmp(name, odd, 7), "name came back as '%s'", name);
	}
	ck_assert_msg(found, "the odd-named session is missing: %s", out);
	/* The table a terminal shows carries no control characters. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "clients"), 0);
	ck_assert_ptr_nonnull(strstr(out, "we\"ird\\"));
	ck_assert_msg(printable(out), "control character in the table: %s", out);
	gpuq_close(q);
}
END_TEST

START_TEST(version_human_and_json)
{
	char want[128];

	ck_assert_str_eq(gpuq_version(), PACKAGE_VERSION);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "version"), 0);
	snprintf(want, sizeof(want), "gpuqctl %s\ngpuqd %s (protocol %u)\n", gpuq_version(),
		 PACKAGE_VERSION, GPUQ_PROTO_VERSION);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "version", "--json"), 0);
	json_ok();
	ck_assert_str_eq(jstr(&jd, 0, "gpuqctl", NULL), gpuq_version());
	ck_assert_str_eq(jstr(&jd, 0, "gpuqd", NULL), PACKAGE_VERSION);
	ck_assert_uint_eq(juint(&jd, 0, "proto_version"), GPUQ_PROTO_VERSION);
}
END_TEST

/* Asserts that out is `status --json` of the harness's daemon. */
static void is_our_daemon(void)
{
	json_ok();
	ck_assert_uint_eq(juint(&jd, 0, "pid"), (unsigned long long)d.pid);
	ck_assert_str_eq(jstr(&jd, 0, "socket", NULL), d.sock);
}

START_TEST(socket_choice)
{
	char opt[400];

	/* The option wins over the environment, which points nowhere here. */
	setenv(GPUQ_SOCKET_ENV, "/nonexistent/gpuqd.sock", 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "status"), 0);
	is_our_daemon();
	ck_assert_int_eq(RUN_CTL("-s", d.sock, "--json", "status"), 0);
	is_our_daemon();
	snprintf(opt, sizeof(opt), "--socket=%s", d.sock);
	ck_assert_int_eq(RUN_CTL(opt, "--json", "status"), 0);
	is_our_daemon();
	ck_assert_int_eq(RUN_CTL("--json", "status"), 3);
	ck_assert_str_eq(out, "");
	/* Without the option, $GPUQ_SOCKET names the daemon. */
	setenv(GPUQ_SOCKET_ENV, d.sock, 1);
	ck_assert_int_eq(RUN_CTL("--json", "status"), 0);
	is_our_daemon();
	unsetenv(GPUQ_SOCKET_ENV);
}
END_TEST

START_TEST(usage_errors)
{
	/* Each would succeed against the daemon if gpuqctl ignored the mistake. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "frobnicate"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "statusx"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--bogus", "status"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "-x", "status"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status", "extra"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status", "devices"), 2);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("status", "--socket"), 2);
	ck_assert_str_eq(out, "");
	/* The same command line without the mistake works. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status"), 0);
}
END_TEST

START_TEST(help)
{
	ck_assert_int_eq(RUN_CTL("--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage"));
	ck_assert_ptr_nonnull(strstr(out, "status"));
	ck_assert_ptr_nonnull(strstr(out, "devices"));
	ck_assert_ptr_nonnull(strstr(out, "clients"));
	ck_assert_ptr_nonnull(strstr(out, "version"));
	ck_assert_ptr_nonnull(strstr(out, "--json"));
	ck_assert_int_eq(RUN_CTL("-h"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage"));
}
END_TEST

START_TEST(daemon_not_running)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[400];
	int fd;

	snprintf(path, sizeof(path), "%s/absent.sock", d.dir);
	ck_assert_int_eq(RUN_CTL("--socket", path, "status"), 3);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN_CTL("--socket", "/nonexistent/gpuqd.sock", "status"), 3);
	ck_assert_str_eq(out, "");
	snprintf(path, sizeof(path), "%s/sub.sock", d.conf);
	ck_assert_int_eq(RUN_CTL("--socket", path, "status"), 3);
	/* A socket file left behind, with nobody listening: connect is refused. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", d.dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(RUN_CTL("--socket", sa.sun_path, "--json", "devices"), 3);
	ck_assert_str_eq(out, "");
	/* The real socket, for contrast. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "devices"), 0);
}
END_TEST

/* Runs gpuqctl as nobody (uid and gid 65534); its stderr lands in err. Returns the exit status. */
static int run_ctl_as_nobody(const char *const *args, char *err, size_t errlen)
{
	const char *argv[16];
	int pipefd[2], st, argc = 0, i;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	argv[argc++] = harness_gpuqctl();
	for (i = 0; args[i] && argc < 15; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);

		dup2(nul, 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(126);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	while (got + 1 < errlen && (n = read(pipefd[0], err + got, errlen - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(permission_denied)
{
	static const char *const args[] = { "--socket-mode", "0600", NULL };
	const char *const status[] = { "--socket", d.sock, "status", NULL };
	const char *const clients[] = { "--socket", d.sock, "--json", "clients", NULL };
	char err[1024];
	struct stat st;

	ck_assert_int_eq(harness_start(&d, NULL, args), 0);
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	/* The socket's owner is served. */
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "status"), 0);
	if (getuid() != 0) {
		printf("permission_denied: not root, the run as another user is skipped\n");
	} else {
		/* Only the socket's mode may stand in nobody's way, not the test directory's. */
		ck_assert_int_eq(chmod(d.dir, 0755), 0);
		ck_assert_int_eq(run_ctl_as_nobody(status, err, sizeof(err)), 4);
		ck_assert_msg(strstr(err, strerror(EACCES)), "stderr does not say why: %s", err);
		ck_assert_int_eq(run_ctl_as_nobody(clients, err, sizeof(err)), 4);
		ck_assert(harness_alive(&d));
		ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "status"), 0);
		is_our_daemon();
	}
	stop_checked();
}
END_TEST

/* `gpuqctl channels`: a table with the channel's row, and the same in --json. */
START_TEST(channels_human_and_json)
{
	gpuq_t *q = connect_ok("ctl-chan");
	gpuq_chan_t *ch;
	int arr, k;

	ck_assert_int_eq(gpuq_chan_create(q, "ctl.results", 64, 32, GPUQ_CHAN_GPU_TO_CPU | 0640, &ch), 0);
	ck_assert_int_eq(gpuq_chan_send(ch, "x", 1, 0), 1);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "channels"), 0);
	ck_assert_msg(!strncmp(out, "NAME ", 5), "no header: %s", out);
	ck_assert_msg(strstr(out, "ctl.results") && strstr(out, "0640") && strstr(out, "gpu-to-cpu"),
		      "no row for the channel: %s", out);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "channels"), 0);
	json_ok();
	arr = jget(&jd, 0, "channels");
	ck_assert_int_ge(arr, 0);
	ck_assert_int_eq(jd.n[arr].type, J_ARR);
	ck_assert_int_eq(jcount(&jd, arr), 1);
	k = jd.n[arr].child;
	ck_assert_str_eq(jstr(&jd, k, "name", NULL), "ctl.results");
	ck_assert_str_eq(jstr(&jd, k, "mode", NULL), "0640");
	ck_assert_str_eq(jstr(&jd, k, "direction", NULL), "gpu-to-cpu");
	ck_assert_uint_eq(juint(&jd, k, "slot_size"), 64);
	ck_assert_uint_eq(juint(&jd, k, "nslots"), 32);
	ck_assert_uint_eq(juint(&jd, k, "users"), 1);
	ck_assert_uint_eq(juint(&jd, k, "tail") - juint(&jd, k, "head"), 1);
	ck_assert_uint_eq(juint(&jd, k, "uid"), (unsigned long long)getuid());
	gpuq_chan_close(ch);
	ck_assert_int_eq(RUN_CTL("--socket", d.sock, "--json", "channels"), 0);
	json_ok();
	ck_assert_int_eq(jcount(&jd, jget(&jd, 0, "channels")), 0);
	gpuq_close(q);
}
END_TEST

static Suite *gpuqctl_suite(void)
{
	Suite *s = suite_create("gpuqctl");
	TCase *tc;

	tc = tcase_create("json");
	tcase_add_test(tc, json_validator_is_strict);
	suite_add_tcase(s, tc);

	tc = tcase_create("commands");
	tcase_add_checked_fixture(tc, start_default, stop_checked);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, status_human);
	tcase_add_test(tc, status_json);
	tcase_add_test(tc, devices_human);
	tcase_add_test(tc, devices_json);
	tcase_add_test(tc, clients_human);
	tcase_add_test(tc, clients_json);
	tcase_add_test(tc, clients_odd_name);
	tcase_add_test(tc, channels_human_and_json);
	tcase_add_test(tc, version_human_and_json);
	tcase_add_test(tc, socket_choice);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, help);
	tcase_add_test(tc, daemon_not_running);
	suite_add_tcase(s, tc);

	tc = tcase_create("permissions");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, permission_denied);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(gpuqctl_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
