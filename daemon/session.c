/* session.c: per-client state: identity from SO_PEERCRED, buffers, counters. */
#include "build-config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "session.h"

uint64_t session_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct session *session_create(uint64_t id, struct backend *be, uint64_t quota, pid_t pid,
			       uid_t uid, gid_t gid, const char *name)
{
	struct session *s = calloc(1, sizeof(*s));
	size_t i;

	if (!s)
		return NULL;
	s->id = id;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->started_ms = session_now_ms();
	/* The name is client-chosen: keep it printable so it is safe in logs and tables. */
	snprintf(s->name, sizeof(s->name), "%s", name ? name : "");
	for (i = 0; s->name[i]; i++)
		if (!isprint((unsigned char)s->name[i]))
			s->name[i] = '?';
	buf_table_init(&s->bufs, be, quota);
	return s;
}

void session_destroy(struct session *s)
{
	if (!s)
		return;
	if (s->bufs.count)
		log_info("session %llu (pid %d): freeing %u buffer(s), %llu bytes",
			 (unsigned long long)s->id, (int)s->pid, s->bufs.count,
			 (unsigned long long)s->bufs.bytes);
	buf_table_fini(&s->bufs);
	free(s);
}
