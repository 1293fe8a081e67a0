/* log.c: leveled logging to stderr, with syslog priority prefixes under journald. */
#include "build-config.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static int log_level = LOG_INFO;
static int log_journal; /* stderr is connected to journald: it adds its own timestamps */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
	const char *name;
	int level;
} levels[] = {
	{ "err", LOG_ERR },         { "error", LOG_ERR }, { "warn", LOG_WARNING },
	{ "warning", LOG_WARNING }, { "info", LOG_INFO }, { "debug", LOG_DEBUG },
};

void log_init(int level)
{
	log_level = level;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(int level)
{
	log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

int log_level_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (!strcmp(s, levels[i].name))
			return levels[i].level;
	return -EINVAL;
}

const char *log_level_name(int level)
{
	switch (level) {
	case LOG_ERR: return "err";
	case LOG_WARNING: return "warn";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

static _Thread_local int log_nonblocking;
static _Thread_local struct log_rl log_thread_rl;

void log_thread_nonblocking(void)
{
	log_nonblocking = 1;
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_nonblocking) {
		/* Backend code called from an engine: the same rules as log_engine. */
		if (log_ratelimit(&log_thread_rl))
			log_async(level, "%s", line);
		return;
	}
	pthread_mutex_lock(&log_lock);
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", level, line);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		fprintf(stderr, "%02d:%02d:%02d.%03ld gpuqd %s: %s\n", tm.tm_hour, tm.tm_min,
			tm.tm_sec, ts.tv_nsec / 1000000, log_level_name(level), line);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

/*
 * The queue behind log_async: a few preformatted lines under a mutex that
 * producers only try to take. The logger thread holds it just long enough
 * to copy one line out, and writes the line without it.
 */
#define LOG_QUEUE 64
#define LOG_LINE 512

static struct {
	pthread_mutex_t lock;
	char line[LOG_QUEUE][LOG_LINE];
	int level[LOG_QUEUE];
	unsigned head, tail;
	atomic_uint dropped;
	sem_t ready;
	pthread_once_t once;
	int started;
} lq = { .lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT };

/* Takes one queued line into line/level; returns 0 when the queue is empty. */
static int lq_pop(char *line, int *level)
{
	int got = 0;

	pthread_mutex_lock(&lq.lock);
	if (lq.head != lq.tail) {
		memcpy(line, lq.line[lq.head % LOG_QUEUE], LOG_LINE);
		*level = lq.level[lq.head % LOG_QUEUE];
		lq.head++;
		got = 1;
	}
	pthread_mutex_unlock(&lq.lock);
	return got;
}

void log_flush(void)
{
	char line[LOG_LINE];
	unsigned dropped;
	int level;

	while (lq_pop(line, &level))
		log_msg(level, "%s", line);
	dropped = atomic_exchange(&lq.dropped, 0);
	if (dropped)
		log_msg(LOG_WARNING, "%u message(s) from the engines dropped (log queue full)",
			dropped);
}

static void *logger_main(void *arg)
{
	(void)arg;
	for (;;) {
		if (sem_wait(&lq.ready) < 0)
			continue;
		log_flush();
	}
	return NULL;
}

static void logger_start(void)
{
	pthread_attr_t a;
	pthread_t t;

	if (sem_init(&lq.ready, 0, 0) < 0)
		return;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, logger_main, NULL) == 0)
		lq.started = 1;
	pthread_attr_destroy(&a);
}

void log_async(int level, const char *fmt, ...)
{
	char line[LOG_LINE];
	va_list ap;

	if (level > log_level)
		return;
	pthread_once(&lq.once, logger_start);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (pthread_mutex_trylock(&lq.lock)) {
		atomic_fetch_add(&lq.dropped, 1);
		return;
	}
	if (lq.tail - lq.head >= LOG_QUEUE) {
		pthread_mutex_unlock(&lq.lock);
		atomic_fetch_add(&lq.dropped, 1);
		return;
	}
	memcpy(lq.line[lq.tail % LOG_QUEUE], line, LOG_LINE);
	lq.level[lq.tail % LOG_QUEUE] = level;
	lq.tail++;
	pthread_mutex_unlock(&lq.lock);
	/* sem_post never blocks. Without a logger thread the line waits for log_flush. */
	if (lq.started)
		sem_post(&lq.ready);
}

int log_ratelimit(struct log_rl *rl)
{
	struct timespec ts;
	unsigned long long now, w;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
	w = __atomic_load_n(&rl->window_ms, __ATOMIC_RELAXED);
	if (now - w >= LOG_RL_INTERVAL_MS &&
	    __atomic_compare_exchange_n(&rl->window_ms, &w, now, 0, __ATOMIC_ACQ_REL,
					__ATOMIC_RELAXED))
		__atomic_store_n(&rl->n, 0, __ATOMIC_RELAXED);
	return __atomic_fetch_add(&rl->n, 1, __ATOMIC_RELAXED) < LOG_RL_BURST;
}
