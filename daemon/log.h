/* log.h: leveled logging to stderr, journal-aware. */
#ifndef GPUQ_LOG_H
#define GPUQ_LOG_H

#include <syslog.h>

/* Levels are syslog priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
void log_init(int level);
void log_set_level(int level);
int log_get_level(void);
/* Parses "err", "warn", "info" or "debug"; returns the level or -EINVAL. */
int log_level_parse(const char *s);
const char *log_level_name(int level);

/*
 * Writes one line to stderr. On a thread marked with log_thread_nonblocking
 * it does what log_engine does instead: rate-limited (per thread) and
 * queued, never waiting on stderr or a lock.
 */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Marks the calling thread as one that must never block in logging (the engines). */
void log_thread_nonblocking(void);

/*
 * For threads that must never block (the engines): formats the line and
 * queues it for a logger thread without waiting for anything; dropped (and
 * counted, reported with the next line) when the queue is full or busy.
 */
void log_async(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes out what log_async queued. Any thread; blocks on stderr like log_msg. */
void log_flush(void);

/* A rate limit for one message site: at most LOG_RL_BURST lines per LOG_RL_INTERVAL_MS. */
struct log_rl {
	/* Touched only with __atomic builtins (this header is also read by C++ code). */
	unsigned long long window_ms;
	unsigned n;
};

#define LOG_RL_BURST 10
#define LOG_RL_INTERVAL_MS 5000

/* May a message from this site go out now? Lock-free; any thread. */
int log_ratelimit(struct log_rl *rl);

/* Rate-limited, never-blocking logging for the engine threads. */
#define log_engine(level, ...)                         \
	do {                                           \
		static struct log_rl log_rl_;          \
		if (log_ratelimit(&log_rl_))           \
			log_async(level, __VA_ARGS__); \
	} while (0)

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
